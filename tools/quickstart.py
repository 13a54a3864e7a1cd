#!/usr/bin/env python
"""The README's main job, end to end on the built-in toy dataset (no download, a few minutes on a CPU):
generate the data, train the ``toy`` config with the reference recipe, evaluate the best checkpoint, export a
SavedModel and a TFLite model (both verified against Keras) and write a prediction overlay PNG.

    python tools/quickstart.py [--config toy] [--work-dir work_dirs/toy] [--max-iters N]

Everything goes to the work dir: the training run (resumable: run the command again), ``eval.json``,
``export/saved_model/1``, ``export/toy.tflite`` and ``overlay.png``.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_mv2seg  # noqa: E402
from keras_mv2seg.cli import run_main, write_png, UsageError  # noqa: E402
from keras_mv2seg.data.sources import DataSource  # noqa: E402
from keras_mv2seg.datasets_meta import classes_of, colorize, palette_of  # noqa: E402
from keras_mv2seg.evaluation import evaluate, format_table  # noqa: E402
from keras_mv2seg.export import saved_model as saved_model_export  # noqa: E402
from keras_mv2seg.export import tflite as tflite_export  # noqa: E402
from keras_mv2seg.training import train  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="toy")
    parser.add_argument("--work-dir", help="default: work_dirs/<config>")
    parser.add_argument("--max-iters", type=int, help="shorten the schedule (train.max_iters)")
    parser.add_argument("--quiet", action="store_true", help="no training progress bar")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.max_iters is not None and args.max_iters < 1:
        parser.error(f"--max-iters must be >= 1, received {args.max_iters}")
    config = keras_mv2seg.get_config(args.config)
    if config.data.dataset != "toy":
        raise UsageError(f"quickstart runs toy-dataset configs; {config.name!r} uses {config.data.dataset}")
    if args.max_iters is not None:
        interval = min(config.train.eval_interval, args.max_iters)
        config = config.replace(max_iters=args.max_iters, eval_interval=interval, checkpoint_interval=interval)
    work = Path(args.work_dir or Path("work_dirs") / config.name)
    source = DataSource(config)  # the toy dataset, generated on first use
    print(f"[1/5] data: toy dataset in {source.root}")

    summary = train(config, work, verbose=0 if args.quiet else 1)
    speed = (f"{summary['train_images_per_s']:.1f} images/s while training" if summary["train_images_per_s"]
             else f"already trained in {work}, nothing left to do")
    print(f"[2/5] {summary['iterations']} iterations; best val mIoU {100 * summary['best_mIoU']:.2f} ({speed})")

    weights = work / "best.weights.h5"
    model = build_for_inference(config, weights)
    metrics = evaluate(model, config, source.evaluation("val"))
    names = classes_of(config)
    present = [i for i, iou in enumerate(metrics["IoU"]) if np.isfinite(iou)]
    print("[3/5] evaluation of best.weights.h5 (classes present in the toy data):")
    print(format_table({**metrics, "IoU": metrics["IoU"][present], "Acc": metrics["Acc"][present]},
                       [names[i] for i in present]))
    (work / "eval.json").write_text(json.dumps({k: round(100 * metrics[k], 2) for k in ("aAcc", "mIoU", "mAcc")}))

    image, label, name = next(iter(source.evaluation("val")))
    image = image.numpy()
    saved = saved_model_export.export_saved_model(model, work / "export" / "saved_model", overwrite=True,
                                                  warmup_image=image.astype(np.uint8))
    served = saved_model_export.run_in_tf1_session(saved, image[None].astype(np.uint8))["labels"][0]
    keras_labels = model(image[None], training=False).numpy()[0].argmax(-1)
    content = tflite_export.convert(config, model, image.shape[:2])
    tflite_path = tflite_export.write(work / "export" / f"{config.name}.tflite", content, overwrite=True)
    tflite_labels = tflite_export.run(content, image)
    print(f"[4/5] exported {saved} (TF1 session loader: {100 * (served == keras_labels).mean():.2f}% of pixels as "
          f"Keras) and {tflite_path} (LiteRT: {100 * (tflite_labels == keras_labels).mean():.2f}%; ops "
          f"{' '.join(tflite_export.op_names(content))})")

    colours = palette_of(config)
    overlay = np.clip(0.5 * image + 0.5 * colorize(keras_labels, colours), 0, 255).astype(np.uint8)
    truth = colorize(label.numpy(), colours)
    write_png(work / "overlay.png", np.concatenate([image.astype(np.uint8), overlay, truth], axis=1), overwrite=True)
    print(f"[5/5] wrote {work / 'overlay.png'} (image | prediction overlay | ground truth) for "
          f"{name.numpy().decode()}")
    print(f"toy val mIoU {100 * metrics['mIoU']:.2f} (aAcc {100 * metrics['aAcc']:.2f}, mAcc {100 * metrics['mAcc']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

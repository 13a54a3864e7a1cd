#!/usr/bin/env python
"""Evaluate a config's weights on a dataset split: aAcc, mIoU, mAcc and per-class IoU/Acc, as the reference.

    python tools/test.py CONFIG WEIGHTS [--data-root DIR] [--split val] [--mode whole|slide] [--aug-test]
                         [--out results.json] [--cityscapes-submission DIR] [--confusion-plot cm.png]
"""

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_mv2seg.cli import (  # noqa: E402
    add_config_arguments, config_from_args, run_main, write_png, UsageError,
)
from keras_mv2seg.data.sources import DataSource  # noqa: E402
from keras_mv2seg.datasets_meta import CITYSCAPES_TRAIN_TO_LABEL_ID, classes_of  # noqa: E402
from keras_mv2seg.evaluation import evaluate, format_table, plot_confusion  # noqa: E402
from keras_mv2seg.inference import Tiling  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("weights", help=".weights.h5 from training, mmseg .pth or DeepLab TF1 checkpoint")
    parser.add_argument("--data-root", help="dataset root (default: the config's data.data_root)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--mode", choices=("whole", "slide", "pad"),
                        help="default: the config's data.test_mode; pad: the official DeepLab evaluation (image at "
                             "its own size padded to the crop size, 513x513 for PASCAL VOC)")
    parser.add_argument("--crop", nargs=2, type=int, metavar=("H", "W"), help="slide window (default: crop size)")
    parser.add_argument("--stride", nargs=2, type=int, metavar=("H", "W"), help="slide stride (default: 2/3 crop)")
    parser.add_argument("--aug-test", action="store_true", help="multi-scale (0.5..1.75) + flip, softmax averaged")
    parser.add_argument("--out", help="write the metrics (percent) as JSON here")
    parser.add_argument("--cityscapes-submission", metavar="DIR",
                        help="also write labelId PNGs in the official leftImg8bit/<split>/<city>/ structure")
    parser.add_argument("--confusion-plot", metavar="PNG", help="save the normalised confusion matrix as a picture")
    parser.add_argument("--max-whole-megapixels", type=float,
                        help="whole mode: larger images go through the sliding window (default 4.19: 2048x2048)")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N images")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = config_from_args(args)
    for path in (args.out, args.confusion_plot):
        if path and Path(path).exists() and not args.overwrite:
            raise UsageError(f"{path} exists; pass --overwrite to replace it")
    if args.cityscapes_submission and config.data.dataset not in ("cityscapes", "toy"):
        raise UsageError(f"--cityscapes-submission needs a Cityscapes config, {config.name!r} is {config.data.dataset}")
    model = build_for_inference(config, args.weights)
    if args.mode:
        config = config.replace(test_mode=args.mode)
    # the network compiled, run as the test mode says, scores assembled band by band (bounded memory)
    tiling = Tiling.from_config(config, crop=args.crop, stride=args.stride, max_whole_pixels=(
        int(args.max_whole_megapixels * 1e6) if args.max_whole_megapixels else None))
    if args.aug_test:  # the references' aug-test: 0.5..1.75 of the base scale, each also flipped
        tiling = dataclasses.replace(tiling, scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True,
                                     base_scale=tuple(config.data.base_scale))
    label_ids = np.asarray(CITYSCAPES_TRAIN_TO_LABEL_ID, np.uint8)
    on_prediction = None
    if args.cityscapes_submission:
        def on_prediction(name, prediction):
            target = Path(args.cityscapes_submission) / name
            write_png(target, label_ids[np.clip(prediction, 0, len(label_ids) - 1)], overwrite=args.overwrite)
    source = DataSource(config, args.data_root)
    with source.decode_errors_named(args.split):
        metrics = evaluate(model, config, source.evaluation(args.split), tiling=tiling, max_images=args.max_images,
                           on_prediction=on_prediction)
    names = classes_of(config)
    print(format_table(metrics, names))
    print(f"{metrics['images']} images, mode {'aug-test + ' if args.aug_test else ''}"
          f"{config.data.test_mode}")
    if args.out:
        result = {"config": config.name, "weights": str(args.weights), "images": metrics["images"],
                  **{k: round(100 * metrics[k], 4) for k in ("aAcc", "mIoU", "mAcc")},
                  "per_class": {n: {"IoU": round(100 * float(i), 4), "Acc": round(100 * float(a), 4)}
                                for n, i, a in zip(names, metrics["IoU"], metrics["Acc"])}}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.confusion_plot:
        plot_confusion(metrics["confusion"], names, args.confusion_plot)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

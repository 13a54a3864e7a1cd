"""Runs under the reference kit's python (mmseg 1.2.2): mmseg's ``MMSegInferencer`` on a folder of images, what an
mmseg user runs to segment a folder, for ``benchmarks/bench_predict.py --folder`` (this project's side). Not a test
dependency.

    REF_PY benchmarks/reference/predict_folder.py FOLDER OUT_DIR [--head sepaspp] [--classes 19] [--warmup 2]
        [--threads N]

The M-V2-D8 model of ``--head`` (``../shared/reference/mmseg_cfgs.py``, random weights: speed does not depend on
them) in mmseg's whole test mode; the inferencer reads each image (``LoadImageFromFile``), runs the model, and
writes the class map (``OUT_DIR/pred/<name>.png``) and the overlay (``OUT_DIR/vis/<name>.png``), as this project's
``tools/predict.py`` writes ``_labels.png`` and ``_overlay.png``. ``--warmup`` images are run first, untimed.
Prints one JSON line: images, seconds, images/s.
"""
import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
REFERENCE = Path(os.environ.get("REFERENCE_DIR", Path(__file__).resolve().parents[3] / "shared" / "reference"))
sys.path.insert(0, str(REFERENCE))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("out_dir")
    parser.add_argument("--head", default="sepaspp")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import mmcv_ops_shim  # noqa: F401  (mmcv-lite has no compiled ops)
    from mmengine.config import Config
    from mmseg.apis import MMSegInferencer
    from mmseg.utils import register_all_modules
    from mmseg_cfgs import model_cfg

    register_all_modules()
    model = model_cfg(args.head, args.classes)
    model["data_preprocessor"] = dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53],
                                      std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
    config = Config(dict(
        model=model, default_scope="mmseg",
        test_dataloader=dict(dataset=dict(pipeline=[dict(type="LoadImageFromFile"), dict(type="PackSegInputs")])),
        visualizer=dict(type="SegLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")], name="visualizer"),
    ))
    inferencer = MMSegInferencer(model=config, weights=None, device="cpu",
                                 classes=[f"class{i}" for i in range(args.classes)],
                                 palette=[[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(args.classes)])
    images = sorted(str(p) for p in Path(args.folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    inferencer(images[:args.warmup], out_dir=str(Path(args.out_dir) / "warmup"), show=False)
    started = time.perf_counter()
    inferencer(images, out_dir=args.out_dir, show=False)
    seconds = time.perf_counter() - started
    print(json.dumps(dict(impl="mmseg-MMSegInferencer", head=args.head, images=len(images), seconds=round(seconds, 3),
                          images_per_s=round(len(images) / seconds, 4), threads=args.threads,
                          torch=torch.__version__)), flush=True)


if __name__ == "__main__":
    main()

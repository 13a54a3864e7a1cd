"""Runs under the reference kit's python (mmseg 1.2.2): mmseg's Cityscapes training pipeline, timed stage by
stage in one process on one core, over the image/label pairs of a Cityscapes-layout root, for
``bench_pipeline.py``. Not a test dependency.

    REF_PY benchmarks/reference/pipeline_stages.py DATA_ROOT [--images 16] [--split train]

The transforms of ``../shared/reference/pipeline.py`` (LoadImageFromFile, LoadAnnotations, RandomResize 0.5-2.0 of
2048x1024 keeping the ratio, RandomCrop 512x1024 with cat_max_ratio 0.75, RandomFlip, PhotoMetricDistortion,
PackSegInputs), then the data preprocessor's part that a batch needs (BGR->RGB, normalise, pad to the crop, stack:
``SegDataPreProcessor``), called one after the other on each sample; prints one JSON line with the milliseconds
per image of each stage and the images/s of the whole chain.
"""
import argparse
import glob
import json
import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, os.environ.get("REFERENCE_DIR", str(Path(__file__).resolve().parents[3] / "shared" / "reference")))

import cv2  # noqa: E402
import mmcv_ops_shim  # noqa: E402,F401  (must precede mmseg)
import torch  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

STAGES = [
    ("decode image", dict(type="LoadImageFromFile")),
    ("decode label", dict(type="LoadAnnotations")),
    ("rescale", dict(type="RandomResize", scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True)),
    ("crop", dict(type="RandomCrop", crop_size=(512, 1024), cat_max_ratio=0.75)),
    ("flip", dict(type="RandomFlip", prob=0.5)),
    ("photometric", dict(type="PhotoMetricDistortion")),
    ("pack", dict(type="PackSegInputs")),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    register_all_modules()
    from mmcv.transforms import TRANSFORMS
    from mmseg.models.data_preprocessor import SegDataPreProcessor

    images = sorted(glob.glob(os.path.join(args.root, "leftImg8bit", args.split, "*", "*_leftImg8bit.png")))
    if not images:
        sys.exit(f"no images under {args.root}/leftImg8bit/{args.split}")
    files = [(i, i.replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png"))
             for i in images]
    transforms = [(name, TRANSFORMS.build(cfg)) for name, cfg in STAGES]
    preprocessor = SegDataPreProcessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                                       bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(512, 1024))
    seconds = {name: 0.0 for name, _ in STAGES}
    seconds["normalise, pad, batch"] = 0.0

    def sample(i, timed):
        image, label = files[i % len(files)]
        results = dict(img_path=image, seg_map_path=label, reduce_zero_label=False, seg_fields=[])
        for name, transform in transforms:
            start = time.perf_counter()
            results = transform(results)
            if timed:
                seconds[name] += time.perf_counter() - start
        return results

    for i in range(2):  # warm-up
        sample(i, False)
    began = time.perf_counter()
    batch = []
    for i in range(args.images):
        batch.append(sample(i, True))
        if len(batch) == args.batch:
            start = time.perf_counter()
            preprocessor(dict(inputs=[b["inputs"] for b in batch], data_samples=[b["data_samples"] for b in batch]),
                         True)
            seconds["normalise, pad, batch"] += time.perf_counter() - start
            batch = []
    wall = time.perf_counter() - began
    print(json.dumps({"impl": "mmseg", "images": args.images, "files": len(files), "images_per_s": args.images / wall,
                      "ms_per_image": {k: 1000 * v / args.images for k, v in seconds.items()}}))


if __name__ == "__main__":
    main()

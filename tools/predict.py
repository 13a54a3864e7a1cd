#!/usr/bin/env python
"""Segment images: for each input, a class-map PNG (class ids) and a colour overlay with the dataset palette.

    python tools/predict.py CONFIG WEIGHTS INPUT [INPUT ...] [--out-dir outputs/predict] [--opacity 0.5]

INPUT is an image file, a folder (its .png/.jpg/.jpeg/.bmp files) or a glob pattern in quotes.
"""

import argparse
import glob
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_mv2seg.cli import (  # noqa: E402
    add_config_arguments, config_from_args, read_image, run_main, write_png, UsageError,
)
from keras_mv2seg.datasets_meta import colorize, palette  # noqa: E402
from keras_mv2seg.inference import predict_labels  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def expand_inputs(items) -> list[Path]:
    paths = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UsageError(f"{item}: no image file, folder with images, or glob match")
        paths.extend(found)
    return paths


def overlay(image: np.ndarray, colours: np.ndarray, opacity: float) -> np.ndarray:
    return np.clip((1 - opacity) * image + opacity * colours, 0, 255).astype(np.uint8)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("weights", help=".weights.h5 from training, mmseg .pth or DeepLab TF1 checkpoint")
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out-dir", default="outputs/predict")
    parser.add_argument("--opacity", type=float, default=0.5, help="colour weight in the overlay (0..1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not 0.0 <= args.opacity <= 1.0:
        raise UsageError(f"--opacity must be in [0, 1], received {args.opacity}")
    config = config_from_args(args)
    inputs = expand_inputs(args.inputs)
    model = build_for_inference(config, args.weights)
    colours = palette(config.data.dataset, config.model.num_classes)
    out = Path(args.out_dir)
    for path in inputs:
        image = read_image(path)
        labels = predict_labels(model, image[None].astype(np.float32))[0].numpy()
        write_png(out / f"{path.stem}_labels.png", labels.astype(np.uint8), overwrite=args.overwrite)
        write_png(out / f"{path.stem}_overlay.png", overlay(image, colorize(labels, colours), args.opacity),
                  overwrite=args.overwrite)
        present = ", ".join(str(c) for c in np.unique(labels))
        print(f"{path} -> {out / (path.stem + '_overlay.png')} (classes {present})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

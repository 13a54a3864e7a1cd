#!/usr/bin/env python
"""Segment images: for each input, a class-map PNG (class ids) and a colour overlay with the dataset palette.

    python tools/predict.py CONFIG WEIGHTS INPUT [INPUT ...] [--out-dir outputs/predict] [--opacity 0.5]
    python tools/predict.py --preset NAME INPUT [INPUT ...]      # released weights by name, downloaded once

WEIGHTS may also be a preset name (see keras_mv2seg.list_presets()).

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


def _output_arguments(parser):
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out-dir", default="outputs/predict")
    parser.add_argument("--opacity", type=float, default=0.5, help="colour weight in the overlay (0..1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if any(a == "--preset" or a.startswith("--preset=") for a in argv):
        from keras_mv2seg.weights.presets import list_presets

        parser.add_argument("--preset", required=True, choices=list_presets(), metavar="NAME",
                            help="a released model by name: " + ", ".join(list_presets()))
        _output_arguments(parser)
        return parser.parse_args(argv)
    add_config_arguments(parser)
    parser.add_argument("weights", help=".weights.h5 from training, mmseg .pth, DeepLab TF1 checkpoint or a preset name")
    _output_arguments(parser)
    args = parser.parse_args(argv)
    args.preset = None
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not 0.0 <= args.opacity <= 1.0:
        raise UsageError(f"--opacity must be in [0, 1], received {args.opacity}")
    inputs = expand_inputs(args.inputs)
    if args.preset:
        from keras_mv2seg.weights.presets import from_preset, preset_config

        config, model = preset_config(args.preset), from_preset(args.preset)
    else:
        config = config_from_args(args)
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

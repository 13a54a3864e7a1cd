#!/usr/bin/env python
"""Build every model of the table (and the official DeepLab ones), segment a generated street scene and write
each class map as a colour PNG. Weights are random (seeded) unless given with --weights CONFIG=FILE.

    python tools/demo.py [--configs NAME ...] [--weights NAME=FILE ...] [--output-dir outputs/demo]
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mv2seg  # noqa: E402
from keras_mv2seg.cli import run_main, write_png, UsageError  # noqa: E402
from keras_mv2seg.data.toy import synthetic_image  # noqa: E402
from keras_mv2seg.datasets_meta import colorize, palette_of  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=None, help="config names (default: all)")
    parser.add_argument("--weights", nargs="*", default=[], metavar="NAME=FILE",
                        help="weights for a config: .pth, TF1 checkpoint prefix or .weights.h5")
    parser.add_argument("--output-dir", default="outputs/demo", help="where the PNGs go (files the demo wrote "
                        "before are replaced)")
    parser.add_argument("--size", nargs=2, type=int, default=(256, 512), metavar=("H", "W"))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    names = args.configs or keras_mv2seg.list_configs()
    weights = {}
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep:
            raise UsageError(f"--weights expects NAME=FILE, received {item!r}")
        weights[name] = path
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise UsageError(f"--weights names configs that are not being run: {unknown}")
    out = Path(args.output_dir)
    image = synthetic_image(*args.size)
    write_png(out / "input.png", image[0].astype(np.uint8), overwrite=True)
    print(f"{'config':48s} {'params':>8s} {'ms':>7s}  classes  weights")
    for name in names:
        cfg = keras_mv2seg.get_config(name)
        keras.utils.set_random_seed(0)
        model = keras_mv2seg.build_segmenter(cfg)
        source = "random"
        if name in weights:
            keras_mv2seg.load_weights(model, weights[name])
            source = weights[name]
        model(image[:, :64, :64], training=False)  # build and trace once
        start = time.perf_counter()
        logits = np.asarray(model(image, training=False))
        elapsed = 1000 * (time.perf_counter() - start)
        labels = logits[0].argmax(-1)
        write_png(out / f"{name}.png", colorize(labels, palette_of(cfg)),
                  overwrite=True)
        params = sum(int(np.prod(w.shape)) for w in model.trainable_weights) / 1e6
        print(f"{name:48s} {params:7.2f}M {elapsed:7.1f}  {len(np.unique(labels)):7d}  {source}")
    print(f"wrote {len(names) + 1} PNGs to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

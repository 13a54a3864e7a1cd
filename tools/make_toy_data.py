#!/usr/bin/env python
"""Write the built-in toy scenes (no download) in a dataset layout: to try the tools, or to see what a layout
looks like before arranging your own data in it.

    python tools/make_toy_data.py ROOT [--layout cityscapes|ade20k|pascal_voc|custom] [--train 48] [--val 12]

``custom`` writes a user's own dataset as Common Semantic Segmentation: ``dataset_meta.json`` (four classes of
its own with their colours), ``train/`` and ``val/`` subset folders of ``images/`` and RGB colour ``masks/``.
An existing toy dataset with the same settings is reused; any other non-empty folder is refused.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mv2seg.cli import run_main  # noqa: E402
from keras_mv2seg.data.toy import LAYOUTS, make_toy_dataset  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--layout", default="cityscapes", choices=LAYOUTS)
    parser.add_argument("--train", type=int, default=48, help="training images (default 48)")
    parser.add_argument("--val", type=int, default=12, help="validation images (default 12)")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    root = make_toy_dataset(args.root, args.layout, train=args.train, val=args.val, height=args.size[0],
                            width=args.size[1])
    print(f"{args.layout} toy dataset in {root} ({args.train} train + {args.val} val images)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

#!/usr/bin/env python
"""Convert an deeplab checkpoint to Keras weights for a named config and print the numeric checks it ran.

Example:
    python tools/convert_deeplab.py CONFIG CHECKPOINT [--output out.weights.h5] [--input x.npy --reference y.npy]
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mv2seg.cli import convert_main, run_main


def main(argv=None) -> int:
    return convert_main(sys.argv[1:] if argv is None else argv, "deeplab")


if __name__ == "__main__":
    sys.exit(run_main(main))

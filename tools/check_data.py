#!/usr/bin/env python
"""Check a dataset in its standard layout; prints every problem (one line each, naming the file).
Exit status 0 only when the dataset is clean.

    python tools/check_data.py --dataset cityscapes|ade20k|pascal_voc DATA_ROOT [--splits train val]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mv2seg.data.check import check_dataset  # noqa: E402
from keras_mv2seg.cli import run_main  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=("cityscapes", "ade20k", "pascal_voc"))
    parser.add_argument("data_root")
    parser.add_argument("--splits", nargs="*", help="default: train and val (ADE20K: training and validation; "
                        "PASCAL VOC: also train_aug, trainval)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    checked, problems = check_dataset(args.dataset, args.data_root, args.splits)
    for problem in problems:
        print(problem)
    print(f"{checked} samples checked, {len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(run_main(main))

#!/usr/bin/env python
"""Check a dataset in its standard layout; prints a per-class table of each split (pixel share, images holding
the class, share ignored), every problem (one line each, naming the file) and warnings about settings that
would silently train on nothing (masks of only 0 and the ignore index, mostly ignored pixels, classes that never
occur). Exit status 0 only when the dataset has no problem (warnings do not change it).

    python tools/check_data.py --dataset cityscapes|ade20k|pascal_voc|custom DATA_ROOT [--splits train val]

A custom dataset (your own images and masks) is described by DATA_ROOT/dataset_meta.json (docs/own_data.md).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mv2seg.data.check import check_dataset  # noqa: E402
from keras_mv2seg.cli import run_main  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=("cityscapes", "ade20k", "pascal_voc", "custom"))
    parser.add_argument("data_root")
    parser.add_argument("--splits", nargs="*", help="default: train and val (ADE20K: training and validation; "
                        "PASCAL VOC: also train_aug, trainval)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    report = check_dataset(args.dataset, args.data_root, args.splits)
    for split in report.counts:
        print("\n".join(report.table(split)))
    for problem in report.problems:
        print(problem)
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(f"{report.checked} samples checked, {len(report.problems)} problem(s), {len(report.warnings)} warning(s)")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(run_main(main))

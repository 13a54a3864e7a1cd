#!/usr/bin/env python
"""Write DeepLab-format TFRecords from a dataset in its standard layout (labels stored as training ids).

    python tools/make_tfrecords.py --dataset cityscapes|ade20k|pascal_voc|custom DATA_ROOT --split train --output DIR/train [--shards 4]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mv2seg.data.layouts import list_samples  # noqa: E402
from keras_mv2seg.data.tfrecord import write_tfrecords  # noqa: E402
from keras_mv2seg.cli import run_main  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=("cityscapes", "ade20k", "pascal_voc", "custom"))
    parser.add_argument("data_root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--output", required=True, help="output prefix: <prefix>-0000i-of-0000n.tfrecord")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--reduce-zero-label", action="store_true", help="ADE20K for the mmseg configs: 0 -> 255")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    samples, _ = list_samples(args.dataset, args.data_root, args.split)
    paths = write_tfrecords(samples, args.output, args.shards, reduce_zero_label=args.reduce_zero_label,
                            overwrite=args.overwrite)
    print(f"wrote {len(samples)} examples to {len(paths)} shard(s): {paths[0]} ...")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

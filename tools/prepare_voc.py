#!/usr/bin/env python
"""Build PASCAL VOC 2012's "train_aug" split from SBD, as mmseg's voc_aug.py and the official DeepLab do: SBD's
``cls/*.mat`` class maps become grayscale index PNGs in ``VOC2012/SegmentationClassAug`` and
``ImageSets/Segmentation/train_aug.txt`` lists SBD train + val + VOC train minus VOC val (10582 ids on the full
data). Identical existing files are kept; different ones are replaced only with --overwrite. Needs scipy
(``pip install -e '.[voc]'``).

    python tools/prepare_voc.py VOC_ROOT SBD_ROOT [--overwrite]

VOC_ROOT: the folder holding VOCdevkit/ (or VOCdevkit or VOC2012 itself); SBD_ROOT: the unpacked benchmark.tgz
(benchmark_RELEASE/, or its dataset/ folder).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mv2seg.cli import run_main  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("voc_root")
    parser.add_argument("sbd_root")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files whose contents differ")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from keras_mv2seg.data.sbd import prepare_train_aug

    result = prepare_train_aug(args.sbd_root, args.voc_root, overwrite=args.overwrite, log=print)
    print(f"{result['sbd_annotations']} SBD annotations -> {result['label_folder']} ({result['written']} written, "
          f"the rest already there); {result['train_aug']} ids in {result['split_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

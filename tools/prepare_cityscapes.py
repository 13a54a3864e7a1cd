#!/usr/bin/env python
"""Write Cityscapes ``*_gtFine_labelTrainIds.png`` from the polygon JSON files, with the official
``cityscapesscripts`` (as the reference does). Existing labelTrainIds files are kept unless --overwrite.

    python tools/prepare_cityscapes.py DATA_ROOT [--overwrite]
"""

import argparse
import sys
from pathlib import Path

from keras_mv2seg.cli import UsageError, run_main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root", help="folder holding gtFine/ (and leftImg8bit/)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing labelTrainIds files")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import numpy as np

    if not hasattr(np, "in1d"):  # cityscapesscripts 2.2/2.3 call np.in1d, which NumPy 2.4 removed
        np.in1d = np.isin
    try:
        from cityscapesscripts.preparation.json2labelImg import json2labelImg
    except ImportError:
        raise UsageError("tools/prepare_cityscapes.py needs cityscapesscripts: pip install -e '.[cityscapes]'")
    polygons = sorted(Path(args.data_root, "gtFine").rglob("*_gtFine_polygons.json"))
    if not polygons:
        raise FileNotFoundError(f"no *_gtFine_polygons.json under {Path(args.data_root, 'gtFine')}")
    written = skipped = 0
    for path in polygons:
        target = path.with_name(path.name.replace("_polygons.json", "_labelTrainIds.png"))
        if target.exists() and not args.overwrite:
            skipped += 1
            continue
        json2labelImg(str(path), str(target), "trainIds")
        written += 1
    print(f"{written} labelTrainIds written, {skipped} existing kept, from {len(polygons)} polygon files")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

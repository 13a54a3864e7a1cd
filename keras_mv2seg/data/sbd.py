"""The SBD "train_aug" augmentation of PASCAL VOC 2012, as the references build it.

The Semantic Boundaries Dataset (``benchmark_RELEASE/dataset``: ``cls/<id>.mat``, ``train.txt``, ``val.txt``)
annotates 11355 VOC images. Its class maps (``GTcls.Segmentation``, values 0..20, no boundary band) become
grayscale index PNGs in ``VOC2012/SegmentationClassAug`` (mmseg's ``tools/dataset_converters/voc_aug.py``, the
official DeepLab's ``SegmentationClassAug``), and ``ImageSets/Segmentation/train_aug.txt`` lists SBD train +
SBD val + VOC train minus VOC val: 10582 images on the full data. Reading ``.mat`` files needs scipy
(``pip install -e '.[voc]'``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_mv2seg.data.layouts import read_split_file, voc_base
from keras_mv2seg.datasets_meta import dataset_info
from keras_mv2seg.files import atomic_write

VOC_CLASSES = len(dataset_info("pascal_voc").classes)


def sbd_dataset_dir(sbd_root) -> Path:
    """The SBD folder holding ``cls/`` and ``train.txt``: ``sbd_root`` itself, ``dataset/`` or
    ``benchmark_RELEASE/dataset/`` under it."""
    root = Path(sbd_root)
    for folder in (root, root / "dataset", root / "benchmark_RELEASE" / "dataset"):
        if (folder / "cls").is_dir() and (folder / "train.txt").is_file():
            return folder
    raise FileNotFoundError(f"{root}: no SBD dataset (expected cls/*.mat and train.txt, val.txt here, in dataset/ or "
                            "in benchmark_RELEASE/dataset/)")


def read_sbd_class_map(path) -> np.ndarray:
    """uint8 [H, W] class map of an SBD ``cls/<id>.mat`` (``GTcls.Segmentation``); errors name the file."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ImportError("reading SBD .mat files needs scipy: pip install -e '.[voc]'") from None
    try:
        record = loadmat(os.fspath(path), squeeze_me=True, struct_as_record=False)["GTcls"]
        segmentation = np.asarray(record.Segmentation)
    except (KeyError, AttributeError) as error:
        raise ValueError(f"{path}: not an SBD class annotation (no GTcls.Segmentation: {error})") from None
    except Exception as error:  # scipy raises several types for corrupt files
        raise ValueError(f"{path}: cannot read the .mat file ({type(error).__name__}: {error})") from None
    if segmentation.ndim != 2:
        raise ValueError(f"{path}: GTcls.Segmentation has shape {segmentation.shape}, expected [height, width]")
    values = np.unique(segmentation)
    if values.min() < 0 or values.max() >= VOC_CLASSES:
        raise ValueError(f"{path}: class values {values[(values < 0) | (values >= VOC_CLASSES)][:10].tolist()} "
                         f"outside 0..{VOC_CLASSES - 1}")
    return segmentation.astype(np.uint8)


def _write_if_new(path: Path, data: bytes, overwrite: bool) -> bool:
    """Write ``data`` unless an identical file exists; a different existing file needs ``overwrite``."""
    if path.is_file():
        if path.read_bytes() == data:
            return False
        if not overwrite:
            raise FileExistsError(f"{path} exists with other contents; pass overwrite=True (--overwrite) to replace it")
    atomic_write(path, data)
    return True


def prepare_train_aug(sbd_root, voc_root, *, overwrite: bool = False, log=None) -> dict:
    """Convert SBD's class maps into ``SegmentationClassAug`` and write ``train_aug.txt``; returns counts."""
    import tensorflow as tf

    sbd = sbd_dataset_dir(sbd_root)
    base = voc_base(Path(voc_root))
    lists = base / "ImageSets" / "Segmentation"
    problems: list[str] = []
    split_ids = {}
    for name, path in (("sbd train", sbd / "train.txt"), ("sbd val", sbd / "val.txt"), ("voc train", lists / "train.txt"),
                       ("voc val", lists / "val.txt")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing split file ({name})")
        split_ids[name] = read_split_file(path, problems)
    sbd_ids = sorted(set(split_ids["sbd train"]) | set(split_ids["sbd val"]))
    missing = [i for i in sbd_ids if not (sbd / "cls" / f"{i}.mat").is_file()]
    missing = [f"{sbd / 'cls' / (i + '.mat')}: missing annotation of an id listed in SBD's split files" for i in missing]
    no_image = [f"{base / 'JPEGImages' / (i + '.jpg')}: no VOC image for SBD id {i}" for i in sbd_ids
                if not (base / "JPEGImages" / f"{i}.jpg").is_file()]
    problems += missing + no_image
    if problems:
        raise ValueError(f"cannot build train_aug, {len(problems)} problem(s):\n  " + "\n  ".join(problems[:50])
                         + (f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""))
    out = base / "SegmentationClassAug"
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for count, image_id in enumerate(sbd_ids, 1):
        class_map = read_sbd_class_map(sbd / "cls" / f"{image_id}.mat")
        written += _write_if_new(out / f"{image_id}.png", tf.io.encode_png(class_map[..., None]).numpy(), overwrite)
        if log and count % 1000 == 0:
            log(f"{count}/{len(sbd_ids)} SBD annotations converted")
    train_aug = sorted((set(sbd_ids) | set(split_ids["voc train"])) - set(split_ids["voc val"]))
    _write_if_new(lists / "train_aug.txt", "".join(f"{i}\n" for i in train_aug).encode(), overwrite)
    return {"sbd_annotations": len(sbd_ids), "written": written, "train_aug": len(train_aug),
            "split_file": str(lists / "train_aug.txt"), "label_folder": str(out)}

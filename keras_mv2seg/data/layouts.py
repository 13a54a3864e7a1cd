"""Standard dataset directory layouts: listing (image, label) pairs and checking them.

* Cityscapes: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
  ``gtFine/{split}/{city}/*_gtFine_labelTrainIds.png``; where only ``*_gtFine_labelIds.png`` exist, the
  pipeline maps label ids to train ids (255 for ignored ids).
* ADE20K: ``ADEChallengeData2016/images/{training,validation}/*.jpg`` with
  ``ADEChallengeData2016/annotations/{training,validation}/*.png`` (0 = other; reduced to 255, L -> L - 1).
* PASCAL VOC 2012: ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg`` for the ids listed in
  ``ImageSets/Segmentation/<split>.txt`` (train, val, trainval; ``train_aug.txt`` as written by
  ``tools/prepare_voc.py``, mmseg's ``trainaug.txt`` accepted), each labelled by the first of
  ``SegmentationClass/<id>.png`` (the official palette PNGs), ``SegmentationClassRaw/<id>.png`` (DeepLab's
  ``remove_gt_colormap.py``), ``SegmentationClassAug/<id>.png`` (SBD, by ``tools/prepare_voc.py``) that exists
  -- for ``train_aug`` this is mmseg's pascal_voc12_aug: VOC's own label for the VOC train images, SBD's for
  the rest. The root may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself or ``VOC2012``.

* ``custom`` (a user's own data, described by ``dataset_meta.json`` -- see ``description.py``), in one of:
  Common Semantic Segmentation (``images/`` + ``masks/``, flat with split files, as ``images/{split}`` +
  ``masks/{split}``, or as subset folders ``{split}/images`` + ``{split}/masks``); mmseg's
  ``img_dir/{split}/*{img_suffix}`` + ``ann_dir/{split}/*{seg_map_suffix}``; CVAT's segmentation-mask export
  (``JPEGImages/``, ``SegmentationClass/``, ``ImageSets/Segmentation/{split}.txt``, ``labelmap.txt``). A mask
  belongs to the image with the same path below its folder, the suffixes swapped.

The toy dataset is written in the Cityscapes layout (``dataset="toy"``). Split names and aliases, label kinds
and classes are in ``datasets_meta.DATASETS``; label kinds are decoded by ``decode.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keras_mv2seg.data.description import DatasetDescription, read_description
from keras_mv2seg.datasets_meta import split_name

VOC_LABEL_FOLDERS = ("SegmentationClass", "SegmentationClassRaw", "SegmentationClassAug")
_VOC_SPLIT_FILES = {"train_aug": ("train_aug.txt", "trainaug.txt")}


@dataclass(frozen=True)
class Sample:
    image: str
    label: str
    name: str  # for messages, records and output files: the image's path relative to the dataset root (VOC: its id)
    label_kind: str  # one of decode.LABEL_KINDS
    coding: DatasetDescription | None = None  # custom datasets: how the masks encode classes


def _cityscapes(root: Path, split: str, problems: list[str]) -> list[Sample]:
    images_dir = root / "leftImg8bit" / split
    if not images_dir.is_dir():
        problems.append(f"{images_dir}: missing folder (expected leftImg8bit/{split}/<city>/*_leftImg8bit.png)")
        return []
    samples = []
    for image in sorted(images_dir.glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        label_dir = root / "gtFine" / split / image.parent.name
        train_ids = label_dir / f"{stem}_gtFine_labelTrainIds.png"
        label_ids = label_dir / f"{stem}_gtFine_labelIds.png"
        name = str(image.relative_to(root))
        if train_ids.is_file():
            samples.append(Sample(str(image), str(train_ids), name, "train_ids"))
        elif label_ids.is_file():
            samples.append(Sample(str(image), str(label_ids), name, "label_ids"))
        else:
            problems.append(f"{image}: no label ({train_ids.name} or {label_ids.name} in {label_dir})")
    if not samples and not problems:
        problems.append(f"{images_dir}: no *_leftImg8bit.png images in any city folder")
    return samples


def _ade20k(root: Path, split: str, problems: list[str]) -> list[Sample]:
    base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
    images_dir, labels_dir = base / "images" / split, base / "annotations" / split
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            problems.append(f"{folder}: missing folder (expected ADEChallengeData2016/{{images,annotations}}/{split})")
    if problems:
        return []
    samples = []
    for image in sorted(images_dir.glob("*.jpg")):
        label = labels_dir / f"{image.stem}.png"
        if label.is_file():
            samples.append(Sample(str(image), str(label), str(image.relative_to(base)), "ade20k"))
        else:
            problems.append(f"{image}: no annotation {label}")
    labelled = {Path(s.label).name for s in samples}
    for label in sorted(labels_dir.glob("*.png")):
        if label.name not in labelled and not (images_dir / f"{label.stem}.jpg").is_file():
            problems.append(f"{label}: annotation without an image {images_dir / (label.stem + '.jpg')}")
    if not samples and not problems:
        problems.append(f"{images_dir}: no *.jpg images")
    return samples


def voc_base(root: Path) -> Path:
    """The ``VOC2012`` folder under a root given as its parent's parent, its parent or itself."""
    for base in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (base / "JPEGImages").is_dir() or (base / "ImageSets").is_dir():
            return base
    return root / "VOCdevkit" / "VOC2012"


def read_split_file(path: Path, problems: list[str]) -> list[str]:
    """Image ids of a VOC split file (one per line, blank lines ignored; a repeated id is a problem)."""
    ids, seen = [], set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        image_id = line.strip().split(" ")[0] if line.strip() else ""
        if not image_id:
            continue
        if image_id in seen:
            problems.append(f"{path}:{number}: id {image_id} is listed twice")
            continue
        seen.add(image_id)
        ids.append(image_id)
    return ids


def _pascal_voc(root: Path, split: str, problems: list[str]) -> list[Sample]:
    base = voc_base(root)
    lists = base / "ImageSets" / "Segmentation"
    candidates = [lists / name for name in _VOC_SPLIT_FILES.get(split, (f"{split}.txt",))]
    split_file = next((path for path in candidates if path.is_file()), None)
    if split_file is None:
        hint = " (tools/prepare_voc.py writes it from SBD)" if split == "train_aug" else ""
        problems.append(f"{candidates[0]}: missing split file{hint} (expected VOCdevkit/VOC2012/ImageSets/"
                        f"Segmentation/{candidates[0].name})")
        return []
    samples = []
    for image_id in read_split_file(split_file, problems):
        image = base / "JPEGImages" / f"{image_id}.jpg"
        label = next((base / folder / f"{image_id}.png" for folder in VOC_LABEL_FOLDERS
                      if (base / folder / f"{image_id}.png").is_file()), None)
        if not image.is_file():
            problems.append(f"{image}: missing image of id {image_id} listed in {split_file}")
        elif label is None:
            problems.append(f"{image}: no label {image_id}.png in any of {', '.join(VOC_LABEL_FOLDERS)} "
                            f"(id listed in {split_file})")
        else:
            samples.append(Sample(str(image), str(label), image_id, "voc"))
    if not samples and not problems:
        problems.append(f"{split_file}: lists no image ids")
    return samples


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def custom_layout(root: Path, description: DatasetDescription) -> str:
    """The layout of a custom dataset: the description's ``layout``, else detected from the folders."""
    if description.layout:
        return description.layout
    if (root / "img_dir").is_dir():
        return "mmseg"
    if (root / "JPEGImages").is_dir() or (root / "SegmentationClass").is_dir():
        return "cvat"
    return "common"


def _files(folder: Path, suffixes, problems: list[str], source: str) -> dict[str, Path]:
    """id (path below ``folder`` without the suffix) -> file, for files ending in one of ``suffixes``; two files
    of one id (``a.jpg`` and ``a.png``) are a problem."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        suffix = next((s for s in suffixes if path.name.lower().endswith(s.lower())), None)
        if not suffix or not path.is_file():
            continue
        file_id = str(path.relative_to(folder))[: -len(suffix)]
        if file_id in found:
            problems.append(f"{path}: and {found[file_id].name} are two files of id {file_id!r}; set img_suffix "
                            f"in {source}")
            continue
        found[file_id] = path
    return found


_NAMED_IDS = 5  # ids without an image named one by one; the rest counted


def _pairs(root: Path, images_dir: Path, masks_dir: Path, description: DatasetDescription, problems: list[str],
           ids: list[str] | None = None, id_source: str = "", default_image_suffix: str = "") -> list[Sample]:
    missing = [f"{folder}: missing folder" for folder in (images_dir, masks_dir) if not folder.is_dir()]
    if missing:
        problems += missing
        return []
    suffix = description.img_suffix or default_image_suffix
    image_suffixes = (suffix,) if suffix else IMAGE_SUFFIXES
    images = _files(images_dir, image_suffixes, problems, description.source)
    masks = _files(masks_dir, (description.seg_map_suffix,), problems, description.source)
    samples, unmatched = [], []
    listed = f" (listed in {id_source})" if id_source else ""
    for image_id in ids if ids is not None else sorted(images):
        image, mask = images.get(image_id), masks.get(image_id)
        if image is None:
            unmatched.append(image_id)
            if len(unmatched) <= _NAMED_IDS:  # a file of ids that is not one is quoted in a short excerpt only
                problems.append(f"{images_dir / image_id[:80]}: no image of id {image_id[:80]!r}{listed} "
                                f"(expected {'/'.join(image_suffixes)})")
        elif mask is None:
            problems.append(f"{image}: no mask {masks_dir / (image_id + description.seg_map_suffix)}")
        else:
            samples.append(Sample(str(image), str(mask), str(image.relative_to(root)), "custom", description))
    if len(unmatched) > _NAMED_IDS:
        problems.append(f"{images_dir}: {len(unmatched) - _NAMED_IDS} more ids{listed} have no image")
    if ids is None:
        for mask_id in sorted(set(masks) - set(images)):
            problems.append(f"{masks[mask_id]}: mask without an image {images_dir / mask_id}.*")
    if not samples and not problems:
        problems.append(f"{images_dir}: no images ({'/'.join(image_suffixes)})")
    return samples


def _custom(root: Path, split: str, problems: list[str]) -> list[Sample]:
    try:
        description = read_description(root)
    except ValueError as error:
        problems.append(str(error))
        return []
    layout = custom_layout(root, description)
    split_files = dict(description.splits)
    if layout == "cvat":
        split_files.setdefault(split, str(root / "ImageSets" / "Segmentation" / f"{split}.txt"))
    ids, id_source = None, ""
    if split in split_files:
        id_source = split_files[split]
        if not Path(id_source).is_file():
            problems.append(f"{id_source}: missing split file of split {split!r}")
            return []
        ids = read_split_file(Path(id_source), problems)
    if layout == "cvat":
        return _pairs(root, root / "JPEGImages", root / "SegmentationClass", description, problems, ids, id_source)
    if layout == "mmseg":
        images, masks = root / "img_dir", root / "ann_dir"
        if ids is None:
            images, masks = images / split, masks / split
        return _pairs(root, images, masks, description, problems, ids, id_source, default_image_suffix=".jpg")
    if ids is not None:
        return _pairs(root, root / "images", root / "masks", description, problems, ids, id_source)
    for images, masks in ((root / split / "images", root / split / "masks"),
                          (root / "images" / split, root / "masks" / split)):
        if images.is_dir():
            return _pairs(root, images, masks, description, problems)
    found = sorted(p.parent.name for p in root.glob("*/images")) + sorted(
        p.name for p in (root / "images").glob("*") if p.is_dir())
    problems.append(f"{root}: no split {split!r} (expected {split}/images + {split}/masks, images/{split} + "
                    f"masks/{split}, or a file of ids under \"splits\" in {description.source}); found "
                    f"{found or 'no split folders'}")
    return []


_LAYOUTS = {"cityscapes": _cityscapes, "toy": _cityscapes, "ade20k": _ade20k, "pascal_voc": _pascal_voc,
            "custom": _custom}


def list_samples(dataset: str, root, split: str, *, strict: bool = True) -> tuple[list[Sample], list[str]]:
    """(samples, problems) of ``split``; with ``strict`` any problem raises one error listing all of them."""
    split = split_name(dataset, split)
    root = Path(root)
    problems: list[str] = []
    if not root.is_dir():
        problems.append(f"{root}: dataset root does not exist")
        samples = []
    else:
        samples = _LAYOUTS[dataset](root, split, problems)
    if strict and problems:
        raise ValueError(f"{dataset} dataset at {root} ({split}) has {len(problems)} problem(s):\n  "
                         + "\n  ".join(problems))
    return samples, problems

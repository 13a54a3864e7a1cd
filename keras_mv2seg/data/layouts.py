"""Standard dataset directory layouts: listing (image, label) pairs and checking them.

* Cityscapes: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
  ``gtFine/{split}/{city}/*_gtFine_labelTrainIds.png``; where only ``*_gtFine_labelIds.png`` exist, the
  pipeline maps label ids to train ids (255 for ignored ids).
* ADE20K: ``ADEChallengeData2016/images/{training,validation}/*.jpg`` with
  ``ADEChallengeData2016/annotations/{training,validation}/*.png`` (0 = other; reduced to 255, L -> L - 1).

The toy dataset is written in the Cityscapes layout (``dataset="toy"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = {"cityscapes": ("train", "val", "test"), "toy": ("train", "val"),
          "ade20k": ("training", "validation")}
_SPLIT_ALIASES = {"ade20k": {"train": "training", "val": "validation"}}


@dataclass(frozen=True)
class Sample:
    image: str
    label: str
    name: str  # for messages and output files: path of the image relative to the dataset root
    label_kind: str  # "train_ids" (Cityscapes labelTrainIds / toy), "label_ids" (Cityscapes labelIds), "ade20k"


def split_name(dataset: str, split: str) -> str:
    split = _SPLIT_ALIASES.get(dataset, {}).get(split, split)
    if dataset not in SPLITS:
        raise ValueError(f"unknown dataset layout {dataset!r}; known: {sorted(SPLITS)}")
    if split not in SPLITS[dataset]:
        raise ValueError(f"{dataset} has splits {SPLITS[dataset]}, received {split!r}")
    return split


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


def list_samples(dataset: str, root, split: str, *, strict: bool = True) -> tuple[list[Sample], list[str]]:
    """(samples, problems) of ``split``; with ``strict`` any problem raises one error listing all of them."""
    split = split_name(dataset, split)
    root = Path(root)
    problems: list[str] = []
    if not root.is_dir():
        problems.append(f"{root}: dataset root does not exist")
        samples = []
    elif dataset in ("cityscapes", "toy"):
        samples = _cityscapes(root, split, problems)
    else:
        samples = _ade20k(root, split, problems)
    if strict and problems:
        raise ValueError(f"{dataset} dataset at {root} ({split}) has {len(problems)} problem(s):\n  "
                         + "\n  ".join(problems))
    return samples, problems

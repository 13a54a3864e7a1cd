"""Validate a dataset in its standard layout and report every problem at once, one line per file; count the
classes of every split and warn about the settings that would silently train on nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from keras_mv2seg.data.decode import map_label, read_image, read_label
from keras_mv2seg.data.layouts import list_samples
from keras_mv2seg.datasets_meta import LABEL_VALUES, class_names, dataset_info

MOSTLY_IGNORED = 0.5  # warn when more than this share of a split's pixels is ignored


@dataclass
class SplitCounts:
    """Per training id: pixels and images holding it; and the ignored and total pixels of one split."""

    pixels: np.ndarray
    images: np.ndarray
    ignored: int = 0
    total: int = 0
    values: set = field(default_factory=set)  # the training-id values seen, ignore index included

    def add(self, label: np.ndarray, ignore_index: int):
        values, counts = np.unique(label, return_counts=True)
        self.values |= set(values.tolist())
        self.total += int(label.size)
        for value, count in zip(values.tolist(), counts.tolist()):
            if value == ignore_index:
                self.ignored += count
            elif value < len(self.pixels):
                self.pixels[value] += count
                self.images[value] += 1


@dataclass
class DatasetCheck:
    """What :func:`check_dataset` found; unpacks as ``(checked, problems)``."""

    checked: int
    problems: list[str]
    counts: dict[str, SplitCounts]
    warnings: list[str]
    classes: tuple[str, ...]

    def __iter__(self):
        yield self.checked
        yield self.problems

    def table(self, split: str) -> list[str]:
        """Lines of the per-class table of ``split``: id, name, pixel share, images holding the class."""
        counts = self.counts[split]
        valid = max(counts.total - counts.ignored, 1)
        lines = [f"{split}: {counts.total} pixels, {100 * counts.ignored / max(counts.total, 1):.1f}% ignored",
                 f"  {'id':>3s} {'class':24s} {'pixels %':>9s} {'images':>7s}"]
        for index, name in enumerate(self.classes):
            lines.append(f"  {index:3d} {name[:24]:24s} {100 * counts.pixels[index] / valid:9.2f} "
                         f"{int(counts.images[index]):7d}")
        return lines


@dataclass(frozen=True)
class _Advice:
    """What a warning tells the user to change: where the ignore index is set, the setting that fixes an ignored
    or missing foreground, and the fix for binary 0/ignore masks."""

    ignore_key: str
    setting: str
    binary_fix: str


_CONFIG_ADVICE = _Advice("data.ignore_index", "data.ignore_index", "write the foreground as class id 1, or set "
                         "data.ignore_index to a value the masks do not use")


def _description_advice(source: str) -> _Advice:
    value_map = f"value_map in {source}, e.g. {{\"255\": 1}}"
    return _Advice("ignore_index", value_map, f"map it to class 1 with {value_map}")


def _dataset_classes(dataset: str, root, problems: list[str]):
    """(class names, ignore index, reduce_zero_label, background class, advice) of ``dataset`` at ``root``: a
    custom dataset's from its description (a problem, and no classes, when it cannot be read)."""
    if dataset != "custom":
        return tuple(class_names(dataset, len(dataset_info(dataset).classes))), None, None, None, _CONFIG_ADVICE
    from keras_mv2seg.data.description import read_description

    try:
        description = read_description(root)
    except ValueError as error:
        problems.append(str(error))
        return (), None, None, None, None
    return (description.classes, description.ignore_index, description.reduce_zero_label, description.background,
            _description_advice(description.source))


def check_dataset(dataset: str, root, splits=None, *, ignore_index: int = 255,
                  reduce_zero_label: bool = False) -> DatasetCheck:
    """Check the layout (for split-file layouts: every listed id has its image and label), that every image
    decodes as RGB, every label as a class map of the image's size in its label kind's format, and that label
    values are valid for the label kind (a custom dataset: class ids of its description or its ignore index,
    after its value map); count each class per split (training ids), and warn when the masks hold only 0 and
    the ignore index, when most pixels are ignored, or when a class never occurs in the first split. Default
    splits: the first two of the dataset (train and val). A custom dataset's classes, ignore index and
    reduce_zero_label come from its ``dataset_meta.json``. Unpacks as (checked, problems)."""
    problems: list[str] = []
    classes, own_ignore, own_reduce, background, advice = _dataset_classes(dataset, root, problems)
    if own_ignore is not None:
        ignore_index, reduce_zero_label = own_ignore, own_reduce
    counts: dict[str, SplitCounts] = {}
    checked = 0
    for split in (splits or dataset_info(dataset).splits[:2]) if classes else ():
        samples, layout_problems = list_samples(dataset, root, split, strict=False)
        problems += layout_problems
        split_counts = counts[split] = SplitCounts(np.zeros(len(classes), np.int64), np.zeros(len(classes), np.int64))
        for sample in samples:
            checked += 1
            try:  # grayscale and RGBA images are converted to RGB by the pipeline (documented): not a problem
                image = read_image(sample.image)
                label = read_label(sample.label, sample.label_kind, sample.coding)
            except ValueError as error:
                problems.append(str(error))
                continue
            if label.shape[:2] != image.shape[:2]:
                problems.append(f"{sample.label}: size {label.shape[1]}x{label.shape[0]} differs from its image "
                                f"{image.shape[1]}x{image.shape[0]}")
            mapped = np.asarray(map_label(label, sample.label_kind, reduce_zero_label, sample.coding))
            if sample.coding is not None:
                bad = sorted(set(np.unique(mapped).tolist()) - set(range(len(classes))) - {ignore_index})
                if bad:
                    problems.append(f"{sample.label}: mask values {bad[:10]} are neither class ids (0.."
                                    f"{len(classes) - 1}, {sample.coding.source}) nor the ignore index "
                                    f"{ignore_index}; map them with value_map, e.g. {{\"{bad[0]}\": 1}}")
                    continue
            else:
                bad = sorted(set(np.unique(label).tolist()) - LABEL_VALUES[sample.label_kind])
                if bad:
                    problems.append(f"{sample.label}: label values {bad[:10]} are not valid {sample.label_kind}")
                    continue
            split_counts.add(mapped, ignore_index)
    return DatasetCheck(checked, problems, counts, _warnings(counts, classes, ignore_index, advice, background),
                        classes)


def nothing_to_learn(split: str, counts: SplitCounts, classes, background: int | None, setting: str) -> str | None:
    """Why training on ``counts`` would learn nothing -- every pixel ignored, or no pixel of a class other than
    the background -- naming the setting to change; None when there is something to learn."""
    if counts.total and counts.ignored == counts.total:
        return (f"{split}: every pixel is ignored, training on it learns nothing; check the masks' values "
                f"against the ignore index (or set {setting})")
    if background is not None and counts.total and counts.pixels.sum() == counts.pixels[background]:
        return (f"{split}: no pixel belongs to a class other than the background ({classes[background]}); "
                f"masks saved as 0/255 need {setting}")
    return None


def _warnings(counts: dict[str, SplitCounts], classes, ignore_index: int, advice: _Advice,
              background: int | None = None) -> list[str]:
    found = []
    for split, split_counts in counts.items():
        if not split_counts.total:
            continue
        if split_counts.values == {0, ignore_index}:
            found.append(f"{split}: the masks hold only 0 and {ignore_index}, and {ignore_index} is the ignore index "
                         f"({advice.ignore_key}): the foreground of such binary masks is never learnt -- "
                         f"{advice.binary_fix}")
        share = split_counts.ignored / split_counts.total
        empty = nothing_to_learn(split, split_counts, classes, background, advice.setting)
        if empty:
            found.append(empty)
        elif share > MOSTLY_IGNORED:
            found.append(f"{split}: {100 * share:.1f}% of the pixels are ignored (value {ignore_index}): little "
                         f"is left to learn from; check the label values (or {advice.setting})")
    split, first = next(iter(counts.items()), (None, None))
    if first is not None and first.total:
        missing = [f"{index} {name}" for index, name in enumerate(classes) if not first.images[index]]
        if missing:
            found.append(f"{split}: {len(missing)} of {len(classes)} classes never occur: {', '.join(missing[:20])}"
                         + (" ..." if len(missing) > 20 else ""))
    return found


def training_split_problem(config, data_root=None) -> str | None:
    """For a custom dataset: why its training split would train on nothing (see :func:`nothing_to_learn`,
    reading the masks only), else None. Other datasets: None (their layouts are the references')."""
    if config.data.dataset != "custom":
        return None
    root = data_root or config.data.data_root
    samples, _ = list_samples("custom", root, config.data.train_split)
    description = samples[0].coding
    counts = SplitCounts(np.zeros(description.num_classes, np.int64), np.zeros(description.num_classes, np.int64))
    for sample in samples:
        label = read_label(sample.label, sample.label_kind, sample.coding)
        counts.add(np.asarray(map_label(label, "custom", False, description)), description.ignore_index)
    return nothing_to_learn(config.data.train_split, counts, description.classes, description.background,
                            _description_advice(description.source).setting)

"""Validate a dataset in its standard layout and report every problem at once, one line per file."""

from __future__ import annotations

import numpy as np

from keras_mv2seg.data.decode import VALID_VALUES, read_image, read_label
from keras_mv2seg.data.layouts import list_samples
from keras_mv2seg.datasets_meta import dataset_info


def check_dataset(dataset: str, root, splits=None) -> tuple[int, list[str]]:
    """(number of samples checked, problems). Checks the layout (for split-file layouts: every listed id has
    its image and label), that every image decodes as RGB, every label as a class map of the image's size in
    its label kind's format, and that label values are valid for the label kind. Default splits: the first two
    of the dataset (train and val)."""
    problems: list[str] = []
    checked = 0
    for split in splits or dataset_info(dataset).splits[:2]:
        samples, layout_problems = list_samples(dataset, root, split, strict=False)
        problems += layout_problems
        for sample in samples:
            checked += 1
            try:  # grayscale and RGBA images are converted to RGB by the pipeline (documented): not a problem
                image = read_image(sample.image)
                label = read_label(sample.label, sample.label_kind)
            except ValueError as error:
                problems.append(str(error))
                continue
            if label.shape[:2] != image.shape[:2]:
                problems.append(f"{sample.label}: size {label.shape[1]}x{label.shape[0]} differs from its image "
                                f"{image.shape[1]}x{image.shape[0]}")
            bad = sorted(set(np.unique(label).tolist()) - VALID_VALUES[sample.label_kind])
            if bad:
                problems.append(f"{sample.label}: label values {bad[:10]} are not valid {sample.label_kind}")
    return checked, problems

"""Validate a dataset in its standard layout and report every problem at once, one line per file."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_mv2seg.data.layouts import SPLITS, list_samples

# label values allowed in the files, per label kind
VALID_LABELS = {
    "train_ids": set(range(19)) | {255},
    "label_ids": set(range(34)) | {255},  # Cityscapes labelIds; 255 holds 'license plate' (-1)
    "ade20k": set(range(151)),
}


def check_dataset(dataset: str, root, splits=None) -> tuple[int, list[str]]:
    """(number of samples checked, problems). Checks the layout, that every image decodes as RGB, every label
    as one channel of the image's size, and that label values are valid for the label kind."""
    problems: list[str] = []
    checked = 0
    for split in splits or SPLITS["cityscapes" if dataset == "toy" else dataset][:2]:
        samples, layout_problems = list_samples(dataset, root, split, strict=False)
        problems += layout_problems
        for sample in samples:
            checked += 1
            try:
                image = tf.io.decode_image(tf.io.read_file(sample.image), expand_animations=False)
            except tf.errors.OpError as error:
                problems.append(f"{sample.image}: image does not decode ({error.message.splitlines()[0]})")
                continue
            # grayscale and RGBA images are converted to RGB by the pipeline (documented): not a problem
            data = tf.io.read_file(sample.label).numpy()
            if data[:4] == b"\x89PNG" and len(data) > 24 and data[24] != 8:
                problems.append(f"{sample.label}: {data[24]}-bit PNG, expected an 8-bit class map")
                continue
            try:
                label = tf.io.decode_png(data).numpy()
            except tf.errors.OpError as error:
                problems.append(f"{sample.label}: label does not decode as PNG ({error.message.splitlines()[0]})")
                continue
            if label.shape[-1] != 1:
                problems.append(f"{sample.label}: {label.shape[-1]} channels, expected a single-channel class map")
                continue
            if label.shape[:2] != tuple(image.shape[:2]):
                problems.append(f"{sample.label}: size {label.shape[1]}x{label.shape[0]} differs from its image "
                                f"{image.shape[1]}x{image.shape[0]}")
            bad = sorted(set(np.unique(label).tolist()) - VALID_LABELS[sample.label_kind])
            if bad:
                problems.append(f"{sample.label}: label values {bad[:10]} are not valid {sample.label_kind}")
    return checked, problems

"""Where a config's data comes from: the one place that turns (config, split) into a tf.data source.

A config reads its samples from one of three places, chosen here and nowhere else:

* TFDS (``data.tfds_data_dir`` set): prepared there from the manual files in the data root (``tfds_sources``);
* DeepLab TFRecords (``data.train_records`` / ``data.val_records`` for the train / val split);
* the dataset's directory layout at the data root (``layouts``), the default; the toy dataset is generated
  there on first use.

Training, validation, ``tools/test.py``, export calibration and the benchmarks all read through ``DataSource``
(one per run in the trainer; ``training_data`` / ``evaluation_data`` make a one-off one), so a config scores the
same data wherever it is evaluated.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import tensorflow as tf

from keras_mv2seg.config import Config
from keras_mv2seg.datasets_meta import dataset_info
from keras_mv2seg.data.check import check_dataset
from keras_mv2seg.errors import data_errors_named
from keras_mv2seg.data.pipeline import eval_dataset, train_dataset
from keras_mv2seg.data.toy import ensure_toy_dataset


def _records(config: Config, split: str) -> str:
    return {"train": config.data.train_records, "val": config.data.val_records}.get(split, "")


def source_kind(config: Config, split: str) -> str:
    """"tfds", "records" or "layout": where ``split`` of ``config`` is read from."""
    if config.data.tfds_data_dir:
        return "tfds"
    return "records" if _records(config, split) else "layout"


def needs_data_root(config: Config, splits=("train", "val")) -> bool:
    return any(source_kind(config, split) == "layout" for split in splits)


def resolve_data_root(config: Config, data_root=None) -> Path:
    """The data root for a config (argument, else ``data.data_root``); the toy dataset is generated there on
    first use."""
    root = data_root or config.data.data_root
    if not root:
        raise ValueError(f"config {config.name!r} needs a data root: pass data_root or set data.data_root")
    root = Path(root)
    if config.data.dataset == "toy":
        ensure_toy_dataset(root)
    return root


def _tfds(config: Config, split: str, data_root) -> tf.data.Dataset:
    from keras_mv2seg.data.tfds_sources import tfds_stream  # optional dependency

    data = config.data
    return tfds_stream(data.dataset, split, data_dir=data.tfds_data_dir, manual_dir=data_root or data.data_root or None,
                       reduce_zero_label=data.reduce_zero_label)


class DataSource:
    """Where one config's splits are read from, decided once per run: the source of each split
    (:func:`source_kind`) and, when a split reads a dataset layout, the data root (argument, else
    ``data.data_root``), resolved when the source is made (the toy dataset is generated there then). The trainer
    holds one for its training batches, its validations and its error messages, so that the root is resolved
    once; :func:`training_data` and :func:`evaluation_data` are one-off sources."""

    def __init__(self, config: Config, data_root=None):
        self.config = config
        self._given = data_root
        # resolved now (a missing root fails before anything is built); None for TFDS or records
        self.root = resolve_data_root(config, data_root) if needs_data_root(config) else None

    def kind(self, split: str) -> str:
        return source_kind(self.config, split)

    def training(self, *, batch_size: int | None = None, seed: int = 0, start_sample: int = 0) -> tf.data.Dataset:
        """The infinite, augmented training batches (see ``pipeline.train_dataset``)."""
        return train_dataset(self.config, **self._read_from("train"), batch_size=batch_size, seed=seed,
                             start_sample=start_sample)

    def evaluation(self, split: str = "val") -> tf.data.Dataset:
        """(image resized by the test rule, label at full size, name) per image of ``split`` (see
        ``pipeline.eval_dataset``)."""
        return eval_dataset(self.config, split=split, **self._read_from(split))

    def _read_from(self, split: str) -> dict:
        """The pipeline's source argument for ``split``: a TFDS stream, DeepLab records or the layout's root."""
        kind = self.kind(split)
        if kind == "tfds":
            return {"stream": _tfds(self.config, split, self._given)}
        if kind == "records":
            return {"records": _records(self.config, split)}
        if self.root is None:  # a layout split (test) of a config whose train and val come from elsewhere
            self.root = resolve_data_root(self.config, self._given)
        return {"data_root": self.root}

    def undecodable_files(self, split="train") -> str:
        return undecodable_files(self.config, self.root or self._given, split)

    @contextlib.contextmanager
    def decode_errors_named(self, *splits: str):
        """Turn a decode error that TensorFlow's decoders raise without a file name, while ``splits`` are read
        (training reads train and val, evaluation its split), into a ValueError naming the culprit."""
        try:
            yield
        except tf.errors.InvalidArgumentError as error:
            if not any(word in error.message for word in ("PNG", "JPEG", "GIF", "BMP", "decode", "Decode")):
                raise
            first = error.message.strip().splitlines()[0]
            raise ValueError(f"an image or label of the {' or '.join(splits)} split could not be decoded ({first}); "
                             f"{self.undecodable_files(splits)}") from error


def training_data(config: Config, data_root=None, *, batch_size: int | None = None, seed: int = 0,
                  start_sample: int = 0) -> tf.data.Dataset:
    """The infinite, augmented training batches of ``config`` (see ``pipeline.train_dataset``)."""
    return DataSource(config, data_root).training(batch_size=batch_size, seed=seed, start_sample=start_sample)


def evaluation_data(config: Config, split: str = "val", data_root=None) -> tf.data.Dataset:
    """(image resized by the test rule, label at full size, name) per image of ``split`` (see
    ``pipeline.eval_dataset``)."""
    return DataSource(config, data_root).evaluation(split)


def has_data(config: Config, data_root=None) -> bool:
    """Whether images of the config's dataset can be read (a data root, records, TFDS, or the generated toy --
    only for a model of the toy's own classes: a model fine-tuned to other classes has no toy data, and nothing is
    generated for it)."""
    toy = config.data.dataset == "toy" and not config.data.class_names and \
        config.model.num_classes == len(dataset_info("toy").classes)
    return bool(data_root or (config.data.data_root and config.data.dataset != "toy") or toy
                or config.data.tfds_data_dir or (config.data.train_records and config.data.val_records))


def sample_images(config: Config, split: str, data_root=None, count: int = 8, size=None) -> list:
    """Up to ``count`` float32 RGB images [H, W, 3] of ``split`` (evaluation input, resized to ``size``): the
    calibration and check images of the exports and benchmarks."""
    images = []
    with data_errors_named():
        for image, _, _ in evaluation_data(config, split, data_root).take(count):
            images.append(tf.image.resize(image, size).numpy() if size else image.numpy())
    return images


def undecodable_files(config: Config, data_root, split="train") -> str:
    """Name the files behind a decode error that TensorFlow's decoders report without a file name: the split (or
    splits, a tuple) of a dataset layout is checked file by file (only after such an error)."""
    splits = [split] if isinstance(split, str) else list(split)
    kinds = {source_kind(config, name) for name in splits}
    if kinds != {"layout"} or not (data_root or config.data.data_root):
        return f"the {'/'.join(sorted(kinds))} data of {config.name!r} hold a corrupt image or label"
    root = data_root or config.data.data_root
    _, problems = check_dataset(config.data.dataset, root, splits=splits)
    if not problems:
        return f"tools/check_data.py --dataset {config.data.dataset} {root} finds no problem now (was a file replaced?)"
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return "the culprit: " + "; ".join(problems[:5]) + more

"""tf.data pipelines: decode, label mapping, the reference's augmentations, batching.

Training order is a pure function of (seed, sample index): sample ``i`` is file
``index_shuffle(i mod N, seed=[seed, i div N])`` of the list, augmented with a seed derived from
``(seed, i)``. So a run is reproducible, and resuming at iteration ``k`` starts the dataset at sample
``k * batch`` with nothing to skip or replay.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mv2seg.config import CONVENTIONS, Config
from keras_mv2seg.data import augment
from keras_mv2seg.data.layouts import Sample, list_samples
from keras_mv2seg.datasets_meta import cityscapes_label_id_to_train_id

AUTOTUNE = tf.data.AUTOTUNE
_LABEL_KINDS = ("train_ids", "label_ids", "ade20k", "cached")


def pad_pixel(config: Config) -> tuple[float, float, float]:
    """The raw RGB value the model's normalisation maps to 0 (mmseg: the mean; DeepLab: 127.5)."""
    convention = CONVENTIONS[config.model.convention]
    return tuple(-offset / scale for offset, scale in zip(convention.input_offset, convention.input_scale))


def map_label(label, kind, reduce_zero_label: bool):
    """Raw label file values -> training ids (uint8, 255 = ignore)."""
    if kind == "label_ids":
        return tf.gather(tf.constant(cityscapes_label_id_to_train_id()), tf.cast(label, tf.int32))
    if kind == "ade20k" and reduce_zero_label:
        return tf.where(label == 0, tf.constant(255, tf.uint8), label - 1)  # 0 -> 255, L -> L - 1
    return label


_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8", b"BM", b"GIF8")


def _checked_bytes(path, data, *, label: bool):
    """Assert, naming the file, before decoding (a bare decode error inside tf.data names nothing): a known
    image format; for labels an 8-bit PNG (a 16-bit label would otherwise be rescaled silently)."""
    if label:
        header = tf.strings.join([tf.strings.substr(data, 0, 25), b"\0" * 25])  # short files: no substr error
        ok = tf.logical_and(tf.equal(tf.strings.substr(header, 0, 4), b"\x89PNG"),
                            tf.equal(tf.strings.substr(header, 24, 1), b"\x08"))  # IHDR bit depth
        message = "label is not an 8-bit PNG class map:"
    else:
        ok = tf.reduce_any([tf.equal(tf.strings.substr(data, 0, len(magic)), magic) for magic in _IMAGE_MAGIC])
        message = "not a PNG/JPEG/BMP/GIF image (corrupt or unknown format):"
    with tf.control_dependencies([tf.debugging.Assert(ok, [message, path])]):
        return tf.identity(data)


def decode(image_path, label_path):
    """Image as float32 RGB and label as uint8 [H, W, 1]. Conversions: grayscale images are replicated to
    3 channels, an alpha channel is dropped, 16-bit images are scaled to 8 bits. Problems (unknown format,
    16-bit or non-PNG label, sizes that differ) raise errors naming the file."""
    image = tf.io.decode_image(_checked_bytes(image_path, tf.io.read_file(image_path), label=False), channels=3,
                               expand_animations=False, dtype=tf.uint8)
    label = tf.io.decode_png(_checked_bytes(label_path, tf.io.read_file(label_path), label=True), channels=1)
    image = tf.ensure_shape(image, [None, None, 3])
    same_size = tf.debugging.Assert(tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(label)[:2])),
                                    ["image and label sizes differ:", image_path, tf.shape(image)[:2], label_path,
                                     tf.shape(label)[:2]])
    with tf.control_dependencies([same_size]):
        return tf.cast(image, tf.float32), tf.identity(label)


def check_label_values(label, name, config: Config):
    """Assert, naming the sample, that every label is a class id of the model or the ignore index (an
    out-of-range label would otherwise fail deep inside the loss)."""
    num_classes, ignore = config.model.num_classes, config.data.ignore_index
    values = tf.cast(label, tf.int32)
    ok = tf.reduce_all(tf.logical_or(values < num_classes, tf.equal(values, ignore)))
    bad = tf.reduce_max(tf.where(tf.equal(values, ignore), -1, values))
    check = tf.debugging.Assert(ok, ["label values outside 0..", num_classes - 1, "and the ignore index", ignore,
                                     "(largest:", bad, ") in the label of", name])
    with tf.control_dependencies([check]):
        return tf.identity(label)


def _sample_tensors(samples: list[Sample]):
    kinds = {s.label_kind for s in samples}
    if not kinds <= set(_LABEL_KINDS):
        raise ValueError(f"unknown label kinds {sorted(kinds - set(_LABEL_KINDS))}")
    images = tf.constant([s.image for s in samples])
    labels = tf.constant([s.label for s in samples])
    kind_ids = tf.constant([_LABEL_KINDS.index(s.label_kind) for s in samples])
    return images, labels, kind_ids


def _load(images, labels, kind_ids, index, reduce_zero_label, cached: bool = False):
    if cached:  # decoded pixels, labels already mapped (see data/cache.py)
        from keras_mv2seg.data.cache import read_raw

        return tf.cast(read_raw(images[index], 3), tf.float32), read_raw(labels[index], 1)
    image, label = decode(images[index], labels[index])
    kind = kind_ids[index]
    label = tf.switch_case(kind, [lambda k=k: map_label(label, k, reduce_zero_label) for k in _LABEL_KINDS[:3]])
    return image, label


def _maybe_cached(samples: list[Sample], config: Config) -> tuple[list[Sample], bool]:
    if not config.data.cache_dir:
        return samples, False
    from keras_mv2seg.data.cache import cache_samples

    return cache_samples(samples, config.data.cache_dir, config.data.reduce_zero_label), True


def training_samples(config: Config, data_root=None, split="train") -> list[Sample]:
    return list_samples(config.data.dataset, data_root or config.data.data_root, split)[0]


def train_dataset(config: Config, data_root=None, *, batch_size: int | None = None, seed: int = 0,
                  start_sample: int = 0, samples: list[Sample] | None = None, records=None,
                  stream: tf.data.Dataset | None = None, shuffle_buffer: int = 1000) -> tf.data.Dataset:
    """Infinite, deterministic stream of augmented (images float32 [B,h,w,3] 0..255, labels int32 [B,h,w])
    batches at the crop size, starting at sample ``start_sample``.

    From a dataset layout (default) files are picked by index (see the module docstring). From DeepLab
    TFRecords (``records``: a file pattern; labels already training ids) or any ``stream`` of (image, label
    uint8 [H, W, 1], name) elements (TFDS, see ``tfds_sources``; labels as ``map_label`` leaves them) the order
    comes from a seeded shuffle buffer, and resuming skips ``start_sample`` elements (for records, before any
    decoding)."""
    data = config.data
    batch_size = batch_size or config.train.batch_size
    pad = pad_pixel(config)

    def augmented(sample_index, image, label, name):
        label = check_label_values(label, name, config)
        example_seed = tf.stack([tf.constant(seed, tf.int64) + 7919, sample_index])
        image, label = augment.train_augment(
            image, label, example_seed, scale=data.base_scale, crop_size=data.crop_size,
            ratio_range=data.ratio_range, cat_max_ratio=data.cat_max_ratio, ignore_index=data.ignore_index,
            pad_pixel=pad)
        return image, tf.cast(label[..., 0], tf.int32)

    if records is not None or stream is not None:
        if records is not None:
            from keras_mv2seg.data.tfrecord import parse_example, record_files

            dataset, parse = tf.data.TFRecordDataset(record_files(records)), parse_example
        else:
            dataset, parse = stream, lambda element: element
        dataset = dataset.repeat().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.skip(start_sample).enumerate(start_sample)
        dataset = dataset.map(lambda i, element: augmented(i, *parse(element)), num_parallel_calls=AUTOTUNE,
                              deterministic=True)
        return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)

    samples = samples if samples is not None else training_samples(config, data_root)
    samples, cached = _maybe_cached(samples, config)
    images, labels, kind_ids = _sample_tensors(samples)
    count = tf.constant(len(samples), tf.int64)

    def load(sample_index):
        epoch, position = sample_index // count, sample_index % count
        file_index = tf.random.experimental.index_shuffle(position, tf.stack([tf.constant(seed, tf.int64), epoch]),
                                                          count - 1)
        return augmented(sample_index, *_load(images, labels, kind_ids, file_index, data.reduce_zero_label, cached),
                         labels[file_index])  # label problems name the label file

    dataset = tf.data.Dataset.range(start_sample, np.iinfo(np.int64).max)
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def eval_dataset(config: Config, data_root=None, split: str = "val", *,
                 samples: list[Sample] | None = None, records=None,
                 stream: tf.data.Dataset | None = None) -> tf.data.Dataset:
    """One element per image: (image float32 [h,w,3] resized by the reference's test rule, label int32 [H,W]
    at the original size, name string). Batch with ``.batch(1)``: sizes may differ between images.
    ``records``: read DeepLab TFRecords (a file pattern), or ``stream``: (image, label, name) elements (TFDS),
    instead of a dataset layout."""
    if records is not None or stream is not None:
        if records is not None:
            from keras_mv2seg.data.tfrecord import parse_example, record_files

            stream = tf.data.TFRecordDataset(record_files(records)).map(parse_example)

        def resized(image, label, name):
            label = check_label_values(label, name, config)
            return augment.test_resize(image, config.data.base_scale), tf.cast(label[..., 0], tf.int32), name

        return stream.map(resized, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)
    if samples is None:
        samples = list_samples(config.data.dataset, data_root or config.data.data_root, split)[0]
    images, labels, kind_ids = _sample_tensors(samples)
    names = tf.constant([s.name for s in samples])

    def load(index):
        image, label = _load(images, labels, kind_ids, index, config.data.reduce_zero_label)
        label = check_label_values(label, labels[index], config)
        return augment.test_resize(image, config.data.base_scale), tf.cast(label[..., 0], tf.int32), names[index]

    dataset = tf.data.Dataset.range(len(samples))
    return dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)


def resolve_data_root(config: Config, data_root=None) -> Path:
    """The data root for a config (argument, else ``data.data_root``); the toy dataset is generated there on
    first use."""
    root = data_root or config.data.data_root
    if not root:
        raise ValueError(f"config {config.name!r} needs a data root: pass --data-root or set data.data_root")
    root = Path(root)
    if config.data.dataset == "toy":
        from keras_mv2seg.data.toy import ensure_toy_dataset

        ensure_toy_dataset(root)
    return root

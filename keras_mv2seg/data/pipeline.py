"""tf.data pipelines: decode, label mapping, the reference's augmentations, batching.

Training order is a pure function of (seed, sample index): sample ``i`` is file
``index_shuffle(i mod N, seed=[seed, i div N])`` of the list, augmented with a seed derived from
``(seed, i)``. So a run is reproducible, and resuming at iteration ``k`` starts the dataset at sample
``k * batch`` with nothing to skip or replay.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_mv2seg.config import Config
from keras_mv2seg.data import augment
from keras_mv2seg.data.cache import cache_samples, read_raw
from keras_mv2seg.data.decode import (decode_pair, image_file_and_label, kind_index,  # noqa: F401 - map_label:
                                      map_label)  # public here too
from keras_mv2seg.data.layouts import Sample, list_samples
from keras_mv2seg.data.tfrecord import parse_example, record_files
from keras_mv2seg.errors import data_assertion
from keras_mv2seg.machine import keep_freed_buffers

AUTOTUNE = tf.data.AUTOTUNE


def pad_pixel(config: Config) -> tuple[float, float, float]:
    """The raw RGB value the model's normalisation maps to 0 (``Convention.pad_pixel``)."""
    return config.model.conventions.pad_pixel


def _labels_in_range(label, num_classes: int, ignore: int):
    """Whether every value of ``label`` is below ``num_classes`` or is ``ignore``. For uint8 labels in one or two
    passes over the bytes: with ignore 255, ``label + 1`` wraps 255 to 0, so its largest value is the largest
    class id + 1; with an ignore beyond uint8 no pixel can be ignored (5-6x faster than over int32 values)."""
    if label.dtype == tf.uint8 and ignore == 255:
        return tf.reduce_max(label + 1) <= num_classes
    if label.dtype == tf.uint8 and ignore > 255:
        return tf.reduce_max(label) < num_classes
    values = tf.cast(label, tf.int32)
    return tf.reduce_all(tf.logical_or(values < num_classes, tf.equal(values, ignore)))


def check_label_values(label, name, config: Config):
    """Assert, naming the sample, that every label is a class id of the model or the ignore index (an
    out-of-range label would otherwise fail deep inside the loss)."""
    num_classes, ignore = config.model.num_classes, config.data.ignore_index
    ok = _labels_in_range(label, num_classes, ignore)

    def largest_bad():
        values = tf.cast(label, tf.int32)
        return tf.reduce_max(tf.where(tf.equal(values, ignore), -1, values))

    bad = tf.cond(ok, lambda: tf.constant(-1), largest_bad)  # computed only for the message
    check = data_assertion(ok, "label values outside 0..", num_classes - 1, "and the ignore index", ignore,
                           "(largest:", bad, ") in the label of", name)
    with tf.control_dependencies([check]):
        return tf.identity(label)


def _sample_tensors(samples: list[Sample]):
    images = tf.constant([s.image for s in samples])
    labels = tf.constant([s.label for s in samples])
    kind_ids = tf.constant([kind_index(s.label_kind) for s in samples])
    return images, labels, kind_ids


def _coding(samples: list[Sample]):
    """The custom dataset's description its samples share (None for the other datasets)."""
    return samples[0].coding if samples else None


def _load(images, labels, kind_ids, index, reduce_zero_label, cached: bool = False, coding=None,
          image_dtype=tf.float32, image_file: bool = False):
    """(image, label uint8 [H, W, 1] in training ids) of sample ``index``; ``image_file``: the image as a
    ``decode.ImageFile`` (decoded later, down to the rows a crop reads) where it comes from a file."""
    if cached:  # decoded pixels, labels already mapped (see data/cache.py)
        return tf.cast(read_raw(images[index], 3), image_dtype), read_raw(labels[index], 1)
    if image_file:
        return image_file_and_label(images[index], labels[index], kind_ids[index], reduce_zero_label, coding)
    return decode_pair(images[index], labels[index], kind_ids[index], reduce_zero_label, coding, image_dtype)


def _maybe_cached(samples: list[Sample], config: Config) -> tuple[list[Sample], bool]:
    if not config.data.cache_dir:
        return samples, False
    return cache_samples(samples, config.data.cache_dir, config.data.reduce_zero_label), True


def training_samples(config: Config, data_root=None, split: str | None = None) -> list[Sample]:
    return list_samples(config.data.dataset, data_root or config.data.data_root, split or config.data.train_split)[0]


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
    keep_freed_buffers()  # several multi-MB buffers an image: reused rather than fresh pages (machine.py)

    def augmented(sample_index, image, label, name):
        label = check_label_values(label, name, config)
        example_seed = tf.stack([tf.constant(seed, tf.int64) + 7919, sample_index])
        if data.augmentation == "deeplab":
            image, label = augment.deeplab_train_augment(
                image, label, example_seed, crop_size=data.crop_size, ratio_range=data.ratio_range,
                scale_step=data.scale_step, ignore_index=data.ignore_index, pad_pixel=pad)
        else:
            image, label = augment.train_augment(
                image, label, example_seed, scale=data.base_scale, crop_size=data.crop_size,
                ratio_range=data.ratio_range, cat_max_ratio=data.cat_max_ratio, ignore_index=data.ignore_index,
                pad_pixel=pad)
        return image, tf.cast(label[..., 0], tf.int32)

    if records is not None or stream is not None:
        if records is not None:
            dataset, parse = tf.data.TFRecordDataset(record_files(records)), parse_example
        else:
            dataset, parse = stream, lambda element: element
        dataset = dataset.repeat().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.skip(start_sample).enumerate(start_sample)
        dataset = dataset.map(lambda i, element: augmented(i, *parse(element)), num_parallel_calls=AUTOTUNE,
                              deterministic=True)
        return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)

    samples = samples if samples is not None else training_samples(config, data_root)
    coding = _coding(samples)
    samples, cached = _maybe_cached(samples, config)
    images, labels, kind_ids = _sample_tensors(samples)
    count = tf.constant(len(samples), tf.int64)

    def load(sample_index):
        epoch, position = sample_index // count, sample_index % count
        file_index = tf.random.experimental.index_shuffle(position, tf.stack([tf.constant(seed, tf.int64), epoch]),
                                                          count - 1)
        image, label = _load(images, labels, kind_ids, file_index, data.reduce_zero_label, cached, coding,
                             image_dtype=tf.uint8,  # cast to float32 by the augmentation, after the crop
                             image_file=data.augmentation != "deeplab")  # mmseg's crop decodes the rows it reads
        return augmented(sample_index, image, label, labels[file_index])  # label problems name the label file

    dataset = tf.data.Dataset.range(start_sample, np.iinfo(np.int64).max)
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def test_image(image, config: Config):
    """The evaluation input: resized by the reference's test rule, except in ``pad`` mode (the official DeepLab
    evaluation runs the image at its own size, padded to the crop size by ``inference.pad_to_crop_logits``)."""
    return image if config.data.test_mode == "pad" else augment.test_resize(image, config.data.base_scale)


def eval_dataset(config: Config, data_root=None, split: str = "val", *,
                 samples: list[Sample] | None = None, records=None,
                 stream: tf.data.Dataset | None = None) -> tf.data.Dataset:
    """One element per image: (image float32 [h,w,3] resized by the reference's test rule, label int32 [H,W]
    at the original size, name string). Batch with ``.batch(1)``: sizes may differ between images.
    ``records``: read DeepLab TFRecords (a file pattern), or ``stream``: (image, label, name) elements (TFDS),
    instead of a dataset layout."""
    if records is not None or stream is not None:
        if records is not None:
            stream = tf.data.TFRecordDataset(record_files(records)).map(parse_example)

        def resized(image, label, name):
            label = check_label_values(label, name, config)
            return test_image(image, config), tf.cast(label[..., 0], tf.int32), name

        return stream.map(resized, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)
    if samples is None:
        samples = list_samples(config.data.dataset, data_root or config.data.data_root, split)[0]
    images, labels, kind_ids = _sample_tensors(samples)
    names = tf.constant([s.name for s in samples])
    coding = _coding(samples)

    def load(index):
        image, label = _load(images, labels, kind_ids, index, config.data.reduce_zero_label, coding=coding)
        label = check_label_values(label, labels[index], config)
        return test_image(image, config), tf.cast(label[..., 0], tf.int32), names[index]

    dataset = tf.data.Dataset.range(len(samples))
    return dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)

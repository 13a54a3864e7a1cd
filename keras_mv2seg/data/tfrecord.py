"""DeepLab's TFRecord format: ``image/encoded``, ``image/filename``, ``image/format``, ``image/height``,
``image/width``, ``image/channels``, ``image/segmentation/class/encoded`` and ``.../format`` per example.

The writer stores labels already mapped to training ids (PNG), as DeepLab's conversion scripts do.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from keras_mv2seg.data.decode import read_pair
from keras_mv2seg.data.layouts import Sample
from keras_mv2seg.files import refuse_existing

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/filename": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/format": tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    "image/height": tf.io.FixedLenFeature((), tf.int64, default_value=0),
    "image/width": tf.io.FixedLenFeature((), tf.int64, default_value=0),
    "image/segmentation/class/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/segmentation/class/format": tf.io.FixedLenFeature((), tf.string, default_value="png"),
}


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def write_tfrecords(samples: list[Sample], output_prefix, shards: int = 1, *, reduce_zero_label: bool = False,
                    overwrite: bool = False) -> list[Path]:
    """Write ``samples`` to ``<prefix>-0000i-of-0000n.tfrecord`` shards (labels as training-id PNGs)."""
    if shards < 1:
        raise ValueError(f"shards must be positive, received {shards}")
    prefix = Path(output_prefix)
    paths = [prefix.with_name(f"{prefix.name}-{i:05d}-of-{shards:05d}.tfrecord") for i in range(shards)]
    for path in paths:
        refuse_existing(path, overwrite)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    try:
        for index, sample in enumerate(samples):
            image_bytes = tf.io.read_file(sample.image).numpy()
            image, label = read_pair(sample, reduce_zero_label)
            image_format = b"png" if image_bytes[:4] == b"\x89PNG" else b"jpeg"
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": _bytes(image_bytes),
                "image/filename": _bytes(sample.name.encode()),
                "image/format": _bytes(image_format),
                "image/height": _int(image.shape[0]),
                "image/width": _int(image.shape[1]),
                "image/channels": _int(3),
                "image/segmentation/class/encoded": _bytes(tf.io.encode_png(label).numpy()),
                "image/segmentation/class/format": _bytes(b"png"),
            }))
            writers[index % shards].write(example.SerializeToString())
    finally:
        for writer in writers:
            writer.close()
    return paths


def parse_example(serialized):
    """(image float32 [H, W, 3] 0..255, label uint8 [H, W, 1], filename) of one DeepLab example."""
    features = tf.io.parse_single_example(serialized, FEATURES)
    image = tf.io.decode_image(features["image/encoded"], channels=3, expand_animations=False)
    label = tf.io.decode_png(features["image/segmentation/class/encoded"], channels=1)
    name = features["image/filename"]
    tf.debugging.assert_equal(tf.shape(image)[:2], tf.shape(label)[:2],
                              message=tf.strings.format("image and label sizes differ in record {}", name))
    return tf.cast(tf.ensure_shape(image, [None, None, 3]), tf.float32), label, name


def record_files(pattern) -> list[str]:
    files = sorted(tf.io.gfile.glob(str(pattern)))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {pattern}")
    return files

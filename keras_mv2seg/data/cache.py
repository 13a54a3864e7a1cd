"""Optional cache of decoded samples: raw pixels instead of PNG/JPEG, read back without decoding.

Each sample becomes two files ``<key>.image.raw`` / ``<key>.label.raw`` (8-byte header: height and width as
little-endian int32, then the uint8 pixels), the label already mapped to training ids. The key hashes the
source paths, sizes and modification times and the label mapping, so an edited file (or a changed mapping)
is decoded again. Building the cache decodes every
file in Python, where a corrupt or truncated file is reported by name. A cached entry is reused only when its
size is what its header promises; one that is not (a cut-off copy, a full disk) is named in a warning and
decoded again, and one that goes bad while training is named by the pipeline.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mv2seg.data.decode import read_pair
from keras_mv2seg.data.layouts import Sample
from keras_mv2seg.files import atomic_write

CACHED_KIND = "cached"


def _key(sample: Sample, reduce_zero_label: bool) -> str:
    """The files (path, size, modification time) and how their label values are mapped (label kind,
    reduce_zero_label, a custom dataset's value table and colours): a change to any decodes again."""
    parts = []
    for path in (sample.image, sample.label):
        stat = os.stat(path)
        parts.append(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    parts.append(f"{sample.label_kind}:{reduce_zero_label}")
    if sample.coding is not None:
        parts.append(f"{sample.coding.value_table().tobytes().hex()}:{sample.coding.colours}:"
                     f"{sample.coding.mask_encoding}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]


def _write_raw(path: Path, array: np.ndarray):
    atomic_write(path, struct.pack("<ii", array.shape[0], array.shape[1]) + np.ascontiguousarray(array).tobytes())


def cache_samples(samples: list[Sample], cache_dir, reduce_zero_label: bool = False) -> list[Sample]:
    """Decode ``samples`` into ``cache_dir`` (reusing valid entries); returns samples pointing at the cache."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = []
    for sample in samples:
        key = _key(sample, reduce_zero_label)
        image_file, label_file = cache_dir / f"{key}.image.raw", cache_dir / f"{key}.label.raw"
        if not (_whole(image_file, 3) and _whole(label_file, 1)):
            image, label = read_pair(sample, reduce_zero_label)
            _write_raw(image_file, image)
            _write_raw(label_file, label)
        cached.append(Sample(str(image_file), str(label_file), sample.name, CACHED_KIND))
    return cached


def _whole(path: Path, channels: int) -> bool:
    """Whether a cache file exists with the size its header promises (False, with a warning, when it does not)."""
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        header = handle.read(8)
    height, width = struct.unpack("<ii", header) if len(header) == 8 else (-1, -1)
    if height >= 0 and width >= 0 and path.stat().st_size == 8 + height * width * channels:
        return True
    warnings.warn(f"{path}: a decoded-sample cache file of {path.stat().st_size} bytes, not what its header "
                  "promises (cut off or corrupt); decoding its source again", stacklevel=3)
    return False


def read_raw(path, channels: int):
    """uint8 [H, W, channels] from a cache file; a file of the wrong size fails naming it."""
    data = tf.io.read_file(path)
    header = tf.strings.join([tf.strings.substr(data, 0, 8), b"\0" * 8])
    size = tf.io.decode_raw(tf.strings.substr(header, 0, 8), tf.int32)
    length = tf.strings.length(data)
    whole = tf.logical_and(tf.reduce_all(size >= 0),
                           tf.equal(tf.cast(length, tf.int64) - 8,
                                    tf.cast(size[0], tf.int64) * tf.cast(size[1], tf.int64) * channels))
    check = tf.debugging.Assert(whole, ["decoded-sample cache file cut off or corrupt (delete it, or the cache "
                                        "folder, to decode again):", path])
    with tf.control_dependencies([check]):
        pixels = tf.io.decode_raw(tf.strings.substr(data, 8, tf.maximum(length - 8, 0)), tf.uint8)
    return tf.reshape(pixels, [size[0], size[1], channels])

"""Optional cache of decoded samples: raw pixels instead of PNG/JPEG, read back without decoding.

Each sample becomes two files ``<key>.image.raw`` / ``<key>.label.raw`` (8-byte header: height and width as
little-endian int32, then the uint8 pixels), the label already mapped to training ids. The key hashes the
source path, size and modification time, so an edited file is decoded again. Building the cache decodes every
file in Python, where a corrupt or truncated file is reported by name.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mv2seg.data.decode import read_pair
from keras_mv2seg.data.layouts import Sample
from keras_mv2seg.files import atomic_write

CACHED_KIND = "cached"


def _key(sample: Sample) -> str:
    parts = []
    for path in (sample.image, sample.label):
        stat = os.stat(path)
        parts.append(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]


def _write_raw(path: Path, array: np.ndarray):
    atomic_write(path, struct.pack("<ii", array.shape[0], array.shape[1]) + np.ascontiguousarray(array).tobytes())


def cache_samples(samples: list[Sample], cache_dir, reduce_zero_label: bool = False) -> list[Sample]:
    """Decode ``samples`` into ``cache_dir`` (reusing valid entries); returns samples pointing at the cache."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = []
    for sample in samples:
        key = _key(sample)
        image_file, label_file = cache_dir / f"{key}.image.raw", cache_dir / f"{key}.label.raw"
        if not (image_file.is_file() and label_file.is_file()):
            image, label = read_pair(sample, reduce_zero_label)
            _write_raw(image_file, image)
            _write_raw(label_file, label)
        cached.append(Sample(str(image_file), str(label_file), sample.name, CACHED_KIND))
    return cached


def read_raw(path, channels: int):
    """uint8 [H, W, channels] from a cache file."""
    data = tf.io.read_file(path)
    size = tf.io.decode_raw(tf.strings.substr(data, 0, 8), tf.int32)
    pixels = tf.io.decode_raw(tf.strings.substr(data, 8, tf.strings.length(data) - 8), tf.uint8)
    return tf.reshape(pixels, [size[0], size[1], channels])

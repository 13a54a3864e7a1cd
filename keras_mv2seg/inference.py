"""Inference helpers on top of a segmenter: class maps, and the official DeepLab exported-graph behaviour."""

from __future__ import annotations

import keras
import tensorflow as tf

# DeepLab pads with the mean pixel, 127.5, which is exactly 0 after its x * 2/255 - 1 scaling.
DEEPLAB_PAD_VALUE = 127.5


def predict_labels(model: keras.Model, images) -> tf.Tensor:
    """int32 class map [B, H, W] at the input size."""
    logits = model(tf.cast(images, tf.float32), training=False)
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def fit_to_crop_size(height, width, crop_size) -> tuple:
    """(height, width) after scaling down, keeping the aspect ratio, to fit inside ``crop_size``; images
    that already fit are left alone. The scale is the same for both sides (largest that fits)."""
    crop_h, crop_w = crop_size
    scale = tf.minimum(1.0, tf.minimum(crop_h / tf.cast(height, tf.float32), crop_w / tf.cast(width, tf.float32)))
    new_h = tf.cast(tf.math.round(tf.cast(height, tf.float32) * scale), tf.int32)
    new_w = tf.cast(tf.math.round(tf.cast(width, tf.float32) * scale), tf.int32)
    return tf.clip_by_value(new_h, 1, crop_h), tf.clip_by_value(new_w, 1, crop_w)


def pad_to_crop_logits(model: keras.Model, images, crop_size) -> tf.Tensor:
    """Logits at the input size computed the way the official DeepLab exported graph does.

    The image is padded bottom/right with 127.5 to ``crop_size`` (so image pooling averages over the pad,
    as in the official graph), the network runs at the crop size, and the valid region is cropped back.
    Larger images, which the official graph rejects, are first scaled down (bilinear, aspect ratio kept)
    to fit the crop size, and their logits are resized back to the input size with align_corners=True.
    """
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [batch, height, width, 3], received shape {images.shape}")
    crop_h, crop_w = (int(v) for v in crop_size)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    fit_h, fit_w = fit_to_crop_size(height, width, (crop_h, crop_w))
    resized = tf.cond(
        tf.logical_and(tf.equal(fit_h, height), tf.equal(fit_w, width)),
        lambda: images,
        lambda: tf.compat.v1.image.resize_bilinear(images, tf.stack([fit_h, fit_w]), align_corners=True),
    )
    padded = tf.pad(resized - DEEPLAB_PAD_VALUE, [[0, 0], [0, crop_h - fit_h], [0, crop_w - fit_w], [0, 0]])
    padded = tf.ensure_shape(padded + DEEPLAB_PAD_VALUE, [None, crop_h, crop_w, 3])
    logits = model(padded, training=False)[:, :fit_h, :fit_w, :]
    return tf.cond(
        tf.logical_and(tf.equal(fit_h, height), tf.equal(fit_w, width)),
        lambda: logits,
        lambda: tf.compat.v1.image.resize_bilinear(logits, tf.stack([height, width]), align_corners=True),
    )


def pad_to_crop_predict(model: keras.Model, images, crop_size) -> tf.Tensor:
    """``SemanticPredictions`` of the official exported graph: int32 class map [B, H, W] (see
    :func:`pad_to_crop_logits`)."""
    return tf.argmax(pad_to_crop_logits(model, images, crop_size), axis=-1, output_type=tf.int32)


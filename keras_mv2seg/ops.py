"""The image geometry every wing shares: the one bilinear resize of the model (``models.layers.ResizeBilinear``),
inference and evaluation through ``Convention.resize`` (the two references differ only in ``align_corners``), and
the reference's test-time rescale (:func:`rescale_size`, :func:`resize_image`), used by the data pipeline and by
inference alike."""

from __future__ import annotations

import tensorflow as tf


def resize_bilinear(images, size, align_corners: bool):
    """[B, h, w, C] -> [B, H, W, C], same dtype. ``align_corners=False``: half-pixel centres, no antialiasing
    (PyTorch ``F.interpolate(..., align_corners=False)``, ``tf.image.resize``); ``True``: ``src = dst * (in -
    1) / (out - 1)``, TF1's ``resize_bilinear(align_corners=True)`` that DeepLab used (Keras has no such mode)."""
    resized = tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=align_corners,
                                        half_pixel_centers=not align_corners)
    return tf.cast(resized, images.dtype)


def rescale_size(height, width, scale, ratio=1.0):
    """mmcv ``RandomResize`` + ``rescale_size`` with keep_ratio: the target scale is ``scale * ratio``
    truncated to whole pixels (``int(scale[i] * ratio)``, ``mmcv/transforms/processing.py:1515``), then the
    largest size with the image's aspect ratio whose long side is <= the target's long side and short side <=
    its short side; sides rounded half up (``int(x + 0.5)``, ``mmcv/image/geometric.py`` ``_scale_size``)."""
    long_target = tf.floor(tf.cast(max(scale), tf.float32) * ratio)
    short_target = tf.floor(tf.cast(min(scale), tf.float32) * ratio)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    factor = tf.minimum(long_target / tf.maximum(h, w), short_target / tf.minimum(h, w))
    return tf.cast(h * factor + 0.5, tf.int32), tf.cast(w * factor + 0.5, tf.int32)


def resize_image(image, size):
    """Bilinear with half-pixel centres and no antialiasing (OpenCV INTER_LINEAR)."""
    return tf.image.resize(image, size, method="bilinear", antialias=False)

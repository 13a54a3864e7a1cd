"""The one bilinear resize of the project, used by the model (``models.layers.ResizeBilinear``), inference and
evaluation through ``Convention.resize``: the two references differ only in ``align_corners``."""

from __future__ import annotations

import tensorflow as tf


def resize_bilinear(images, size, align_corners: bool):
    """[B, h, w, C] -> [B, H, W, C], same dtype. ``align_corners=False``: half-pixel centres, no antialiasing
    (PyTorch ``F.interpolate(..., align_corners=False)``, ``tf.image.resize``); ``True``: ``src = dst * (in -
    1) / (out - 1)``, TF1's ``resize_bilinear(align_corners=True)`` that DeepLab used (Keras has no such mode)."""
    resized = tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=align_corners,
                                        half_pixel_centers=not align_corners)
    return tf.cast(resized, images.dtype)

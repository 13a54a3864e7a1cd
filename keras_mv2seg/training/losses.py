"""Softmax cross-entropy with an ignore label, averaged over ALL pixels as the reference does."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class SegmentationCrossEntropy(keras.losses.Loss):
    """Per-pixel softmax cross-entropy on logits at the label size; pixels labelled ``ignore_index`` add 0
    but still count in the mean (mmseg ``CrossEntropyLoss(avg_non_ignore=False)``, the released models'
    setting). ``y_true``: int [B, H, W]; ``y_pred``: logits [B, H, W, C] (float32)."""

    def __init__(self, ignore_index: int = 255, name: str = "segmentation_cross_entropy", **kwargs):
        kwargs.setdefault("reduction", "sum_over_batch_size")
        super().__init__(name=name, **kwargs)
        self.ignore_index = int(ignore_index)

    def call(self, y_true, y_pred):
        labels = tf.cast(y_true, tf.int32)
        if labels.shape.rank == 4:
            labels = tf.squeeze(labels, -1)
        logits = tf.cast(y_pred, tf.float32)
        valid = tf.not_equal(labels, self.ignore_index)
        safe = tf.where(valid, labels, tf.zeros_like(labels))
        per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
        return tf.where(valid, per_pixel, tf.zeros_like(per_pixel))

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index}

"""The in-memory forms of inference: class maps, mmseg's slide and aug-test with every logit in memory, and the
official DeepLab exported-graph behaviour (pad-to-crop), which the exports trace. Run eagerly, the network goes
through its compiled forward (``engine.compiled_forward``); traced inside a graph, it is called as it is. For
images of any size in bounded memory use ``engine.Inference``."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mv2seg.config import CONVENTIONS
from keras_mv2seg.inference.engine import compiled_forward
from keras_mv2seg.ops import rescale_size, resize_bilinear, resize_image

DEEPLAB = CONVENTIONS["deeplab"]  # the official exported graph's conventions: align_corners, pad with 127.5


def run_network(model, images) -> tf.Tensor:
    """Logits of ``model`` in inference mode: the compiled forward when run eagerly, the model itself when
    traced into a graph (an export)."""
    if tf.executing_eagerly():
        return compiled_forward(model).tensor(images)
    return model(images, training=False)


def predict_labels(model: keras.Model, images) -> tf.Tensor:
    """int32 class map [B, H, W] at the input size."""
    logits = run_network(model, tf.cast(images, tf.float32))
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
        lambda: DEEPLAB.resize(images, tf.stack([fit_h, fit_w])),
    )
    pad = tf.constant(DEEPLAB.pad_pixel, tf.float32)  # 127.5: exactly 0 after DeepLab's x * 2/255 - 1
    padded = tf.pad(resized - pad, [[0, 0], [0, crop_h - fit_h], [0, crop_w - fit_w], [0, 0]])
    padded = tf.ensure_shape(padded + pad, [None, crop_h, crop_w, 3])
    logits = run_network(model, padded)[:, :fit_h, :fit_w, :]
    return tf.cond(
        tf.logical_and(tf.equal(fit_h, height), tf.equal(fit_w, width)),
        lambda: logits,
        lambda: DEEPLAB.resize(logits, tf.stack([height, width])),
    )


def pad_to_crop_predict(model: keras.Model, images, crop_size) -> tf.Tensor:
    """``SemanticPredictions`` of the official exported graph: int32 class map [B, H, W] (see
    :func:`pad_to_crop_logits`)."""
    return tf.argmax(pad_to_crop_logits(model, images, crop_size), axis=-1, output_type=tf.int32)



def slide_logits(model: keras.Model, images, crop_size, stride) -> tf.Tensor:
    """mmseg ``slide_inference``: overlapping crop_size windows every ``stride`` pixels (the last window of a
    row or column aligned to the image edge), logits of overlapping windows averaged. Images smaller than a
    window are run whole. images: [1, H, W, 3] -> logits [1, H, W, C]."""
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = int(images.shape[1]), int(images.shape[2])
    crop_h, crop_w = crop_size
    stride_h, stride_w = stride
    if min(crop_h, crop_w, stride_h, stride_w) < 1:
        raise ValueError(f"crop_size and stride must be positive, received {crop_size} and {stride}")
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total, count = None, np.zeros((height, width), np.float32)
    for row in range(rows):
        for col in range(cols):
            y2, x2 = min(row * stride_h + crop_h, height), min(col * stride_w + crop_w, width)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            logits = run_network(model, images[:, y1:y2, x1:x2])
            padded = tf.pad(logits, [[0, 0], [y1, height - y2], [x1, width - x2], [0, 0]])
            total = padded if total is None else total + padded
            count[y1:y2, x1:x2] += 1
    return total / count[None, :, :, None]


def multi_scale_flip_logits(model: keras.Model, images, *, scale, ratios=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
                            flip: bool = True, align_corners: bool = False, predict=None) -> tf.Tensor:
    """The reference's aug-test: for every ratio the image is resized (keep ratio) to ``scale * ratio``, run
    (and run flipped, the logits flipped back), the logits resized to the input size and softmaxed; the
    probabilities are averaged. Returns averaged probabilities [1, H, W, C] (argmax gives the prediction).
    ``predict(model, images) -> logits`` replaces the whole-image forward (e.g. slide inference)."""
    predict = predict or run_network
    images = tf.convert_to_tensor(images, tf.float32)
    size = tf.shape(images)[1:3]
    total, runs = None, 0
    for ratio in ratios:
        scaled_size = rescale_size(size[0], size[1], scale, ratio)
        scaled = resize_image(images, scaled_size)
        for flipped in ((False, True) if flip else (False,)):
            batch = tf.reverse(scaled, [2]) if flipped else scaled
            logits = tf.cast(predict(model, batch), tf.float32)
            if flipped:
                logits = tf.reverse(logits, [2])
            probabilities = tf.nn.softmax(resize_bilinear(logits, size, align_corners), axis=-1)
            total = probabilities if total is None else total + probabilities
            runs += 1
    return total / runs

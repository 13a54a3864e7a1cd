"""Segmentation losses with an ignore label, each equal to its reference: mmseg 1.2.2's ``CrossEntropyLoss``
(``class_weight``, ``avg_non_ignore``, ``use_sigmoid`` for one-class models), ``OHEMPixelSampler``, ``DiceLoss``,
``FocalLoss``, ``LovaszLoss`` and a weighted list of them (``loss_decode``); the official DeepLab's ``top_k_percent_pixels``.

Every loss is a ``keras.losses.Loss`` a plain ``model.fit`` user can pass (``y_true`` int [B, H, W], ``y_pred``
logits [B, H, W, C]); :func:`build_loss` makes one from mmseg's own config syntax (the ``train.decode_loss`` and
``train.sampler`` config fields, the same JSON the reference kit's ``train_toy.py`` takes). Each returns the
reduced scalar (mmseg reduces per loss, not per sample). Logits are computed in float32, or float64 when given
float64 (the parity tests).
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import tensorflow as tf

LOSS_TYPES = ("CrossEntropyLoss", "DiceLoss", "FocalLoss", "LovaszLoss", "TopKPixelLoss")
SAMPLER_TYPES = ("OHEMPixelSampler",)


def _logits(y_pred):
    return y_pred if y_pred.dtype == tf.float64 else tf.cast(y_pred, tf.float32)


def _refuse_integer_predictions(y_pred):
    """Labels passed as predictions (``loss(y_pred, y_true)``, or a class map instead of logits) would be cast to
    float by ``keras.losses.Loss.__call__`` and give a finite, meaningless loss: an integer or boolean ``y_pred``
    is refused, naming what was received."""
    dtype = getattr(y_pred, "dtype", None)
    dtype = tf.as_dtype(dtype) if dtype is not None else tf.convert_to_tensor(y_pred).dtype
    if not dtype.is_floating:
        raise TypeError(f"segmentation losses take float logits [batch, height, width, classes] as y_pred "
                        f"(loss(y_true, y_pred)), received a {dtype.name} tensor of shape "
                        f"{tuple(getattr(y_pred, 'shape', ()))}: were labels passed as predictions?")


def _labels(y_true):
    labels = tf.cast(y_true, tf.int32)
    return tf.squeeze(labels, -1) if labels.shape.rank == 4 else labels


def _pixel_cross_entropy(labels, logits, ignore_index):
    """(per-pixel softmax cross-entropy, 0 at ignored pixels; the valid mask as the logits' dtype)."""
    valid = tf.not_equal(labels, ignore_index)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    return tf.where(valid, per_pixel, tf.zeros_like(per_pixel)), tf.cast(valid, logits.dtype)


def checked_class_weight(class_weight, loss: str):
    """``class_weight`` as a list of floats, or None; refused (naming the loss and the value) when a weight is not a
    finite number >= 0 or all are 0: such weights train on nothing, or on NaN, without another word."""
    if class_weight is None:
        return None
    try:
        weights = [float(w) for w in class_weight]
    except (TypeError, ValueError):
        raise ValueError(f"{loss} class_weight must be a list of numbers, received {class_weight!r}") from None
    bad = [w for w in weights if not math.isfinite(w) or w < 0]
    if bad or not any(weights):
        raise ValueError(f"{loss} class_weight must be finite numbers >= 0, not all 0, received {weights}"
                         + (f" ({bad[0]} is not)" if bad else " (all 0: every pixel would weigh nothing)"))
    return weights

class OhemPixelSampler:
    """mmseg's ``OHEMPixelSampler``: per-pixel weights 1 for the hard pixels, 0 elsewhere (no gradient). With
    ``thresh``: pixels whose predicted probability of their label is below max(thresh, the (min_kept x batch)-th
    smallest such probability); without: the min_kept x batch pixels of largest ``loss``."""

    def __init__(self, thresh: float | None = None, min_kept: int = 100000):
        if thresh is not None and not 0 < thresh <= 1:
            raise ValueError(f"OHEMPixelSampler thresh must be in (0, 1] or null, received {thresh!r}")
        if not isinstance(min_kept, int) or min_kept < 1:
            raise ValueError(f"OHEMPixelSampler min_kept must be a positive integer, received {min_kept!r}")
        self.thresh, self.min_kept = thresh, min_kept

    def weights(self, labels, logits, ignore_index, per_pixel_loss):
        """``per_pixel_loss()``: the per-pixel loss to rank by, computed only without ``thresh``."""
        logits, valid = tf.stop_gradient(logits), tf.not_equal(labels, ignore_index)
        kept = self.min_kept * tf.shape(labels)[0]
        if self.thresh is not None:
            safe = tf.where(valid, labels, tf.zeros_like(labels))
            probability = tf.gather(tf.nn.softmax(logits, axis=-1), safe[..., None], batch_dims=3)[..., 0]
            ranked = tf.sort(tf.boolean_mask(probability, valid))
            count = tf.size(ranked)
            floor = tf.cond(count > 0, lambda: tf.gather(ranked, tf.minimum(kept, count - 1)),
                            lambda: tf.zeros([], probability.dtype))
            threshold = tf.maximum(floor, tf.cast(self.thresh, probability.dtype))
            chosen = tf.logical_and(valid, probability < threshold)
        else:
            losses = tf.where(valid, tf.stop_gradient(per_pixel_loss()), tf.fill(tf.shape(labels), -np.inf))
            flat = tf.reshape(losses, [-1])
            top = tf.math.top_k(flat, k=tf.minimum(kept, tf.reduce_sum(tf.cast(valid, tf.int32)))).indices
            chosen = tf.reshape(tf.scatter_nd(top[:, None], tf.ones_like(top, tf.bool), tf.shape(flat)),
                                tf.shape(labels))
        return tf.cast(chosen, logits.dtype)

    def get_config(self):
        return {"type": "OHEMPixelSampler", "thresh": self.thresh, "min_kept": self.min_kept}


def _sampler_of(spec):
    if spec is None or isinstance(spec, OhemPixelSampler):
        return spec
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in SAMPLER_TYPES:
        raise ValueError(f"sampler type must be one of {SAMPLER_TYPES}, received {kind!r}")
    return OhemPixelSampler(**spec)


class _SegmentationLoss(keras.losses.Loss):
    def __init__(self, name, ignore_index=255, loss_weight=1.0, sampler=None, **kwargs):
        kwargs.setdefault("reduction", "sum_over_batch_size")
        super().__init__(name=name, **kwargs)
        self.ignore_index, self.loss_weight = int(ignore_index), float(loss_weight)
        self.sampler = _sampler_of(sampler)

    def __call__(self, y_true, y_pred, sample_weight=None):
        _refuse_integer_predictions(y_pred)
        return super().__call__(y_true, y_pred, sample_weight)

    def pixel_weights(self, labels, logits):
        """The sampler's per-pixel weights (None without a sampler); the loss it ranks by is this one's."""
        if self.sampler is None:
            return None
        return self.sampler.weights(labels, logits, self.ignore_index, lambda: self.per_pixel(labels, logits))

    def per_pixel(self, labels, logits):
        raise NotImplementedError(f"{type(self).__name__} has no per-pixel form for OHEM without thresh")

    def call(self, y_true, y_pred):
        labels, logits = _labels(y_true), _logits(y_pred)
        return _as_loss(self.loss_weight * self.reduced(labels, logits, self.pixel_weights(labels, logits)))

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index, "loss_weight": self.loss_weight,
                "sampler": None if self.sampler is None else self.sampler.get_config()}


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class SegmentationCrossEntropy(_SegmentationLoss):
    """mmseg's ``CrossEntropyLoss``: per-pixel softmax cross-entropy, pixels labelled ``ignore_index`` adding 0.
    Reduction as mmseg: the mean over ALL pixels (the released models' setting), or with ``avg_non_ignore`` over
    the non-ignored ones; with ``class_weight`` each pixel's loss is scaled by its class's weight and the sum is
    divided by the weights' sum over the pixels averaged (mmseg 1.2.2 fails on ignored pixels there; here an
    ignored pixel counts with weight 1 unless ``avg_non_ignore``). ``use_sigmoid`` (one output channel, labels
    0/1): binary cross-entropy on the logit, as mmseg's ``use_sigmoid=True``."""

    def __init__(self, ignore_index: int = 255, class_weight=None, avg_non_ignore: bool = False,
                 use_sigmoid: bool = False, loss_weight: float = 1.0, sampler=None,
                 name: str = "segmentation_cross_entropy", **kwargs):
        super().__init__(name, ignore_index, loss_weight, sampler, **kwargs)
        self.class_weight = checked_class_weight(class_weight, type(self).__name__)
        self.avg_non_ignore, self.use_sigmoid = bool(avg_non_ignore), bool(use_sigmoid)
        if self.use_sigmoid and self.class_weight is not None:
            raise ValueError("CrossEntropyLoss use_sigmoid with class_weight (BCE's pos_weight) is not supported")

    def per_pixel(self, labels, logits):
        if self.use_sigmoid:
            valid = tf.not_equal(labels, self.ignore_index)
            target = tf.cast(tf.where(valid, labels, tf.zeros_like(labels)), logits.dtype)
            loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits[..., 0])
            return tf.where(valid, loss, tf.zeros_like(loss))
        loss, _ = _pixel_cross_entropy(labels, logits, self.ignore_index)
        if self.class_weight is not None:
            loss *= self._pixel_class_weights(labels, logits.dtype)
        return loss

    def _pixel_class_weights(self, labels, dtype, ignored=1.0):
        table = tf.constant(self.class_weight, dtype)
        valid = tf.not_equal(labels, self.ignore_index)
        return tf.where(valid, tf.gather(table, tf.where(valid, labels, tf.zeros_like(labels))),
                        tf.cast(ignored, dtype))

    def reduced(self, labels, logits, weights):
        loss = self.per_pixel(labels, logits)
        if weights is not None:
            loss *= weights
        valid = tf.cast(tf.not_equal(labels, self.ignore_index), logits.dtype)
        if self.class_weight is not None and not self.use_sigmoid:
            factor = tf.reduce_sum(self._pixel_class_weights(labels, logits.dtype,
                                                             0.0 if self.avg_non_ignore else 1.0))
        elif self.avg_non_ignore:
            factor = tf.reduce_sum(valid)
        else:
            factor = tf.cast(tf.size(labels), logits.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(loss), factor)

    def get_config(self):
        return {**super().get_config(), "class_weight": self.class_weight, "avg_non_ignore": self.avg_non_ignore,
                "use_sigmoid": self.use_sigmoid}


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class TopKPixelCrossEntropy(_SegmentationLoss):
    """The official DeepLab's ``top_k_percent_pixels`` (``train_utils.add_softmax_cross_entropy_loss_for_each_
    scale``): the per-pixel cross-entropy (0 at ignored pixels) of the whole batch, its ``top_k_percent`` x pixels
    largest values summed and divided by how many of them are non-zero."""

    def __init__(self, ignore_index: int = 255, top_k_percent: float = 1.0, loss_weight: float = 1.0,
                 name: str = "top_k_pixel_cross_entropy", **kwargs):
        super().__init__(name, ignore_index, loss_weight, None, **kwargs)
        if not 0 < top_k_percent <= 1:
            raise ValueError(f"top_k_percent must be in (0, 1], received {top_k_percent!r}")
        self.top_k_percent = float(top_k_percent)

    def reduced(self, labels, logits, weights):
        loss, valid = _pixel_cross_entropy(labels, logits, self.ignore_index)
        if self.top_k_percent == 1.0:
            return tf.math.divide_no_nan(tf.reduce_sum(loss), tf.reduce_sum(valid))
        flat = tf.reshape(loss, [-1])
        count = tf.cast(self.top_k_percent * tf.cast(tf.size(flat), tf.float32), tf.int32)
        top = tf.math.top_k(flat, k=count).values
        return tf.math.divide_no_nan(tf.reduce_sum(top), tf.reduce_sum(tf.cast(tf.not_equal(top, 0), loss.dtype)))

    def get_config(self):
        return {**super().get_config(), "top_k_percent": self.top_k_percent}


def _as_loss(value):
    """The reduced loss as a one-element vector: Keras passes a scalar through as it is, but divides a vector's
    mean by the replicas of a distribution strategy (whose gradients are then summed), as a single device's
    mean needs -- a scalar would double every update on two replicas."""
    return tf.reshape(value, [1])


def _one_hot(labels, classes, ignore_index, dtype):
    """One-hot [B, H, W, C] of the labels; ignored pixels all zero (mmseg's clamp to C and drop)."""
    valid = tf.not_equal(labels, ignore_index)
    return tf.one_hot(tf.where(valid, labels, tf.fill(tf.shape(labels), classes)), classes, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class DiceLoss(_SegmentationLoss):
    """mmseg 1.2.2's ``DiceLoss``: the predictions (sigmoid, or softmax with ``use_sigmoid=False``) against the
    one-hot labels (all zero at ignored pixels), flattened over classes and pixels per image; V-Net dice
    ``1 - 2 sum(p t) / (sum(p^2) + eps + sum(t^2) + eps)``, or with ``naive_dice`` ``1 - (2 sum(p t) + eps) /
    (sum(p) + sum(t) + eps)``; the mean over the batch."""

    def __init__(self, ignore_index: int = 255, use_sigmoid: bool = True, naive_dice: bool = False,
                 eps: float = 1e-3, loss_weight: float = 1.0, name: str = "dice_loss", **kwargs):
        super().__init__(name, ignore_index, loss_weight, None, **kwargs)
        self.use_sigmoid, self.naive_dice, self.eps = bool(use_sigmoid), bool(naive_dice), float(eps)

    def reduced(self, labels, logits, weights):
        classes = logits.shape[-1]
        target = _one_hot(labels, classes, self.ignore_index, logits.dtype)
        if self.use_sigmoid:
            prediction = tf.sigmoid(logits)
        else:
            prediction = tf.nn.softmax(logits, axis=-1) if classes != 1 else logits
        batch = tf.shape(logits)[0]
        prediction, target = tf.reshape(prediction, [batch, -1]), tf.reshape(target, [batch, -1])
        overlap = tf.reduce_sum(prediction * target, 1)
        if self.naive_dice:
            dice = (2 * overlap + self.eps) / (tf.reduce_sum(prediction, 1) + tf.reduce_sum(target, 1) + self.eps)
        else:
            dice = 2 * overlap / (tf.reduce_sum(prediction * prediction, 1) + self.eps
                                  + tf.reduce_sum(target * target, 1) + self.eps)
        return tf.reduce_mean(1 - dice)

    def get_config(self):
        return {**super().get_config(), "use_sigmoid": self.use_sigmoid, "naive_dice": self.naive_dice,
                "eps": self.eps}


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class FocalLoss(_SegmentationLoss):
    """mmseg's sigmoid ``FocalLoss`` (``py_sigmoid_focal_loss``): per pixel and class, binary cross-entropy of the
    logit against the one-hot label times ``(alpha t + (1 - alpha)(1 - t)) |t - sigmoid|^gamma``, times the class
    weight; ignored pixels weigh 0; the mean over pixels x classes. (mmseg 1.2.2's CPU path takes the wrong
    one-hot column for more than one class; this is the formula its GPU path and ``py_sigmoid_focal_loss``
    compute.)"""

    def __init__(self, ignore_index: int = 255, gamma: float = 2.0, alpha: float = 0.5, class_weight=None,
                 loss_weight: float = 1.0, name: str = "focal_loss", **kwargs):
        super().__init__(name, ignore_index, loss_weight, None, **kwargs)
        self.gamma, self.alpha = float(gamma), float(alpha)
        self.class_weight = checked_class_weight(class_weight, type(self).__name__)

    def reduced(self, labels, logits, weights):
        classes = logits.shape[-1]
        valid = tf.cast(tf.not_equal(labels, self.ignore_index), logits.dtype)[..., None]
        target = tf.one_hot(tf.where(valid[..., 0] > 0, labels, tf.zeros_like(labels)), classes, dtype=logits.dtype)
        probability = tf.sigmoid(logits)
        one_minus_pt = (1 - probability) * target + probability * (1 - target)
        focal = (self.alpha * target + (1 - self.alpha) * (1 - target)) * one_minus_pt ** self.gamma
        loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits) * focal * valid
        if self.class_weight is not None:
            loss *= tf.constant(self.class_weight, logits.dtype)
        return tf.reduce_mean(loss)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha, "class_weight": self.class_weight}


def _lovasz_gradient(foreground_sorted):
    """Lovász extension's gradient of the Jaccard loss along each row of sorted foreground indicators (the
    Lovász-softmax paper's Alg. 1, as mmseg's ``lovasz_grad``)."""
    total = tf.reduce_sum(foreground_sorted, -1, keepdims=True)
    intersection = total - tf.cumsum(foreground_sorted, -1)
    union = total + tf.cumsum(1.0 - foreground_sorted, -1)  # >= 1 from the first element on
    jaccard = 1.0 - intersection / union
    return tf.concat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], -1)


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class LovaszLoss(_SegmentationLoss):
    """mmseg 1.2.2's ``LovaszLoss``: ``multi_class`` (Lovász-softmax on the softmax probabilities: per class, the
    errors ``|fg - p_c|`` sorted in decreasing order dotted with the Lovász gradient of the sorted foreground,
    averaged over ``classes`` -- ``present`` in the labels, ``all``, or a list -- each times its ``class_weight``)
    or ``binary`` (Lovász hinge on one logit per pixel, ``relu(1 - logit * sign)``); over the whole batch's
    non-ignored pixels, or with ``per_image`` per image and then the mean (``reduction`` ``mean``) or sum. The
    ignored pixels are sorted last with zero error instead of being removed, which leaves every other term as
    it is and keeps shapes static (XLA)."""

    def __init__(self, ignore_index: int = 255, loss_type: str = "multi_class", classes="present",
                 per_image: bool = False, reduction=None, class_weight=None, loss_weight: float = 1.0,
                 name: str = "lovasz_loss", **kwargs):
        if loss_type not in ("multi_class", "binary"):
            raise ValueError(f"LovaszLoss loss_type must be 'multi_class' or 'binary', received {loss_type!r}")
        if not (classes in ("present", "all") or (isinstance(classes, (list, tuple))
                                                   and all(isinstance(c, int) for c in classes))):
            raise ValueError(f"LovaszLoss classes must be 'present', 'all' or a list of class ids, received {classes!r}")
        allowed = ("mean", "sum") if per_image else ("none",)  # mmseg asserts 'none' without per_image
        reduction = reduction if reduction is not None else allowed[0]
        if reduction not in allowed:
            raise ValueError(f"LovaszLoss reduction must be one of {allowed} with per_image={bool(per_image)} "
                             f"(as mmseg), received {reduction!r}")
        super().__init__(name, ignore_index, loss_weight, None, **kwargs)
        self.loss_type, self.per_image, self.image_reduction = loss_type, bool(per_image), reduction
        self.classes = list(classes) if isinstance(classes, (list, tuple)) else classes
        self.class_weight = checked_class_weight(class_weight, type(self).__name__)

    def _softmax_rows(self, probabilities, labels, valid):
        """[R, P, C] probabilities, [R, P] labels and valid mask -> [R] losses (mmseg's lovasz_softmax_flat)."""
        classes = probabilities.shape[-1]
        dtype = probabilities.dtype
        ids = tf.range(classes)
        foreground = tf.cast(tf.equal(labels[..., None], ids), dtype) * valid[..., None]  # [R, P, C]
        single = classes == 1  # mmseg: a one-channel output is the foreground probability of class 0
        errors = tf.abs(foreground - probabilities) if not single else tf.abs(foreground - probabilities[..., :1])
        errors = tf.where(valid[..., None] > 0, errors, -tf.ones_like(errors))  # ignored: sorted last
        errors, foreground = tf.transpose(errors, [0, 2, 1]), tf.transpose(foreground, [0, 2, 1])  # [R, C, P]
        order = tf.argsort(errors, axis=-1, direction="DESCENDING", stable=True)
        errors_sorted = tf.nn.relu(tf.gather(errors, order, batch_dims=2))
        per_class = tf.reduce_sum(errors_sorted * _lovasz_gradient(tf.gather(foreground, order, batch_dims=2)), -1)
        if self.class_weight is not None:
            per_class *= tf.constant(self.class_weight, dtype)
        if self.classes == "present":
            chosen = tf.cast(tf.reduce_sum(foreground, -1) > 0, dtype)
        elif self.classes == "all":
            chosen = tf.ones_like(per_class)
        else:
            chosen = tf.broadcast_to(tf.reduce_sum(tf.one_hot(self.classes, classes, dtype=dtype), 0), tf.shape(per_class))
        return tf.math.divide_no_nan(tf.reduce_sum(per_class * chosen, -1), tf.reduce_sum(chosen, -1))

    def _hinge_rows(self, logits, labels, valid):
        """[R, P] logits, labels in {0, 1} and valid mask -> [R] losses (mmseg's lovasz_hinge_flat)."""
        dtype = logits.dtype
        foreground = tf.cast(tf.equal(labels, 1), dtype) * valid
        errors = 1.0 - logits * (2.0 * foreground - 1.0)
        errors = tf.where(valid > 0, errors, tf.fill(tf.shape(errors), tf.constant(-np.inf, dtype)))
        order = tf.argsort(errors, axis=-1, direction="DESCENDING", stable=True)
        errors_sorted = tf.nn.relu(tf.gather(errors, order, batch_dims=1))
        return tf.reduce_sum(errors_sorted * _lovasz_gradient(tf.gather(foreground, order, batch_dims=1)), -1)

    def reduced(self, labels, logits, weights):
        classes = logits.shape[-1]
        rows = tf.shape(logits)[0] if self.per_image else 1
        valid = tf.reshape(tf.cast(tf.not_equal(labels, self.ignore_index), logits.dtype), [rows, -1])
        flat_labels = tf.reshape(labels, [rows, -1])
        if self.loss_type == "binary":
            losses = self._hinge_rows(tf.reshape(logits, [rows, -1]), flat_labels, valid)
        else:
            probabilities = tf.reshape(tf.nn.softmax(logits, axis=-1), [rows, -1, classes])
            losses = self._softmax_rows(probabilities, flat_labels, valid)
        return tf.reduce_sum(losses) if self.image_reduction == "sum" else tf.reduce_mean(losses)

    def get_config(self):
        return {**super().get_config(), "loss_type": self.loss_type, "classes": self.classes,
                "per_image": self.per_image, "reduction": self.image_reduction, "class_weight": self.class_weight}


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class SumOfLosses(keras.losses.Loss):
    """mmseg's list ``loss_decode``: the sum of several losses, each with its own ``loss_weight``; a sampler's
    hard pixels (OHEM without thresh) are ranked by the sum of their per-pixel losses, as mmseg does."""

    def __init__(self, losses, name: str = "sum_of_losses", **kwargs):
        kwargs.setdefault("reduction", "sum_over_batch_size")
        super().__init__(name=name, **kwargs)
        self.losses = [keras.losses.deserialize(loss) if isinstance(loss, dict) else loss for loss in losses]

    def __call__(self, y_true, y_pred, sample_weight=None):
        _refuse_integer_predictions(y_pred)
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        labels, logits = _labels(y_true), _logits(y_pred)
        sampler, weights = self.losses[0].sampler, None
        if sampler is not None:  # one set of hard pixels for every loss, ranked by their summed losses
            weights = sampler.weights(labels, logits, self.losses[0].ignore_index, lambda: tf.add_n(
                [loss.per_pixel(labels, logits) for loss in self.losses]))
        return _as_loss(tf.add_n([loss.loss_weight * loss.reduced(labels, logits, weights) for loss in self.losses]))

    def get_config(self):
        return {**super().get_config(), "losses": [keras.losses.serialize(loss) for loss in self.losses]}


_BUILDERS = {"CrossEntropyLoss": SegmentationCrossEntropy, "DiceLoss": DiceLoss, "FocalLoss": FocalLoss,
             "LovaszLoss": LovaszLoss, "TopKPixelLoss": TopKPixelCrossEntropy}
# mmseg keys with no effect here at these values (the mean reduction, activation inside the loss); other values
# are refused
_NO_OP_KEYS = {"loss_name": None, "reduction": "mean", "activate": True}


def _parse(text, key):
    if isinstance(text, (dict, list)) or text is None:
        return text
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError as error:
        raise ValueError(f"train.{key} must be JSON in mmseg's syntax, e.g. "
                         '\'{"type": "CrossEntropyLoss", "avg_non_ignore": true}\', received '
                         f"{text!r} ({error})") from None


def build_loss(decode_loss="", sampler="", *, ignore_index: int = 255, class_names=(),
               key: str = "decode_loss") -> keras.losses.Loss:
    """A loss from mmseg's config syntax (``train.decode_loss``: one loss dict or a list of them; ``train.sampler``:
    ``{"type": "OHEMPixelSampler", "thresh": 0.7, "min_kept": 100000}``); empty: the reference's plain
    cross-entropy. Errors name the key and what it accepts (``class_weight`` of the wrong length lists the
    classes)."""
    specs = _parse(decode_loss, key) or {"type": "CrossEntropyLoss"}
    specs = [specs] if isinstance(specs, dict) else specs
    sampler = _sampler_of(_parse(sampler, "sampler"))
    if not isinstance(specs, list) or not specs or not all(isinstance(spec, dict) for spec in specs):
        raise ValueError(f"train.{key} must be a loss dict or a list of them, received {decode_loss!r}")
    losses = []
    for spec in specs:
        kind = spec.get("type")
        if kind not in _BUILDERS:
            raise ValueError(f"train.{key} type must be one of {LOSS_TYPES}, received {kind!r}")
        for name, value in _NO_OP_KEYS.items():
            if kind == "LovaszLoss" and name == "reduction":
                continue  # its own: 'none' over the batch, 'mean' or 'sum' over images (checked by the class)
            if value is not None and spec.get(name, value) != value:
                raise ValueError(f"train.{key} {kind}: {name} {spec[name]!r} is not supported (only {value!r})")
        spec = {k: v for k, v in spec.items() if (k not in _NO_OP_KEYS or (kind, k) == ("LovaszLoss", "reduction"))
                and k != "type"}
        weights = spec.get("class_weight")
        if weights is not None and class_names and len(weights) != len(class_names):
            raise ValueError(f"train.{key} class_weight has {len(weights)} values but the model has "
                             f"{len(class_names)} classes: {', '.join(class_names)}")
        if "loss_weight" in spec and (not isinstance(spec["loss_weight"], (int, float)) or spec["loss_weight"] <= 0):
            raise ValueError(f"train.{key} loss_weight must be a number > 0, received {spec['loss_weight']!r}")
        try:
            losses.append(_BUILDERS[kind](ignore_index=ignore_index, **spec))
        except TypeError as error:
            raise ValueError(f"train.{key} {kind}: {error}") from None
    if sampler is not None:  # mmseg's decode head weights every loss of its loss_decode by the sampler's pixels
        if not all(isinstance(loss, SegmentationCrossEntropy) and not loss.use_sigmoid for loss in losses):
            raise ValueError("train.sampler (OHEM) weights pixels of CrossEntropyLoss only (mmseg's DiceLoss and "
                             "FocalLoss refuse pixel weights); remove the sampler or the other losses")
        for loss in losses:
            loss.sampler = sampler
    return losses[0] if len(losses) == 1 else SumOfLosses(losses)

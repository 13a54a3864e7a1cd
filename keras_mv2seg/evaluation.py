"""mIoU / aAcc / mAcc exactly as the reference accumulates them.

Per class, over the whole dataset: intersection I (pixels predicted c where the label is c), predicted area P,
label area L, union U = P + L - I; ignore-label pixels are dropped before counting. Then
``IoU = I / U``, ``Acc = I / L`` per class, ``mIoU = nanmean(IoU)``, ``mAcc = nanmean(Acc)`` (a class absent
from both labels and predictions is NaN and left out of the mean), ``aAcc = sum(I) / sum(L)``. Values are
fractions in [0, 1]; the tools print them as percentages like the reference's tables.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import tensorflow as tf

from keras_mv2seg.errors import data_errors_named
from keras_mv2seg.inference import Inference, Tiling, pad_to_crop_logits, slide_logits
from keras_mv2seg.ops import resize_bilinear

__all__ = ["ConfusionAccumulator", "compute_metrics", "format_table"]


class ConfusionAccumulator:
    """Streaming accumulation of a (num_classes x num_classes) confusion matrix: memory does not grow with
    the number of images. Rows are labels, columns predictions."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, received {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)
        self.images = 0

    def update(self, prediction, label, name: str | None = None):
        prediction = np.asarray(prediction)
        label = np.asarray(label)
        where = f" in {name}" if name else f" in image {self.images}"
        if prediction.shape != label.shape:
            raise ValueError(f"prediction shape {prediction.shape} differs from label shape {label.shape}{where}")
        if not (np.issubdtype(prediction.dtype, np.integer) and np.issubdtype(label.dtype, np.integer)):
            raise ValueError(f"predictions and labels must be integer class maps, received {prediction.dtype} and "
                             f"{label.dtype}{where}")
        keep = label != self.ignore_index
        label = label[keep].astype(np.int64)
        prediction = prediction[keep].astype(np.int64)
        for what, values in (("label", label), ("prediction", prediction)):
            bad = (values < 0) | (values >= self.num_classes)
            if bad.any():
                raise ValueError(f"{what} values {sorted(set(values[bad].tolist()))[:10]} are outside 0..."
                                 f"{self.num_classes - 1} and not the ignore index {self.ignore_index}{where}")
        self.matrix += np.bincount(label * self.num_classes + prediction,
                                   minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)
        self.images += 1

    def merge(self, other: "ConfusionAccumulator"):
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class counts into {self.num_classes}-class counts")
        self.matrix += other.matrix
        self.images += other.images

    def result(self) -> dict:
        return metrics_from_confusion(self.matrix)


def metrics_from_confusion(matrix: np.ndarray) -> dict:
    matrix = np.asarray(matrix, np.float64)
    intersection = np.diag(matrix)
    area_label = matrix.sum(axis=1)
    area_pred = matrix.sum(axis=0)
    union = area_pred + area_label - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersection / union
        acc = intersection / area_label
    total = area_label.sum()
    return {
        "aAcc": float(intersection.sum() / total) if total else float("nan"),
        "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "mAcc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "IoU": iou,
        "Acc": acc,
    }


def compute_metrics(predictions: Iterable, labels: Iterable, num_classes: int, ignore_index: int = 255) -> dict:
    """Dataset-level aAcc, mIoU, mAcc, per-class IoU and Acc from iterables of integer class maps."""
    accumulator = ConfusionAccumulator(num_classes, ignore_index)
    predictions, labels = iter(predictions), iter(labels)
    sentinel = object()
    while True:
        prediction, label = next(predictions, sentinel), next(labels, sentinel)
        if prediction is sentinel and label is sentinel:
            break
        if prediction is sentinel or label is sentinel:
            raise ValueError(f"predictions and labels differ in length (stopped after {accumulator.images} pairs)")
        accumulator.update(prediction, label)
    return accumulator.result()


def format_table(metrics: dict, class_names) -> str:
    """Per-class IoU/Acc and the summary, in percent, as a plain-text table."""
    width = max(12, max(len(n) for n in class_names) + 2)
    lines = [f"{'class':{width}s} {'IoU':>7s} {'Acc':>7s}"]
    for name, iou, acc in zip(class_names, metrics["IoU"], metrics["Acc"]):
        lines.append(f"{name:{width}s} {100 * iou:7.2f} {100 * acc:7.2f}")
    lines.append(f"{'aAcc':{width}s} {100 * metrics['aAcc']:7.2f}")
    lines.append(f"{'mIoU':{width}s} {100 * metrics['mIoU']:7.2f}")
    lines.append(f"{'mAcc':{width}s} {100 * metrics['mAcc']:7.2f}")
    return "\n".join(lines)


def evaluate_model(model, dataset, num_classes: int, *, ignore_index: int = 255, align_corners: bool = False,
                   predict=None, tiling: Tiling | None = None, max_images: int | None = None,
                   on_prediction=None) -> dict:
    """Stream (image, label, name) elements of ``dataset`` through the model and accumulate the metrics.

    The network runs compiled (``inference.Inference``), as ``tiling`` says (default: the whole image, as the
    reference's whole test), its scores resized to the label's (original) size before the argmax, as the
    reference does, band by band. ``predict(model, image[1, h, w, 3]) -> logits`` replaces that with an
    in-memory forward of your own; ``on_prediction(name, class_map)`` sees every prediction (submission export).
    The result adds ``images`` (count) and ``confusion`` (the label x prediction matrix) to the metrics."""
    inference = None
    if predict is None:
        inference = Inference(model, tiling or Tiling(max_whole_pixels=None, align_corners=align_corners))
    accumulator = ConfusionAccumulator(num_classes, ignore_index)
    with data_errors_named():
        for index, (image, label, name) in enumerate(dataset):
            if max_images is not None and index >= max_images:
                break
            if inference is not None:
                prediction = inference.class_map(image.numpy(), size=label.shape[:2])
            else:
                logits = predict(model, image[None])
                logits = resize_bilinear(tf.cast(logits, tf.float32), tf.shape(label)[:2], align_corners)
                prediction = tf.argmax(logits[0], axis=-1, output_type=tf.int32).numpy()
            accumulator.update(prediction, label.numpy(), name=name.numpy().decode())
            if on_prediction is not None:
                on_prediction(name.numpy().decode(), prediction)
    result = accumulator.result()
    result.update(images=accumulator.images, confusion=accumulator.matrix.copy())
    return result


def test_predictor(config, mode: str | None = None, *, crop=None, stride=None):
    """``predict(model, image) -> logits`` of a test mode (default: the config's ``data.test_mode``), in memory:
    ``whole`` (None: the default forward), ``slide`` (``crop`` windows, default the crop size, at ``stride``,
    default 2/3 of the window) or ``pad`` (the official DeepLab evaluation: the image at its own size padded to
    the crop size, e.g. 513x513 for PASCAL VOC). :func:`evaluate` takes a ``Tiling`` instead, which bounds
    memory."""
    mode = mode or config.data.test_mode
    crop = tuple(crop or config.data.crop_size)
    if mode == "slide":
        stride = tuple(stride or (max(1, 2 * crop[0] // 3), max(1, 2 * crop[1] // 3)))
        return lambda m, x: slide_logits(m, x, crop, stride)
    if mode == "pad":
        return lambda m, x: pad_to_crop_logits(m, x, crop)
    return None


def evaluate(model, config, data, *, predict=None, tiling: Tiling | None = None, **options) -> dict:
    """Score ``model`` on ``data`` with the config's conventions (test mode, resize alignment, classes, ignore
    index). ``data`` is a dataset of (image float32 [h, w, 3], label int32 [h, w], name) elements: a config's
    split as ``keras_mv2seg.data.evaluation_data(config, "val", data_root)`` (or a trainer's ``DataSource``)
    makes it, or a user's own ``tf.data`` pipeline. ``tiling`` (default ``Tiling.from_config(config)``: the
    config's test mode and window) says how the network sees each image; ``options`` go to
    :func:`evaluate_model`."""
    if isinstance(data, (str, bytes)):
        raise TypeError(f"evaluate() scores a dataset, received the split name {data!r}: pass "
                        f"keras_mv2seg.data.evaluation_data(config, {data!r}, data_root) for the config's split")
    return evaluate_model(model, data, config.model.num_classes,
                          ignore_index=config.data.ignore_index, align_corners=config.model.conventions.align_corners,
                          predict=predict, tiling=None if predict else tiling or Tiling.from_config(config),
                          **options)


def plot_confusion(matrix: np.ndarray, class_names, path):
    """Row-normalised confusion matrix (rows: labels, columns: predictions) as a PNG picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(6.0, 0.35 * len(class_names))
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
    axes.set_yticks(range(len(class_names)), class_names, fontsize=7)
    axes.set_xlabel("prediction")
    axes.set_ylabel("label")
    if len(class_names) <= 40:
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                if normalised[i, j] >= 0.01:
                    axes.text(j, i, f"{100 * normalised[i, j]:.0f}", ha="center", va="center", fontsize=5,
                              color="white" if normalised[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_title("confusion matrix (row-normalised, %)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_legend(class_names, colours, path):
    """The colour of each class as a PNG picture (the legend of prediction overlays)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    columns = max(1, -(-len(class_names) // 30))
    figure = plt.figure(figsize=(2.6 * columns, 0.3 * min(len(class_names), 30) + 0.4))
    handles = [Patch(facecolor=np.asarray(colour) / 255.0, edgecolor="black", label=f"{index} {name}")
               for index, (name, colour) in enumerate(zip(class_names, colours))]
    figure.legend(handles=handles, loc="center", ncol=columns, frameon=False, fontsize=8)
    figure.savefig(path, dpi=100)
    plt.close(figure)

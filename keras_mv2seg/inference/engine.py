"""The one way an image goes through the network at inference: compiled once, whole or window by window within a
memory budget, with the test-time augmentation of the references, assembled band by band (``rows.py``).

``Inference(model, Tiling.from_config(config))`` is used by ``evaluate``, the tools and ``Segmenter``:

* ``scores(image)``: a row stream of logits (or, with test-time augmentation, averaged probabilities);
* ``class_map(image, size)``: the int32 class map, resized to ``size`` first (the label's size in evaluation);
* ``bands(image)``: (start, stop, class ids, probabilities or None) band by band, for outputs written as they
  come (a class map of 100 megapixels never has its logits in memory).
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import tensorflow as tf

from keras_mv2seg.inference.rows import (
    ArrayRows, Averaged, Flipped, Resized, Whole, Windowed, row_bands, softmax,
)

# mmseg's whole-image test on inputs up to this many pixels (a Cityscapes image, 1024x2048, is 2.1 M); larger
# images go through the config's sliding window. About 1 GiB of activations per million pixels for the
# DeepLabV3+ config (benchmarks/bench_predict.py measures it).
DEFAULT_MAX_WHOLE_PIXELS = 2048 * 2048
_BAND_BYTES = 64 << 20  # rows handed to a consumer at once: about this many bytes of float32 scores
_FORWARDS = weakref.WeakKeyDictionary()


class CompiledForward:
    """``model`` in inference mode as one ``tf.function`` over float32 [batch, height, width, 3] images of any
    size: traced once, never per image size, never run eagerly (eager execution of a whole Cityscapes image
    holds every intermediate tensor: 14-17 GiB against about 2 GiB compiled). Returns float32 numpy logits."""

    def __init__(self, model):
        self.model = model
        self.function = tf.function(lambda images: tf.cast(model(images, training=False), tf.float32),
                                    input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])

    def tensor(self, images) -> tf.Tensor:
        return self.function(tf.cast(images, tf.float32))

    def __call__(self, images) -> np.ndarray:
        return self.tensor(images).numpy()


def compiled_forward(model) -> CompiledForward:
    """The model's compiled forward, made once per model and reused by every call."""
    if isinstance(model, CompiledForward):
        return model
    forward = _FORWARDS.get(model)
    if forward is None:
        forward = _FORWARDS[model] = CompiledForward(model)
    return forward


@dataclasses.dataclass(frozen=True)
class Tiling:
    """How the network sees an image.

    ``mode``: ``whole`` (the image at once, as mmseg's whole test; above ``max_whole_pixels`` it goes through
    the sliding window instead, so memory stays bounded), ``slide`` (always the sliding window) or ``pad`` (the
    official DeepLab evaluation: scaled down to fit ``crop`` if larger, padded to it with 127.5). ``crop`` and
    ``stride`` are the sliding window's (stride default: 2/3 of the crop, as the reference configs).
    ``scales`` and ``flip``: test-time augmentation (the references' multi-scale + flip, softmax averaged);
    the scaled sizes are ``ratio x base_scale`` (keep ratio, as mmseg's aug-test) when ``base_scale`` is set,
    else ``ratio x`` the image's own size. ``batch``: windows per network call."""

    mode: str = "whole"
    crop: tuple = (512, 1024)
    stride: tuple | None = None
    max_whole_pixels: int | None = DEFAULT_MAX_WHOLE_PIXELS
    align_corners: bool = False
    scales: tuple = (1.0,)
    flip: bool = False
    base_scale: tuple | None = None
    batch: int = 1

    def __post_init__(self):
        if self.mode not in ("whole", "slide", "pad"):
            raise ValueError(f"inference mode must be whole, slide or pad, received {self.mode!r}")
        crop = tuple(int(v) for v in self.crop)
        stride = tuple(int(v) for v in (self.stride or (max(1, 2 * crop[0] // 3), max(1, 2 * crop[1] // 3))))
        if len(crop) != 2 or len(stride) != 2 or min(*crop, *stride) < 1:
            raise ValueError(f"crop and stride must be two positive sizes, received {self.crop} and {self.stride}")
        object.__setattr__(self, "crop", crop)
        object.__setattr__(self, "stride", stride)
        scales = tuple(float(s) for s in self.scales)
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive ratios, received {self.scales!r}")
        object.__setattr__(self, "scales", scales)
        if self.max_whole_pixels is not None and self.max_whole_pixels < 1:
            raise ValueError(f"max_whole_pixels must be positive, received {self.max_whole_pixels!r}")

    @classmethod
    def from_config(cls, config, **overrides) -> "Tiling":
        """The config's test settings (``data.test_mode``, ``data.crop_size``, the convention's resize
        alignment, ``data.base_scale`` for the aug-test), with ``overrides`` (None values ignored)."""
        settings = dict(mode=config.data.test_mode, crop=tuple(config.data.crop_size),
                        align_corners=config.model.conventions.align_corners)
        settings.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**settings)

    @property
    def augmented(self) -> bool:
        return self.flip or self.scales != (1.0,)

    def windowed(self, height: int, width: int) -> bool:
        """Whether an image of this size goes through the sliding window."""
        if self.mode == "slide":
            return True
        return self.mode == "whole" and self.max_whole_pixels is not None and height * width > self.max_whole_pixels


def _scaled_size(height, width, ratio, base_scale):
    if base_scale is not None:
        from keras_mv2seg.ops import rescale_size

        size = rescale_size(height, width, base_scale, ratio)
        return int(size[0]), int(size[1])
    return max(1, int(height * ratio + 0.5)), max(1, int(width * ratio + 0.5))


def fit_inside(height: int, width: int, crop) -> tuple[int, int]:
    """``fit_to_crop_size`` in plain integers (float32 scale, rounded half to even, as the graph form)."""
    scale = min(np.float32(1.0), np.float32(crop[0]) / np.float32(height), np.float32(crop[1]) / np.float32(width))
    fit_h = int(np.round(np.float32(height) * scale))
    fit_w = int(np.round(np.float32(width) * scale))
    return min(max(fit_h, 1), crop[0]), min(max(fit_w, 1), crop[1])


class Inference:
    """The network of ``model`` compiled once, run on images as ``tiling`` says (see the module)."""

    def __init__(self, model, tiling: Tiling | None = None):
        self.forward = compiled_forward(model)
        self.tiling = tiling or Tiling()

    def _network(self, source):
        tiling = self.tiling
        if tiling.mode == "pad":
            return self._pad_to_crop(source)
        if tiling.windowed(source.height, source.width):
            return Windowed(source, self.forward, tiling.crop, tiling.stride, batch=tiling.batch)
        return Whole(source, self.forward)

    def _pad_to_crop(self, source):
        crop = self.tiling.crop
        fit_h, fit_w = fit_inside(source.height, source.width, crop)
        small = Resized(source, (fit_h, fit_w), align_corners=True).rows(0, fit_h)
        padded = np.full((1, crop[0], crop[1], 3), 127.5, np.float32)  # 0 after DeepLab's x * 2/255 - 1
        padded[0, :fit_h, :fit_w] = small
        logits = ArrayRows(self.forward(padded)[0, :fit_h, :fit_w])
        return Resized(logits, (source.height, source.width), align_corners=True)

    def scores(self, image):
        """(row stream, probabilities): the logits of ``image`` (an [H, W, 3] array or a row stream), or with
        test-time augmentation the averaged probabilities (then ``probabilities`` is True)."""
        source = image if hasattr(image, "rows") else ArrayRows(image)
        tiling = self.tiling
        if not tiling.augmented:
            return self._network(source), False
        streams = []
        for ratio in tiling.scales:
            size = _scaled_size(source.height, source.width, ratio, tiling.base_scale)
            scaled = Resized(source, size, align_corners=False)
            for flipped in ((False, True) if tiling.flip else (False,)):
                logits = Flipped(self._network(Flipped(scaled))) if flipped else self._network(scaled)
                streams.append(Resized(logits, (source.height, source.width), tiling.align_corners))
        return Averaged(streams, softmax), True

    def bands(self, image, *, probabilities: bool = False, size=None):
        """Yield ``(start, stop, class_ids int32 [rows, W], probabilities float32 [rows, W, C] or None)`` band
        by band over the whole image (resized to ``size`` first when given)."""
        stream, are_probabilities = self.scores(image)
        if size is not None and tuple(size) != (stream.height, stream.width):
            stream = Resized(stream, size, self.tiling.align_corners)
        band = max(1, _BAND_BYTES // max(1, 4 * stream.width * (stream.channels or 1)))
        for start, stop in row_bands(stream.height, band):
            scores = stream.rows(start, stop)
            ids = np.argmax(scores, axis=-1).astype(np.int32)
            if probabilities and not are_probabilities:
                scores = softmax(scores)
            yield start, stop, ids, scores if probabilities else None

    def class_map(self, image, size=None) -> np.ndarray:
        """int32 class map [H, W] of ``image`` (at ``size`` when given: the logits are resized before the
        argmax, as the references score)."""
        rows = [ids for _, _, ids, _ in self.bands(image, size=size)]
        return np.concatenate(rows, axis=0)

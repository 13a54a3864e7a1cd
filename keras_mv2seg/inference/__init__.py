"""Inference on top of a segmenter: the compiled, bounded-memory engine (``engine``: whole image or sliding
window within a memory budget, test-time augmentation, results band by band), the row streams it assembles
(``rows``), and the in-memory reference forms (``modes``: mmseg's slide and aug-test, the official DeepLab's
pad-to-crop graph, which the exports trace)."""

from keras_mv2seg.inference.engine import (  # noqa: F401
    DEFAULT_MAX_WHOLE_PIXELS, CompiledForward, Inference, Tiling, compiled_forward,
)
from keras_mv2seg.inference.modes import (  # noqa: F401
    DEEPLAB, fit_to_crop_size, multi_scale_flip_logits, pad_to_crop_logits, pad_to_crop_predict, predict_labels,
    slide_logits,
)

__all__ = ["Inference", "Tiling", "CompiledForward", "compiled_forward", "DEFAULT_MAX_WHOLE_PIXELS",
           "predict_labels", "slide_logits", "multi_scale_flip_logits", "pad_to_crop_logits", "pad_to_crop_predict",
           "fit_to_crop_size"]

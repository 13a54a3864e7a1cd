"""``load_weights``: one entry point for every weight format the project reads."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from keras_mv2seg.convert.core import PortReport


def _is_tf_checkpoint(path: Path) -> bool:
    return Path(f"{path}.index").is_file() or (path.is_dir() and (path / "checkpoint").is_file())


def load_weights(model: keras.Model, path, *, part: str = "all", skip_classifier: bool = False):
    """Load weights into a model built by :func:`keras_mv2seg.build_segmenter`, by file type:

    * ``*.pth`` / ``*.pt``: mmseg segmentor or (``part="backbone"``) mmcls ImageNet checkpoint;
    * a TF1 checkpoint prefix (``model.ckpt`` with ``model.ckpt.index`` beside it) or its folder: official
      DeepLab checkpoints;
    * ``*.weights.h5`` / ``*.keras``: weights saved by Keras from a model of the same config.

    ``skip_classifier=True`` keeps the model's classifier(s) as initialised, for fine-tuning to another
    number of classes. Returns a :class:`PortReport` for imported checkpoints. Any weight the file cannot
    provide, any mis-shaped or unused tensor fails with a message naming it, and nothing is loaded.
    """
    path = Path(os.fspath(path))
    suffix = path.name.lower()
    if suffix.endswith((".pth", ".pt")):
        _require(model, "mmseg", path)
        from keras_mv2seg.convert.mmseg import load_mmseg_checkpoint

        return load_mmseg_checkpoint(model, path, part=part, skip_classifier=skip_classifier)
    if _is_tf_checkpoint(path):
        _require(model, "deeplab", path)
        from keras_mv2seg.convert.deeplab import load_deeplab_checkpoint

        return load_deeplab_checkpoint(model, path, skip_classifier=skip_classifier)
    if suffix.endswith((".weights.h5", ".keras")):
        if part != "all" or skip_classifier:
            raise ValueError("part/skip_classifier apply to imported checkpoints, not to Keras weight files")
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        model.load_weights(path)
        return PortReport(str(path), assigned=[v.path for v in model.weights])
    raise ValueError(f"{path}: unknown weight format; expected .pth/.pt (mmseg), a TF1 checkpoint prefix "
                     "(DeepLab, with a .index file beside it) or .weights.h5/.keras")


def _require(model: keras.Model, convention: str, path: Path):
    """Refuse to load a checkpoint of one convention into a model of the other."""
    has_deeplab_head = any(layer.name == "decode_concat_projection_conv" for layer in model.layers)
    if (convention == "deeplab") != has_deeplab_head:
        kind = "an official DeepLab" if convention == "deeplab" else "an mmseg"
        raise ValueError(f"{path} is {kind} checkpoint but model {model.name!r} is not built with that "
                         f"convention (model.head/convention in its config)")

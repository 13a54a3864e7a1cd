"""``load_weights``: one entry point for every weight format the project reads."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from keras_mv2seg.convert.core import PortReport


def _is_tf_checkpoint(path: Path) -> bool:
    return Path(f"{path}.index").is_file() or (path.is_dir() and (path / "checkpoint").is_file())


def load_weights(model: keras.Model, path, *, part: str = "all", skip_classifier: bool = False,
                 allow_non_finite: bool = False):
    """Load weights into a model built by :func:`keras_mv2seg.build_segmenter`, by file type:

    * ``*.pth`` / ``*.pt``: mmseg segmentor or (``part="backbone"``) mmcls ImageNet checkpoint;
    * a TF1 checkpoint prefix (``model.ckpt`` with ``model.ckpt.index`` beside it) or its folder: official
      DeepLab checkpoints;
    * ``*.weights.h5`` / ``*.keras``: weights saved by Keras from a model of the same config;
    * a preset name (:func:`keras_mv2seg.list_presets`): the released checkpoint, downloaded and converted once
      (see :mod:`keras_mv2seg.presets`).

    ``skip_classifier=True`` keeps the model's classifier(s) as initialised, for fine-tuning to another
    number of classes. Returns a :class:`PortReport` for imported checkpoints. Any weight the file cannot
    provide, any mis-shaped or unused tensor, and (unless ``allow_non_finite``) any NaN/inf value fails with a
    message naming it, and nothing is loaded.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        from keras_mv2seg.presets import PRESETS, preset_weights

        if str(path) in PRESETS:
            path = preset_weights(str(path), training=isinstance(model.output, dict))
    suffix = path.name.lower()
    if suffix.endswith((".pth", ".pt")):
        _require(model, "mmseg", path)
        from keras_mv2seg.convert.mmseg import load_mmseg_checkpoint

        return load_mmseg_checkpoint(model, path, part=part, skip_classifier=skip_classifier,
                                     allow_non_finite=allow_non_finite)
    if _is_tf_checkpoint(path):
        _require(model, "deeplab", path)
        from keras_mv2seg.convert.deeplab import load_deeplab_checkpoint

        return load_deeplab_checkpoint(model, path, skip_classifier=skip_classifier,
                                       allow_non_finite=allow_non_finite)
    if suffix.endswith((".weights.h5", ".keras")):
        if part != "all" or skip_classifier:
            raise ValueError("part/skip_classifier apply to imported checkpoints, not to Keras weight files")
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        before = [np.array(v) for v in model.weights]
        try:
            model.load_weights(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot load Keras weights ({str(error).splitlines()[0]})") from None
        bad = [v.path for v in model.weights
               if np.issubdtype(np.dtype(v.dtype), np.floating) and not np.isfinite(np.asarray(v)).all()]
        if bad and not allow_non_finite:
            for variable, value in zip(model.weights, before):
                variable.assign(value)
            raise ValueError(f"{path}: {len(bad)} weights hold NaN/inf values (a diverged or corrupt run); nothing "
                             f"was loaded (allow_non_finite=True loads them anyway): {', '.join(bad[:5])}")
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


def _saved_layer_count(path: Path) -> int | None:
    if not path.name.endswith(".weights.h5") or not path.is_file():
        return None
    import h5py

    with h5py.File(path, "r") as handle:
        return len(handle["layers"]) if "layers" in handle else None


def build_for_inference(config, weights=None, **build_kwargs) -> keras.Model:
    """The inference model of ``config`` with ``weights`` loaded (any format :func:`load_weights` reads).

    Keras weight files hold one model view: those written by training (``best``/``final.weights.h5``)
    include the auxiliary head, so the training view is built to read them and its inference view returned.
    """
    from keras_mv2seg.models.segmenter import build_segmenter, inference_model

    model = build_segmenter(config, **build_kwargs)
    if weights is None:
        return model
    path = Path(os.fspath(weights))
    saved = _saved_layer_count(path)
    if saved is not None and config.model.aux_channels and saved != len(model.layers):
        model = build_segmenter(config, auxiliary=True, **build_kwargs)
        if saved != len(model.layers):
            raise ValueError(f"{path} holds weights of a model with {saved} layers; config {config.name!r} builds "
                             f"{len(inference_model(model).layers)} (inference) or {len(model.layers)} (training)")
    load_weights(model, path)
    return inference_model(model)

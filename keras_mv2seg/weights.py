"""``load_weights``: one entry point for every weight format the project reads (files of both references,
the project's own ``.weights.h5`` and preset names), and ``build_for_inference`` on top of it."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from keras_mv2seg.convert.core import PortReport
from keras_mv2seg.convert.deeplab import load_deeplab_checkpoint
from keras_mv2seg.convert.mmseg import load_mmseg_checkpoint
from keras_mv2seg.models.segmenter import build_segmenter, inference_model, model_config_of
from keras_mv2seg.presets import PRESETS, preset_weights
from keras_mv2seg.weight_files import save_weights, saved_layer_count, weights_metadata

__all__ = ["load_weights", "build_for_inference", "save_weights", "weights_metadata"]

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

        if str(path) in PRESETS:
            path = preset_weights(str(path), training=isinstance(model.output, dict))
    suffix = path.name.lower()
    if suffix.endswith((".pth", ".pt")):
        _require(model, "mmseg", path)
        return load_mmseg_checkpoint(model, path, part=part, skip_classifier=skip_classifier,
                                     allow_non_finite=allow_non_finite)
    if _is_tf_checkpoint(path):
        _require(model, "deeplab", path)
        return load_deeplab_checkpoint(model, path, skip_classifier=skip_classifier,
                                       allow_non_finite=allow_non_finite)
    if suffix.endswith((".weights.h5", ".keras")):
        if part != "all" or skip_classifier:
            raise ValueError("part/skip_classifier apply to imported checkpoints, not to Keras weight files")
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        metadata = weights_metadata(path) or {}
        if metadata.get("convention"):
            _require(model, metadata["convention"], path)
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
    """Refuse to load weights of one convention into a model of the other, by the config the model was built
    from. A model without one (rebuilt by Keras from a saved file) is not guessed at: the converters' name
    mapping, all or nothing, refuses it layer by layer."""
    model_config = model_config_of(model)
    if model_config is not None and model_config.convention != convention:
        kind = "an official DeepLab" if convention == "deeplab" else "an mmseg"
        raise ValueError(f"{path} is {kind} checkpoint but model {model.name!r} is not built with that "
                         f"convention (model.head/convention in its config)")


def build_for_inference(config, weights=None, **build_kwargs) -> keras.Model:
    """The inference model of ``config`` with ``weights`` loaded (any format :func:`load_weights` reads).

    Keras weight files hold one model view: those written by training (``best``/``final.weights.h5``)
    include the auxiliary head, so the training view is built to read them and its inference view returned.
    """
    model = build_segmenter(config, **build_kwargs)
    if weights is None:
        return model
    path = Path(os.fspath(weights))
    metadata = weights_metadata(path)
    if metadata is not None:
        if metadata["view"] == "training" and config.model.aux_channels:
            model = build_segmenter(config, auxiliary=True, **build_kwargs)
        load_weights(model, path)
        return inference_model(model)
    saved = saved_layer_count(path)  # files without metadata: the layer count tells the view
    if saved is not None and config.model.aux_channels and saved != len(model.layers):
        model = build_segmenter(config, auxiliary=True, **build_kwargs)
        if saved != len(model.layers):
            raise ValueError(f"{path} holds weights of a model with {saved} layers; config {config.name!r} builds "
                             f"{len(inference_model(model).layers)} (inference) or {len(model.layers)} (training)")
    load_weights(model, path)
    return inference_model(model)

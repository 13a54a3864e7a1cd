"""``load_weights``: one entry point for every weight format the project reads (files of both references,
the project's own ``.weights.h5`` and preset names), and ``build_for_inference`` on top of it. Which importer
reads a file is decided in :mod:`keras_mv2seg.weights.importers`."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from keras_mv2seg.models.segmenter import build_segmenter, inference_model, model_config_of
from keras_mv2seg.weights.importers import CONVENTION_OF_KIND, import_checkpoint, weight_kind
from keras_mv2seg.weights.port import PortReport
from keras_mv2seg.weights.presets import PRESETS, preset_weights
from keras_mv2seg.weights.saved import load_keras_weights, weights_metadata


def load_weights(model: keras.Model, path, *, part: str = "all", skip_classifier: bool = False,
                 allow_non_finite: bool = False) -> PortReport:
    """Load weights into a model built by :func:`keras_mv2seg.build_segmenter`, by file type:

    * ``*.pth`` / ``*.pt``: mmseg segmentor or (``part="backbone"``) mmcls ImageNet checkpoint;
    * a TF1 checkpoint prefix (``model.ckpt`` with ``model.ckpt.index`` beside it) or its folder: official
      DeepLab checkpoints;
    * ``*.weights.h5`` / ``*.keras``: weights saved by Keras from a model of the same config;
    * a preset name (:func:`keras_mv2seg.list_presets`): the released checkpoint, downloaded and converted once
      (see :mod:`keras_mv2seg.weights.presets`).

    ``skip_classifier=True`` keeps the model's classifier(s) as initialised, for fine-tuning to another
    number of classes. Returns a :class:`PortReport`. Any weight the file cannot provide, any mis-shaped or
    unused tensor, and (unless ``allow_non_finite``) any NaN/inf value fails with a message naming it, and
    nothing is loaded.
    """
    path = Path(os.fspath(path))
    if not path.exists() and str(path) in PRESETS:
        path = preset_weights(str(path), training=isinstance(model.output, dict))
    kind = weight_kind(path)
    if kind == "keras":
        if part != "all" or skip_classifier:
            raise ValueError("part/skip_classifier apply to imported checkpoints, not to Keras weight files")
        metadata = weights_metadata(path) if path.is_file() else None
        if metadata and metadata.get("convention"):
            _require(model, metadata["convention"], path)
        return load_keras_weights(model, path, allow_non_finite=allow_non_finite)
    _require(model, CONVENTION_OF_KIND[kind], path)
    return import_checkpoint(model, path, part=part, skip_classifier=skip_classifier,
                             allow_non_finite=allow_non_finite)


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
    The view comes from the file's metadata (:func:`keras_mv2seg.weights.save_weights`); a file without it
    (plain ``model.save_weights``) is loaded into the inference view, else into the training view, strictly.
    """
    model = build_segmenter(config, **build_kwargs)
    if weights is None:
        return model
    path = Path(os.fspath(weights))
    metadata = weights_metadata(path) if path.is_file() else None
    if metadata is not None:
        if metadata["view"] == "training" and config.model.aux_channels:
            model = build_segmenter(config, auxiliary=True, **build_kwargs)
        load_weights(model, path)
        return inference_model(model)
    if path.is_file() and weight_kind(path) == "keras" and config.model.aux_channels:
        try:
            load_weights(model, path)
            return model
        except ValueError as inference_error:
            training = build_segmenter(config, auxiliary=True, **build_kwargs)
            try:
                load_weights(training, path)
            except ValueError:
                raise inference_error from None
            return inference_model(training)
    load_weights(model, path)
    return inference_model(model)

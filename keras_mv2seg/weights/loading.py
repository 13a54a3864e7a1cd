"""``load_weights``: one entry point for every weight format the project reads (files of both references,
the project's own ``.weights.h5`` and preset names), and ``build_for_inference`` on top of it. Which importer
reads a file is decided in :mod:`keras_mv2seg.weights.importers`."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from keras_mv2seg.models.segmenter import build_segmenter, inference_model, model_config_of
from keras_mv2seg.weights.deeplab import checkpoint_prefix
from keras_mv2seg.weights.importers import CONVENTION_OF_KIND, import_checkpoint, weight_kind
from keras_mv2seg.weights.port import PortReport
from keras_mv2seg.weights.presets import PRESETS, preset_config, preset_weights
from keras_mv2seg.weights.torch_pickle import load_state_dict
from keras_mv2seg.weights.saved import (config_for_weights, load_keras_weights, load_keras_weights_but_classifiers,
                                       weights_metadata)


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
        if part == "all" and not skip_classifier and model_config_of(model) == preset_config(str(path)).model:
            path = preset_weights(str(path), model=model)  # the verification load is the load
            return PortReport(str(path), assigned=[v.path for v in model.weights])
        path = preset_weights(str(path), training=isinstance(model.output, dict))
    kind = weight_kind(path)
    if kind == "keras":
        if part != "all":
            raise ValueError(f"part={part!r} applies to imported checkpoints, not to Keras weight files ({path})")
        metadata = weights_metadata(path) if path.is_file() else None
        if metadata and metadata.get("convention"):
            _require(model, metadata["convention"], path)
        if skip_classifier:
            return load_keras_weights_but_classifiers(model, path, allow_non_finite=allow_non_finite)
        return load_keras_weights(model, path, allow_non_finite=allow_non_finite)
    _require(model, CONVENTION_OF_KIND[kind], path)
    return import_checkpoint(model, path, part=part, skip_classifier=skip_classifier,
                             allow_non_finite=allow_non_finite)


def source_classes(source) -> int | None:
    """The class count of a weight source (a preset name or any file :func:`load_weights` reads), from what it
    holds: the preset's config, a ``.weights.h5``'s metadata, an mmseg ``decode_head.conv_seg.weight``, a
    DeepLab ``logits/semantic/weights``; None when the source does not say (a Keras file without metadata, an
    ImageNet backbone)."""
    path = Path(os.fspath(source))
    if not path.exists() and str(path) in PRESETS:
        return preset_config(str(path)).model.num_classes
    kind = weight_kind(path)
    if kind == "keras":
        metadata = weights_metadata(path) if path.is_file() else None
        return int(metadata["num_classes"]) if metadata and "num_classes" in metadata else None
    if kind == "mmseg":
        classifier = load_state_dict(path).get("decode_head.conv_seg.weight")
        return None if classifier is None else int(classifier.shape[0])
    import tensorflow as tf

    shapes = tf.train.load_checkpoint(checkpoint_prefix(path)).get_variable_to_shape_map()
    classifier = shapes.get("logits/semantic/weights")
    return None if classifier is None else int(classifier[-1])


def load_for_fine_tuning(model: keras.Model, source) -> tuple[PortReport, str]:
    """mmseg's ``load_from``: every weight of ``source`` (a preset name, an mmseg ``.pth``, a DeepLab checkpoint
    or a ``.weights.h5``) loaded strictly into ``model``; when the source has another class count than the
    model, its classifiers (decode and auxiliary ``conv_seg``, DeepLab's ``logits``) are left as the model's
    convention initialised them. Returns the report and a line saying what was done and why."""
    model_config = model_config_of(model)
    if model_config is None:
        raise ValueError(f"load_from {source}: the model must be built by build_segmenter")
    classes = source_classes(source)
    new_classes = classes is not None and classes != model_config.num_classes
    report = load_weights(model, source, skip_classifier=new_classes)
    why = (f"; the classifiers were re-initialised for {model_config.num_classes} classes (the source has "
           f"{classes}): {', '.join(report.skipped_layers)}") if new_classes else ""
    return report, f"load_from {source}: {report}{why}"


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
    A file whose metadata names other classes than ``config`` (fine-tuned on a user's own data) is built with
    its classes (:func:`~keras_mv2seg.weights.saved.config_for_weights`).
    """
    if weights is None:
        return build_segmenter(config, **build_kwargs)
    path = Path(os.fspath(weights))
    config = config_for_weights(config, path)  # a model fine-tuned on other classes is built with them
    model = build_segmenter(config, **build_kwargs)
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

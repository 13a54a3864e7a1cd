"""``load_weights``: one entry point for every weight format the project reads."""

from __future__ import annotations

import os
from pathlib import Path

import json

import keras
import numpy as np

from keras_mv2seg.convert.core import PortReport
from keras_mv2seg.files import atomic_save

METADATA_KEY = "keras_mv2seg"  # HDF5 root attribute of .weights.h5 files written by save_weights


def save_weights(model: keras.Model, path, config=None) -> Path:
    """Save ``model``'s weights to a ``.weights.h5`` file atomically, with the model's metadata in the file:
    config name, convention, head, classes and view (``training``: with the auxiliary head, ``inference``).
    :func:`load_weights` and :func:`build_for_inference` read it instead of guessing from layer names."""
    from keras_mv2seg import __version__
    from keras_mv2seg.models.segmenter import model_config_of

    path = Path(os.fspath(path))
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: Keras weight files must end with .weights.h5")
    model_config = model_config_of(model)
    metadata = {"format": 1, "keras_mv2seg": __version__, "config": getattr(config, "name", model.name),
                "view": "training" if isinstance(model.output, dict) else "inference"}
    if model_config is not None:
        metadata.update(convention=model_config.convention, head=model_config.head,
                        num_classes=model_config.num_classes)

    def save(staging):
        import h5py

        model.save_weights(staging)
        with h5py.File(staging, "a") as handle:
            handle.attrs[METADATA_KEY] = json.dumps(metadata)

    return atomic_save(path, save)


def weights_metadata(path) -> dict | None:
    """The metadata :func:`save_weights` stored in a ``.weights.h5`` file; None for files written otherwise
    (older releases, plain ``model.save_weights``)."""
    path = Path(os.fspath(path))
    if not path.name.endswith(".weights.h5") or not path.is_file():
        return None
    import h5py

    with h5py.File(path, "r") as handle:
        value = handle.attrs.get(METADATA_KEY)
    return json.loads(value) if value is not None else None


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
    """Refuse to load weights of one convention into a model of the other."""
    from keras_mv2seg.models.segmenter import model_config_of

    model_config = model_config_of(model)
    if model_config is not None:
        mismatch = model_config.convention != convention
    else:  # a model not built by build_segmenter (e.g. rebuilt by Keras from a saved file): its head tells
        mismatch = (convention == "deeplab") != any(layer.name == "decode_concat_projection_conv"
                                                    for layer in model.layers)
    if mismatch:
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
    metadata = weights_metadata(path)
    if metadata is not None:
        if metadata["view"] == "training" and config.model.aux_channels:
            model = build_segmenter(config, auxiliary=True, **build_kwargs)
        load_weights(model, path)
        return inference_model(model)
    saved = _saved_layer_count(path)  # files without metadata: the layer count tells the view
    if saved is not None and config.model.aux_channels and saved != len(model.layers):
        model = build_segmenter(config, auxiliary=True, **build_kwargs)
        if saved != len(model.layers):
            raise ValueError(f"{path} holds weights of a model with {saved} layers; config {config.name!r} builds "
                             f"{len(inference_model(model).layers)} (inference) or {len(model.layers)} (training)")
    load_weights(model, path)
    return inference_model(model)

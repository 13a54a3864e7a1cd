"""The project's Keras weight files: ``.weights.h5`` written atomically with the model's metadata (config,
convention, head, classes, view) as an HDF5 attribute, that metadata read back, and the one way such a file is
loaded (:func:`load_keras_weights`: all or nothing, non-finite values refused)."""

from __future__ import annotations

import errno
import io
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path

import h5py
import keras
import numpy as np

from keras_mv2seg.datasets_meta import classes_of, palette_of
from keras_mv2seg.files import atomic_save
from keras_mv2seg.models.segmenter import build_segmenter, model_config_of
from keras_mv2seg.weights.port import PortReport, transfer_weights
from keras_mv2seg.version import __version__

METADATA_KEY = "keras_mv2seg"  # HDF5 root attribute of .weights.h5 files written by save_weights


def save_weights(model: keras.Model, path, config=None) -> Path:
    """Save ``model``'s weights to a ``.weights.h5`` file atomically, with the model's metadata in the file:
    config name, convention, head, classes and view (``training``: with the auxiliary head, ``inference``).
    :func:`keras_mv2seg.weights.load_weights` and ``build_for_inference`` read it instead of guessing from
    layer names."""
    path = Path(os.fspath(path))
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: Keras weight files must end with .weights.h5")
    model_config = model_config_of(model)
    metadata = {"format": 1, "keras_mv2seg": __version__, "config": getattr(config, "name", model.name),
                "view": "training" if isinstance(model.output, dict) else "inference"}
    if model_config is not None:
        metadata.update(convention=model_config.convention, head=model_config.head,
                        num_classes=model_config.num_classes)
    if config is not None and hasattr(config, "data"):  # the classes, so a user's own model needs no config edits
        metadata.update(class_names=list(classes_of(config)), palette=palette_of(config).reshape(-1).tolist())

    def save(staging):
        data = _weights_file_bytes(model, metadata)
        if data is None:  # a Keras without the in-memory store: written by Keras itself
            model.save_weights(staging)
            with h5py.File(staging, "a") as handle:
                handle.attrs[METADATA_KEY] = json.dumps(metadata)
            return
        try:
            with open(staging, "wb") as handle:
                handle.write(data)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(error.errno, "No space left on device", str(path)) from None
            raise

    return atomic_save(path, save)


def _weights_file_bytes(model, metadata) -> bytes | None:
    """The ``.weights.h5`` file of ``model`` with ``metadata`` as bytes, made in memory (Keras' own HDF5 store
    over a BytesIO), so that the disk sees one plain write: a full disk is a clean ENOSPC, where HDF5 writing to
    the disk itself leaves objects whose release crashes the process. None where this Keras lacks that store."""
    try:
        from keras.src.saving.saving_lib import H5IOStore, _save_state
    except ImportError:
        return None
    buffer = io.BytesIO()
    store = H5IOStore(buffer, mode="w")
    _save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    store.close()
    with h5py.File(buffer, "a") as handle:
        handle.attrs[METADATA_KEY] = json.dumps(metadata)
    return buffer.getvalue()


def weights_metadata(path) -> dict | None:
    """The metadata :func:`save_weights` stored in a ``.weights.h5`` file; None for files written otherwise
    (older releases, plain ``model.save_weights``)."""
    path = Path(os.fspath(path))
    if not path.name.endswith(".weights.h5") or not path.is_file():
        return None
    with h5py.File(path, "r") as handle:
        value = handle.attrs.get(METADATA_KEY)
    return json.loads(value) if value is not None else None


def config_for_weights(config, path):
    """``config`` with the classes a ``.weights.h5`` file was trained on (names, colours and count from its
    metadata), so a model fine-tuned on a user's own classes is built, scored and exported under them by the
    config it was fine-tuned from. Unchanged for files without class names in their metadata (and for other
    weight formats); a config that names other classes is an error naming both."""
    metadata = weights_metadata(path) if path else None
    names = (metadata or {}).get("class_names")
    if not names:
        return config
    names = tuple(names)
    if config.data.class_names and tuple(config.data.class_names) != names:
        raise ValueError(f"{path} was trained on classes {list(names)} but the config names "
                         f"{list(config.data.class_names)}")
    if names == tuple(classes_of(config)) and len(names) == config.model.num_classes:
        return config
    return config.replace(num_classes=len(names), class_names=names, palette=tuple(metadata.get("palette", ())))


def load_keras_weights(model: keras.Model, path, *, allow_non_finite: bool = False) -> PortReport:
    """Load a Keras weight file into ``model``, all or nothing: a file that does not fit, cannot be read, or
    (unless ``allow_non_finite``) holds NaN/inf values leaves the model as it was and raises ValueError naming
    the file -- and, where the file carries :func:`save_weights` metadata, what it was written from."""
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        metadata = weights_metadata(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable Keras weights file ({str(error).splitlines()[0]}); "
                         "delete it or write it again") from None
    before = [v.numpy() for v in model.weights]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns per layer before it raises: the error below says it all
            model.load_weights(path)
    except (OSError, ValueError, KeyError) as error:
        _restore(model, before)
        written = (f" (written from config {metadata.get('config')!r}, head {metadata.get('head')!r}, "
                   f"{metadata.get('num_classes')} classes, {metadata.get('view')} view)") if metadata else ""
        raise ValueError(f"{path}: cannot load these Keras weights into model {model.name!r}{written}: "
                         f"{str(error).splitlines()[0][:300]}") from None
    bad = [v.path for v in model.weights
           if np.issubdtype(np.dtype(v.dtype), np.floating) and not np.isfinite(np.asarray(v)).all()]
    if bad and not allow_non_finite:
        _restore(model, before)
        raise ValueError(f"{path}: {len(bad)} weights hold NaN/inf values (a diverged or corrupt run); nothing "
                         f"was loaded (allow_non_finite=True loads them anyway): {', '.join(bad[:5])}")
    return PortReport(str(path), assigned=[v.path for v in model.weights])


def load_keras_weights_but_classifiers(model: keras.Model, path, *, allow_non_finite: bool = False) -> PortReport:
    """Every weight of a :func:`save_weights` file but the classifiers, into a model of any class count:
    the file is loaded strictly into a model of its own classes and view (from its metadata), then moved
    across layer by layer (:func:`~keras_mv2seg.weights.port.transfer_weights`), the classifiers left as
    initialised. Any other mismatch (another head, width or convention) is refused naming the file."""
    path = Path(os.fspath(path))
    model_config = model_config_of(model)
    if model_config is None:
        raise ValueError(f"skip_classifier with {path} needs a model built by build_segmenter (its config says "
                         "which layers are classifiers)")
    metadata = weights_metadata(path)
    if not metadata or "num_classes" not in metadata:
        raise ValueError(f"{path} carries no keras_mv2seg metadata (class count, view), so its classifiers cannot "
                         "be told apart; load it into a model of its own classes and save it again with "
                         "keras_mv2seg.save_weights")
    own = build_segmenter(replace(model_config, num_classes=int(metadata["num_classes"])),
                          auxiliary=metadata.get("view") == "training" and model_config.aux_channels > 0)
    load_keras_weights(own, path, allow_non_finite=allow_non_finite)
    return transfer_weights(own, model, source=str(path), skip_classifier=True)


def _restore(model: keras.Model, values):
    for variable, value in zip(model.weights, values):
        variable.assign(value)

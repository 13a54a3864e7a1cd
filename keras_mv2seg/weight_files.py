"""The project's Keras weight files: ``.weights.h5`` written atomically with the model's metadata (config,
convention, head, classes, view) as an HDF5 attribute, and that metadata read back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import keras

from keras_mv2seg.files import atomic_save
from keras_mv2seg.models.segmenter import model_config_of
from keras_mv2seg.version import __version__

METADATA_KEY = "keras_mv2seg"  # HDF5 root attribute of .weights.h5 files written by save_weights


def save_weights(model: keras.Model, path, config=None) -> Path:
    """Save ``model``'s weights to a ``.weights.h5`` file atomically, with the model's metadata in the file:
    config name, convention, head, classes and view (``training``: with the auxiliary head, ``inference``).
    :func:`keras_mv2seg.weights.load_weights` and ``build_for_inference`` read it instead of guessing from layer names."""
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
    with h5py.File(path, "r") as handle:
        value = handle.attrs.get(METADATA_KEY)
    return json.loads(value) if value is not None else None


def saved_layer_count(path: Path) -> int | None:
    if not path.name.endswith(".weights.h5") or not path.is_file():
        return None

    with h5py.File(path, "r") as handle:
        return len(handle["layers"]) if "layers" in handle else None

"""Which importer reads a file: the one place that decides, by what the file is (used by
:func:`keras_mv2seg.weights.load_weights` and by the presets' conversion).

* ``*.pth`` / ``*.pt``: mmseg segmentor or mmcls ImageNet checkpoint (:mod:`keras_mv2seg.weights.mmseg`);
* a TF1 checkpoint prefix, shard, or folder (:func:`keras_mv2seg.weights.deeplab.checkpoint_prefix`): official
  DeepLab (:mod:`keras_mv2seg.weights.deeplab`);
* ``*.weights.h5`` / ``*.keras``: the project's own Keras weight files (:mod:`keras_mv2seg.weights.saved`).
"""

from __future__ import annotations

import os
from pathlib import Path

from keras_mv2seg.weights.deeplab import is_checkpoint, load_deeplab_checkpoint
from keras_mv2seg.weights.mmseg import load_mmseg_checkpoint
from keras_mv2seg.weights.port import PortReport

KINDS = ("mmseg", "deeplab", "keras")
CONVENTION_OF_KIND = {"mmseg": "mmseg", "deeplab": "deeplab"}  # the convention a reference checkpoint is in


def weight_kind(path) -> str:
    """``mmseg``, ``deeplab`` or ``keras`` for a weight file; ValueError naming the path and what is read."""
    path = Path(os.fspath(path))
    name = path.name.lower()
    if name.endswith((".pth", ".pt")):
        return "mmseg"
    if name.endswith((".weights.h5", ".keras")):
        return "keras"
    if is_checkpoint(path):
        return "deeplab"
    raise ValueError(f"{path}: unknown weight format; expected .pth/.pt (mmseg), a TF1 checkpoint prefix "
                     "(DeepLab, with a .index file beside it), a folder holding one such checkpoint, "
                     "or .weights.h5/.keras")


def import_checkpoint(model, path, *, part: str = "all", skip_classifier: bool = False,
                      allow_non_finite: bool = False) -> PortReport:
    """Import a reference checkpoint (mmseg ``.pth`` or DeepLab TF1) with the strict importer of its kind."""
    kind = weight_kind(path)
    if kind == "mmseg":
        return load_mmseg_checkpoint(model, path, part=part, skip_classifier=skip_classifier,
                                     allow_non_finite=allow_non_finite)
    if kind == "deeplab":
        if part != "all":
            raise ValueError(f"part={part!r} applies to mmseg/mmcls checkpoints; {path} is a DeepLab checkpoint")
        return load_deeplab_checkpoint(model, path, skip_classifier=skip_classifier,
                                       allow_non_finite=allow_non_finite)
    raise ValueError(f"{path} is a Keras weight file, not a reference checkpoint to import")

"""mmsegmentation / mmcls ``.pth`` checkpoints -> keras_mv2seg models (no PyTorch needed).

Name mapping (Keras unit -> mmseg module; a unit ``U`` is the layers ``U_conv``/``U`` and ``U_bn``)::

    stem                          backbone.conv1
    block{i}_expand|depthwise|project  backbone.layer{stage+1}.{pos}.conv.{j}  (j: 0,1,2; t == 1: dw 0, project 1)
    decode_convs{i}               decode_head.convs.{i}
    decode_psp_modules{i}         decode_head.psp_modules.{i}.1
    decode_image_pool             decode_head.image_pool.1
    decode_aspp_modules{i}[_depthwise|_pointwise]  decode_head.aspp_modules.{i}[.depthwise_conv|.pointwise_conv]
    decode_sep_bottleneck{i}_*    decode_head.sep_bottleneck.{i}.*
    decode_<name>                 decode_head.<name>        (conv_cat, bottleneck, c1_bottleneck)
    decode / aux classifier       decode_head.conv_seg / auxiliary_head.conv_seg
    aux_convs0                    auxiliary_head.convs.0

Layouts: conv (O, I, kh, kw) -> (kh, kw, I, O); depthwise (C, 1, kh, kw) -> (kh, kw, C, 1).
"""

from __future__ import annotations

import re

import numpy as np

from keras_mv2seg.weights.port import PortReport, WeightMappingError, port_weights, unit_of
from keras_mv2seg.weights.torch_pickle import load_state_dict
from keras_mv2seg.models.mobilenet_v2 import block_schedule
from keras_mv2seg.models.segmenter import layer_part

_BN_ROLES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_BLOCK_UNIT = re.compile(r"^block(\d+)_(expand|depthwise|project)$")
_HEAD_UNIT = re.compile(r"^(decode|aux)_([a-z0-9_]+?)(\d+)?(?:_(depthwise|pointwise))?$")
_HEAD_PREFIX = {"decode": "decode_head", "aux": "auxiliary_head"}
_SEQUENTIAL_POOLS = ("psp_modules", "image_pool")  # nn.Sequential(AdaptiveAvgPool2d, ConvModule)
_BLOCKS = {spec.index: spec for spec in block_schedule(8, "mmseg")}


def module_path(unit: str) -> str:
    """mmseg module path of a Keras unit name (see the module docstring)."""
    if unit == "stem":
        return "backbone.conv1"
    match = _BLOCK_UNIT.match(unit)
    if match:
        spec = _BLOCKS[int(match.group(1))]
        order = ["depthwise", "project"] if spec.expand_ratio == 1 else ["expand", "depthwise", "project"]
        return f"backbone.layer{spec.stage + 1}.{spec.position}.conv.{order.index(match.group(2))}"
    match = _HEAD_UNIT.match(unit)
    if not match:
        raise WeightMappingError(f"no mmseg module for Keras unit {unit!r}")
    head, name, index, part = match.groups()
    path = f"{_HEAD_PREFIX[head]}.{name}"
    if index is not None:
        path += f".{index}"
    if name in _SEQUENTIAL_POOLS:
        path += ".1"
    if part:
        path += f".{part}_conv"
    return path


def source_key(layer, role: str) -> str:
    unit, kind = unit_of(layer)
    if kind == "classifier":
        return f"{_HEAD_PREFIX[unit]}.conv_seg.{'weight' if role == 'kernel' else 'bias'}"
    if kind == "bn":
        return f"{module_path(unit)}.bn.{_BN_ROLES[role]}"
    return f"{module_path(unit)}.conv.weight"


def transform(layer, role: str, value: np.ndarray) -> np.ndarray:
    if role != "kernel":
        return value
    if value.ndim != 4:
        return value  # a shape error is reported by the caller with the key
    if unit_of(layer)[1] == "depthwise":
        return value.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    return value.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)


def _has_layer(model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def load_mmseg_checkpoint(model, path, *, part: str = "all", skip_classifier: bool = False,
                          allow_non_finite: bool = False) -> PortReport:
    """Load an mmseg segmentor (``part="all"``) or an mmcls ImageNet MobileNetV2 (``part="backbone"``).

    ``part="all"``: every model weight must come from the file; ``auxiliary_head.*`` is skipped (and
    reported) when the model is the inference view without the auxiliary head. ``part="backbone"``: only
    the backbone layers are set; the classification checkpoint's ``backbone.conv2.*`` (1280-ch conv) and
    ``head.*`` are skipped, anything else unused is an error. ``skip_classifier=True`` leaves the
    ``conv_seg`` classifiers as initialised (fine-tuning to another number of classes).
    """
    if part not in ("all", "backbone"):
        raise ValueError(f"part must be 'all' or 'backbone', received {part!r}")
    tensors = load_state_dict(path)
    skip = []
    if part == "backbone":
        skip += ["backbone.conv2.*", "head.*"]
    elif not any(k.startswith("decode_head.") for k in tensors):
        raise WeightMappingError(f"{path} has no decode_head.* tensors: it looks like an ImageNet backbone "
                                 "checkpoint; load it with part='backbone'")
    if part == "all" and not _has_layer(model, "aux_conv_seg"):
        skip.append("auxiliary_head.*")
    if skip_classifier:
        skip += ["decode_head.conv_seg.*", "auxiliary_head.conv_seg.*"]

    def key(layer, role):
        if part == "backbone" and layer_part(layer.name) != "backbone":
            return None
        if skip_classifier and layer.name.endswith("_conv_seg"):
            return None
        return source_key(layer, role)

    return port_weights(model, tensors, key, transform, source=str(path), ignore=("*.num_batches_tracked",),
                        skip_source=tuple(skip), allow_non_finite=allow_non_finite)

"""Official TF DeepLab MobileNetV2 TF1 checkpoints -> keras_mv2seg models.

Name mapping (Keras unit -> DeepLab scope; TF and Keras share the kernel layouts, no transposes)::

    stem                              MobilenetV2/Conv
    block0_*, block{i}_*              MobilenetV2/expanded_conv[/_{i}]/{expand,depthwise,project}
    decode_image_pooling              image_pooling
    decode_aspp0                      aspp0
    decode_concat_projection          concat_projection
    decode_feature_projection0        decoder/feature_projection0
    decode_decoder_conv{i}_depthwise  decoder/decoder_conv{i}_depthwise
    decode_decoder_conv{i}_pointwise  decoder/decoder_conv{i}_pointwise
    decode classifier                 logits/semantic/{weights,biases}

Convs are ``{scope}/weights``, depthwise ``{scope}/depthwise_weights``, BN ``{scope}/BatchNorm/{gamma,beta,
moving_mean,moving_variance}``. ``global_step``, optimizer slots (``*/Momentum``), moving averages and
quantization ranges are not model weights and are ignored; any other unused variable is an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from keras_mv2seg.weights.port import PortReport, WeightMappingError, port_weights, unit_of

# Bookkeeping variables found in official and zoo checkpoints; never model weights.
IGNORED_VARIABLES = (
    "global_step",
    "*/Momentum",
    "*/ExponentialMovingAverage",
    "*/min",
    "*/max",
    "*_quant/*",
    "*/act_quant*",
)
_BLOCK_UNIT = re.compile(r"^block(\d+)_(expand|depthwise|project)$")
_HEAD_SCOPES = {
    "decode_image_pooling": "image_pooling",
    "decode_aspp0": "aspp0",
    "decode_concat_projection": "concat_projection",
    "decode_feature_projection0": "decoder/feature_projection0",
}
_DECODER_UNIT = re.compile(r"^decode_(decoder_conv\d+_(?:depthwise|pointwise))$")


def scope_of(unit: str) -> str:
    if unit == "stem":
        return "MobilenetV2/Conv"
    match = _BLOCK_UNIT.match(unit)
    if match:
        index = int(match.group(1))
        block = "expanded_conv" if index == 0 else f"expanded_conv_{index}"
        return f"MobilenetV2/{block}/{match.group(2)}"
    if unit in _HEAD_SCOPES:
        return _HEAD_SCOPES[unit]
    match = _DECODER_UNIT.match(unit)
    if match:
        return f"decoder/{match.group(1)}"
    raise WeightMappingError(f"no DeepLab variable scope for Keras unit {unit!r}")


def source_key(layer, role: str) -> str:
    unit, kind = unit_of(layer)
    if kind == "classifier":
        if unit != "decode":
            raise WeightMappingError(f"DeepLab checkpoints have no classifier for {layer.name!r}")
        return "logits/semantic/" + ("weights" if role == "kernel" else "biases")
    if kind == "bn":
        return f"{scope_of(unit)}/BatchNorm/{role}"
    return f"{scope_of(unit)}/" + ("depthwise_weights" if kind == "depthwise" else "weights")


def checkpoint_prefix(path) -> str:
    """``model.ckpt`` (with ``.index`` beside it), a shard file of it, or a folder: the checkpoint its
    ``checkpoint`` file names, else its single ``*.index`` anywhere below it (the official tarballs' layout,
    which has no ``checkpoint`` file); two or more, or none, is an error naming what was found."""
    path = Path(os.fspath(path))
    if path.is_dir():
        if (path / "checkpoint").is_file():
            import tensorflow as tf

            latest = tf.train.latest_checkpoint(str(path))
            if latest is not None:
                return latest
        indexes = sorted(path.rglob("*.index"))
        if len(indexes) != 1:
            found = [str(p.relative_to(path)) for p in indexes]
            raise FileNotFoundError(f"{path}: a DeepLab checkpoint folder must hold exactly one *.index file (or "
                                    f"a 'checkpoint' file naming one); found {found or 'none'}")
        return str(indexes[0].with_suffix(""))
    text = re.sub(r"\.(index|data-\d+-of-\d+|meta)$", "", str(path))
    if not Path(f"{text}.index").is_file():
        raise FileNotFoundError(f"TF checkpoint not found: {text}.index does not exist")
    return text


def is_checkpoint(path) -> bool:
    """Whether ``path`` names a TF checkpoint :func:`checkpoint_prefix` resolves (prefix, shard or folder)."""
    try:
        checkpoint_prefix(path)
    except FileNotFoundError:
        return False
    return True


def read_checkpoint(path) -> dict[str, np.ndarray]:
    """Every variable of a TF1/TF2 checkpoint by name, read with TensorFlow's checkpoint reader."""
    import tensorflow as tf

    prefix = checkpoint_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(f"{prefix}: unreadable TF checkpoint ({type(error).__name__}: "
                         f"{str(error).strip().splitlines()[0]}); its .index/.data files may be corrupt") from None
    tensors = {}
    for name in shapes:
        try:
            tensors[name] = np.asarray(reader.get_tensor(name))
        except Exception as error:  # noqa: BLE001 -- TF raises IndexError, DataLossError...: name the variable
            raise ValueError(f"{prefix}: cannot read variable {name!r} ({type(error).__name__}: {error}); the "
                             "checkpoint's .data file is truncated or corrupt -- copy or download it again") from None
    return tensors


def load_deeplab_checkpoint(model, path, *, skip_classifier: bool = False,
                            allow_non_finite: bool = False) -> PortReport:
    """Load an official DeepLab MobileNetV2 checkpoint. ``skip_classifier`` keeps ``logits/semantic`` out
    (fine-tuning to another number of classes)."""
    tensors = read_checkpoint(path)
    if not any(name.startswith("MobilenetV2/") for name in tensors):
        raise WeightMappingError(f"{path}: no MobilenetV2/* variables; not a DeepLab MobileNetV2 checkpoint")

    def key(layer, role):
        if skip_classifier and layer.name.endswith("_conv_seg"):
            return None
        return source_key(layer, role)

    return port_weights(model, tensors, key, lambda layer, role, value: value, source=str(path),
                        ignore=IGNORED_VARIABLES, skip_source=("logits/semantic/*",) if skip_classifier else (),
                        allow_non_finite=allow_non_finite)

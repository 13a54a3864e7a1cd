"""Fine-tuning controls on a segmenter, each as its reference has it: frozen backbone stages (mmseg MobileNetV2
``frozen_stages``), batch norm on its moving statistics (mmseg ``norm_eval``, DeepLab ``fine_tune_batch_norm``),
learning-rate and decay multipliers by parameter (mmengine ``paramwise_cfg``) and the EMA weights swapped in for
validation and saving (``EMAHook``). Early stopping, a decision on the recorded validations, is
``training.workdir.early_stop``.

Parameter names for ``paramwise_cfg.custom_keys`` are this model's, written as mmseg's are: the part
(``backbone``, ``decode_head``, ``auxiliary_head``), the layer name and the weight name, joined by dots --
``backbone.block3_expand_conv.kernel``, ``decode_head.decode_conv_seg.bias``. A key applies, as in mmengine,
to every parameter whose name contains it, the longest key first: ``backbone``, ``head`` (both heads),
``conv_seg`` (the classifiers), ``_bn`` (batch norms)."""

from __future__ import annotations

import contextlib
import re

import keras

from keras_mv2seg.config import NORM_EVAL
from keras_mv2seg.models.layers import BatchNormalization, DepthwiseConv2D, layer_part
from keras_mv2seg.models.mobilenet_v2 import ARCHITECTURE
from keras_mv2seg.training.paramwise import parse_paramwise

STAGES = len(ARCHITECTURE)  # mmseg layer1..layer7
PART_NAMES = {"backbone": "backbone", "decode": "decode_head", "aux": "auxiliary_head"}  # mmseg's module names


def frozen_layers(model: keras.Model, stages: int) -> list[keras.layers.Layer]:
    """The layers mmseg's ``frozen_stages=stages`` freezes: none for -1, the stem for 0, the stem and
    ``layer1..layer{stages}`` (this model's blocks of stages 0..stages-1) otherwise; 7 is the whole backbone."""
    if isinstance(stages, bool) or not isinstance(stages, int) or not -1 <= stages <= STAGES:
        raise ValueError(f"train.frozen_stages must be an int from -1 (none) to {STAGES} (the whole backbone), "
                         f"received {stages!r}")
    if stages < 0:
        return []
    # blocks are numbered through the stages in order (block_schedule), whatever the output stride
    stage_of = [stage for stage, (_, _, repeats, _) in enumerate(ARCHITECTURE) for _ in range(repeats)]
    chosen = []
    for layer in model.layers:
        block = re.match(r"block(\d+)_", layer.name)
        if layer.name.startswith("stem_") or (block and stage_of[int(block.group(1))] < stages):
            chosen.append(layer)
    return chosen


def freeze_stages(model: keras.Model, stages: int) -> list[str]:
    """Freeze the layers of :func:`frozen_layers`: weights not trained, batch norms on their moving statistics
    and not updated (``trainable = False``). mmseg leaves the stem's batch norm in training mode, its
    statistics still moving while its weights are frozen (``MobileNetV2._freeze_stages`` calls ``eval()`` on
    ``layer1..`` only); here the stem is frozen whole. Before compiling. Returns the frozen layers' names."""
    layers = frozen_layers(model, stages)
    for layer in layers:
        layer.trainable = False
    return [layer.name for layer in layers if layer.weights]


def set_norm_eval(model: keras.Model, mode: str) -> int:
    """``backbone``: the backbone's batch norms normalise by their moving statistics in training too and keep
    them, gamma and beta still trained (mmseg ``norm_eval=True``); ``all``: every batch norm so (the official
    DeepLab's ``fine_tune_batch_norm=False``); ``none``: batch statistics, as training normally does. Before
    the training step is traced. Returns the number of batch norms set."""
    if mode not in NORM_EVAL:
        raise ValueError(f"train.norm_eval must be one of {NORM_EVAL}, received {mode!r}")
    count = 0
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            layer.use_moving_statistics = mode == "all" or (mode == "backbone" and layer_part(layer.name) == "backbone")
            count += layer.use_moving_statistics
    return count


def parameter_name(layer, variable) -> str:
    """``<part>.<layer>.<weight>``, mmseg's spelling of a parameter's place (see the module docstring)."""
    part = PART_NAMES.get(layer_part(layer.name), "model")
    return f"{part}.{layer.name}.{variable.name}"


def parameter_multipliers(model: keras.Model, paramwise) -> dict[str, tuple[float, float]]:
    """``{variable.path: (lr_mult, decay_mult)}`` for the model's trainable weights by mmengine's
    ``DefaultOptimWrapperConstructor`` rules: the longest ``custom_keys`` pattern contained in the name sets
    both multipliers (1 for the one it omits); otherwise ``bias_lr_mult`` for a convolution bias, and for the
    decay the first of ``norm_decay_mult`` (batch-norm gamma and beta), ``bias_decay_mult``,
    ``dwconv_decay_mult`` (depthwise kernels), ``flat_decay_mult`` (any 1-D weight) that applies. A pattern
    that names no trainable weight is an error listing the parts."""
    rules = parse_paramwise(paramwise)
    custom = rules.get("custom_keys", {})
    patterns = sorted(sorted(custom), key=len, reverse=True)
    used, table = set(), {}
    for layer in model.layers:
        is_norm = isinstance(layer, keras.layers.BatchNormalization)
        is_dwconv = isinstance(layer, (DepthwiseConv2D, keras.layers.DepthwiseConv2D))
        for variable in layer.trainable_weights:
            name = parameter_name(layer, variable)
            pattern = next((p for p in patterns if p in name), None)
            if pattern is not None:
                used.add(pattern)
                multipliers = (float(custom[pattern].get("lr_mult", 1.0)), float(custom[pattern].get("decay_mult", 1.0)))
            else:
                is_bias = variable.name == "bias" and not is_norm
                lr_mult = rules.get("bias_lr_mult", 1.0) if is_bias else 1.0
                decay = next((rules[key] for key, applies in (
                    ("norm_decay_mult", is_norm), ("bias_decay_mult", is_bias), ("dwconv_decay_mult", is_dwconv),
                    ("flat_decay_mult", len(variable.shape) == 1)) if applies and key in rules), 1.0)
                multipliers = (float(lr_mult), float(decay))
            if multipliers != (1.0, 1.0):
                table[variable.path] = multipliers
    unused = [p for p in patterns if p not in used]
    if unused:
        examples = sorted({parameter_name(layer, v).rsplit(".", 2)[0] for layer in model.layers
                           for v in layer.trainable_weights})
        raise ValueError(f"train.paramwise.custom_keys {', '.join(map(repr, unused))} name(s) no trainable weight "
                         f"of {model.name}; names are <part>.<layer>.<weight> with parts "
                         f"{', '.join(sorted(set(e.split('.')[0] for e in examples)))} (e.g. "
                         f"backbone.block3_expand_conv.kernel, decode_head.decode_conv_seg.bias)")
    return table


@contextlib.contextmanager
def averaged_weights(model: keras.Model, optimizer):
    """The optimizer's moving averages in the model's trainable weights for the duration (validation, saving),
    the training weights back afterwards; nothing when the optimizer keeps no average."""
    if not getattr(optimizer, "ema_decay", 0.0):
        yield
        return
    variables = model.trainable_variables
    kept = [variable.numpy() for variable in variables]
    try:
        for variable in variables:
            variable.assign(optimizer.average_of(variable))
        yield
    finally:
        for variable, value in zip(variables, kept):
            variable.assign(value)

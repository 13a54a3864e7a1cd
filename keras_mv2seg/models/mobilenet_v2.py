"""MobileNetV2 for segmentation: one builder for the mmseg and the official DeepLab conventions.

Layer names (API: weight import and saved weights depend on them)::

    stem_conv, stem_bn                                   mmseg backbone.conv1      DeepLab MobilenetV2/Conv
    block{i}_expand_conv, block{i}_expand_bn             (absent in block 0, t == 1)
    block{i}_depthwise, block{i}_depthwise_bn
    block{i}_project_conv, block{i}_project_bn           i = 0..16; DeepLab expanded_conv[_i]

Features returned: ``c1`` (24 ch, stride 4), ``c2`` (32 ch, stride 8), ``c3`` (96 ch), ``c4`` (320 ch) --
mmseg's ``out_indices=(1, 2, 4, 6)`` -- and ``low_level`` (the ReLU6 output of block 2's depthwise conv,
144 ch at stride 4: DeepLab's ``layer_4/depthwise_output`` decoder feature).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from keras_mv2seg.config import OUTPUT_STRIDES, ModelConfig
from keras_mv2seg.config import convention as get_convention
from keras_mv2seg.models import layers
from keras_mv2seg.models.initializers import initialization

# (expand ratio t, output channels c, blocks n, default stride s) -- the MobileNetV2 paper's table without
# the final 1280-channel conv, as in mmseg and DeepLab.
ARCHITECTURE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))
STEM_CHANNELS = 32
FEATURE_BLOCKS = {"c1": 2, "c2": 5, "c3": 12, "c4": 16}  # last block of stages 1, 2, 4, 6


@dataclass(frozen=True)
class BlockSpec:
    index: int  # global block index 0..16 (DeepLab expanded_conv_{index})
    stage: int  # 0..6 (mmseg layer{stage + 1})
    position: int  # block within its stage (mmseg layer{stage + 1}.{position})
    expand_ratio: int
    out_channels: int  # before width scaling
    stride: int
    dilation: int


def block_schedule(output_stride: int = 8, convention: str = "mmseg") -> list[BlockSpec]:
    """Per-block (stride, dilation) for the requested output stride (the stem's stride 2 included).

    ``mmseg``: a stage whose stride would push the total past ``output_stride`` gets stride 1 and the
    dilation multiplies by that stride for the stage; stride and dilation apply to the FIRST block of a
    stage only, every other block has stride 1 and dilation 1 (mmseg's MobileNetV2). At OS 8 the stage
    dilations are (1, 1, 1, 2, 2, 4, 4).

    ``deeplab``: the official rewrite: once the accumulated stride reaches ``output_stride``, later strides
    become 1; the layer whose stride was removed keeps the current rate and the rate multiplies after it;
    every later block uses the current rate.
    """
    if output_stride not in OUTPUT_STRIDES:
        *others, last = OUTPUT_STRIDES
        raise ValueError(f"output_stride must be {', '.join(map(str, others))} or {last}, received {output_stride!r}")
    whole_stage = get_convention(convention).dilate_whole_stage
    specs = []
    current, rate, index = 2, 1, 0  # after the stem
    for stage, (t, c, n, s) in enumerate(ARCHITECTURE):
        stage_stride, stage_dilation = s, 1
        if whole_stage:
            if current * s > output_stride:
                rate *= s
                stage_stride = 1
            current *= stage_stride
            stage_dilation = rate
        for position in range(n):
            if whole_stage:
                stride, dilation = (stage_stride, stage_dilation) if position == 0 else (1, 1)
            else:
                stride, dilation = (s if position == 0 else 1), rate
                if current * stride > output_stride:
                    rate *= stride  # this layer keeps the old rate; later layers are dilated
                    stride = 1
                current *= stride
            specs.append(BlockSpec(index, stage, position, t, c, stride, dilation))
            index += 1
    return specs


def make_divisible(value: float, divisor: int, min_value: int | None = None, min_ratio: float = 0.9) -> int:
    """Round channels to a multiple of ``divisor`` without going below ``min_ratio * value``."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < min_ratio * value:
        new_value += divisor
    return new_value


def scaled_channels(channels: int, width: float, rounding: str) -> int:
    """Output channels of a layer at ``width`` by the rounding of convention ``rounding``: mmseg
    ``make_divisible(c * w, 8)``; DeepLab divides by 8 at depth multiplier 1.0 and by 1 otherwise (min depth 8),
    so dm 0.5 gives 24 -> 12 where Keras gives 16."""
    rule = get_convention(rounding, "rounding")
    divisor = 8 if width == 1.0 else rule.fractional_width_divisor
    return make_divisible(channels * width, divisor, min_value=rule.min_channels)


def expanded_channels(in_channels: int, expand_ratio: int, rounding: str) -> int:
    """Hidden width of an inverted residual: mmseg ``round(in * t)``; DeepLab ``make_divisible(in * t, 8)``."""
    divisor = get_convention(rounding, "rounding").expansion_divisor
    if divisor is None:
        return int(round(in_channels * expand_ratio))
    return make_divisible(in_channels * expand_ratio, divisor)


def mobilenet_v2_features(images, config: ModelConfig) -> dict:
    """Build the backbone on ``images`` (already normalised) and return the named feature tensors."""
    convention = config.conventions
    bn = dict(epsilon=convention.backbone_bn_epsilon, momentum=convention.backbone_bn_momentum,
              convention=convention.name, init=initialization(config), role="backbone")
    x = layers.conv_bn_act(images, scaled_channels(STEM_CHANNELS, config.widen_factor, convention.name),
                           3, "stem", stride=2, activation="relu6", **bn)
    features = {}
    in_channels = x.shape[-1]
    for spec in block_schedule(config.output_stride, convention.name):
        out_channels = scaled_channels(spec.out_channels, config.widen_factor, convention.name)
        name = f"block{spec.index}"
        shortcut = x
        if spec.expand_ratio != 1:
            hidden = expanded_channels(in_channels, spec.expand_ratio, convention.name)
            x = layers.conv_bn_act(x, hidden, 1, f"{name}_expand", activation="relu6", **bn)
        x = layers.depthwise_bn_act(x, 3, f"{name}_depthwise", stride=spec.stride, dilation=spec.dilation,
                                    activation="relu6", implementation=config.depthwise_implementation, **bn)
        if spec.index == 2:
            features["low_level"] = x
        x = layers.conv_bn_act(x, out_channels, 1, f"{name}_project", activation=None, **bn)
        if spec.stride == 1 and in_channels == out_channels:
            x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
        in_channels = out_channels
        for feature, block in FEATURE_BLOCKS.items():
            if block == spec.index:
                features[feature] = x
    return features


def build_backbone(config: ModelConfig, input_shape=(None, None, 3)) -> keras.Model:
    """The backbone alone as a model: normalised NHWC images -> dict of features (c1..c4, low_level)."""
    images = keras.Input(input_shape, name="images")
    return keras.Model(images, mobilenet_v2_features(images, config), name="mobilenet_v2")

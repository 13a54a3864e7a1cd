"""Decode heads: mmseg FCN / PSP / ASPP / DepthwiseSeparableASPP, the auxiliary FCN head, and the official
DeepLab MobileNetV2 head. Each takes the backbone's feature dict and returns logits at feature resolution.

Layer names follow the reference modules so that weight import stays a table lookup
(``convert/mmseg.py``, ``convert/deeplab.py``): a conv-BN-ReLU unit ``decode_bottleneck`` is
``decode_bottleneck_conv`` + ``decode_bottleneck_bn``; the classifier is always ``decode_conv_seg``
(``aux_conv_seg`` for the auxiliary head).
"""

from __future__ import annotations

import keras

from keras_mv2seg.config import HEADS as config_heads
from keras_mv2seg.config import ModelConfig
from keras_mv2seg.models.initializers import initialization
from keras_mv2seg.models.layers import (
    AdaptiveAveragePooling2D,
    ResizeBilinear,
    conv_bn_act,
    separable_conv_bn_act,
)


def classifier(x, config: ModelConfig, name: str):
    """mmseg ``cls_seg``: Dropout2d (channel dropout) then a 1x1 conv with bias (initialised as the convention's
    classifier: mmseg N(0, 0.01), DeepLab truncated normal 0.01)."""
    if config.dropout > 0:
        x = keras.layers.SpatialDropout2D(config.dropout, name=f"{name}_dropout")(x)
    return keras.layers.Conv2D(config.num_classes, 1, kernel_initializer=initialization(config).conv(
        "classifier", 1, config.num_classes), name=f"{name}_conv_seg")(x)


def _image_pool(x, config: ModelConfig, name: str, align_corners: bool = False):
    """Global average -> 1x1 conv-BN-ReLU -> back to the feature size (a broadcast)."""
    pooled = AdaptiveAveragePooling2D(1, name=f"{name}_pool")(x)
    pooled = conv_bn_act(pooled, config.decode_channels, 1, name, init=initialization(config))
    return ResizeBilinear(align_corners, name=f"{name}_resize")([pooled, x])


def fcn_head(features, config: ModelConfig):
    """Two 3x3 convs, then concat([input, convs]) -> 3x3 conv (mmseg FCNHead(num_convs=2, concat_input))."""
    x = inputs = features["c4"]
    for i in range(2):
        x = conv_bn_act(x, config.decode_channels, 3, f"decode_convs{i}", init=initialization(config))
    x = keras.layers.Concatenate(name="decode_concat")([inputs, x])
    x = conv_bn_act(x, config.decode_channels, 3, "decode_conv_cat", init=initialization(config))
    return classifier(x, config, "decode")


def psp_head(features, config: ModelConfig):
    """Pyramid pooling: adaptive average pooling to s x s for each scale, 1x1 conv, resize back, concat."""
    x = features["c4"]
    branches = [x]
    for i, scale in enumerate(config.pool_scales):
        name = f"decode_psp_modules{i}"
        pooled = AdaptiveAveragePooling2D(scale, name=f"{name}_pool")(x)
        pooled = conv_bn_act(pooled, config.decode_channels, 1, name, init=initialization(config))
        branches.append(ResizeBilinear(False, name=f"{name}_resize")([pooled, x]))
    x = keras.layers.Concatenate(name="decode_concat")(branches)
    x = conv_bn_act(x, config.decode_channels, 3, "decode_bottleneck", init=initialization(config))
    return classifier(x, config, "decode")


def _aspp(x, config: ModelConfig, separable: bool):
    branches = [_image_pool(x, config, "decode_image_pool")]
    for i, dilation in enumerate(config.aspp_dilations):
        name = f"decode_aspp_modules{i}"
        if dilation == 1:
            branches.append(conv_bn_act(x, config.decode_channels, 1, name, init=initialization(config)))
        elif separable:
            branches.append(separable_conv_bn_act(x, config.decode_channels, name, dilation=dilation,
                                                  implementation=config.depthwise_implementation,
                                                  init=initialization(config)))
        else:
            branches.append(conv_bn_act(x, config.decode_channels, 3, name, dilation=dilation,
                                        init=initialization(config)))
    x = keras.layers.Concatenate(name="decode_concat")(branches)
    return conv_bn_act(x, config.decode_channels, 3, "decode_bottleneck", init=initialization(config))


def aspp_head(features, config: ModelConfig):
    """DeepLabV3 ASPP: image pool, 1x1, and 3x3 branches dilated 12/24/36, concat in that order."""
    x = _aspp(features["c4"], config, separable=False)
    return classifier(x, config, "decode")


def sepaspp_head(features, config: ModelConfig):
    """DeepLabV3+: separable ASPP, then the stride-4 decoder with the 24 -> 48 low-level projection."""
    x = _aspp(features["c4"], config, separable=True)
    low = conv_bn_act(features["c1"], config.c1_channels, 1, "decode_c1_bottleneck", init=initialization(config))
    x = ResizeBilinear(False, name="decode_aspp_resize")([x, low])
    x = keras.layers.Concatenate(name="decode_c1_concat")([x, low])
    for i in range(2):
        x = separable_conv_bn_act(x, config.decode_channels, f"decode_sep_bottleneck{i}",
                                  implementation=config.depthwise_implementation, init=initialization(config))
    return classifier(x, config, "decode")


def deeplab_head(features, config: ModelConfig):
    """Official DeepLab MobileNetV2 head: image_pooling + aspp0 (in that order) -> concat_projection
    [-> decoder at stride 4] -> logits with bias. Head BN epsilon 1e-5, ReLU, align_corners resizes."""
    align = config.conventions.align_corners
    x = features["c4"]
    pooled = _image_pool(x, config, "decode_image_pooling", align_corners=align)
    aspp0 = conv_bn_act(x, config.decode_channels, 1, "decode_aspp0", init=initialization(config))
    x = keras.layers.Concatenate(name="decode_concat")([pooled, aspp0])
    x = conv_bn_act(x, config.decode_channels, 1, "decode_concat_projection", init=initialization(config))
    if config.decoder_stride:
        low = conv_bn_act(features["low_level"], config.c1_channels, 1, "decode_feature_projection0",
                          init=initialization(config))
        x = ResizeBilinear(align, name="decode_aspp_resize")([x, low])
        x = keras.layers.Concatenate(name="decode_decoder_concat")([x, low])
        for i in range(2):
            x = separable_conv_bn_act(x, config.decode_channels, f"decode_decoder_conv{i}",
                                      implementation=config.depthwise_implementation, convention="deeplab",
                                      init=initialization(config))
    return classifier(x, config, "decode")


def auxiliary_head(features, config: ModelConfig):
    """mmseg auxiliary FCNHead(num_convs=1, concat_input=False) on the stride-8 96-channel feature."""
    x = conv_bn_act(features["c3"], config.aux_channels, 3, "aux_convs0", init=initialization(config))
    return classifier(x, config, "aux")


# The builder of each head named in ``config.HEADS`` (the one list of head names): ``<name>_head`` above.
HEADS = {name: globals()[f"{name}_head"] for name in config_heads}

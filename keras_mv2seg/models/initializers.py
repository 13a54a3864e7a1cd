"""Initial weights as each reference draws them: the one place that decides a layer's initialiser.

A layer asks by its *role*: ``backbone`` (MobileNetV2 convs), ``head`` (decode/auxiliary conv units),
``separable`` (the depthwise and pointwise halves of a head's separable conv) or ``classifier`` (the final
1x1 conv with bias). The scheme is the model convention's (``model.init="reference"``, the default) or Keras'
own defaults (``model.init="keras"``: glorot-uniform kernels, zero biases). BN layers start at gamma 1,
beta 0, moving mean 0, moving variance 1 in every scheme, as in both references; biases start at 0.

mmseg 1.2.2 (what ``EncoderDecoder.init_weights`` does with ``pretrained=None``):

* every conv of the backbone and of the heads: Kaiming normal, ``mode="fan_out"``, ReLU gain, i.e.
  N(0, 2 / fan_out) with PyTorch's fan_out = out_channels x kh x kw of the (out, in/groups, kh, kw) weight --
  for a depthwise conv that is channels x kh x kw. ``mmseg/models/backbones/mobilenet_v2.py:76-80``
  (init_cfg ``Kaiming`` on Conv2d, ``Constant`` 1 on BN), ``mmcv/cnn/bricks/conv_module.py:235-254``
  (``ConvModule.init_weights``: ``kaiming_init`` + ``constant_init(norm, 1, bias=0)``; the ASPP, PSP and
  depthwise-separable modules are ConvModules), ``mmengine/model/weight_init.py:91-96`` (``kaiming_init``
  defaults: a=0, mode fan_out, nonlinearity relu, normal distribution, bias 0);
* ``conv_seg`` (decode and auxiliary): N(0, 0.01), bias 0 -- ``mmseg/models/decode_heads/decode_head.py:104-105``
  (``init_cfg=dict(type='Normal', std=0.01, override=dict(name='conv_seg'))``).

Official DeepLab (TF-slim, ``research/deeplab``):

* MobileNetV2 backbone, every conv including the depthwise ones: truncated normal, stddev 0.09 (truncated at
  2 stddev) -- ``core/feature_extractor.py`` ``extract_features`` applies ``mobilenet_v2.training_scope``,
  whose ``slim/nets/mobilenet/mobilenet.py`` ``training_scope(stddev=0.09)`` sets
  ``weights_initializer=tf.truncated_normal_initializer(stddev)`` for conv2d and separable_conv2d;
* head convs (``image_pooling``, ``aspp0``, ``concat_projection``, ``feature_projection0``): no initialiser in
  ``model.py`` ``_extract_features`` / ``refine_by_decoder`` arg_scopes, so slim's default
  ``xavier_initializer()`` = glorot uniform;
* decoder separable convs: ``model.py`` ``_split_separable_conv2d`` -- depthwise truncated normal 0.33,
  pointwise truncated normal 0.06;
* ``logits/semantic``: ``model.py`` ``_get_branch_logits`` -- truncated normal 0.01, bias 0 (slim default).

Keras' ``TruncatedNormal(stddev=s)`` and TF1's ``truncated_normal_initializer(stddev=s)`` are the same
distribution (s is the stddev before truncation, re-drawn beyond 2 s).
"""

from __future__ import annotations

import math

import keras

from keras_mv2seg.config import CONVENTIONS

ROLES = ("backbone", "head", "separable", "classifier")


def _truncated(stddev):
    return keras.initializers.TruncatedNormal(0.0, stddev)


# scheme -> (conv initialiser by (role, kernel_size, filters), depthwise initialiser by (role, kernel_size,
# channels)); the references' choices, cited in the module docstring
_SCHEMES = {
    "keras": (lambda role, k, filters: "glorot_uniform", lambda role, k, channels: "glorot_uniform"),
    "mmseg": (lambda role, k, filters: keras.initializers.RandomNormal(0.0, 0.01) if role == "classifier"
              else kaiming_normal_fan_out(filters * k * k),
              # PyTorch depthwise weight (C, 1, kh, kw): fan_out = C * kh * kw
              lambda role, k, channels: kaiming_normal_fan_out(channels * k * k)),
    "deeplab": (lambda role, k, filters: {"backbone": _truncated(0.09), "head": "glorot_uniform",
                                         "separable": _truncated(0.06), "classifier": _truncated(0.01)}[role],
                lambda role, k, channels: {"backbone": _truncated(0.09), "head": "glorot_uniform",
                                           "separable": _truncated(0.33)}[role]),
}
SCHEMES = tuple(_SCHEMES)  # each convention's own scheme, and Keras' defaults
assert set(SCHEMES) == {*CONVENTIONS, "keras"}


class Initialization:
    """Kernel initialisers of one scheme; :meth:`conv` for ordinary convs, :meth:`depthwise` for depthwise
    ones (``channels`` = input channels, depth multiplier 1)."""

    def __init__(self, scheme: str):
        if scheme not in SCHEMES:
            raise ValueError(f"initialisation scheme must be one of {SCHEMES}, received {scheme!r}")
        self.scheme = scheme
        self._conv, self._depthwise = _SCHEMES[scheme]

    def __repr__(self):
        return f"Initialization({self.scheme!r})"

    @staticmethod
    def _check_role(role):
        if role not in ROLES:
            raise ValueError(f"initialiser role must be one of {ROLES}, received {role!r}")

    def conv(self, role: str, kernel_size: int, filters: int):
        self._check_role(role)
        return self._conv(role, kernel_size, filters)

    def depthwise(self, role: str, kernel_size: int, channels: int):
        self._check_role(role)
        if role == "classifier":
            raise ValueError("a classifier is an ordinary conv, not a depthwise one")
        return self._depthwise(role, kernel_size, channels)


def kaiming_normal_fan_out(fan_out: int):
    """PyTorch ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``: N(0, sqrt(2 / fan_out))."""
    return keras.initializers.RandomNormal(0.0, math.sqrt(2.0 / fan_out))


def initialization(model_config) -> Initialization:
    """The scheme of a :class:`~keras_mv2seg.config.ModelConfig`: its convention's, or Keras' defaults."""
    if model_config.init == "keras":
        return Initialization("keras")
    return Initialization(model_config.conventions.name)

"""The few custom pieces the models need, and the one place for the padding convention.

* :class:`DepthwiseConv2D` -- Keras' depthwise conv with a switch for dilated convolutions: the portable
  form (Keras' own, lowered through SpaceToBatchND/BatchToSpaceND) or one native
  ``DepthwiseConv2dNative`` op with ``dilations`` (what TFLite and oneDNN want) where TensorFlow can run it.
* :class:`ResizeBilinear` -- bilinear resize to the spatial size of a reference tensor, with half-pixel
  centres (PyTorch ``align_corners=False``) or exact ``align_corners=True`` sampling (TF1 DeepLab).
* :class:`AdaptiveAveragePooling2D` -- PyTorch's adaptive average pooling, overlapping bins included.
* :class:`WinogradConv2D` -- a 3x3 stride-1 convolution computed by Winograd F(m x m, 3 x 3), built in
  place of Keras' ``Conv2D`` under :func:`winograd_convolutions` (deployment graphs; same weights and names).
* :func:`conv_bn_act` / :func:`separable_conv_bn_act` -- conv -> BN -> activation units with stable names.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import keras
import tensorflow as tf

from keras_mv2seg.config import DEPTHWISE_IMPLEMENTATIONS
from keras_mv2seg.config import convention as get_convention
from keras_mv2seg.machine import native_dilated_depthwise_supported
from keras_mv2seg.models.initializers import Initialization
from keras_mv2seg.models.winograd import TILES, check_tile, winograd_conv3x3
from keras_mv2seg.ops import resize_bilinear

KERAS_DEFAULTS = Initialization("keras")



def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, received {value!r}")


def pad_for_conv(x, kernel_size: int, stride: int, dilation: int, convention: str, name: str):
    """Apply the convention's padding; returns (tensor, keras padding mode for the conv itself).

    ``mmseg`` pads symmetrically by ``dilation * (k // 2)`` as PyTorch does. Keras' 'same' is identical to
    that for stride 1 and odd kernels, but for stride 2 it pads 0 before / 1 after on even sizes, so strided
    convs get an explicit :class:`keras.layers.ZeroPadding2D`. ``deeplab`` uses TF's 'same' everywhere
    (asymmetric for stride 2), exactly like the slim code the checkpoints were trained with.
    """
    if kernel_size == 1 or stride == 1 or not get_convention(convention).symmetric_strided_padding:
        return x, "same"
    pad = dilation * (kernel_size // 2)
    return keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x), "valid"


_GRAPH_FOR_EXPORT = threading.local()


@contextlib.contextmanager
def native_depthwise_for_export():
    """Trace ``implementation="native"`` layers as the native op even where this TensorFlow cannot execute it:
    for graphs converted to run elsewhere (TFLite), never for graphs run here."""
    previous = getattr(_GRAPH_FOR_EXPORT, "active", False)
    _GRAPH_FOR_EXPORT.active = True
    try:
        yield
    finally:
        _GRAPH_FOR_EXPORT.active = previous


_WINOGRAD = threading.local()


@contextlib.contextmanager
def winograd_convolutions(tile: int):
    """Models built inside compute their dense 3x3, stride-1, dilation-1 convolutions by Winograd F(tile x tile,
    3 x 3) (:class:`WinogradConv2D`, same layer names and weights); ``tile`` 0 leaves them as they are. For
    fixed-size deployment graphs, where it cuts those convolutions' multiplications 2.25x (2) or 4x (4)."""
    if tile and tile not in TILES:
        raise ValueError(f"Winograd output tile must be 0 (off) or one of {TILES}, received {tile!r}")
    previous = getattr(_WINOGRAD, "tile", 0)
    _WINOGRAD.tile = tile
    try:
        yield
    finally:
        _WINOGRAD.tile = previous


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class WinogradConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (3x3, stride 1, dilation 1, one group) computed by Winograd F(tile x tile, 3 x 3)
    (:mod:`keras_mv2seg.models.winograd`). The kernel variable is Keras' own ([3, 3, C, O]), so weights move
    between the two layers as they are; the input needs a static size."""

    def __init__(self, *args, tile: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        if (self.kernel_size != (3, 3) or self.strides != (1, 1) or self.dilation_rate != (1, 1)
                or self.groups != 1 or self.data_format != "channels_last"):
            raise ValueError(f"{self.name}: Winograd needs a 3x3, stride-1, dilation-1, single-group channels-last "
                             f"convolution, received kernel {self.kernel_size}, strides {self.strides}, dilation "
                             f"{self.dilation_rate}, groups {self.groups}, {self.data_format}")
        check_tile(tile)
        self.tile = tile

    def call(self, inputs):
        outputs = winograd_conv3x3(inputs, tf.cast(self.kernel, inputs.dtype), self.tile, self.padding)
        if self.use_bias:
            outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return {**super().get_config(), "tile": self.tile}


def tracing_for_export() -> bool:
    """Whether a graph is being traced for a runtime elsewhere (inside :func:`native_depthwise_for_export`)."""
    return getattr(_GRAPH_FOR_EXPORT, "active", False)


def native_depthwise_in_use() -> bool:
    """Whether ``implementation="native"`` layers emit the native op now (kernel present, or tracing for export)."""
    return tracing_for_export() or native_dilated_depthwise_supported()


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` whose dilated form can be one native op.

    ``implementation="portable"`` (default) is Keras' own layer, which runs on every device; for dilation
    > 1 TensorFlow lowers it to SpaceToBatchND -> conv -> BatchToSpaceND. ``implementation="native"`` calls
    ``DepthwiseConv2dNative`` with ``dilations`` directly: one op, native in TFLite. TensorFlow's own CPU
    kernel refuses dilations (only the oneDNN kernel takes them), so where the running TensorFlow cannot
    execute it (:func:`keras_mv2seg.machine.native_dilated_depthwise_supported`, probed once) the layer runs
    the portable form instead -- it never fails at run time -- except while tracing a graph for export under
    :func:`native_depthwise_for_export`. Both forms share the weight layout (kh, kw, C, 1) and give the same
    result.
    """

    def __init__(self, *args, implementation: str = "portable", **kwargs):
        super().__init__(*args, **kwargs)
        _check_choice("implementation", implementation, DEPTHWISE_IMPLEMENTATIONS)
        self.implementation = implementation

    def call(self, inputs):
        if self.implementation == "portable" or max(self.dilation_rate) == 1 or not native_depthwise_in_use():
            return super().call(inputs)
        if self.data_format != "channels_last" or self.depth_multiplier != 1:
            raise ValueError("the native dilated depthwise op supports channels_last and depth_multiplier 1 only")
        outputs = tf.raw_ops.DepthwiseConv2dNative(
            input=inputs,
            filter=tf.cast(self.kernel, inputs.dtype),
            strides=[1, *self.strides, 1],
            padding=self.padding.upper(),
            dilations=[1, *self.dilation_rate, 1],
        )
        if self.use_bias:
            outputs = outputs + tf.cast(self.bias, inputs.dtype)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        return {**super().get_config(), "implementation": self.implementation}


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class ResizeBilinear(keras.layers.Layer):
    """Bilinear resize of ``inputs[0]`` to the height and width of ``inputs[1]`` (any size, known at run time).

    ``align_corners=False``: half-pixel centres, no antialiasing -- PyTorch ``F.interpolate(...,
    align_corners=False)`` and ``tf.image.resize``. ``align_corners=True``: ``src = dst * (in - 1) / (out - 1)``,
    the TF1 ``resize_bilinear(align_corners=True)`` DeepLab used; Keras has no such mode.
    """

    def __init__(self, align_corners: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = bool(align_corners)

    def call(self, inputs):
        images, reference = inputs
        return resize_bilinear(images, tf.shape(reference)[1:3], self.align_corners)

    def compute_output_shape(self, input_shapes):
        images, reference = input_shapes
        return (images[0], reference[1], reference[2], images[3])

    def get_config(self):
        return {**super().get_config(), "align_corners": self.align_corners}


def adaptive_pool_matrix(length, bins: int, dtype=tf.float32):
    """(bins, length) averaging matrix of PyTorch's adaptive pooling: bin i covers
    ``[floor(i * L / bins), ceil((i + 1) * L / bins))`` -- bins overlap when ``bins`` does not divide L."""
    length = tf.cast(length, tf.int32)
    index = tf.range(bins, dtype=tf.int32)
    start = (index * length) // bins
    end = -((-(index + 1) * length) // bins)
    position = tf.range(length, dtype=tf.int32)
    inside = (position[None, :] >= start[:, None]) & (position[None, :] < end[:, None])
    weights = tf.cast(inside, dtype)
    return weights / tf.cast(end - start, dtype)[:, None]


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` for NHWC tensors of any size, as two matrix products."""

    def __init__(self, output_size: int, **kwargs):
        super().__init__(**kwargs)
        if int(output_size) < 1:
            raise ValueError(f"output_size must be a positive integer, received {output_size!r}")
        self.output_size = int(output_size)

    def call(self, inputs):
        bins = self.output_size
        if bins == 1:
            size = inputs.shape[1:3]
            if tracing_for_export() and None not in size:
                # a fixed-size TFLite graph: one AVERAGE_POOL_2D (the same mean), which the LiteRT GPU
                # delegate's documented op list has and MEAN is not
                return tf.nn.avg_pool2d(inputs, ksize=tuple(size), strides=tuple(size), padding="VALID")
            return tf.reduce_mean(inputs, axis=(1, 2), keepdims=True)
        shape = tf.shape(inputs)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        rows = adaptive_pool_matrix(height, bins, inputs.dtype)  # (s, H)
        cols = adaptive_pool_matrix(width, bins, inputs.dtype)  # (s, W)
        pooled = tf.matmul(rows, tf.reshape(inputs, [batch, height, width * channels]))  # (B, s, W*C)
        pooled = tf.reshape(pooled, [batch * bins, width, channels])
        pooled = tf.matmul(cols, pooled)  # (B*s, s, C)
        return tf.reshape(pooled, [batch, bins, bins, channels])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size, self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def _activate(x, activation: str | None, name: str):
    if activation is None:
        return x
    if activation not in ("relu", "relu6"):
        raise ValueError(f"activation must be 'relu', 'relu6' or None, received {activation!r}")
    return keras.layers.ReLU(max_value=6.0 if activation == "relu6" else None, name=name)(x)


# The part of a segmenter each layer belongs to, by the name prefixes its builders give (layer names are API).
LAYER_PARTS = {"backbone": ("stem_", "block"), "decode": ("decode_",), "aux": ("aux_",)}


def layer_part(name: str) -> str | None:
    """``backbone``, ``decode`` (the decode head) or ``aux`` (the auxiliary head) for a layer name of
    ``build_segmenter``; None for the input normalisation and the final resizes."""
    return next((part for part, prefixes in LAYER_PARTS.items() if name.startswith(prefixes)), None)


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' batch norm as both references train it, with one more training mode.

    * The moving variance is updated with the *unbiased* batch variance (Bessel's correction ``n / (n - 1)``,
      ``n`` the values per channel in the batch, across replicas when ``synchronized``), as torch's
      ``BatchNorm2d`` (mmseg) and TensorFlow's fused batch norm (``tf.compat.v1.nn.fused_batch_norm``, which
      slim's ``batch_norm`` and so the official DeepLab use) do; the batch itself is normalised by the biased
      variance, as everywhere. Keras updates with the biased one: for the ASPP image pooling's batch norm on
      [8, 1, 1, C] that is 7/8 of the reference's moving variance (``unbiased_moving_variance=False``: Keras' rule).
    * ``use_moving_statistics`` normalises by the moving statistics during training too and leaves them as they
      are, while gamma and beta still train -- mmseg's ``norm_eval`` (a ``_BatchNorm`` in ``eval()`` mode) and the
      official DeepLab's ``fine_tune_batch_norm=False``. (``trainable = False`` freezes gamma and beta as well.)
      Set before the training step is traced (``training.controls.set_norm_eval``)."""

    def __init__(self, *args, use_moving_statistics: bool = False, unbiased_moving_variance: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_moving_statistics = bool(use_moving_statistics)
        self.unbiased_moving_variance = bool(unbiased_moving_variance)

    def call(self, inputs, training=None, mask=None):
        training = False if self.use_moving_statistics else training
        if not (training and self.trainable and self.unbiased_moving_variance) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32) if inputs.dtype in (tf.float16, tf.bfloat16) else inputs  # as Keras does
        mean, variance = self._moments(x, None)
        count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), self._reduction_axes)), variance.dtype)
        replicas = tf.distribute.get_replica_context()
        if self.synchronized and replicas is not None:  # the moments are over the global batch (as Keras: local
            count *= replicas.num_replicas_in_sync  # moments where there is no replica context)
        unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
        momentum = tf.cast(self.momentum, variance.dtype)
        self.moving_mean.assign(tf.cast(self.moving_mean, mean.dtype) * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(tf.cast(self.moving_variance, variance.dtype) * momentum
                                    + unbiased * (1.0 - momentum))
        gamma = tf.cast(self.gamma, x.dtype) if self.scale else None
        beta = tf.cast(self.beta, x.dtype) if self.center else None
        outputs = keras.ops.batch_normalization(x, mean, variance, axis=self.axis, offset=beta, scale=gamma,
                                                epsilon=self.epsilon)
        return tf.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "use_moving_statistics": self.use_moving_statistics,
                "unbiased_moving_variance": self.unbiased_moving_variance}


def conv_bn_act(
    x,
    filters: int | None,
    kernel_size: int,
    name: str,
    *,
    stride: int = 1,
    dilation: int = 1,
    activation: str | None = "relu",
    epsilon: float = 1e-5,
    momentum: float = 0.9,
    convention: str = "mmseg",
    init: Initialization = KERAS_DEFAULTS,
    role: str = "head",
    depthwise: bool = False,
    implementation: str = "portable",
):
    """Conv (no bias) -> BN -> activation; layers ``{name}_conv`` (``depthwise``: ``{name}``, a
    :class:`DepthwiseConv2D` in ``implementation``, ``filters`` None), ``{name}_bn``, ``{name}_act``. The kernel
    starts as ``init`` draws a conv of ``role`` (see :mod:`keras_mv2seg.models.initializers`)."""
    channels = x.shape[-1]
    x, padding = pad_for_conv(x, kernel_size, stride, dilation, convention, name)
    if depthwise:
        x = DepthwiseConv2D(
            kernel_size, strides=stride, dilation_rate=dilation, padding=padding, use_bias=False,
            depthwise_initializer=init.depthwise(role, kernel_size, channels), implementation=implementation,
            name=name,
        )(x)
    else:
        tile = getattr(_WINOGRAD, "tile", 0) if (kernel_size, stride, dilation) == (3, 1, 1) else 0
        conv = functools.partial(WinogradConv2D, tile=tile) if tile else keras.layers.Conv2D
        x = conv(
            filters, kernel_size, strides=stride, dilation_rate=dilation, padding=padding, use_bias=False,
            kernel_initializer=init.conv(role, kernel_size, filters), name=f"{name}_conv",
        )(x)
    x = BatchNormalization(epsilon=epsilon, momentum=momentum, name=f"{name}_bn")(x)
    return _activate(x, activation, f"{name}_act")


def depthwise_bn_act(x, kernel_size: int, name: str, **options):
    """Depthwise conv (no bias) -> BN -> activation; layers ``{name}``, ``{name}_bn``, ``{name}_act``; the
    keyword options of :func:`conv_bn_act`."""
    return conv_bn_act(x, None, kernel_size, name, depthwise=True, **options)


def separable_conv_bn_act(x, filters: int, name: str, *, dilation: int = 1, implementation: str = "portable",
                          epsilon: float = 1e-5, convention: str = "mmseg", init: Initialization = KERAS_DEFAULTS):
    """3x3 depthwise -> BN -> ReLU -> 1x1 pointwise -> BN -> ReLU (mmcv DepthwiseSeparableConvModule,
    DeepLab split_separable_conv2d); layers ``{name}_depthwise*`` and ``{name}_pointwise_*``."""
    x = depthwise_bn_act(x, 3, f"{name}_depthwise", dilation=dilation, epsilon=epsilon, convention=convention,
                         implementation=implementation, init=init, role="separable")
    return conv_bn_act(x, filters, 1, f"{name}_pointwise", epsilon=epsilon, convention=convention, init=init,
                       role="separable")


"""Custom layers against NumPy definitions of the reference operations."""

import platform

import numpy as np
import pytest
import tensorflow as tf

from keras_mv2seg.machine import native_dilated_depthwise_supported, onednn_enabled
from keras_mv2seg.models.layers import (AdaptiveAveragePooling2D, DepthwiseConv2D, ResizeBilinear,
                                        native_depthwise_for_export, pad_for_conv)


def numpy_adaptive_pool(x, bins):
    """torch.nn.AdaptiveAvgPool2d: bin i covers [floor(i*L/s), ceil((i+1)*L/s))."""
    b, h, w, c = x.shape
    out = np.zeros((b, bins, bins, c), x.dtype)
    for i in range(bins):
        h0, h1 = (i * h) // bins, -(-((i + 1) * h) // bins)
        for j in range(bins):
            w0, w1 = (j * w) // bins, -(-((j + 1) * w) // bins)
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("bins", [1, 2, 3, 6])
@pytest.mark.parametrize("size", [(16, 32), (13, 7), (5, 11)])
def test_adaptive_pooling_matches_pytorch_bins(bins, size):
    x = np.random.default_rng(bins).normal(size=(2, *size, 3)).astype("float32")
    np.testing.assert_allclose(AdaptiveAveragePooling2D(bins)(x), numpy_adaptive_pool(x, bins), atol=1e-5)


def test_adaptive_bins_overlap_when_not_divisible():
    x = np.arange(5, dtype="float32").reshape(1, 5, 1, 1) * np.ones((1, 5, 3, 1), "float32")
    pooled = np.asarray(AdaptiveAveragePooling2D(3)(x))[0, :, 0, 0]
    np.testing.assert_allclose(pooled, [0.5, 2.0, 3.5])  # bins [0,2) [1,4) [3,5): index 1 and 3 shared


def numpy_resize(x, out_h, out_w, align_corners):
    def coords(n_in, n_out):
        if align_corners:
            scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
            src = np.arange(n_out) * scale
        else:
            src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo
    y0, y1, fy = coords(x.shape[1], out_h)
    x0, x1, fx = coords(x.shape[2], out_w)
    top = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return top[:, :, x0] * (1 - fx)[None, None, :, None] + top[:, :, x1] * fx[None, None, :, None]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shapes", [((5, 9), (33, 65)), ((33, 65), (257, 513)), ((8, 8), (3, 5)), ((1, 1), (4, 6))])
def test_resize_matches_the_definition(align_corners, shapes):
    (ih, iw), (oh, ow) = shapes
    x = np.random.default_rng(0).normal(size=(1, ih, iw, 2)).astype("float32")
    out = ResizeBilinear(align_corners)([x, np.zeros((1, oh, ow, 1), "float32")])
    # float32 source coordinates in the kernel: ~2e-5; a wrong convention is off by ~0.1
    np.testing.assert_allclose(out, numpy_resize(x.astype("float64"), oh, ow, align_corners), atol=5e-5)


def test_half_pixel_resize_equals_tf_image_resize():
    x = np.random.default_rng(1).normal(size=(1, 16, 32, 4)).astype("float32")
    ours = ResizeBilinear(False)([x, np.zeros((1, 97, 193, 1), "float32")])
    np.testing.assert_allclose(ours, tf.image.resize(x, (97, 193), "bilinear"), atol=1e-6)


@pytest.mark.parametrize("dilation", [1, 2, 4, 12])
def test_native_dilated_depthwise_equals_portable(dilation):
    x = np.random.default_rng(dilation).normal(size=(2, 23, 31, 5)).astype("float32")
    portable = DepthwiseConv2D(3, dilation_rate=dilation, padding="same", use_bias=False)
    native = DepthwiseConv2D(3, dilation_rate=dilation, padding="same", use_bias=False, implementation="native")
    portable.build(x.shape), native.build(x.shape)
    native.set_weights(portable.get_weights())
    np.testing.assert_allclose(native(x), portable(x), atol=1e-5)


def _graph(layer):
    return tf.function(layer).get_concrete_function(tf.TensorSpec((1, 16, 16, 4))).graph


def _op_types(layer):
    return {op.type for op in _graph(layer).get_operations()}


def _depthwise_dilations(layer):
    return [list(op.get_attr("dilations")) for op in _graph(layer).get_operations()
            if op.type == "DepthwiseConv2dNative"]


def test_native_form_is_one_op_without_space_to_batch():
    layer = DepthwiseConv2D(3, dilation_rate=4, padding="same", implementation="native")
    layer.build((1, 16, 16, 4))
    with native_depthwise_for_export():
        ops = _op_types(layer)
    assert "DepthwiseConv2dNative" in ops and "SpaceToBatchND" not in ops
    portable = DepthwiseConv2D(3, dilation_rate=4, padding="same")
    portable.build((1, 16, 16, 4))
    assert "SpaceToBatchND" in _op_types(portable)


def test_native_form_runs_here_as_what_this_tensorflow_can_execute():
    """Where the dilated kernel is missing (TensorFlow without oneDNN) "native" runs the portable form
    instead of failing; where it is present it runs the native op. CI runs this under both oneDNN settings."""
    layer = DepthwiseConv2D(3, dilation_rate=2, padding="same", implementation="native")
    layer.build((1, 16, 16, 4))
    ops = _op_types(layer)
    if native_dilated_depthwise_supported():
        assert _depthwise_dilations(layer) == [[1, 2, 2, 1]] and "SpaceToBatchND" not in ops
    else:
        assert _depthwise_dilations(layer) == [[1, 1, 1, 1]] and "SpaceToBatchND" in ops
    layer(np.ones((1, 16, 16, 4), "float32"))  # eager: never an UnimplementedError


def test_native_kernel_probe_agrees_with_onednn_state():
    if tf.config.list_physical_devices("GPU") or onednn_enabled() is None or platform.machine() != "x86_64":
        pytest.skip("the probe/oneDNN correspondence holds for TensorFlow's x86 CPU kernels only")
    assert native_dilated_depthwise_supported() == onednn_enabled()


def test_unknown_depthwise_implementation_is_rejected():
    with pytest.raises(ValueError, match="implementation must be one of .* received 'fast'"):
        DepthwiseConv2D(3, implementation="fast")


def test_symmetric_padding_for_strided_mmseg_convs():
    x = tf.zeros((1, 8, 8, 1))
    padded, mode = pad_for_conv(x, 3, 2, 1, "mmseg", "t")
    assert mode == "valid" and tuple(padded.shape) == (1, 10, 10, 1)
    same, mode = pad_for_conv(x, 3, 2, 1, "deeplab", "t2")
    assert mode == "same" and same is x


@pytest.mark.parametrize("shape", [(8, 1, 1, 3), (2, 5, 4, 3)])
def test_batch_norm_moving_variance_follows_the_references(shape):
    """The moving variance takes the unbiased batch variance, as torch's BatchNorm2d and TF's fused batch norm
    (slim, the official DeepLab) do -- the variance that ``tf.compat.v1.nn.fused_batch_norm`` returns -- while the
    batch is normalised by the biased one; ``unbiased_moving_variance=False`` is Keras' own rule."""
    from keras_mv2seg.models.layers import BatchNormalization

    x = np.random.default_rng(0).normal(2.0, 3.0, size=shape).astype(np.float32)
    _, fused_mean, fused_variance = tf.compat.v1.nn.fused_batch_norm(
        x, np.ones(3, np.float32), np.zeros(3, np.float32), epsilon=1e-5, is_training=True)
    biased = x.var(axis=(0, 1, 2))
    normalised = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(biased + 1e-5)
    for unbiased, variance in ((True, fused_variance.numpy()), (False, biased)):
        layer = BatchNormalization(momentum=0.9, epsilon=1e-5, unbiased_moving_variance=unbiased)
        out = layer(x, training=True)
        np.testing.assert_allclose(out, normalised, atol=1e-5)
        np.testing.assert_allclose(layer.moving_mean, 0.1 * fused_mean.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(layer.moving_variance, 0.9 + 0.1 * variance, rtol=1e-5)
        np.testing.assert_allclose(layer(x, training=False), (x - layer.moving_mean) / np.sqrt(
            np.asarray(layer.moving_variance) + 1e-5), atol=1e-4)
    assert not np.allclose(fused_variance.numpy(), biased, rtol=1e-3)  # the two rules differ here
    frozen = BatchNormalization(use_moving_statistics=True)
    np.testing.assert_allclose(frozen(x, training=True), x / np.sqrt(1 + 1e-3), rtol=1e-5)
    np.testing.assert_array_equal(frozen.moving_variance, np.ones(3, np.float32))
    restored = BatchNormalization.from_config(BatchNormalization(unbiased_moving_variance=False).get_config())
    assert restored.unbiased_moving_variance is False

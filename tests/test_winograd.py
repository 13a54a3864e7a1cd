"""Winograd F(2x2 | 4x4, 3x3) convolutions: the same result as the direct convolution (float32 rounding apart),
in Keras, in the fixed-size deployment graphs and in ONNX Runtime / OpenVINO; refusals. Speed is measured by
benchmarks/bench_deploy.py, not here."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mv2seg
from keras_mv2seg.data.toy import synthetic_image
from keras_mv2seg.models.layers import WinogradConv2D, winograd_convolutions
from keras_mv2seg.models.winograd import TRANSFORMS, transformed_kernel, winograd_conv3x3

# relative to the largest output: F(2x2) rounds like a direct convolution, F(4x4)'s larger transform
# coefficients (up to 8 and 1/24) cost about one more decimal digit
TOLERANCE = {2: 2e-6, 4: 2e-5}


def _direct(x, kernel, padding):
    return tf.nn.conv2d(x, kernel, 1, padding.upper()).numpy()


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("size", [(8, 12), (7, 13), (5, 6)])
def test_equals_the_direct_convolution(tile, padding, size):
    rng = np.random.default_rng(sum(size) + tile)
    x = rng.uniform(0, 6, (2, *size, 24)).astype(np.float32)  # post-ReLU6 activations, batch of 2
    kernel = (rng.standard_normal((3, 3, 24, 40)) * (2 / (9 * 24)) ** 0.5).astype(np.float32)
    expected = _direct(x, kernel, padding)
    result = winograd_conv3x3(tf.constant(x), tf.constant(kernel), tile, padding).numpy()
    assert result.shape == expected.shape
    assert np.abs(result - expected).max() <= TOLERANCE[tile] * np.abs(expected).max()


@pytest.mark.parametrize("tile", [2, 4])
def test_transforms_are_exact_in_float64(tile):
    """Y = A^T [(G g G^T) * (B^T d B)] A reproduces the valid correlation of one tile exactly."""
    b_t, g, a_t = TRANSFORMS[tile]
    rng = np.random.default_rng(tile)
    d, k = rng.standard_normal((tile + 2, tile + 2)), rng.standard_normal((3, 3))
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * k) for j in range(tile)] for i in range(tile)])
    np.testing.assert_allclose(a_t @ ((g @ k @ g.T) * (b_t @ d @ b_t.T)) @ a_t.T, direct, atol=1e-12)
    assert transformed_kernel(tf.constant(k[:, :, None, None]), tile).shape == ((tile + 2) ** 2, 1, 1)


def test_layer_keeps_keras_weights_and_refuses_other_convolutions():
    direct = keras.layers.Conv2D(16, 3, padding="same", use_bias=True, activation="relu")
    winograd = WinogradConv2D(16, 3, padding="same", use_bias=True, activation="relu", tile=4)
    x = np.random.default_rng(0).uniform(0, 1, (1, 9, 11, 8)).astype(np.float32)
    direct(x), winograd(x)
    direct.set_weights([w + 0.1 for w in direct.get_weights()])  # a non-zero bias
    winograd.set_weights(direct.get_weights())
    np.testing.assert_allclose(winograd(x).numpy(), direct(x).numpy(), atol=1e-5)
    assert WinogradConv2D.from_config(winograd.get_config()).tile == 4
    for bad in (dict(kernel_size=5), dict(strides=2), dict(dilation_rate=2)):
        with pytest.raises(ValueError, match="Winograd needs a 3x3, stride-1, dilation-1"):
            WinogradConv2D(4, **{"kernel_size": 3, **bad})
    with pytest.raises(ValueError, match="tile must be one of"):
        WinogradConv2D(4, 3, tile=3)
    with pytest.raises(ValueError, match="static input size"):
        winograd_conv3x3(keras.Input((None, None, 8)), tf.zeros((3, 3, 8, 4)))


@pytest.mark.parametrize("head", ["fcn", "psp", "aspp", "sepaspp"])
def test_models_built_with_winograd_match_and_keep_names(head):
    config = keras_mv2seg.get_config("toy", head=head, decode_channels=32, aux_channels=0, c1_channels=16)
    model = keras_mv2seg.build_segmenter(config, input_shape=(64, 96, 3), batch_size=1)
    with winograd_convolutions(4):
        winograd = keras_mv2seg.build_segmenter(config, input_shape=(64, 96, 3), batch_size=1)
    assert [layer.name for layer in winograd.layers] == [layer.name for layer in model.layers]
    swapped = [layer for layer in winograd.layers if isinstance(layer, WinogradConv2D)]
    eligible = [layer for layer in model.layers if type(layer) is keras.layers.Conv2D
                and layer.kernel_size == (3, 3) and layer.strides == (1, 1) and layer.dilation_rate == (1, 1)]
    assert swapped and [layer.name for layer in swapped] == [layer.name for layer in eligible]
    winograd.set_weights(model.get_weights())
    image = synthetic_image(64, 96, seed=1)
    expected, result = model(image, training=False).numpy(), winograd(image, training=False).numpy()
    assert np.abs(result - expected).max() <= 1e-4 * np.abs(expected).max() + 1e-5
    with winograd_convolutions(0):  # off again, and the setting does not leak out of the block
        assert not any(isinstance(layer, WinogradConv2D) for layer in keras_mv2seg.build_segmenter(config).layers)
    assert not any(isinstance(layer, WinogradConv2D) for layer in keras_mv2seg.build_segmenter(config).layers)
    with pytest.raises(ValueError, match="0 \\(off\\) or one of"):
        with winograd_convolutions(3):
            pass


def test_benchmark_paths_name_the_winograd_tile():
    from benchmarks.kit import parse_path, path_name

    assert parse_path("openvino:float32+w4") == ("openvino", "float32", 4)
    assert parse_path("onnxruntime:int8") == ("onnxruntime", "int8", 0)
    assert path_name("onnxruntime", "float32", 2) == "onnxruntime float32 wino2"
    for bad in ("openvino", "openvino:float32+wX", ":int8"):
        with pytest.raises(ValueError, match="expected a path like"):
            parse_path(bad)

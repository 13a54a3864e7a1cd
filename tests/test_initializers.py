"""Initial weight statistics of every layer against the references' initialisation, for both conventions.

The expected distributions are written here from the references' code (see keras_mv2seg/models/initializers.py
for the citations), independently of the library's own table: mmseg -- Kaiming normal fan_out (PyTorch layout)
for every conv, N(0, 0.01) for conv_seg; official DeepLab -- truncated normal 0.09 in the backbone, glorot
uniform for head convs, truncated normal 0.33 / 0.06 for the decoder's separable convs, 0.01 for the logits.
Tolerances come from the sample size: 5 standard errors of the sample mean and standard deviation.
"""

import math

import keras
import numpy as np
import pytest

from keras_mv2seg import build_segmenter, get_config

TRUNCATED_STD = 0.8796  # std of a normal truncated at +-2 sigma, in units of sigma
KURTOSIS = {"normal": 3.0, "truncated": 2.3636, "uniform": 1.8}


def _torch_fan_out(layer, kernel):
    kh, kw = kernel.shape[:2]
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # torch weight (C, 1, kh, kw)
        return kernel.shape[2] * kh * kw
    return kernel.shape[3] * kh * kw  # torch weight (out, in, kh, kw)


def _glorot(kernel, depthwise):
    kh, kw, cin, cout = kernel.shape
    fan_in, fan_out = (kh * kw, kh * kw * cin) if depthwise else (kh * kw * cin, kh * kw * cout)
    return "uniform", math.sqrt(6.0 / (fan_in + fan_out))


def mmseg_expectation(layer, kernel):
    if layer.name.endswith("conv_seg"):
        return "normal", 0.01
    return "normal", math.sqrt(2.0 / _torch_fan_out(layer, kernel))


def deeplab_expectation(layer, kernel):
    name = layer.name
    if name.startswith(("stem_", "block")):
        return "truncated", 0.09
    if name == "decode_conv_seg":
        return "truncated", 0.01
    if name.startswith("decode_decoder_conv") and name.endswith("_depthwise"):
        return "truncated", 0.33
    if name.startswith("decode_decoder_conv") and name.endswith("_pointwise_conv"):
        return "truncated", 0.06
    return _glorot(kernel, isinstance(layer, keras.layers.DepthwiseConv2D))


def keras_expectation(layer, kernel):
    return _glorot(kernel, isinstance(layer, keras.layers.DepthwiseConv2D))


def check_layer(layer, kernel, kind, scale):
    values = np.asarray(kernel, np.float64).ravel()
    n = values.size
    if kind == "uniform":
        std, bound = scale / math.sqrt(3.0), scale
    elif kind == "truncated":
        std, bound = scale * TRUNCATED_STD, 2 * scale
    else:
        std, bound = scale, None
    mean_tol = 5 * std / math.sqrt(n)
    std_tol = 5 * std * math.sqrt((KURTOSIS[kind] - 1) / (4 * n))
    problems = []
    if abs(values.mean()) > mean_tol:
        problems.append(f"mean {values.mean():.3g} beyond +-{mean_tol:.3g}")
    if abs(values.std() - std) > std_tol:
        problems.append(f"std {values.std():.4g} vs {std:.4g} +-{std_tol:.3g}")
    if bound is not None and np.abs(values).max() > bound * (1 + 1e-6):
        problems.append(f"max |w| {np.abs(values).max():.4g} beyond the bound {bound:.4g}")
    return [f"{layer.name} ({kind} {scale:.4g}, n={n}): {'; '.join(problems)}"] if problems else []


def check_model(model, expectation):
    problems, checked = [], 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = (np.asarray(w) for w in layer.get_weights())
            if not (np.all(gamma == 1) and np.all(beta == 0) and np.all(mean == 0) and np.all(variance == 1)):
                problems.append(f"{layer.name}: BN does not start at gamma 1, beta 0, mean 0, variance 1")
            continue
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            continue
        kernel = layer.kernel  # Keras 3 names the depthwise kernel `kernel` too
        problems += check_layer(layer, kernel, *expectation(layer, kernel))
        if layer.use_bias and np.any(np.asarray(layer.bias) != 0):
            problems.append(f"{layer.name}: bias does not start at 0")
        checked += 1
    return problems, checked


CASES = [
    ("deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes", {}, mmseg_expectation),
    ("pspnet_m-v2-d8_512x512_160k_ade20k", {}, mmseg_expectation),
    ("deeplab_mnv2_ade20k", {}, deeplab_expectation),  # with the stride-4 separable decoder
    ("deeplab_mnv2_dm05_pascal", {}, deeplab_expectation),
    ("deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes", {"init": "keras"}, keras_expectation),
    ("deeplab_mnv2_cityscapes", {"init": "keras"}, keras_expectation),
]


@pytest.mark.parametrize("name, overrides, expectation", CASES, ids=[f"{c[0]}-{c[1].get('init', 'reference')}"
                                                                   for c in CASES])
def test_initial_weight_statistics_follow_the_reference(name, overrides, expectation):
    keras.utils.set_random_seed(0)
    config = get_config(name, **overrides)
    model = build_segmenter(config, auxiliary=config.model.aux_channels > 0)
    problems, checked = check_model(model, expectation)
    assert checked > 50
    assert not problems, "\n".join(problems)


def test_the_check_catches_keras_defaults_in_a_reference_model():
    """The statistics test can fail: Keras' glorot-uniform kernels are not mmseg's Kaiming normal."""
    keras.utils.set_random_seed(0)
    model = build_segmenter(get_config("deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes", init="keras"))
    problems, _ = check_model(model, mmseg_expectation)
    assert any("decode_conv_seg" in p for p in problems) and len(problems) > 20


def test_unknown_init_is_rejected():
    with pytest.raises(ValueError, match=r"model.init must be one of \('reference', 'keras'\), received 'he'"):
        get_config("toy", init="he")


def test_same_seed_same_initial_weights_other_seed_differs():
    def weights(seed):
        keras.utils.set_random_seed(seed)
        return build_segmenter(get_config("toy"), auxiliary=True).get_weights()

    first, again, other = weights(3), weights(3), weights(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))

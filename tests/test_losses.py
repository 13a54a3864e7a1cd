"""The losses equal mmseg 1.2.2's, values and gradients, on fixed logits and labels (``reference_fixtures/
losses.npz``, made in float64 by the reference kit with ``make_losses.py``); the official DeepLab's top-k
formula; the config keys' refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_mv2seg.training.losses import SegmentationCrossEntropy, TopKPixelCrossEntropy, build_loss

FIXTURES = Path(__file__).resolve().parent / "reference_fixtures"
CASES = json.loads((FIXTURES / "losses.json").read_text())["cases"]


@pytest.fixture(scope="module")
def arrays():
    return dict(np.load(FIXTURES / "losses.npz"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_value_and_gradient_equal_mmseg(case, arrays):
    spec = CASES[case]
    logits = tf.constant(np.transpose(arrays[f"{spec['inputs']}/logits"], (0, 2, 3, 1)))  # NCHW -> NHWC, float64
    labels = tf.constant(arrays[f"{spec['inputs']}/labels"])
    loss = build_loss(json.dumps(spec["decode_loss"]), json.dumps(spec["sampler"]) if spec["sampler"] else "")
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss(labels, logits)
    gradient = np.transpose(tape.gradient(value, logits).numpy(), (0, 3, 1, 2))
    np.testing.assert_allclose(value.numpy(), arrays[f"{case}/value"], rtol=1e-5)
    expected = arrays[f"{case}/grad"]
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_plain_cross_entropy_is_still_the_mean_over_all_pixels():
    logits = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 4, 5)), tf.float32)
    labels = tf.constant([[[0, 1, 255, 4]] * 3] * 2)
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(labels == 255, 0, labels), logits=logits)
    expected = tf.reduce_sum(tf.where(labels == 255, 0.0, per_pixel)) / 24
    np.testing.assert_allclose(SegmentationCrossEntropy()(labels, logits).numpy(), expected.numpy(), rtol=1e-6)


def test_top_k_percent_pixels_is_the_official_deeplab_formula():
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(2, 4, 5, 3)), rng.integers(0, 3, (2, 4, 5))
    labels[0, 0, :3] = 255
    per_pixel = -np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
    per_pixel = np.take_along_axis(per_pixel, np.where(labels == 255, 0, labels)[..., None], -1)[..., 0]
    per_pixel[labels == 255] = 0
    top = np.sort(per_pixel.ravel())[::-1][: int(0.25 * per_pixel.size)]
    value = TopKPixelCrossEntropy(top_k_percent=0.25)(tf.constant(labels), tf.constant(logits))
    np.testing.assert_allclose(value.numpy(), top.sum() / np.count_nonzero(top), rtol=1e-7)
    everything = TopKPixelCrossEntropy(top_k_percent=1.0)(tf.constant(labels), tf.constant(logits))
    np.testing.assert_allclose(everything.numpy(), per_pixel.sum() / np.count_nonzero(labels != 255), rtol=1e-7)


@pytest.mark.parametrize("decode_loss, sampler, message", [
    ('{"type": "LovaszLos"}', "", "type must be one of"),
    ('{"type": "CrossEntropyLoss", "class_weight": [1, 2]}', "", "class_weight has 2 values but the model has 3 "
                                                                   "classes: a, b, c"),
    ('{"type": "CrossEntropyLoss", "loss_weight": 0}', "", "loss_weight must be a number > 0"),
    ('{"type": "CrossEntropyLoss", "avg_nonignore": true}', "", "unexpected keyword argument 'avg_nonignore'"),
    ("not json", "", "must be JSON in mmseg's syntax"),
    ('[{"type": "CrossEntropyLoss"}, {"type": "DiceLoss"}]', '{"type": "OHEMPixelSampler", "thresh": 0.7}',
     "weights pixels of CrossEntropyLoss only"),
    ("", '{"type": "OHEMPixelSampler", "thresh": 2}', "thresh must be in (0, 1]"),
    ('{"type": "CrossEntropyLoss", "reduction": "sum"}', "", "reduction 'sum' is not supported (only 'mean')"),
    ('{"type": "DiceLoss", "activate": false}', "", "activate False is not supported (only True)"),
])
def test_bad_loss_settings_name_the_key(decode_loss, sampler, message):
    with pytest.raises(ValueError) as error:
        build_loss(decode_loss, sampler, class_names=("a", "b", "c"))
    assert message in str(error.value)


def test_losses_as_config_keys_and_in_compile_model(tmp_path):
    import keras_mv2seg
    from keras_mv2seg.training import SumOfLosses, compile_model

    config = keras_mv2seg.get_config(
        "toy", widen_factor=0.25, decode_channels=8, aux_channels=4, c1_channels=8, num_classes=3,
        dataset="custom", class_names=("a", "b", "c"),
        decode_loss=[{"type": "CrossEntropyLoss", "class_weight": [1.0, 2.0, 3.0]}, {"type": "DiceLoss",
                                                                                       "use_sigmoid": False}])
    assert json.loads(config.train.decode_loss)[1]["type"] == "DiceLoss"  # a dict becomes its JSON
    model = keras_mv2seg.build_segmenter(config, auxiliary=True)
    compile_model(model, config)
    assert isinstance(model.loss["logits"], SumOfLosses)
    assert isinstance(model.loss["aux_logits"], SegmentationCrossEntropy)
    with pytest.raises(ValueError, match="class_weight has 2 values but the model has 3 classes: a, b, c"):
        compile_model(model, config.replace(decode_loss='{"type": "CrossEntropyLoss", "class_weight": [1, 2]}'))
    with pytest.raises(ValueError, match="train.aux_loss type must be one of"):
        config.replace(aux_loss='{"type": "Nope"}')


def test_integer_predictions_are_refused_not_cast():
    """An int tensor where the loss expects float logits (the arguments swapped, or a class map): named."""
    labels = tf.constant(np.zeros((1, 4, 4), np.int32))
    logits = tf.constant(np.zeros((1, 4, 4, 3), np.float32))
    loss = build_loss("")
    assert np.isfinite(loss(labels, logits).numpy()).all()
    for candidate in (loss, build_loss('[{"type": "CrossEntropyLoss"}, {"type": "DiceLoss"}]')):
        with pytest.raises(TypeError, match=r"float logits .*received a int32 tensor of shape \(1, 4, 4\).*labels pass"):
            candidate(logits, labels)

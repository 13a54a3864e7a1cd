"""The recipe's pieces against NumPy implementations of the reference formulas."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras_mv2seg.training import PolyDecay, SegmentationCrossEntropy, TorchSGD


def test_poly_schedule_matches_the_formula():
    schedule = PolyDecay(0.01, 80000, min_lr=1e-4, power=0.9)
    for it in (0, 1, 100, 40000, 79999, 80000, 90000):
        expected = (0.01 - 1e-4) * (1 - min(it, 80000) / 80000) ** 0.9 + 1e-4
        assert float(schedule(it)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="max_iters must be positive"):
        PolyDecay(0.01, 0)


def numpy_cross_entropy(labels, logits, ignore_index=255):
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    valid = labels != ignore_index
    picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return float(np.where(valid, -picked, 0).sum() / labels.size)  # mean over ALL pixels


def test_loss_averages_over_all_pixels_including_ignored():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7, 4)).astype("float32")
    labels = rng.integers(0, 4, (2, 5, 7))
    labels[0, :2] = 255
    loss = SegmentationCrossEntropy()(labels, logits)
    assert float(loss) == pytest.approx(numpy_cross_entropy(labels, logits), rel=1e-5)
    all_ignored = np.full((1, 3, 3), 255)
    assert float(SegmentationCrossEntropy()(all_ignored, logits[:1, :3, :3])) == 0.0


def test_sgd_steps_match_pytorch_semantics():
    rng = np.random.default_rng(1)
    start = rng.normal(size=(3, 2)).astype("float32")
    grads = [rng.normal(size=(3, 2)).astype("float32") for _ in range(3)]
    schedule = PolyDecay(0.1, 4, min_lr=0.01, power=0.9)
    variable = keras.Variable(start)
    optimizer = TorchSGD(schedule, momentum=0.9, coupled_weight_decay=5e-4)
    expected, buffer = start.astype("float64"), None
    for step, grad in enumerate(grads):
        optimizer.apply_gradients([(tf.constant(grad), variable)])
        g = grad + 5e-4 * expected  # coupled decay
        buffer = g if buffer is None else 0.9 * buffer + g
        lr = (0.1 - 0.01) * (1 - step / 4) ** 0.9 + 0.01
        expected = expected - lr * buffer
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert int(optimizer.iterations) == 3


def test_keras_sgd_would_differ_once_the_rate_changes():
    """Why TorchSGD exists: Keras' velocity keeps lr * g, so two steps at different rates diverge."""
    grads = [np.ones((2,), "float32"), np.ones((2,), "float32")]
    results = []
    for optimizer in (TorchSGD(PolyDecay(0.1, 2, 0.0, 1.0), coupled_weight_decay=0.0),
                      keras.optimizers.SGD(PolyDecay(0.1, 2, 0.0, 1.0), momentum=0.9)):
        variable = keras.Variable(np.zeros(2, "float32"))
        for grad in grads:
            optimizer.apply_gradients([(tf.constant(grad), variable)])
        results.append(variable.numpy())
    # torch: -0.1*1 - 0.05*(0.9+1) = -0.195; keras: -0.1 + (0.9*-0.1 - 0.05) = -0.24
    np.testing.assert_allclose(results[0], [-0.195, -0.195], rtol=1e-6)
    assert not np.allclose(results[0], results[1])

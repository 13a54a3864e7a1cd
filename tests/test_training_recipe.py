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


def test_one_training_step_equals_mmseg_on_its_own_batch():
    """One step of the toy recipe (small model, dropout off) from mmseg's own initialisation on a batch of mmseg's
    own pipeline (tests/reference_fixtures/make_train_step.py; mmseg in float64): the same decode and aux losses,
    the same batch-norm moving statistics -- the moving variance with Bessel's correction, as torch updates it
    (the ASPP image pooling's batch norm sees 4 values per channel here: Keras' own rule would be off by 1/4 of
    its update) -- and the same update of every weight (to the float32 round-off of TensorFlow's batch-norm
    backward, measured at under 5 % of an update for the backbone's layers and 1e-5 for the classifiers)."""
    import json
    from pathlib import Path

    import keras

    import keras_mv2seg
    from keras_mv2seg.configs._base import toy
    from keras_mv2seg.training.recipe import compile_model

    fixture = Path(__file__).parent / "reference_fixtures" / "train_step"
    expected = json.loads((fixture / "step.json").read_text())
    batch = np.load(fixture / "batch.npz")
    config = toy("step_fixture", head="sepaspp", widen_factor=0.25, decode_channels=8, aux_channels=4,
                 c1_channels=8).replace(crop_size=(64, 64), base_scale=(128, 64), batch_size=4, dropout=0.0)

    def model_with(weights):
        model = keras_mv2seg.build_segmenter(config, auxiliary=True)
        keras_mv2seg.load_weights(model, fixture / weights)
        return model

    keras.utils.set_random_seed(0)
    model, initial, after = model_with("initial.pth"), model_with("initial.pth"), model_with("after.pth")
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == expected["params"]
    optimizer = compile_model(model, config)
    assert float(optimizer.learning_rate) == pytest.approx(expected["lr"])
    labels = batch["labels"].astype(np.int32)
    logs = model.train_on_batch(batch["images"], {"logits": labels, "aux_logits": labels}, return_dict=True)
    assert float(logs["logits_loss"]) == pytest.approx(expected["decode_loss"], rel=1e-6)
    assert config.train.aux_weight * float(logs["aux_logits_loss"]) == pytest.approx(expected["aux_loss"], rel=1e-6)

    def relative(paths, of_update):
        pairs = [(w, a, i) for w, a, i in zip(model.weights, after.weights, initial.weights) if w.path in paths]
        diff = sum(float(np.sum((np.asarray(w) - np.asarray(a)) ** 2)) for w, a, _ in pairs)
        scale = sum(float(np.sum((np.asarray(a) - (np.asarray(i) if of_update else 0)) ** 2)) for _, a, i in pairs)
        return (diff / scale) ** 0.5

    paths = [w.path for w in model.weights]
    assert relative([p for p in paths if p.endswith("moving_variance")], False) < 1e-5
    assert relative(["decode_image_pool_bn/moving_variance"], True) < 1e-4  # Bessel's correction at n = 4
    assert relative([p for p in paths if p.endswith("moving_mean")], False) < 1e-4
    assert relative([p for p in paths if "conv_seg" in p], True) < 1e-4  # the classifiers' update
    assert relative([p for p in paths if not p.endswith(("moving_mean", "moving_variance"))], True) < 0.05

"""Inference modes: slide, multi-scale + flip, and class maps."""

import numpy as np
import pytest
import tensorflow as tf

from keras_mv2seg import build_segmenter
from keras_mv2seg.config import ModelConfig
from keras_mv2seg.inference import CompiledForward, multi_scale_flip_logits, predict_labels, slide_logits


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    return build_segmenter(ModelConfig(head="psp", decode_channels=16, aux_channels=0, num_classes=5))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).uniform(0, 255, (1, 61, 90, 3)).astype("float32")


def test_slide_equals_whole_when_one_window_covers_the_image(model, image):
    whole = model(image, training=False)
    np.testing.assert_allclose(slide_logits(model, image, (64, 96), (40, 60)), whole, atol=1e-6)
    np.testing.assert_allclose(slide_logits(model, image, (61, 90), (10, 10)), whole, atol=1e-6)


class CountingForward(CompiledForward):
    """A stand-in network: logits of ones, every call's window size recorded."""

    def __init__(self):
        self.calls = []

    def tensor(self, images):
        self.calls.append(tuple(images.shape[1:3]))
        return tf.ones((images.shape[0], images.shape[1], images.shape[2], 2))


def test_slide_windows_cover_and_average():
    fake = CountingForward()
    out = slide_logits(fake, np.zeros((1, 50, 70, 3), "float32"), (32, 32), (20, 20))
    assert out.shape == (1, 50, 70, 2) and np.allclose(out, 1.0)  # every pixel averaged over its windows
    assert len(fake.calls) == 2 * 3 and set(fake.calls) == {(32, 32)}


def test_flip_test_inverts_the_flip():
    # logits copy the image content: flip-equivariant, so flip + flip-back must reproduce the plain pass,
    # while a missing flip-back would average the content with its mirror image
    def content_model(x, training=False):
        return tf.concat([x[..., :1], -x[..., :1]], axis=-1)

    ramp = np.broadcast_to(np.arange(-8, 8, dtype="float32")[None, None, :, None], (1, 8, 16, 3)).copy()
    plain = multi_scale_flip_logits(content_model, ramp, scale=(16, 8), ratios=(1.0,), flip=False)
    flipped = multi_scale_flip_logits(content_model, ramp, scale=(16, 8), ratios=(1.0,), flip=True)
    np.testing.assert_allclose(flipped, plain, atol=1e-6)
    assert np.argmax(flipped[0, 0, -1]) == 0 and np.argmax(flipped[0, 0, 0]) == 1


def test_multi_scale_single_ratio_without_flip_is_softmax_of_whole(model, image):
    probabilities = multi_scale_flip_logits(model, image, scale=(90, 61), ratios=(1.0,), flip=False)
    np.testing.assert_allclose(probabilities, tf.nn.softmax(model(image, training=False)), atol=1e-5)
    several = multi_scale_flip_logits(model, image, scale=(90, 61))
    assert several.shape == (1, 61, 90, 5)
    np.testing.assert_allclose(np.sum(several, -1), 1.0, atol=1e-5)


def test_predict_labels_is_int32_at_input_size(model, image):
    labels = predict_labels(model, image)
    assert labels.dtype == tf.int32 and labels.shape == (1, 61, 90)

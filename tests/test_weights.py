"""weights.py: saved weights carry their metadata; loading reads it (old files without it still load)."""

import h5py
import numpy as np
import pytest

import keras_mv2seg
from keras_mv2seg.config import CONVENTIONS
from keras_mv2seg.weights import build_for_inference, load_weights, save_weights, weights_metadata

SMALL = dict(decode_channels=16, aux_channels=8, c1_channels=8)


def test_saved_weights_carry_convention_view_and_config(tmp_path):
    config = keras_mv2seg.get_config("toy", **SMALL)
    model = keras_mv2seg.build_segmenter(config, auxiliary=True)
    path = save_weights(model, tmp_path / "a.weights.h5", config)
    metadata = weights_metadata(path)
    assert metadata["config"] == "toy" and metadata["view"] == "training"
    assert (metadata["convention"], metadata["head"], metadata["num_classes"]) == ("mmseg", "sepaspp", 19)
    # the training view is rebuilt from the metadata, not from layer counts
    restored = build_for_inference(config, path)
    image = np.random.default_rng(0).uniform(0, 255, (1, 32, 48, 3)).astype(np.float32)
    np.testing.assert_array_equal(restored(image).numpy(), keras_mv2seg.models.inference_model(model)(image).numpy())
    with pytest.raises(ValueError, match="Keras weight files must end with .weights.h5"):
        save_weights(model, tmp_path / "a.h5", config)


def test_files_without_metadata_still_load(tmp_path):
    config = keras_mv2seg.get_config("toy", **SMALL)
    model = keras_mv2seg.build_segmenter(config, auxiliary=True)
    path = tmp_path / "plain.weights.h5"
    model.save_weights(path)
    assert weights_metadata(path) is None
    assert len(build_for_inference(config, path).outputs) == 1


def test_metadata_refuses_weights_of_the_other_convention(tmp_path):
    official = keras_mv2seg.get_config("deeplab_mnv2_pascal")
    path = save_weights(keras_mv2seg.build_segmenter(official), tmp_path / "d.weights.h5", official)
    with h5py.File(path, "a") as handle:  # a file claiming the mmseg convention
        handle.attrs["keras_mv2seg"] = handle.attrs["keras_mv2seg"].replace('"deeplab"', '"mmseg"')
    with pytest.raises(ValueError, match="is an mmseg checkpoint but model"):
        load_weights(keras_mv2seg.build_segmenter(official), path)


def test_convention_object_carries_pad_pixel_and_resize():
    import tensorflow as tf

    assert CONVENTIONS["deeplab"].pad_pixel == pytest.approx((127.5,) * 3)
    assert CONVENTIONS["mmseg"].pad_pixel == pytest.approx((123.675, 116.28, 103.53))
    x = tf.reshape(tf.range(4, dtype=tf.float32), [1, 2, 2, 1])
    corners = CONVENTIONS["deeplab"].resize(x, [3, 3]).numpy()[0, ..., 0]
    assert corners[0, 0] == 0 and corners[2, 2] == 3 and corners[1, 1] == 1.5  # align_corners=True
    half = CONVENTIONS["mmseg"].resize(x, [4, 4]).numpy()[0, ..., 0]
    assert half[0, 0] == 0 and half[1, 1] == pytest.approx(0.75)  # half-pixel centres


def test_configs_ship_inside_the_package():
    from pathlib import Path

    from keras_mv2seg.config import config_dir, list_configs

    assert config_dir().parent == Path(keras_mv2seg.__file__).resolve().parent
    names = list_configs()
    assert "deeplab_mnv2_pascal" in names and "pspnet_m-v2-d8_512x512_20k_voc12aug" in names
    import configparser

    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert "configs/*.py" in setup["options.package_data"]["keras_mv2seg"]

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


def _values(model):
    return {v.path: v.numpy() for v in model.weights}


def test_a_keras_file_fine_tunes_into_another_class_count(tmp_path):
    """Every weight but the two classifiers moves across; the classifiers stay as the convention initialised
    them; a file of another head, or one without metadata, is refused naming the file."""
    from keras_mv2seg.weights import load_for_fine_tuning, source_classes

    config = keras_mv2seg.get_config("toy")
    trained = keras_mv2seg.build_segmenter(config, auxiliary=True)
    for variable in trained.weights:  # distinct from any initialisation
        variable.assign(np.random.default_rng(len(variable.path)).normal(size=variable.shape).astype("float32"))
    path = save_weights(trained, tmp_path / "own.weights.h5", config)
    assert source_classes(path) == 19
    model = keras_mv2seg.build_segmenter(config.replace(num_classes=3), auxiliary=True)
    initial = _values(model)
    report, line = load_for_fine_tuning(model, path)
    assert sorted(report.skipped_layers) == ["aux_conv_seg", "decode_conv_seg"]
    assert "re-initialised for 3 classes (the source has 19): " in line
    source = _values(trained)
    for name, value in _values(model).items():
        expected = initial[name] if "conv_seg" in name else source[name]
        np.testing.assert_array_equal(value, expected, err_msg=name)
    inference = keras_mv2seg.build_segmenter(config.replace(num_classes=3))  # the inference view too
    report = load_weights(inference, path, skip_classifier=True)
    assert any(key.startswith("aux_") for key in report.skipped_source)
    other_head = keras_mv2seg.build_segmenter(config.replace(head="psp", num_classes=3), auxiliary=True)
    with pytest.raises(ValueError, match=f"{path}: cannot load these Keras weights .*head 'sepaspp'"):
        load_weights(other_head, path, skip_classifier=True)
    trained.save_weights(tmp_path / "plain.weights.h5")
    with pytest.raises(ValueError, match="plain.weights.h5 carries no keras_mv2seg metadata"):
        load_weights(model, tmp_path / "plain.weights.h5", skip_classifier=True)


def test_load_from_and_pretrained_are_one_or_the_other():
    with pytest.raises(ValueError, match=r"train.pretrained \(a.pth\) and train.load_from \(b.pth\) both set"):
        keras_mv2seg.get_config("toy", pretrained="a.pth", load_from="b.pth")

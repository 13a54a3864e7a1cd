"""Official DeepLab TF1 checkpoints: parity with the official code, the export path, strict names."""

import numpy as np
import pytest
import tensorflow as tf

import keras_mv2seg
from keras_mv2seg import build_segmenter, get_config
from keras_mv2seg.weights.port import WeightMappingError, variable_role, weighted_layers
from keras_mv2seg.weights.deeplab import read_checkpoint, source_key
from keras_mv2seg.inference import pad_to_crop_predict


def write_checkpoint(prefix, tensors):
    """A TF1-style checkpoint with arbitrary variable names (what tf.compat.v1 Saver writes)."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])


@pytest.fixture(scope="module")
def cityscapes_model(deeplab_fixtures):
    model = build_segmenter(get_config("deeplab_mnv2_cityscapes"))
    report = keras_mv2seg.load_weights(model, deeplab_fixtures / "model.ckpt")
    assert report.ignored_source == ["global_step"] and len(report.assigned) == len(model.weights)
    return model


def upsampled_reference(logits, size):
    return tf.compat.v1.image.resize_bilinear(logits, size, align_corners=True).numpy()


@pytest.mark.parametrize("case", [("input_image_f32", "logits_os8", "predictions"),
                                  ("even_input_image_f32", "even_logits_os8", "even_predictions")])
def test_parity_with_the_official_code(deeplab_fixtures, cityscapes_model, case):
    image_file, logits_file, predictions_file = case
    images = np.load(deeplab_fixtures / f"{image_file}.npy")
    logits = np.asarray(cityscapes_model(images, training=False))
    expected = upsampled_reference(np.load(deeplab_fixtures / f"{logits_file}.npy"), images.shape[1:3])
    assert np.abs(logits - expected).max() <= 1e-3
    assert (logits.argmax(-1) == np.load(deeplab_fixtures / f"{predictions_file}.npy")).mean() >= 0.999


def test_exported_graph_behaviour(deeplab_fixtures, cityscapes_model):
    images = np.load(deeplab_fixtures / "export_input_uint8.npy")
    predictions = pad_to_crop_predict(cityscapes_model, images, (257, 513)).numpy()
    expected = np.load(deeplab_fixtures / "export_semantic_predictions.npy")
    assert predictions.dtype == np.int32 and predictions.shape == expected.shape
    assert (predictions == expected).mean() >= 0.999


def test_larger_images_are_resized_to_fit_instead_of_failing(cityscapes_model):
    images = np.random.default_rng(0).integers(0, 255, (1, 300, 700, 3), dtype=np.uint8)
    assert tuple(pad_to_crop_predict(cityscapes_model, images, (257, 513)).shape) == (1, 300, 700)


@pytest.mark.parametrize("output_stride", [16, 32])
def test_other_output_strides_load_the_same_checkpoint(deeplab_fixtures, output_stride):
    model = build_segmenter(get_config("deeplab_mnv2_cityscapes", output_stride=output_stride))
    keras_mv2seg.load_weights(model, deeplab_fixtures / "model.ckpt")
    images = np.load(deeplab_fixtures / "even_input_image_f32.npy")
    logits = np.asarray(model(images, training=False))
    assert logits.shape == (1, 256, 320, 19) and np.isfinite(logits).all()


def test_momentum_slots_are_ignored_and_missing_variables_named(deeplab_fixtures, tmp_path):
    tensors = read_checkpoint(deeplab_fixtures / "model.ckpt")
    slots = (deeplab_fixtures / "mnv2_cityscapes_varnames_momentum_slots.tsv").read_text().splitlines()[1:]
    with_slots = dict(tensors)
    for line in slots:
        name, shape = line.split("\t")
        with_slots[name] = np.zeros(eval(shape), "float32")  # noqa: S307 - shapes like [3, 3, 3, 32]
    write_checkpoint(tmp_path / "slots.ckpt", with_slots)
    model = build_segmenter(get_config("deeplab_mnv2_cityscapes"))
    report = keras_mv2seg.load_weights(model, tmp_path / "slots.ckpt")
    assert len(report.ignored_source) == len(slots) + 1
    missing = {k: v for k, v in tensors.items() if k != "MobilenetV2/expanded_conv_7/depthwise/BatchNorm/gamma"}
    write_checkpoint(tmp_path / "missing.ckpt", missing)
    with pytest.raises(WeightMappingError, match="MobilenetV2/expanded_conv_7/depthwise/BatchNorm/gamma"):
        keras_mv2seg.load_weights(model, tmp_path / "missing.ckpt")


def test_fine_tuning_skips_logits(deeplab_fixtures):
    model = build_segmenter(get_config("deeplab_mnv2_cityscapes", num_classes=3))
    report = keras_mv2seg.load_weights(model, deeplab_fixtures / "model.ckpt", skip_classifier=True)
    assert report.skipped_layers == ["decode_conv_seg"]
    with pytest.raises(WeightMappingError, match="logits/semantic/weights: source"):
        keras_mv2seg.load_weights(model, deeplab_fixtures / "model.ckpt")
    from keras_mv2seg.weights import load_for_fine_tuning, source_classes

    assert source_classes(deeplab_fixtures / "model.ckpt") == 19
    report, line = load_for_fine_tuning(model, deeplab_fixtures)  # the folder, as the official tarball unpacks
    assert sorted(report.skipped_source) == ["logits/semantic/biases", "logits/semantic/weights"]
    assert "re-initialised for 3 classes (the source has 19): decode_conv_seg" in line


def _read_varnames(path):
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("name\t")]
    return {name: tuple(eval(shape)) for name, shape in rows if name != "global_step"}  # noqa: S307


@pytest.mark.parametrize("config, listing", [
    ("deeplab_mnv2_cityscapes", "varnames_cityscapes_os8_19.tsv"),
    ("deeplab_mnv2_pascal", "varnames_pascal_dm10_21.tsv"),
    ("deeplab_mnv2_dm05_pascal", "varnames_pascal_dm05_21.tsv"),
    ("deeplab_mnv2_ade20k", "varnames_ade20k_decoder_os4_151.tsv"),
])
def test_weights_map_one_to_one_onto_the_official_variables(varname_fixtures, config, listing):
    expected = _read_varnames(varname_fixtures / listing)
    model = build_segmenter(get_config(config))
    ours = {source_key(layer, variable_role(v)): tuple(v.shape) for layer in weighted_layers(model)
            for v in layer.weights}
    assert len(ours) == sum(len(layer.weights) for layer in weighted_layers(model))  # injective
    assert ours == expected


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    model = build_segmenter(get_config("deeplab_mnv2_pascal"))
    with pytest.raises(ValueError, match="unknown weight format"):
        keras_mv2seg.load_weights(model, tmp_path / "model.ckpt")

"""mmseg .pth import: parity with the reference's own outputs, strictness, backbone-only and fine-tuning."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_mv2seg
from keras_mv2seg import build_segmenter, get_config
from keras_mv2seg.weights.port import WeightMappingError
from keras_mv2seg.weights.mmseg import module_path
from keras_mv2seg.weights.torch_pickle import load_state_dict
from keras_mv2seg.models import intermediate_model
from tests.conftest import parity
from tests.pth_writer import backbone_state_dict, save_pth

HEADS = {"fcn": "fcn_m-v2-d8_512x1024_80k_cityscapes", "psp": "pspnet_m-v2-d8_512x1024_80k_cityscapes",
         "aspp": "deeplabv3_m-v2-d8_512x1024_80k_cityscapes",
         "sepaspp": "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes"}


def fixture_config(head):
    return get_config(HEADS[head], decode_channels=64, aux_channels=32)


# made by mmseg's own load_checkpoint(strict=False): tests/reference_fixtures/make_load_from.py
REFERENCE_LOAD_FROM = Path(__file__).parent / "reference_fixtures" / "load_from_5_classes.json"


def nhwc(a):
    return np.asarray(a).transpose(0, 2, 3, 1)


@pytest.mark.heavy
@pytest.mark.parametrize("head", sorted(HEADS))
def test_parity_with_the_reference(mmseg_fixtures, head):
    model = build_segmenter(fixture_config(head), auxiliary=True)
    report = keras_mv2seg.load_weights(model, mmseg_fixtures / f"{head}_cityscapes.pth")
    assert len(report.assigned) == len(model.weights) and not report.skipped_source
    images = np.load(mmseg_fixtures / "input_rgb_uint8.npy").astype("float32")
    outputs = model(images, training=False)
    result = parity(np.asarray(outputs["logits"]), nhwc(np.load(mmseg_fixtures / f"{head}_logits.npy")))
    assert result["relative"] <= 1e-4 and result["max_abs"] <= 2e-3 and result["agreement"] >= 0.9999, result
    reference = np.load(mmseg_fixtures / f"{head}_intermediates.npz")
    inner = intermediate_model(model, ("c1", "c2", "c3", "c4", "head", "aux"))(images, training=False)
    for key in ("c1", "c2", "c3", "c4", "head", "aux"):
        result = parity(np.asarray(inner[key]), nhwc(reference[key]))
        assert result["relative"] <= 1e-4 and result["max_abs"] <= 2e-3, (key, result)
        if key in ("head", "aux"):
            assert result["agreement"] >= 0.9999, (key, result)


def test_class_agreement_forgives_only_numerical_ties():
    reference = np.zeros((1, 1, 3, 3), np.float32)
    reference[0, 0, :, 0] = [1.0, 1.0, 1.0]
    reference[0, 0, :, 1] = [0.99998, 0.5, 0.99998]
    ours = reference.copy()
    ours[0, 0, 0, 1] += 3e-5  # a tie (the reference's margin 2e-5) swapped: agrees
    ours[0, 0, 1, 1] += 0.6  # a swap against a margin of 0.5: disagrees, however large the error
    result = parity(ours, reference, tie=1e-4)
    assert result["exact_agreement"] == pytest.approx(1 / 3)
    assert result["agreement"] == pytest.approx(2 / 3)
    assert result["max_abs"] == pytest.approx(0.6)


@pytest.mark.heavy
def test_legacy_format_loads_the_same_weights(mmseg_fixtures):
    models = []
    for name in ("fcn_cityscapes.pth", "fcn_cityscapes_legacy.pth"):
        model = build_segmenter(fixture_config("fcn"), auxiliary=True)
        keras_mv2seg.load_weights(model, mmseg_fixtures / name)
        models.append(model)
    for a, b in zip(models[0].weights, models[1].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_inference_model_skips_the_auxiliary_head_and_reports_it(mmseg_fixtures):
    model = build_segmenter(fixture_config("fcn"))
    report = keras_mv2seg.load_weights(model, mmseg_fixtures / "fcn_cityscapes.pth")
    assert report.skipped_source and all(k.startswith("auxiliary_head.") for k in report.skipped_source)


def test_missing_unused_and_misshaped_tensors_are_named(mmseg_fixtures, tmp_path):
    state = load_state_dict(mmseg_fixtures / "fcn_cityscapes.pth")
    broken = dict(state)
    del broken["backbone.layer3.1.conv.1.conv.weight"]
    broken["decode_head.extra.weight"] = np.zeros(3, "float32")
    broken["decode_head.conv_seg.bias"] = np.zeros(7, "float32")
    save_pth(tmp_path / "broken.pth", broken)
    model = build_segmenter(fixture_config("fcn"), auxiliary=True)
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(WeightMappingError) as error:
        keras_mv2seg.load_weights(model, tmp_path / "broken.pth")
    message = str(error.value)
    assert "backbone.layer3.1.conv.1.conv.weight (for block4_depthwise" in message
    assert "decode_head.extra.weight" in message and "nothing was loaded" in message
    assert "decode_head.conv_seg.bias: source (7,)" in message
    for old, new in zip(before, model.weights):  # all-or-nothing
        np.testing.assert_array_equal(old, new.numpy())


def test_wrong_config_size_fails(mmseg_fixtures):
    model = build_segmenter(get_config(HEADS["fcn"]))  # 512 channels, the fixture has 64
    with pytest.raises(WeightMappingError, match="wrong shape"):
        keras_mv2seg.load_weights(model, mmseg_fixtures / "fcn_cityscapes.pth")


def test_fine_tuning_to_other_classes_skips_the_classifiers(mmseg_fixtures):
    cfg = fixture_config("psp").replace(num_classes=4)
    model = build_segmenter(cfg, auxiliary=True)
    classifier = model.get_layer("decode_conv_seg").get_weights()[0].copy()
    report = keras_mv2seg.load_weights(model, mmseg_fixtures / "psp_cityscapes.pth", skip_classifier=True)
    assert set(report.skipped_layers) == {"decode_conv_seg", "aux_conv_seg"}
    assert sorted(report.skipped_source) == ["auxiliary_head.conv_seg.bias", "auxiliary_head.conv_seg.weight",
                                             "decode_head.conv_seg.bias", "decode_head.conv_seg.weight"]
    np.testing.assert_array_equal(model.get_layer("decode_conv_seg").get_weights()[0], classifier)
    with pytest.raises(WeightMappingError, match="conv_seg"):
        keras_mv2seg.load_weights(build_segmenter(cfg, auxiliary=True), mmseg_fixtures / "psp_cityscapes.pth")


def test_imagenet_backbone_checkpoint_loads_into_the_backbone_only(tmp_path):
    model = build_segmenter(get_config(HEADS["aspp"], decode_channels=16, aux_channels=8), auxiliary=True)
    state = backbone_state_dict(model)
    state["backbone.conv2.conv.weight"] = np.zeros((1280, 320, 1, 1), "float32")
    state["head.fc.weight"] = np.zeros((1000, 1280), "float32")
    save_pth(tmp_path / "mmcls.pth", state)
    head_before = model.get_layer("decode_bottleneck_conv").get_weights()[0].copy()
    with pytest.raises(WeightMappingError, match="part='backbone'"):
        keras_mv2seg.load_weights(model, tmp_path / "mmcls.pth")
    report = keras_mv2seg.load_weights(model, tmp_path / "mmcls.pth", part="backbone")
    assert sorted(report.skipped_source) == ["backbone.conv2.conv.weight", "head.fc.weight"]
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0],
                                  state["backbone.conv1.conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("decode_bottleneck_conv").get_weights()[0], head_before)


def test_module_paths_of_the_head_units():
    assert module_path("block0_depthwise") == "backbone.layer1.0.conv.0"
    assert module_path("block0_project") == "backbone.layer1.0.conv.1"
    assert module_path("block16_project") == "backbone.layer7.0.conv.2"
    assert module_path("decode_psp_modules3") == "decode_head.psp_modules.3.1"
    assert module_path("decode_image_pool") == "decode_head.image_pool.1"
    assert module_path("decode_aspp_modules2_depthwise") == "decode_head.aspp_modules.2.depthwise_conv"
    assert module_path("decode_c1_bottleneck") == "decode_head.c1_bottleneck"
    assert module_path("aux_convs0") == "auxiliary_head.convs.0"
    with pytest.raises(WeightMappingError, match="no mmseg module"):
        module_path("mystery")


def test_mmseg_checkpoint_into_a_deeplab_model_is_refused(mmseg_fixtures):
    model = build_segmenter(get_config("deeplab_mnv2_pascal"))
    with pytest.raises(ValueError, match="is an mmseg checkpoint but model"):
        keras_mv2seg.load_weights(model, mmseg_fixtures / "fcn_cityscapes.pth")


def test_model_without_its_config_is_refused_by_the_name_mapping_not_guessed(mmseg_fixtures):
    built = build_segmenter(get_config("deeplab_mnv2_pascal"))
    rebuilt = keras.Model(built.input, built.output)  # as Keras rebuilds a saved model: no segmenter config
    with pytest.raises(WeightMappingError):
        keras_mv2seg.load_weights(rebuilt, mmseg_fixtures / "fcn_cityscapes.pth")


@pytest.mark.parametrize("head", sorted(HEADS))
def test_load_from_into_new_classes_skips_exactly_what_mmseg_skips(mmseg_fixtures, head):
    """An mmseg .pth of 19 classes into a 5-class model: the tensors left out are the ones mmseg's own
    load_checkpoint(strict=False) does not load; everything else is what a strict 19-class load gives."""
    from keras_mv2seg.weights import load_for_fine_tuning

    reference = json.loads(REFERENCE_LOAD_FROM.read_text())["heads"][head]
    assert not reference["missing"] and not reference["unexpected"]
    source = mmseg_fixtures / f"{head}_cityscapes.pth"
    model = build_segmenter(fixture_config(head).replace(num_classes=5), auxiliary=True)
    initial = {v.path: v.numpy() for v in model.weights}
    report, line = load_for_fine_tuning(model, source)
    assert sorted(report.skipped_source) == reference["not_loaded_size_mismatch"]
    assert "re-initialised for 5 classes (the source has 19)" in line
    strict = build_segmenter(fixture_config(head), auxiliary=True)
    keras_mv2seg.load_weights(strict, source)
    expected = {v.path: v.numpy() for v in strict.weights}
    for variable in model.weights:
        value = initial[variable.path] if "conv_seg" in variable.path else expected[variable.path]
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)

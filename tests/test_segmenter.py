"""The segmenter: parameter counts, shapes at odd sizes and every output stride, training view, saving."""

import numpy as np
import pytest

import keras
import keras_mv2seg
from keras_mv2seg import build_segmenter, get_config, inference_model
from keras_mv2seg.config import ModelConfig

# PyTorch parameters() of the reference (19 classes): with auxiliary head / inference path.
REFERENCE_PARAMS = {
    "fcn_m-v2-d8_512x1024_80k_cityscapes": (9_718_822, 9_492_243),
    "pspnet_m-v2-d8_512x1024_80k_cityscapes": (13_620_262, 13_393_683),
    "deeplabv3_m-v2-d8_512x1024_80k_cityscapes": (18_602_022, 18_375_443),
    "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes": (15_244_374, 15_017_795),
}


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_counts_equal_the_reference(name):
    with_aux, without = REFERENCE_PARAMS[name]
    cfg = get_config(name)
    assert trainable_count(build_segmenter(cfg, auxiliary=True)) == with_aux
    assert trainable_count(build_segmenter(cfg)) == without
    # ADE20K rows differ only by the 150-class classifiers (decode 512+1, auxiliary 256+1 per class).
    ade = get_config(name.replace("512x1024_80k_cityscapes", "512x512_160k_ade20k"))
    assert trainable_count(build_segmenter(ade, auxiliary=True)) == with_aux + 131 * 513 + 131 * 257


def test_backbone_parameter_count():
    backbone = keras_mv2seg.models.build_backbone(ModelConfig())
    assert trainable_count(backbone) == 1_811_712


def small(head, **kw):
    defaults = dict(decode_channels=16, aux_channels=8, c1_channels=8, num_classes=5)
    if head == "deeplab":
        defaults.update(convention="deeplab", aux_channels=0, dropout=0.0)
    return ModelConfig(head=head, **{**defaults, **kw})


@pytest.mark.parametrize("head", ["fcn", "psp", "aspp", "sepaspp", "deeplab"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_logits_at_input_size_for_odd_sizes(head, output_stride):
    model = build_segmenter(small(head, output_stride=output_stride))
    images = np.random.default_rng(0).uniform(0, 255, (2, 97, 193, 3)).astype("float32")
    logits = model(images)
    assert tuple(logits.shape) == (2, 97, 193, 5) and logits.dtype == "float32"
    assert np.isfinite(np.asarray(logits)).all()


def test_deeplab_decoder_runs_at_odd_sizes():
    model = build_segmenter(small("deeplab", decoder_stride=4))
    assert tuple(model(np.zeros((1, 65, 99, 3), "float32")).shape) == (1, 65, 99, 5)


def test_training_view_has_both_outputs_and_shares_weights():
    cfg = small("psp")
    train = build_segmenter(cfg, auxiliary=True)
    images = np.random.default_rng(1).uniform(0, 255, (1, 64, 96, 3)).astype("float32")
    outputs = train(images)
    assert set(outputs) == {"logits", "aux_logits"}
    assert tuple(outputs["aux_logits"].shape) == (1, 64, 96, 5)
    infer = inference_model(train)
    np.testing.assert_array_equal(infer(images), outputs["logits"])
    assert len(infer.weights) < len(train.weights)
    with pytest.raises(ValueError, match="has no auxiliary head"):
        build_segmenter(small("fcn", aux_channels=0), auxiliary=True)


@pytest.mark.parametrize("head", ["sepaspp", "deeplab"])
def test_keras_file_round_trip_gives_identical_outputs(tmp_path, head):
    cfg = small(head, decoder_stride=4) if head == "deeplab" else small(head)
    model = build_segmenter(cfg, auxiliary=head != "deeplab")
    images = np.random.default_rng(2).uniform(0, 255, (1, 45, 67, 3)).astype("float32")
    expected = model(images)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    actual = restored(images)
    for key in (expected if isinstance(expected, dict) else [None]):
        a = actual[key] if key else actual
        e = expected[key] if key else expected
        np.testing.assert_array_equal(a, e)
    model.save_weights(tmp_path / "m.weights.h5")
    fresh = build_segmenter(cfg, auxiliary=head != "deeplab")
    keras_mv2seg.load_weights(fresh, tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(inference_model(fresh)(images), inference_model(model)(images))


def test_native_depthwise_model_matches_portable():
    portable = build_segmenter(small("sepaspp"))
    native = build_segmenter(small("sepaspp", depthwise_implementation="native"))
    native.set_weights(portable.get_weights())
    images = np.random.default_rng(3).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(native(images), portable(images), atol=1e-4)


def test_layer_names_are_stable():
    names = {layer.name for layer in build_segmenter(small("sepaspp"), auxiliary=True).layers}
    for expected in ("images", "normalize", "stem_conv", "stem_bn", "block0_depthwise", "block1_expand_conv",
                     "block16_project_bn", "decode_image_pool_conv", "decode_aspp_modules1_depthwise",
                     "decode_c1_bottleneck_conv", "decode_sep_bottleneck1_pointwise_bn", "decode_conv_seg",
                     "aux_convs0_conv", "aux_conv_seg", "logits", "aux_logits"):
        assert expected in names


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_float32_logits(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = build_segmenter(small("aspp"), auxiliary=True)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    outputs = model(np.zeros((1, 32, 32, 3), "float32"))
    assert outputs["logits"].dtype == "float32" and outputs["aux_logits"].dtype == "float32"
    assert model.get_layer("decode_bottleneck_conv").compute_dtype != "float32"


def test_conv_macs_equal_the_reference_at_1024x2048():
    from keras_mv2seg.flops import conv_macs

    cfg = get_config("fcn_m-v2-d8_512x1024_80k_cityscapes")
    macs = conv_macs(build_segmenter(cfg, input_shape=(1024, 2048, 3)))
    assert abs(macs / 1e9 - 312.9) < 0.1  # SPEC: FCN 312.9 G multiply-adds at 1024x2048
    with pytest.raises(ValueError, match="fixed input_shape"):
        conv_macs(build_segmenter(cfg))

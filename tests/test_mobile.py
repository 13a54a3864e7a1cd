"""TFLite files for phones, checked by the real client: MediaPipe Tasks' ImageSegmenter (Python, CPU) loads every
export variant unchanged, reports the config's class names and segments like the Keras model."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import keras_mv2seg
from keras_mv2seg.configs._base import toy
from keras_mv2seg.data.sources import sample_images
from keras_mv2seg.datasets_meta import classes_of
from keras_mv2seg.export import tflite as tl
from keras_mv2seg.export import tflite_metadata
from keras_mv2seg.export.artifacts import export_model
from keras_mv2seg.export.graph import calibration_images
from keras_mv2seg.export.graph import stride_model
from keras_mv2seg.export.verify import softmax
from keras_mv2seg.ops import resize_bilinear
from keras_mv2seg.training import train

vision = pytest.importorskip("mediapipe.tasks.python.vision", reason="mediapipe (installed by the README's test "
                             "command: pip install --no-deps mediapipe) is the client these files are for")
mp = pytest.importorskip("mediapipe")
from mediapipe.tasks.metadata import metadata_schema_py_generated as mediapipe_schema  # noqa: E402
from mediapipe.tasks.python.core.base_options import BaseOptions  # noqa: E402

SIZE = (64, 128)


@pytest.fixture(scope="module")
def trained(tiny_toy_root, tmp_path_factory):
    """A tiny DeepLabV3+ trained on the toy data (so that its argmax margins are real ones and it predicts several
    classes: 100 iterations at lr 0.1 reach about 53 % val mIoU, 5 classes) and its val images."""
    config = toy("mobile_toy", head="sepaspp", widen_factor=0.5, decode_channels=16, aux_channels=4,
                 c1_channels=8).replace(data_root=str(tiny_toy_root), crop_size=(64, 64), base_scale=(128, 64),
                                        batch_size=4, max_iters=100, eval_interval=100, checkpoint_interval=100,
                                        lr=0.1)
    work = tmp_path_factory.mktemp("mobile_train")
    train(config, work, verbose=0)
    model = keras_mv2seg.build_for_inference(config, str(work / "final.weights.h5"))
    images = [np.round(image).astype(np.float32) for image in sample_images(config, "val", tiny_toy_root, 2, SIZE)]
    predicted = {int(c) for image in images for c in np.unique(model(image[None]).numpy().argmax(-1))}
    assert len(predicted) >= 3, f"the toy-trained model predicts {sorted(predicted)} only: the checks would be empty"
    return config, model, images  # whole pixel values, the same for MediaPipe (uint8) and Keras


def segmenter(path):
    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           output_category_mask=True, output_confidence_masks=True)
    return vision.ImageSegmenter.create_from_options(options)


def segment(client, image):
    """MediaPipe's category mask [H, W] and confidence masks [H, W, C] for one RGB image."""
    frame = mp.Image(image_format=mp.ImageFormat.SRGB,
                     data=np.ascontiguousarray(np.clip(np.round(image), 0, 255).astype(np.uint8)))
    result = client.segment(frame)
    height, width = image.shape[:2]
    confidence = np.stack([mask.numpy_view().reshape(height, width) for mask in result.confidence_masks], -1)
    return result.category_mask.numpy_view().reshape(height, width), confidence


def export(config, model, path, **options):
    exported = export_model("tflite", config, model, output=path, input_size=SIZE, **options)
    assert exported.passed, "\n".join(exported.lines)
    return exported


VARIANTS = {  # name: (quantization, graph output, input type, at stride)
    "float32_scores": ("float32", "scores", "float32", False),
    "float32_logits_uint8_input": ("float32", "logits", "uint8", False),
    "float16_scores_uint8_input": ("float16", "scores", "uint8", False),
    "float16_scores_at_stride": ("float16", "scores", "float32", True),
    "float32_logits_at_stride_uint8_input": ("float32", "logits", "uint8", True),
    "int8_scores_uint8_io": ("int8", "scores", "uint8", False),
    "int8_scores_at_stride": ("int8", "scores", "float32", True),
    "int8_logits_float_io": ("int8", "logits", "float32", False),
}


def resized(scores, size, align_corners):
    return resize_bilinear(tf.constant(scores[None]), size, align_corners).numpy()[0]


@pytest.mark.heavy
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mediapipe_segments_like_keras(trained, tiny_toy_root, tmp_path, variant):
    """Full size: MediaPipe's category mask is the Keras argmax, its confidence masks the softmax. At the stride
    MediaPipe resizes the output itself, two ways: the category mask is the argmax of the raw output tensor
    resized with align_corners=True, the confidence masks the activated output resized with half-pixel centres
    -- both checked, and the category mask's agreement with the model's own in-graph resize bounded (it differs
    along class borders)."""
    config, model, images = trained
    quantization, output, input_type, at_stride = VARIANTS[variant]
    calibration = calibration_images(config, tiny_toy_root, 8, SIZE) if quantization == "int8" else None
    path = tmp_path / f"{variant}.tflite"
    export(config, model, path, quantization=quantization, graph_output=output, input_type=input_type,
           at_stride=at_stride, calibration_images=calibration, check_images=images)
    metadata = tflite_metadata.read_segmenter_metadata(path.read_bytes())
    assert metadata["activation"] == {"logits": "softmax", "scores": "none"}[output]
    assert ("mean" in metadata["inputs"][0]) == (input_type == "float32")  # uint8 input: raw pixels
    assert metadata["min_parser_version"] == "1.5.0" and metadata["files_missing"] == []
    floor = 0.99 if quantization == "int8" else 0.999  # at the stride: against the file's own output
    own = tl.runner(path.read_bytes())
    client = segmenter(path)
    try:
        assert client.labels == list(classes_of(config))
        for image in images:
            logits = model(image[None].astype(np.float32), training=False).numpy()[0]
            category, confidence = segment(client, image)
            if not at_stride:
                if quantization == "int8":  # MediaPipe's mask is the file's own argmax; int8's error is bounded
                    assert (category == own(image[None])[0].argmax(-1)).mean() >= 0.999, variant
                    floor = 0.97  # int8 against float: 84-99 % by head in the deployment table, 98-99 % here
                assert (category == logits.argmax(-1)).mean() >= floor, variant
                if quantization == "float32":
                    np.testing.assert_allclose(confidence, softmax(logits), atol=1e-3)
                continue
            if quantization == "int8":  # the file's own output: int8's own error is the full-size variants' check
                raw = own(image[None])[0]
            else:
                raw = stride_model(model)(image[None], training=False).numpy()[0]
                raw = softmax(raw) if output == "scores" else raw
            activated = softmax(raw) if output == "logits" else raw
            assert (category == resized(raw, SIZE, True).argmax(-1)).mean() >= floor, variant
            np.testing.assert_allclose(confidence, resized(activated, SIZE, False),
                                       atol=1e-3 if quantization == "float32" else 2e-2)
            assert (category == logits.argmax(-1)).mean() >= 0.93, variant  # class borders move
    finally:
        client.close()


def test_metadata_reads_back_with_mediapipes_schema(trained, tmp_path):
    config, model, images = trained
    path = tmp_path / "labels.tflite"
    export(config, model, path, graph_output="labels", check_images=images[:1], author="me", license="MIT")
    content = path.read_bytes()
    parsed = mediapipe_schema.ModelMetadataT.InitFromObj(
        mediapipe_schema.ModelMetadata.GetRootAsModelMetadata(tflite_metadata.metadata_buffer(content), 0))
    assert (parsed.name, parsed.author, parsed.license) == (b"mobile_toy", b"me", b"MIT")
    assert parsed.minParserVersion == b"1.0.0"  # no custom metadata for the class map
    subgraph = parsed.subgraphMetadata[0]
    image = subgraph.inputTensorMetadata[0]
    assert image.content.contentPropertiesType == mediapipe_schema.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == mediapipe_schema.ColorSpaceType.RGB
    assert (image.content.contentProperties.defaultSize.height,
            image.content.contentProperties.defaultSize.width) == SIZE
    normalization = image.processUnits[0].options
    assert list(normalization.mean) == [0.0] and list(normalization.std) == [1.0]
    labels = subgraph.outputTensorMetadata[0].associatedFiles[0]
    assert labels.type == mediapipe_schema.AssociatedFileType.TENSOR_VALUE_LABELS
    assert tflite_metadata.associated_file(content, labels.name.decode()).decode().splitlines() == \
        list(classes_of(config))
    assert subgraph.customMetadata is None


def test_bad_graph_requests_are_refused(trained):
    config, model, _ = trained
    with pytest.raises(ValueError, match="at_stride applies to the logits and scores"):
        tl.convert(config, model, SIZE, output="labels", at_stride=True)
    with pytest.raises(ValueError, match="input_type must be one of"):
        tl.convert(config, model, SIZE, input_type="int8")
    with pytest.raises(ValueError, match="apply to the tflite format, not onnx"):
        export_model("onnx", config, model, input_size=SIZE, at_stride=True, graph_output="scores")


@pytest.mark.heavy
def test_official_deeplab_at_257_loads_in_mediapipe(deeplab_fixtures, tmp_path):
    """MediaPipe's sample segmenter is the official DeepLabV3 MobileNetV2 at 257x257: the shared DeepLab fixture's
    weights exported that way segment like Keras, and the PASCAL build carries VOC's 21 labels in order."""
    from keras_mv2seg.export.verify import check_images

    size = (257, 257)
    cityscapes = keras_mv2seg.get_config("deeplab_mnv2_cityscapes")
    model = keras_mv2seg.build_for_inference(cityscapes, str(deeplab_fixtures / "model.ckpt"))
    image = np.round(check_images(cityscapes, None, 1, size)[0]).astype(np.float32)
    pascal = keras_mv2seg.get_config("deeplab_mnv2_pascal")
    voc = keras_mv2seg.build_segmenter(pascal)  # the fixture's weights with a 21-class classifier of real margins
    for layer in voc.layers:
        if layer.weights and layer.name != "decode_conv_seg":
            layer.set_weights(model.get_layer(layer.name).get_weights())
    kernel, bias = voc.get_layer("decode_conv_seg").get_weights()
    rng = np.random.default_rng(0)
    voc.get_layer("decode_conv_seg").set_weights([rng.normal(0, 0.2, kernel.shape).astype(np.float32), bias])
    for config, weights in ((cityscapes, model), (pascal, voc)):
        path = tmp_path / f"{config.name}.tflite"
        exported = export_model("tflite", config, weights, output=path, input_size=size, graph_output="scores",
                                check_images=[image])
        assert exported.passed, "\n".join(exported.lines)
        client = segmenter(path)
        try:
            assert client.labels == list(classes_of(config))
            category, confidence = segment(client, image)
            logits = weights(image[None].astype(np.float32), training=False).numpy()[0]
            assert (category == logits.argmax(-1)).mean() >= 0.999
            np.testing.assert_allclose(confidence, softmax(logits), atol=1e-3)
        finally:
            client.close()
    # align-corners logits at the stride: MediaPipe's category mask is the model's own full-size class map
    path = tmp_path / "cityscapes_logits_at_stride.tflite"
    assert export_model("tflite", cityscapes, model, output=path, input_size=size, graph_output="logits",
                        at_stride=True, check_images=[image]).passed
    client = segmenter(path)
    try:
        category, _ = segment(client, image)
        assert (category == model(image[None], training=False).numpy()[0].argmax(-1)).mean() >= 0.999
    finally:
        client.close()
    assert list(classes_of(pascal))[:3] == ["background", "aeroplane", "bicycle"] and len(classes_of(pascal)) == 21


def test_at_stride_exports_say_what_the_client_makes_of_them(tmp_path):
    from keras_mv2seg.config import ModelConfig

    toy_config = keras_mv2seg.get_config("toy")
    config = toy_config.__class__(name="tiny_deeplab", data=toy_config.data, model=ModelConfig(
        head="deeplab", convention="deeplab", dropout=0.0, decode_channels=8, aux_channels=0, num_classes=19,
        widen_factor=0.35))
    model = keras_mv2seg.build_segmenter(config)
    image = np.random.default_rng(0).integers(0, 255, (33, 33, 3)).astype(np.float32)
    for output, noted in (("scores", True), ("logits", False)):  # align-corners logits: MediaPipe's own resize
        exported = export_model("tflite", config, model, output=tmp_path / f"{output}.tflite", input_size=(33, 33),
                                graph_output=output, at_stride=True, check_images=[image])
        assert exported.passed and ("note: MediaPipe resizes" in exported.lines[-1]) == noted, exported.lines

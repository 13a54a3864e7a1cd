"""Deployment artifacts: SavedModel (TF2 + TF1 session loader, TF Serving protos, threads) and TFLite."""

import concurrent.futures

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras_mv2seg import build_segmenter, get_config
from keras_mv2seg.config import ModelConfig
from keras_mv2seg.export import saved_model as sm
from keras_mv2seg.export import tflite as tl


def tiny(head="sepaspp", **kw):
    keras.utils.set_random_seed(0)
    defaults = dict(head=head, decode_channels=16, aux_channels=0, c1_channels=8, num_classes=5, widen_factor=0.5)
    if head == "deeplab":
        defaults.update(convention="deeplab", dropout=0.0)
    return get_config("toy").replace(name=f"tiny_{head}").__class__(
        name=f"tiny_{head}", model=ModelConfig(**{**defaults, **kw}), data=get_config("toy").data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    config = tiny()
    model = build_segmenter(config)
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    path = sm.export_saved_model(model, tmp_path_factory.mktemp("sm") / "tiny", version=3, probabilities=True,
                                 warmup_image=image)
    return model, path


def images(seed, shape):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def test_layout_and_agreement_with_keras(exported):
    model, path = exported
    assert path.name == "3" and (path / "saved_model.pb").is_file()
    assert (path / "assets.extra" / "tf_serving_warmup_requests").is_file()
    loaded = tf.saved_model.load(str(path))
    batch = images(1, (2, 37, 61, 3))
    expected = model(batch.astype(np.float32), training=False).numpy()
    outputs = loaded.signatures["serving_default"](images=tf.constant(batch))
    assert outputs["labels"].dtype == tf.int32 and outputs["labels"].shape == (2, 37, 61)
    assert (outputs["labels"].numpy() == expected.argmax(-1)).mean() >= 0.999
    np.testing.assert_allclose(outputs["probabilities"], tf.nn.softmax(expected), atol=1e-5)
    np.testing.assert_allclose(loaded.serve_logits(tf.constant(batch))["logits"], expected, atol=1e-3)


def test_tf1_session_loader_runs_the_signature(exported):
    model, path = exported
    batch = images(2, (1, 33, 47, 3))
    outputs = sm.run_in_tf1_session(path, batch)
    expected = model(batch.astype(np.float32), training=False).numpy().argmax(-1)
    assert (outputs["labels"] == expected).mean() >= 0.999 and outputs["probabilities"].shape == (1, 33, 47, 5)


def test_predict_request_and_response_round_trip(exported):
    """What tensorflow_model_server does with a PredictRequest, run against the SavedModel."""
    from tensorflow_serving.apis import model_pb2, predict_pb2

    model, path = exported
    batch = images(3, (1, 24, 30, 3))
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="tiny", signature_name="serving_default"))
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(batch))
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())  # over the wire
    signature = tf.saved_model.load(str(path)).signatures[request.model_spec.signature_name]
    outputs = signature(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    response = predict_pb2.PredictResponse(model_spec=request.model_spec)
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    response = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    labels = tf.make_ndarray(response.outputs["labels"])
    assert labels.dtype == np.int32
    assert (labels == model(batch.astype(np.float32), training=False).numpy().argmax(-1)).mean() >= 0.999


def test_warmup_file_holds_prediction_logs(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    model, path = exported
    records = list(tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests")))
    log = prediction_log_pb2.PredictionLog.FromString(records[0].numpy())
    assert log.WhichOneof("log_type") == "predict_log"
    assert log.predict_log.request.model_spec.signature_name == "serving_default"
    assert log.predict_log.request.model_spec.name == model.name
    assert tf.make_ndarray(log.predict_log.request.inputs["images"]).shape == (1, 40, 56, 3)


def test_hand_encoded_prediction_log_equals_tensorflow_serving_protos():
    """The warm-up records are written without tensorflow-serving-api; its own classes must produce the same bytes."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    arrays = {"images": images(5, (2, 300, 7, 3)), "extra": np.arange(6, dtype=np.float32).reshape(2, 3)}
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m" * 200, signature_name="sig"))
    for key, value in arrays.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    expected = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    ours = prediction_log_pb2.PredictionLog.FromString(sm.prediction_log_bytes("m" * 200, "sig", arrays))
    assert ours == expected


def test_concurrent_requests_of_mixed_sizes_and_bad_inputs(exported):
    model, path = exported
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    shapes = [(1, 17 + 3 * i, 29 + 5 * i, 3) for i in range(8)]

    def request(index):
        batch = images(10 + index, shapes[index])
        return index, batch, serve(images=tf.constant(batch))["labels"].numpy()

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(request, range(len(shapes))))
    for index, batch, labels in answers:
        expected = model(batch.astype(np.float32), training=False).numpy().argmax(-1)
        assert labels.shape == shapes[index][:3] and (labels == expected).mean() >= 0.999
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        serve(images=tf.constant(images(0, (1, 8, 8, 3)).astype(np.float32)))  # wrong dtype
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        serve(images=tf.constant(images(0, (8, 8, 3))))  # wrong rank
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?i)unknown image file format|decode"):
        loaded.signatures["serve_encoded"](image_bytes=tf.constant([b"not an image"]))
    good = tf.io.encode_png(images(5, (20, 24, 3))).numpy()
    after = loaded.signatures["serve_encoded"](image_bytes=tf.constant([good]))  # the next request works
    assert after["labels"].shape == (1, 20, 24)


def test_deeplab_pad_to_crop_export_reproduces_the_official_graph(deeplab_fixtures, tmp_path):
    import keras_mv2seg

    config = get_config("deeplab_mnv2_cityscapes")
    model = build_segmenter(config)
    keras_mv2seg.load_weights(model, deeplab_fixtures / "model.ckpt")
    path = sm.export_saved_model(model, tmp_path / "dl", pad_to_crop=(257, 513))
    batch = np.load(deeplab_fixtures / "export_input_uint8.npy")
    labels = sm.run_in_tf1_session(path, batch)["labels"]
    assert (labels == np.load(deeplab_fixtures / "export_semantic_predictions.npy")).mean() >= 0.999


@pytest.mark.parametrize("head", ["fcn", "psp", "aspp", "sepaspp", "deeplab"])
def test_tflite_float32_matches_keras_and_has_only_native_ops(head):
    config = tiny(head)
    model = build_segmenter(config)
    content = tl.convert(config, model, (64, 96), output="logits")
    names = tl.op_names(content)
    assert tl.check_ops(names) == [] and "DEPTHWISE_CONV_2D" in names
    image = images(4, (64, 96, 3)).astype(np.float32)
    expected = model(image[None], training=False).numpy()[0]
    result = tl.run(content, image)
    assert np.abs(result - expected).max() <= 1e-3
    assert (result.argmax(-1) == expected.argmax(-1)).mean() >= 0.999


def test_op_check_flags_flex_and_space_to_batch():
    assert tl.check_ops(["CONV_2D", "DEPTHWISE_CONV_2D"]) == []
    problems = tl.check_ops(["SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "FlexConv2D"])
    assert len(problems) == 3 and "Flex op FlexConv2D" in problems


def test_tflite_int8_and_label_output():
    config = tiny("fcn")
    model = build_segmenter(config)
    calibration = [images(i, (48, 48, 3)).astype(np.float32) for i in range(4)]
    content = tl.convert(config, model, (48, 48), quantization="int8", output="labels",
                         representative_images=calibration)
    assert "QUANTIZE" in tl.op_names(content) and tl.check_ops(tl.op_names(content)) == []
    labels = tl.run(content, calibration[0])
    assert labels.shape == (48, 48) and labels.dtype == np.int32
    with pytest.raises(ValueError, match="needs representative_images"):
        tl.convert(config, model, (48, 48), quantization="int8")


@pytest.mark.parametrize("quantization", ["float16", "dynamic"])
def test_tflite_float16_and_dynamic_range(quantization):
    config = tiny("fcn")
    model = build_segmenter(config)
    content = tl.convert(config, model, (48, 64), quantization=quantization, output="logits")
    assert tl.check_ops(tl.op_names(content)) == []
    image = images(6, (48, 64, 3)).astype(np.float32)
    expected = model(image[None], training=False).numpy()[0]
    result = tl.run(content, image)
    assert result.shape == expected.shape and (result.argmax(-1) == expected.argmax(-1)).mean() >= 0.95
    assert len(content) < len(tl.convert(config, model, (48, 64), output="logits"))  # smaller weights

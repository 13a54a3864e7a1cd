"""SavedModel for TensorFlow Serving: preprocessing inside, uint8 and encoded-image signatures.

Written with ``keras.export.ExportArchive`` (a ``tf.Module`` wrapping a Keras 3 model loads in TF2 but not in
the TF1 session loader that ``tensorflow_model_server`` uses). Layout: ``<base>/<version>/`` with
``assets.extra/tf_serving_warmup_requests`` (TF Serving's warm-up format, written without tensorflow-serving-api:
see :func:`prediction_log_bytes`). Endpoints:

* ``serving_default``: ``images`` uint8 [B, H, W, 3] (any size) -> ``labels`` int32 [B, H, W]
  (+ ``probabilities`` float32 [B, H, W, C] with ``probabilities=True``);
* ``serve_encoded``: ``image_bytes`` string [B] (PNG/JPEG/BMP/GIF of one size) -> the same outputs;
* ``serve_logits``: ``images`` uint8 -> ``logits`` float32 [B, H, W, C] (checks, custom post-processing);
* ``class_names``: no input -> ``class_names`` string [C], the name of each class id (also, one per line, in
  ``assets.extra/labels.txt``).

With ``pad_to_crop=(h, w)`` (official DeepLab configs) images are padded to the crop size as the official
exported graph does (larger images are scaled to fit, see ``keras_mv2seg.inference.pad_to_crop_logits``).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_mv2seg.files import atomic_save
from keras_mv2seg.inference import pad_to_crop_logits

SERVING_TAG = "serve"


def checked_images(images):
    """Validate a request inside the graph: a wrong rank, channel count or an empty image must fail with an
    InvalidArgumentError naming the shape (the signature's declared shape is not enforced on every call
    path, and an unchecked rank-3 tensor can abort the process in later kernels)."""
    images = tf.ensure_shape(images, [None, None, None, 3])
    non_empty = tf.debugging.assert_positive(tf.shape(images)[:3], message="images must have a non-empty batch, "
                                             "height and width; received shape")
    with tf.control_dependencies([non_empty]):
        return tf.identity(images)


def _logits_fn(model, pad_to_crop):
    if pad_to_crop:
        return lambda images: pad_to_crop_logits(model, checked_images(images), pad_to_crop)
    return lambda images: model(tf.cast(checked_images(images), tf.float32), training=False)


def _outputs(logits, probabilities: bool):
    result = {"labels": tf.argmax(logits, axis=-1, output_type=tf.int32)}
    if probabilities:
        result["probabilities"] = tf.nn.softmax(logits, axis=-1)
    return result


def labels_text(class_names) -> str:
    """One class name per line, line ``i`` naming class id ``i`` (the TFLite/MediaPipe labels-file form)."""
    return "".join(f"{name}\n" for name in class_names)


def decode_images(image_bytes):
    """Decode a batch of encoded images of one size to uint8 [B, H, W, 3]; undecodable bytes raise
    InvalidArgumentError naming the problem, images of different sizes cannot be stacked (also an error)."""
    return tf.map_fn(lambda data: tf.ensure_shape(tf.io.decode_image(data, channels=3, expand_animations=False),
                                                  [None, None, 3]),
                     image_bytes, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


def export_saved_model(model: keras.Model, base_dir, *, version: int = 1, probabilities: bool = False,
                       pad_to_crop=None, warmup_image: np.ndarray | None = None, overwrite: bool = False,
                       check=None, class_names=()) -> Path | None:
    """Write ``model`` (an inference model) to ``<base_dir>/<version>``; returns that path. The version folder
    is written under a staging name (not a number, so TF Serving never loads it), ``check(staged folder)``
    verifies it there, and only then is it renamed to its version: None (nothing written) when the check
    refused it."""
    target = Path(base_dir) / str(int(version))
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; choose another version or pass overwrite=True")
    logits_fn = _logits_fn(model, pad_to_crop)
    archive = keras.export.ExportArchive()
    archive.track(model)
    images_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    archive.add_endpoint("serving_default", lambda images: _outputs(logits_fn(images), probabilities),
                         input_signature=[images_spec])
    archive.add_endpoint("serve_encoded",
                         lambda image_bytes: _outputs(logits_fn(decode_images(image_bytes)), probabilities),
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint("serve_logits", lambda images: {"logits": logits_fn(images)},
                         input_signature=[images_spec])
    if class_names:
        names = [str(name) for name in class_names]
        archive.add_endpoint("class_names", lambda: {"class_names": tf.constant(names)}, input_signature=[])

    def save(tmp):
        archive.write_out(str(tmp), verbose=False)
        if warmup_image is not None:
            write_warmup_requests(tmp, model.name, warmup_image)
        if class_names:
            (Path(tmp) / "assets.extra").mkdir(exist_ok=True)
            (Path(tmp) / "assets.extra" / "labels.txt").write_text(labels_text(class_names))

    return atomic_save(target, save, check)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2): a string, bytes or an embedded message."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log_bytes(model_name: str, signature_name: str, inputs: dict) -> bytes:
    """A serialized ``tensorflow.serving.PredictionLog`` holding one ``PredictRequest``.

    Encoded here rather than with tensorflow-serving-api, whose wheel depends on the full ``tensorflow`` package
    and would replace ``tensorflow-cpu`` in the environment the main job installs. The message is four nested
    fields of TF Serving's stable protos (``prediction_log.proto``: ``PredictionLog.predict_log = 6``,
    ``PredictLog.request = 1``; ``predict.proto``: ``PredictRequest.model_spec = 1``, ``inputs = 2`` (a map:
    entries of key = 1, value = 2); ``model.proto``: ``ModelSpec.name = 1``, ``signature_name = 3``), and the
    tensors are TensorFlow's own ``TensorProto``s. ``tests/test_export.py`` parses the result with
    tensorflow-serving-api's classes.
    """
    spec = _field(1, model_name.encode()) + _field(3, signature_name.encode())
    request = _field(1, spec)
    for key, value in inputs.items():
        tensor = tf.make_tensor_proto(value).SerializeToString()
        request += _field(2, _field(1, key.encode()) + _field(2, tensor))
    return _field(6, _field(1, request))


def write_warmup_requests(export_dir, model_name: str, image: np.ndarray, repeats: int = 1):
    """``assets.extra/tf_serving_warmup_requests``: PredictionLog records of a serving_default request."""
    path = Path(export_dir) / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = prediction_log_bytes(model_name, "serving_default", {"images": np.asarray(image, np.uint8)[None]})
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(repeats):
            writer.write(record)
    return path


def run_in_tf1_session(export_dir, images: np.ndarray, signature: str = "serving_default") -> dict:
    """Load with the TF1 session loader (what tensorflow_model_server uses) and run one signature."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, [SERVING_TAG], str(export_dir))
        definition = meta.signature_def[signature]
        feeds = {graph.get_tensor_by_name(info.name): images for info in definition.inputs.values()}
        fetches = {key: graph.get_tensor_by_name(info.name) for key, info in definition.outputs.items()}
        return session.run(fetches, feed_dict=feeds)

"""TFLite export: fixed input size, float32 / float16 / dynamic-range / full-integer int8, native dilations, and
the metadata MediaPipe's ImageSegmenter and the TFLite Task Library read.

The model is rebuilt at the export size with ``depthwise_implementation="native"`` (same weights), so dilated
depthwise convolutions become single DEPTHWISE_CONV_2D ops with dilation factors instead of
SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND pairs (:mod:`keras_mv2seg.export.graph`).

* Input: RGB 0..255 [1, H, W, 3], float32 or (``input_type="uint8"``) uint8, normalisation inside.
* Output: ``labels`` (int32 class map [1, H, W]), ``logits`` or ``scores`` (softmax probabilities) [1, H, W, C];
  ``at_stride=True``: logits or scores at the network's output stride, for clients that resize the scores
  themselves (MediaPipe does). int8 ``scores`` are uint8 (scale 1/256, zero point 0), as Model Garden's
  ``int8_full_int8_io``.
* Metadata on every file (:mod:`keras_mv2seg.export.tflite_metadata`): the config's class names as the output's
  labels file, the input as an RGB image (mean 0 / std 1 for float input), and for score outputs the activation
  MediaPipe applies (``SOFTMAX`` for logits, ``NONE`` for scores).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_mv2seg.datasets_meta import classes_of
from keras_mv2seg.export import tflite_metadata
from keras_mv2seg.export.graph import check_calibration, check_output, native_model, serve, stride_model
from keras_mv2seg.export.saved_model import labels_text
from keras_mv2seg.files import atomic_save, refuse_existing
from keras_mv2seg.machine import usable_threads
from keras_mv2seg.models.layers import native_depthwise_for_export
from keras_mv2seg.version import __version__

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
INPUT_TYPES = ("float32", "uint8")
FORBIDDEN_OPS = ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND")
ACTIVATION_OF_OUTPUT = {"logits": "softmax", "scores": "none", "labels": None}


def check_graph(output: str = "labels", input_type: str = "float32", at_stride: bool = False):
    """ValueError for a graph :func:`convert` cannot make, naming the parameter."""
    check_output(output)
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {INPUT_TYPES}, received {input_type!r}")
    if at_stride and output == "labels":
        raise ValueError("at_stride applies to the logits and scores outputs (a client resizes scores, not a "
                         "class map): pass output='scores' or 'logits'")


def convert(config, model, input_size, *, quantization: str = "float32", output: str = "labels",
            representative_images=None, input_type: str = "float32", at_stride: bool = False,
            author: str = "", license: str = "") -> bytes:  # noqa: A002 - the metadata field's name
    """TFLite flatbuffer of ``model`` at ``input_size`` (H, W), with its metadata (``author`` and ``license``
    are the user's to fill in)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, received {quantization!r}")
    check_graph(output, input_type, at_stride)
    check_calibration(quantization, representative_images, "representative_images")
    native = native_model(config, model, input_size)
    network = stride_model(native) if at_stride else native
    dtype = tf.uint8 if input_type == "uint8" else tf.float32

    # Through a SavedModel written by ExportArchive: converting a concrete function directly keeps Keras 3
    # variables as resource variables (READ_VARIABLE ops that are never initialised in the interpreter).
    # The graph is traced with the native op even where this TensorFlow cannot run it: LiteRT runs it.
    with native_depthwise_for_export(), tempfile.TemporaryDirectory() as folder:
        archive = keras.export.ExportArchive()
        archive.track(network)
        archive.add_endpoint("serving_default", lambda images: {output: serve(network, images, output)},
                             input_signature=[tf.TensorSpec([1, *input_size, 3], dtype, name="images")])
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        content = _convert(converter, quantization, representative_images, dtype, output)
    metadata = segmenter_metadata(config, input_size, quantization, output, input_type, at_stride, author, license)
    return tflite_metadata.attach(content, tflite_metadata.segmenter_metadata(metadata),
                                  {tflite_metadata.LABELS_FILE: labels_file(config)})


def labels_file(config) -> bytes:
    """The associated labels file: the config's class names, one per line (line = class id)."""
    return labels_text(classes_of(config)).encode()


def segmenter_metadata(config, input_size, quantization, output, input_type, at_stride, author="",
                       license="") -> tflite_metadata.SegmenterMetadata:  # noqa: A002
    """What the metadata of an export says (:func:`convert`)."""
    height, width = input_size
    classes = len(classes_of(config))
    normalised = {} if input_type == "uint8" else {"mean": (0.0,), "std": (1.0,)}
    image = tflite_metadata.TensorInfo(
        "images", f"RGB image, {input_type} 0..255 [1, {height}, {width}, 3]; the model normalises it itself",
        image=True, size=(height, width), **normalised)
    where = "at the output stride (the client resizes them)" if at_stride else f"at {height}x{width}"
    description = {"labels": f"class map, int32 class ids [1, {height}, {width}]",
                   "logits": f"per-class logits ({classes} classes) {where}",
                   "scores": f"per-class softmax probabilities ({classes} classes) {where}"
                             + (", uint8 (scale 1/256)" if quantization == "int8" else "")}[output]
    kind = "tensor_value_labels" if output == "labels" else "tensor_axis_labels"
    scores = tflite_metadata.TensorInfo(output, description, files=[(tflite_metadata.LABELS_FILE, kind)])
    head = config.model.head
    return tflite_metadata.SegmenterMetadata(
        name=config.name, version=__version__, author=author, license=license,
        description=(f"MobileNetV2 {head} semantic segmentation ({classes} classes of {config.data.dataset}), "
                     f"{quantization}, keras_mv2seg {__version__}"),
        input=image, output=scores, activation=ACTIVATION_OF_OUTPUT[output])


def _convert(converter, quantization, representative_images, dtype=tf.float32, output="labels") -> bytes:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex (select TF) ops
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        images = [_as_input(np.asarray(image, np.float32)[None], dtype.as_numpy_dtype)
                  for image in representative_images]
        converter.representative_dataset = lambda: ([image] for image in images)
        if output == "scores":  # uint8 probabilities (scale 1/256, zero point 0), as the clients read them
            converter.inference_output_type = tf.uint8
    return converter.convert()


def interpreter(model_content: bytes, delegates: bool = True, num_threads: int | None = None):
    """The LiteRT interpreter (``ai-edge-litert``, the supported successor of ``tf.lite.Interpreter``), with
    its default XNNPACK delegate unless ``delegates=False``, on all CPU cores unless ``num_threads``."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runner = Interpreter(model_content=model_content, experimental_op_resolver_type=resolver,
                         num_threads=num_threads or usable_threads())
    runner.allocate_tensors()
    return runner


def _as_input(batch, dtype):
    """An image batch as an export's input type: uint8 input takes the 0..255 values rounded."""
    if np.dtype(dtype) == np.uint8:
        return np.clip(np.round(batch), 0, 255).astype(np.uint8)
    return np.asarray(batch, np.float32)


def dequantized(values, detail) -> np.ndarray:
    """An output tensor's real values: quantized (uint8/int8) outputs through their scale and zero point."""
    scale, zero_point = detail["quantization"]
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - zero_point) * scale
    return values


def runner(model_content: bytes, num_threads: int | None = None):
    """``step(batch float32 [1, H, W, 3] 0..255) -> output`` of a converted model (one interpreter, reused);
    uint8-input models get the batch rounded, quantized score outputs come back as their real values."""
    model = interpreter(model_content, num_threads=num_threads)
    source, target = model.get_input_details()[0], model.get_output_details()[0]

    def step(batch):
        model.set_tensor(source["index"], _as_input(batch, source["dtype"]))
        model.invoke()
        return dequantized(model.get_tensor(target["index"]), target)

    return step


def run(model_content: bytes, image: np.ndarray) -> np.ndarray:
    """Run one float32 image [H, W, 3] (0..255) through a converted model; returns its single output."""
    return runner(model_content)(np.asarray(image, np.float32)[None])[0]


def op_names(model_content: bytes) -> list[str]:
    """Builtin/custom operator names used by a TFLite model, sorted and unique."""
    runner = interpreter(model_content, delegates=False)  # a delegate would hide the ops it takes over
    return sorted({detail["op_name"] for detail in runner._get_ops_details()})  # noqa: SLF001


def check_ops(names) -> list[str]:
    """Problems with an op list: Flex (select TF) ops and SpaceToBatch/BatchToSpace lowering."""
    problems = [f"Flex op {name}" for name in names if name.startswith("Flex")]
    problems += [f"{name} (dilations lowered instead of native)" for name in names if name in FORBIDDEN_OPS]
    return problems


def write(path, content: bytes, *, overwrite: bool = False, check=None) -> Path | None:
    """Write ``content`` to ``path`` atomically, after ``check(staged file)`` passes (None: refused, nothing
    written at ``path``)."""
    refuse_existing(path, overwrite)
    return atomic_save(path, lambda staged: Path(staged).write_bytes(content), check)

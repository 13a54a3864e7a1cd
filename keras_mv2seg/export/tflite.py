"""TFLite export: fixed input size, float32 / float16 / dynamic-range / full-integer int8, native dilations.

The model is rebuilt at the export size with ``depthwise_implementation="native"`` (same weights), so dilated
depthwise convolutions become single DEPTHWISE_CONV_2D ops with dilation factors instead of
SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND pairs (:mod:`keras_mv2seg.export.graph`). Input: float32 RGB 0..255
[1, H, W, 3] (normalisation inside); output: ``labels`` (int32 class map) or ``logits``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_mv2seg.export.graph import check_calibration, check_output, native_model, serve
from keras_mv2seg.files import atomic_save, refuse_existing
from keras_mv2seg.machine import usable_threads
from keras_mv2seg.models.layers import native_depthwise_for_export

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
FORBIDDEN_OPS = ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND")


def convert(config, model, input_size, *, quantization: str = "float32", output: str = "labels",
            representative_images=None) -> bytes:
    """TFLite flatbuffer of ``model`` at ``input_size`` (H, W)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, received {quantization!r}")
    check_output(output)
    check_calibration(quantization, representative_images, "representative_images")
    native = native_model(config, model, input_size)

    # Through a SavedModel written by ExportArchive: converting a concrete function directly keeps Keras 3
    # variables as resource variables (READ_VARIABLE ops that are never initialised in the interpreter).
    # The graph is traced with the native op even where this TensorFlow cannot run it: LiteRT runs it.
    with native_depthwise_for_export(), tempfile.TemporaryDirectory() as folder:
        archive = keras.export.ExportArchive()
        archive.track(native)
        archive.add_endpoint("serving_default", lambda images: {output: serve(native, images, output)},
                             input_signature=[tf.TensorSpec([1, *input_size, 3], tf.float32, name="images")])
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        return _convert(converter, quantization, representative_images)


def _convert(converter, quantization, representative_images) -> bytes:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex (select TF) ops
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        images = [np.asarray(image, np.float32)[None] for image in representative_images]
        converter.representative_dataset = lambda: ([image] for image in images)
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


def runner(model_content: bytes, num_threads: int | None = None):
    """``step(batch float32 [1, H, W, 3]) -> output`` of a converted model (one interpreter, reused)."""
    model = interpreter(model_content, num_threads=num_threads)
    input_index = model.get_input_details()[0]["index"]
    output_index = model.get_output_details()[0]["index"]

    def step(batch):
        model.set_tensor(input_index, np.asarray(batch, np.float32))
        model.invoke()
        return model.get_tensor(output_index)

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

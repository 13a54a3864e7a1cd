"""Every deployment backend behind one interface: ``deploy(backend, config, model, size)`` -> a step that maps
an image batch to the int32 class map, as the runtime runs it (used by tools/benchmark.py and the benchmarks).

Backends and precisions (:data:`BACKENDS`): ``keras`` (optionally XLA), ``saved_model``, ``tflite`` (float32,
float16, dynamic-range, int8), ``onnxruntime`` (float32, int8), ``openvino`` (float32, bf16, int8). int8 needs
calibration images (:func:`keras_mv2seg.export.graph.calibration_images`); Winograd convolutions apply where
:func:`keras_mv2seg.export.graph.winograd_applies` says.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mv2seg.export import tflite
from keras_mv2seg.export.graph import check_calibration, check_winograd
from keras_mv2seg.export.onnx import onnx_runner, quantize_onnx, to_onnx
from keras_mv2seg.export.openvino import openvino_runner, openvino_size, quantize_openvino, save_openvino, to_openvino
from keras_mv2seg.export.saved_model import export_saved_model

PRECISIONS = {"onnxruntime": ("float32", "int8"), "openvino": ("float32", "bf16", "int8")}
BACKENDS = {"keras": ("float32",), "saved_model": ("float32",), "tflite": tflite.QUANTIZATIONS, **PRECISIONS}


class Deployed:
    """A model prepared for one backend and precision: ``step(batch float32 [1, H, W, 3] 0..255)`` returns the
    int32 class map [1, H, W] as NumPy (the copy to the host included); ``size_bytes``: the model file."""
    def __init__(self, step, size_bytes: int | None):
        self.step, self.size_bytes = step, size_bytes

    def __call__(self, batch):
        return self.step(batch)


def check_backend(backend: str, precision: str):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {tuple(BACKENDS)}, received {backend!r}")
    if precision not in BACKENDS[backend]:
        raise ValueError(f"backend {backend} supports precisions {BACKENDS[backend]}, received {precision!r}")


def deploy(backend: str, config, model, input_size, *, precision: str = "float32", calibration_images=None,
           xla: bool = False, num_threads: int | None = None, winograd: int = 0) -> Deployed:
    """Convert ``model`` (an inference model of ``config``) for ``backend`` at ``input_size`` (H, W);
    ``winograd`` 2 or 4: the float32 ONNX Runtime / OpenVINO graph computes the dense 3x3 stride-1
    convolutions by Winograd F(m x m, 3 x 3)."""
    check_backend(backend, precision)
    check_winograd(winograd, backend, precision)
    check_calibration(precision, calibration_images)
    if backend == "keras":
        predict = tf.function(lambda x: tf.argmax(model(x, training=False), -1, output_type=tf.int32),
                              jit_compile=xla)
        return Deployed(lambda batch: predict(tf.constant(batch)).numpy(), None)
    if backend == "saved_model":
        with tempfile.TemporaryDirectory(prefix="keras_mv2seg_sm_") as folder:
            path = export_saved_model(model, folder)
            serve = tf.saved_model.load(str(path)).signatures["serving_default"]
            size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
        return Deployed(lambda batch: serve(images=tf.constant(np.round(batch).astype(np.uint8)))["labels"].numpy(),
                        size)
    if backend == "tflite":
        content = tflite.convert(config, model, input_size, quantization=precision, output="labels",
                                 representative_images=calibration_images)
        return Deployed(tflite.runner(content, num_threads), len(content))
    if backend == "onnxruntime":
        content = to_onnx(config, model, input_size, winograd=winograd)
        if precision == "int8":
            content = quantize_onnx(content, calibration_images)
        return Deployed(onnx_runner(content, num_threads), len(content))
    ov_model = to_openvino(config, model, input_size, winograd=winograd)
    if precision == "int8":
        ov_model = quantize_openvino(ov_model, calibration_images)
    with tempfile.TemporaryDirectory() as folder:
        path = save_openvino(ov_model, Path(folder) / "model.xml")
        run = openvino_runner(path, precision, num_threads)
        size = openvino_size(path)
    return Deployed(run, size)

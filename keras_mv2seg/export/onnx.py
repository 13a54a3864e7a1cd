"""ONNX (for ONNX Runtime): float32 and static-QDQ int8 exports of the fixed-size graph, their runner.

ONNX is written by tf2onnx (Keras' own ``export(format="onnx")`` calls the same converter for the TensorFlow
backend and adds nothing for a fixed-size graph). ``dynamic=True`` gives a dynamic height/width (slower).
int8: static QDQ quantization (``quantize_static``), per-channel int8 weights, uint8 activations, after ORT's
pre-processing; Resize and ArgMax are quantized too, so the full-resolution tail stays in 8 bits.
Optional extra: ``pip install -e '.[onnx]'``.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from keras_mv2seg.export.graph import check_calibration, export_function, require
from keras_mv2seg.files import atomic_save, refuse_existing
from keras_mv2seg.models.layers import native_depthwise_for_export
from keras_mv2seg.machine import usable_threads

ONNX_OPSET = 17


def to_onnx(config, model, input_size, *, output: str = "labels", dynamic: bool = False, winograd: int = 0) -> bytes:
    """ONNX model bytes (opset 17) of the export graph."""
    tf2onnx = require("tf2onnx", "onnx")
    function, signature = export_function(config, model, input_size, output=output, dynamic=dynamic,
                                          winograd=winograd)
    with native_depthwise_for_export():
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=ONNX_OPSET,
                                                 output_path=None)
    if dynamic:
        explicit_same_padding(proto)
    return proto.SerializeToString()


def explicit_same_padding(proto):
    """Rewrite stride-1 ``Conv`` nodes with ``auto_pad=SAME_*`` (what tf2onnx emits when the size is unknown) to
    explicit pads: ONNX Runtime refuses dilation with SAME auto-padding. For stride 1 'same' pads
    ``dilation * (kernel - 1)`` in total, the extra pixel (even kernels) after (SAME_UPPER) or before."""
    from onnx import helper

    weights = {tensor.name: tuple(tensor.dims) for tensor in proto.graph.initializer}
    for node in proto.graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attributes.get("auto_pad", b"NOTSET")
        if node.op_type != "Conv" or mode not in (b"SAME_UPPER", b"SAME_LOWER"):
            continue
        kernel = attributes.get("kernel_shape") or weights.get(node.input[1], ())[2:]
        strides = attributes.get("strides") or [1] * len(kernel)
        if not kernel or any(s != 1 for s in strides):
            continue
        dilations = attributes.get("dilations") or [1] * len(kernel)
        totals = [d * (k - 1) for d, k in zip(dilations, kernel)]
        small = [t // 2 for t in totals]
        large = [t - t // 2 for t in totals]
        begin, end = (small, large) if mode == b"SAME_UPPER" else (large, small)
        kept = [a for a in node.attribute if a.name != "auto_pad"]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute("pads", begin + end)])
    return proto


class ImageReader:
    """ONNX Runtime calibration reader over float32 images [H, W, 3]."""
    def __init__(self, input_name: str, images):
        self._items = iter([{input_name: np.asarray(image, np.float32)[None]} for image in images])

    def get_next(self):
        return next(self._items, None)


def quantize_onnx(content: bytes, calibration_images) -> bytes:
    """Static QDQ int8 quantization of ONNX bytes: per-channel symmetric int8 weights, uint8 activations
    calibrated (min/max) on ``calibration_images``."""
    onnx = require("onnx", "onnx")
    require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = list(calibration_images or [])
    check_calibration("int8", images)
    with tempfile.TemporaryDirectory() as folder:
        source, prepared, quantized = (Path(folder) / name for name in ("m.onnx", "m_pre.onnx", "m_int8.onnx"))
        source.write_bytes(content)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        input_name = onnx.load(str(prepared)).graph.input[0].name
        quantize_static(str(prepared), str(quantized), ImageReader(input_name, images), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        proto = onnx.load(str(quantized))
    return argmax_on_quantized(proto).SerializeToString()


def argmax_on_quantized(proto):
    """Let ``ArgMax`` read the uint8 tensor instead of its ``DequantizeLinear`` output: dequantization with one
    positive scale is strictly increasing, so the argmax (ties included) is the same, and the full-resolution
    float copy of the logits disappears."""
    producers = {output: node for node in proto.graph.node for output in node.output}
    scalars = {tensor.name for tensor in proto.graph.initializer if len(tensor.dims) == 0}
    for node in proto.graph.node:
        source = producers.get(node.input[0]) if node.op_type == "ArgMax" else None
        if source is not None and source.op_type == "DequantizeLinear" and source.input[1] in scalars:
            node.input[0] = source.input[0]
    return proto


def onnx_ops(content: bytes) -> Counter:
    onnx = require("onnx", "onnx")
    return Counter(node.op_type for node in onnx.load_from_string(content).graph.node)


def onnx_session_options(ort, num_threads: int | None = None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or usable_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def onnx_runner(content_or_path, num_threads: int | None = None):
    """``step(batch float32 [1, H, W, 3]) -> output`` of an ONNX model (bytes or a file), one session reused."""
    ort = require("onnxruntime", "onnx")
    options = onnx_session_options(ort, num_threads)
    source = content_or_path if isinstance(content_or_path, bytes) else str(content_or_path)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda image: session.run(None, {input_name: image})[0]


def write_onnx(path, content: bytes, *, overwrite: bool = False, check=None) -> Path | None:
    """Write ``content`` to ``path`` (``.onnx``) atomically, after ``check(staged file)`` passes (see
    :func:`keras_mv2seg.files.atomic_save`); None when the check refused it (nothing at ``path``)."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"ONNX models are written as .onnx, received {path}")
    refuse_existing(path, overwrite)
    return atomic_save(path, lambda staged: Path(staged).write_bytes(content), check)

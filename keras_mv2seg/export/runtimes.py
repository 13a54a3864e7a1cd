"""CPU server runtimes: ONNX Runtime and OpenVINO exports, float32 and int8, and one runner interface for every
deployment backend (used by tools/export.py, tools/benchmark.py and the benchmarks).

Both exports start from the same graph as the TFLite export: the model rebuilt at a fixed input size with
native dilated depthwise convolutions (one grouped, dilated Conv per layer instead of SpaceToBatch pairs), input
``images`` float32 RGB 0..255 [1, H, W, 3] (normalisation inside), output ``labels`` (int32 class map, the
argmax inside the graph) or ``logits``. ONNX is written by tf2onnx (Keras' own ``export(format="onnx")`` calls
the same converter for the TensorFlow backend and adds nothing for a fixed-size graph); OpenVINO by
``openvino.convert_model`` from the traced function. A fixed size is used for both: OpenVINO compiles static
shapes to its fastest kernels and ONNX Runtime plans memory once; ``dynamic=True`` gives ONNX a dynamic
height/width for users who need it (slower, see the README).

int8 (post-training, calibrated on real images of the config's dataset, never noise):

* ONNX Runtime: static QDQ quantization (``quantize_static``), per-channel int8 weights, uint8 activations,
  after ORT's pre-processing (shape inference, graph optimisation); Resize and ArgMax are quantized too, so
  the full-resolution tail stays in 8 bits instead of a float island.
* OpenVINO: NNCF post-training quantization (per-channel symmetric int8 weights, the ``performance`` preset,
  full bias correction; Concat and MatMul kept in float, see :func:`quantize_openvino`); its CPU plugin runs the
  convolutions, the resize and the argmax in int8 where the graph allows.

Runtime packages are optional extras: ``pip install -e '.[onnx]'`` / ``'.[openvino]'``.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mv2seg.export import tflite
from keras_mv2seg.export.saved_model import export_saved_model
from keras_mv2seg.export.tflite import native_model
from keras_mv2seg.files import atomic_save, atomic_write, refuse_existing
from keras_mv2seg.models.layers import native_depthwise_for_export
from keras_mv2seg.models.segmenter import build_segmenter

RUNTIMES = ("onnxruntime", "openvino")
RUNTIMES_BY_FORMAT = {"onnx": "onnxruntime", "openvino": "openvino"}
PRECISIONS = {"onnxruntime": ("float32", "int8"), "openvino": ("float32", "bf16", "int8")}
ONNX_OPSET = 17


def _require(module: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed: pip install -e '.[{extra}]'") from None


def winograd_applies(backend: str, precision: str, dynamic: bool = False) -> bool:
    """Whether Winograd convolutions are offered: fixed-size float32 ONNX Runtime / OpenVINO graphs (quantizers
    and reduced precisions expect direct convolutions; the tiling needs a static size)."""
    return backend in RUNTIMES and precision == "float32" and not dynamic


def winograd_tile(choice, backend: str, precision: str, dynamic: bool = False) -> int:
    """The Winograd output tile for a ``--winograd`` choice: ``"auto"`` -> 4 where it applies
    (:func:`winograd_applies`), else 0; 0, 2 or 4 as given, ValueError where 2 or 4 cannot apply."""
    applies = winograd_applies(backend, precision, dynamic)
    if choice == "auto":
        return 4 if applies else 0
    tile = int(choice)
    if tile and not applies:
        raise ValueError(f"Winograd convolutions apply to fixed-size float32 ONNX Runtime / OpenVINO graphs, not "
                         f"{backend} {precision}{' dynamic' if dynamic else ''} (pass 0 or auto)")
    return tile


def labels_function(config, model, input_size, *, output: str = "labels", dynamic: bool = False,
                    winograd: int = 0):
    """(tf.function, input signature) of the export graph at ``input_size`` (H, W); ``dynamic``: any size;
    ``winograd`` 2 or 4: the dense 3x3 stride-1 convolutions by Winograd F(m x m, 3 x 3) (fixed size only)."""
    if output not in ("labels", "logits"):
        raise ValueError(f"output must be 'labels' or 'logits', received {output!r}")
    if dynamic and winograd:
        raise ValueError("Winograd convolutions need a fixed input size: pass winograd=0 with dynamic=True")
    shape = (None, None) if dynamic else tuple(int(v) for v in input_size)
    if dynamic:
        native = build_segmenter(config.replace(depthwise_implementation="native"), batch_size=1)
        native.set_weights(model.get_weights())
    else:
        native = native_model(config, model, shape, winograd)

    def serve(images):
        logits = native(images, training=False)
        if output == "labels":
            return tf.argmax(logits, axis=-1, output_type=tf.int32, name="labels")
        return tf.identity(logits, name="logits")

    signature = [tf.TensorSpec([1, *shape, 3], tf.float32, name="images")]
    return tf.function(serve, input_signature=signature), signature


# --- ONNX ------------------------------------------------------------------------------------------------------

def to_onnx(config, model, input_size, *, output: str = "labels", dynamic: bool = False, winograd: int = 0) -> bytes:
    """ONNX model bytes (opset 17) of the export graph."""
    tf2onnx = _require("tf2onnx", "onnx")
    function, signature = labels_function(config, model, input_size, output=output, dynamic=dynamic,
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
    onnx = _require("onnx", "onnx")
    _require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = list(calibration_images or [])
    if not images:
        raise ValueError("int8 quantization needs calibration images (real images of the config's dataset)")
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
    onnx = _require("onnx", "onnx")
    return Counter(node.op_type for node in onnx.load_from_string(content).graph.node)


# --- OpenVINO --------------------------------------------------------------------------------------------------

def to_openvino(config, model, input_size, *, output: str = "labels", winograd: int = 0):
    """``openvino.Model`` of the export graph (weights kept in float32)."""
    ov = _require("openvino", "openvino")
    function, signature = labels_function(config, model, input_size, output=output, winograd=winograd)
    with native_depthwise_for_export():
        concrete = function.get_concrete_function(*signature)
    converted = ov.convert_model(concrete)
    converted.outputs[0].get_tensor().set_names({output})
    return converted


def quantize_openvino(ov_model, calibration_images, preset: str = "performance"):
    """NNCF post-training int8 quantization of an ``openvino.Model`` (``performance`` preset: symmetric
    activations and per-channel symmetric weights; ``mixed``: asymmetric activations), calibrated on
    ``calibration_images``."""
    nncf = _require("nncf", "openvino")
    images = [np.asarray(image, np.float32)[None] for image in calibration_images or []]
    if not images:
        raise ValueError("int8 quantization needs calibration images (real images of the config's dataset)")
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    # Kept in float, by type (the converted graph does not keep the layer names):
    # * Concat: DeepLabV3+'s decoder concatenates the upsampled ASPP output with the projected low-level features,
    #   whose ranges differ widely, and one shared int8 scale crushed the low-level branch (82 % agreement,
    #   -17 mIoU on the toy model);
    # * MatMul: the only ones are PSPNet's adaptive pooling (pooling matrices, a negligible cost); quantized, the
    #   CPU plugin of OpenVINO 2026.4 cannot compile them with either preset at some sizes (the toy size: check
    #   'any_of(scale.size(), OC, 1U)', dnnl_postops_composer.cpp:526), so no compile-and-retry is needed.
    keep_float = nncf.IgnoredScope(types=["Concat", "MatMul"], validate=False)
    # Full bias correction (NNCF's BiasCorrection instead of FastBiasCorrection): slower to quantize (about 1.5x)
    # but measured better on DeepLabV3+ (toy val: -0.25 -> +0.13 mIoU, 98.94 -> 99.08 % agreement).
    return nncf.quantize(ov_model, nncf.Dataset(images), subset_size=len(images), preset=presets[preset],
                         ignored_scope=keep_float, fast_bias_correction=False)


def save_openvino(ov_model, path, overwrite: bool = False) -> Path:
    """Write ``path`` (``.xml``) and its ``.bin`` beside it, float32 weights kept (no fp16 compression)."""
    ov = _require("openvino", "openvino")
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"OpenVINO models are written as .xml (+ .bin), received {path}")
    refuse_existing(path, overwrite, how="overwrite=True (--overwrite)")

    with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as folder:
        staged = Path(folder) / path.name
        ov.save_model(ov_model, str(staged), compress_to_fp16=False)
        atomic_save(path.with_suffix(".bin"), lambda tmp: os.replace(staged.with_suffix(".bin"), tmp))
        atomic_save(path, lambda tmp: os.replace(staged, tmp))
    return path


def openvino_ops(ov_model) -> Counter:
    return Counter(op.get_type_name() for op in ov_model.get_ordered_ops())


def openvino_runtime_precisions(compiled) -> Counter:
    """(layer type, runtime precision) counts of a compiled model: where int8 runs and where float islands are."""
    counts = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        counts[(layer, precision)] += 1
    return counts


# --- runners: image float32 [1, H, W, 3] -> NumPy output -------------------------------------------------------

def threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def onnx_session_options(ort, num_threads: int | None = None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def onnx_runner(content_or_path, num_threads: int | None = None):
    ort = _require("onnxruntime", "onnx")
    options = onnx_session_options(ort, num_threads)
    source = content_or_path if isinstance(content_or_path, bytes) else str(content_or_path)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda image: session.run(None, {input_name: image})[0]


def openvino_compile(model_or_path, precision: str = "float32", num_threads: int | None = None,
                     profile: bool = False):
    """Compiled OpenVINO model on the CPU; ``precision`` float32 forces f32 inference (the CPU plugin's default
    on CPUs with AVX512_BF16/AMX is bf16), ``bf16`` asks for bf16, ``int8`` runs a quantized model (its
    non-quantized layers in f32). ``profile``: collect per-layer performance counters."""
    ov = _require("openvino", "openvino")
    core = ov.Core()
    model = core.read_model(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    hint = "bf16" if precision == "bf16" else "f32"
    return core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": num_threads or threads(),
                                             "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                                             "PERF_COUNT": profile})


def openvino_runner(model_or_path, precision: str = "float32", num_threads: int | None = None):
    compiled = openvino_compile(model_or_path, precision, num_threads)
    request = compiled.create_infer_request()
    return lambda image: request.infer({0: image})[0].copy()


def write_onnx(path, content: bytes, overwrite: bool = False) -> Path:
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"ONNX models are written as .onnx, received {path}")
    return atomic_write(refuse_existing(path, overwrite, how="overwrite=True (--overwrite)"), content)


# --- every deployment backend behind one interface -------------------------------------------------------------

BACKENDS = {"keras": ("float32",), "saved_model": ("float32",),
            "tflite": ("float32", "float16", "dynamic", "int8"), **PRECISIONS}


class Deployed:
    """A model prepared for one backend and precision: ``step(batch float32 [1, H, W, 3] 0..255)`` returns the
    int32 class map [1, H, W] as NumPy (the copy to the host included); ``size_bytes``: the model file."""
    def __init__(self, step, size_bytes: int | None):
        self.step, self.size_bytes = step, size_bytes

    def __call__(self, batch):
        return self.step(batch)


def deploy(backend: str, config, model, input_size, *, precision: str = "float32", calibration_images=None,
           xla: bool = False, num_threads: int | None = None, winograd: int = 0) -> Deployed:
    """Convert ``model`` (an inference model of ``config``) for ``backend`` at ``input_size`` (H, W);
    ``winograd`` 2 or 4: the float32 ONNX Runtime / OpenVINO graph computes the dense 3x3 stride-1
    convolutions by Winograd F(m x m, 3 x 3)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {tuple(BACKENDS)}, received {backend!r}")
    if precision not in BACKENDS[backend]:
        raise ValueError(f"backend {backend} supports precisions {BACKENDS[backend]}, received {precision!r}")
    if winograd and not winograd_applies(backend, precision):
        raise ValueError(f"Winograd convolutions are offered for float32 ONNX Runtime and OpenVINO graphs, not "
                         f"{backend} {precision} (quantizers and reduced precisions expect direct convolutions)")
    if precision == "int8" and not calibration_images:
        raise ValueError("int8 needs calibration images (real images of the config's dataset)")
    if backend == "keras":
        predict = tf.function(lambda x: tf.argmax(model(x, training=False), -1, output_type=tf.int32),
                              jit_compile=xla)
        return Deployed(lambda batch: predict(tf.constant(batch)).numpy(), None)
    if backend == "saved_model":
        path = export_saved_model(model, tempfile.mkdtemp(prefix="keras_mv2seg_sm_"))
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
        size = path.stat().st_size + path.with_suffix(".bin").stat().st_size
        run = openvino_runner(path, precision, num_threads)
    return Deployed(run, size)

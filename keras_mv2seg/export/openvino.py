"""OpenVINO: float32 / bf16 / int8 exports of the fixed-size graph, the compiled model and its runner.

Converted by ``openvino.convert_model`` from the traced export function (static shapes: OpenVINO compiles them to
its fastest kernels). int8: NNCF post-training quantization (per-channel symmetric int8 weights, the
``performance`` preset, full bias correction; Concat and MatMul kept in float, see :func:`quantize_openvino`);
its CPU plugin runs the convolutions, the resize and the argmax in int8 where the graph allows.
Optional extra: ``pip install -e '.[openvino]'``.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from keras_mv2seg.export.graph import check_calibration, export_function, require
from keras_mv2seg.files import refuse_existing, remove_stale_staging, staging_path
from keras_mv2seg.machine import usable_threads
from keras_mv2seg.models.layers import native_depthwise_for_export


def to_openvino(config, model, input_size, *, output: str = "labels", winograd: int = 0):
    """``openvino.Model`` of the export graph (weights kept in float32)."""
    ov = require("openvino", "openvino")
    function, signature = export_function(config, model, input_size, output=output, winograd=winograd)
    with native_depthwise_for_export():
        concrete = function.get_concrete_function(*signature)
    converted = ov.convert_model(concrete)
    converted.outputs[0].get_tensor().set_names({output})
    return converted


def quantize_openvino(ov_model, calibration_images, preset: str = "performance"):
    """NNCF post-training int8 quantization of an ``openvino.Model`` (``performance`` preset: symmetric
    activations and per-channel symmetric weights; ``mixed``: asymmetric activations), calibrated on
    ``calibration_images``."""
    nncf = require("nncf", "openvino")
    images = [np.asarray(image, np.float32)[None] for image in calibration_images or []]
    check_calibration("int8", images)
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


def save_openvino(ov_model, path, *, overwrite: bool = False, check=None) -> Path | None:
    """Write ``path`` (``.xml``) and its ``.bin`` beside it, float32 weights kept (no fp16 compression).

    Both files are written into one staging folder beside the output, ``check(staged .xml)`` verifies them
    there, and only then are they moved into place: the old ``.xml`` goes first, the new ``.bin`` next and the
    new ``.xml`` last, so an interrupted write never leaves an ``.xml`` beside a ``.bin`` it was not written
    with. Returns None (nothing at ``path``) when the check refused the files."""
    ov = require("openvino", "openvino")
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"OpenVINO models are written as .xml (+ .bin), received {path}")
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path.with_suffix(".openvino"))
    folder = staging_path(path.with_suffix(".openvino"))
    try:
        staged = folder / path.name
        ov.save_model(ov_model, str(staged), compress_to_fp16=False)
        if check is not None and check(staged) is False:
            return None
        path.unlink(missing_ok=True)
        os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(staged, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path


def openvino_size(path) -> int:
    path = Path(path)
    return path.stat().st_size + path.with_suffix(".bin").stat().st_size


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


def openvino_compile(model_or_path, precision: str = "float32", num_threads: int | None = None,
                     profile: bool = False):
    """Compiled OpenVINO model on the CPU; ``precision`` float32 forces f32 inference (the CPU plugin's default
    on CPUs with AVX512_BF16/AMX is bf16), ``bf16`` asks for bf16, ``int8`` runs a quantized model (its
    non-quantized layers in f32). ``profile``: collect per-layer performance counters."""
    ov = require("openvino", "openvino")
    core = ov.Core()
    model = core.read_model(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    hint = "bf16" if precision == "bf16" else "f32"
    return core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": num_threads or usable_threads(),
                                             "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                                             "PERF_COUNT": profile})


def openvino_runner(model_or_path, precision: str = "float32", num_threads: int | None = None, compiled=None):
    """``step(batch float32 [1, H, W, 3]) -> output``; ``compiled``: an already compiled model to run."""
    compiled = compiled or openvino_compile(model_or_path, precision, num_threads)
    request = compiled.create_infer_request()
    return lambda image: request.infer({0: image})[0].copy()

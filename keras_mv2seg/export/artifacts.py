"""Export files for deployment, verified before they are published: ``export_model(format, config, model, ...)``
is what ``tools/export.py`` runs and what a Python user calls.

Every format is converted, written under a staging name beside its output, reloaded from there and verified
(:mod:`keras_mv2seg.export.verify`), and only then renamed into place, every file of a format together: a
failed or interrupted export never leaves anything at the output path, and TF Serving (which serves the highest
numeric version folder) never sees an unverified version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_mv2seg.datasets_meta import classes_of
from keras_mv2seg.export import onnx as onnx_export
from keras_mv2seg.export import openvino as openvino_export
from keras_mv2seg.export import saved_model as saved_model_export
from keras_mv2seg.export import tflite as tflite_export
from keras_mv2seg.export.graph import RUNTIMES_BY_FORMAT, check_calibration, check_output, check_winograd
from keras_mv2seg.export.verify import Verification, compare_runtime, op_line, verify_saved_model, verify_tflite
from keras_mv2seg.files import atomic_write, refuse_existing

FORMATS = ("saved_model", "tflite", "onnx", "openvino")
BACKEND_OF_FORMAT = {"saved_model": "saved_model", "tflite": "tflite", **RUNTIMES_BY_FORMAT}
# What each format's file can hold (bf16 is an OpenVINO runtime setting, not a file: see export.deploy).
QUANTIZATIONS = {"saved_model": ("float32",), "tflite": tflite_export.QUANTIZATIONS, "onnx": ("float32", "int8"),
                 "openvino": ("float32", "int8")}


@dataclass
class Exported:
    """What :func:`export_model` did: ``path`` (None when verification failed and nothing was published), the
    lines describing the artifact and its checks, and whether every check passed."""
    path: Path | None
    lines: list[str]
    passed: bool


def default_output(fmt: str, config, input_size=None, quantization: str = "float32", dynamic: bool = False) -> Path:
    """``saved_models/<config>`` (SavedModel base folder) or ``saved_models/<config>_<H>x<W>_<precision>.<ext>``."""
    if fmt == "saved_model":
        return Path("saved_models") / config.name
    shape = "dynamic" if dynamic else f"{input_size[0]}x{input_size[1]}"
    suffix = {"tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}[fmt]
    return Path("saved_models") / f"{config.name}_{shape}_{quantization}{suffix}"


def export_model(fmt: str, config, model, *, output=None, input_size=None, quantization: str = "float32",
                 graph_output: str = "labels", dynamic: bool = False, winograd: int = 0, calibration_images=None,
                 check_images=(), overwrite: bool = False, version: int = 1, probabilities: bool = False,
                 pad_to_crop=None, input_type: str = "float32", at_stride: bool = False, author: str = "",
                 license: str = "") -> Exported:  # noqa: A002 - the TFLite metadata field's name
    """Convert ``model`` (the inference model of ``config``) to ``fmt``, verify it on ``check_images`` and publish
    it at ``output`` (default :func:`default_output`). SavedModel: ``output`` is the base folder, the version
    folder is ``<output>/<version>``, with a warm-up request of the first check image. Fixed-size formats need
    ``input_size`` (H, W); ``dynamic`` (ONNX only) exports any size. TFLite only: ``input_type`` uint8,
    ``at_stride`` (scores at the output stride) and the metadata's ``author`` and ``license``
    (:func:`keras_mv2seg.export.tflite.convert`)."""
    check_request(fmt, config, quantization=quantization, graph_output=graph_output, dynamic=dynamic,
                  winograd=winograd, input_size=input_size, pad_to_crop=pad_to_crop, input_type=input_type,
                  at_stride=at_stride)
    check_calibration(quantization, calibration_images)
    if fmt == "saved_model":
        return _saved_model(config, model, output, check_images, version, probabilities, pad_to_crop, overwrite)
    output = Path(output or default_output(fmt, config, input_size, quantization, dynamic))
    labels = refuse_existing(labels_path(output), overwrite)
    if fmt == "tflite":
        exported = _tflite(config, model, output, input_size, quantization, graph_output, calibration_images,
                           list(check_images), overwrite, dict(input_type=input_type, at_stride=at_stride,
                                                               author=author, license=license))
    else:
        writer = {"onnx": _onnx, "openvino": _openvino}[fmt]
        exported = writer(config, model, output, input_size, quantization, graph_output, dynamic, winograd,
                          calibration_images, list(check_images), overwrite)
    if exported.path is not None:
        atomic_write(labels, labels_text(config))
        exported.lines.insert(1, f"  class names (line = class id) in {labels}")
    return exported


def labels_path(output) -> Path:
    """The labels file beside a TFLite/ONNX/OpenVINO export: ``x.tflite`` -> ``x.labels.txt``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.labels.txt")


def labels_text(config) -> str:
    """The labels file of ``config``'s classes (``saved_model.labels_text``)."""
    return saved_model_export.labels_text(classes_of(config))


def check_request(fmt: str, config, *, quantization: str = "float32", graph_output: str = "labels",
                  dynamic: bool = False, winograd: int = 0, input_size=None, pad_to_crop=None,
                  input_type: str = "float32", at_stride: bool = False):
    """Refuse an export :func:`export_model` cannot make, before anything is built (the tool calls it to turn
    the refusal into a usage error): ValueError naming the parameter and what it accepts."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, received {fmt!r}")
    if quantization not in QUANTIZATIONS[fmt]:
        raise ValueError(f"format {fmt} supports quantization {' or '.join(QUANTIZATIONS[fmt])}, not {quantization}")
    if dynamic and fmt != "onnx":
        raise ValueError("dynamic=True applies to the onnx format")
    check_winograd(winograd, BACKEND_OF_FORMAT[fmt], quantization, dynamic)
    if fmt == "saved_model":
        if pad_to_crop and config.model.convention != "deeplab":
            raise ValueError("pad_to_crop reproduces the official DeepLab export; use it with deeplab_* configs")
        return
    check_output(graph_output)
    if fmt == "tflite":
        tflite_export.check_graph(graph_output, input_type, at_stride)
    elif input_type != "float32" or at_stride:
        raise ValueError(f"input_type and at_stride apply to the tflite format, not {fmt}")
    if input_size is None and not dynamic:
        raise ValueError(f"format {fmt} needs input_size (H, W): the export has a fixed input size")


def _published(path, verification: Verification, head: str) -> Exported:
    if path is None:
        verification.lines.append("checks failed: nothing was written")
    return Exported(path, [head] + verification.lines, verification.passed and path is not None)


def _saved_model(config, model, output, images, version, probabilities, pad_to_crop, overwrite) -> Exported:
    images = list(images)
    warmup = np.clip(np.round(images[0]), 0, 255).astype(np.uint8) if images else None
    base = Path(output or default_output("saved_model", config))
    verification = Verification()

    def check(staged):
        return verification.add(verify_saved_model(staged, model, images, pad_to_crop)).passed

    path = saved_model_export.export_saved_model(model, base, version=version, probabilities=probabilities,
                                                 pad_to_crop=pad_to_crop, warmup_image=warmup, overwrite=overwrite,
                                                 check=check, class_names=classes_of(config))
    return _published(path, verification, f"wrote {base / str(int(version))} (signatures serving_default, "
                      "serve_encoded, serve_logits, class_names; warm-up requests and labels.txt in assets.extra)")


def _tflite(config, model, output, size, quantization, graph_output, calibration, images, overwrite,
            options) -> Exported:
    content = tflite_export.convert(config, model, size, quantization=quantization, output=graph_output,
                                    representative_images=calibration, **options)
    verification = Verification()

    def check(staged):
        return verification.add(verify_tflite(Path(staged).read_bytes(), model, images, graph_output, quantization,
                                              options["at_stride"], classes_of(config))).passed

    path = tflite_export.write(output, content, overwrite=overwrite, check=check)
    exported = _published(path, verification,
                          _describe(output, f"{len(content) / 2**20:.1f} MiB", False, size, graph_output,
                                    options["input_type"], options["at_stride"]))
    note = stride_note(config, graph_output) if options["at_stride"] else None
    if note:
        exported.lines.append(note)
    return exported


def stride_note(config, graph_output: str) -> str | None:
    """What a client makes of an output at the stride: MediaPipe's category mask is the argmax of the raw output
    resized with align_corners=True (its confidence masks the activated output, half-pixel centres), so only an
    align-corners model's logits reproduce the model's own resize (None: nothing to say)."""
    align_corners = config.model.conventions.align_corners
    if align_corners and graph_output == "logits":
        return None
    own = "align_corners=True" if align_corners else "half-pixel centres"
    advice = ("export --graph-output logits at the stride to match it exactly" if align_corners
              else "ship the in-graph resize (no --at-stride) where the masks must be the model's")
    return (f"  note: MediaPipe resizes a {graph_output} output at the stride itself (category mask: the argmax of "
            f"the output resized with align_corners=True); {config.name} resizes its logits with {own}, so the "
            f"category mask differs from the in-graph resize along class borders: {advice} "
            "(docs/deployment.md, On a phone)")


def _describe(output, size_text, dynamic, size, graph_output, input_type="float32", at_stride=False) -> str:
    shape = "dynamic, dynamic" if dynamic else f"{size[0]}, {size[1]}"
    where = " at the output stride" if at_stride else ""
    return (f"wrote {output} ({size_text}, input {input_type} RGB 0..255 [1, {shape}, 3], output "
            f"{graph_output}{where})")


def _onnx(config, model, output, size, quantization, graph_output, dynamic, winograd, calibration, images,
          overwrite) -> Exported:
    content = onnx_export.to_onnx(config, model, size, output=graph_output, dynamic=dynamic, winograd=winograd)
    if quantization == "int8":
        content = onnx_export.quantize_onnx(content, calibration)
    verification = Verification()

    def check(staged):
        verification.lines += [op_line(onnx_export.onnx_ops(Path(staged).read_bytes())), _winograd_line(winograd)]
        return verification.add(compare_runtime(onnx_export.onnx_runner(staged), model, images, graph_output,
                                                quantization)).passed

    path = onnx_export.write_onnx(output, content, overwrite=overwrite, check=check)
    return _published(path, verification,
                      _describe(output, f"{len(content) / 2**20:.1f} MiB", dynamic, size, graph_output))


def _openvino(config, model, output, size, quantization, graph_output, dynamic, winograd, calibration, images,
              overwrite) -> Exported:
    ov_model = openvino_export.to_openvino(config, model, size, output=graph_output, winograd=winograd)
    if quantization == "int8":
        ov_model = openvino_export.quantize_openvino(ov_model, calibration)
    verification = Verification()
    written = []

    def check(staged):
        written.append(openvino_export.openvino_size(staged))
        compiled = openvino_export.openvino_compile(staged, quantization)
        verification.lines += [op_line(openvino_export.openvino_ops(compiled.get_runtime_model())),
                               _winograd_line(winograd)]
        if quantization == "int8":
            islands = openvino_export.openvino_runtime_precisions(compiled)
            verification.lines.append("  runtime precision per layer type: " + ", ".join(
                f"{layer} {precision} x{count}" for (layer, precision), count in sorted(islands.items())
                if layer not in ("Const", "Input", "Output")))
        run = openvino_export.openvino_runner(staged, quantization, compiled=compiled)
        return verification.add(compare_runtime(run, model, images, graph_output, quantization)).passed

    path = openvino_export.save_openvino(ov_model, output, overwrite=overwrite, check=check)
    size_text = f"{written[0] / 2**20:.1f} MiB (.xml + .bin)" if written else "?"
    return _published(path, verification, _describe(output, size_text, dynamic, size, graph_output))


def _winograd_line(winograd: int) -> str:
    return "  dense 3x3 stride-1 convolutions: " + (f"Winograd F({winograd}x{winograd}, 3x3)" if winograd
                                                     else "direct")

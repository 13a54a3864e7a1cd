#!/usr/bin/env python
"""Export a config's weights for deployment and verify the artifact against the Keras model.

    python tools/export.py CONFIG WEIGHTS --format saved_model [--output saved_models/NAME] [--version 1]
                           [--probabilities] [--pad-to-crop]
    python tools/export.py CONFIG WEIGHTS --format tflite --input-size H W
                           [--quantization float32|float16|dynamic|int8] [--graph-output labels|logits]
                           [--data-root DIR] [--calibration-images 32] [--output model.tflite]
    python tools/export.py CONFIG WEIGHTS --format onnx|openvino --input-size H W [--quantization float32|int8]
                           [--graph-output labels|logits] [--data-root DIR] [--dynamic (onnx)] [--output FILE]
                           [--winograd auto|0|2|4]

Verification (printed): the SavedModel is reloaded (TF2 and the TF1 session loader TF Serving uses) and
compared with the Keras model; TFLite, ONNX and OpenVINO models are reloaded from the written file, run in
their runtime (LiteRT, ONNX Runtime, OpenVINO CPU) on images of the config's dataset and compared (class-map
agreement; max logit difference with --graph-output logits), and their op list is printed (TFLite: checked for
Flex ops and SPACE_TO_BATCH_ND; int8: the quantize/dequantize ops and, for OpenVINO, the precision each layer
runs in). Float32 exports must agree to 1e-3 / 99.9 %; int8 agreement is reported. A failed check exits 1.
Fixed-size float32 ONNX and OpenVINO graphs compute the dense 3x3 stride-1 convolutions (the heads' bottlenecks,
most of the multiply-adds) by Winograd F(4x4, 3x3) unless --winograd says otherwise (0: direct convolutions).
int8 calibration uses images of the config's training split (--data-root; the toy configs generate theirs).
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_mv2seg.cli import add_config_arguments, config_from_args, run_main, UsageError  # noqa: E402
from keras_mv2seg.data.sources import has_data, sample_images as data_images  # noqa: E402
from keras_mv2seg.data.toy import synthetic_image  # noqa: E402
from keras_mv2seg.export import saved_model as saved_model_export  # noqa: E402
from keras_mv2seg.export import runtimes  # noqa: E402
from keras_mv2seg.export import tflite as tflite_export  # noqa: E402
from keras_mv2seg.inference import pad_to_crop_logits  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402

# Acceptance: float exports agree with Keras to 1e-3 in logits and 99.9 % of pixels.
MAX_LOGIT_DIFFERENCE = 1e-3
MIN_AGREEMENT = 0.999


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("weights", help=".weights.h5 from training, mmseg .pth or DeepLab TF1 checkpoint")
    parser.add_argument("--format", required=True, choices=("saved_model", "tflite", "onnx", "openvino"))
    parser.add_argument("--output", help="saved_model: base folder (default saved_models/<config>); "
                        "tflite: file (default saved_models/<config>_<H>x<W>_<quantization>.tflite)")
    parser.add_argument("--version", type=int, default=1, help="SavedModel version folder")
    parser.add_argument("--probabilities", action="store_true", help="SavedModel: also output probabilities")
    parser.add_argument("--pad-to-crop", action="store_true",
                        help="SavedModel: the official DeepLab exported-graph behaviour (pad to data.crop_size)")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="TFLite input size")
    parser.add_argument("--quantization", default="float32", choices=tflite_export.QUANTIZATIONS,
                        help="tflite: any; onnx, openvino: float32 or int8")
    parser.add_argument("--graph-output", "--tflite-output", dest="graph_output", default="labels",
                        choices=("labels", "logits"), help="tflite/onnx/openvino: class map or logits")
    parser.add_argument("--dynamic", action="store_true", help="onnx: dynamic height and width (slower)")
    parser.add_argument("--winograd", default="auto", choices=("auto", "0", "2", "4"),
                        help="onnx/openvino float32, fixed size: dense 3x3 stride-1 convolutions by Winograd "
                             "F(m x m, 3 x 3), m = 2 or 4; 0: direct; auto (default): 4 where it applies, else 0")
    parser.add_argument("--data-root", help="images for int8 calibration and the checks (default: synthetic)")
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    return parser.parse_args(argv)


def sample_images(config, data_root, count, size=None, split="val"):
    """Images of the config's data (see data.sources.sample_images), else synthetic toy scenes for the checks."""
    if not has_data(config, data_root):
        return [synthetic_image(*(size or (256, 512)), seed=i)[0] for i in range(max(count, 1))]
    return data_images(config, split, data_root, count, size)


def verify_saved_model(path, model, images, pad_to_crop) -> bool:
    loaded = tf.saved_model.load(str(path))
    ok = True
    for index, image in enumerate(images[:3]):
        batch = np.clip(np.round(image), 0, 255).astype(np.uint8)[None]
        expected = (pad_to_crop_logits(model, batch, pad_to_crop) if pad_to_crop
                    else model(batch.astype(np.float32), training=False)).numpy()
        logits = loaded.serve_logits(tf.constant(batch))["logits"].numpy()
        labels = loaded.signatures["serving_default"](images=tf.constant(batch))["labels"].numpy()
        session = saved_model_export.run_in_tf1_session(path, batch)["labels"]
        difference = float(np.abs(logits - expected).max())
        agreement = float((labels == expected.argmax(-1)).mean())
        same_in_tf1 = bool((session == labels).all())
        passed = difference <= MAX_LOGIT_DIFFERENCE and agreement >= MIN_AGREEMENT and same_in_tf1
        ok &= passed
        print(f"  image {index} {batch.shape[1]}x{batch.shape[2]}: max |logit diff| {difference:.2e}, labels agree "
              f"{100 * agreement:.3f}%, TF1 session loader identical: {same_in_tf1} -> {'PASS' if passed else 'FAIL'}")
    return ok


def verify_tflite(content, model, images, output, quantization) -> bool:
    names = tflite_export.op_names(content)
    problems = tflite_export.check_ops(names)
    print(f"  ops: {', '.join(names)}")
    print(f"  op check: {'PASS' if not problems else 'FAIL: ' + '; '.join(problems)}")
    return verify_runtime(tflite_export.runner(content), model, images, output, quantization) and not problems


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = config_from_args(args)
    if args.quantization == "int8" and not has_data(config, args.data_root):
        raise UsageError(f"int8 calibration uses real images of the config's dataset: pass --data-root "
                         f"({config.name!r} reads {config.data.dataset})")
    if args.dynamic and args.format != "onnx":
        raise UsageError("--dynamic applies to --format onnx")
    if args.winograd not in ("auto", "0") and args.format not in runtimes.RUNTIMES_BY_FORMAT:
        raise UsageError(f"--winograd: applies to --format onnx or openvino, not {args.format}")
    model = build_for_inference(config, args.weights)
    if args.format == "saved_model":
        pad = tuple(config.data.crop_size) if args.pad_to_crop else None
        if args.pad_to_crop and config.model.convention != "deeplab":
            raise UsageError("--pad-to-crop reproduces the official DeepLab export; use it with deeplab_* configs")
        images = sample_images(config, args.data_root, 3)
        warmup = np.clip(np.round(images[0]), 0, 255).astype(np.uint8)
        path = saved_model_export.export_saved_model(
            model, args.output or Path("saved_models") / config.name, version=args.version,
            probabilities=args.probabilities, pad_to_crop=pad, warmup_image=warmup, overwrite=args.overwrite)
        print(f"wrote {path} (signatures serving_default, serve_encoded, serve_logits; warm-up requests in "
              "assets.extra)")
        return 0 if verify_saved_model(path, model, images, pad) else 1
    if not args.input_size:
        raise UsageError(f"--format {args.format} needs --input-size H W (the export has a fixed input size)")
    size = tuple(args.input_size)
    calibration = (sample_images(config, args.data_root, args.calibration_images, size, split="train")
                   if args.quantization == "int8" else None)
    images = sample_images(config, args.data_root, 3, size)
    if args.format in runtimes.RUNTIMES_BY_FORMAT:
        return export_runtime(args, config, model, size, images, calibration)
    content = tflite_export.convert(config, model, size, quantization=args.quantization, output=args.graph_output,
                                    representative_images=calibration or images)
    output = args.output or Path("saved_models") / f"{config.name}_{size[0]}x{size[1]}_{args.quantization}.tflite"
    tflite_export.write(output, content, overwrite=args.overwrite)
    print(f"wrote {output} ({len(content) / 2**20:.1f} MiB, input float32 RGB 0..255 [1, {size[0]}, {size[1]}, 3], "
          f"output {args.graph_output})")
    return 0 if verify_tflite(content, model, images, args.graph_output, args.quantization) else 1


def export_runtime(args, config, model, size, images, calibration) -> int:
    """ONNX (ONNX Runtime) or OpenVINO export: convert, quantize, write, reload from the file and verify."""
    if args.quantization not in ("float32", "int8"):
        raise UsageError(f"--format {args.format} supports --quantization float32 or int8, not {args.quantization}")
    try:
        winograd = runtimes.winograd_tile(args.winograd, runtimes.RUNTIMES_BY_FORMAT[args.format], args.quantization,
                                          args.dynamic)
    except ValueError as error:
        raise UsageError(f"--winograd: {error}") from None
    suffix = ".onnx" if args.format == "onnx" else ".xml"
    shape_name = "dynamic" if args.dynamic else f"{size[0]}x{size[1]}"
    output = Path(args.output or Path("saved_models") / f"{config.name}_{shape_name}_{args.quantization}{suffix}")
    if args.format == "onnx":
        content = runtimes.to_onnx(config, model, size, output=args.graph_output, dynamic=args.dynamic,
                                   winograd=winograd)
        if args.quantization == "int8":
            content = runtimes.quantize_onnx(content, calibration)
        runtimes.write_onnx(output, content, overwrite=args.overwrite)
        run = runtimes.onnx_runner(output)
        ops = runtimes.onnx_ops(output.read_bytes())
        written = f"{len(content) / 2**20:.1f} MiB"
    else:
        ov_model = runtimes.to_openvino(config, model, size, output=args.graph_output, winograd=winograd)
        if args.quantization == "int8":
            ov_model = runtimes.quantize_openvino(ov_model, calibration)
        runtimes.save_openvino(ov_model, output, overwrite=args.overwrite)
        compiled = runtimes.openvino_compile(output, args.quantization)
        run = runtimes.openvino_runner(output, args.quantization)
        ops = runtimes.openvino_ops(compiled.get_runtime_model())
        written = f"{(output.stat().st_size + output.with_suffix('.bin').stat().st_size) / 2**20:.1f} MiB (.xml + .bin)"
    print(f"wrote {output} ({written}, input float32 RGB 0..255 [1, {shape_name.replace('x', ', ')}, 3], "
          f"output {args.graph_output})")
    print(f"  ops: {', '.join(f'{name} x{count}' for name, count in sorted(ops.items()))}")
    print("  dense 3x3 stride-1 convolutions: " + (f"Winograd F({winograd}x{winograd}, 3x3)" if winograd else "direct"))
    if args.format == "openvino" and args.quantization == "int8":
        islands = runtimes.openvino_runtime_precisions(compiled)
        print("  runtime precision per layer type: " + ", ".join(
            f"{layer} {precision} x{count}" for (layer, precision), count in sorted(islands.items())
            if layer not in ("Const", "Input", "Output")))
    return 0 if verify_runtime(run, model, images, args.graph_output, args.quantization) else 1


def verify_runtime(run, model, images, output, quantization) -> bool:
    """Compare a runtime's results with the Keras model on ``images`` (float32 exports must match)."""
    agreements, differences = [], []
    for image in images[:3]:
        expected = model(image[None], training=False).numpy()[0]
        result = run(np.asarray(image, np.float32)[None])[0]
        labels = result if output == "labels" else result.argmax(-1)
        agreements.append(float((labels == expected.argmax(-1)).mean()))
        if output == "logits":
            differences.append(float(np.abs(result - expected).max()))
    agreement = min(agreements)
    line = f"  labels agree with Keras on {100 * agreement:.3f}% of pixels (worst of {len(agreements)} images)"
    if differences:
        line += f", max |logit diff| {max(differences):.2e}"
    if quantization != "float32":
        print(line + f" ({quantization}: reported, not asserted; benchmarks/export_quality.py measures its mIoU)")
        return True
    passed = agreement >= MIN_AGREEMENT and (not differences or max(differences) <= MAX_LOGIT_DIFFERENCE)
    print(line + f" -> {'PASS' if passed else 'FAIL'}")
    return passed


if __name__ == "__main__":
    sys.exit(run_main(main))

#!/usr/bin/env python
"""Export a config's weights for deployment and verify the artifact against the Keras model.

    python tools/export.py CONFIG WEIGHTS --format saved_model [--output saved_models/NAME] [--version 1]
                           [--probabilities] [--pad-to-crop]
    python tools/export.py CONFIG WEIGHTS --format tflite --input-size H W
                           [--quantization float32|float16|dynamic|int8] [--graph-output labels|logits|scores]
                           [--input-type float32|uint8] [--at-stride] [--author TEXT] [--license TEXT]
                           [--data-root DIR] [--calibration-images 32] [--output model.tflite]
    python tools/export.py CONFIG WEIGHTS --format onnx|openvino --input-size H W [--quantization float32|int8]
                           [--graph-output labels|logits|scores] [--data-root DIR] [--dynamic (onnx)]
                           [--output FILE]
                           [--winograd auto|0|2|4]

Verification (printed): the SavedModel is reloaded (TF2 and the TF1 session loader TF Serving uses) and
compared with the Keras model; TFLite, ONNX and OpenVINO models are reloaded from the written file, run in
their runtime (LiteRT, ONNX Runtime, OpenVINO CPU) on images of the config's dataset and compared (class-map
agreement; max logit difference with --graph-output logits), and their op list is printed (TFLite: checked for
Flex ops and SPACE_TO_BATCH_ND; int8: the quantize/dequantize ops and, for OpenVINO, the precision each layer
runs in). Float32 exports must agree to 1e-3 / 99.9 %; int8 agreement is reported. TFLite files carry the
metadata MediaPipe's ImageSegmenter reads (class names as the labels file, input normalisation, the scores'
activation), read back and checked; for MediaPipe export --graph-output scores (or logits) -- see
docs/deployment.md "On a phone". Files are verified under a
staging name and only then moved to the output: a failed check writes nothing and exits 1.
Fixed-size float32 ONNX and OpenVINO graphs compute the dense 3x3 stride-1 convolutions (the heads' bottlenecks,
most of the multiply-adds) by Winograd F(4x4, 3x3) unless --winograd says otherwise (0: direct convolutions).
int8 calibration uses images of the config's training split (--data-root; the toy configs generate theirs).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mv2seg.cli import UsageError, add_config_arguments, config_from_args, run_main  # noqa: E402
from keras_mv2seg.export.artifacts import BACKEND_OF_FORMAT, FORMATS, check_request, export_model  # noqa: E402
from keras_mv2seg.export.graph import OUTPUTS, calibration_images, winograd_tile  # noqa: E402
from keras_mv2seg.export.tflite import INPUT_TYPES, QUANTIZATIONS  # noqa: E402
from keras_mv2seg.export.verify import check_images  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("weights", help=".weights.h5 from training, mmseg .pth, DeepLab TF1 checkpoint or a preset")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", help="saved_model: base folder (default saved_models/<config>); "
                        "others: file (default saved_models/<config>_<H>x<W>_<quantization>.<ext>)")
    parser.add_argument("--version", type=int, default=1, help="SavedModel version folder")
    parser.add_argument("--probabilities", action="store_true", help="SavedModel: also output probabilities")
    parser.add_argument("--pad-to-crop", action="store_true",
                        help="SavedModel: the official DeepLab exported-graph behaviour (pad to data.crop_size)")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="fixed input size")
    parser.add_argument("--quantization", default="float32", choices=QUANTIZATIONS,
                        help="tflite: float32|float16|dynamic|int8; onnx: float32|int8; openvino: float32|int8")
    parser.add_argument("--graph-output", "--tflite-output", dest="graph_output", default="labels",
                        choices=OUTPUTS, help="tflite/onnx/openvino: int32 class map, logits or softmax scores "
                        "(MediaPipe's ImageSegmenter takes logits or scores; int8 scores are uint8)")
    parser.add_argument("--input-type", default="float32", choices=INPUT_TYPES,
                        help="tflite: the input tensor's type (uint8: raw pixels, as int8_full_int8_io)")
    parser.add_argument("--at-stride", action="store_true",
                        help="tflite logits/scores at the network's output stride; the client resizes them")
    parser.add_argument("--author", default="", help="tflite metadata: author")
    parser.add_argument("--license", default="", help="tflite metadata: license")
    parser.add_argument("--dynamic", action="store_true", help="onnx: dynamic height and width (slower)")
    parser.add_argument("--winograd", default="auto", choices=("auto", "0", "2", "4"),
                        help="onnx/openvino float32, fixed size: dense 3x3 stride-1 convolutions by Winograd "
                             "F(m x m, 3 x 3), m = 2 or 4; 0: direct; auto (default): 4 where it applies, else 0")
    parser.add_argument("--data-root", help="images for int8 calibration and the checks (default: the toy configs' generated "
                             "toy data for a model of the toy's classes, else synthetic images for the checks)")
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = config_from_args(args)
    size = tuple(args.input_size) if args.input_size else None
    pad = tuple(config.data.crop_size) if args.pad_to_crop else None
    try:  # the library's refusals, before the model is built: usage errors here
        winograd = winograd_tile(args.winograd, BACKEND_OF_FORMAT[args.format], args.quantization, args.dynamic)
        check_request(args.format, config, quantization=args.quantization, graph_output=args.graph_output,
                      dynamic=args.dynamic, winograd=winograd, input_size=size, pad_to_crop=pad,
                      input_type=args.input_type, at_stride=args.at_stride)
        calibration = (calibration_images(config, args.data_root, args.calibration_images, size)
                       if args.quantization == "int8" else None)
    except ValueError as error:
        raise UsageError(f"--winograd: {error}" if "Winograd" in str(error) else str(error)) from None
    model = build_for_inference(config, args.weights)
    exported = export_model(
        args.format, config, model, output=args.output, input_size=size, quantization=args.quantization,
        graph_output=args.graph_output, dynamic=args.dynamic, winograd=winograd, calibration_images=calibration,
        check_images=check_images(config, args.data_root, 3, size), overwrite=args.overwrite, version=args.version,
        probabilities=args.probabilities, pad_to_crop=pad, input_type=args.input_type, at_stride=args.at_stride,
        author=args.author, license=args.license)
    print("\n".join(exported.lines))
    return 0 if exported.passed else 1


if __name__ == "__main__":
    sys.exit(run_main(main))

#!/usr/bin/env python
"""Inference speed of one config, like the reference's benchmark: 5 warm-up images, then N timed; each step is
forward + resize + argmax + copy to host. Prints latency, fps, achieved GFLOP/s and the ratio to a float32
matmul measured in the same run.

    python tools/benchmark.py CONFIG [--weights FILE] [--shape 512 1024] [--iters 20] [--xla]
        [--backend keras|saved_model|tflite|onnxruntime|openvino] [--quantization float32|float16|dynamic|bf16|int8]
        [--data-root DIR] [--winograd auto|0|2|4]

Precisions: tflite float32/float16/dynamic/int8, onnxruntime float32/int8, openvino float32/bf16/int8. int8 is
calibrated on 8 images of the config's training split, as tools/export.py does (--data-root; toy configs
generate theirs; without data int8 is refused, never calibrated on noise).
Float32 ONNX Runtime / OpenVINO graphs use Winograd F(4x4, 3x3) for the dense 3x3 convolutions, as the export
does (--winograd auto); --winograd 0 times the direct convolutions. GFLOP/s counts the direct convolutions'
multiply-adds, so a Winograd graph's figure is an effective rate.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_mv2seg.cli import UsageError, add_config_arguments, config_from_args, run_main  # noqa: E402
from keras_mv2seg.export.deploy import BACKENDS, deploy  # noqa: E402
from keras_mv2seg.export.graph import calibration_images, winograd_tile  # noqa: E402
from keras_mv2seg.flops import conv_macs  # noqa: E402
from keras_mv2seg.machine import describe_machine, matmul_gflops, summarize, time_steps  # noqa: E402
from keras_mv2seg.models import build_segmenter  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--weights", help="weights to load (speed does not depend on them; default random)")
    parser.add_argument("--backend", default="keras", choices=tuple(BACKENDS))
    parser.add_argument("--shape", nargs=2, type=int, default=(512, 1024), metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=20, help="timed images (reference: 200)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--xla", action="store_true", help="keras backend: jit_compile the step")
    parser.add_argument("--quantization", "--precision", dest="quantization", default="float32",
                        help="precision of the backend (see above)")
    parser.add_argument("--data-root", help="calibration images for int8 (default: the config's data.data_root)")
    parser.add_argument("--winograd", default="auto", choices=("auto", "0", "2", "4"),
                        help="onnxruntime/openvino float32: Winograd output tile for dense 3x3 convolutions")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    config = config_from_args(args)
    shape = tuple(args.shape)
    model = build_for_inference(config, args.weights)
    macs = conv_macs(build_segmenter(config, input_shape=(*shape, 3), batch_size=1))
    peak = matmul_gflops()
    images = [np.random.default_rng(i).uniform(0, 255, (1, *shape, 3)).astype(np.float32) for i in range(2)]
    try:
        calibration = calibration_images(config, args.data_root, 8, shape) if args.quantization == "int8" else None
        winograd = winograd_tile(args.winograd, args.backend, args.quantization)
        deployed = deploy(args.backend, config, model, shape, precision=args.quantization,
                          calibration_images=calibration, xla=args.xla, winograd=winograd)
    except ValueError as error:
        raise UsageError(str(error)) from None
    result = summarize(time_steps(deployed, images, args.iters, args.warmup), macs)
    print(f"machine: {describe_machine()}")
    print(f"{config.name} {args.backend}{' (XLA)' if args.xla else ''}"
          f" {args.quantization}{f' Winograd F({winograd}x{winograd}, 3x3)' if winograd else ''}"
          f" {shape[0]}x{shape[1]} batch 1: "
          f"{result['median_ms']:.1f} ms median, {result['fps']:.2f} fps, {macs / 1e9:.1f} GMACs, "
          f"{result['gflops']:.1f} GFLOP/s = {result['gflops'] / peak:.2f} x the float32 matmul ({peak:.1f} GFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

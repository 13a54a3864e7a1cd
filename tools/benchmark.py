#!/usr/bin/env python
"""Inference speed of one config, like the reference's benchmark: 5 warm-up images, then N timed; each step is
forward + resize + argmax + copy to host. Prints latency, fps, achieved GFLOP/s and the ratio to a float32
matmul measured in the same run.

    python tools/benchmark.py CONFIG [--weights FILE] [--backend keras|saved_model|tflite] [--shape 512 1024]
                              [--iters 20] [--xla] [--quantization float32|float16|dynamic|int8]
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_mv2seg.benchmark import matmul_gflops, summarize, time_steps  # noqa: E402
from keras_mv2seg.cli import add_config_arguments, config_from_args, run_main  # noqa: E402
from keras_mv2seg.flops import conv_macs  # noqa: E402
from keras_mv2seg.machine import describe_machine  # noqa: E402
from keras_mv2seg.models import build_segmenter  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402


def make_step(backend, config, model, shape, args):
    if backend == "keras":
        predict = tf.function(lambda x: tf.argmax(model(x, training=False), -1, output_type=tf.int32),
                              jit_compile=args.xla)
        return lambda image: predict(tf.constant(image)).numpy()
    if backend == "saved_model":
        from keras_mv2seg.export.saved_model import export_saved_model

        folder = tempfile.mkdtemp(prefix="bench_sm_")
        serve = tf.saved_model.load(str(export_saved_model(model, folder))).signatures["serving_default"]
        return lambda image: serve(images=tf.constant(image.astype(np.uint8)))["labels"].numpy()
    from keras_mv2seg.export import tflite

    calibration = [np.random.default_rng(i).uniform(0, 255, (*shape, 3)).astype(np.float32) for i in range(4)]
    content = tflite.convert(config, model, shape, quantization=args.quantization, output="labels",
                             representative_images=calibration)
    runner = tflite.interpreter(content)
    input_index = runner.get_input_details()[0]["index"]
    output_index = runner.get_output_details()[0]["index"]

    def step(image):
        runner.set_tensor(input_index, image)
        runner.invoke()
        return runner.get_tensor(output_index)

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--weights", help="weights to load (speed does not depend on them; default random)")
    parser.add_argument("--backend", default="keras", choices=("keras", "saved_model", "tflite"))
    parser.add_argument("--shape", nargs=2, type=int, default=(512, 1024), metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=20, help="timed images (reference: 200)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--xla", action="store_true", help="keras backend: jit_compile the step")
    parser.add_argument("--quantization", default="float32", help="tflite backend")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    config = config_from_args(args)
    shape = tuple(args.shape)
    model = build_for_inference(config, args.weights)
    macs = conv_macs(build_segmenter(config, input_shape=(*shape, 3), batch_size=1))
    peak = matmul_gflops()
    images = [np.random.default_rng(i).uniform(0, 255, (1, *shape, 3)).astype(np.float32) for i in range(2)]
    result = summarize(time_steps(make_step(args.backend, config, model, shape, args), images, args.iters,
                                  args.warmup), macs)
    print(f"machine: {describe_machine()}")
    print(f"{config.name} {args.backend}{' (XLA)' if args.xla else ''}"
          f"{' ' + args.quantization if args.backend == 'tflite' else ''} {shape[0]}x{shape[1]} batch 1: "
          f"{result['median_ms']:.1f} ms median, {result['fps']:.2f} fps, {macs / 1e9:.1f} GMACs, "
          f"{result['gflops']:.1f} GFLOP/s = {result['gflops'] / peak:.2f} x the float32 matmul ({peak:.1f} GFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

#!/usr/bin/env python
"""Convert every table config to TFLite at a fixed size, print its op list and check, and time it with the
LiteRT interpreter (XNNPACK) beside the Keras graph on the same random weights.

    python benchmarks/tflite_table.py [--size 512 512] [--quantization float32] [--iters 5] [--configs ...]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mv2seg  # noqa: E402
from keras_mv2seg.export import tflite as tl  # noqa: E402

TABLE = [f"{h}_m-v2-d8_{s}" for h in ("fcn", "pspnet", "deeplabv3", "deeplabv3plus")
         for s in ("512x1024_80k_cityscapes", "512x512_160k_ade20k")]


def median_seconds(fn, iters):
    fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=TABLE)
    parser.add_argument("--size", nargs=2, type=int, default=(512, 512))
    parser.add_argument("--quantization", default="float32", choices=tl.QUANTIZATIONS)
    parser.add_argument("--iters", type=int, default=5, help="timed runs (0: ops only)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    size = tuple(args.size)
    image = np.random.default_rng(0).uniform(0, 255, (*size, 3)).astype(np.float32)
    failures = 0
    from keras_mv2seg.machine import describe_machine

    print(f"machine: {describe_machine()}")
    for name in args.configs:
        config = keras_mv2seg.get_config(name)
        model = keras_mv2seg.build_segmenter(config)
        calibration = [image] if args.quantization == "int8" else None
        content = tl.convert(config, model, size, quantization=args.quantization, output="labels",
                             representative_images=calibration)
        names = tl.op_names(content)
        problems = tl.check_ops(names)
        failures += bool(problems)
        line = f"{name} {size[0]}x{size[1]} {args.quantization}: ops {' '.join(names)} -> " \
               f"{'OK' if not problems else 'PROBLEMS: ' + '; '.join(problems)}"
        if args.iters:
            runner = tl.interpreter(content)
            index = runner.get_input_details()[0]["index"]

            def tflite_step():
                runner.set_tensor(index, image[None])
                runner.invoke()
                return runner.get_tensor(runner.get_output_details()[0]["index"])

            keras_step = tf.function(lambda x: tf.argmax(model(x, training=False), -1))
            batch = tf.constant(image[None])
            tflite_s = median_seconds(tflite_step, args.iters)
            keras_s = median_seconds(lambda: keras_step(batch).numpy(), args.iters)
            line += f" | TFLite+XNNPACK {1000 * tflite_s:.0f} ms, Keras graph {1000 * keras_s:.0f} ms " \
                    f"(ratio {tflite_s / keras_s:.2f})"
        print(line, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

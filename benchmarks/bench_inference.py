#!/usr/bin/env python
"""Batch-1 inference speed of each head, measured like the reference's benchmark tool.

For every (head, input size): 5 warm-up images, then N timed images; each timed step is forward + resize to
the input size + argmax + copy of the class map to the host (no data loading). Prints latency, fps, the
achieved GFLOP/s (2 x conv multiply-adds / latency) and its ratio to a large float32 matrix product
measured in the same run on the same device: a machine-independent measure of how well the model uses it.

    python benchmarks/bench_inference.py [--heads fcn psp aspp sepaspp] [--shapes 512x512 512x1024]
                                         [--iters 10] [--xla] [--native-depthwise]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mv2seg  # noqa: E402
from keras_mv2seg.benchmark import matmul_gflops, time_steps  # noqa: E402
from keras_mv2seg.flops import conv_macs  # noqa: E402

CONFIGS = {"fcn": "fcn_m-v2-d8_512x1024_80k_cityscapes", "psp": "pspnet_m-v2-d8_512x1024_80k_cityscapes",
           "aspp": "deeplabv3_m-v2-d8_512x1024_80k_cityscapes",
           "sepaspp": "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes",
           "deeplab": "deeplab_mnv2_cityscapes"}


def time_model(config, shape, iters, warmup, xla):
    model = keras_mv2seg.build_segmenter(config, input_shape=(*shape, 3), batch_size=1)
    macs = conv_macs(model)

    @tf.function(jit_compile=xla)
    def predict(images):
        return tf.argmax(model(images, training=False), axis=-1, output_type=tf.int32)

    rng = np.random.default_rng(0)
    images = [tf.constant(rng.uniform(0, 255, (1, *shape, 3)).astype("float32")) for _ in range(2)]
    return macs, time_steps(lambda x: predict(x).numpy(), images, iters, warmup)  # copy to host included


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="*", default=["fcn", "psp", "aspp", "sepaspp"], choices=sorted(CONFIGS))
    parser.add_argument("--shapes", nargs="*", default=["512x512", "512x1024"])
    parser.add_argument("--iters", type=int, default=10, help="timed images (reference: 200)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--xla", action="store_true", help="compile the step with XLA (jit_compile=True)")
    parser.add_argument("--native-depthwise", action="store_true",
                        help="dilated depthwise as one native op (oneDNN CPUs only)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    shapes = []
    for text in args.shapes:
        try:
            h, w = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--shapes expects HxW like 512x1024, received {text!r}") from None
        shapes.append((h, w))
    device = tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("CPU")
    peak = matmul_gflops()
    print(f"device: {device[0].device_type} ({os.cpu_count()} CPU cores visible), TF {tf.__version__}, "
          f"XLA {'on' if args.xla else 'off'}, depthwise {'native' if args.native_depthwise else 'portable'}")
    print(f"reference: 2048x2048 float32 matmul {peak:.1f} GFLOP/s")
    print(f"{'head':8s} {'input':>9s} {'GMACs':>7s} {'median ms':>10s} {'fps':>6s} {'GFLOP/s':>8s} {'vs matmul':>9s}")
    for head in args.heads:
        config = keras_mv2seg.get_config(CONFIGS[head])
        if args.native_depthwise:
            config = config.replace(depthwise_implementation="native")
        for shape in shapes:
            macs, times = time_model(config, shape, args.iters, args.warmup, args.xla)
            median = float(np.median(times))
            achieved = 2 * macs / median / 1e9
            print(f"{head:8s} {shape[0]:4d}x{shape[1]:<4d} {macs / 1e9:7.1f} {1000 * median:10.1f} "
                  f"{len(times) / times.sum():6.2f} {achieved:8.1f} {achieved / peak:9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Batch-1 inference speed of each head against the PyTorch reference, measured alternately in one run.

For every (head, input size) and every round: this project (5 warm-up images, then N timed; each timed step is
forward + resize to the input size + argmax + copy of the class map to the host), then the reference
(mmseg 1.2.2 on PyTorch, ``../shared/reference/infer.py``, the same step, same thread count). Prints the
machine (CPU model, ISA extensions, threads, oneDNN state), each side's median latency, the ratio
ours/PyTorch (< 1: faster than PyTorch), and the achieved GFLOP/s beside a float32 matmul measured in the same
run. Without the reference kit it says so and prints this project's figures alone.

    python benchmarks/bench_inference.py [--heads fcn psp aspp sepaspp] [--sizes 512x512 512x1024]
        [--iters 5] [--rounds 2] [--xla] [--depthwise native] [--reference-python PY] [--no-reference]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mv2seg  # noqa: E402
from kit import HEAD_CONFIGS, HEAD_TITLES, Reference, parse_size  # noqa: E402
from keras_mv2seg.machine import matmul_gflops, time_steps  # noqa: E402
from keras_mv2seg.flops import conv_macs  # noqa: E402
from keras_mv2seg.machine import describe_machine  # noqa: E402


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
    parser.add_argument("--heads", nargs="*", default=list(HEAD_CONFIGS), choices=list(HEAD_CONFIGS))
    parser.add_argument("--sizes", "--shapes", nargs="*", default=["512x512", "512x1024"])
    parser.add_argument("--iters", type=int, default=5, help="timed images per round (reference tool: 200)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of ours and the reference")
    parser.add_argument("--xla", action="store_true", help="compile the step with XLA (jit_compile=True)")
    parser.add_argument("--depthwise", choices=("portable", "native"), default="portable",
                        help="model.depthwise_implementation (native: one dilated op where TF can run it)")
    parser.add_argument("--reference-python", help="python of the reference venv (default: MMSEG_REF_VENV)")
    parser.add_argument("--reference-dir", help="the reference kit (default: ../shared/reference)")
    parser.add_argument("--no-reference", action="store_true", help="this project's figures only")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        sizes = [parse_size(text) for text in args.sizes]
    except ValueError as error:
        raise SystemExit(f"--sizes: {error}") from None
    reference = None if args.no_reference else Reference.find(args.reference_python, args.reference_dir)
    threads = len(os.sched_getaffinity(0))
    print(f"machine: {describe_machine()}")
    print(f"this project: XLA {'on' if args.xla else 'off'}, depthwise {args.depthwise}; batch 1, forward + "
          f"argmax + copy, median of {args.iters} after {args.warmup} warm-up, {args.rounds} alternating rounds")
    if reference:
        print(f"reference: {reference.version()} ({reference.folder / 'infer.py'}, {threads} threads)")
    else:
        print(f"reference: not measured -- {'--no-reference' if args.no_reference else Reference.missing_reason}")
    peak = matmul_gflops()
    print(f"2048x2048 float32 matmul: {peak:.1f} GFLOP/s")
    print(f"{'head':11s} {'input':>9s} {'round':>5s} {'GMACs':>6s} {'ours ms':>8s} {'PyTorch ms':>10s} "
          f"{'ours/PT':>8s} {'GFLOP/s':>8s} {'vs matmul':>9s}")
    for head in args.heads:
        config = keras_mv2seg.get_config(HEAD_CONFIGS[head], depthwise_implementation=args.depthwise)
        for shape in sizes:
            for round_index in range(args.rounds):
                macs, times = time_model(config, shape, args.iters, args.warmup, args.xla)
                ours = 1000 * float(np.median(times))
                theirs = float("nan")
                if reference:
                    line, = reference.run("infer.py", "--heads", head, "--sizes", f"{shape[0]}x{shape[1]}",
                                          "--iters", args.iters, "--threads", threads, "--classes",
                                          config.model.num_classes)
                    theirs = line["median_ms"]
                achieved = 2 * macs / (ours / 1000) / 1e9
                print(f"{HEAD_TITLES[head]:11s} {shape[0]:4d}x{shape[1]:<4d} {round_index + 1:5d} {macs / 1e9:6.1f} "
                      f"{ours:8.1f} {theirs:10.1f} {ours / theirs:8.2f} {achieved:8.1f} {achieved / peak:9.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

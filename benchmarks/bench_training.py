#!/usr/bin/env python
"""Training step time and peak memory per head against the PyTorch reference, measured alternately in one run:
the training model (with auxiliary head), the reference recipe's optimizer and loss, random 0..255 images and
labels, global batch 2 at 512x1024 crops by default. Each side runs in its own process per head (so its peak
resident memory is its own): this project, then mmseg 1.2.2 on PyTorch (``../shared/reference/train.py``, the
same recipe and thread count), for ``--rounds`` rounds. Prints the machine, both step times, the ratio
ours/PyTorch (< 1: faster), both peak RSS, and this project's forward-only throughput.

    python benchmarks/bench_training.py [--heads fcn psp aspp sepaspp] [--crop 512 1024] [--batch 2]
        [--steps 3] [--rounds 1] [--reference-python PY] [--no-reference]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kit import HEAD_CONFIGS, HEAD_TITLES, Reference  # noqa: E402


def measure(head, crop, batch, steps):
    import numpy as np
    import tensorflow as tf

    import keras_mv2seg
    from keras_mv2seg.models import build_segmenter
    from keras_mv2seg.training.trainer import compile_model, with_targets

    config = keras_mv2seg.get_config(HEAD_CONFIGS[head], crop_size=tuple(crop), batch_size=batch)
    model = build_segmenter(config, auxiliary=True)
    compile_model(model, config)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, *crop, 3)).astype("float32")
    labels = rng.integers(0, 19, (batch, *crop)).astype("int32")
    data = tf.data.Dataset.from_tensors((images, labels)).repeat().map(with_targets(model))
    import keras

    step_times = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            step_times.append(time.perf_counter() - self.start)

    model.fit(data, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[StepTimer()])
    train_s = float(np.median(step_times[1:]))  # the first step traces
    forward = tf.function(lambda x: model(x, training=False))
    forward(images)
    start = time.perf_counter()
    for _ in range(steps):
        forward(images)["logits"].numpy()
    forward_s = (time.perf_counter() - start) / steps
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"head": head, "train_images_per_s": batch / train_s, "step_s": train_s,
            "forward_images_per_s": batch / forward_s, "peak_rss_mib": peak_mib}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="*", default=list(HEAD_CONFIGS), choices=list(HEAD_CONFIGS))
    parser.add_argument("--crop", nargs=2, type=int, default=(512, 1024))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternations of ours and the reference")
    parser.add_argument("--reference-python", help="python of the reference venv (default: MMSEG_REF_VENV)")
    parser.add_argument("--reference-dir", help="the reference kit (default: ../shared/reference)")
    parser.add_argument("--no-reference", action="store_true", help="this project's figures only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        print(json.dumps(measure(args.child, args.crop, args.batch, args.steps)))
        return 0
    from keras_mv2seg.machine import describe_machine

    reference = None if args.no_reference else Reference.find(args.reference_python, args.reference_dir)
    threads = len(os.sched_getaffinity(0))
    size = f"{args.crop[0]}x{args.crop[1]}"
    print(f"machine: {describe_machine()}")
    print(f"training step, batch {args.batch} at {size}, median of {args.steps} timed steps after one warm-up "
          f"step, {args.rounds} alternating round(s)")
    print(f"reference: {reference.version() + ' (' + str(reference.folder / 'train.py') + ')' if reference else 'not measured -- ' + ('--no-reference' if args.no_reference else Reference.missing_reason)}")
    print(f"{'head':11s} {'round':>5s} {'ours s':>7s} {'PyTorch s':>9s} {'ours/PT':>8s} {'ours GiB':>9s} "
          f"{'PT GiB':>7s} {'fwd img/s':>10s}")
    for head in args.heads:
        for round_index in range(args.rounds):
            command = [sys.executable, __file__, "--child", head, "--crop", *map(str, args.crop), "--batch",
                       str(args.batch), "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(f"{head}: failed\n{done.stderr[-2000:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            theirs = {"median_s_per_step": float("nan"), "peak_rss_gib": float("nan")}
            if reference:
                theirs, = reference.run("train.py", "--heads", head, "--size", size, "--batch", args.batch,
                                        "--steps", args.steps, "--threads", threads)
            print(f"{HEAD_TITLES[head]:11s} {round_index + 1:5d} {r['step_s']:7.2f} {theirs['median_s_per_step']:9.2f} "
                  f"{r['step_s'] / theirs['median_s_per_step']:8.2f} {r['peak_rss_mib'] / 1024:9.2f} "
                  f"{theirs['peak_rss_gib']:7.2f} {r['forward_images_per_s']:10.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

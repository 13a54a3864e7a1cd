#!/usr/bin/env python
"""Training throughput and peak memory per head: the training model (with auxiliary head), the reference
recipe's optimizer and loss, random 0..255 images and labels, global batch 2 at 512x1024 crops by default.
Each head runs in its own process so its peak resident memory is its own. Beside it, the forward-only
throughput of the same model in the same process, as a ratio (training costs about 3x a forward pass).

    python benchmarks/bench_training.py [--heads fcn psp aspp sepaspp] [--crop 512 1024] [--batch 2] [--steps 3]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = {"fcn": "fcn_m-v2-d8_512x1024_80k_cityscapes", "psp": "pspnet_m-v2-d8_512x1024_80k_cityscapes",
           "aspp": "deeplabv3_m-v2-d8_512x1024_80k_cityscapes",
           "sepaspp": "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes"}


def measure(head, crop, batch, steps):
    import numpy as np
    import tensorflow as tf

    import keras_mv2seg
    from keras_mv2seg.models import build_segmenter
    from keras_mv2seg.training.trainer import compile_model, with_targets

    config = keras_mv2seg.get_config(CONFIGS[head], crop_size=tuple(crop), batch_size=batch)
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
    parser.add_argument("--heads", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--crop", nargs=2, type=int, default=(512, 1024))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        print(json.dumps(measure(args.child, args.crop, args.batch, args.steps)))
        return 0
    print(f"training, batch {args.batch} at {args.crop[0]}x{args.crop[1]}, {os.cpu_count()} CPU cores, "
          f"median of {args.steps} timed steps after one tracing step")
    print(f"{'head':8s} {'step s':>7s} {'train img/s':>12s} {'forward img/s':>14s} {'train/forward':>14s} "
          f"{'peak RSS MiB':>13s}")
    for head in args.heads:
        command = [sys.executable, __file__, "--child", head, "--crop", *map(str, args.crop), "--batch",
                   str(args.batch), "--steps", str(args.steps)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"{head}: failed\n{done.stderr[-2000:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{head:8s} {r['step_s']:7.2f} {r['train_images_per_s']:12.3f} {r['forward_images_per_s']:14.3f} "
              f"{r['train_images_per_s'] / r['forward_images_per_s']:14.2f} {r['peak_rss_mib']:13.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

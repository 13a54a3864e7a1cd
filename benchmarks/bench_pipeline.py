#!/usr/bin/env python
"""Input pipeline throughput on Cityscapes-size inputs (1024x2048 PNG image + label): decode and the train
augmentations (rescale 0.5-2.0, crop 512x1024 with the 75 % rule, flip, photometric distortion, pad),
tf.data (this project) side by side with a NumPy/OpenCV implementation of the same steps (the reference's
style) in the same run, as images/s per core and their ratio.

    python benchmarks/bench_pipeline.py [--images 8] [--count 24]
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mv2seg  # noqa: E402
from keras_mv2seg.data import list_samples, make_toy_dataset, train_dataset  # noqa: E402


def opencv_sample(image_path, label_path, rng, crop=(512, 1024), scale=(2048, 1024)):
    """One training sample the reference's way: cv2 decode, rescale, crop (75 % rule), flip, photometric, pad."""
    image = cv2.imread(image_path, cv2.IMREAD_COLOR)
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    ratio = rng.uniform(0.5, 2.0)
    h, w = image.shape[:2]
    factor = min(max(scale) * ratio / max(h, w), min(scale) * ratio / min(h, w))
    size = (int(w * factor + 0.5), int(h * factor + 0.5))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    for _ in range(10):
        top = rng.integers(0, max(label.shape[0] - crop[0], 0) + 1)
        left = rng.integers(0, max(label.shape[1] - crop[1], 0) + 1)
        window = label[top:top + crop[0], left:left + crop[1]]
        values, counts = np.unique(window[window != 255], return_counts=True)
        if len(counts) > 1 and counts.max() / counts.sum() < 0.75:
            break
    image = image[top:top + crop[0], left:left + crop[1]]
    label = window
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    image = image.astype(np.float32)
    if rng.random() < 0.5:
        image = np.clip(image + rng.uniform(-32, 32), 0, 255).astype(np.uint8).astype(np.float32)
    mode = rng.integers(2)
    if mode == 1 and rng.random() < 0.5:
        image = np.clip(image * rng.uniform(0.5, 1.5), 0, 255)
    hsv = cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_BGR2HSV)
    if rng.random() < 0.5:
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        hsv[..., 0] = (hsv[..., 0].astype(int) + rng.integers(-18, 19)) % 180
    image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.float32)
    if mode == 0 and rng.random() < 0.5:
        image = np.clip(image * rng.uniform(0.5, 1.5), 0, 255)
    pad_h, pad_w = crop[0] - image.shape[0], crop[1] - image.shape[1]
    image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
    label = cv2.copyMakeBorder(np.ascontiguousarray(label), 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=255)
    return image, label


def tf_rate(config, samples, count, threads):
    dataset = train_dataset(config, batch_size=1, samples=samples)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.autotune.cpu_budget = threads
    dataset = dataset.with_options(options)
    iterator = iter(dataset)
    next(iterator)  # trace
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    return count / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="distinct generated 1024x2048 images")
    parser.add_argument("--count", type=int, default=24, help="samples timed per pipeline")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as folder:
        root = make_toy_dataset(os.path.join(folder, "city"), train=args.images, val=1, height=1024, width=2048)
        samples, _ = list_samples("cityscapes", root, "train")
        config = keras_mv2seg.get_config("deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes", data_root=root)
        cv2.setNumThreads(1)
        rng = np.random.default_rng(0)
        opencv_sample(samples[0].image, samples[0].label, rng)  # warm up
        start = time.perf_counter()
        for i in range(args.count):
            sample = samples[i % len(samples)]
            opencv_sample(sample.image, sample.label, rng)
        opencv_one = args.count / (time.perf_counter() - start)
        tf_one = tf_rate(config, samples, args.count, 1)
        tf_all = tf_rate(config, samples, args.count, cores)
        cached = config.replace(cache_dir=os.path.join(folder, "cache"))
        tf_cached = tf_rate(cached, samples, args.count, 1)
    from keras_mv2seg.machine import describe_machine

    print(f"machine: {describe_machine()}")
    print(f"decode + train augmentations, 1024x2048 PNG -> 512x1024 crops, {cores} cores")
    print(f"{'pipeline':34s} {'images/s':>9s} {'images/s/core':>14s}")
    print(f"{'NumPy/OpenCV, 1 thread':34s} {opencv_one:9.2f} {opencv_one:14.2f}")
    print(f"{'tf.data, 1 thread':34s} {tf_one:9.2f} {tf_one:14.2f}")
    print(f"{f'tf.data, {cores} threads (AUTOTUNE)':34s} {tf_all:9.2f} {tf_all / cores:14.2f}")
    print(f"{'tf.data, 1 thread, data.cache_dir':34s} {tf_cached:9.2f} {tf_cached:14.2f}")
    print(f"ratio tf.data / OpenCV per core: {tf_one / opencv_one:.2f} (decoded cache: {tf_cached / opencv_one:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

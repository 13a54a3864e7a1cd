"""Speed measurement shared by tools/benchmark.py and benchmarks/: the reference's method (5 warm-up images,
then N timed; each step is forward + resize + argmax + copy to host) and a matmul yardstick."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of GFLOP/s of an n x n float32 matmul: the device's practical peak for dense float32 work."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    product = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    product(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def time_steps(step, inputs, iters: int, warmup: int = 5) -> np.ndarray:
    """Seconds of each of ``iters`` timed calls of ``step(input)`` after ``warmup`` untimed ones; ``step``
    must return host data (NumPy), so the copy to the host is inside the timing."""
    for i in range(warmup):
        step(inputs[i % len(inputs)])
    times = []
    for i in range(iters):
        start = time.perf_counter()
        step(inputs[i % len(inputs)])
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def summarize(times: np.ndarray, macs: int | None) -> dict:
    median = float(np.median(times))
    result = {"median_ms": 1000 * median, "fps": len(times) / float(times.sum())}
    if macs:
        result["gflops"] = 2 * macs / median / 1e9
    return result

"""What the running machine and TensorFlow build can do: the one place that asks.

* :func:`onednn_enabled` -- whether TensorFlow runs its oneDNN (MKL) kernels in this process. TensorFlow turns
  oneDNN on by default only on some x86 CPUs (those with AVX-512 VNNI/BF16 or AMX, at TF 2.21);
  ``TF_ENABLE_ONEDNN_OPTS=0/1`` overrides it before TensorFlow is imported.
* :func:`native_dilated_depthwise_supported` -- whether ``DepthwiseConv2dNative`` with ``dilations`` runs here
  (TensorFlow's own CPU kernel refuses dilations; the oneDNN one accepts them). Probed once, cached.
* :func:`machine_info` / :func:`describe_machine` -- CPU model, the ISA extensions that matter for these models,
  thread count and oneDNN state: every speed figure the project prints carries this line.
* :func:`keep_freed_buffers` -- glibc's malloc told to reuse freed multi-megabyte buffers instead of mapping fresh
  pages for each (the input pipeline allocates several per image), unless the user set malloc's tunables.
* :func:`time_steps` / :func:`summarize` -- the reference's timing method (warm-up images, then N timed; each
  step returns host data), and :func:`matmul_gflops`, the machine's practical float32 peak as a yardstick.
"""

from __future__ import annotations

import functools
import os
import platform
import time

import numpy as np

# ISA extensions that change what the float32 / bfloat16 / int8 kernels can do, in /proc/cpuinfo spelling.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def keep_freed_buffers(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Have glibc's malloc serve allocations below ``mmap_threshold`` bytes from its heap and keep up to
    ``trim_threshold`` bytes of freed memory there, instead of mapping fresh pages for each large buffer and unmapping
    them when freed (its default beyond 128 KiB, raised on the fly to at most 32 MiB; freed memory then goes back to the
    system past twice that). The input pipeline allocates several buffers of 2-8 MB per image (the file, its inflated
    rows, decoded pixels, crops): with the default every first write to each page of them is a page fault, and on 2
    threads the faults contend. Kept, the pipeline ran 19 % faster on 2 threads and 7 % on 1 (``bench_pipeline.py``, a
    2-core Xeon), for a process whose peak memory stays what the pipeline's buffers need. Once per process; not where
    the user set malloc's tunables (``GLIBC_TUNABLES`` with ``glibc.malloc``, ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``) or ``KERAS_MV2SEG_MALLOC=default``, nor under another C library. Returns whether it
    was applied."""
    if os.environ.get("KERAS_MV2SEG_MALLOC") == "default" or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") \
            or any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux: the model string from platform is what we have
        pass
    return model, flags


def onednn_enabled() -> bool | None:
    """True/False when TensorFlow says whether oneDNN is on in this process, None where it cannot say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without the private query
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


@functools.lru_cache(maxsize=None)
def native_dilated_depthwise_supported() -> bool:
    """Whether this TensorFlow can execute a dilated ``DepthwiseConv2dNative`` on the default device, eagerly
    and inside a ``tf.function`` (both paths are tried once per process; the answer is cached)."""
    import tensorflow as tf

    def run(x):
        kernel = tf.ones((3, 3, 2, 1))
        return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=kernel, strides=[1, 1, 1, 1], padding="SAME",
                                                dilations=[1, 2, 2, 1])

    try:
        with tf.init_scope():  # callable from inside a graph being traced (a Keras functional build)
            images = tf.ones((1, 7, 7, 2))
            run(images).numpy()
            tf.function(run, autograph=False)(images).numpy()
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        return False
    return True


def usable_threads() -> int:
    """Logical CPUs this process may run on (its affinity mask where the OS has one): the default thread count
    of every runtime the project drives."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict:
    """CPU model, ISA flags present, logical CPUs usable by this process, TF version, oneDNN state, GPUs."""
    import tensorflow as tf

    model, flags = _cpuinfo()
    threads = usable_threads()
    return {
        "cpu": model,
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "threads": threads,
        "tensorflow": tf.__version__,
        "onednn": onednn_enabled(),
        "onednn_env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
    }


def describe_machine(info: dict | None = None) -> str:
    """One line for benchmark output, e.g. ``AMD EPYC, ISA avx2 fma avx512f avx512_vnni avx512_bf16, 2 threads,
    TF 2.21.0, oneDNN on (TensorFlow default)``."""
    info = info or machine_info()
    onednn = {True: "on", False: "off", None: "unknown"}[info["onednn"]]
    source = (f"TF_ENABLE_ONEDNN_OPTS={info['onednn_env']}" if info["onednn_env"] is not None
              else "TensorFlow default")
    gpus = f", GPUs {' '.join(info['gpus'])}" if info["gpus"] else ""
    return (f"{info['cpu']}, ISA {' '.join(info['isa']) or 'none of ' + '/'.join(ISA_FLAGS)}, "
            f"{info['threads']} threads, TF {info['tensorflow']}, oneDNN {onednn} ({source}){gpus}")


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of GFLOP/s of an n x n float32 matmul: the device's practical peak for dense float32 work."""
    import tensorflow as tf

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

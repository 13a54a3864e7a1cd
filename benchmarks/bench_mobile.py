#!/usr/bin/env python
"""Phone-like timing of the TFLite exports MediaPipe's ImageSegmenter loads: every variant (float32, float16, int8
with uint8 input and scores; scores at full size and at the output stride) at each size, run by LiteRT with
XNNPACK at 1 and 2 threads (what this machine has; phones run 4), beside the same model's float32 Keras latency.

    python benchmarks/bench_mobile.py [--config deeplab_mnv2_cityscapes] [--weights FILE] [--train-iters 300]
                                      [--sizes 257x257 513x513 512x1024] [--threads 1 2] [--iters 10]

Per variant and size: latency (median of --iters after warm-up, one process per measurement), model size,
peak memory the interpreter adds to its process (VmHWM after the runs minus VmRSS before loading), the class
map's agreement with the Keras model's on toy val scenes -- LiteRT's (at-stride variants: against the Keras
logits at the stride) and MediaPipe's category mask (its own resize of the scores included) --, MediaPipe's own
end-to-end ``segment()`` latency, and for the LiteRT GPU delegate: the graph's ops outside the delegate's
documented op list and the verdict of TensorFlow's GPU compatibility analyzer.
Weights (default): the config fine-tuned on the toy dataset for --train-iters from the shared DeepLab fixture's
checkpoint (``benchmarks/kit.py toy_trained``), so that class margins are real ones; int8 is calibrated on 16
toy training scenes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kit import ROOT, parse_size, toy_trained  # noqa: E402

import keras_mv2seg  # noqa: E402
from keras_mv2seg.data.sources import sample_images  # noqa: E402
from keras_mv2seg.export import tflite as tl  # noqa: E402
from keras_mv2seg.export.graph import stride_model  # noqa: E402
from keras_mv2seg.machine import describe_machine, time_steps  # noqa: E402

FIXTURE = ROOT.parent / "shared" / "fixtures" / "deeplab_mnv2_cityscapes" / "model.ckpt"
VARIANTS = {  # name: (quantization, input type, at stride); every variant outputs scores
    "float32": ("float32", "float32", False),
    "float32 at stride": ("float32", "float32", True),
    "float16": ("float16", "float32", False),
    "float16 at stride": ("float16", "float32", True),
    "int8 uint8 io": ("int8", "uint8", False),
    "int8 uint8 io at stride": ("int8", "uint8", True),
}
# The LiteRT GPU delegate's documented op list (ai.google.dev/edge/litert/performance/gpu, "Supported ops"; float
# 16 and 32 bit; quantized models are run by dequantizing their weights).
GPU_DOCUMENTED_OPS = {"ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXP",
                      "FULLY_CONNECTED", "LOGICAL_AND", "LOGISTIC", "LSTM", "MAX_POOL_2D", "MAXIMUM", "MINIMUM",
                      "MUL", "PAD", "PRELU", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "SOFTMAX",
                      "STRIDED_SLICE", "SUB", "TRANSPOSE_CONV", "QUANTIZE", "DEQUANTIZE"}

# One measurement in a fresh process: LiteRT alone (no TensorFlow), so that its peak memory is its own.
CHILD = r"""
import json, sys, time, numpy as np
from ai_edge_litert.interpreter import Interpreter
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
path, threads, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
before = status("VmRSS")
runner = Interpreter(model_path=path, num_threads=threads)
runner.allocate_tensors()
source = runner.get_input_details()[0]
batch = np.random.default_rng(0).uniform(0, 255, source["shape"]).astype(source["dtype"])
times = []
for index in range(iters + 3):
    runner.set_tensor(source["index"], batch)
    start = time.perf_counter()
    runner.invoke()
    if index >= 3:
        times.append(time.perf_counter() - start)
print(json.dumps({"ms": 1000 * float(np.median(times)), "peak_mib": (status("VmHWM") - before) / 2**20}))
"""


def litert_measurement(path, threads: int, iters: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(threads), str(iters)], capture_output=True,
                          text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"LiteRT measurement of {path} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def gpu_verdict(content: bytes) -> str:
    """TensorFlow's GPU delegate compatibility analyzer on the file (its rules for this TFLite version)."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    lines = [line for line in text.getvalue().splitlines() if "GPU" in line]
    compatible = any("looks compatible with GPU delegate" in line for line in lines)
    return "compatible" if compatible else "; ".join(lines[:3]) or "no verdict"


def litert_agreement(content, model, images, at_stride) -> float:
    """Worst class-map agreement of LiteRT with Keras (at-stride files against the Keras logits at the stride)."""
    step, reference = tl.runner(content), stride_model(model) if at_stride else model
    return min(float((step(image[None].astype(np.float32))[0].argmax(-1) ==
                      reference(image[None], training=False).numpy()[0].argmax(-1)).mean()) for image in images)


def mediapipe_run(path, model, images, iters: int):
    """(median ms of ``segment()``, worst agreement of its category mask with Keras) or (None, None)."""
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions
    except ImportError:
        return None, None
    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           output_category_mask=True, output_confidence_masks=False)
    client = vision.ImageSegmenter.create_from_options(options)
    frames = [mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image.astype(np.uint8)))
              for image in images]
    try:
        agreement = min(float((client.segment(frame).category_mask.numpy_view().reshape(image.shape[:2]) ==
                               model(image[None], training=False).numpy()[0].argmax(-1)).mean())
                        for frame, image in zip(frames, images))
        times = []
        for index in range(iters + 2):
            start = time.perf_counter()
            client.segment(frames[0])
            if index >= 2:
                times.append(time.perf_counter() - start)
    finally:
        client.close()
    return 1000 * float(np.median(times)), agreement


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="deeplab_mnv2_cityscapes")
    parser.add_argument("--weights", help="default: the config fine-tuned on the toy dataset (--train-iters) from "
                        "the shared DeepLab fixture's checkpoint where ../shared is present")
    parser.add_argument("--train-iters", type=int, default=300)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(257, 257), (513, 513), (512, 1024)])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    config = keras_mv2seg.get_config(args.config)
    weights = args.weights
    if weights is None:
        start = str(FIXTURE) if FIXTURE.with_suffix(".ckpt.index").is_file() else ""
        _, weights = toy_trained(args.config, args.train_iters, load_from=start)
        weights = str(weights)
    model = keras_mv2seg.build_for_inference(config, weights)
    print(f"machine: {describe_machine()}")
    print(f"model: {config.name}, weights {weights}")
    print("| size | variant | MiB | " + " | ".join(f"LiteRT {t} thr ms" for t in args.threads)
          + " | peak MiB | LiteRT agreement | MediaPipe ms | MediaPipe agreement | ops outside the GPU list "
          "| GPU analyzer |")
    print("|---|---|---:|" + "---:|" * len(args.threads) + "---:|---:|---:|---:|---|---|")
    toy = keras_mv2seg.get_config("toy")
    with tempfile.TemporaryDirectory(prefix="bench_mobile_") as folder:
        for size in args.sizes:
            # whole pixel values, as a camera frame is: MediaPipe takes uint8 images, Keras the same values
            images = [np.round(image).astype(np.uint8).astype(np.float32) for image in
                      sample_images(toy, "val", None, 2, size)]
            keras_step = tf.function(lambda x: model(x, training=False))
            keras_ms = 1000 * float(np.median(time_steps(lambda x: keras_step(x).numpy(),
                                                         [tf.constant(images[0][None])], args.iters)))
            print(f"| {size[0]}x{size[1]} | Keras float32 (TF, all cores) | | {keras_ms:.1f} |"
                  + " |" * (len(args.threads) + 5))
            calibration = None
            for name in args.variants:
                quantization, input_type, at_stride = VARIANTS[name]
                if quantization == "int8" and calibration is None:
                    calibration = sample_images(toy, "train", None, 16, size)
                content = tl.convert(config, model, size, quantization=quantization, output="scores",
                                     input_type=input_type, at_stride=at_stride,
                                     representative_images=calibration if quantization == "int8" else None)
                path = Path(folder) / f"{name.replace(' ', '_')}_{size[0]}x{size[1]}.tflite"
                path.write_bytes(content)
                timings = [litert_measurement(path, threads, args.iters) for threads in args.threads]
                outside = sorted(set(tl.op_names(content)) - GPU_DOCUMENTED_OPS)
                client_ms, client_agreement = mediapipe_run(path, model, images, args.iters)
                print(f"| {size[0]}x{size[1]} | {name} | {len(content) / 2**20:.1f} | "
                      + " | ".join(f"{t['ms']:.1f}" for t in timings)
                      + f" | {max(t['peak_mib'] for t in timings):.0f} | "
                      f"{100 * litert_agreement(content, model, images, at_stride):.2f} % | "
                      + ("- | - | " if client_ms is None else f"{client_ms:.1f} | {100 * client_agreement:.2f} % | ")
                      + f"{' '.join(outside) or 'none'} | {gpu_verdict(content)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

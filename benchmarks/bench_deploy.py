#!/usr/bin/env python
"""Every CPU deployment path of each head beside the PyTorch reference, measured alternately in one run.

For every (head, input size) the model is converted once for each runtime x precision (Keras graph, TFLite,
ONNX Runtime, OpenVINO; float32, bf16, int8), then, for each round, the PyTorch reference
(``../shared/reference/infer.py``: mmseg 1.2.2, float32, the same thread count) and every path are timed one
after another: batch 1, forward + resize + argmax + copy of the class map to the host, median of N after a
warm-up. Printed per path: median latency, ratio to PyTorch's latency in the same round (< 1: faster), the
convolutions' arithmetic rate (GFLOP/s = 2 x conv multiply-adds / latency) as a share of this machine's dense
float32 peak (a 2048x2048 matmul, measured at the start), pixel agreement with the Keras float32 model on two toy
scenes at the input size, how close to a tie the pixels it changes are (the 90th percentile of the float32
top-2 logit margin over the changed pixels, beside the median margin over all pixels), and the model file size;
and the machine (CPU model, ISA flags, threads, oneDNN state). A float32 path with direct convolutions cannot
do fewer multiply-adds than the reference, so its latency ratio is bounded by the peak share PyTorch reaches:
the ``%pk`` column says how close each path is to that physical ceiling. Paths ``...:float32+w4`` (``wino4`` in
the table) compute the dense 3x3 stride-1 convolutions by Winograd F(4x4, 3x3), 4x fewer multiplications there;
their ``%pk`` counts the direct multiply-adds, so it is an effective rate and may pass 100 %.

Weights: the head's Cityscapes architecture trained on the toy data (``kit.toy_trained``,
trained once and reused from work_dirs/), so that the agreement compares logits with real class margins (on
random weights most pixels are near-ties and any rounding flips them); speed does not depend on the weights.
int8 is calibrated on 8 toy scenes at the input size. Accuracy (mIoU) of each path:
``benchmarks/export_quality.py``.

    python benchmarks/bench_deploy.py [--heads fcn psp aspp sepaspp] [--sizes 512x1024 512x512] [--rounds 2]
        [--iters 5] [--paths keras:float32 onnxruntime:int8 openvino:float32+w4 ...] [--reference-python PY]
        [--no-reference]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_mv2seg  # noqa: E402
from kit import HEAD_CONFIGS, HEAD_TITLES, Reference, parse_path, parse_size, path_name, toy_trained  # noqa: E402
from keras_mv2seg.machine import matmul_gflops, time_steps  # noqa: E402
from keras_mv2seg.data.toy import synthetic_image  # noqa: E402
from keras_mv2seg.export.deploy import deploy  # noqa: E402
from keras_mv2seg.machine import usable_threads as threads  # noqa: E402
from keras_mv2seg.flops import conv_macs  # noqa: E402
from keras_mv2seg.machine import describe_machine  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402

DEFAULT_PATHS = ["keras:float32", "tflite:float32", "tflite:int8", "onnxruntime:float32", "onnxruntime:float32+w4",
                 "onnxruntime:int8", "openvino:float32", "openvino:float32+w4", "openvino:bf16", "openvino:int8"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="*", default=list(HEAD_CONFIGS), choices=list(HEAD_CONFIGS))
    parser.add_argument("--sizes", nargs="*", default=["512x1024", "512x512"])
    parser.add_argument("--paths", nargs="*", default=DEFAULT_PATHS, help="backend:precision[+wM] (M: Winograd tile)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the reference and every path")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reference-python", help="python of the reference venv (default: MMSEG_REF_VENV)")
    parser.add_argument("--reference-dir", help="the reference kit (default: ../shared/reference)")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--train-iters", type=int, default=300, help="toy training of each head's weights")
    return parser.parse_args(argv)


def build(head, shape, train_iters: int = 300):
    config, weights = toy_trained(head, train_iters)
    model = keras_mv2seg.build_segmenter(config, input_shape=(*shape, 3), batch_size=1)
    model.set_weights(build_for_inference(config, weights).get_weights())
    return config, model, f"toy-trained {weights}"


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sizes = [parse_size(text) for text in args.sizes]
    paths = [parse_path(text) for text in args.paths]
    reference = None if args.no_reference else Reference.find(args.reference_python, args.reference_dir)
    count = threads()
    print(f"machine: {describe_machine()}")
    print(f"batch 1, forward + argmax + copy, median of {args.iters} after {args.warmup} warm-up, {args.rounds} "
          f"alternating rounds, {count} threads everywhere")
    print(f"reference: {reference.version() + ' float32' if reference else 'not measured -- ' + Reference.missing_reason}")
    peak = matmul_gflops()
    print(f"dense float32 peak (2048x2048 matmul, TensorFlow): {peak:.0f} GFLOP/s")
    print(f"{'head':11s} {'input':>9s} {'path':22s} {'round':>5s} {'ms':>8s} {'PyTorch ms':>10s} {'x PT':>6s} "
          f"{'speed-up':>8s} {'%pk':>4s} {'PT%pk':>5s} {'agree %':>8s} {'flip margin':>11s} {'MiB':>6s}")
    for head in args.heads:
        for shape in sizes:
            config, model, source = build(head, shape, args.train_iters)
            scenes = [synthetic_image(*shape, seed=100 + i) for i in range(2)]
            logits = [model(image, training=False).numpy() for image in scenes]
            expected = [values.argmax(-1) for values in logits]
            margins = [np.diff(np.sort(values, -1)[..., -2:], axis=-1)[..., 0] for values in logits]
            flops = 2 * conv_macs(model)
            calibration = [synthetic_image(*shape, seed=i)[0] for i in range(8)]
            deployed = {}
            for backend, precision, tile in paths:
                try:
                    deployed[(backend, precision, tile)] = deploy(backend, config, model, shape, precision=precision,
                                                                  calibration_images=calibration, num_threads=count,
                                                                  winograd=tile)
                except Exception as error:  # a runtime that cannot compile this graph: reported, not fatal
                    reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                    print(f"{HEAD_TITLES[head]:11s} {shape[0]:4d}x{shape[1]:<4d} "
                          f"{path_name(backend, precision, tile):22s} FAILED: {reason[:160]}", flush=True)
            agreement, flip_margin = {}, {}
            for key, runner in deployed.items():
                changed = [runner(image) != labels for image, labels in zip(scenes, expected)]
                agreement[key] = 1.0 - float(np.mean([mask.mean() for mask in changed]))
                flipped = np.concatenate([margin[mask] for margin, mask in zip(margins, changed)])
                flip_margin[key] = float(np.quantile(flipped, 0.9)) if flipped.size else 0.0
            print(f"# {HEAD_TITLES[head]} {shape[0]}x{shape[1]}: {source}; {flops / 2e9:.1f} GMACs in convolutions; "
                  f"float32 top-2 logit margin: median {np.median(np.concatenate(margins, None)):.2f}", flush=True)
            for round_index in range(args.rounds):
                theirs = float("nan")
                if reference:
                    line, = reference.run("infer.py", "--heads", head, "--sizes", f"{shape[0]}x{shape[1]}", "--iters",
                                          args.iters, "--threads", count, "--classes", config.model.num_classes)
                    theirs = line["median_ms"]
                for key, runner in deployed.items():
                    ours = 1000 * float(np.median(time_steps(runner, scenes, args.iters, args.warmup)))
                    size = runner.size_bytes / 2**20 if runner.size_bytes else float("nan")
                    print(f"{HEAD_TITLES[head]:11s} {shape[0]:4d}x{shape[1]:<4d} {path_name(*key):22s} "
                          f"{round_index + 1:5d} {ours:8.1f} {theirs:10.1f} {ours / theirs:6.2f} {theirs / ours:8.2f} "
                          f"{100 * flops / ours / 1e6 / peak:4.0f} {100 * flops / theirs / 1e6 / peak:5.0f} "
                          f"{100 * agreement[key]:8.2f} {flip_margin[key]:11.2f} "
                          f"{size:6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

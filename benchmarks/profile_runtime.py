#!/usr/bin/env python
"""Where the time goes in one deployment path: the runtime's own per-layer profile, grouped by layer type.

OpenVINO: the CPU plugin's performance counters (``PERF_COUNT``: real time and the kernel each layer ran, e.g.
``jit_avx512_I8`` or ``ref_any_FP32``); ONNX Runtime: its session profiler (per-node kernel times and the
provider's op names). Printed: the total per layer type (share of the summed layer time), the N slowest layers
with their kernel/precision, and the machine. Layers of the same type that run in float inside an int8 model
(a "float island") show up as ``..._FP32`` kernels next to the ``_I8`` ones.

    python benchmarks/profile_runtime.py --head fcn --size 512x1024 --runtime openvino --precision int8
        [--iters 5] [--top 15]
"""

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from kit import HEAD_CONFIGS, parse_size  # noqa: E402
from keras_mv2seg.data.toy import synthetic_image  # noqa: E402
from keras_mv2seg.export import deploy as deployment  # noqa: E402
from keras_mv2seg.export import graph  # noqa: E402
from keras_mv2seg import machine  # noqa: E402
from keras_mv2seg.export import onnx as onnx_export  # noqa: E402
from keras_mv2seg.export import openvino as openvino_export  # noqa: E402
from keras_mv2seg.machine import describe_machine  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deploy import build  # noqa: E402


def openvino_layers(ov_model, precision, image, iters, num_threads):
    """[(name, type, kernel, ms)] averaged over ``iters`` runs after one warm-up."""
    compiled = openvino_export.openvino_compile(ov_model, precision, num_threads, profile=True)
    request = compiled.create_infer_request()
    request.infer({0: image})
    totals = defaultdict(float)
    kinds = {}
    for _ in range(iters):
        request.infer({0: image})
        for info in request.profiling_info:
            if info.status.name == "EXECUTED":
                totals[info.node_name] += info.real_time.total_seconds() * 1000 / iters
                kinds[info.node_name] = (info.node_type, info.exec_type)
    return [(name, *kinds[name], ms) for name, ms in totals.items()]


def onnxruntime_layers(content, image, iters, num_threads):
    ort = graph.require("onnxruntime", "onnx")
    options = onnx_export.onnx_session_options(ort, num_threads)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(iters + 1):
            session.run(None, {name: image})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = defaultdict(list)
    kinds = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"][: -len("_kernel_time")]
            runs[node].append(event["dur"] / 1000)
            kinds[node] = (event["args"].get("op_name", "?"), event["args"].get("provider", "?"))
    return [(node, *kinds[node], float(np.mean(times[1:] or times))) for node, times in runs.items()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", default="fcn", choices=list(HEAD_CONFIGS))
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--runtime", default="openvino", choices=graph.RUNTIMES)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--train-iters", type=int, default=300,
                        help="iterations of the toy training whose weights are profiled (reused from work_dirs/)")
    args = parser.parse_args(argv)
    if args.precision not in deployment.PRECISIONS[args.runtime]:
        parser.error(f"--precision for {args.runtime}: one of {deployment.PRECISIONS[args.runtime]}")
    shape = parse_size(args.size)
    config, model, source = build(args.head, shape, args.train_iters)
    image = synthetic_image(*shape, seed=100)
    calibration = [synthetic_image(*shape, seed=i)[0] for i in range(8)]
    count = machine.usable_threads()
    print(f"machine: {describe_machine()}")
    print(f"{args.head} {args.size} {args.runtime} {args.precision}, {count} threads, mean of {args.iters}; {source}")
    if args.runtime == "openvino":
        ov_model = openvino_export.to_openvino(config, model, shape)
        if args.precision == "int8":
            ov_model = openvino_export.quantize_openvino(ov_model, calibration)
        layers = openvino_layers(ov_model, args.precision, image, args.iters, count)
    else:
        content = onnx_export.to_onnx(config, model, shape)
        if args.precision == "int8":
            content = onnx_export.quantize_onnx(content, calibration)
        layers = onnxruntime_layers(content, image, args.iters, count)
    total = sum(ms for *_, ms in layers)
    by_type = defaultdict(lambda: [0.0, 0])
    for _, kind, kernel, ms in layers:
        by_type[(kind, kernel)][0] += ms
        by_type[(kind, kernel)][1] += 1
    print(f"summed layer time {total:.1f} ms over {len(layers)} layers")
    print(f"{'layer type':24s} {'kernel / provider':28s} {'layers':>6s} {'ms':>8s} {'share':>6s}")
    for (kind, kernel), (ms, count_) in sorted(by_type.items(), key=lambda item: -item[1][0]):
        if ms >= 0.001 * total:
            print(f"{kind:24s} {kernel:28s} {count_:6d} {ms:8.1f} {100 * ms / total:5.1f}%")
    print(f"the {args.top} slowest layers:")
    for name, kind, kernel, ms in sorted(layers, key=lambda row: -row[3])[: args.top]:
        print(f"  {ms:8.1f} ms {100 * ms / total:5.1f}%  {kind:18s} {kernel:24s} {name[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

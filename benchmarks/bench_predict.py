#!/usr/bin/env python
"""Memory and time of ``tools/predict.py`` on large images (peak resident memory, seconds per megapixel), and the
throughput of a folder against mmseg's ``MMSegInferencer`` (``--folder``).

For each size, an image file is generated (a smooth picture with noise: JPEG up to 48 megapixels, PNG above, as
cameras and stitchers write them) and ``tools/predict.py CONFIG WEIGHTS FILE`` runs on it in a process of its own
(decode, compiled network, class map and overlay written band by band); the process's peak RSS
(``ru_maxrss``) and wall time are printed with the machine. The weights are the config's initial ones (memory and
speed do not depend on their values). Also, with ``--eager``, the pre-engine behaviour for the first size: the
model called eagerly on the whole image.

    python benchmarks/bench_predict.py [--config deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes]
        [--sizes 1024x2048 4000x3000 6000x8000 10000x10000] [--scores] [--eager]

With ``--folder N``: N JPEG photos of ``--folder-size`` (default 512x1024) are segmented into class-map and overlay
PNGs by this project (``Segmenter.write_all``, what ``tools/predict.py`` runs on a folder: decoding, the compiled
network and PNG encoding overlapped) and by mmseg's ``MMSegInferencer`` (``benchmarks/reference/predict_folder.py``
under the reference kit: class maps and overlays written to ``out_dir``), alternately for ``--rounds`` rounds, each
in a process of its own after 2 warm-up images, the same head and thread count. Also printed: this project's
network alone on one image of that size (the speed the folder could reach).

    python benchmarks/bench_predict.py --folder 12 [--folder-size 512x1024] [--rounds 2] [--head sepaspp]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from kit import Reference  # noqa: E402

_CHILD = r"""
import json, resource, sys, time
mode, config_name, weights, image, out = sys.argv[1:6]
extra = sys.argv[6:]
started = time.perf_counter()
if mode == "tool":
    sys.argv = ["predict.py", config_name, weights, image, "--out-dir", out, "--overwrite", *extra]
    import runpy
    try:
        runpy.run_path(TOOL, run_name="__main__")
    except SystemExit as exit_:
        if exit_.code:
            raise
elif mode == "folder":  # Segmenter.write_all over a folder, after 2 warm-up images; and the network alone
    from pathlib import Path
    import numpy as np, keras_mv2seg
    segmenter = keras_mv2seg.Segmenter.from_config(config_name, weights)
    paths = sorted(Path(image).iterdir())
    jobs = lambda folder, items: [(p, {"labels": Path(out) / folder / f"{p.stem}_labels.png",
                                       "overlay": Path(out) / folder / f"{p.stem}_overlay.png"}) for p in items]
    list(segmenter.write_all(jobs("warmup", paths[:2]), overwrite=True))
    started = time.perf_counter()
    done = list(segmenter.write_all(jobs("run", paths), overwrite=True))
    seconds = time.perf_counter() - started
    assert all(not isinstance(result, Exception) for _, result, _ in done), done
    pixels = segmenter.read(paths[0])[None].astype(np.float32)
    segmenter.inference.forward(pixels)
    network = time.perf_counter()
    for _ in range(3):
        np.argmax(segmenter.inference.forward(pixels), axis=-1)
    print("RESULT " + json.dumps({"images": len(paths), "seconds": seconds,
                                  "network_seconds": (time.perf_counter() - network) / 3}))
    sys.exit(0)
else:  # the model called eagerly on the whole image, as inference did before the engine
    import numpy as np, keras_mv2seg
    from keras_mv2seg.data.image_files import read_image
    model = keras_mv2seg.build_for_inference(keras_mv2seg.get_config(config_name), weights)
    pixels = read_image(image)[None].astype(np.float32)
    labels = np.argmax(model(pixels, training=False).numpy(), axis=-1)
print("RESULT " + json.dumps({"seconds": time.perf_counter() - started,
                              "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def make_image(path: Path, height: int, width: int, seed: int = 0):
    """A smooth picture with noise, written band by band (the parent never holds it whole either)."""
    import numpy as np

    from keras_mv2seg.predictor.outputs import PngRows

    rng = np.random.default_rng(seed)
    if path.suffix == ".png":
        with PngRows(path, height, width, 3) as png:
            for start in range(0, height, 512):
                rows = np.arange(start, min(start + 512, height))[:, None, None]
                columns = np.arange(width)[None, :, None]
                band = (127 + 60 * np.sin(rows / 300 + np.arange(3)) + 60 * np.cos(columns / 450)
                        + rng.normal(0, 8, (len(rows), width, 3)))
                png.write(np.clip(band, 0, 255).astype(np.uint8))
        return
    import tensorflow as tf

    rows = np.arange(height)[:, None, None]
    columns = np.arange(width)[None, :, None]
    image = np.clip(127 + 60 * np.sin(rows / 300 + np.arange(3)) + 60 * np.cos(columns / 450)
                    + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
    path.write_bytes(tf.io.encode_jpeg(image, quality=90).numpy())


def run_child(mode, config, weights, image, out, extra):
    code = _CHILD.replace("TOOL", repr(str(ROOT / "tools" / "predict.py")))
    done = subprocess.run([sys.executable, "-c", code, mode, config, str(weights), str(image), str(out), *extra],
                          capture_output=True, text=True, cwd=ROOT)
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if done.returncode or line is None:
        return {"error": (done.stderr.strip().splitlines() or ["killed"])[-1], "status": done.returncode}
    return json.loads(line[len("RESULT "):])


def folder_throughput(args, argv):
    import keras_mv2seg
    from keras_mv2seg.machine import describe_machine

    print(f"machine: {describe_machine()}")
    print(f"command: python benchmarks/bench_predict.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    reference = None if args.no_reference else Reference.find(args.reference_python)
    print(f"reference: {reference.version() if reference else 'not run: ' + (Reference.missing_reason or 'asked')}")
    height, width = (int(v) for v in args.folder_size.split("x"))
    config_name = args.config
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        images = folder / "photos"
        images.mkdir()
        for index in range(args.folder):
            make_image(images / f"photo_{index:04d}.jpg", height, width, seed=index)
        config = keras_mv2seg.get_config(config_name)
        weights = folder / "init.weights.h5"
        keras_mv2seg.save_weights(keras_mv2seg.build_segmenter(config), weights, config)
        print(f"{args.folder} JPEG photos of {width}x{height}, {config_name}, class maps and overlays written")
        ours, theirs = [], []
        for round_ in range(args.rounds):
            result = run_child("folder", config_name, weights, images, folder / f"ours_{round_}", [])
            if "error" in result:
                print(f"round {round_ + 1}: ours failed: {result['error']}")
                return
            ours.append(result["images"] / result["seconds"])
            line = (f"round {round_ + 1}: ours {ours[-1]:.3f} images/s (network alone "
                    f"{1 / result['network_seconds']:.3f} images/s)")
            if reference:
                script = Path(__file__).resolve().parent / "reference" / "predict_folder.py"
                command = [str(reference.python), str(script), str(images), str(folder / f"mmseg_{round_}"),
                           "--head", config.model.head, "--classes", str(config.model.num_classes)]
                done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
                lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
                if done.returncode or not lines:
                    line += f"; mmseg failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
                else:
                    theirs.append(lines[-1]["images_per_s"])
                    line += f"; mmseg MMSegInferencer {theirs[-1]:.3f} images/s; ratio {ours[-1] / theirs[-1]:.2f}x"
            print(line, flush=True)
        if theirs:
            ratios = [a / b for a, b in zip(ours, theirs)]
            print(f"ours / mmseg throughput: {min(ratios):.2f}-{max(ratios):.2f}x (> 1: faster than mmseg)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes")
    parser.add_argument("--sizes", nargs="*", default=["1024x2048", "4000x3000", "6000x8000", "10000x10000"])
    parser.add_argument("--scores", action="store_true", help="also write the float16 probabilities")
    parser.add_argument("--eager", action="store_true", help="also the model called eagerly on the first size")
    parser.add_argument("--folder", type=int, help="throughput on a folder of this many photos, against mmseg")
    parser.add_argument("--folder-size", default="512x1024")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reference-python", help="the reference kit's python (default: its setup.sh venv)")
    parser.add_argument("--no-reference", action="store_true", help="--folder: this project alone")
    args = parser.parse_args(argv)

    if args.sizes:
        memory_table(args, argv)
    if args.folder:
        folder_throughput(args, argv)


def memory_table(args, argv):
    import keras_mv2seg
    from keras_mv2seg.machine import describe_machine

    print(f"machine: {describe_machine()}")
    print(f"command: python benchmarks/bench_predict.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        config = keras_mv2seg.get_config(args.config)
        weights = folder / "init.weights.h5"
        keras_mv2seg.save_weights(keras_mv2seg.build_segmenter(config), weights, config)
        print(f"config {args.config}: test mode {config.data.test_mode}, window {config.data.crop_size}")
        print(f"{'size':>12s} {'megapixels':>10s} {'file':>5s} {'seconds':>8s} {'s/MP':>6s} {'peak RSS GiB':>12s}")
        rows = []
        for size in args.sizes:
            height, width = (int(v) for v in size.split("x"))
            image = folder / f"image_{size}.{'jpg' if height * width <= 48_000_000 else 'png'}"
            make_image(image, height, width)
            started = time.perf_counter()
            result = run_child("tool", args.config, weights, image, folder / "out", ["--scores"] if args.scores else [])
            megapixels = height * width / 1e6
            if "error" in result:
                print(f"{size:>12s} {megapixels:10.1f} {image.suffix[1:]:>5s} failed (status {result['status']}): "
                      f"{result['error']} after {time.perf_counter() - started:.0f} s")
                continue
            rows.append((size, result))
            print(f"{size:>12s} {megapixels:10.1f} {image.suffix[1:]:>5s} {result['seconds']:8.1f} "
                  f"{result['seconds'] / megapixels:6.2f} {result['peak_gib']:12.2f}", flush=True)
            image.unlink()
            if args.eager and size == args.sizes[0]:
                make_image(image, height, width)
                eager = run_child("eager", args.config, weights, image, folder / "out", [])
                print(f"{'(eager)':>12s} {megapixels:10.1f} {image.suffix[1:]:>5s} "
                      + (f"{eager['seconds']:8.1f} {eager['seconds'] / megapixels:6.2f} {eager['peak_gib']:12.2f}"
                         if "error" not in eager else f"failed: {eager['error']}"), flush=True)
                image.unlink()
        if rows:
            base = rows[0][1]["peak_gib"]
            print("peak RSS relative to the first size: "
                  + ", ".join(f"{size} {result['peak_gib'] / base:.2f}x" for size, result in rows))


if __name__ == "__main__":
    main()

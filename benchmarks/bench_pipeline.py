#!/usr/bin/env python
"""Input pipeline throughput on Cityscapes-size files, this project's tf.data against mmseg 1.2.2's own pipeline,
same files, same run, alternately: 1024x2048 PNG image + label pairs (``make_toy_dataset(..., height=1024,
width=2048)``), the Cityscapes train transforms (decode, rescale 0.5-2.0, crop 512x1024 with the 75 % rule, flip,
photometric distortion, pad, batch).

    python benchmarks/bench_pipeline.py [--images 8] [--count 24] [--rounds 2] [--root DIR]
        [--reference-python PY] [--reference-dir DIR] [--no-reference]

Per round: this project on 1 thread, mmseg on 1 core (``reference/pipeline_stages.py``, the reference kit's
python), this project on 2 threads, this project on 1 thread from the decoded-sample cache (``data.cache_dir``).
Each side in its own process. Prints the milliseconds per image of each stage on both sides (timed one stage at a
time on the same samples; this project decodes an image's rows down to the last one its crop window reads; the
decode of every row, and the whole-image rescale it did before, are timed beside), the images/s of each whole
pipeline (tf.data: ``train_dataset``, batch 2, its private thread pool and intra-op threads set to the thread
count), the ratios per core, the cache's size and the machine.
The images are generated once into ``--root`` (default ``work_dirs/pipeline_city``) and reused.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from kit import Reference, add_reference_arguments, run_checked

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["decode image", "decode label", "check label", "rescale + crop", "flip", "photometric", "pad",
          "whole-image decode", "whole-image rescale"]


def worker(root: str, count: int, threads: int, cache: str) -> dict:
    """This project's side in this process: per-stage times and the whole tf.data pipeline's rate."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras_mv2seg
    from keras_mv2seg.data import augment, list_samples, train_dataset
    from keras_mv2seg.machine import keep_freed_buffers

    keep_freed_buffers()  # as train_dataset does, so that the stages are timed as the pipeline runs them
    from keras_mv2seg.data.decode import ImageFile, decode_image, decode_label, kind_index
    from keras_mv2seg.data.pipeline import check_label_values, pad_pixel

    config = keras_mv2seg.get_config("deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes").replace(data_root=root)
    if cache:
        config = config.replace(cache_dir=cache)
    data = config.data
    samples, _ = list_samples("cityscapes", root, "train")
    result = {"threads": threads, "cache": bool(cache)}
    if cache:  # fill the cache first (decoding every file once), not timed as the pipeline
        start = time.perf_counter()
        next(iter(train_dataset(config, batch_size=1, samples=samples)))
        result["cache_fill_s"] = time.perf_counter() - start
        result["cache_gb"] = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file()) / 1e9
    else:
        kind = kind_index(samples[0].label_kind)
        window = tf.function(lambda label, frame, seed: augment.rescale_crop_window(
            label, frame, seed, seed + 1, data.base_scale, data.crop_size, data.ratio_range, data.cat_max_ratio,
            data.ignore_index))
        stage = {  # training decodes the image's rows down to the last its crop window reads
            "decode image": tf.function(lambda path, rows: ImageFile(path).pixels(rows)),
            "whole-image decode": tf.function(lambda path: decode_image(path, tf.uint8)),
            "decode label": tf.function(lambda path: decode_label(path, kind)),
            "check label": tf.function(lambda label, path: check_label_values(label, path, config)),
            "rescale + crop": tf.function(lambda image, label, seed: augment.random_rescale_crop(
                image, label, seed, seed + 1, data.base_scale, data.crop_size, data.ratio_range, data.cat_max_ratio,
                data.ignore_index, flip=augment.flip_decision(seed + 2))),  # the flip is read into the crop
            "whole-image rescale": tf.function(lambda image, label, seed: augment.random_crop(
                *augment.random_rescale(image, label, seed, data.base_scale, data.ratio_range), seed + 1,
                data.crop_size, data.cat_max_ratio, data.ignore_index)),
            "photometric": tf.function(lambda image, seed: augment.photometric_distortion(image, seed)),
            "pad": tf.function(lambda image, label: augment.pad_to_size(image, label, data.crop_size,
                                                                        pad_pixel(config), data.ignore_index)),
        }
        seconds = dict.fromkeys(STAGES, 0.0)

        def timed(name, *args):
            start = time.perf_counter()
            out = stage[name](*args)
            seconds[name] += time.perf_counter() - start
            return out

        warm_up = 8  # tracing, and each XLA step compiled (a photometric step runs on half the samples)
        for i in range(count + warm_up):
            if i == warm_up:
                seconds = dict.fromkeys(STAGES, 0.0)
            sample, seed = samples[i % len(samples)], tf.constant([i, 11], tf.int64)
            label = timed("decode label", tf.constant(sample.label))  # tensors: one trace for every file
            label = timed("check label", label, tf.constant(sample.label))
            image = timed("whole-image decode", tf.constant(sample.image))
            size, top, _ = window(label, tf.shape(image)[:2], seed)  # the window training draws (not timed)
            rows = augment.source_rows_read(tf.shape(image)[0], size, top, data.crop_size)
            timed("decode image", tf.constant(sample.image), rows)
            timed("whole-image rescale", image, label, seed)
            image, label = timed("rescale + crop", image, label, seed)
            image = timed("photometric", image, seed + 3)
            timed("pad", image, label)
        result["ms_per_image"] = {k: 1000 * v / count for k, v in seconds.items()}
    dataset = train_dataset(config, batch_size=2, samples=samples)

    def rate(intra_op_one: bool) -> float:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.autotune.cpu_budget = threads
        if intra_op_one:
            options.threading.max_intra_op_parallelism = 1
        iterator = iter(dataset.with_options(options))
        for _ in range(12):  # trace, compile (the crop once per source height it meets: 8 for 1024 rows), fill
            next(iterator)
        start = time.perf_counter()
        for _ in range(max(count // 2, 1)):
            next(iterator)
        return 2 * max(count // 2, 1) / (time.perf_counter() - start)

    result["images_per_s"] = rate(False)
    if threads > 1:  # each element's ops on one thread, the elements in parallel
        result["images_per_s_intra_op_1"] = rate(True)
    return result


def run_worker(args, threads: int, cache: str = "") -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(threads), "--root", args.root,
               "--count", str(args.count)]
    if cache:
        command += ["--cache", cache]
    return json.loads(run_checked(command, {"PYTHONPATH": str(ROOT)}).strip().splitlines()[-1])


def run_reference(reference, args) -> dict:
    command = [str(reference.python), str(ROOT / "benchmarks" / "reference" / "pipeline_stages.py"), args.root,
               "--images", str(args.count)]
    output = run_checked(command, {"REFERENCE_DIR": str(reference.folder), "OMP_NUM_THREADS": "1"})
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="distinct generated 1024x2048 images")
    parser.add_argument("--count", type=int, default=24, help="samples timed per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--root", default="work_dirs/pipeline_city")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="", help=argparse.SUPPRESS)
    add_reference_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        print(json.dumps(worker(args.root, args.count, args.worker, args.cache)))
        return 0
    sys.path.insert(0, str(ROOT))
    from keras_mv2seg.data import make_toy_dataset
    from keras_mv2seg.machine import describe_machine

    args.root = str(make_toy_dataset(Path(args.root).resolve(), train=args.images, val=1, height=1024, width=2048))
    reference = None if args.no_reference else Reference.find(args.reference_python, args.reference_dir)
    cache = str(Path(args.root).parent / (Path(args.root).name + "_cache"))
    print(f"machine: {describe_machine()}")
    print(f"{args.images} generated 1024x2048 PNG pairs in {args.root}; {args.count} samples per measurement; "
          f"{args.rounds} rounds, alternating")
    print(f"reference: {reference.version() if reference else 'not run -- ' + (Reference.missing_reason or '--no-reference')}")
    runs = {"ours 1": [], "mmseg 1": [], "ours 2": [], "ours 1 cached": []}
    for round_ in range(args.rounds):
        runs["ours 1"].append(run_worker(args, 1))
        if reference:
            runs["mmseg 1"].append(run_reference(reference, args))
        runs["ours 2"].append(run_worker(args, 2))
        runs["ours 1 cached"].append(run_worker(args, 1, cache))
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {r[-1]['images_per_s']:.2f} images/s"
                                                  for name, r in runs.items() if r), flush=True)
    print("\nms per image, stage by stage (1 thread / 1 core; mean of the rounds)")
    mine = {k: sum(r["ms_per_image"][k] for r in runs["ours 1"]) / args.rounds for k in STAGES}
    theirs = ({k: sum(r["ms_per_image"][k] for r in runs["mmseg 1"]) / args.rounds
               for k in runs["mmseg 1"][0]["ms_per_image"]} if reference else {})
    their_stage = {"decode image": ["decode image"], "decode label": ["decode label"], "check label": [],
                   "rescale + crop": ["rescale", "crop"], "flip": ["flip"], "photometric": ["photometric"],
                   "pad": ["pack", "normalise, pad, batch"]}
    print(f"  {'stage':44s} {'keras_mv2seg':>13s} {'mmseg':>9s}")
    for name in STAGES:
        other = sum(theirs.get(k, 0.0) for k in their_stage.get(name, [])) if theirs else float("nan")
        label = {"pad": "pad (mmseg: pack + normalise, pad, batch)", "flip": "flip (ours: in the crop)",
                 "check label": "check label values (mmseg: none)", "rescale + crop": "rescale + crop (ours: + flip)",
                 "decode image": "decode image (ours: the rows the crop reads)"}.get(name, name)
        beside = {"whole-image decode": "decode image, every row",
                  "whole-image rescale": "whole-image rescale (before)"}
        print(f"  {label:44s} {mine[name]:13.1f} {other:9.1f}" if name in their_stage
              else f"  {beside[name]:44s} {mine[name]:13.1f}")
    print("\nwhole pipeline, images/s (min .. max over the rounds)")
    rates = {name: [r["images_per_s"] for r in results] for name, results in runs.items() if results}
    for name, values in rates.items():
        threads = int(name.split()[1])
        print(f"  {name:16s} {min(values):6.2f} .. {max(values):6.2f}   per core {min(values) / threads:6.2f} .. "
              f"{max(values) / threads:6.2f}")
    if reference:
        low, high = min(rates["mmseg 1"]), max(rates["mmseg 1"])
        for name in ("ours 1", "ours 2", "ours 1 cached"):
            threads = int(name.split()[1])
            print(f"  ratio {name} per core / mmseg: {min(rates[name]) / threads / high:.2f} .. "
                  f"{max(rates[name]) / threads / low:.2f}")
    intra = [r["images_per_s_intra_op_1"] for r in runs["ours 2"] if "images_per_s_intra_op_1" in r]
    if intra:
        print(f"  ours 2, max_intra_op_parallelism 1: {min(intra):6.2f} .. {max(intra):6.2f} (against "
              f"{min(rates['ours 2']):.2f} .. {max(rates['ours 2']):.2f} with tf.data's default)")
    print(f"  decoded-sample cache: {runs['ours 1 cached'][0]['cache_gb']:.2f} GB for {args.images} images "
          f"(filled in {runs['ours 1 cached'][0]['cache_fill_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

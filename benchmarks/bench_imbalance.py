#!/usr/bin/env python
"""Losses for imbalanced data against the PyTorch reference: the `toy` recipe trained with plain cross-entropy,
class-weighted cross-entropy, OHEM and cross-entropy + Dice, by this project (``tools/train.py toy --cfg-options
decode_loss=... sampler=...``) and by mmseg 1.2.2 (``../shared/reference/train_toy.py`` with ``DECODE_LOSS`` /
``SAMPLER``, the same JSON), alternately, per seed. The toy data has rare classes: class 11 ("person") covers
0.4 % of the training pixels and class 8 ("vegetation") 2 %; the table prints their IoU and the mIoU at every
validation (100/200/300) side by side, and the mean over seeds.

    python benchmarks/bench_imbalance.py [--losses ce class_weight ohem ce_dice] [--seeds 0 1]
        [--work-root work_dirs/imbalance] [--max-iters 300] [--rare 11 8] [--reference-python PY] [--no-reference]

The class weights are median-frequency balancing of the toy training labels (``w_c = median(f) / f_c`` over the
classes present, capped at 10; absent classes 1). mmseg 1.2.2 cannot train class-weighted cross-entropy on data
with ignored pixels (its ``cross_entropy`` indexes the weights by the ignore label: IndexError; the toy labels
have 6 % ignored pixels), so that row is this project's only. Each run has its own work dir (a finished run is
read back, so the command resumes); runs take minutes each on a CPU.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from kit import Reference, add_reference_arguments, toy_runs_setup, train_toy_ours, train_toy_reference

ROOT = Path(__file__).resolve().parents[1]
LOSSES = {  # name -> (decode_loss, sampler), mmseg's syntax on both sides
    "ce": ({"type": "CrossEntropyLoss"}, None),
    "class_weight": ("CLASS_WEIGHTED", None),
    "ohem": ({"type": "CrossEntropyLoss"}, {"type": "OHEMPixelSampler", "thresh": 0.7, "min_kept": 10000}),
    "ce_dice": ([{"type": "CrossEntropyLoss", "loss_weight": 1.0},
                 {"type": "DiceLoss", "use_sigmoid": False, "loss_weight": 3.0}], None),
}
REFERENCE_CANNOT = {"class_weight": "mmseg 1.2.2 raises IndexError for class_weight with ignored pixels"}


def median_frequency_weights(data_root: Path, classes: int = 19, cap: float = 10.0) -> list[float]:
    from PIL import Image

    counts = np.zeros(256, np.int64)
    for path in sorted((data_root / "gtFine" / "train").glob("*/*_labelTrainIds.png")):
        counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    frequency = counts[:classes] / counts[:classes].sum()
    present = frequency > 0
    median = np.median(frequency[present])
    return [round(float(min(median / f, cap)), 4) if f > 0 else 1.0 for f in frequency]


def ours(decode, sampler, seed, work, max_iters):
    options = [f"decode_loss={json.dumps(decode)}"] + ([f"sampler={json.dumps(sampler)}"] if sampler else [])
    return {r["iteration"]: {"mIoU": 100 * r["mIoU"], "IoU": [None if v is None else 100 * v for v in r["IoU"]]}
            for r in train_toy_ours(work, seed, max_iters, options)}


def theirs(reference, decode, sampler, seed, work, data_root, max_iters):
    env = {"DECODE_LOSS": json.dumps(decode), **({"SAMPLER": json.dumps(sampler)} if sampler else {})}
    data = train_toy_reference(reference, work, seed, data_root, max_iters, env)
    return {int(k): {"mIoU": float(v), "IoU": data["IoU"][k]} for k, v in data["mIoU"].items()}


def cell(curve, step, rare):
    if step not in curve:
        return "-"
    values = [curve[step]["IoU"][c] for c in rare]
    return " / ".join("  nan" if v is None else f"{v:5.1f}" for v in values) + f" | {curve[step]['mIoU']:5.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", nargs="+", choices=tuple(LOSSES), default=list(LOSSES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--work-root", default="work_dirs/imbalance")
    parser.add_argument("--max-iters", type=int, default=300)
    parser.add_argument("--rare", nargs="+", type=int, default=[11, 8], help="the classes whose IoU is printed")
    add_reference_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    from keras_mv2seg.machine import describe_machine

    data_root, reference = toy_runs_setup(args)
    weights = median_frequency_weights(data_root)
    work_root = Path(args.work_root)
    print(f"machine: {describe_machine()}")
    print(f"toy recipe, {args.max_iters} iterations, data {data_root}, seeds {args.seeds}; class weights {weights}")
    print(f"reference: {reference.version() if reference else 'not run -- ' + Reference.missing_reason}")
    curves = {}  # (loss, side) -> {seed: curve}
    for seed in args.seeds:
        for loss in args.losses:
            decode, sampler = LOSSES[loss]
            if decode == "CLASS_WEIGHTED":
                decode = {"type": "CrossEntropyLoss", "class_weight": weights}
            curves.setdefault((loss, "keras_mv2seg"), {})[seed] = ours(
                decode, sampler, seed, work_root / f"ours_{loss}_s{seed}", args.max_iters)
            if reference and loss not in REFERENCE_CANNOT:
                curves.setdefault((loss, "mmseg"), {})[seed] = theirs(
                    reference, decode, sampler, seed, work_root / f"mmseg_{loss}_s{seed}", data_root, args.max_iters)
            for side in ("keras_mv2seg", "mmseg"):
                if seed in curves.get((loss, side), {}):
                    curve = curves[(loss, side)][seed]
                    print(f"seed {seed} {loss:12s} {side:12s} " + "   ".join(
                        f"it {step}: {cell(curve, step, args.rare)}" for step in sorted(curve)), flush=True)
    steps = sorted({step for runs in curves.values() for curve in runs.values() for step in curve})
    print(f"\nmean over seeds: IoU of classes {' / '.join(map(str, args.rare))} | mIoU (percent)")
    print(f"| loss | side | {' | '.join(f'it {s}' for s in steps)} |")
    print(f"|---|---|{'---|' * len(steps)}")
    for loss in args.losses:
        for side in ("keras_mv2seg", "mmseg"):
            runs = curves.get((loss, side))
            if not runs:
                note = REFERENCE_CANNOT.get(loss, "not run") if side == "mmseg" else "not run"
                print(f"| {loss} | {side} | {note} |")
                continue
            row = []
            for step in steps:
                rare = [np.nanmean([np.nan if c[step]["IoU"][k] is None else c[step]["IoU"][k] for c in runs.values()])
                        for k in args.rare]
                miou = [c[step]["mIoU"] for c in runs.values()]
                spread = f" ({min(miou):.1f}..{max(miou):.1f})" if len(miou) > 1 else ""
                row.append(" / ".join(f"{v:.1f}" for v in rare) + f" \\| {np.mean(miou):.1f}{spread}")
            print(f"| {loss} | {side} | {' | '.join(row)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Learning curve against the PyTorch reference: the `toy` recipe (DeepLabV3+ M-V2-D8, 64-channel heads,
128x128 crops, batch 8, SGD 0.01 / 0.9 / 5e-4, poly, 300 iterations, random init) trained on the same toy
files by this project and by mmseg 1.2.2 (``../shared/reference/train_toy.py``, mmengine Runner), alternately,
for several seeds. Prints val mIoU at every validation step (every --val-interval iterations) for each run, then
per side the mean, the spread (min..max, sample std) and the seed standard error per step, the training loss
averaged over each validation interval (decode + 0.4 aux, both sides), and per step whether this project's mean
lies inside the reference's seed range and how many standard errors (of the difference of the two means) apart
the two means are.

    python benchmarks/bench_learning_curve.py [--seeds 0 1 2] [--work-root work_dirs/learning_curve]
        [--max-iters 300] [--val-interval 100] [--init reference|keras] [--reference-python PY] [--no-reference]

Each run has its own work dir under --work-root (``ours_<init>_v<interval>_s<seed>``, ``mmseg_v<interval>_s<seed>``;
the default interval keeps the older names); a finished run is read back, not retrained, so the command can be
resumed. Runs take minutes each on a CPU.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from kit import Reference, add_reference_arguments, toy_runs_setup, train_toy_ours, train_toy_reference

ROOT = Path(__file__).resolve().parents[1]


def ours(seed, work, max_iters, init, val_interval):
    options = [f"init={init}"] if init != "reference" else []
    options.append(f"log_interval={val_interval}")  # the loss logged at each validation: its interval's mean
    records = train_toy_ours(work, seed, max_iters, options, val_interval)
    return {r["iteration"]: 100 * r["mIoU"] for r in records}, our_losses(work)


def our_losses(work) -> dict[int, float]:
    """The training loss that Keras reports at the end of each fit epoch (the mean over the epoch's iterations,
    one epoch per validation interval here), from the run's TensorBoard log."""
    import tensorflow as tf

    losses = {}
    for events in sorted((Path(work) / "logs" / "train").glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.tag == "loss":
                    losses[int(event.step)] = float(tf.make_ndarray(value.tensor))
    return losses


def theirs(reference, seed, work, data_root, max_iters, val_interval):
    result = train_toy_reference(reference, work, seed, data_root, max_iters, val_interval=val_interval)
    return {int(k): float(v) for k, v in result["mIoU"].items()}, reference_losses(work, val_interval)


def reference_losses(work, interval, smoothing: int = 10) -> dict[int, float]:
    """mmseg's training loss per iteration averaged over each validation interval. mmengine logs, at each
    iteration, the mean of the last ``smoothing`` iterations' losses (its LogProcessor's ``window_size``, 10 by
    default): the per-iteration losses are recovered from those running means exactly
    (``l_i = w * (s_i - s_(i-1)) + l_(i-w)``, with the shorter windows of the first iterations)."""
    smoothed = {}
    for scalars in sorted(Path(work).glob("*/vis_data/scalars.json")):
        for line in scalars.read_text().splitlines():
            entry = json.loads(line)
            if "loss" in entry and "iter" in entry:
                smoothed[int(entry["iter"])] = float(entry["loss"])
    if sorted(smoothed) != list(range(1, len(smoothed) + 1)):
        return {}  # not logged every iteration
    losses = {}
    for i in range(1, len(smoothed) + 1):
        if i <= smoothing:
            losses[i] = i * smoothed[i] - (i - 1) * smoothed.get(i - 1, 0.0)
        else:
            losses[i] = smoothing * (smoothed[i] - smoothed[i - 1]) + losses[i - smoothing]
    windows = {}
    for iteration, loss in losses.items():
        windows.setdefault(-(-iteration // interval) * interval, []).append(loss)
    return {end: float(np.mean(values)) for end, values in sorted(windows.items()) if len(values) == interval}


def summarize(label, curves, steps, unit=""):
    print(f"{label}:")
    rows = {}
    for step in steps:
        values = np.array([curve[step] for curve in curves.values() if step in curve])
        if not len(values):
            continue
        rows[step] = values
        std = values.std(ddof=1) if len(values) > 1 else float("nan")
        print(f"  it {step:4d}: mean {values.mean():6.2f}{unit}  range {values.min():6.2f} .. {values.max():6.2f}  "
              f"std {std:5.2f}  se {std / len(values) ** 0.5:5.2f}  ({' / '.join(f'{v:.2f}' for v in values)})")
    return rows


def _separation(a, b) -> float:
    """(mean a - mean b) in standard errors of that difference (Welch); nan with fewer than 2 seeds a side."""
    spread = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if len(a) > 1 and len(b) > 1 else 0.0
    return float((a.mean() - b.mean()) / spread) if spread > 0 else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work-root", default="work_dirs/learning_curve")
    parser.add_argument("--max-iters", type=int, default=300)
    parser.add_argument("--val-interval", type=int, default=100, help="validate every N iterations (both sides)")
    parser.add_argument("--init", choices=("reference", "keras"), default="reference",
                        help="this project's model.init (keras: Keras' default initialisers)")
    add_reference_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    from keras_mv2seg.machine import describe_machine

    data_root, reference = toy_runs_setup(args)
    work_root = Path(args.work_root)
    print(f"machine: {describe_machine()}")
    print(f"toy recipe, {args.max_iters} iterations, data {data_root}, seeds {args.seeds}, this project's init "
          f"{args.init!r}")
    print(f"reference: {reference.version() if reference else 'not run -- ' + Reference.missing_reason}")
    mine, ref, mine_loss, ref_loss = {}, {}, {}, {}
    tag = "" if args.val_interval == 100 else f"_v{args.val_interval}"
    for seed in args.seeds:
        mine[seed], mine_loss[seed] = ours(seed, work_root / f"ours_{args.init}{tag}_s{seed}", args.max_iters,
                                           args.init, args.val_interval)
        print(f"seed {seed} keras_mv2seg: " + " / ".join(f"{v:.2f}" for _, v in sorted(mine[seed].items())),
              flush=True)
        if reference:
            ref[seed], ref_loss[seed] = theirs(reference, seed, (work_root / f"mmseg{tag}_s{seed}").resolve(),
                                               data_root, args.max_iters, args.val_interval)
            print(f"seed {seed} mmseg:        " + " / ".join(f"{v:.2f}" for _, v in sorted(ref[seed].items())),
                  flush=True)
    steps = sorted(set().union(*(c.keys() for c in mine.values())))
    print("val mIoU (%)")
    ours_rows = summarize("keras_mv2seg", mine, steps)
    print("training loss, mean over each validation interval")
    ours_loss_rows = summarize("keras_mv2seg", mine_loss, steps)
    if ref:
        ref_loss_rows = summarize("mmseg 1.2.2", ref_loss, steps)
        print("val mIoU (%)")
        ref_rows = summarize("mmseg 1.2.2", ref, steps)
        for step in steps:
            low, high = ref_rows[step].min(), ref_rows[step].max()
            inside = low - 0.005 <= ours_rows[step].mean() <= high + 0.005  # to the printed 0.01
            loss_gap = (ours_loss_rows[step].mean() - ref_loss_rows[step].mean()
                        if step in ours_loss_rows and step in ref_loss_rows else float("nan"))
            print(f"  it {step:4d}: keras_mv2seg mean {ours_rows[step].mean():.2f} "
                  f"{'inside' if inside else 'OUTSIDE'} the reference's seed range {low:.2f} .. {high:.2f}; "
                  f"difference of means {ours_rows[step].mean() - ref_rows[step].mean():+.2f} "
                  f"({_separation(ours_rows[step], ref_rows[step]):+.1f} se); training loss {loss_gap:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

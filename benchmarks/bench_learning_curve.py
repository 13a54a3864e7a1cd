#!/usr/bin/env python
"""Learning curve against the PyTorch reference: the `toy` recipe (DeepLabV3+ M-V2-D8, 64-channel heads,
128x128 crops, batch 8, SGD 0.01 / 0.9 / 5e-4, poly, 300 iterations, random init) trained on the same toy
files by this project and by mmseg 1.2.2 (``../shared/reference/train_toy.py``, mmengine Runner), alternately,
for several seeds. Prints val mIoU at every validation step for each run, then per side the mean and the
spread (min..max, sample std) per step, and whether this project's mean lies inside the reference's seed range.

    python benchmarks/bench_learning_curve.py [--seeds 0 1 2] [--work-root work_dirs/learning_curve]
        [--max-iters 300] [--init reference|keras] [--reference-python PY] [--no-reference]

Each run has its own work dir under --work-root (``ours_s<seed>``, ``mmseg_s<seed>``); a finished run is read
back, not retrained, so the command can be resumed. Runs take minutes each on a CPU.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from kit import Reference, add_reference_arguments, toy_runs_setup, train_toy_ours, train_toy_reference

ROOT = Path(__file__).resolve().parents[1]


def ours(seed, work, max_iters, init):
    options = [f"init={init}"] if init != "reference" else []
    return {r["iteration"]: 100 * r["mIoU"] for r in train_toy_ours(work, seed, max_iters, options)}


def theirs(reference, seed, work, data_root, max_iters):
    result = train_toy_reference(reference, work, seed, data_root, max_iters)
    return {int(k): float(v) for k, v in result["mIoU"].items()}


def summarize(label, curves, steps):
    print(f"{label}:")
    rows = {}
    for step in steps:
        values = np.array([curve[step] for curve in curves.values() if step in curve])
        rows[step] = values
        std = values.std(ddof=1) if len(values) > 1 else float("nan")
        print(f"  it {step:4d}: mean {values.mean():6.2f}  range {values.min():6.2f} .. {values.max():6.2f}  "
              f"std {std:5.2f}  ({' / '.join(f'{v:.2f}' for v in values)})")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work-root", default="work_dirs/learning_curve")
    parser.add_argument("--max-iters", type=int, default=300)
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
    mine, ref = {}, {}
    for seed in args.seeds:
        mine[seed] = ours(seed, work_root / f"ours_{args.init}_s{seed}", args.max_iters, args.init)
        print(f"seed {seed} keras_mv2seg: " + " / ".join(f"{v:.2f}" for _, v in sorted(mine[seed].items())),
              flush=True)
        if reference:
            ref[seed] = theirs(reference, seed, (work_root / f"mmseg_s{seed}").resolve(), data_root, args.max_iters)
            print(f"seed {seed} mmseg:        " + " / ".join(f"{v:.2f}" for _, v in sorted(ref[seed].items())),
                  flush=True)
    steps = sorted(set().union(*(c.keys() for c in mine.values())))
    ours_rows = summarize("keras_mv2seg", mine, steps)
    if ref:
        ref_rows = summarize("mmseg 1.2.2", ref, steps)
        for step in steps:
            low, high = ref_rows[step].min(), ref_rows[step].max()
            inside = low <= ours_rows[step].mean() <= high
            print(f"  it {step:4d}: keras_mv2seg mean {ours_rows[step].mean():.2f} "
                  f"{'inside' if inside else 'OUTSIDE'} the reference's seed range {low:.2f} .. {high:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

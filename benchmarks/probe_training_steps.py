#!/usr/bin/env python
"""The toy recipe's first training steps, this project against mmseg 1.2.2 on identical weights and identical
batches: mmseg's own initialisation and mmseg's own train pipeline's batches (``reference/train_steps.py``, run by
the reference kit), replayed by this project's training step (``compile_model`` + ``train_on_batch``: TorchSGD on
the poly schedule, cross-entropy + 0.4 aux). Dropout is off on both sides so that every step is deterministic.

    python benchmarks/probe_training_steps.py [--steps 20] [--seed 0] [--work-root work_dirs/probe_steps]
        [--reference-python PY] [--no-reference]

Prints, per step, the learning rate and the decode / aux losses of both sides (mmseg in float64 and in float32,
this project in float32), then after the last step the relative difference of every parameter group (backbone,
decode, aux weights; batch-norm moving means and variances apart) to mmseg's float64 run, beside the same figure
for mmseg's own float32 run (what round-off alone does over the same steps), and the eval-mode logits of a val
image. A difference that the float32 reference does not show is a difference in what the step does. With
``--no-reference`` (or no kit) it replays batches of a previous run in --work-root, else exits 0 saying so.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from kit import Reference, add_reference_arguments, run_checked, toy_runs_setup

ROOT = Path(__file__).resolve().parents[1]


def reference_run(reference, data_root, out: Path, steps: int, seed: int):
    if (out / "steps.json").is_file() and json.loads((out / "steps.json").read_text())["steps"] == steps:
        return
    run_checked([str(reference.python), str(ROOT / "benchmarks" / "reference" / "train_steps.py"), str(data_root),
                 str(out), "--steps", str(steps), "--seed", str(seed)], {"REFERENCE_DIR": str(reference.folder)})


def part_of(path: str) -> str:
    layer, _, name = path.rpartition("/")
    if name in ("moving_mean", "moving_variance"):
        return f"BN {name}"
    head = "aux" if layer.startswith("aux_") else "decode" if layer.startswith("decode_") else "backbone"
    return f"{head} weights"


def relative_differences(model, reference_model) -> dict[str, float]:
    """||ours - theirs|| / ||theirs|| per parameter group, over the model's variables."""
    sums = {}
    for ours, theirs in zip(model.weights, reference_model.weights):
        a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
        diff, norm = sums.setdefault(part_of(ours.path), [0.0, 0.0])
        sums[part_of(ours.path)] = [diff + float(((a - b) ** 2).sum()), norm + float((b ** 2).sum())]
    return {part: (diff / norm) ** 0.5 if norm else 0.0 for part, (diff, norm) in sorted(sums.items())}


def outliers(model, reference_model, round_off_model, count=8):
    """The variables whose difference to mmseg float64 is largest against what round-off alone gives them
    (mmseg's float32 run): (ratio, ours, round-off, path), largest ratio first."""
    rows = []
    for ours, theirs, float32 in zip(model.weights, reference_model.weights, round_off_model.weights):
        a, b, c = (np.asarray(v, np.float64) for v in (ours, theirs, float32))
        scale = max(float(np.linalg.norm(b)), 1e-3 * b.size ** 0.5)  # betas start at 0
        mine, noise = float(np.linalg.norm(a - b)) / scale, float(np.linalg.norm(c - b)) / scale
        rows.append((mine / max(noise, 1e-7), mine, noise, ours.path))
    return sorted(rows, reverse=True)[:count]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-root", default="work_dirs/probe_steps")
    add_reference_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    import keras

    import keras_mv2seg
    from keras_mv2seg.evaluation import evaluate
    from keras_mv2seg.machine import describe_machine
    from keras_mv2seg.training.recipe import compile_model

    data_root, reference = toy_runs_setup(args)
    out = (Path(args.work_root) / f"s{args.seed}").resolve()
    print(f"machine: {describe_machine()}")
    if reference:
        print(f"reference: {reference.version()}")
        reference_run(reference, data_root, out, args.steps, args.seed)
    elif not (out / "steps.json").is_file():
        print(f"reference: not run -- {Reference.missing_reason or '--no-reference'}; no earlier batches in {out}")
        return 0
    record = json.loads((out / "steps.json").read_text())
    steps = min(args.steps, record["steps"])
    batches = np.load(out / "batches.npz")
    images, labels = batches["images"].astype(np.float32), batches["labels"].astype(np.int32)

    config = keras_mv2seg.get_config("toy").replace(dropout=0.0)
    keras.utils.set_random_seed(args.seed)
    model = keras_mv2seg.build_segmenter(config, auxiliary=True)
    keras_mv2seg.load_weights(model, out / "initial.pth")
    optimizer = compile_model(model, config)
    ours = []
    for step in range(steps):
        lr = float(optimizer.learning_rate)
        logs = model.train_on_batch(images[step], {"logits": labels[step], "aux_logits": labels[step]},
                                    return_dict=True)
        ours.append({"lr": lr, "decode": float(logs["logits_loss"]), "aux": config.train.aux_weight
                     * float(logs["aux_logits_loss"])})
    theirs, theirs32 = record["runs"]["float64"][:steps], record["runs"]["float32"][:steps]
    print(f"toy recipe, {steps} steps on mmseg's batches (seed {args.seed}), dropout off; losses decode / 0.4 aux")
    print(" step  lr mmseg   lr ours   | mmseg f64 decode   aux  | mmseg f32 decode   aux  | ours decode   aux")
    for i, (a, b, c) in enumerate(zip(theirs, theirs32, ours)):
        print(f" {i + 1:4d}  {a['lr']:.6f}  {c['lr']:.6f}  |  {a['decode']:.6f} {a['aux']:.6f} |  "
              f"{b['decode']:.6f} {b['aux']:.6f} | {c['decode']:.6f} {c['aux']:.6f}")

    def reference_model(name):
        other = keras_mv2seg.build_segmenter(config, auxiliary=True)
        keras_mv2seg.load_weights(other, out / f"{name}.pth")
        return other

    if steps == record["steps"]:
        final64, final32 = reference_model("float64"), reference_model("float32")
        ours_rel, round_off = relative_differences(model, final64), relative_differences(final32, final64)
        print(f"after {steps} steps, relative difference to mmseg float64 (mmseg float32 for scale):")
        for part in ours_rel:
            print(f"  {part:22s} ours {ours_rel[part]:.2e}   mmseg float32 {round_off[part]:.2e}")
        print("  the variables furthest from mmseg float64 against their round-off (ours / mmseg float32):")
        for ratio, mine, noise, path in outliers(model, final64, final32):
            print(f"    {path:40s} {mine:.2e} / {noise:.2e} = {ratio:6.1f}")
        for name in ("decode_image_pool_bn",):
            values = [np.asarray(m.get_layer(name).moving_variance)[:4] for m in (model, final64, final32)]
            print(f"  {name} moving variance[:4]: ours {values[0].round(5)}, mmseg {values[1].round(5)}, mmseg "
                  f"float32 {values[2].round(5)}")
        expected = np.load(out / "eval_logits.npy")[0].transpose(1, 2, 0)  # NCHW -> HWC
        val = next(iter(keras_mv2seg.data.evaluation_data(config, "val", data_root)))[0].numpy()[None]
        logits = keras_mv2seg.models.segmenter.inference_model(model)(val, training=False).numpy()[0]
        relative = float(np.linalg.norm(logits - expected) / np.linalg.norm(expected))
        print(f"  eval logits of val image 0: relative difference {relative:.2e}, class maps agree on "
              f"{100 * float((logits.argmax(-1) == expected.argmax(-1)).mean()):.2f} % of pixels")
        scores = {name: 100 * evaluate(keras_mv2seg.models.segmenter.inference_model(m), config,
                                       keras_mv2seg.data.evaluation_data(config, "val", data_root))["mIoU"]
                  for name, m in (("ours", model), ("mmseg float64", final64), ("mmseg float32", final32))}
        print("  toy val mIoU (this project's evaluation) of the weights after the steps: "
              + ", ".join(f"{name} {value:.2f}" for name, value in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

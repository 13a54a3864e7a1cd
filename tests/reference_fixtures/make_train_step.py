"""Made by the reference: one training step of the toy recipe on a small model, as mmseg 1.2.2 runs it --
mmseg's own initialisation (seed 0), a batch of 4 from mmseg's own train pipeline on the toy data (64x64 crops),
the decode + 0.4 aux cross-entropy and torch SGD 0.01 / 0.9 / 5e-4, in float64, dropout off (a deterministic
step): ``benchmarks/reference/train_steps.py --small --steps 1``. Written to ``train_step/`` beside this script:
``initial.pth`` (float32, the starting weights), ``after.pth`` (the float64 state after the step, stored as
float32: parameters and batch-norm running statistics), ``batch.npz`` (``images`` [4, 64, 64, 3] RGB pixels before
normalisation, ``labels`` [4, 64, 64]) and ``step.json`` (the losses). tests/test_training_recipe.py replays the
step. Run from the checkout with the reference kit's python (the toy data made first by the main job):

    REF_PY=$(bash ../shared/reference/setup.sh)
    $REF_PY tests/reference_fixtures/make_train_step.py data/toy
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "train_step"


def main():
    data_root = sys.argv[1] if len(sys.argv) > 1 else "data/toy"
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, str(HERE.parents[1] / "benchmarks" / "reference" / "train_steps.py"),
                        data_root, folder, "--small", "--steps", "1", "--seed", "0"], check=True)
        folder = Path(folder)
        (OUT / "initial.pth").write_bytes((folder / "initial.pth").read_bytes())
        after = torch.load(folder / "float64.pth")["state_dict"]
        torch.save({"state_dict": {k: v.float() if v.is_floating_point() else v for k, v in after.items()}},
                   OUT / "after.pth")
        batches = np.load(folder / "batches.npz")
        np.savez_compressed(OUT / "batch.npz", images=batches["images"][0].astype(np.float32),
                            labels=batches["labels"][0])
        record = json.loads((folder / "steps.json").read_text())
        step = record["runs"]["float64"][0]
        (OUT / "step.json").write_text(json.dumps({
            "made_with": "mmsegmentation 1.2.2 (benchmarks/reference/train_steps.py --small --steps 1 --seed 0)",
            "params": record["params"], "lr": step["lr"], "decode_loss": step["decode"], "aux_loss": step["aux"],
            "aux_weight_included": True}, indent=1))


if __name__ == "__main__":
    main()

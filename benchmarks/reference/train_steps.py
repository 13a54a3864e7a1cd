"""Runs under the reference kit's python (mmseg 1.2.2): the toy recipe's first training steps on fixed batches,
for ``probe_training_steps.py`` (this project's side). Not a test dependency.

    REF_PY benchmarks/reference/train_steps.py DATA_ROOT OUT_DIR [--steps 20] [--seed 0] [--dropout 0]

The toy model (``../shared/reference/train_toy.py``'s config: DeepLabV3+ M-V2-D8, 64-channel heads, aux FCN),
mmseg's own initialisation (``init_weights``) under ``--seed``, then ``--steps`` iterations of the recipe exactly as
mmseg's Runner runs them -- SegDataPreProcessor (BGR->RGB, normalise, pad with 0 after normalising, labels with
255), ``model.loss`` (decode CE + 0.4 aux CE, mean over all pixels), torch SGD 0.01 / 0.9 / 5e-4 and mmengine's
PolyLR (``by_epoch=False``, eta_min 1e-4, over MAX_ITERS 300) -- on batches that mmseg's own train pipeline makes
(RandomResize, RandomCrop with cat_max_ratio, RandomFlip, PhotoMetricDistortion), drawn once and reused by every
run. Dropout is set to ``--dropout`` (0: the steps are deterministic, so both sides can step the same way).

Written to OUT_DIR:
* ``initial.pth``: the initial state dict (float32, mmseg names; this project's importer reads it);
* ``batches.npz``: ``images`` [steps, B, H, W, 3] float64 RGB pixels before normalisation (the padded area is the
  pixel the normalisation maps to 0), ``labels`` [steps, B, H, W] uint8;
* ``float64.pth`` / ``float32.pth``: the state after the steps (parameters and BN running statistics) of the run in
  float64 and of the same run in float32 (how far float32 round-off alone carries a run from float64);
* ``steps.json``: per step and run the learning rate used, the decode and aux losses, and per step in float64 the
  eval-mode logits' summary of val image 0 (its logits at the end are in ``eval_logits.npy``, NCHW).
"""
import argparse
import copy
import json
import os
import sys
from pathlib import Path

REFERENCE = Path(os.environ.get("REFERENCE_DIR", Path(__file__).resolve().parents[3] / "shared" / "reference"))
sys.path.insert(0, str(REFERENCE))

import mmcv_ops_shim  # noqa: E402,F401  (must precede mmseg)
import numpy as np  # noqa: E402
import torch  # noqa: E402

MAX_ITERS = 300


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data_root")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--small", action="store_true",
                        help="the test fixture's model: widen 0.25, heads 8 / aux 4 / c1 8 channels, 64x64 crops of "
                             "the toy images rescaled from (128, 64), batch 4")
    parser.add_argument("--batches-only", action="store_true", help="write batches.npz and stop (the data probe)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))

    from mmengine.optim.scheduler import PolyLR
    from mmengine.runner import set_random_seed
    from mmseg.registry import DATASETS, MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    os.environ.setdefault("CHECK_PARAMS", "0")
    import train_toy

    set_random_seed(args.seed)
    model_cfg = train_toy.toy_model_cfg()
    if args.small:
        model_cfg["backbone"]["widen_factor"] = 0.25
        model_cfg["decode_head"].update(in_channels=80, channels=8, c1_in_channels=8, c1_channels=8)
        model_cfg["auxiliary_head"].update(in_channels=24, channels=4)
        model_cfg["data_preprocessor"]["size"] = (64, 64)
        train_toy.CROP, train_toy.SCALE, train_toy.BATCH = (64, 64), (128, 64), 4
    model = MODELS.build(model_cfg)
    model.init_weights()
    for module in model.modules():
        if isinstance(module, (torch.nn.Dropout, torch.nn.Dropout2d)):
            module.p = args.dropout
    torch.save({"state_dict": {k: v.float() for k, v in model.state_dict().items()}}, out / "initial.pth")

    pipeline = [
        dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
        dict(type="RandomResize", scale=train_toy.SCALE, ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type="RandomCrop", crop_size=train_toy.CROP, cat_max_ratio=0.75),
        dict(type="RandomFlip", prob=0.5), dict(type="PhotoMetricDistortion"), dict(type="PackSegInputs"),
    ]

    def dataset(split, steps):
        return DATASETS.build(dict(
            type="CityscapesDataset", data_root=args.data_root,
            data_prefix=dict(img_path=f"leftImg8bit/{split}", seg_map_path=f"gtFine/{split}"),
            img_suffix="_leftImg8bit.png", seg_map_suffix="_gtFine_labelTrainIds.png", pipeline=steps))

    train = dataset("train", pipeline)
    rng = np.random.default_rng(args.seed)
    batches = []
    for _ in range(args.steps):
        samples = [train[int(i)] for i in rng.integers(0, len(train), train_toy.BATCH)]
        batches.append(model.data_preprocessor(dict(inputs=[s["inputs"] for s in samples],
                                                    data_samples=[s["data_samples"] for s in samples]), True))
    mean = torch.tensor(train_toy.MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(train_toy.STD, dtype=torch.float64).view(1, 3, 1, 1)
    images = np.stack([(b["inputs"].double() * std + mean).permute(0, 2, 3, 1).numpy() for b in batches])
    labels = np.stack([np.stack([d.gt_sem_seg.data[0].numpy() for d in b["data_samples"]]) for b in batches])
    np.savez_compressed(out / "batches.npz", images=images, labels=labels.astype(np.uint8))
    if args.batches_only:
        print(json.dumps({"out": str(out), "batches": args.steps}))
        return

    val = dataset("val", [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), dict(type="PackSegInputs")])
    val_input = model.data_preprocessor(dict(inputs=[val[0]["inputs"]], data_samples=[val[0]["data_samples"]]),
                                        False)["inputs"]

    record = {"steps": args.steps, "seed": args.seed, "dropout": args.dropout, "small": args.small,
              "params": sum(p.numel() for p in model.parameters()), "runs": {}}
    initial = copy.deepcopy(model.state_dict())
    for dtype, name in ((torch.float64, "float64"), (torch.float32, "float32")):
        model.load_state_dict(initial)
        model.to(dtype)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        scheduler = PolyLR(optimizer, eta_min=1e-4, power=0.9, begin=0, end=MAX_ITERS, by_epoch=False)
        steps = []
        for batch in batches:
            model.train()
            lr = optimizer.param_groups[0]["lr"]
            losses = model.loss(batch["inputs"].to(dtype), batch["data_samples"])
            loss, _ = model.parse_losses(losses)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            entry = {"lr": lr, "decode": float(losses["decode.loss_ce"]), "aux": float(losses["aux.loss_ce"])}
            if name == "float64":
                model.eval()
                with torch.no_grad():
                    shape = tuple(val_input.shape[2:])
                    logits = model.encode_decode(val_input.to(dtype), [dict(img_shape=shape, ori_shape=shape,
                                                                            pad_shape=shape)])
                entry["eval_logit_mean"] = float(logits.mean())
                entry["eval_logit_std"] = float(logits.std())
            steps.append(entry)
        record["runs"][name] = steps
        torch.save({"state_dict": {k: v.double() for k, v in model.state_dict().items()}}, out / f"{name}.pth")
        if name == "float64":
            np.save(out / "eval_logits.npy", logits.numpy())
    (out / "steps.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({"out": str(out), "steps": args.steps}))


if __name__ == "__main__":
    main()

"""Made by the reference: values and gradients (with respect to the logits) of mmseg 1.2.2's loss modules and
OHEM sampler (and LovaszLoss), in float64, on fixed logits and labels (two shapes, ignored pixels, classes absent from the
labels). Written to ``losses.npz`` (inputs, and per case ``<case>/value`` and ``<case>/grad``, NCHW) and
``losses.json`` (each case's mmseg config) beside this script; tests/test_losses.py compares
``keras_mv2seg.training.losses.build_loss`` of the same config with them. Run from the checkout with the
reference kit's python:

    REF_PY=$(bash ../shared/reference/setup.sh)
    $REF_PY tests/reference_fixtures/make_losses.py

Where mmseg 1.2.2 cannot compute a case its way, the case says what was computed instead:
* ``class_weight`` with ignored pixels raises IndexError in mmseg's ``cross_entropy`` (it indexes the weights by
  the ignore label), so the class-weighted cases have no ignored pixels;
* ``LovaszLoss`` computes its Lovász gradient in float32 (``lovasz_grad`` calls ``.float()``; float64 logits
  fail in ``torch.dot``), so its cases run in float32 (the tests compare to 1e-5 all the same);
* ``FocalLoss`` on the CPU takes one-hot column ``num_classes`` instead of ``[:num_classes]``, so the focal cases
  call mmseg's own ``py_sigmoid_focal_loss`` with the one-hot labels its GPU path builds.
"""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "shared" / "reference"))

import mmcv_ops_shim  # noqa: E402,F401  (must precede mmseg)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmseg.models.losses.focal_loss import py_sigmoid_focal_loss  # noqa: E402
from mmseg.registry import MODELS, TASK_UTILS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

register_all_modules()
IGNORE = 255
SHAPES = {"a": (2, 5, 6, 8), "b": (1, 3, 5, 7)}  # N, C, H, W


def inputs(name, shape, seed, ignored=0.15, classes=None):
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    logits = rng.normal(0, 2, shape)
    labels = rng.integers(0, classes or c - 1, (n, h, w))  # the last class never occurs
    labels[rng.random((n, h, w)) < ignored] = IGNORE
    return {f"{name}/logits": logits, f"{name}/labels": labels}


CASES = {  # case -> (inputs, decode_loss, sampler)
    "ce": ("a", {"type": "CrossEntropyLoss"}, None),
    "ce_avg_non_ignore": ("a", {"type": "CrossEntropyLoss", "avg_non_ignore": True}, None),
    "ce_b": ("b", {"type": "CrossEntropyLoss", "loss_weight": 0.4}, None),
    "ce_class_weight": ("a_full", {"type": "CrossEntropyLoss", "class_weight": [0.5, 1.0, 2.0, 1.5, 0.8]}, None),
    "ce_class_weight_avg": ("a_full", {"type": "CrossEntropyLoss", "avg_non_ignore": True,
                                       "class_weight": [0.5, 1.0, 2.0, 1.5, 0.8]}, None),
    "ohem_thresh": ("a", {"type": "CrossEntropyLoss"}, {"type": "OHEMPixelSampler", "thresh": 0.7, "min_kept": 10}),
    "ohem_min_kept": ("a", {"type": "CrossEntropyLoss"}, {"type": "OHEMPixelSampler", "min_kept": 12}),
    "ohem_thresh_b": ("b", {"type": "CrossEntropyLoss"}, {"type": "OHEMPixelSampler", "thresh": 0.3,
                                                          "min_kept": 4}),
    "dice_softmax": ("a", {"type": "DiceLoss", "use_sigmoid": False}, None),
    "dice_sigmoid_naive": ("b", {"type": "DiceLoss", "naive_dice": True}, None),
    "ce_plus_dice": ("a", [{"type": "CrossEntropyLoss", "loss_weight": 1.0},
                           {"type": "DiceLoss", "use_sigmoid": False, "loss_weight": 3.0}], None),
    "focal": ("a", {"type": "FocalLoss"}, None),
    "focal_class_weight": ("b", {"type": "FocalLoss", "gamma": 1.5, "alpha": 0.25,
                                 "class_weight": [1.0, 2.0, 0.5]}, None),
    "lovasz_present": ("a", {"type": "LovaszLoss", "reduction": "none"}, None),
    "lovasz_all_per_image": ("b", {"type": "LovaszLoss", "classes": "all", "per_image": True}, None),
    "lovasz_classes_weighted": ("a", {"type": "LovaszLoss", "classes": [0, 2, 4], "reduction": "none",
                                      "class_weight": [0.5, 1.0, 2.0, 1.5, 0.8], "loss_weight": 0.7}, None),
    "lovasz_binary": ("bin", {"type": "LovaszLoss", "loss_type": "binary", "reduction": "none"}, None),
    "lovasz_binary_per_image": ("bin", {"type": "LovaszLoss", "loss_type": "binary", "per_image": True,
                                        "reduction": "sum"}, None),
    "ce_plus_lovasz": ("a", [{"type": "CrossEntropyLoss"}, {"type": "LovaszLoss", "reduction": "none",
                                                            "loss_weight": 0.5}], None),
    "bce_one_class": ("bin", {"type": "CrossEntropyLoss", "use_sigmoid": True}, None),
    "bce_one_class_avg": ("bin", {"type": "CrossEntropyLoss", "use_sigmoid": True, "avg_non_ignore": True}, None),
}


def focal(spec, logits, labels):
    """mmseg's py_sigmoid_focal_loss with the one-hot labels mmseg's GPU path builds (see the module docstring)."""
    n, c = logits.shape[:2]
    pred = logits.transpose(0, 1).reshape(c, -1).transpose(0, 1)
    target = labels.reshape(-1)
    valid = (target != IGNORE).view(-1, 1)
    target = torch.where(target == IGNORE, torch.zeros_like(target), target)
    one_hot = F.one_hot(target, c + 1)[:, :c]
    return py_sigmoid_focal_loss(pred, one_hot, gamma=spec.get("gamma", 2.0), alpha=spec.get("alpha", 0.5),
                                 class_weight=spec.get("class_weight"), valid_mask=valid, reduction="mean")


def main():
    arrays = {}
    arrays.update(inputs("a", SHAPES["a"], 0))
    arrays.update(inputs("b", SHAPES["b"], 1))
    arrays.update(inputs("a_full", SHAPES["a"], 2, ignored=0.0))
    binary = inputs("bin", (2, 1, 6, 8), 3, classes=2)
    binary["bin/labels"] = np.random.default_rng(3).integers(0, 2, (2, 6, 8))
    binary["bin/labels"][np.random.default_rng(4).random((2, 6, 8)) < 0.2] = IGNORE
    arrays.update(binary)
    for case, (name, decode, sampler_spec) in CASES.items():
        lovasz = any(spec["type"] == "LovaszLoss" for spec in (decode if isinstance(decode, list) else [decode]))
        dtype = torch.float32 if lovasz else torch.float64  # mmseg's lovasz_grad casts to float32 (float64 fails)
        logits = torch.tensor(arrays[f"{name}/logits"], dtype=dtype, requires_grad=True)
        labels = torch.tensor(arrays[f"{name}/labels"], dtype=torch.long)
        specs = decode if isinstance(decode, list) else [decode]
        if specs[0]["type"] == "FocalLoss":
            value = focal(specs[0], logits, labels)
        else:
            modules = [MODELS.build(spec) for spec in specs]
            weight = None
            if sampler_spec is not None:
                context = SimpleNamespace(ignore_index=IGNORE,
                                          loss_decode=modules[0] if len(modules) == 1 else torch.nn.ModuleList(modules))
                sampler = TASK_UTILS.build(sampler_spec, default_args=dict(context=context))
                weight = sampler.sample(logits, labels.unsqueeze(1))
            value = sum(module(logits, labels, weight=weight, ignore_index=IGNORE) for module in modules)
        value.backward()
        arrays[f"{case}/value"] = value.detach().double().numpy()
        arrays[f"{case}/grad"] = logits.grad.double().numpy()
    np.savez_compressed(HERE / "losses.npz", **arrays)
    (HERE / "losses.json").write_text(json.dumps({
        "made_with": f"mmsegmentation 1.2.2, torch {torch.__version__} (CPU), float64",
        "ignore_index": IGNORE, "cases": {case: {"inputs": name, "decode_loss": decode, "sampler": sampler}
                                          for case, (name, decode, sampler) in CASES.items()}}, indent=1) + "\n")
    print(json.dumps({case: float(arrays[f"{case}/value"]) for case in CASES}, indent=1))


if __name__ == "__main__":
    main()

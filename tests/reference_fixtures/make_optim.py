"""Made by the reference: optimizer steps as mmseg 1.2.2 (mmengine 0.10) runs them, in float64 -- parameter groups
built by mmengine's ``DefaultOptimWrapperConstructor`` from a ``paramwise_cfg`` (custom_keys lr_mult/decay_mult,
bias_lr_mult, norm/bias/dwconv_decay_mult), SGD with momentum and weight decay or AdamW, stepped by mmengine's
``PolyLR`` (``by_epoch=False``), and mmengine's ``ExponentialMovingAverage`` of the weights (EMAHook's). Fixed
gradients are fed to the parameters of a small module whose parts and layers are named as this project's
segmenter (``backbone.block1_expand_conv``, ``decode_head.decode_conv_seg``, ...), so the same ``paramwise_cfg``
names the same weights on both sides. Written to ``optim.npz`` (arrays in Keras layout: ``<param>/init``,
``<param>/grad<t>``, ``<case>/<param>/after``, ``<case>/<param>/ema``, ``<case>/lr``) and ``optim.json`` beside
this script; tests/test_controls.py replays the steps with TorchSGD/TorchAdamW and compares. Run from the
checkout with the reference kit's python:

    REF_PY=$(bash ../shared/reference/setup.sh)
    $REF_PY tests/reference_fixtures/make_optim.py
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "shared" / "reference"))

import mmcv_ops_shim  # noqa: E402,F401  (must precede mmseg)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.model import ExponentialMovingAverage  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.optim.scheduler import PolyLR  # noqa: E402

STEPS, MAX_ITERS = 4, 6
# torch parameter -> (Keras variable path, the axes that take a torch tensor to Keras layout)
PARAMETERS = {
    "backbone.block1_expand_conv.weight": ("block1_expand_conv/kernel", (2, 3, 1, 0)),
    "backbone.block1_expand_bn.weight": ("block1_expand_bn/gamma", (0,)),
    "backbone.block1_expand_bn.bias": ("block1_expand_bn/beta", (0,)),
    "backbone.block1_depthwise.weight": ("block1_depthwise/kernel", (2, 3, 0, 1)),
    "decode_head.decode_conv_seg.weight": ("decode_conv_seg/kernel", (2, 3, 1, 0)),
    "decode_head.decode_conv_seg.bias": ("decode_conv_seg/bias", (0,)),
    "auxiliary_head.aux_conv_seg.weight": ("aux_conv_seg/kernel", (2, 3, 1, 0)),
    "auxiliary_head.aux_conv_seg.bias": ("aux_conv_seg/bias", (0,)),
}
CASES = {
    "sgd_parts": dict(
        optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=5e-4), eta_min=1e-4, ema_momentum=0.1,
        paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1), "conv_seg": dict(lr_mult=10.0, decay_mult=0.0)})),
    "sgd_kinds": dict(
        optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=5e-4), eta_min=1e-4, ema_momentum=0.5,
        paramwise_cfg=dict(norm_decay_mult=0.0, bias_lr_mult=2.0, bias_decay_mult=0.0, dwconv_decay_mult=0.5,
                           custom_keys={"aux": dict(lr_mult=5.0)})),
    "adamw_parts": dict(
        optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), eta_min=1e-6,
        ema_momentum=0.2,
        paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={"head": dict(lr_mult=10.0)})),
}


class Part(torch.nn.Module):
    pass


def module():
    backbone, decode, aux = Part(), Part(), Part()
    backbone.block1_expand_conv = torch.nn.Conv2d(3, 4, 1, bias=False)
    backbone.block1_expand_bn = torch.nn.BatchNorm2d(4)
    backbone.block1_depthwise = torch.nn.Conv2d(4, 4, 3, groups=4, bias=False)
    decode.decode_conv_seg = torch.nn.Conv2d(4, 5, 1)
    aux.aux_conv_seg = torch.nn.Conv2d(4, 5, 1)
    model = torch.nn.Module()
    model.backbone, model.decode_head, model.auxiliary_head = backbone, decode, aux
    return model.double()


def main():
    rng = np.random.default_rng(0)
    reference = module()
    initial = {name: rng.normal(0, 0.5, tuple(p.shape)) for name, p in reference.named_parameters()}
    grads = [{name: rng.normal(0, 1.0, value.shape) for name, value in initial.items()} for _ in range(STEPS)]
    assert set(initial) == set(PARAMETERS), sorted(initial)
    arrays = {}
    for name, (path, axes) in PARAMETERS.items():
        arrays[f"{path}/init"] = initial[name].transpose(axes)
        for t in range(STEPS):
            arrays[f"{path}/grad{t}"] = grads[t][name].transpose(axes)
    for case, spec in CASES.items():
        model = module()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(torch.from_numpy(initial[name]))
        wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(spec["optimizer"]),
                                                  paramwise_cfg=spec["paramwise_cfg"]))
        scheduler = PolyLR(wrapper, eta_min=spec["eta_min"], power=0.9, begin=0, end=MAX_ITERS, by_epoch=False)
        ema = ExponentialMovingAverage(model, momentum=spec["ema_momentum"])
        rates = []
        for t in range(STEPS):
            rates.append([group["lr"] for group in wrapper.optimizer.param_groups])
            for name, p in model.named_parameters():
                p.grad = torch.from_numpy(grads[t][name]).clone()
            wrapper.step()
            wrapper.zero_grad()
            ema.update_parameters(model)
            scheduler.step()
        averaged = dict(ema.module.named_parameters())
        for name, p in model.named_parameters():
            path, axes = PARAMETERS[name]
            arrays[f"{case}/{path}/after"] = p.detach().numpy().transpose(axes)
            arrays[f"{case}/{path}/ema"] = averaged[name].detach().numpy().transpose(axes)
        arrays[f"{case}/lr"] = np.array(rates)
    np.savez_compressed(HERE / "optim.npz", **arrays)
    (HERE / "optim.json").write_text(json.dumps({
        "made_with": f"mmsegmentation 1.2.2, mmengine 0.10, torch {torch.__version__} (CPU), float64",
        "steps": STEPS, "max_iters": MAX_ITERS, "power": 0.9, "parameters": {n: p for n, (p, _) in PARAMETERS.items()},
        "cases": CASES}, indent=1) + "\n")
    print({case: arrays[f"{case}/lr"][-1].tolist() for case in CASES})


if __name__ == "__main__":
    main()

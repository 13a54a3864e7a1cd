"""Fine-tuning controls: optimizer steps with paramwise multipliers, AdamW and EMA equal mmengine's (float64
fixture made by the reference kit with ``reference_fixtures/make_optim.py``); frozen stages and batch norm on its
moving statistics leave exactly what they should; accumulation equals one big batch; EMA is the hand-computed
average and is what validation and the saved weights hold; early stopping; user callbacks; a SIGKILL mid-way
through an accumulated update with EMA resumes to the uninterrupted run; the config's refusals."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_mv2seg
from keras_mv2seg.models import build_segmenter
from keras_mv2seg.training import controls, workdir
from keras_mv2seg.training.optimizer import TorchAdamW, TorchSGD
from keras_mv2seg.training.recipe import compile_model
from keras_mv2seg.training.schedule import PolyDecay
from keras_mv2seg.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "reference_fixtures"
OPTIM = json.loads((FIXTURES / "optim.json").read_text())


def _named_model():
    """Layers named as the fixture's torch module (and as a segmenter's), float64."""
    keras.config.set_floatx("float64")
    try:
        images = keras.Input((6, 6, 3))
        x = keras.layers.Conv2D(4, 1, use_bias=False, name="block1_expand_conv")(images)
        x = keras.layers.BatchNormalization(name="block1_expand_bn")(x)
        x = keras.layers.DepthwiseConv2D(3, use_bias=False, name="block1_depthwise")(x)
        decode = keras.layers.Conv2D(5, 1, name="decode_conv_seg")(x)
        aux = keras.layers.Conv2D(5, 1, name="aux_conv_seg")(x)
        return keras.Model(images, [decode, aux], name="named")
    finally:
        keras.config.set_floatx("float32")


@pytest.mark.parametrize("case", sorted(OPTIM["cases"]))
def test_optimizer_steps_equal_mmengine_parameter_groups(case):
    arrays = dict(np.load(FIXTURES / "optim.npz"))
    spec = OPTIM["cases"][case]
    settings = spec["optimizer"]
    model = _named_model()
    variables = {v.path: v for v in model.trainable_variables}
    for path, variable in variables.items():
        variable.assign(arrays[f"{path}/init"])
    schedule = PolyDecay(settings["lr"], OPTIM["max_iters"] - 1, spec["eta_min"], OPTIM["power"])
    ema = dict(ema_decay=1.0 - spec["ema_momentum"])
    if settings["type"] == "SGD":
        optimizer = TorchSGD(schedule, momentum=settings["momentum"], coupled_weight_decay=settings["weight_decay"],
                             **ema)
    else:
        optimizer = TorchAdamW(schedule, beta_1=settings["betas"][0], beta_2=settings["betas"][1],
                               epsilon=settings["eps"], decoupled_weight_decay=settings["weight_decay"], **ema)
    optimizer.set_multipliers(controls.parameter_multipliers(model, spec["paramwise_cfg"]))
    paths = sorted(variables)
    for step in range(OPTIM["steps"]):
        optimizer.apply([arrays[f"{p}/grad{step}"] for p in paths], [variables[p] for p in paths])
    for path in paths:
        expected = arrays[f"{case}/{path}/after"]
        np.testing.assert_allclose(variables[path].numpy(), expected, rtol=1e-5, atol=1e-7, err_msg=path)
        np.testing.assert_allclose(optimizer.average_of(variables[path]).numpy(), arrays[f"{case}/{path}/ema"],
                                   rtol=1e-5, atol=1e-7, err_msg=f"{path} (EMA)")


def test_multipliers_follow_mmengine_rules_on_a_segmenter():
    config = keras_mv2seg.get_config("toy")
    model = build_segmenter(config, auxiliary=True)
    table = controls.parameter_multipliers(model, {"custom_keys": {"backbone": {"lr_mult": 0.1}, "head": {
        "lr_mult": 10.0}, "decode_conv_seg": {"decay_mult": 0.0}}, "norm_decay_mult": 0.0})
    assert table["block3_expand_conv/kernel"] == (0.1, 1.0) and table["stem_bn/gamma"] == (0.1, 1.0)  # key first
    assert table["aux_conv_seg/bias"] == (10.0, 1.0)  # "head" names both heads, as in mmseg
    assert table["decode_conv_seg/kernel"] == (1.0, 0.0)  # the longest key wins; lr_mult omitted is 1
    assert table["decode_bottleneck_bn/gamma"] == (10.0, 1.0)
    with pytest.raises(ValueError, match=r"'fpn' name\(s\) no trainable weight .*parts auxiliary_head, backbone, "
                                         r"decode_head"):
        controls.parameter_multipliers(model, {"custom_keys": {"fpn": {"lr_mult": 0.1}}})


def _tiny(**train):
    config = keras_mv2seg.get_config("toy").replace(widen_factor=0.25, decode_channels=8, aux_channels=4,
                                                    c1_channels=8, dropout=0.0, **train)
    return config, build_segmenter(config, auxiliary=True)


def _batches(count, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (count, size, size, 3)).astype("float32")
    labels = rng.integers(0, 19, (count, size, size)).astype("int32")
    return images, {"logits": labels, "aux_logits": labels}


def _values(model):
    return {v.path: v.numpy().copy() for v in model.weights}


@pytest.mark.parametrize("stages, norm_eval", [(2, "none"), (7, "none"), (-1, "backbone"), (-1, "all")])
def test_frozen_stages_and_norm_eval_leave_exactly_their_part(stages, norm_eval):
    config, model = _tiny(frozen_stages=stages, norm_eval=norm_eval, batch_size=2)
    compile_model(model, config)
    before = _values(model)
    images, labels = _batches(4)
    model.fit(images, labels, batch_size=2, epochs=1, shuffle=False, verbose=0)
    after = _values(model)
    frozen = {layer.name for layer in controls.frozen_layers(model, stages)}
    for path in before:
        layer = path.split("/")[0]
        statistic = "moving_" in path
        part = controls.layer_part(layer)
        if layer in frozen:
            kept = True
        elif statistic:
            kept = norm_eval == "all" or (norm_eval == "backbone" and part == "backbone")
        else:
            kept = False
        same = np.array_equal(before[path], after[path])
        assert same == kept, f"{path}: {'unchanged' if same else 'changed'}"
    if stages == 2:  # the stem and mmseg's layer1, layer2 (blocks 0..2)
        assert {"stem_conv", "block0_depthwise", "block2_project_bn"} <= frozen and "block3_expand_conv" not in frozen


def test_accumulation_of_four_micro_batches_equals_one_batch_of_eight():
    """norm_eval all (batch statistics would differ per micro-batch); two updates, so the schedule must count
    updates (a micro-batch count would have decayed the rate of the second)."""
    images, labels = _batches(16, seed=1)
    results = {}
    for steps in (1, 4):
        keras.utils.set_random_seed(0)
        config, model = _tiny(norm_eval="all", batch_size=8, accumulation_steps=steps, max_iters=3, lr=0.05)
        optimizer = compile_model(model, config)
        model.fit(images, labels, batch_size=8 // steps, epochs=1, shuffle=False, verbose=0)
        assert int(optimizer.iterations) == 2
        results[steps] = model.get_weights()
    for single, accumulated in zip(results[1], results[4]):
        np.testing.assert_allclose(accumulated, single, rtol=1e-5, atol=1e-5 * max(np.abs(single).max(), 1e-3))


def test_ema_is_the_hand_computed_moving_average():
    config, model = _tiny(ema_decay=0.6, batch_size=2)
    optimizer = compile_model(model, config)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append([v.numpy().copy() for v in model.trainable_variables])

    images, labels = _batches(6)
    model.fit(images, labels, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[Record()])
    expected = seen[0]  # the first update is copied, as mmengine's ExponentialMovingAverage does
    for weights in seen[1:]:
        expected = [0.6 * e + 0.4 * w for e, w in zip(expected, weights)]
    for variable, value in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(optimizer.average_of(variable).numpy(), value, rtol=1e-5, atol=1e-6)
    with controls.averaged_weights(model, optimizer):
        np.testing.assert_array_equal(model.trainable_variables[0].numpy(), optimizer.averages[0].numpy())
    np.testing.assert_array_equal(model.trainable_variables[0].numpy(), seen[-1][0])  # the training weights back


def test_ema_weights_are_validated_and_saved_and_callbacks_run(tiny_config_file, tmp_path):
    from keras_mv2seg.data.sources import evaluation_data
    from keras_mv2seg.evaluation import evaluate
    from keras_mv2seg.models.segmenter import inference_model

    config = keras_mv2seg.get_config(str(tiny_config_file(iters=4, interval=2, extra=", ema_decay=0.7")))
    averages = {}

    class Record(keras.callbacks.Callback):
        updates = 0

        def on_train_batch_end(self, batch, logs=None):
            self.updates = int(self.model.optimizer.iterations)

        def on_train_end(self, logs=None):
            averages.update({v.path: self.model.optimizer.average_of(v).numpy() for v in self.model.trainable_variables})

    record = Record()
    summary = train(config, tmp_path / "run", verbose=0, callbacks=[record])
    assert record.updates == 4 and summary["stopped_early"] is None
    model = build_segmenter(config, auxiliary=True)
    model.load_weights(tmp_path / "run" / "final.weights.h5")
    for variable in model.trainable_variables:
        np.testing.assert_array_equal(variable.numpy(), averages[variable.path])
    last = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert evaluate(inference_model(model), config, evaluation_data(config, "val"))["mIoU"] == \
        pytest.approx(last["mIoU"], abs=1e-6)


def test_early_stopping_follows_mmengine_and_keeps_the_best(tiny_config_file, tmp_path, monkeypatch):
    from keras_mv2seg.training import trainer as trainer_module

    assert workdir.early_stop([{"iteration": 1, "mIoU": 0.3}, {"iteration": 2, "mIoU": 0.3005}], 1, 0.1) == {
        "iteration": 2, "mIoU": 0.3005, "reason": "val mIoU did not improve by 0.1 points on the best (30.00) in "
                                                  "the last 1 validations"}  # 0.05 points is no improvement
    assert workdir.early_stop([{"iteration": 1, "mIoU": 0.3}, {"iteration": 2, "mIoU": 0.302}], 1, 0.1) is None
    assert workdir.early_stop([{"iteration": 1, "mIoU": float("nan")}], 3, 0.0)["iteration"] == 1
    assert workdir.early_stop([{"iteration": 1, "mIoU": 0.1}] * 9, 0, 0.0) is None
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    monkeypatch.setattr(trainer_module, "evaluate", lambda *a, **k: {"mIoU": next(scores), "aAcc": 0.5, "mAcc": 0.5,
                                                                       "IoU": [0.5] * 19})
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=6, interval=1, extra=", early_stopping_patience=2, "
                                                                                   "early_stopping_min_delta=0.0")))
    summary = train(config, tmp_path / "run", verbose=0)
    assert summary["iterations"] == 4 and summary["stopped_early"]["iteration"] == 4
    assert json.loads((tmp_path / "run" / "best.json").read_text()) == {"iteration": 2, "mIoU": 0.3}
    again = train(config, tmp_path / "run", verbose=0)  # the same command: the run is over
    assert again["iterations"] == 4 and again["resumed_from"] == 4


@pytest.mark.heavy
def test_sigkill_mid_accumulation_with_ema_resumes_to_the_uninterrupted_run(tiny_config_file, tmp_path):
    config_file = tiny_config_file(iters=4, interval=2, batch=4, extra=", accumulation_steps=2, ema_decay=0.5")
    config = keras_mv2seg.get_config(str(config_file))
    train(config, tmp_path / "straight", verbose=0)
    work = tmp_path / "killed"
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_run.py"), str(config_file), str(work),
                           "micro_batch"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == -9, done.stderr[-2000:]
    assert (work / "checkpoints" / "ckpt-2.index").is_file() and not (work / "final.weights.h5").exists()
    assert train(config, work, verbose=0)["resumed_from"] == 2
    for name in ("final.weights.h5", "best.weights.h5"):
        straight, resumed = (build_segmenter(config, auxiliary=True) for _ in range(2))
        straight.load_weights(tmp_path / "straight" / name)
        resumed.load_weights(work / name)
        for a, b in zip(straight.get_weights(), resumed.get_weights()):
            np.testing.assert_allclose(b, a, atol=1e-5)  # the rerun tolerance of docs/training.md


@pytest.mark.parametrize("override, message", [
    ({"train.paramwise": {"custom_keys": {"backbone": {"lr_mult": 0}}}},
     r"custom_keys\['backbone'\].lr_mult must be a number > 0 \(to stop a part training, freeze it"),
    ({"train.paramwise": {"norm_decay_mult": -1}}, r"norm_decay_mult must be a number >= 0"),
    ({"train.paramwise": {"custom_keys": {"backbone": {"momentum": 0.5}}}}, "must hold lr_mult and/or decay_mult"),
    ({"train.paramwise": {"bypass_duplicate": True}}, "unknown key.*bypass_duplicate"),
    ({"train.accumulation_steps": 0}, "accumulation_steps must be an int >= 1 that divides train.batch_size"),
    ({"train.accumulation_steps": 3}, "accumulation_steps must be an int >= 1 that divides train.batch_size"),
    ({"train.frozen_stages": 8}, r"frozen_stages must be from -1 \(none\) to 7"),
    ({"train.norm_eval": "heads"}, "norm_eval must be one of"),
    ({"train.optimizer": "adam"}, "optimizer must be one of"),
    ({"train.ema_decay": 1.0}, "ema_decay must be in"),
    ({"train.early_stopping_patience": -1}, "early_stopping_patience"),
])
def test_bad_settings_are_refused_naming_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        keras_mv2seg.get_config("toy", **override)


def test_class_weights_of_the_wrong_length_list_the_classes():
    config = keras_mv2seg.get_config("toy", **{"train.decode_loss": {"type": "CrossEntropyLoss",
                                                                     "class_weight": [1.0, 2.0]}})
    with pytest.raises(ValueError, match="class_weight .*2.*19.*road"):
        compile_model(build_segmenter(config, auxiliary=True), config)


def test_controls_from_the_command_line(tmp_path):
    """--cfg-options reaches every control (a short run of the CLI: the tool parses, validates and trains)."""
    command = [sys.executable, str(ROOT / "tools" / "train.py"), "toy", "--work-dir", str(tmp_path / "run"),
               "--max-iters", "1", "--quiet", "--cfg-options", "optimizer=adamw", "lr=0.0001", "weight_decay=0.01",
               "frozen_stages=1", "norm_eval=backbone", "ema_decay=0.99", "accumulation_steps=2",
               'paramwise={"custom_keys": {"head": {"lr_mult": 10}}}', "early_stopping_patience=3"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["optimizer"] == "adamw" and saved["accumulation_steps"] == 2 and saved["frozen_stages"] == 1
    assert json.loads(saved["paramwise"]) == {"custom_keys": {"head": {"lr_mult": 10}}}
    command[4] = str(tmp_path / "bad")
    bad = subprocess.run(command[:-2] + ['paramwise={"custom_keys": {"fpn": {"lr_mult": 2}}}'], capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert bad.returncode != 0 and "'fpn'" in bad.stderr and "Traceback" not in bad.stderr

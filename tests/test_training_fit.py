"""model.fit training end to end: work dir, resume (also after SIGKILL), non-finite loss, distribution."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_mv2seg
from keras_mv2seg.training import NonFiniteLossError, train

ROOT = Path(__file__).resolve().parents[1]


def test_fit_writes_the_work_dir_and_resumes(tiny_config_file, tmp_path):
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=4, interval=2)))
    work = tmp_path / "run"
    summary = train(config, work, verbose=0)
    assert summary["iterations"] == 4 and summary["resumed_from"] == 0
    assert {"iterations", "last_mIoU", "best_mIoU", "wall_time_s", "images_per_s"} <= set(summary)
    assert json.loads((work / "summary.json").read_text()) == summary
    history = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [h["iteration"] for h in history] == [2, 4]
    assert (work / "best.weights.h5").is_file() and (work / "final.weights.h5").is_file()
    assert list((work / "logs" / "train").glob("events.out.tfevents.*"))
    # same command again: nothing left to do, nothing redone
    again = train(config, work, verbose=0)
    assert again["iterations"] == 4 and again["resumed_from"] == 4
    # a longer schedule is a different config: refused rather than mixed into this run
    with pytest.raises(ValueError, match="different config .*train.max_iters"):
        train(config.replace(max_iters=8), work, verbose=0)


def test_training_lowers_the_loss(tiny_config_file):
    from keras_mv2seg.data.pipeline import train_dataset
    from keras_mv2seg.models import build_segmenter
    from keras_mv2seg.training.trainer import compile_model, with_targets

    # 30 steps: from the reference (Kaiming) initialisation this tiny model starts slower than from Keras'
    # glorot defaults, which fitted the batch in 12
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=30, interval=30, extra=", lr=0.05")))
    keras.utils.set_random_seed(0)
    model = build_segmenter(config, auxiliary=True)
    compile_model(model, config)
    batch = train_dataset(config, batch_size=2).map(with_targets(model)).take(1).cache()
    images, targets = next(iter(batch))

    def loss():  # with batch statistics: BN moving averages lag behind after a dozen steps
        outputs = model(images, training=True)
        return float(model.loss["logits"](targets["logits"], outputs["logits"]))

    before = loss()
    model.fit(batch.repeat(), steps_per_epoch=30, epochs=1, verbose=0)
    after = loss()
    assert after < 0.7 * before, (before, after)  # fits one batch


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config_file, tmp_path):
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=40, interval=2, extra=", lr=1e12, min_lr=1e12")))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration \d+.*last good checkpoint"):
        train(config, tmp_path / "nan", verbose=0)
    assert not (tmp_path / "nan" / "final.weights.h5").exists()


@pytest.mark.heavy
def test_sigkill_then_resume_continues_the_schedule(tiny_config_file, tmp_path):
    config_file = tiny_config_file(iters=8, interval=2)
    work = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "tools" / "train.py"), str(config_file), "--work-dir", str(work), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        # ckpt-4 counts once the manager's state file names it: the .index appears before that, and a kill
        # between the two rightly resumes from ckpt-2.
        state = work / "checkpoints" / "checkpoint"
        if state.is_file() and 'model_checkpoint_path: "ckpt-4"' in state.read_text():
            break
        time.sleep(0.2)
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (work / "summary.json").exists()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["iterations"] == 8 and summary["resumed_from"] >= 4
    iterations = [json.loads(line)["iteration"] for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert iterations[-1] == 8 and set(iterations) <= {2, 4, 6, 8}


def test_training_from_deeplab_tfrecords(tiny_config_file, tiny_toy_root, tmp_path):
    from keras_mv2seg.data import list_samples
    from keras_mv2seg.data.tfrecord import write_tfrecords

    for split in ("train", "val"):
        write_tfrecords(list_samples("toy", tiny_toy_root, split)[0], tmp_path / "rec" / split)
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=2, interval=2))).replace(
        data_root="", train_records=str(tmp_path / "rec" / "train-*"), val_records=str(tmp_path / "rec" / "val-*"))
    summary = train(config, tmp_path / "run", verbose=0)
    assert summary["iterations"] == 2 and summary["last_mIoU"] is not None


def test_pretrained_backbone_initialisation_and_mixed_precision(tiny_config_file, tmp_path):
    """An mmcls-layout ImageNet checkpoint initialises the backbone; bfloat16 mixed precision trains with
    float32 logits. The learning rate is ~0 so the weights stay those of the checkpoint."""
    from keras_mv2seg.models import build_segmenter
    from tests.pth_writer import backbone_state_dict, save_pth

    config = keras_mv2seg.get_config(str(tiny_config_file(iters=2, interval=2)))
    state = backbone_state_dict(build_segmenter(config))
    state["head.fc.weight"] = np.zeros((10, 4), "float32")
    save_pth(tmp_path / "imagenet.pth", state)
    config = config.replace(pretrained=str(tmp_path / "imagenet.pth"), lr=1e-12, min_lr=1e-12,
                            mixed_precision="bfloat16")
    summary = train(config, tmp_path / "run", verbose=0)
    assert summary["iterations"] == 2
    trained = build_segmenter(config, auxiliary=True)
    trained.load_weights(tmp_path / "run" / "final.weights.h5")
    np.testing.assert_allclose(trained.get_layer("stem_conv").get_weights()[0],
                               state["backbone.conv1.conv.weight"].transpose(2, 3, 1, 0), atol=1e-4)
    import keras

    assert keras.mixed_precision.dtype_policy().name == "float32"  # the global policy is restored


@pytest.mark.heavy
def test_xla_training_option(tiny_config_file, tmp_path):
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=2, interval=2))).replace(jit_compile=True)
    summary = train(config, tmp_path / "xla", verbose=0)
    assert summary["iterations"] == 2 and np.isfinite(summary["last_mIoU"])

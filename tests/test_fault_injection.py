"""Faults injected into real training runs: a kill between a run's writes, torn files, a failed start, the
seed, and the schedule length on the command line. Each asserts that nothing the run reported is lost."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_mv2seg
from keras_mv2seg.training import train
from keras_mv2seg.training import trainer as trainer_module

ROOT = Path(__file__).resolve().parents[1]


class Killed(BaseException):
    """Stands for SIGKILL at one instant: nothing after it runs, no handler sees it (not an Exception)."""


def _history(work):
    return [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]


def test_kill_while_writing_the_best_weights_then_resume_repairs(tiny_config_file, tmp_path, monkeypatch):
    """The first wave lost best.weights.h5 for good when killed between the metrics line and the weights."""
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=4, interval=2)))
    work = tmp_path / "run"
    real = trainer_module.save_weights

    def die_on_best(model, path, config=None):
        if path.name == "best.weights.h5":
            model.save_weights(path.with_name("best.tmp.weights.h5"))  # half done: the temporary exists
            raise Killed()
        real(model, path, config)

    monkeypatch.setattr(trainer_module, "save_weights", die_on_best)
    with pytest.raises(Killed):
        train(config, work, verbose=0)
    assert not (work / "best.weights.h5").exists()
    assert not (work / "metrics.jsonl").exists() or _history(work) == []  # nothing reported without its weights
    monkeypatch.setattr(trainer_module, "save_weights", real)
    summary = train(config, work, verbose=0)  # the same command again
    assert summary["iterations"] == 4
    assert [r["iteration"] for r in _history(work)] == [2, 4]
    best = json.loads((work / "best.json").read_text())
    assert (work / "best.weights.h5").is_file() and not list(work.glob("*.tmp*"))
    assert best["mIoU"] == max(r["mIoU"] for r in _history(work))


def test_old_work_dir_with_metrics_line_but_no_best_weights_is_repaired(tiny_config_file, tmp_path):
    """The state the first wave left (metrics line written, best weights not): re-validated on resume."""
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=4, interval=2)))
    work = tmp_path / "run"
    train(config, work, verbose=0)
    (work / "best.weights.h5").unlink()
    (work / "best.json").unlink()
    (work / "best.tmp.weights.h5").write_bytes(b"half a file")
    history = _history(work)
    best_iteration = max(history, key=lambda r: r["mIoU"])["iteration"]
    train(config, work, verbose=0)
    if best_iteration == 4:  # the restorable checkpoint: its weights are written again
        assert (work / "best.weights.h5").is_file()
    assert not (work / "best.tmp.weights.h5").exists()
    assert [r["iteration"] for r in _history(work)] == [2, 4]


def test_torn_metrics_line_is_dropped_and_the_iteration_revalidated(tiny_config_file, tmp_path):
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=4, interval=2)))
    work = tmp_path / "run"
    train(config, work, verbose=0)
    lines = (work / "metrics.jsonl").read_text().splitlines()
    (work / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed mid-write
    train(config, work, verbose=0)
    assert [r["iteration"] for r in _history(work)] == [2, 4]


def test_summary_is_replaced_atomically(tiny_config_file, tmp_path, monkeypatch):
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=2, interval=2)))
    work = tmp_path / "run"
    train(config, work, verbose=0)
    before = (work / "summary.json").read_text()
    real_replace = trainer_module.os.replace

    def die_before_replace(src, dst):
        if str(dst).endswith("summary.json"):
            raise Killed()
        real_replace(src, dst)

    monkeypatch.setattr(trainer_module.os, "replace", die_before_replace)
    with pytest.raises(Killed):
        train(config, work, verbose=0)
    assert (work / "summary.json").read_text() == before  # the old state, whole


def test_a_start_that_never_checkpointed_can_be_corrected(tiny_config_file, tmp_path):
    """A failed start (here an impossible batch split) must not lock the work dir for the corrected command."""
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=2, interval=2)))
    work = tmp_path / "run"
    (work / "config.json").parent.mkdir(parents=True)
    (work / "config.json").write_text(str(config.replace(batch_size=3)))  # what the failed start wrote
    summary = train(config, work, verbose=0)
    assert summary["iterations"] == 2
    with pytest.raises(ValueError, match="different config .*train.batch_size"):  # a started run stays guarded
        train(config.replace(batch_size=4), work, verbose=0)


def test_seed_is_recorded_and_a_different_seed_is_refused(tiny_config_file, tmp_path):
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=2, interval=2)))
    work = tmp_path / "run"
    assert train(config, work, seed=5, verbose=0)["seed"] == 5
    assert json.loads((work / "seed.json").read_text()) == {"seed": 5}
    with pytest.raises(ValueError, match="seed 5, received seed 6"):
        train(config, work, seed=6, verbose=0)


def test_same_seed_gives_the_same_run(tiny_config_file, tmp_path):
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=2, interval=2)))
    first = train(config, tmp_path / "a", seed=1, verbose=0)
    second = train(config, tmp_path / "b", seed=1, verbose=0)
    model_a = keras_mv2seg.build_segmenter(config, auxiliary=True)
    model_b = keras_mv2seg.build_segmenter(config, auxiliary=True)
    model_a.load_weights(tmp_path / "a" / "final.weights.h5")
    model_b.load_weights(tmp_path / "b" / "final.weights.h5")
    for a, b in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)  # multi-threaded kernels may reorder float sums
    assert first["last_mIoU"] == pytest.approx(second["last_mIoU"], abs=1e-3)


@pytest.mark.parametrize("arguments", [["train.py", "toy"], ["quickstart.py"]])
def test_max_iters_zero_is_a_usage_error(arguments):
    """The first wave ran the whole schedule for --max-iters 0."""
    command = [sys.executable, str(ROOT / "tools" / arguments[0]), *arguments[1:], "--max-iters", "0"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "--max-iters must be >= 1, received 0" in done.stderr


# === Corrupt and truncated files: every message names the file (and the tensor or value) ===

def _backbone_pth(tmp_path, mutate=None):
    from tests.pth_writer import backbone_state_dict, save_pth

    model = keras_mv2seg.build_segmenter(keras_mv2seg.get_config("toy", widen_factor=0.25))
    state = backbone_state_dict(model)
    if mutate:
        mutate(state)
    path = tmp_path / "backbone.pth"
    save_pth(path, state)
    return model, path


def test_truncated_zip_pth_is_named_as_truncated(tmp_path):
    model, path = _backbone_pth(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a download cut off half way
    with pytest.raises(ValueError, match=f"{path}: truncated zip checkpoint"):
        keras_mv2seg.load_weights(model, path, part="backbone")


def test_zip_pth_with_a_bad_crc_names_the_file(tmp_path):
    model, path = _backbone_pth(tmp_path)
    data = bytearray(path.read_bytes())
    start = data.index(b"archive/data/0") + len(b"archive/data/0")  # the first storage's bytes follow its name
    data[start + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{path}: corrupt zip checkpoint .*CRC"):
        keras_mv2seg.load_weights(model, path, part="backbone")


def test_truncated_legacy_pth_is_named(tmp_path):
    path = tmp_path / "legacy.pth"
    path.write_bytes(b"\x80\x02\x8a\x0a")  # the start of a legacy magic-number pickle, then nothing
    with pytest.raises(ValueError, match=f"{path}: not a PyTorch checkpoint"):
        keras_mv2seg.load_weights(keras_mv2seg.build_segmenter(keras_mv2seg.get_config("toy")), path)


def test_non_finite_pth_weights_are_refused_unless_allowed(tmp_path):
    def poison(state):
        key = next(k for k in state if k.endswith("weight"))
        state[key] = state[key].copy()
        state[key].flat[3] = np.nan

    model, path = _backbone_pth(tmp_path, poison)
    before = [np.array(w) for w in model.weights]
    with pytest.raises(ValueError, match="(?s)non-finite values.*1 of .* values are NaN/inf"):
        keras_mv2seg.load_weights(model, path, part="backbone")
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.weights))  # nothing loaded
    keras_mv2seg.load_weights(model, path, part="backbone", allow_non_finite=True)


def test_non_finite_keras_weights_are_refused_and_nothing_changes(tmp_path):
    model = keras_mv2seg.build_segmenter(keras_mv2seg.get_config("toy", widen_factor=0.25))
    weights = model.get_weights()
    weights[0] = np.full_like(weights[0], np.inf)
    model.set_weights(weights)
    model.save_weights(tmp_path / "diverged.weights.h5")
    fresh = keras_mv2seg.build_segmenter(keras_mv2seg.get_config("toy", widen_factor=0.25))
    before = [np.array(w) for w in fresh.weights]
    with pytest.raises(ValueError, match="diverged.weights.h5: 1 weights hold NaN/inf"):
        keras_mv2seg.load_weights(fresh, tmp_path / "diverged.weights.h5")
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, fresh.weights))


def test_truncated_tf_checkpoint_names_the_variable(tmp_path):
    import tensorflow as tf

    from keras_mv2seg.weights.deeplab import read_checkpoint

    prefix = tf.train.Checkpoint(weights=tf.Variable(np.arange(20000, dtype=np.float32))).write(
        str(tmp_path / "model.ckpt"))
    data = next(tmp_path.glob("model.ckpt.data-*"))
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot read variable 'weights/.*truncated or corrupt"):
        read_checkpoint(prefix)


def test_truncated_png_during_training_names_the_file(tiny_config_file, tiny_toy_root, tmp_path):
    import shutil

    root = tmp_path / "toy"
    shutil.copytree(tiny_toy_root, root)
    victim = sorted((root / "leftImg8bit" / "train").rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:300])  # header intact, pixels cut off
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=2, interval=2))).replace(data_root=str(root))
    with pytest.raises(ValueError, match=f"could not be decoded .*{victim.name}: image does not decode"):
        train(config, tmp_path / "run", verbose=0)


# === The command line: one line, a distinct status, the traceback with --verbose ===

def _tool(*arguments, verbose=False):
    command = [sys.executable, str(ROOT / "tools" / arguments[0]), *arguments[1:]] + (["--verbose"] if verbose else [])
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def test_bad_cfg_option_is_a_usage_error_before_anything_runs(tmp_path):
    done = _tool("train.py", "toy", "--work-dir", str(tmp_path / "w"), "--cfg-options", "crop_size=64")
    assert done.returncode == 2
    assert "error: config key 'data.crop_size' expects tuple[int, int], received 64 (int)" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "w").exists()
    done = _tool("train.py", "toy", "--work-dir", str(tmp_path / "w"), "--cfg-options", "batch_size=2.5")
    assert done.returncode == 2 and "expects int, received 2.5" in done.stderr


def test_bad_weights_file_is_exit_1_with_one_line_and_verbose_shows_the_traceback(tmp_path):
    weights = tmp_path / "broken.pth"
    weights.write_bytes(b"PK\x03\x04 not really a zip")
    done = _tool("predict.py", "toy", str(weights), str(tmp_path / "none.png"))
    assert done.returncode in (1, 2) and "Traceback" not in done.stderr
    done = _tool("test.py", "toy", str(weights))
    assert done.returncode == 1 and f"error: {weights}: truncated zip checkpoint" in done.stderr
    ours = [line for line in done.stderr.splitlines() if not line.startswith(("WARNING: All log", "I0000", "W0000"))]
    assert "Traceback" not in done.stderr and len(ours) <= 2, ours  # TensorFlow's own start-up lines aside
    verbose = _tool("test.py", "toy", str(weights), verbose=True)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


# === Recovering from a blow-up without replaying it ===

def test_nan_stop_then_resume_from_an_earlier_checkpoint_with_a_lower_lr(tiny_config_file, tmp_path):
    from keras_mv2seg.training import NonFiniteLossError

    work = tmp_path / "run"
    good = keras_mv2seg.get_config(str(tiny_config_file(iters=8, interval=2)))
    train(good.replace(max_iters=8), work, verbose=0)  # checkpoints 2..8 exist (the manager keeps the last 3)
    checkpoints = sorted(p.name[:-6] for p in (work / "checkpoints").glob("ckpt-*.index"))
    assert checkpoints == ["ckpt-4", "ckpt-6", "ckpt-8"]
    # a changed lr without resume_from is refused (the run would mix two recipes silently)
    with pytest.raises(ValueError, match="different config .*train.lr"):
        train(good.replace(lr=0.005), work, verbose=0)
    # a setting that is not a recovery setting stays refused even with resume_from
    with pytest.raises(ValueError, match="only train.lr.*may change"):
        train(good.replace(batch_size=4), work, verbose=0, resume_from="ckpt-4")
    with pytest.raises(ValueError, match="resume_from 'ckpt-3' is not a checkpoint .*known: ckpt-4, ckpt-6, ckpt-8"):
        train(good.replace(lr=0.005), work, verbose=0, resume_from="ckpt-3")
    summary = train(good.replace(lr=0.005), work, verbose=0, resume_from="ckpt-4")
    assert summary["resumed_from"] == 4 and summary["iterations"] == 8
    assert sorted(p.name for p in (work / "checkpoints" / "abandoned").glob("*.index")) == ["ckpt-6.index",
                                                                                          "ckpt-8.index"]
    assert [json.loads(l)["iteration"] for l in (work / "metrics.abandoned.jsonl").read_text().splitlines()] == [6, 8]
    assert [r["iteration"] for r in _history(work)] == [2, 4, 6, 8]
    change = json.loads((work / "config_changes.jsonl").read_text().splitlines()[0])
    assert change == {"changed": {"train.lr": 0.005}, "previous": {"train.lr": 0.01}}
    assert json.loads((work / "config.json").read_text())["train"]["lr"] == 0.005
    with pytest.raises(NonFiniteLossError, match="--resume-from ckpt-N --cfg-options lr="):
        train(keras_mv2seg.get_config(str(tiny_config_file(iters=40, interval=2, extra=", lr=1e12, min_lr=1e12"))),
              tmp_path / "nan", verbose=0)


def test_out_of_disk_is_one_clear_message_and_the_run_resumes_after(tiny_config_file, tmp_path, monkeypatch, capsys):
    import errno

    from keras_mv2seg.cli import run_main

    config = keras_mv2seg.get_config(str(tiny_config_file(iters=4, interval=2)))
    work = tmp_path / "run"
    real = trainer_module.write_text

    def full_disk(path, text):
        if path.name == "best.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(trainer_module, "write_text", full_disk)

    def tool(argv):
        train(config, work, verbose=0)
        return 0

    assert run_main(tool, []) == 1
    message = capsys.readouterr().err
    assert "error: no space left on the device while writing" in message and "best.json" in message
    assert "Traceback" not in message
    monkeypatch.setattr(trainer_module, "write_text", real)  # space freed
    assert train(config, work, verbose=0)["iterations"] == 4
    assert [r["iteration"] for r in _history(work)] == [2, 4]
    assert (work / "best.weights.h5").is_file() and not list(work.glob("*.tmp*"))


@pytest.mark.heavy
@pytest.mark.parametrize("point", ["best_tmp", "before_metrics", "summary_tmp", "checkpoint"])
def test_sigkill_at_each_write_then_the_same_command_finishes_with_everything(point, tiny_config_file, tmp_path):
    """A real SIGKILL (tests/kill_run.py kills its own process at the point), then the same run again."""
    config_file = tiny_config_file(iters=6, interval=2)
    work = tmp_path / "run"
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_run.py"), str(config_file), str(work), point],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == -9, done.stderr[-2000:]
    summary = train(keras_mv2seg.get_config(str(config_file)), work, verbose=0)
    assert summary["iterations"] == 6
    history = _history(work)
    assert [r["iteration"] for r in history] == [2, 4, 6]
    best = json.loads((work / "best.json").read_text())
    assert best["mIoU"] == max(r["mIoU"] for r in history)
    assert (work / "best.weights.h5").is_file() and (work / "final.weights.h5").is_file()
    assert json.loads((work / "summary.json").read_text()) == summary
    assert not list(work.glob("*.tmp*"))


def test_toy_config_on_a_foreign_data_root_says_what_to_pass(tmp_path):
    from keras_mv2seg.data.toy import make_toy_dataset

    (tmp_path / "cityscapes").mkdir()
    (tmp_path / "cityscapes" / "README").write_text("a user's own data")
    with pytest.raises(FileExistsError, match="(?s)not a toy dataset.*pass another --data-root.*a config of its "
                                              "dataset"):
        make_toy_dataset(tmp_path / "cityscapes")
    assert (tmp_path / "cityscapes" / "README").read_text() == "a user's own data"  # nothing written into it

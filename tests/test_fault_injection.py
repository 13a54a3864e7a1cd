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
    real = trainer_module._atomic_weights

    def die_on_best(model, path):
        if path.name == "best.weights.h5":
            model.save_weights(path.with_name("best.tmp.weights.h5"))  # half done: the temporary exists
            raise Killed()
        real(model, path)

    monkeypatch.setattr(trainer_module, "_atomic_weights", die_on_best)
    with pytest.raises(Killed):
        train(config, work, verbose=0)
    assert not (work / "best.weights.h5").exists()
    assert not (work / "metrics.jsonl").exists() or _history(work) == []  # nothing reported without its weights
    monkeypatch.setattr(trainer_module, "_atomic_weights", real)
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

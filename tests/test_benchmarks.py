"""Every benchmark script runs, at tiny sizes and without the PyTorch reference kit, so none can rot unseen.
What they measure is printed by them (speed, memory, accuracy), never asserted here."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUNS = {
    "bench_inference.py": ["--heads", "fcn", "--sizes", "64x64", "--iters", "1", "--warmup", "1", "--rounds", "1",
                           "--no-reference"],
    "bench_training.py": ["--heads", "fcn", "--crop", "64", "64", "--batch", "1", "--steps", "1", "--no-reference"],
    "bench_predict.py": ["--config", "toy", "--sizes", "48x64", "--folder", "3", "--folder-size", "32x48", "--rounds",
                         "1", "--no-reference"],
    "bench_pipeline.py": ["--images", "1", "--count", "2", "--rounds", "1", "--no-reference"],
    "bench_deploy.py": ["--heads", "fcn", "--sizes", "64x64", "--paths", "onnxruntime:float32", "--rounds", "1",
                        "--iters", "1", "--warmup", "1", "--train-iters", "2", "--no-reference"],
    "bench_learning_curve.py": ["--seeds", "0", "--max-iters", "2", "--val-interval", "1", "--work-root",
                                "work_dirs/curve", "--no-reference"],
    "bench_imbalance.py": ["--losses", "class_weight", "--seeds", "0", "--max-iters", "2", "--work-root",
                           "work_dirs/imbalance", "--no-reference"],
    "bench_mobile.py": ["--sizes", "33x33", "--threads", "1", "--iters", "1", "--variants", "int8 uint8 io at stride",
                        "--train-iters", "2"],
    "export_quality.py": ["--heads", "fcn", "--max-iters", "2", "--calibration", "2", "--paths",
                          "onnxruntime:float32"],
    "probe_training_steps.py": ["--steps", "1", "--work-root", "work_dirs/probe", "--no-reference"],
    "profile_runtime.py": ["--head", "fcn", "--size", "64x64", "--runtime", "onnxruntime", "--iters", "1",
                           "--train-iters", "2"],
    "tflite_table.py": ["--configs", "fcn_m-v2-d8_512x1024_80k_cityscapes", "--size", "64", "64", "--iters", "1"],
}


def test_every_benchmark_script_has_a_smoke_run():
    scripts = {path.name for path in (ROOT / "benchmarks").glob("*.py")} - {"kit.py"}
    assert scripts == set(RUNS)


@pytest.mark.heavy
@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs_at_tiny_sizes(script, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *RUNS[script]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{script}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert "machine:" in done.stdout or "AMD" in done.stdout or "Intel" in done.stdout, done.stdout[-2000:]

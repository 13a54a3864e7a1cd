"""Distribution: a mirrored fit on 2 logical CPU devices equals a single-device fit of the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_fit(mode, config_file, out, env_extra=None, steps=3):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "distributed_fit.py"), mode, str(config_file),
                             str(out), str(steps)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=600):
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def update_difference(single, other, init):
    """||update_other - update_single|| / ||update_single|| over all trainable weights."""
    keys = [k for k in single.files if not k.endswith(("moving_mean", "moving_variance"))]
    difference = np.sqrt(sum(float(((single[k] - other[k]) ** 2).sum()) for k in keys))
    update = np.sqrt(sum(float(((single[k] - init[k]) ** 2).sum()) for k in keys))
    return difference / update


@pytest.mark.heavy
def test_mirrored_fit_matches_single_device(tiny_config_file, tmp_path):
    """One step on the same global batch of 4: 2 replicas x 2 with synchronized BN (all layers) against one
    device x 4. Dropout off: its masks are drawn per replica. Without synchronized BN each replica
    normalises its own 2 images and the update differs by ~100 %: the comparison can fail."""
    outputs, processes = {}, {}
    for name, sync in (("single", "all"), ("mirrored", "all"), ("mirrored_unsynced", "none")):
        config_file = tiny_config_file(batch=4, extra=f", sync_batchnorm='{sync}', lr=0.02, dropout=0.0")
        config_file = config_file.rename(tmp_path / f"{name}.py")  # each process its own config file
        processes[name] = run_fit(name.split("_")[0], config_file, tmp_path / f"{name}.npz", steps=1)
    for name, process in processes.items():  # the three ran side by side
        assert f"replicas={1 if name == 'single' else 2} iterations=1" in finish(process)
        outputs[name] = np.load(tmp_path / f"{name}.npz")
    init = np.load(tmp_path / "single_init.npz")
    for key in init.files:  # same starting point
        np.testing.assert_array_equal(init[key], np.load(tmp_path / "mirrored_init.npz")[key])
    assert update_difference(outputs["single"], outputs["mirrored"], init) < 0.02
    assert update_difference(outputs["single"], outputs["mirrored_unsynced"], init) > 0.5
    # the moving statistics too: synchronized batch norm's Bessel correction counts the global batch (4 x 8 x 8
    # values per channel here, not a replica's half: that would differ by ~4e-4)
    stats = [k for k in init.files if k.endswith(("moving_mean", "moving_variance"))]
    for key in stats:
        np.testing.assert_allclose(outputs["mirrored"][key], outputs["single"][key], rtol=2e-5, atol=1e-6,
                                   err_msg=key)


def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.heavy
def test_two_process_multi_worker_fit_on_localhost(tiny_config_file, tmp_path):
    """MultiWorkerMirroredStrategy from TF_CONFIG, two workers on 127.0.0.1, through the same fit path."""
    import json

    config_file = tiny_config_file(batch=4, extra=", sync_batchnorm='all', lr=0.02, dropout=0.0")
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(run_fit("multi_worker", config_file, tmp_path / f"worker{index}.npz",
                                 env_extra={"TF_CONFIG": tf_config}, steps=1))
    for process in processes:
        assert "replicas=2 iterations=1" in finish(process)
    single = run_fit("single", config_file, tmp_path / "single.npz", steps=1)
    finish(single)
    first, second = np.load(tmp_path / "worker0.npz"), np.load(tmp_path / "worker1.npz")
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])
    assert update_difference(np.load(tmp_path / "single.npz"), first, np.load(tmp_path / "single_init.npz")) < 0.02


@pytest.mark.parametrize("text, named", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs "cluster"'),
    ('{"cluster": {"worker": ["localhost:1"]}}', 'TF_CONFIG needs "task"'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 1}}',
     "TF_CONFIG's task worker 1 is not in its cluster \\(worker: 1\\)"),
])
def test_a_malformed_tf_config_is_named(monkeypatch, text, named):
    from keras_mv2seg.training.distribute import make_strategy

    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(ValueError, match=named):
        make_strategy("auto")


def _free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.heavy
def test_a_worker_nobody_starts_ends_the_start_up_with_its_name_on_either_side():
    """Two-worker TF_CONFIG, only one process started, as worker 0 (TensorFlow's coordination leader, which
    would otherwise wait inside TensorFlow for good) and as worker 1: each ends with a ConnectionError naming
    the missing worker and TF_CONFIG after the timeout; neither hangs."""
    import json

    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    script = ("import sys; sys.path.insert(0, %r)\n"
              "from keras_mv2seg.training.distribute import make_strategy\n"
              "try:\n    make_strategy('multi_worker', startup_timeout_s=3)\n"
              "except ConnectionError as error:\n    print('ConnectionError:', error); sys.exit(1)\n"
              "print('formed'); sys.exit(0)\n") % str(ROOT)
    for index in (0, 1):
        config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        done = subprocess.run([sys.executable, "-c", script], text=True, capture_output=True, timeout=120,
                              env={**os.environ, "TF_CONFIG": config, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert done.returncode == 1, (done.stdout, done.stderr[-2000:])
        missing = 1 - index
        assert (f"ConnectionError: multi-worker start-up: no answer within 3 s from worker {missing} at "
                f"{workers[missing]}. Start every worker of TF_CONFIG") in done.stdout, done.stdout
        assert f"TF_CONFIG={config}" in done.stdout


def test_a_port_that_answers_without_a_worker_behind_it_is_not_a_worker():
    """A program that accepts connections on a worker's address and says nothing (or something else) is not
    counted: the start-up ends at its timeout naming that worker, instead of waiting inside TensorFlow."""
    import socket
    import threading
    import time

    from keras_mv2seg.training.distribute import rendezvous

    impostor = socket.socket()
    impostor.bind(("127.0.0.1", 0))
    impostor.listen(8)
    impostor.settimeout(0.1)
    stop = threading.Event()

    def accept_silently():
        held = []
        while not stop.is_set():
            try:
                held.append(impostor.accept()[0])  # held open, never a word
            except socket.timeout:
                continue
        for connection in held:
            connection.close()

    thread = threading.Thread(target=accept_silently, daemon=True)
    thread.start()
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{impostor.getsockname()[1]}"]}
    started = time.monotonic()
    try:
        with pytest.raises(ConnectionError, match=f"no answer within 2 s from worker 1 at {cluster['worker'][1]}"):
            rendezvous(cluster, "worker", 0, timeout_s=2, notice=lambda text: None)
    finally:
        stop.set()
        thread.join()
        impostor.close()
    assert time.monotonic() - started < 10

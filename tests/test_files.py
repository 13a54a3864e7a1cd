"""files.py: atomic writes leave the old or the new file, never half; outputs are not replaced unasked."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_mv2seg.files import atomic_save, atomic_write, exclusive_lock, refuse_existing, staging_path


class Killed(Exception):
    pass


def test_atomic_write_replaces_whole_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    import os

    path = tmp_path / "sub" / "a.json"
    atomic_write(path, "old")
    assert path.read_text() == "old" and not list(path.parent.glob("*.tmp*"))
    real = os.replace

    def die(src, dst):
        raise Killed()

    monkeypatch.setattr(os, "replace", die)
    with pytest.raises(Killed):
        atomic_write(path, "new", sync=True)
    monkeypatch.setattr(os, "replace", real)
    assert path.read_text() == "old"  # the crash left the old version, whole
    atomic_write(path, b"new")
    assert path.read_text() == "new"


def test_staging_names_are_the_writers_own_keep_the_keras_suffix_and_contain_tmp(tmp_path):
    pid = os.getpid()
    assert re.fullmatch(rf"best\.tmp-{pid}-[0-9a-f]{{6}}\.weights\.h5", staging_path(tmp_path / "best.weights.h5").name)
    assert re.fullmatch(rf"summary\.json\.tmp-{pid}-[0-9a-f]{{6}}", staging_path(tmp_path / "summary.json").name)
    assert staging_path(tmp_path / "a.json") != staging_path(tmp_path / "a.json")  # two writers, two files


def test_what_killed_writers_left_is_removed_and_live_writers_keep_theirs(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        (tmp_path / f"a.json.tmp-{dead.pid}-abcdef").write_text("half")
        (tmp_path / f"a.json.tmp-{live.pid}-abcdef").write_text("being written")
        (tmp_path / f"best.tmp-{dead.pid}-abcdef.weights.h5").write_text("half")
        (tmp_path / f"ab.json.tmp-{dead.pid}-abcdef").write_text("another file's")
        atomic_write(tmp_path / "a.json", "whole")
        atomic_save(tmp_path / "best.weights.h5", lambda staged: staged.write_text("whole"))
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["a.json", f"a.json.tmp-{live.pid}-abcdef", "best.weights.h5", f"ab.json.tmp-{dead.pid}-abcdef"])
    finally:
        live.kill()
        live.wait()


def test_lock_is_held_across_processes_waits_times_out_naming_the_holder_and_dies_with_it(tmp_path):
    lock = tmp_path / "locks" / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from keras_mv2seg.files import exclusive_lock
with exclusive_lock({str(lock)!r}, what="a test"):
    print("held", flush=True)
    time.sleep(120)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        notices = []
        with pytest.raises(TimeoutError, match=rf"a test: process {holder.pid} has held the lock .*x\.lock"):
            with exclusive_lock(lock, what="a test", timeout_s=0.5, notice=notices.append):
                pass
        assert notices == [f"waiting for process {holder.pid}, which holds {lock} (a test)"]
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the operating system releases the lock
        holder.wait()
        start = time.monotonic()
        with exclusive_lock(lock, what="a test", timeout_s=10):
            assert lock.read_text().strip() == str(os.getpid())
        assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()


def test_atomic_save_of_a_folder_replaces_it_and_cleans_up_a_failed_save(tmp_path):
    target = tmp_path / "model"

    def save(folder, text):
        folder.mkdir()
        (folder / "x").write_text(text)

    atomic_save(target, lambda tmp: save(tmp, "1"))
    atomic_save(target, lambda tmp: save(tmp, "2"))
    assert (target / "x").read_text() == "2"

    def broken(tmp):
        save(tmp, "3")
        raise Killed()

    with pytest.raises(Killed):
        atomic_save(target, broken)
    assert (target / "x").read_text() == "2" and not list(tmp_path.glob("*.tmp*"))


def test_refuse_existing_names_the_file_and_the_way_to_ask(tmp_path):
    path = tmp_path / "out.png"
    assert refuse_existing(path, False) == path
    path.write_bytes(b"x")
    with pytest.raises(FileExistsError, match=f"{path} exists; pass overwrite=True to replace it"):
        refuse_existing(path, False)
    with pytest.raises(FileExistsError, match="pass --overwrite to replace it"):
        refuse_existing(path, False, how="--overwrite")
    assert refuse_existing(path, True) == path


def test_atomic_save_publishes_only_what_its_check_accepts(tmp_path):
    """Exports are verified under their staging name: a refused or failing check leaves nothing at the path."""
    target = tmp_path / "model.tflite"
    assert atomic_save(target, lambda tmp: tmp.write_bytes(b"bad"), check=lambda staged: False) is None
    assert not target.exists() and not list(tmp_path.glob("*.tmp*"))

    def failing(staged):
        assert staged.read_bytes() == b"x"
        raise Killed()

    with pytest.raises(Killed):
        atomic_save(target, lambda tmp: tmp.write_bytes(b"x"), check=failing)
    assert not target.exists() and not list(tmp_path.glob("*.tmp*"))
    assert atomic_save(target, lambda tmp: tmp.write_bytes(b"ok"), check=lambda staged: True) == target
    assert target.read_bytes() == b"ok"

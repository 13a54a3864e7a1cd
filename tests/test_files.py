"""files.py: atomic writes leave the old or the new file, never half; outputs are not replaced unasked."""

import pytest

from keras_mv2seg.files import atomic_save, atomic_write, refuse_existing, staging_path


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


def test_staging_names_keep_the_keras_suffix_and_contain_tmp(tmp_path):
    assert staging_path(tmp_path / "best.weights.h5").name == "best.tmp.weights.h5"
    assert staging_path(tmp_path / "summary.json").name == "summary.json.tmp"


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
    assert (target / "x").read_text() == "2" and not staging_path(target).exists()


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
    assert not target.exists() and not staging_path(target).exists()

    def failing(staged):
        assert staged.read_bytes() == b"x"
        raise Killed()

    with pytest.raises(Killed):
        atomic_save(target, lambda tmp: tmp.write_bytes(b"x"), check=failing)
    assert not target.exists() and not staging_path(target).exists()
    assert atomic_save(target, lambda tmp: tmp.write_bytes(b"ok"), check=lambda staged: True) == target
    assert target.read_bytes() == b"ok"

"""Writing files safely: the one way the library writes a file or folder that a crash must not leave half done,
and the one refusal to replace an existing output unasked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def refuse_existing(path, overwrite: bool, *, how: str = "overwrite=True") -> Path:
    """``path`` as a Path; FileExistsError when it exists and ``overwrite`` is false. ``how`` names the way to
    ask for the replacement: the library's argument, or a command-line tool's ``--overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {how} to replace it")
    return path


def staging_path(path) -> Path:
    """The temporary name a file is written under before it replaces ``path`` (``x.weights.h5`` keeps its
    suffix, as Keras requires: ``x.tmp.weights.h5``); every name contains ``.tmp`` for clean-up after a crash."""
    path = Path(path)
    if path.name.endswith(".weights.h5"):
        return path.with_name(path.name[: -len(".weights.h5")] + ".tmp.weights.h5")
    return path.with_name(path.name + ".tmp")


def atomic_write(path, data: bytes | str, *, sync: bool = False) -> Path:
    """Write ``data`` so that a crash leaves either the old file or the new one (``sync``: flush to disk
    before the rename, for files a resumed run relies on)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def atomic_save(path, save, check=None) -> Path:
    """Call ``save(staging_path)``, then ``check(staging_path)`` if given (verification of what was written: it
    raises, or returns False, to refuse it), then move the result over ``path`` (files, or folders such as
    SavedModels). A failed save or check, or a kill before the rename, leaves nothing at ``path`` but what was
    there before."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_path(path)
    _remove(tmp)
    try:
        save(tmp)
        if check is not None and check(tmp) is False:
            _remove(tmp)
            return None
    except BaseException:
        _remove(tmp)
        raise
    if path.is_dir() and tmp.is_dir():
        _remove(path)
    os.replace(tmp, path)
    return path


def _remove(path: Path):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()

"""Writing files safely: the one way the library writes a file or folder that a crash must not leave half done,
the one refusal to replace an existing output unasked, and the one inter-process lock (for caches that several
processes -- the workers of one distributed run -- fill at once)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


def refuse_existing(path, overwrite: bool, *, how: str = "overwrite=True") -> Path:
    """``path`` as a Path; FileExistsError when it exists and ``overwrite`` is false. ``how`` names the way to
    ask for the replacement: the library's argument, or a command-line tool's ``--overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {how} to replace it")
    return path


_KERAS_SUFFIX = ".weights.h5"  # Keras requires it of weight files, staging ones included


def staging_path(path) -> Path:
    """A temporary name, unique to this process and call, that a file is written under before it replaces
    ``path``: ``x.json.tmp-<pid>-<token>`` (``x.weights.h5`` keeps its suffix: ``x.tmp-<pid>-<token>.weights.h5``).
    Two processes writing one output at once never write into each other's file; every name contains ``.tmp``
    and the writer's process id, for :func:`remove_stale_staging`."""
    path = Path(path)
    tag = f".tmp-{os.getpid()}-{secrets.token_hex(3)}"
    if path.name.endswith(_KERAS_SUFFIX):
        return path.with_name(path.name[: -len(_KERAS_SUFFIX)] + tag + _KERAS_SUFFIX)
    return path.with_name(path.name + tag)


def remove_stale_staging(path):
    """Remove what writers of ``path`` killed before their rename left behind: its staging files and folders
    whose process no longer runs (those of live processes are theirs to finish)."""
    path = Path(path)
    stem = path.name[: -len(_KERAS_SUFFIX)] if path.name.endswith(_KERAS_SUFFIX) else path.name
    pattern = re.compile(re.escape(stem) + r"\.tmp-(\d+)-[0-9a-f]+(" + re.escape(_KERAS_SUFFIX) + ")?$")
    if not path.parent.is_dir():
        return
    for candidate in path.parent.iterdir():
        match = pattern.match(candidate.name)
        if match and not _running(int(match.group(1))):
            _remove(candidate)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or a platform that cannot tell: leave it
        return True
    return True


def disk_full_at(error: BaseException, path) -> OSError | None:
    """An OSError naming ``path`` for a full disk (or quota) that ``error`` reports without a file name (a write
    into a staging file; TensorFlow's writers), else None: the tools say which output did not fit."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        if error.filename is None or ".tmp-" in os.fspath(error.filename):
            return OSError(error.errno, os.strerror(error.errno), str(path))
        return None
    message = str(getattr(error, "message", "") or error)
    if "No space left on device" in message or "Disk quota exceeded" in message:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return None


def atomic_write(path, data: bytes | str, *, sync: bool = False) -> Path:
    """Write ``data`` so that a crash leaves either the old file or the new one (``sync``: flush to disk
    before the rename, for files a resumed run relies on)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    tmp = staging_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException as error:
        _remove(tmp)
        raise disk_full_at(error, path) or error
    os.replace(tmp, path)
    return path


def atomic_save(path, save, check=None) -> Path:
    """Call ``save(staging_path)``, then ``check(staging_path)`` if given (verification of what was written: it
    raises, or returns False, to refuse it), then move the result over ``path`` (files, or folders such as
    SavedModels). A failed save or check, or a kill before the rename, leaves nothing at ``path`` but what was
    there before."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    tmp = staging_path(path)
    try:
        save(tmp)
        if check is not None and check(tmp) is False:
            _remove(tmp)
            return None
    except BaseException as error:
        _remove(tmp)
        raise disk_full_at(error, path) or error
    if path.is_dir() and tmp.is_dir():
        _remove(path)
    os.replace(tmp, path)
    return path


def _remove(path: Path):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


@contextlib.contextmanager
def exclusive_lock(path, *, what: str, timeout_s: float = 1800.0, poll_s: float = 0.2, notice=None,
                   advice: str | None = None):
    """Hold the inter-process lock ``path`` (a file, created if needed) while the block runs; ``what`` says
    what it guards, for the messages. The operating system releases it when its process ends, however it ends,
    so a killed holder never leaves a stale lock. A process that waits says so once (``notice``, default:
    standard error) and gives up after ``timeout_s`` with a TimeoutError naming the lock and its holder; with
    ``timeout_s`` 0 it does not wait: the TimeoutError comes at once, with ``advice``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        deadline, told = time.monotonic() + timeout_s, False
        while not _try_lock(handle):
            holder = _holder(path)
            if timeout_s <= 0:
                raise TimeoutError(f"{what}: process {holder} holds {path}; {advice or 'try again later'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: process {holder} has held the lock {path} for more than {timeout_s:.0f} s;"
                                   " if it is stuck, stop it and call again")
            if not told:
                (notice or _to_stderr)(f"waiting for process {holder}, which holds {path} ({what})")
                told = True
            time.sleep(poll_s)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield path
    finally:
        _unlock(handle)
        handle.close()


def _try_lock(handle) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(handle):
    with contextlib.suppress(OSError):
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        else:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "(unknown)"
    except OSError:
        return "(unknown)"


def _to_stderr(message: str):
    print(message, file=sys.stderr, flush=True)

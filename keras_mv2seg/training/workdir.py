"""The work dir of a run: its JSON-lines records (one reader, one writer, crash-tolerant), the config and seed a
resumed run must keep, and the recovery from a named checkpoint (which settings may change, what is set aside).
The trainer (``trainer.py``) decides when to write; this module knows how."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import tensorflow as tf

from keras_mv2seg.config import Config
from keras_mv2seg.files import atomic_write


def read_records(path: Path) -> list[dict]:
    """JSON lines of ``path`` up to the first one a crash cut short (none if the file is absent)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def write_text(path: Path, text: str):
    """Crash-safe and on disk before the rename: a resumed run relies on these files."""
    atomic_write(path, text, sync=True)


def write_records(path: Path, records: list[dict]):
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def append_line(path: Path, *lines: str):
    """Append lines with a single write, on disk before returning (a crash can at worst leave the last one torn,
    which :func:`read_records` drops). The one way the work dir's records grow."""
    with open(path, "a") as handle:
        handle.write("".join(line + "\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())


# Settings a run may change when it resumes from a named earlier checkpoint (``resume_from``): they do not
# change which samples an iteration reads or the model, only the step size and the bookkeeping.
RECOVERY_FIELDS = ("train.lr", "train.min_lr", "train.log_interval", "train.checkpoint_interval",
                   "train.eval_interval")


def check_work_dir(work_dir: Path, config: Config, recovering: bool = False):
    """Write ``config.json``, or check that a resumed run has the same config. Fields a saved config lacks
    (added to the project after that run) count as their defaults. A work dir whose run never wrote a
    checkpoint (a start that failed, e.g. on a bad override) takes the new config: there is nothing to mix."""
    saved = work_dir / "config.json"
    current = json.loads(str(config))
    if saved.is_file():
        previous = json.loads(saved.read_text())
        defaults = json.loads(str(Config(name=config.name)))
        changed = sorted(
            f"{section}.{key}" for section, fields in current.items() if isinstance(fields, dict) and section != "results"
            for key, value in fields.items()
            if previous.get(section, {}).get(key, defaults[section].get(key)) != value)
        if previous.get("name") != config.name:
            changed.insert(0, "name")
        started = tf.train.latest_checkpoint(str(work_dir / "checkpoints")) is not None
        recovery = recovering and changed and set(changed) <= set(RECOVERY_FIELDS)
        if changed and started and not recovery:
            allowed = (f"; only {', '.join(RECOVERY_FIELDS)} may change, and only with resume_from"
                       if recovering else "")
            raise ValueError(f"{work_dir} holds a run of a different config (changed: {', '.join(changed)}){allowed}; "
                             "use another work_dir or the same config to resume")
        if changed:  # a start that never checkpointed, or a recovery: record the config the run goes on with
            if recovery:
                append_line(work_dir / "config_changes.jsonl", json.dumps({
                    "changed": {key: lookup(current, key) for key in changed},
                    "previous": {key: lookup(previous, key) for key in changed}}))
            write_text(saved, json.dumps(current, indent=2))
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_text(saved, json.dumps(current, indent=2))


def lookup(config_dict: dict, key: str):
    section, _, name = key.partition(".")
    return config_dict.get(section, {}).get(name)


def abandon_after(work_dir: Path, checkpoint: str) -> int:
    """Resume from the named checkpoint: later checkpoints (a diverged or unwanted continuation) are moved to
    ``checkpoints/abandoned/`` and later metrics lines to ``metrics.abandoned.jsonl`` -- kept, not replayed.
    Returns the checkpoint's iteration."""
    folder = work_dir / "checkpoints"
    match = re.fullmatch(r"ckpt-(\d+)", Path(checkpoint).name)
    if not match or not Path(f"{folder / Path(checkpoint).name}.index").is_file():
        known = sorted(p.name[: -len(".index")] for p in folder.glob("ckpt-*.index"))
        raise ValueError(f"resume_from {checkpoint!r} is not a checkpoint of {folder} (known: "
                         f"{', '.join(known) or 'none'})")
    iteration = int(match.group(1))
    abandoned = folder / "abandoned"
    for path in sorted(folder.glob("ckpt-*")):
        number = int(re.match(r"ckpt-(\d+)", path.name).group(1))
        if number > iteration:
            abandoned.mkdir(exist_ok=True)
            os.replace(path, abandoned / path.name)
    state = tf.train.get_checkpoint_state(str(folder))
    kept = [p for p in (state.all_model_checkpoint_paths if state else [])
            if int(re.search(r"ckpt-(\d+)$", p).group(1)) <= iteration]
    tf.compat.v1.train.update_checkpoint_state(str(folder), str(folder / Path(checkpoint).name),
                                     all_model_checkpoint_paths=kept or [str(folder / Path(checkpoint).name)])
    metrics = work_dir / "metrics.jsonl"
    records = read_records(metrics)
    later = [r for r in records if r["iteration"] > iteration]
    if later:
        append_line(work_dir / "metrics.abandoned.jsonl", *(json.dumps(r) for r in later))
        write_records(metrics, [r for r in records if r["iteration"] <= iteration])
    return iteration


def check_seed(work_dir: Path, seed: int):
    """Record the run's seed in ``<work_dir>/seed.json``; a resumed run must use the same one (its data order,
    augmentation and dropout draws depend on it)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, received {seed!r}")
    path = work_dir / "seed.json"
    if path.is_file():
        previous = json.loads(path.read_text())["seed"]
        if previous != seed:
            raise ValueError(f"{work_dir} holds a run with seed {previous}, received seed {seed}: resume with "
                             f"the same seed or use another work dir")
    else:
        write_text(path, json.dumps({"seed": seed}))


def early_stop(history: list[dict], patience: int, min_delta: float) -> dict | None:
    """mmengine's ``EarlyStoppingHook(monitor='mIoU', rule='greater', patience, min_delta)`` over the recorded
    validations (``mIoU`` as a fraction, ``min_delta`` in mIoU points as mmseg reports it): the record at which
    it stops -- the ``patience``-th validation in a row not above the best by ``min_delta``, or a non-finite
    mIoU -- with ``reason``; None to go on (always with patience 0)."""
    if not patience:
        return None
    best, waited = -math.inf, 0
    for record in history:
        score = 100.0 * record["mIoU"]
        if not math.isfinite(score):
            return {**record, "reason": f"val mIoU is {score}"}
        if best + min_delta > score:
            waited += 1
            if waited >= patience:
                return {**record, "reason": f"val mIoU did not improve by {min_delta} points on the best "
                                            f"({best:.2f}) in the last {waited} validations"}
        else:
            best, waited = score, 0
    return None

"""``train(config, work_dir)``: the reference recipe with ``model.fit``, resumable, observable.

Work dir layout::

    config.json          the resolved config; a re-run with a different config is refused
    checkpoints/         weights + optimizer state + iteration (tf.train.CheckpointManager, atomic)
    metrics.jsonl        one line per validation: iteration, mIoU, aAcc, mAcc, per-class IoU
    best.weights.h5      training-model weights with the best validation mIoU (the EMA weights with train.ema_decay)
    final.weights.h5     weights at the end of the schedule (or of an early stop; EMA weights likewise)
    logs/                TensorBoard scalars (losses, lr, images/s, validation metrics)
    summary.json         iterations, last and best mIoU, wall time, images/s

Re-running the same command on the same work dir resumes from the last checkpoint: the iteration, the
learning rate, the optimizer state and the data order (the pipeline is a pure function of the sample
index) all continue where they stopped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_mv2seg.config import Config
from keras_mv2seg.data.check import training_split_problem
from keras_mv2seg.errors import data_errors_named
from keras_mv2seg.data.description import described
from keras_mv2seg.data.sources import DataSource
from keras_mv2seg.evaluation import evaluate
from keras_mv2seg.models.segmenter import build_segmenter, inference_model, set_sync_batchnorm
from keras_mv2seg.training.controls import averaged_weights
from keras_mv2seg.files import exclusive_lock
from keras_mv2seg.training.distribute import fit, is_chief, make_strategy  # noqa: F401
from keras_mv2seg.training.recipe import compile_model, with_targets  # noqa: F401 - public here too
from keras_mv2seg.training.schedule import recipe_schedule
from keras_mv2seg.training.workdir import (abandon_after, append_line, check_seed, check_work_dir, early_stop,
                                           read_records, write_records, write_text)
from keras_mv2seg.weights import load_for_fine_tuning, load_weights, save_weights


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def _seed_states(model: keras.Model) -> tf.Module:
    """The states of the model's random generators (dropout's), for the checkpoint: without them a resumed run
    draws its dropout masks anew and parts from the uninterrupted run."""
    holder = tf.Module()
    holder.states = [layer.seed_generator.state.value for layer in model.layers
                     if getattr(layer, "seed_generator", None) is not None]
    return holder


class _Monitor(keras.callbacks.Callback):
    """Adds lr and images/s to the logs (progress bar, TensorBoard), stops on a non-finite loss, and runs
    checkpointing and validation at their intervals."""

    def __init__(self, trainer: "_Run"):
        super().__init__()
        self.run = trainer
        self._start = None
        self.failed_at = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs if logs is not None else {}
        elapsed = time.perf_counter() - (self._start or time.perf_counter())
        iteration = int(self.run.optimizer.iterations.numpy())  # optimizer updates (micro-batches / accumulation)
        micro = self.run.micro_steps
        self.run.micro_batches += 1
        logs["lr"] = float(self.run.schedule(max(iteration - 1, 0) * micro))  # the schedule counts micro-batches
        logs["images_per_s"] = self.run.micro_batch / max(elapsed, 1e-9)
        self.run.images_seen += self.run.micro_batch
        self.run.step_seconds += elapsed
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failed_at = iteration + (self.run.micro_batches % micro != 0)  # the update it belongs to
            self.model.stop_training = True
            return
        if self.run.micro_batches % micro == 0 and iteration % self.run.config.train.log_interval == 0:
            self.run.scalars(iteration, {k: float(v) for k, v in logs.items() if np.ndim(v) == 0})

    def on_epoch_end(self, epoch, logs=None):
        if self.failed_at is not None:
            return
        iteration = int(self.run.optimizer.iterations.numpy())
        train = self.run.config.train
        done = iteration >= train.max_iters
        saved = iteration % train.checkpoint_interval == 0 or done
        if saved:
            self.run.save_checkpoint(iteration)
        if iteration % train.eval_interval == 0 or done:
            self.run.validate(iteration)
            stop = self.run.early_stop()
            if stop is not None:
                self.run.log(f"early stopping at iteration {iteration}: {stop['reason']}")
                if not saved:  # the stopped run's state, so that the same command finds it finished
                    self.run.save_checkpoint(iteration)
                self.model.stop_training = True


class _Run:
    def __init__(self, config: Config, work_dir: Path, data_root, seed: int, strategy, verbose: int):
        self.config, self.work_dir, self.seed, self.verbose = config, work_dir, seed, verbose
        self.source = DataSource(config, data_root)  # the data root resolved once, for training and validation
        self.strategy = strategy or make_strategy(config.train.distribution, config.train.startup_timeout_s)
        self.chief = is_chief(self.strategy)
        self.global_batch = config.train.batch_size  # the batch of one optimizer update
        self.micro_steps = config.train.accumulation_steps
        self.micro_batch = self.global_batch // self.micro_steps  # the batch of one forward/backward pass
        if self.micro_batch % self.strategy.num_replicas_in_sync:
            raise ValueError(f"train.batch_size {self.global_batch} / train.accumulation_steps {self.micro_steps} "
                             f"= {self.micro_batch} is not divisible by the {self.strategy.num_replicas_in_sync} "
                             "replicas")
        self.micro_batches = 0
        self.images_seen = 0
        self.step_seconds = 0.0
        self.schedule = recipe_schedule(config.train)
        self.writer = tf.summary.create_file_writer(str(work_dir / "logs" / "train")) if self.chief else None
        self.metrics_file = work_dir / "metrics.jsonl"

    def scalars(self, iteration: int, values: dict):
        if self.writer is None:
            return
        with self.writer.as_default(step=iteration):
            for key, value in values.items():
                tf.summary.scalar(key, value)
        self.writer.flush()

    def build(self):
        policy = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
        keras.mixed_precision.set_dtype_policy(policy[self.config.train.mixed_precision])
        try:
            with self.strategy.scope():
                self.model = build_segmenter(self.config, auxiliary=self.config.model.aux_channels > 0)
                set_sync_batchnorm(self.model, self.config.train.sync_batchnorm)
                self.optimizer = compile_model(self.model, self.config, self.schedule)  # one schedule object
                self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                                      seeds=_seed_states(self.model))
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
        directory = self.work_dir / "checkpoints"
        if not self.chief:  # other workers write throw-away copies, as tf.distribute requires
            directory = self.work_dir / "workers" / f"{os.getpid()}"
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=3)

    def restore(self) -> int:
        latest = tf.train.latest_checkpoint(str(self.work_dir / "checkpoints"))
        if latest:
            if any(name.startswith("seeds/") for name, _ in tf.train.list_variables(latest)):
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            else:  # written before checkpoints held the dropout draws' state
                tf.train.Checkpoint(model=self.model, optimizer=self.optimizer).restore(
                    latest).assert_existing_objects_matched()
                self.log(f"{latest} holds no dropout generator state (an older checkpoint): dropout draws restart")
            iteration = int(self.optimizer.iterations.numpy())
            self.log(f"resumed from {latest} at iteration {iteration}")
            return iteration
        if self.config.train.pretrained:
            self.log(str(load_weights(self.model, self.config.train.pretrained, part="backbone")))
        if self.config.train.load_from:
            self.log(load_for_fine_tuning(self.model, self.config.train.load_from)[1])
        return 0

    def save_checkpoint(self, iteration: int):
        try:
            path = self.manager.save(checkpoint_number=iteration)
        except (tf.errors.ResourceExhaustedError, tf.errors.UnknownError, tf.errors.InternalError) as error:
            if not any(words in error.message for words in ("No space left", "Disk quota", "ENOSPC",
                                                             "resource exhausted", "RESOURCE_EXHAUSTED")):
                raise
            folder = self.work_dir / "checkpoints"
            for partial in folder.glob(f"ckpt-{iteration}_temp*"):  # TensorFlow's staging folder of this save
                shutil.rmtree(partial, ignore_errors=True)
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / f"ckpt-{iteration}")) from None
        self.log(f"checkpoint {path}")

    def validate(self, iteration: int):
        """Score the model on the val split and record it. Crash-safe order: the best weights (atomic replace)
        and ``best.json`` first, then the metrics line -- so a metrics line never reports a best whose weights
        are missing; a run killed in between re-validates this iteration when resumed (:meth:`repair`)."""
        with averaged_weights(self.model, self.optimizer):  # the EMA weights, when train.ema_decay keeps them
            result = evaluate(inference_model(self.model), self.config, self.source.evaluation("val"))
            record = {"iteration": iteration, **{k: result[k] for k in ("mIoU", "aAcc", "mAcc")}}
            self.scalars(iteration, {f"val/{k}": v for k, v in record.items() if k != "iteration"})
            record["IoU"] = [float(v) if math.isfinite(v) else None for v in result["IoU"]]  # per class; None: absent
            recorded = self.history()
            history = [r for r in recorded if r["iteration"] != iteration]
            best = max((r["mIoU"] for r in history if math.isfinite(r["mIoU"])), default=-1.0)
            if self.chief and math.isfinite(record["mIoU"]) and record["mIoU"] >= best:
                save_weights(self.model, self.work_dir / "best.weights.h5", self.config)
                write_text(self.work_dir / "best.json", json.dumps({"iteration": iteration, "mIoU": record["mIoU"]}))
        if self.chief:
            if len(history) != len(recorded):  # re-validation of a recorded iteration: replace its line
                write_records(self.metrics_file, history + [record])
            else:
                append_line(self.metrics_file, json.dumps(record))
        self.log(f"iteration {iteration}: val mIoU {100 * record['mIoU']:.2f} aAcc {100 * record['aAcc']:.2f} "
                 f"mAcc {100 * record['mAcc']:.2f}")

    def early_stop(self) -> dict | None:
        """The validation at which ``train.early_stopping_patience`` stops the run, from the recorded history
        (so a resumed run decides as the uninterrupted one did); None to go on."""
        train = self.config.train
        stop = early_stop(self.history(), train.early_stopping_patience, train.early_stopping_min_delta)
        return stop if stop is not None and stop["iteration"] < train.max_iters else None  # not at the end

    def history(self) -> list[dict]:
        """The metrics lines; a last line cut short by a crash is dropped (and removed by :meth:`repair`)."""
        return read_records(self.metrics_file)

    def repair(self, iteration: int):
        """Finish what a crash left half done at ``iteration`` (the restored checkpoint's): remove stale
        temporaries, drop a torn metrics line, and re-validate this iteration when it is a validation point
        whose metrics line or best weights are missing."""
        if not self.chief:
            return
        for stale in self.work_dir.glob("*.tmp*"):
            if stale.is_file():
                stale.unlink()
                self.log(f"removed {stale.name}, left by an interrupted write")
        history = self.history()
        if self.metrics_file.is_file() and len(self.metrics_file.read_text().splitlines()) != len(history):
            write_records(self.metrics_file, history)
            self.log(f"dropped a metrics line cut short by an interrupted write in {self.metrics_file.name}")
        train = self.config.train
        if iteration == 0 or not (iteration % train.eval_interval == 0 or iteration >= train.max_iters):
            return
        recorded = any(r["iteration"] == iteration for r in history)
        finite = [r for r in history if math.isfinite(r["mIoU"])]
        best_iteration = max(finite, key=lambda r: r["mIoU"])["iteration"] if finite else None
        best_missing = best_iteration is not None and not (self.work_dir / "best.weights.h5").is_file()
        if not recorded or (best_missing and best_iteration == iteration):
            self.log(f"re-validating iteration {iteration}: the run stopped before its results were all written")
            self.validate(iteration)
        elif best_missing:
            self.log(f"warning: best.weights.h5 (iteration {best_iteration}) is missing and that iteration's "
                     "weights are no longer restorable; it will be rewritten at the next better validation")

    def log(self, message: str):
        if self.verbose and self.chief:
            print(message, flush=True)


def _chief_by_environment(strategy) -> bool:
    """Whether this process writes the work dir: the chief of a distributed run (from the strategy, or before
    one is made from ``TF_CONFIG``), every single-process run."""
    if strategy is not None:
        return is_chief(strategy)
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError:
        return True  # make_strategy names the bad variable
    task = cluster.get("task") or {}
    if not cluster.get("cluster"):
        return True
    if "chief" in cluster["cluster"]:
        return task.get("type") == "chief"
    return task.get("type") in ("worker", None) and int(task.get("index", 0)) == 0


@contextlib.contextmanager
def work_dir_lock(work_dir: Path, strategy=None):
    """Hold ``work_dir/.lock`` for the run: a second run on a work dir in use is refused at once, naming the
    process that holds it (the operating system releases the lock when its holder ends, however it ends, so a
    killed run never leaves a stale one). The other workers of a distributed run write no records and take none."""
    if not _chief_by_environment(strategy):
        yield
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(work_dir / ".lock", what=f"work dir {work_dir} is in use by another run", timeout_s=0,
                        advice="wait for it to finish, stop it, or train in another work_dir"):
        yield


def train(config: Config, work_dir, *, data_root=None, seed: int = 0, strategy=None, verbose: int = 1,
          resume_from: str | None = None, callbacks=()) -> dict:
    """Train ``config`` in ``work_dir`` (resuming if it holds a checkpoint); returns the summary written to
    ``<work_dir>/summary.json``.

    ``seed`` seeds everything the run draws: the initial weights and dropout (Keras, TensorFlow, NumPy and
    Python generators through ``keras.utils.set_random_seed``) and the data order and augmentations (stateless
    ops keyed by (seed, sample index)). It is recorded in ``<work_dir>/seed.json``.

    ``resume_from`` (``ckpt-N``, a checkpoint of this work dir) continues from that checkpoint rather than the
    latest one, e.g. after a non-finite loss: later checkpoints and metrics lines are moved aside (kept, not
    replayed), and the settings in :data:`RECOVERY_FIELDS` (the learning rate among them) may differ from the
    recorded config (the change is logged in ``config_changes.jsonl``).

    ``callbacks`` (Keras callbacks) are passed to ``model.fit`` after the trainer's own; its batches are
    micro-batches under ``train.accumulation_steps``, its epochs the spans between checkpoints/validations,
    and ``self.model.optimizer.iterations`` counts optimizer updates. With ``train.ema_decay`` the validation,
    ``best.weights.h5`` and ``final.weights.h5`` hold the moving average of the weights (checkpoints hold both);
    with ``train.early_stopping_patience`` the run stops at the validation that ends its patience (recorded in
    the summary's ``stopped_early``), its best weights kept."""
    if config.data.dataset == "custom":
        if not config.data.class_names:  # the tools describe it already
            config = described(config, data_root)  # its classes, checked against the model
        refusal = training_split_problem(config, data_root)
        if refusal:
            raise ValueError(f"refusing to train: {refusal}")
    work_dir = Path(work_dir)
    with work_dir_lock(work_dir, strategy):
        return _train(config, work_dir, data_root, seed, strategy, verbose, resume_from, callbacks)


def _train(config, work_dir: Path, data_root, seed, strategy, verbose, resume_from, callbacks) -> dict:
    check_work_dir(work_dir, config, recovering=resume_from is not None)
    if resume_from is not None:
        abandon_after(work_dir, resume_from)
    check_seed(work_dir, seed)
    keras.utils.set_random_seed(seed)
    run = _Run(config, work_dir, data_root, seed, strategy, verbose)
    run.build()
    start = run.restore()
    run.repair(start)
    train_cfg = config.train
    chunk = math.gcd(train_cfg.max_iters, math.gcd(train_cfg.checkpoint_interval, train_cfg.eval_interval))
    if start % chunk:
        raise ValueError(f"checkpoint at iteration {start} does not fall on the schedule's {chunk}-iteration "
                         "boundaries; was the config changed?")
    monitor = _Monitor(run)
    began = time.perf_counter()
    stopped = run.early_stop()
    if start < train_cfg.max_iters and stopped is None:
        # micro-batches of one update in a row: the samples of iteration i are those of the unaccumulated run
        dataset = run.source.training(batch_size=run.micro_batch, seed=seed, start_sample=start * run.global_batch)
        dataset = dataset.map(with_targets(run.model))
        with run.source.decode_errors_named("train", "val"), data_errors_named():  # fit validates too
            fit(run.model, run.strategy, dataset, epochs=train_cfg.max_iters // chunk,
                initial_epoch=start // chunk, steps_per_epoch=chunk * run.micro_steps,
                callbacks=[monitor, *callbacks], shuffle=False, verbose=verbose if run.chief else 0)
    wall = time.perf_counter() - began
    if monitor.failed_at is not None:
        raise NonFiniteLossError(
            f"non-finite loss at iteration {monitor.failed_at}; training stopped. The last good checkpoint is "
            f"{tf.train.latest_checkpoint(str(work_dir / 'checkpoints'))} (nothing was saved after the failure). "
            "A plain re-run would replay the same steps; to recover, resume from an earlier checkpoint with a lower "
            "rate: train(..., resume_from='ckpt-N') with a lower train.lr, from the command line "
            "tools/train.py ... --resume-from ckpt-N --cfg-options lr=0.005 (see docs/training.md), or "
            "check the data")
    iteration = int(run.optimizer.iterations.numpy())
    history = run.history()
    finite = [r["mIoU"] for r in history if math.isfinite(r["mIoU"])]
    summary = {
        "config": config.name,
        "iterations": iteration,
        "last_mIoU": history[-1]["mIoU"] if history else None,
        "best_mIoU": max(finite) if finite else None,
        "resumed_from": start,
        "wall_time_s": round(wall, 2),
        "images_per_s": round(run.images_seen / wall, 2) if run.images_seen else None,  # incl. validation
        "train_images_per_s": round(run.images_seen / run.step_seconds, 2) if run.step_seconds else None,
        "replicas": run.strategy.num_replicas_in_sync,
        "seed": seed,
        "stopped_early": run.early_stop(),
    }
    if run.chief:
        with averaged_weights(run.model, run.optimizer):
            save_weights(run.model, work_dir / "final.weights.h5", config)
        write_text(work_dir / "summary.json", json.dumps(summary, indent=2))
    run.log(json.dumps(summary))
    return summary

"""``train(config, work_dir)``: the reference recipe with ``model.fit``, resumable, observable.

Work dir layout::

    config.json          the resolved config; a re-run with a different config is refused
    checkpoints/         weights + optimizer state + iteration (tf.train.CheckpointManager, atomic)
    metrics.jsonl        one line per validation: iteration, mIoU, aAcc, mAcc
    best.weights.h5      training-model weights with the best validation mIoU
    final.weights.h5     weights at the end of the schedule
    logs/                TensorBoard scalars (losses, lr, images/s, validation metrics)
    summary.json         iterations, last and best mIoU, wall time, images/s

Re-running the same command on the same work dir resumes from the last checkpoint: the iteration, the
learning rate, the optimizer state and the data order (the pipeline is a pure function of the sample
index) all continue where they stopped.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_mv2seg.config import Config
from keras_mv2seg.data.sources import needs_data_root, resolve_data_root, training_data, \
    undecodable_files
from keras_mv2seg.evaluation import evaluate
from keras_mv2seg.models.segmenter import build_segmenter, inference_model
from keras_mv2seg.training.losses import SegmentationCrossEntropy
from keras_mv2seg.training.optimizer import TorchSGD
from keras_mv2seg.training.schedule import recipe_schedule


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def make_strategy(kind: str) -> tf.distribute.Strategy:
    if kind == "auto":
        if os.environ.get("TF_CONFIG"):
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (resolver.task_type == "worker" and resolver.task_id == 0
                                                      and "chief" not in resolver.cluster_spec().as_dict())


def set_sync_batchnorm(model: keras.Model, mode: str):
    """Synchronize BN statistics across replicas: ``heads`` (decode/aux heads), ``all`` or ``none``."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            in_head = layer.name.startswith(("decode_", "aux_"))
            layer.synchronized = mode == "all" or (mode == "heads" and in_head)


def compile_model(model: keras.Model, config: Config):
    """The reference recipe: TorchSGD (coupled weight decay) on a per-iteration poly schedule, cross-entropy
    with ignore label on logits at label size, auxiliary loss weight 0.4."""
    train = config.train
    optimizer = TorchSGD(recipe_schedule(train), momentum=train.momentum, coupled_weight_decay=train.weight_decay,
                         decay_kernels_only=train.weight_decay_on == "kernels")
    loss = SegmentationCrossEntropy(config.data.ignore_index)
    if isinstance(model.output, dict):
        model.compile(optimizer=optimizer, loss={"logits": loss, "aux_logits": loss},
                      loss_weights={"logits": 1.0, "aux_logits": train.aux_weight}, jit_compile=train.jit_compile)
    else:
        model.compile(optimizer=optimizer, loss=loss, jit_compile=train.jit_compile)
    return optimizer


def with_targets(model: keras.Model):
    """Map (images, labels) batches to the model's output structure."""
    if isinstance(model.output, dict):
        return lambda images, labels: (images, {"logits": labels, "aux_logits": labels})
    return lambda images, labels: (images, labels)


def fit(model: keras.Model, strategy: tf.distribute.Strategy, dataset: tf.data.Dataset, **fit_kwargs):
    """``model.fit`` under ``strategy``, also MultiWorkerMirroredStrategy.

    Keras 3.15's ``fit`` first builds the compiled loss and metrics from one batch, reducing the distributed
    batch with ``strategy.reduce`` -- which fails under MultiWorkerMirroredStrategy ("Attempt to convert a
    value (PerReplica...)", keras-team/keras#20585). So the build is done here, from one local batch inside
    the scope, and ``fit`` runs in the strategy's scope without the model's recorded strategy, so that it
    skips that step and still distributes (``distribute_strategy`` falls back to the current scope's). One
    path for every strategy: single device, mirrored and multi-worker train through the same train step.
    """
    local_batch = next(iter(dataset.take(1)))
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    train_step = model.train_step
    if multi_worker:
        # Keras reduces each step's logs across workers with strategy.reduce("MEAN", v, axis=0), which rejects
        # scalars: hand it [1]-shaped logs, which that reduction turns back into scalars.
        model.train_step = lambda data: {k: tf.reshape(v, [1]) for k, v in train_step(data).items()}
    with strategy.scope():
        model._symbolic_build(data_batch=local_batch)  # noqa: SLF001 - see the docstring
        recorded, model._distribute_strategy = model._distribute_strategy, None  # noqa: SLF001
        try:
            return model.fit(dataset, **fit_kwargs)
        finally:
            model._distribute_strategy = recorded  # noqa: SLF001
            if multi_worker:
                del model.train_step


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
        iteration = int(self.run.optimizer.iterations.numpy())
        logs["lr"] = float(self.run.schedule(iteration - 1))
        logs["images_per_s"] = self.run.global_batch / max(elapsed, 1e-9)
        self.run.images_seen += self.run.global_batch
        self.run.step_seconds += elapsed
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failed_at = iteration
            self.model.stop_training = True
            return
        if iteration % self.run.config.train.log_interval == 0:
            self.run.scalars(iteration, {k: float(v) for k, v in logs.items() if np.ndim(v) == 0})

    def on_epoch_end(self, epoch, logs=None):
        if self.failed_at is not None:
            return
        iteration = int(self.run.optimizer.iterations.numpy())
        train = self.run.config.train
        done = iteration >= train.max_iters
        if iteration % train.checkpoint_interval == 0 or done:
            self.run.save_checkpoint(iteration)
        if iteration % train.eval_interval == 0 or done:
            self.run.validate(iteration)


class _Run:
    def __init__(self, config: Config, work_dir: Path, data_root, seed: int, strategy, verbose: int):
        self.config, self.work_dir, self.seed, self.verbose = config, work_dir, seed, verbose
        self.data_root = resolve_data_root(config, data_root) if needs_data_root(config) else data_root
        self.strategy = strategy or make_strategy(config.train.distribution)
        self.chief = is_chief(self.strategy)
        self.global_batch = config.train.batch_size
        if self.global_batch % self.strategy.num_replicas_in_sync:
            raise ValueError(f"train.batch_size {self.global_batch} is not divisible by the "
                             f"{self.strategy.num_replicas_in_sync} replicas")
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
                self.optimizer = compile_model(self.model, self.config)
                self.optimizer.build(self.model.trainable_variables)
                self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
        directory = self.work_dir / "checkpoints"
        if not self.chief:  # other workers write throw-away copies, as tf.distribute requires
            directory = self.work_dir / "workers" / f"{os.getpid()}"
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=3)

    def restore(self) -> int:
        latest = tf.train.latest_checkpoint(str(self.work_dir / "checkpoints"))
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            iteration = int(self.optimizer.iterations.numpy())
            self.log(f"resumed from {latest} at iteration {iteration}")
            return iteration
        if self.config.train.pretrained:
            from keras_mv2seg.weights import load_weights

            self.log(str(load_weights(self.model, self.config.train.pretrained, part="backbone")))
        return 0

    def save_checkpoint(self, iteration: int):
        path = self.manager.save(checkpoint_number=iteration)
        self.log(f"checkpoint {path}")

    def validate(self, iteration: int):
        """Score the model on the val split and record it. Crash-safe order: the best weights (atomic replace)
        and ``best.json`` first, then the metrics line -- so a metrics line never reports a best whose weights
        are missing; a run killed in between re-validates this iteration when resumed (:meth:`repair`)."""
        result = evaluate(inference_model(self.model), self.config, "val", self.data_root)
        record = {"iteration": iteration, **{k: result[k] for k in ("mIoU", "aAcc", "mAcc")}}
        self.scalars(iteration, {f"val/{k}": v for k, v in record.items() if k != "iteration"})
        recorded = self.history()
        history = [r for r in recorded if r["iteration"] != iteration]
        best = max((r["mIoU"] for r in history if math.isfinite(r["mIoU"])), default=-1.0)
        if self.chief:
            if math.isfinite(record["mIoU"]) and record["mIoU"] >= best:
                _atomic_weights(self.model, self.work_dir / "best.weights.h5")
                _atomic_text(self.work_dir / "best.json", json.dumps({"iteration": iteration, "mIoU": record["mIoU"]}))
            if len(history) != len(recorded):  # re-validation of a recorded iteration: replace its line
                _write_records(self.metrics_file, history + [record])
            else:
                _append_line(self.metrics_file, json.dumps(record))
        self.log(f"iteration {iteration}: val mIoU {100 * record['mIoU']:.2f} aAcc {100 * record['aAcc']:.2f} "
                 f"mAcc {100 * record['mAcc']:.2f}")

    def history(self) -> list[dict]:
        """The metrics lines; a last line cut short by a crash is dropped (and removed by :meth:`repair`)."""
        return _read_records(self.metrics_file)

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
            _write_records(self.metrics_file, history)
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


def _atomic_weights(model: keras.Model, path: Path):
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    model.save_weights(tmp)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str):
    """Write ``text`` to ``path`` so that a crash leaves either the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_records(path: Path) -> list[dict]:
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


def _write_records(path: Path, records: list[dict]):
    _atomic_text(path, "".join(json.dumps(r) + "\n" for r in records))


def _append_line(path: Path, line: str):
    """Append one line with a single write (a crash can at worst leave it torn, which history() drops)."""
    with open(path, "a") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# Settings a run may change when it resumes from a named earlier checkpoint (``resume_from``): they do not
# change which samples an iteration reads or the model, only the step size and the bookkeeping.
RECOVERY_FIELDS = ("train.lr", "train.min_lr", "train.log_interval", "train.checkpoint_interval",
                   "train.eval_interval")


def _check_work_dir(work_dir: Path, config: Config, recovering: bool = False):
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
            allowed = (f"; only {', '.join(RECOVERY_FIELDS)} may change, and only with resume_from "
                       "(--resume-from)") if recovering else ""
            raise ValueError(f"{work_dir} holds a run of a different config (changed: {', '.join(changed)}){allowed}; "
                             "use another --work-dir or the same config to resume")
        if changed:  # a start that never checkpointed, or a recovery: record the config the run goes on with
            if recovery:
                with open(work_dir / "config_changes.jsonl", "a") as handle:
                    handle.write(json.dumps({"changed": {key: _lookup(current, key) for key in changed},
                                             "previous": {key: _lookup(previous, key) for key in changed}}) + "\n")
            _atomic_text(saved, json.dumps(current, indent=2))
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(current, indent=2))


def _lookup(config_dict: dict, key: str):
    section, _, name = key.partition(".")
    return config_dict.get(section, {}).get(name)


def _abandon_after(work_dir: Path, checkpoint: str) -> int:
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
    records = _read_records(metrics)
    later = [r for r in records if r["iteration"] > iteration]
    if later:
        with open(work_dir / "metrics.abandoned.jsonl", "a") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in later)
        _write_records(metrics, [r for r in records if r["iteration"] <= iteration])
    return iteration


def _check_seed(work_dir: Path, seed: int):
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
        path.write_text(json.dumps({"seed": seed}))


def train(config: Config, work_dir, *, data_root=None, seed: int = 0, strategy=None, verbose: int = 1,
          resume_from: str | None = None) -> dict:
    """Train ``config`` in ``work_dir`` (resuming if it holds a checkpoint); returns the summary written to
    ``<work_dir>/summary.json``.

    ``seed`` seeds everything the run draws: the initial weights and dropout (Keras, TensorFlow, NumPy and
    Python generators through ``keras.utils.set_random_seed``) and the data order and augmentations (stateless
    ops keyed by (seed, sample index)). It is recorded in ``<work_dir>/seed.json``.

    ``resume_from`` (``ckpt-N``, a checkpoint of this work dir) continues from that checkpoint rather than the
    latest one, e.g. after a non-finite loss: later checkpoints and metrics lines are moved aside (kept, not
    replayed), and the settings in :data:`RECOVERY_FIELDS` (the learning rate among them) may differ from the
    recorded config (the change is logged in ``config_changes.jsonl``)."""
    work_dir = Path(work_dir)
    _check_work_dir(work_dir, config, recovering=resume_from is not None)
    if resume_from is not None:
        _abandon_after(work_dir, resume_from)
    _check_seed(work_dir, seed)
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
    if start < train_cfg.max_iters:
        dataset = training_data(config, run.data_root, batch_size=run.global_batch, seed=seed,
                                start_sample=start * run.global_batch)
        dataset = dataset.map(with_targets(run.model))
        try:
            fit(run.model, run.strategy, dataset, epochs=train_cfg.max_iters // chunk, initial_epoch=start // chunk,
                steps_per_epoch=chunk, callbacks=[monitor], shuffle=False, verbose=verbose if run.chief else 0)
        except tf.errors.InvalidArgumentError as error:
            first = error.message.strip().splitlines()[0]
            if not any(word in error.message for word in ("PNG", "JPEG", "decode", "Decode")):
                raise
            raise ValueError(f"a training image or label could not be decoded ({first}); "
                             f"{undecodable_files(config, run.data_root)}") from error
    wall = time.perf_counter() - began
    if monitor.failed_at is not None:
        raise NonFiniteLossError(
            f"non-finite loss at iteration {monitor.failed_at}; training stopped. The last good checkpoint is "
            f"{tf.train.latest_checkpoint(str(work_dir / 'checkpoints'))} (nothing was saved after the failure). "
            "A plain re-run would replay the same steps; to recover, resume from an earlier checkpoint with a lower "
            "rate, e.g. tools/train.py ... --resume-from ckpt-N --cfg-options lr=0.005 (see README, Training), or "
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
    }
    if run.chief:
        _atomic_weights(run.model, work_dir / "final.weights.h5")
        _atomic_text(work_dir / "summary.json", json.dumps(summary, indent=2))
    run.log(json.dumps(summary))
    return summary

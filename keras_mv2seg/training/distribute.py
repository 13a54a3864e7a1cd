"""Distribution: the strategy a config asks for, the chief, and the one ``fit`` path
every strategy trains through (with the documented workaround for Keras 3.15 under MultiWorkerMirroredStrategy)."""

from __future__ import annotations

import os

import keras
import tensorflow as tf


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

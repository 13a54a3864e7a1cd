"""The reference recipe on a model: TorchSGD on the poly schedule, the loss with its ignore label, the auxiliary
loss weight, and the (images, labels) -> model targets mapping."""

from __future__ import annotations

import keras

from keras_mv2seg.config import Config
from keras_mv2seg.datasets_meta import classes_of
from keras_mv2seg.training.losses import build_loss
from keras_mv2seg.training.optimizer import TorchSGD
from keras_mv2seg.training.schedule import recipe_schedule


def compile_model(model: keras.Model, config: Config, schedule=None):
    """The reference recipe: TorchSGD (coupled weight decay) on a per-iteration poly schedule (``schedule``, by
    default ``recipe_schedule(config.train)``), cross-entropy with ignore label on logits at label size (or the
    losses of ``train.decode_loss`` / ``train.sampler`` / ``train.aux_loss``, see ``training.losses``),
    auxiliary loss weight 0.4. The optimizer is built (its momentum slots exist), so a checkpoint of model and
    optimizer restores before the first step."""
    train = config.train
    optimizer = TorchSGD(schedule or recipe_schedule(train), momentum=train.momentum, coupled_weight_decay=train.weight_decay,
                         decay_kernels_only=train.weight_decay_on == "kernels")
    classes = classes_of(config)
    loss = build_loss(train.decode_loss, train.sampler, ignore_index=config.data.ignore_index, class_names=classes)
    if isinstance(model.output, dict):
        aux = build_loss(train.aux_loss, ignore_index=config.data.ignore_index, class_names=classes, key="aux_loss")
        model.compile(optimizer=optimizer, loss={"logits": loss, "aux_logits": aux},
                      loss_weights={"logits": 1.0, "aux_logits": train.aux_weight}, jit_compile=train.jit_compile)
    else:
        model.compile(optimizer=optimizer, loss=loss, jit_compile=train.jit_compile)
    optimizer.build(model.trainable_variables)
    return optimizer


def with_targets(model: keras.Model):
    """Map (images, labels) batches to the model's output structure."""
    if isinstance(model.output, dict):
        return lambda images, labels: (images, {"logits": labels, "aux_logits": labels})
    return lambda images, labels: (images, labels)

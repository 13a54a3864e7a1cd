"""The reference recipe on a model: TorchSGD (or TorchAdamW) on the poly schedule with the config's fine-tuning
controls, the loss with its ignore label, the auxiliary loss weight, and the (images, labels) -> model targets
mapping."""

from __future__ import annotations

import keras

from keras_mv2seg.config import Config
from keras_mv2seg.datasets_meta import classes_of
from keras_mv2seg.training.losses import build_loss
from keras_mv2seg.training.controls import freeze_stages, parameter_multipliers, set_norm_eval
from keras_mv2seg.training.optimizer import TorchAdamW, TorchSGD
from keras_mv2seg.training.schedule import recipe_schedule


def make_optimizer(train, schedule=None):
    """The optimizer of ``train`` (a :class:`~keras_mv2seg.config.TrainConfig`): TorchSGD or TorchAdamW on the
    poly schedule, with its weight decay rule, EMA and gradient accumulation."""
    common = dict(decay_kernels_only=train.weight_decay_on == "kernels", ema_decay=train.ema_decay,
                  accumulation_steps=train.accumulation_steps)
    schedule = schedule or recipe_schedule(train)
    if train.optimizer == "adamw":
        return TorchAdamW(schedule, beta_1=train.betas[0], beta_2=train.betas[1], epsilon=train.eps,
                          decoupled_weight_decay=train.weight_decay, **common)
    return TorchSGD(schedule, momentum=train.momentum, coupled_weight_decay=train.weight_decay, **common)


def compile_model(model: keras.Model, config: Config, schedule=None):
    """The reference recipe: TorchSGD (coupled weight decay) on a per-iteration poly schedule (``schedule``, by
    default ``recipe_schedule(config.train)``), cross-entropy with ignore label on logits at label size (or the
    losses of ``train.decode_loss`` / ``train.sampler`` / ``train.aux_loss``, see ``training.losses``),
    auxiliary loss weight 0.4 -- with the fine-tuning controls of the config applied first (``train.optimizer``,
    ``frozen_stages``, ``norm_eval``, ``paramwise``, ``ema_decay``, ``accumulation_steps``; see
    ``training.controls``). The optimizer is built (its slots exist), so a checkpoint of model and optimizer
    restores before the first step."""
    train = config.train
    freeze_stages(model, train.frozen_stages)
    set_norm_eval(model, train.norm_eval)
    optimizer = make_optimizer(train, schedule)
    optimizer.set_multipliers(parameter_multipliers(model, train.paramwise))
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

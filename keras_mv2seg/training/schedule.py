"""The reference's poly learning-rate schedule, per iteration.

mmseg 1.x's ``PolyLR(begin=0, end=max_iters, by_epoch=False)`` is mmengine's ``PolyParamScheduler``, whose
``total_iters = end - begin - 1`` (``mmengine/optim/scheduler/param_scheduler.py:847``): for 300 iterations the
rate reaches ``min_lr`` at iteration 299, i.e. ``lr(it) = (base - min) (1 - it / 299)^0.9 + min``. The 2020
checkpoints were trained with mmcv 1.x's ``PolyLrUpdaterHook``, which divided by ``max_iters`` (300); the two
differ by under 0.4 % of the base rate except in the last few iterations. :func:`recipe_schedule` follows
mmseg 1.2.2, the reference this project is measured against.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(it) = (base - min) * (1 - it / max_iters) ** power + min`` (mmseg PolyLR, ``by_epoch=False``);
    held at ``min`` past ``max_iters``. ``micro_steps`` N > 1: the optimizer's step counts micro-batches of
    gradient accumulation and ``it = step // N`` counts updates."""

    def __init__(self, base_lr: float, max_iters: int, min_lr: float = 1e-4, power: float = 0.9, micro_steps: int = 1):
        if max_iters < 1:
            raise ValueError(f"max_iters must be positive, received {max_iters!r}")
        if micro_steps < 1:
            raise ValueError(f"micro_steps must be positive, received {micro_steps!r}")
        self.base_lr, self.max_iters, self.min_lr, self.power = float(base_lr), int(max_iters), float(min_lr), float(power)
        self.micro_steps = int(micro_steps)

    def _factor(self, step):
        # float64: in float32, 1 - it / max_iters loses digits near the end of an 80k-160k schedule
        updates = tf.cast(step, tf.int64) // self.micro_steps
        progress = tf.minimum(tf.cast(updates, tf.float64) / self.max_iters, 1.0)
        return (1.0 - progress) ** self.power

    def __call__(self, step):
        return tf.cast((self.base_lr - self.min_lr) * self._factor(step) + self.min_lr, tf.float32)

    def group_rate(self, step, lr_mult: float):
        """The rate of a parameter group whose initial rate is ``base * lr_mult``, as mmengine's PolyLR decays
        every group: ``(base * lr_mult - min) * f(it) + min``, the floor ``min`` the same for every group."""
        return tf.cast((self.base_lr * lr_mult - self.min_lr) * self._factor(step) + self.min_lr, tf.float32)

    def get_config(self):
        return {"base_lr": self.base_lr, "max_iters": self.max_iters, "min_lr": self.min_lr, "power": self.power,
                "micro_steps": self.micro_steps}


def recipe_schedule(train_config) -> PolyDecay:
    """The poly schedule of a :class:`~keras_mv2seg.config.TrainConfig`, as mmengine's PolyLR runs it:
    ``max_iters - 1`` decay steps, so the last iteration uses ``min_lr``; counting optimizer updates under
    gradient accumulation (``train.accumulation_steps``)."""
    return PolyDecay(train_config.lr, max(train_config.max_iters - 1, 1), train_config.min_lr, train_config.power,
                     micro_steps=train_config.accumulation_steps)

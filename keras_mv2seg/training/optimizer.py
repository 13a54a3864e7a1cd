"""Optimizers with PyTorch semantics, as the reference trains: SGD with coupled weight decay and momentum applied
before the learning rate, and AdamW; both with mmengine's per-parameter learning-rate and decay multipliers
(``paramwise_cfg``), an exponential moving average of the weights (mmengine's ``EMAHook``) and gradient
accumulation (``OptimWrapper(accumulative_counts=N)``), where the schedule, the iteration count and the average
advance once per optimizer update, not per micro-batch."""

from __future__ import annotations

import keras
from keras import ops


class _TorchOptimizer(keras.optimizers.Optimizer):
    """What TorchSGD and TorchAdamW share.

    * **Multipliers** (:meth:`set_multipliers`): a variable's rate is its group's, as mmengine's parameter groups
      under its PolyLR: ``(base * lr_mult - min) * f(it) + min`` for a schedule with ``group_rate`` (a group's
      floor is the schedule's ``min_lr``, not multiplied), ``lr * lr_mult`` for a constant rate; its decay
      ``weight_decay * decay_mult``.
    * **EMA** (``ema_decay`` > 0): ``average = d * average + (1 - d) * weight`` after each update, the first
      update copied (``d`` is ``1 - momentum`` of mmengine's ``ExponentialMovingAverage``). Trainable weights
      only; batch-norm statistics are the model's own, as mmengine's ``update_buffers=False``. The averages are
      optimizer variables, so checkpoints of the optimizer hold them; :meth:`average_of` reads them.
    * **Accumulation** (``accumulation_steps`` = N > 1): Keras' gradient accumulation (the mean of N micro-batch
      gradients, one update every N ``apply`` calls); ``iterations`` counts updates, while Keras gives the
      schedule the micro-batch count: a schedule must divide it (``PolyDecay(micro_steps=N)``, which
      :func:`~keras_mv2seg.training.schedule.recipe_schedule` builds)."""

    def __init__(self, learning_rate, *, decay_rate: float, decay_kernels_only: bool, ema_decay: float = 0.0,
                 accumulation_steps: int = 1, name: str, **kwargs):
        kwargs.pop("gradient_accumulation_steps", None)  # ours, from get_config
        if isinstance(accumulation_steps, bool) or not isinstance(accumulation_steps, int) or accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be an int >= 1, received {accumulation_steps!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0: no average), received {ema_decay!r}")
        super().__init__(learning_rate=learning_rate, name=name,
                         gradient_accumulation_steps=accumulation_steps if accumulation_steps > 1 else None, **kwargs)
        self.ema_decay = float(ema_decay)
        self.accumulation_steps = accumulation_steps
        self._decay_rate, self.decay_kernels_only = float(decay_rate), bool(decay_kernels_only)
        self._multiplier_table: dict[str, tuple[float, float]] = {}
        self._multipliers: list[tuple[float, float]] = []

    def set_multipliers(self, table: dict[str, tuple[float, float]]):
        """``{variable.path: (lr_mult, decay_mult)}`` (``training.controls.parameter_multipliers``); variables
        not named get (1, 1). Before the optimizer is built."""
        if self.built:
            raise RuntimeError("set_multipliers must be called before the optimizer is built")
        self._multiplier_table = dict(table)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._multipliers = [self._multiplier_table.get(v.path, (1.0, 1.0)) for v in variables]
        self.averages = self.add_optimizer_variables(variables, "average") if self.ema_decay else []

    def average_of(self, variable):
        """The moving average of a trainable ``variable`` (requires ``ema_decay`` > 0)."""
        return self.averages[self._get_variable_index(variable)]

    def _rate(self, learning_rate, lr_mult: float, dtype):
        if lr_mult == 1.0:
            return ops.cast(learning_rate, dtype)
        group_rate = getattr(self._learning_rate, "group_rate", None)
        if group_rate is not None:
            # the step Keras gives the schedule: micro-batches under accumulation (``iterations`` counts updates)
            return ops.cast(group_rate(self._iterations, lr_mult), dtype)
        return ops.cast(learning_rate, dtype) * lr_mult

    def _decays(self, variable) -> bool:
        return not self.decay_kernels_only or "kernel" in variable.name

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr_mult, decay_mult = self._multipliers[index]
        gradient = ops.cast(gradient, variable.dtype)
        decay = self._decay_rate * decay_mult if self._decays(variable) else 0.0
        self._update(gradient, variable, self._rate(learning_rate, lr_mult, variable.dtype), decay, index)
        if self.ema_decay:
            average = self.averages[index]
            first = ops.cast(ops.equal(self.iterations, 0), variable.dtype)  # iterations not yet incremented
            keep = (1.0 - first) * ops.cast(self.ema_decay, variable.dtype)
            self.assign(average, keep * average + (1.0 - keep) * variable)

    def _update(self, gradient, variable, rate, decay: float, index: int):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "ema_decay": self.ema_decay, "accumulation_steps": self.accumulation_steps}


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class TorchSGD(_TorchOptimizer):
    """``g = grad + wd * p; buf = momentum * buf + g; p -= lr * buf`` -- ``torch.optim.SGD`` with
    ``weight_decay`` (coupled: the decay goes through momentum), unlike Keras' SGD, whose velocity holds
    ``lr * g`` (different once the learning rate changes) and whose ``weight_decay`` is decoupled. The decay
    applies to every trainable variable, BN scales and biases included, as in the mmseg recipe; with
    ``decay_kernels_only`` to convolution/dense kernels only, as slim's ``l2_regularizer`` in the official
    DeepLab (its ``wd * sum(w^2) / 2`` loss term has the gradient ``wd * w``). Multipliers, EMA and accumulation:
    see :class:`_TorchOptimizer`."""

    def __init__(self, learning_rate=0.01, momentum=0.9, coupled_weight_decay=5e-4, decay_kernels_only=False,
                 name="torch_sgd", **kwargs):
        super().__init__(learning_rate, decay_rate=coupled_weight_decay, decay_kernels_only=decay_kernels_only,
                         name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), received {momentum!r}")
        self.momentum = float(momentum)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def _update(self, gradient, variable, rate, decay, index):
        if decay:
            gradient = gradient + ops.cast(decay, variable.dtype) * variable
        buffer = self.momentums[index]
        self.assign(buffer, ops.cast(self.momentum, variable.dtype) * buffer + gradient)
        self.assign_sub(variable, rate * buffer)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "coupled_weight_decay": self._decay_rate,
                "decay_kernels_only": self.decay_kernels_only}


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class TorchAdamW(_TorchOptimizer):
    """``torch.optim.AdamW``: ``p *= 1 - lr * wd`` (decoupled), then Adam with bias correction and ``eps`` added
    to ``sqrt(v_hat)`` -- Keras' AdamW adds its epsilon to ``sqrt(v)`` before the correction, a different
    step while ``v`` is small. Multipliers, EMA and accumulation: see :class:`_TorchOptimizer`."""

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, decoupled_weight_decay=1e-2,
                 decay_kernels_only=False, name="torch_adamw", **kwargs):
        super().__init__(learning_rate, decay_rate=decoupled_weight_decay, decay_kernels_only=decay_kernels_only,
                         name=name, **kwargs)
        for label, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{label} must be in [0, 1), received {value!r}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.first_moments = self.add_optimizer_variables(variables, "exp_avg")
        self.second_moments = self.add_optimizer_variables(variables, "exp_avg_sq")

    def _update(self, gradient, variable, rate, decay, index):
        dtype = variable.dtype
        if decay:
            self.assign(variable, variable * (1.0 - rate * ops.cast(decay, dtype)))
        first, second = self.first_moments[index], self.second_moments[index]
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        self.assign(first, beta_1 * first + (1.0 - beta_1) * gradient)
        self.assign(second, beta_2 * second + (1.0 - beta_2) * gradient * gradient)
        step = ops.cast(self.iterations + 1, dtype)
        denominator = ops.sqrt(second) / ops.sqrt(1.0 - ops.power(beta_2, step)) + ops.cast(self.epsilon, dtype)
        self.assign_sub(variable, rate / (1.0 - ops.power(beta_1, step)) * first / denominator)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "decoupled_weight_decay": self._decay_rate, "decay_kernels_only": self.decay_kernels_only}

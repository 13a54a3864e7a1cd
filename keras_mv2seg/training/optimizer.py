"""SGD with PyTorch semantics: coupled weight decay and momentum applied before the learning rate."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mv2seg")
class TorchSGD(keras.optimizers.Optimizer):
    """``g = grad + wd * p; buf = momentum * buf + g; p -= lr * buf`` -- ``torch.optim.SGD`` with
    ``weight_decay`` (coupled: the decay goes through momentum), unlike Keras' SGD, whose velocity holds
    ``lr * g`` (different once the learning rate changes) and whose ``weight_decay`` is decoupled. The decay
    applies to every trainable variable, BN scales and biases included, as in the mmseg recipe; with
    ``decay_kernels_only`` to convolution/dense kernels only, as slim's ``l2_regularizer`` in the official
    DeepLab (its ``wd * sum(w^2) / 2`` loss term has the gradient ``wd * w``)."""

    def __init__(self, learning_rate=0.01, momentum=0.9, coupled_weight_decay=5e-4, decay_kernels_only=False,
                 name="torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), received {momentum!r}")
        self.momentum = float(momentum)
        self.coupled_weight_decay = float(coupled_weight_decay)
        self.decay_kernels_only = bool(decay_kernels_only)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay and (not self.decay_kernels_only or "kernel" in variable.name):
            gradient = gradient + ops.cast(self.coupled_weight_decay, variable.dtype) * variable
        buffer = self.momentums[self._get_variable_index(variable)]
        self.assign(buffer, ops.cast(self.momentum, variable.dtype) * buffer + gradient)
        self.assign_sub(variable, learning_rate * buffer)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum,
                "coupled_weight_decay": self.coupled_weight_decay, "decay_kernels_only": self.decay_kernels_only}

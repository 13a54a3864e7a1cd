"""Training: the reference recipe (loss, poly schedule, PyTorch SGD) wired into model.fit."""

from keras_mv2seg.training.losses import SegmentationCrossEntropy
from keras_mv2seg.training.optimizer import TorchSGD
from keras_mv2seg.training.schedule import PolyDecay
from keras_mv2seg.training.trainer import NonFiniteLossError, compile_model, train

__all__ = ["SegmentationCrossEntropy", "TorchSGD", "PolyDecay", "NonFiniteLossError", "compile_model", "train"]

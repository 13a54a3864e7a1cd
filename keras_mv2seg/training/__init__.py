"""Training: the reference recipe (losses, poly schedule, PyTorch SGD) wired into model.fit."""

from keras_mv2seg.training.losses import (DiceLoss, FocalLoss, OhemPixelSampler, SegmentationCrossEntropy, SumOfLosses,
                                          TopKPixelCrossEntropy, build_loss)
from keras_mv2seg.training.optimizer import TorchSGD
from keras_mv2seg.training.schedule import PolyDecay
from keras_mv2seg.training.trainer import NonFiniteLossError, compile_model, train

__all__ = ["SegmentationCrossEntropy", "DiceLoss", "FocalLoss", "TopKPixelCrossEntropy", "SumOfLosses",
           "OhemPixelSampler", "build_loss", "TorchSGD", "PolyDecay", "NonFiniteLossError", "compile_model", "train"]

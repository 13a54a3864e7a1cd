"""Training: the reference recipe (losses, poly schedule, PyTorch SGD) wired into model.fit."""

from keras_mv2seg.training.losses import (DiceLoss, FocalLoss, LovaszLoss, OhemPixelSampler, SegmentationCrossEntropy, SumOfLosses,
                                          TopKPixelCrossEntropy, build_loss)
from keras_mv2seg.training.optimizer import TorchAdamW, TorchSGD
from keras_mv2seg.training.schedule import PolyDecay
from keras_mv2seg.training.trainer import NonFiniteLossError, compile_model, train

__all__ = ["SegmentationCrossEntropy", "DiceLoss", "FocalLoss", "LovaszLoss", "TopKPixelCrossEntropy", "SumOfLosses",
           "OhemPixelSampler", "build_loss", "TorchSGD", "TorchAdamW", "PolyDecay", "NonFiniteLossError", "compile_model", "train"]

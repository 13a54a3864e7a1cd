"""Multiply-adds of the convolutions of a model at a given input size (the reference's FLOPs convention)."""

from __future__ import annotations

import keras
import numpy as np


def conv_macs(model: keras.Model) -> int:
    """Sum of multiply-adds of every Conv2D / DepthwiseConv2D, from the layers' static output shapes.

    Build the model with a fixed input size (``build_segmenter(cfg, input_shape=(H, W, 3))``)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * int(np.prod(layer.kernel_size))
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            if h is None or w is None:
                raise ValueError(f"layer {layer.name} has no static output size; build the model with a fixed "
                                 "input_shape to count its multiply-adds")
            total += h * w * c * int(np.prod(layer.kernel_size)) * layer.input.shape[-1] // layer.groups
    return int(total)

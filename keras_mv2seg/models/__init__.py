"""Model building: backbone, heads, segmenter."""

from keras_mv2seg.models.mobilenet_v2 import block_schedule, build_backbone, mobilenet_v2_features
from keras_mv2seg.models.segmenter import build_segmenter, inference_model, intermediate_model

__all__ = ["block_schedule", "build_backbone", "mobilenet_v2_features", "build_segmenter", "inference_model",
           "intermediate_model"]

"""keras_mv2seg: MobileNetV2 semantic segmentation (mmseg M-V2-D8 and official DeepLab) for Keras 3."""

from keras_mv2seg.config import Config, get_config, list_configs
from keras_mv2seg.models import build_segmenter, inference_model
from keras_mv2seg.predictor import Prediction, Segmenter
from keras_mv2seg.weights import build_for_inference, from_preset, list_presets, load_weights, save_weights
from keras_mv2seg.version import __version__

__all__ = ["Config", "get_config", "list_configs", "build_segmenter", "inference_model", "load_weights",
           "from_preset", "list_presets", "build_for_inference", "save_weights", "Segmenter", "Prediction", "__version__"]

"""keras_mv2seg: MobileNetV2 semantic segmentation (mmseg M-V2-D8 and official DeepLab) for Keras 3."""

from keras_mv2seg.config import Config, get_config, list_configs
from keras_mv2seg.models import build_segmenter, inference_model
from keras_mv2seg.presets import from_preset, list_presets
from keras_mv2seg.weights import load_weights

__version__ = "0.1.0"
__all__ = ["Config", "get_config", "list_configs", "build_segmenter", "inference_model", "load_weights",
           "from_preset", "list_presets"]

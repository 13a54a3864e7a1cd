"""Official TF DeepLab MobileNetV2 on PASCAL VOC 2012 (21 classes), depth multiplier 0.5 with DeepLab's channel
rounding: loads the model-zoo TF1 checkpoints and trains with the official VOC recipe (cited in
``deeplab_mnv2_pascal.py``)."""

from keras_mv2seg.configs._base import DEEPLAB_VOC_RECIPE, deeplab_official, deeplab_result

CONFIG = deeplab_official("deeplab_mnv2_dm05_pascal", num_classes=21, dataset="pascal_voc", crop_size=(513, 513),
                          widen_factor=0.5).replace(
    **DEEPLAB_VOC_RECIPE,
    results=deeplab_result(),
)

"""Official TF DeepLab MobileNetV2 on ADE20K (151 classes, 0 = ignore), with the stride-4 decoder: loads the model-zoo TF1 checkpoints."""

from keras_mv2seg.configs._base import deeplab_official, deeplab_result

CONFIG = deeplab_official("deeplab_mnv2_ade20k", num_classes=151, dataset="ade20k", crop_size=(513, 513), decoder_stride=4).replace(
    results=deeplab_result(),
)

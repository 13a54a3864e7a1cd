"""Official TF DeepLab MobileNetV2 on PASCAL VOC 2012 (21 classes), depth multiplier 1.0: loads the model-zoo TF1 checkpoints."""

from keras_mv2seg.config import deeplab_official

CONFIG = deeplab_official("deeplab_mnv2_pascal", num_classes=21, dataset="pascal_voc", crop_size=(513, 513)).replace(
    results={
        "source": 'tensorflow/models research/deeplab g3doc/model_zoo.md (val)',
        "mIoU_os16": 75.32,
        "mIoU_os8_ms_flip": 77.33,
    },
)

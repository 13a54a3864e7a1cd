"""Official TF DeepLab MobileNetV2 on Cityscapes (19 classes): loads the model-zoo TF1 checkpoints."""

from keras_mv2seg.configs._base import deeplab_official, deeplab_result

CONFIG = deeplab_official("deeplab_mnv2_cityscapes", num_classes=19, dataset="cityscapes", crop_size=(1025, 2049)).replace(
    results=deeplab_result(mIoU_os16=70.71, mIoU_os8_ms_flip=73.57),
)

"""DeepLabV3+ with the MobileNetV2 M-V2-D8 backbone on PASCAL VOC 2012 + SBD (train_aug), mmseg's VOC recipe.

mmseg publishes no M-V2-D8 VOC model; this row applies mmseg's own VOC data pipeline and 20k schedule (see
``keras_mv2seg.configs._base.voc12aug_20k``) to the M-V2-D8 DeepLabV3+, so it has no reference mIoU.
"""

from keras_mv2seg.configs._base import voc12aug_20k

CONFIG = voc12aug_20k("deeplabv3plus_m-v2-d8_512x512_20k_voc12aug", head="sepaspp")

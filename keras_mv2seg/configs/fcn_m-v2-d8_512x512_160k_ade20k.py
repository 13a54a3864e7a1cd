"""FCN with the MobileNetV2 M-V2-D8 backbone on ADE20K (mmsegmentation model table)."""

from keras_mv2seg.configs._base import ade20k_160k, mmseg_result

CONFIG = ade20k_160k("fcn_m-v2-d8_512x512_160k_ade20k", head="fcn").replace(
    results=mmseg_result(19.71, fps=64.4, train_memory_gb=6.5),
)

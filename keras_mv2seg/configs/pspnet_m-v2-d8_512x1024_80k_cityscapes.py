"""PSPNet with the MobileNetV2 M-V2-D8 backbone on Cityscapes (mmsegmentation model table)."""

from keras_mv2seg.configs._base import cityscapes_80k, mmseg_result

CONFIG = cityscapes_80k("pspnet_m-v2-d8_512x1024_80k_cityscapes", head="psp").replace(
    results=mmseg_result(70.23, fps=11.2, train_memory_gb=3.6),
)

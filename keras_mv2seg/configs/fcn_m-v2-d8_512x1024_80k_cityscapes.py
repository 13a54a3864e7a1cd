"""FCN with the MobileNetV2 M-V2-D8 backbone on Cityscapes (mmsegmentation model table)."""

from keras_mv2seg.configs._base import cityscapes_80k, mmseg_result

CONFIG = cityscapes_80k("fcn_m-v2-d8_512x1024_80k_cityscapes", head="fcn").replace(
    results=mmseg_result(61.54, fps=14.2, train_memory_gb=3.4, note="mmseg later retrained this row to 71.19 mIoU"),
)

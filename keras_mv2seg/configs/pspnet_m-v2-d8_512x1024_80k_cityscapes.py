"""PSPNet with the MobileNetV2 M-V2-D8 backbone on Cityscapes (mmsegmentation model table)."""

from keras_mv2seg.config import cityscapes_80k

CONFIG = cityscapes_80k("pspnet_m-v2-d8_512x1024_80k_cityscapes", head="psp").replace(
    results={
        "source": "mmsegmentation configs/mobilenet_v2 README (V100, single-scale)",
        "mIoU": 70.23,
        "fps": 11.2,
        "train_memory_gb": 3.6,
    },
)

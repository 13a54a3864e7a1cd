"""The base recipes the config files of this folder build on (each file defines ``CONFIG`` from one of them):
the mmseg M-V2-D8 rows on Cityscapes, ADE20K and PASCAL VOC, the official DeepLab MobileNetV2 models with their VOC
recipe, the toy recipe, and the published results a config is judged against. Not a config itself (the leading
underscore keeps it out of ``list_configs``)."""

from keras_mv2seg.config import Config, DataConfig, ModelConfig, TrainConfig

MMSEG_TABLE = "mmsegmentation configs/mobilenet_v2 README (V100, single-scale)"
DEEPLAB_MODEL_ZOO = "tensorflow/models research/deeplab g3doc/model_zoo.md (val)"


def mmseg_result(mIoU: float, fps: float, train_memory_gb: float, **extra) -> dict:
    """A row of mmseg's MobileNetV2 model table: the published figures a config is judged against."""
    return {"source": MMSEG_TABLE, "mIoU": mIoU, "fps": fps, "train_memory_gb": train_memory_gb, **extra}


def deeplab_result(**figures) -> dict:
    """A row of the official DeepLab model zoo (``mIoU_os16``, ``mIoU_os8_ms_flip`` where published)."""
    return {"source": DEEPLAB_MODEL_ZOO, **figures}


def cityscapes_80k(name: str, head: str, **model) -> Config:
    """mmseg M-V2-D8 on Cityscapes: 512x1024 crops, 80k iterations, batch 8 (4 GPUs x 2)."""
    return Config(name=name, model=ModelConfig(head=head, num_classes=19, **model),
                  data=DataConfig(dataset="cityscapes", crop_size=(512, 1024), base_scale=(2048, 1024)),
                  train=TrainConfig(max_iters=80000, batch_size=8))


def ade20k_160k(name: str, head: str, **model) -> Config:
    """mmseg M-V2-D8 on ADE20K: 512x512 crops, 160k iterations, batch 16 (4 GPUs x 4)."""
    return Config(name=name, model=ModelConfig(head=head, num_classes=150, **model),
                  data=DataConfig(dataset="ade20k", crop_size=(512, 512), base_scale=(2048, 512),
                                  reduce_zero_label=True),
                  train=TrainConfig(max_iters=160000, batch_size=16, eval_interval=16000,
                                    checkpoint_interval=16000))


def voc12aug_20k(name: str, head: str, **model) -> Config:
    """mmseg-style recipe on PASCAL VOC 2012 + SBD (mmseg ``configs/_base_/datasets/pascal_voc12_aug.py`` and
    ``schedules/schedule_20k.py``): 21 classes, train_aug split, img_scale (2048, 512), ratio 0.5..2.0, 512x512
    crops with cat_max_ratio 0.75, SGD 0.01 poly to 1e-4, 20k iterations, batch 16 (4 GPUs x 4), validation and
    checkpoints every 2000 iterations. The 40k schedule: ``--cfg-options max_iters=40000``."""
    return Config(name=name, model=ModelConfig(head=head, num_classes=21, **model),
                  data=DataConfig(dataset="pascal_voc", crop_size=(512, 512), base_scale=(2048, 512),
                                  train_split="train_aug"),
                  train=TrainConfig(max_iters=20000, batch_size=16, eval_interval=2000, checkpoint_interval=2000))


# The official DeepLab MobileNetV2 PASCAL VOC training recipe; every value is cited in configs/deeplab_mnv2_pascal.py.
DEEPLAB_VOC_RECIPE = dict(
    output_stride=16, train_split="train_aug", augmentation="deeplab", ratio_range=(0.5, 2.0), scale_step=0.25,
    test_mode="pad", max_iters=30000, batch_size=8, lr=0.007, min_lr=0.0, power=0.9, momentum=0.9,
    weight_decay=4e-5, weight_decay_on="kernels", eval_interval=3000, checkpoint_interval=3000,
)


def deeplab_official(name: str, num_classes: int, dataset: str, crop_size, **model) -> Config:
    """Official TF DeepLab MobileNetV2 (image pooling + aspp0 head), output stride 8 at evaluation."""
    return Config(name=name,
                  model=ModelConfig(head="deeplab", convention="deeplab", num_classes=num_classes,
                                    decode_channels=256, aux_channels=0, dropout=0.0, **model),
                  data=DataConfig(dataset=dataset, crop_size=tuple(crop_size), base_scale=tuple(crop_size)[::-1]),
                  train=TrainConfig())


def toy(name: str, head: str, **model) -> Config:
    """The built-in toy dataset (generated in data/toy on first use, Cityscapes layout and train ids):
    small crops and a short schedule that trains in minutes on a CPU."""
    return Config(name=name,
                  model=ModelConfig(head=head, num_classes=19, **model),
                  data=DataConfig(dataset="toy", data_root="data/toy", crop_size=(128, 128), base_scale=(256, 128)),
                  train=TrainConfig(max_iters=300, batch_size=8, eval_interval=100, checkpoint_interval=100))

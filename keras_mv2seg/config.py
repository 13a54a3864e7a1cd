"""Configs as plain, frozen data: model / data / train sections plus the reference's published results.

Variants are made from a base by explicit overrides (:meth:`Config.replace`); an override key that names
no field is an error, never ignored. ``get_config`` takes a table name (a file in ``configs/``) or a path
to a config file, each of which defines ``CONFIG`` -- usually from one of the base recipes of
``keras_mv2seg/configs/_base.py`` (``from keras_mv2seg.configs._base import cityscapes_80k``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_mv2seg.datasets_meta import DATASETS

__all__ = [
    "ModelConfig", "DataConfig", "TrainConfig", "Config", "Convention", "CONVENTIONS",
    "get_config", "list_configs", "config_dir",
]

# The vocabularies of the model section, each written once; the model code imports them from here.
HEADS = {"fcn": "mmseg", "psp": "mmseg", "aspp": "mmseg", "sepaspp": "mmseg",  # head -> the convention it needs
         "deeplab": "deeplab"}  # builders: models.heads.<name>_head
OUTPUT_STRIDES = (8, 16, 32)
DEPTHWISE_IMPLEMENTATIONS = ("portable", "native")
NORM_EVAL = ("none", "backbone", "all")  # train.norm_eval: which batch norms train on their moving statistics


@dataclass(frozen=True)
class Convention:
    """Everything that differs between the mmseg and the official DeepLab implementations, as values, read
    through ``config.model.conventions`` (or :func:`convention`) where they act: padding
    (``models.layers.pad_for_conv``), the output-stride rewrite (``models.mobilenet_v2.block_schedule``),
    channel rounding (``scaled_channels``/``expanded_channels``), the initial weights
    (``models.initializers``), normalisation, batch norm, resize alignment (:meth:`resize`) and the pad pixel.
    No code branches on a convention's name."""

    name: str
    backbone_bn_epsilon: float
    backbone_bn_momentum: float
    head_bn_epsilon: float
    input_scale: tuple[float, float, float]  # model input x -> x * scale + offset, per RGB channel
    input_offset: tuple[float, float, float]
    align_corners: bool  # resize convention for logits and decoder features
    # strided k x k convs pad dilation * (k // 2) on both sides (PyTorch) instead of TF 'same' (0 before, 1 after)
    symmetric_strided_padding: bool
    # output stride: the stage that would exceed it turns stride 1 and dilates from its first block (mmseg's
    # MobileNetV2 strides/dilations) instead of from the block after the one that would exceed it (slim)
    dilate_whole_stage: bool
    # channels at a width below 1: make_divisible(c * width, this divisor, min_channels) (1.0: always 8)
    fractional_width_divisor: int
    min_channels: int | None  # None: the divisor
    # inverted-residual hidden width: make_divisible(in * t, this) (None: round(in * t), as mmseg)
    expansion_divisor: int | None

    @property
    def pad_pixel(self) -> tuple[float, float, float]:
        """The raw RGB value the model's normalisation maps to 0 (mmseg: the mean; DeepLab: 127.5): what images
        are padded with, as the references pad after normalising."""
        return tuple(-offset / scale for offset, scale in zip(self.input_offset, self.input_scale))

    def resize(self, images, size):
        """Bilinear resize of [B, h, w, C] to ``size`` with this convention's alignment (``ops.resize_bilinear``)."""
        from keras_mv2seg.ops import resize_bilinear

        return resize_bilinear(images, size, self.align_corners)


_MMSEG_MEAN = (123.675, 116.28, 103.53)
_MMSEG_STD = (58.395, 57.12, 57.375)

CONVENTIONS = {
    "mmseg": Convention(
        name="mmseg",
        backbone_bn_epsilon=1e-5, backbone_bn_momentum=0.9, head_bn_epsilon=1e-5,
        input_scale=tuple(1.0 / s for s in _MMSEG_STD),
        input_offset=tuple(-m / s for m, s in zip(_MMSEG_MEAN, _MMSEG_STD)),
        align_corners=False,
        symmetric_strided_padding=True, dilate_whole_stage=True, fractional_width_divisor=8, min_channels=None,
        expansion_divisor=None,
    ),
    "deeplab": Convention(
        name="deeplab",
        backbone_bn_epsilon=1e-3, backbone_bn_momentum=0.997, head_bn_epsilon=1e-5,
        input_scale=(2.0 / 255.0,) * 3, input_offset=(-1.0,) * 3,
        align_corners=True,
        symmetric_strided_padding=False, dilate_whole_stage=False, fractional_width_divisor=1, min_channels=8,
        expansion_divisor=8,
    ),
}


def convention(name: str, parameter: str = "convention") -> Convention:
    """The :class:`Convention` called ``name``; ValueError naming ``parameter`` and the known ones otherwise."""
    if name not in CONVENTIONS:
        raise ValueError(f"{parameter} must be one of {tuple(CONVENTIONS)}, received {name!r}")
    return CONVENTIONS[name]


def _choice(section, name, value, choices):
    if value not in choices:
        raise ValueError(f"{section}.{name} must be one of {choices}, received {value!r}")


def _positive(section, name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{section}.{name} must be a positive number, received {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    head: str = "fcn"  # fcn | psp | aspp | sepaspp (mmseg) | deeplab (official DeepLab head)
    num_classes: int = 19
    convention: str = "mmseg"  # mmseg | deeplab, see CONVENTIONS
    output_stride: int = 8  # 8 (the table's D8), 16 or 32
    widen_factor: float = 1.0  # mmseg widen_factor / DeepLab depth_multiplier
    decode_channels: int = 512
    aux_channels: int = 256  # auxiliary FCN head on the stride-8 96-channel feature; 0 = none
    dropout: float = 0.1  # channel dropout before the classifier (mmseg Dropout2d)
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)  # psp
    aspp_dilations: tuple[int, ...] = (1, 12, 24, 36)  # aspp / sepaspp
    c1_channels: int = 48  # sepaspp / deeplab decoder: low-level projection
    decoder_stride: int = 0  # deeplab: 4 adds the stride-4 decoder (ADE20K model); 0 = none
    depthwise_implementation: str = "portable"  # portable | native, see models.layers.DepthwiseConv2D
    init: str = "reference"  # reference: as the convention's reference draws it | keras: Keras' defaults

    def __post_init__(self):
        _choice("model", "head", self.head, tuple(HEADS))
        _choice("model", "convention", self.convention, tuple(CONVENTIONS))
        _choice("model", "output_stride", self.output_stride, OUTPUT_STRIDES)
        _choice("model", "decoder_stride", self.decoder_stride, (0, 4))
        _choice("model", "depthwise_implementation", self.depthwise_implementation, DEPTHWISE_IMPLEMENTATIONS)
        _choice("model", "init", self.init, ("reference", "keras"))
        for name in ("num_classes", "widen_factor", "decode_channels", "c1_channels"):
            _positive("model", name, getattr(self, name))
        if not isinstance(self.aux_channels, int) or self.aux_channels < 0:
            raise ValueError(f"model.aux_channels must be an int >= 0 (0: no auxiliary head), received {self.aux_channels!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), received {self.dropout!r}")
        if HEADS[self.head] != self.convention:
            raise ValueError(f"model.head {self.head!r} needs convention {HEADS[self.head]!r}, "
                             f"received {self.convention!r}")
        if self.decoder_stride and self.head != "deeplab":
            raise ValueError("model.decoder_stride applies to the 'deeplab' head only (sepaspp has its own decoder)")

    @property
    def conventions(self) -> Convention:
        return CONVENTIONS[self.convention]


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cityscapes"  # a name of datasets_meta.DATASETS: cityscapes | ade20k | pascal_voc | toy | custom
    data_root: str = ""
    # the classes' names and colours (r, g, b per class, flat) when they are not the dataset table's: filled
    # from a custom dataset's dataset_meta.json (data.description.described) and kept in saved weights' metadata
    class_names: tuple[str, ...] = ()
    palette: tuple[int, ...] = ()
    crop_size: tuple[int, int] = (512, 1024)  # (height, width)
    base_scale: tuple[int, int] = (2048, 1024)  # mmseg img_scale (long side, short side)
    ratio_range: tuple[float, float] = (0.5, 2.0)  # random scale range (mmseg: of base_scale; deeplab: of the image)
    train_split: str = "train"  # the layout split trained on (PASCAL VOC: train_aug for the SBD-augmented set)
    augmentation: str = "mmseg"  # mmseg (rescale, cat_max_ratio crop, flip, photometric) | deeplab (official DeepLab)
    scale_step: float = 0.0  # deeplab augmentation: scales min, min + step, ..., max (0: uniform)
    cat_max_ratio: float = 0.75
    ignore_index: int = 255
    reduce_zero_label: bool = False  # ADE20K: 0 -> 255, L -> L - 1
    test_mode: str = "whole"  # whole | slide | pad (official DeepLab eval: image padded to crop_size)
    train_records: str = ""  # DeepLab TFRecord file pattern to train from instead of the layout at data_root
    val_records: str = ""  # likewise for validation
    cache_dir: str = ""  # cache decoded training samples here (raw pixels; see data/cache.py); "" = decode each time
    tfds_data_dir: str = ""  # read train/val through tensorflow-datasets (prepared here, manual files in data_root)

    def __post_init__(self):
        _choice("data", "dataset", self.dataset, tuple(DATASETS))
        _choice("data", "test_mode", self.test_mode, ("whole", "slide", "pad"))
        _choice("data", "augmentation", self.augmentation, ("mmseg", "deeplab"))
        if self.scale_step < 0 or self.ratio_range[0] > self.ratio_range[1]:
            raise ValueError(f"data.ratio_range must be (min, max) and data.scale_step >= 0, received "
                             f"{self.ratio_range!r}, {self.scale_step!r}")
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            raise ValueError(f"data.crop_size must be (height, width) > 0, received {self.crop_size!r}")


@dataclass(frozen=True)
class TrainConfig:
    max_iters: int = 80000
    batch_size: int = 8  # global batch (reference: 4 GPUs x 2)
    lr: float = 0.01
    min_lr: float = 1e-4
    power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4  # PyTorch-style, coupled (added to the gradient)
    weight_decay_on: str = "all"  # all (mmseg: every parameter) | kernels (DeepLab/slim: conv kernels only)
    aux_weight: float = 0.4
    eval_interval: int = 8000
    checkpoint_interval: int = 8000
    sync_batchnorm: str = "heads"  # none | heads | all (under a distribution strategy)
    distribution: str = "auto"  # auto | none | mirrored | multi_worker (auto: multi_worker with TF_CONFIG,
    #                             mirrored with several GPUs, none otherwise)
    startup_timeout_s: float = 600.0  # multi-worker: seconds to wait for every worker of TF_CONFIG to join
    mixed_precision: str = "float32"  # float32 | float16 | bfloat16 (logits and loss stay float32)
    jit_compile: bool = False  # XLA
    pretrained: str = ""  # ImageNet MobileNetV2 checkpoint (mmcls .pth) for the backbone; "" = from scratch
    load_from: str = ""  # the whole model from a preset name, mmseg .pth, DeepLab checkpoint or .weights.h5
    #                      (mmseg's load_from; classifiers re-initialised when its class count differs)
    log_interval: int = 50  # TensorBoard scalars every N iterations
    # losses in mmseg's config syntax (JSON; see training/losses.py): the decode head's loss_decode (one loss or
    # a list), its pixel sampler (OHEM) and the auxiliary head's loss; "" = the reference's cross-entropy
    decode_loss: str = ""
    sampler: str = ""
    aux_loss: str = ""
    # fine-tuning controls (training/controls.py, training/optimizer.py): the optimizer (sgd: torch SGD; adamw:
    # torch AdamW, weight_decay decoupled; betas and eps its own), mmengine's paramwise_cfg (JSON: custom_keys
    # with lr_mult/decay_mult, bias_lr_mult, bias/norm/dwconv/flat_decay_mult), mmseg's frozen_stages (-1 none,
    # 0 the stem, k the stem and stages 1..k, 7 the whole backbone) and norm_eval (none | backbone | all: batch
    # norm on its moving statistics), an EMA of the weights (its decay; 0 = off) used for validation, best and
    # final weights, gradient accumulation (batch_size stays the batch of one update, split in this many
    # micro-batches) and early stopping on the val mIoU (patience in validations, 0 = off; min_delta in points)
    optimizer: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    paramwise: str = ""
    frozen_stages: int = -1
    norm_eval: str = "none"
    ema_decay: float = 0.0
    accumulation_steps: int = 1
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.1

    def __post_init__(self):
        _choice("train", "sync_batchnorm", self.sync_batchnorm, ("none", "heads", "all"))
        _choice("train", "weight_decay_on", self.weight_decay_on, ("all", "kernels"))
        _choice("train", "distribution", self.distribution, ("auto", "none", "mirrored", "multi_worker"))
        _choice("train", "mixed_precision", self.mixed_precision, ("float32", "float16", "bfloat16"))
        if self.pretrained and self.load_from:
            raise ValueError(f"train.pretrained ({self.pretrained}) and train.load_from ({self.load_from}) both set: "
                             "load_from loads the whole model (backbone included); set one of them")
        for name in ("max_iters", "batch_size", "lr", "eval_interval", "checkpoint_interval", "log_interval",
                     "startup_timeout_s"):
            _positive("train", name, getattr(self, name))
        _choice("train", "optimizer", self.optimizer, ("sgd", "adamw"))
        _choice("train", "norm_eval", self.norm_eval, NORM_EVAL)
        if not all(0.0 <= beta < 1.0 for beta in self.betas) or self.eps <= 0:
            raise ValueError(f"train.betas must be two numbers in [0, 1) and train.eps > 0, received "
                             f"{self.betas!r}, {self.eps!r}")
        if not -1 <= self.frozen_stages <= 7:
            raise ValueError(f"train.frozen_stages must be from -1 (none) to 7 (the whole backbone), received "
                             f"{self.frozen_stages!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1) (0: no EMA; mmengine's EMAHook momentum m is "
                             f"ema_decay = 1 - m), received {self.ema_decay!r}")
        if self.accumulation_steps < 1 or self.batch_size % self.accumulation_steps:
            raise ValueError(f"train.accumulation_steps must be an int >= 1 that divides train.batch_size "
                             f"({self.batch_size}, the batch of one update), received {self.accumulation_steps!r}")
        if self.early_stopping_patience < 0 or self.early_stopping_min_delta < 0:
            raise ValueError(f"train.early_stopping_patience (validations; 0 = off) and "
                             f"train.early_stopping_min_delta (mIoU points) must be >= 0, received "
                             f"{self.early_stopping_patience!r}, {self.early_stopping_min_delta!r}")
        if self.paramwise:
            from keras_mv2seg.training.paramwise import parse_paramwise

            parse_paramwise(self.paramwise)
        if self.decode_loss or self.sampler or self.aux_loss:  # checked here, before anything runs
            from keras_mv2seg.training.losses import build_loss

            build_loss(self.decode_loss, self.sampler)
            build_loss(self.aux_loss, key="aux_loss")


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


@dataclass(frozen=True)
class Config:
    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # The reference's published numbers for this row (mIoU, fps, memory, source); information only.
    results: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        names, colours, classes = self.data.class_names, self.data.palette, self.model.num_classes
        if names and len(names) != classes:
            raise ValueError(f"data.class_names names {len(names)} classes but model.num_classes is {classes}")
        if colours and (len(colours) != 3 * classes or not all(isinstance(c, int) and 0 <= c <= 255
                                                              for c in colours)):
            raise ValueError(f"data.palette must hold r, g, b (0..255) for each of the {classes} classes "
                             f"({3 * classes} values), received {len(colours)}")

    def replace(self, **overrides) -> "Config":
        """A copy with fields overridden: ``decode_channels=64`` (a field name found in one section) or
        ``**{"train.max_iters": 100}``; ``name`` and ``results`` too. Unknown keys are errors."""
        top = {}
        per_section: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
        for key, value in overrides.items():
            if key in ("name", "results"):
                top[key] = value
                continue
            section, _, attr = key.rpartition(".")
            if section:
                if section not in _SECTIONS or attr not in _field_names(_SECTIONS[section]):
                    raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(_all_keys())}")
            else:
                owners = [s for s, cls in _SECTIONS.items() if attr in _field_names(cls)]
                if len(owners) != 1:
                    raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(_all_keys())}")
                section = owners[0]
            annotation = {f.name: f.type for f in dataclasses.fields(_SECTIONS[section])}[attr]
            per_section[section][attr] = _typed(f"{section}.{attr}", value, annotation)
        sections = {s: dataclasses.replace(getattr(self, s), **kw) for s, kw in per_section.items() if kw}
        return dataclasses.replace(self, **top, **sections)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


_SCALARS = {"int": int, "float": (int, float), "str": str, "bool": bool}
_JSON_FIELDS = {"train.decode_loss", "train.sampler", "train.aux_loss", "train.paramwise"}


def _typed(key: str, value, annotation: str):
    """``value`` checked against a field's annotation (``int``, ``float``, ``str``, ``bool``, ``tuple[int, int]``,
    ``tuple[int, ...]``...): ValueError naming the key, the expected type and the value otherwise. Ints are
    accepted where floats are expected, lists where tuples are (returned as tuples) and any ``os.PathLike`` where
    a string is (returned as its path string: data roots, cache folders, record patterns)."""
    def fits(item, name):
        expected = _SCALARS.get(name)
        if expected is None:
            return True
        return isinstance(item, expected) and (name == "bool" or not isinstance(item, bool))

    if annotation.startswith("tuple[") and annotation.endswith("]"):
        parts = [part.strip() for part in annotation[len("tuple["):-1].split(",")]
        if isinstance(value, (list, tuple)):
            names = [parts[0]] * len(value) if parts[-1] == "..." else parts
            if len(names) == len(value) and all(fits(item, name) for item, name in zip(value, names)):
                return tuple(float(v) if n == "float" else v for v, n in zip(value, names))
    elif fits(value, annotation):
        return float(value) if annotation == "float" else value
    elif annotation == "str" and isinstance(value, os.PathLike):  # path-valued fields take any os.PathLike
        return os.fspath(value)
    elif annotation == "str" and key in _JSON_FIELDS and isinstance(value, (dict, list)):
        return json.dumps(value)  # a loss given as a dict (from Python, or --cfg-options' literal parsing)
    shape = "several values" if annotation.endswith("...]") else annotation
    raise ValueError(f"config key {key!r} expects {shape}, received {value!r} ({type(value).__name__})"
                     + (f"; e.g. {key.rpartition('.')[2]}=({', '.join(['64'] * (annotation.count(',') + 1))})"
                        if annotation.startswith("tuple[") and "..." not in annotation else ""))


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _all_keys() -> list[str]:
    return sorted(f"{s}.{f}" for s, cls in _SECTIONS.items() for f in _field_names(cls))


def config_dir() -> Path:
    """The config files: ``$KERAS_MV2SEG_CONFIGS`` or the package's own ``keras_mv2seg/configs/`` (installed with
    the wheel; a checkout's top-level ``configs`` is a link to it)."""
    return Path(os.environ.get("KERAS_MV2SEG_CONFIGS", Path(__file__).resolve().parent / "configs"))


def list_configs() -> list[str]:
    folder = config_dir()
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")) if folder.is_dir() else []


def get_config(name_or_path: str | os.PathLike, **overrides) -> Config:
    """Load a named config (a file ``configs/<name>.py``) or a config file path, then apply overrides."""
    text = os.fspath(name_or_path)
    path = Path(text) if text.endswith(".py") or os.sep in text else config_dir() / f"{text}.py"
    if not path.is_file():
        known = ", ".join(list_configs()) or f"none found in {config_dir()}"
        raise ValueError(f"unknown config {text!r} (no file {path}); known configs: {known}")
    spec = importlib.util.spec_from_file_location(f"keras_mv2seg_config_{path.stem.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = getattr(module, "CONFIG", None)
    if not isinstance(config, Config):
        raise ValueError(f"{path} must define CONFIG = keras_mv2seg.config.Config(...), found {type(config).__name__}")
    return config.replace(**overrides) if overrides else config

"""The dataset table: names, classes, palettes, splits and their aliases, label kinds and TFDS names of every
supported dataset, and the label-id tables. Everything else asks this module instead of keeping its own list."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
# Cityscapes labelIds (0..33) of the 19 evaluated classes, in train-id order.
CITYSCAPES_TRAIN_TO_LABEL_ID = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
PASCAL_VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclass(frozen=True)
class DatasetInfo:
    """One row of the dataset table.

    ``splits``: the split names of the directory layout; ``aliases``: other names accepted for them (the
    common ``train``/``val`` for ADE20K's folders); ``label_kinds``: how the layout's label files are decoded
    and mapped (see ``data/decode.py``); ``tfds_name``: the tensorflow-datasets builder, if any."""

    name: str
    classes: tuple[str, ...]
    splits: tuple[str, ...]
    label_kinds: tuple[str, ...]
    aliases: dict = field(default_factory=dict)
    tfds_name: str = ""
    palette: tuple = ()  # official colours; empty: the VOC colour map
    any_split: bool = False  # split names are the dataset's own folders or split files (custom)
    tfds_image_key: str = "image"  # the TFDS example's image feature
    tfds_label_kind: str = ""  # the label kind of the TFDS example's segmentation_label


DATASETS = {
    "cityscapes": DatasetInfo("cityscapes", CITYSCAPES_CLASSES, ("train", "val", "test"), ("train_ids", "label_ids"),
                              tfds_name="cityscapes/semantic_segmentation", palette=CITYSCAPES_PALETTE,
                              tfds_image_key="image_left", tfds_label_kind="label_ids"),
    "ade20k": DatasetInfo("ade20k", ADE20K_CLASSES, ("training", "validation"), ("ade20k",),
                          aliases={"train": "training", "val": "validation"}, tfds_name="ade20k_scene_parsing",
                          tfds_label_kind="ade20k"),
    "pascal_voc": DatasetInfo("pascal_voc", PASCAL_VOC_CLASSES, ("train", "val", "trainval", "train_aug"), ("voc",),
                              aliases={"trainaug": "train_aug", "aug": "train_aug"}),
    # the toy dataset is written in the Cityscapes layout with Cityscapes train ids
    "toy": DatasetInfo("toy", CITYSCAPES_CLASSES, ("train", "val"), ("train_ids", "label_ids"),
                       palette=CITYSCAPES_PALETTE),
    # a user's own data: classes, colours and mask coding from its dataset_meta.json (data/description.py)
    "custom": DatasetInfo("custom", (), ("train", "val"), ("custom",), any_split=True),
}


# label values a file of each label kind may hold (data/decode.py decodes the kinds; tools/check_data.py checks
# the values; the pipelines check the mapped values against the model's classes)
LABEL_VALUES = {
    "train_ids": set(range(len(CITYSCAPES_CLASSES))) | {255},
    "label_ids": set(range(34)) | {255},  # Cityscapes labelIds 0..33; 255 holds 'license plate' (-1)
    "ade20k": set(range(len(ADE20K_CLASSES) + 1)),  # 0: 'other' (ignored), 1..150 the classes
    "voc": set(range(len(PASCAL_VOC_CLASSES))) | {255},
}


def dataset_info(dataset: str) -> DatasetInfo:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    return DATASETS[dataset]


def split_name(dataset: str, split: str) -> str:
    """The layout's name of ``split`` (aliases resolved); an unknown split is an error listing the known ones."""
    info = dataset_info(dataset)
    split = info.aliases.get(split, split)
    if split not in info.splits and not info.any_split:
        raise ValueError(f"{dataset} has splits {info.splits}, received {split!r}")
    return split


def class_names(dataset: str, num_classes: int) -> tuple[str, ...]:
    """Names for ``num_classes`` classes of ``dataset``; the official DeepLab ADE20K model has 151 classes,
    class 0 being 'other' (ignored), so its names are shifted by one."""
    names = dataset_info(dataset).classes
    if dataset == "ade20k" and num_classes == 151:
        names = ("other",) + names
    if len(names) != num_classes:
        return tuple(names[i] if i < len(names) else f"class {i}" for i in range(num_classes))
    return names


def voc_palette(num_classes: int) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved), used for every dataset without an official palette."""
    palette = np.zeros((num_classes, 3), np.uint8)
    for index in range(num_classes):
        value, shift = index, 7
        while value:
            for channel in range(3):
                palette[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return palette


def palette(dataset: str, num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours: the dataset's official ones (Cityscapes, toy), the VOC map otherwise
    (PASCAL VOC's own, ADE20K and any class count without official colours)."""
    official = dataset_info(dataset).palette
    if len(official) == num_classes:
        return np.asarray(official, np.uint8)
    return voc_palette(num_classes)


def classes_of(config) -> tuple[str, ...]:
    """The class names of a config: its own (``data.class_names``, a custom dataset's) or the dataset table's."""
    return tuple(config.data.class_names) or class_names(config.data.dataset, config.model.num_classes)


def palette_of(config) -> np.ndarray:
    """(num_classes, 3) uint8 colours of a config: its own (``data.palette``) or the dataset's."""
    if config.data.palette:
        return np.asarray(config.data.palette, np.uint8).reshape(-1, 3)
    return palette(config.data.dataset, config.model.num_classes)


def colorize(labels: np.ndarray, colours: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Class map [H, W] -> RGB uint8 [H, W, 3]; ``ignore_index`` (and any id without a colour) is black."""
    labels = np.asarray(labels)
    out = np.zeros((*labels.shape, 3), np.uint8)
    valid = (labels >= 0) & (labels < len(colours)) & (labels != ignore_index)
    out[valid] = colours[labels[valid]]
    return out


def cityscapes_label_id_to_train_id() -> np.ndarray:
    """256-entry lookup table labelId -> trainId (255 for ignored ids)."""
    table = np.full(256, 255, np.uint8)
    for train_id, label_id in enumerate(CITYSCAPES_TRAIN_TO_LABEL_ID):
        table[label_id] = train_id
    return table


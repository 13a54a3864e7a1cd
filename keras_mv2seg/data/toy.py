"""A small built-in dataset with structure a model can learn, generated on demand (no download).

Street-like scenes: sky (gradient) over buildings with window grids, trees with leafy texture, a road with
lane marks and a sidewalk, cars (dark bodies with wheels) and people; a band of ignore pixels at the bottom
(the ego vehicle, as in Cityscapes). Written in the Cityscapes layout (train ids in ``*_labelTrainIds.png``
and label ids in ``*_labelIds.png``), the ADE20K layout (``.jpg`` images, ADE ids with 0 = other) or the PASCAL VOC
layout (``.jpg`` images, palette PNG labels with the VOC colours: car, person and vegetation as VOC's car, person
and potted plant, the rest background, the ego band 255, split files train/val/trainval), or as a user's own
data (``custom``: Common Semantic Segmentation with ``train/`` and ``val/`` subset folders, a
``dataset_meta.json`` of four classes and RGB colour masks).
Deterministic for a given seed; about 0.1 s for the default 48 + 12 images of 128x256.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_mv2seg.datasets_meta import CITYSCAPES_TRAIN_TO_LABEL_ID, voc_palette

# toy object -> Cityscapes train id, ADE20K class (1-based id in the ADE annotations), PASCAL VOC class
CLASS_IDS = {
    "road": (0, 7, 0), "sidewalk": (1, 12, 0), "building": (2, 2, 0), "vegetation": (8, 5, 16), "sky": (10, 3, 0),
    "person": (11, 13, 15), "car": (13, 21, 7),
}
LAYOUTS = ("cityscapes", "ade20k", "pascal_voc", "custom")
# the "custom" layout: a user's own data as Common Semantic Segmentation with subset folders and RGB colour
# masks: four classes of its own (everything else, the ego band included, is background)
CUSTOM_CLASSES = (("background", (0, 0, 0), ()), ("building", (70, 70, 70), ("building",)),
                  ("vegetation", (107, 142, 35), ("vegetation",)), ("car", (0, 0, 142), ("car",)))
EGO_LABEL_ID = 1  # Cityscapes 'ego vehicle': ignored (train id 255)
_MARKER = ".keras_mv2seg_toy.json"


def render_scene(rng: np.random.Generator, height: int, width: int):
    """(RGB uint8 image, train-id label uint8) of one scene; label 255 marks ignored pixels."""
    ids = {name: train_id for name, (train_id, *_) in CLASS_IDS.items()}
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    horizon = int(height * rng.uniform(0.4, 0.55))
    label = np.full((height, width), ids["sky"], np.uint8)
    sky_top, sky_bottom = rng.uniform([60, 110, 170], [90, 150, 220]), rng.uniform([150, 190, 220], [190, 220, 250])
    t = (rows / max(horizon, 1)).clip(0, 1)[..., None]
    image = np.broadcast_to(sky_top * (1 - t) + sky_bottom * t, (height, width, 3)).copy()
    # buildings with window grids
    x = 0
    while x < width:
        w = int(rng.integers(width // 10, width // 4))
        top = int(rng.integers(height // 12, horizon - 4))
        colour = rng.uniform(60, 160, 3)
        image[top:horizon, x:x + w] = colour
        window = ((rows[top:horizon] - top) % 8 < 4) & ((cols[:, x:x + w] - x) % 7 < 3)
        image[top:horizon, x:x + w][window] = colour * 0.45
        label[top:horizon, x:x + w] = ids["building"]
        x += w + int(rng.integers(0, width // 12))
    # trees: leafy discs on trunks
    for _ in range(int(rng.integers(1, 4))):
        cx, cy, r = int(rng.integers(0, width)), int(rng.integers(horizon // 2, horizon)), int(rng.integers(6, 16))
        disc = (rows - cy) ** 2 + (cols - cx) ** 2 <= r * r
        leaves = rng.uniform(0.6, 1.2, (height, width, 1)) * np.array([60, 130, 40])
        image[disc] = leaves[disc]
        label[disc] = ids["vegetation"]
    # ground: sidewalk strip and road with lane marks
    sidewalk = horizon + max(2, (height - horizon) // 6)
    image[horizon:sidewalk] = rng.uniform(150, 200) * np.array([1.0, 0.9, 0.95])
    label[horizon:sidewalk] = ids["sidewalk"]
    image[sidewalk:] = rng.uniform(70, 100) * np.array([1.0, 0.8, 1.0])
    label[sidewalk:] = ids["road"]
    lane = (np.abs(rows - (sidewalk + height) // 2) < 2) & (cols % 24 < 12)
    image[lane & (rows >= sidewalk)] = 230
    # cars and people on the ground
    for _ in range(int(rng.integers(1, 4))):
        w, h = int(rng.integers(width // 10, width // 5)), int(rng.integers(height // 10, height // 6))
        left, bottom = int(rng.integers(0, width - w)), int(rng.integers(sidewalk + h // 2, height - height // 10))
        image[bottom - h:bottom, left:left + w] = rng.uniform(10, 60, 3) + np.array([0, 0, 80])
        label[bottom - h:bottom, left:left + w] = ids["car"]
        for wheel in (left + w // 5, left + 4 * w // 5):
            disc = (rows - bottom) ** 2 + (cols - wheel) ** 2 <= (h // 4) ** 2
            image[disc] = 15
            label[disc] = ids["car"]
    for _ in range(int(rng.integers(0, 4))):
        w, h = int(rng.integers(3, 6)), int(rng.integers(height // 8, height // 5))
        left, bottom = int(rng.integers(0, width - w)), int(rng.integers(horizon + h // 3, sidewalk + h // 2))
        image[bottom - h:bottom, left:left + w] = rng.uniform([150, 20, 40], [230, 60, 90])
        label[bottom - h:bottom, left:left + w] = ids["person"]
    # ego vehicle band: ignored
    ego = height - max(2, height // 16)
    image[ego:] = 30
    label[ego:] = 255
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def synthetic_image(height: int = 256, width: int = 512, seed: int = 0) -> np.ndarray:
    """One toy scene as a model input, float32 RGB 0..255 [1, H, W, 3]: for checks and exports without data."""
    return render_scene(np.random.default_rng(seed), height, width)[0].astype(np.float32)[None]


def _train_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    table = np.full(256, EGO_LABEL_ID, np.uint8)
    table[: len(CITYSCAPES_TRAIN_TO_LABEL_ID)] = CITYSCAPES_TRAIN_TO_LABEL_ID
    return table[train_ids]


def _train_to(column: int, train_ids: np.ndarray) -> np.ndarray:
    """Train ids -> ADE20K (column 1; 0 = other, ignored after reduce_zero_label) or VOC ids (column 2;
    0 = background, the ignored band stays 255)."""
    table = np.zeros(256, np.uint8)
    table[255] = 0 if column == 1 else 255
    for ids in CLASS_IDS.values():
        table[ids[0]] = ids[column]
    return table[train_ids]


def voc_palette_png(label: np.ndarray) -> bytes:
    """A palette PNG with the VOC colour map, as the PASCAL VOC ``SegmentationClass`` files are."""
    import io

    from PIL import Image

    image = Image.fromarray(np.asarray(label, np.uint8), mode="P")
    image.putpalette(voc_palette(256).ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def ensure_toy_dataset(root) -> Path:
    """An existing toy dataset at ``root`` (whatever its settings), else a new one with the defaults."""
    root = Path(root)
    return root if (root / _MARKER).is_file() else make_toy_dataset(root)


def make_toy_dataset(root, layout: str = "cityscapes", *, train: int = 48, val: int = 12, height: int = 128,
                     width: int = 256, seed: int = 0) -> Path:
    """Write the toy dataset under ``root`` (idempotent: an existing toy dataset with the same settings is
    reused; a non-empty folder that is not one is refused rather than overwritten)."""
    import tensorflow as tf

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, received {layout!r}")
    root = Path(root)
    settings = {"layout": layout, "train": train, "val": val, "height": height, "width": width, "seed": seed}
    marker = root / _MARKER
    if marker.is_file():
        if json.loads(marker.read_text()) == settings:
            return root
        raise ValueError(f"{root} holds a toy dataset made with other settings ({marker.read_text()}); "
                         "remove it or choose another folder")
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty and is not a toy dataset; refusing to write into it. The toy "
                              "configs generate their data in an empty (or absent) folder: pass another --data-root "
                              "(or none, for data/toy), or, to train on this folder's own data, a config of its "
                              "dataset (e.g. a *_cityscapes or *_ade20k config)")
    rng = np.random.default_rng(seed)
    png = lambda a: tf.io.encode_png(a if a.ndim == 3 else a[..., None]).numpy()  # noqa: E731
    voc_ids = {"train": [], "val": []}
    for split, count in (("train", train), ("val", val)):
        for index in range(count):
            image, label = render_scene(rng, height, width)
            if layout == "cityscapes":
                city = ("toyville", "toytown")[index % 2]  # letters only, as Cityscapes (and TFDS) expect
                stem = f"{city}_{index:06d}_000019"
                image_dir = root / "leftImg8bit" / split / city
                label_dir = root / "gtFine" / split / city
                image_dir.mkdir(parents=True, exist_ok=True)
                label_dir.mkdir(parents=True, exist_ok=True)
                (image_dir / f"{stem}_leftImg8bit.png").write_bytes(png(image))
                (label_dir / f"{stem}_gtFine_labelTrainIds.png").write_bytes(png(label))
                (label_dir / f"{stem}_gtFine_labelIds.png").write_bytes(png(_train_to_label_ids(label)))
            elif layout == "pascal_voc":
                base = root / "VOCdevkit" / "VOC2012"
                (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
                (base / "SegmentationClass").mkdir(parents=True, exist_ok=True)
                image_id = f"2026_{index + (100000 if split == 'val' else 0):06d}"
                voc_ids[split].append(image_id)
                (base / "JPEGImages" / f"{image_id}.jpg").write_bytes(tf.io.encode_jpeg(image, quality=95).numpy())
                (base / "SegmentationClass" / f"{image_id}.png").write_bytes(voc_palette_png(_train_to(2, label)))
            elif layout == "custom":
                (root / split / "images").mkdir(parents=True, exist_ok=True)
                (root / split / "masks").mkdir(parents=True, exist_ok=True)
                stem = f"scene_{split}_{index:04d}"
                (root / split / "images" / f"{stem}.png").write_bytes(png(image))
                (root / split / "masks" / f"{stem}.png").write_bytes(png(custom_colour_mask(label)))
            else:
                folder = {"train": "training", "val": "validation"}[split]
                base = root / "ADEChallengeData2016"
                (base / "images" / folder).mkdir(parents=True, exist_ok=True)
                (base / "annotations" / folder).mkdir(parents=True, exist_ok=True)
                stem = f"ADE_{folder[:5]}_{index:08d}"
                (base / "images" / folder / f"{stem}.jpg").write_bytes(tf.io.encode_jpeg(image, quality=95).numpy())
                (base / "annotations" / folder / f"{stem}.png").write_bytes(png(_train_to(1, label)))
    if layout == "pascal_voc":
        lists = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True, exist_ok=True)
        for split, ids in (*voc_ids.items(), ("trainval", voc_ids["train"] + voc_ids["val"])):
            (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    if layout == "custom":
        (root / "dataset_meta.json").write_text(json.dumps({
            "label_map": {str(i): name for i, (name, _, _) in enumerate(CUSTOM_CLASSES)},
            "segmentation_colors": [list(colour) for _, colour, _ in CUSTOM_CLASSES], "background_label": "0"},
            indent=2) + "\n")
    marker.write_text(json.dumps(settings))
    return root


def custom_classes(train_ids: np.ndarray) -> np.ndarray:
    """Toy train ids -> the ``custom`` layout's class ids (0 background, 1 building, 2 vegetation, 3 car)."""
    ids = {name: train_id for name, (train_id, *_) in CLASS_IDS.items()}
    out = np.zeros_like(train_ids)
    for index, (_, _, parts) in enumerate(CUSTOM_CLASSES):
        for part in parts:
            out[train_ids == ids[part]] = index
    return out


def custom_colour_mask(train_ids: np.ndarray) -> np.ndarray:
    """The ``custom`` layout's RGB colour mask of a toy label."""
    colours = np.array([colour for _, colour, _ in CUSTOM_CLASSES], np.uint8)
    return colours[custom_classes(train_ids)]

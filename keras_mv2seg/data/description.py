"""The description of a user's own dataset (``data.dataset = "custom"``): its classes, colours and how its masks
encode them, read from one small file at the dataset root.

``dataset_meta.json`` is the Common Semantic Segmentation file (OpenVINO's accuracy checker, datumaro) read as it
is -- ``label_map`` (``{"0": "background", "1": "cat"}``, ids 0..N-1), or datumaro's ``labels`` list;
``segmentation_colors`` (``[[0, 0, 0], [255, 0, 0]]``, one per class id); ``background_label`` (``"0"``) --
plus this project's keys for what it lacks:

==================== ======================= =====================================================================
key                  default                 meaning
==================== ======================= =====================================================================
``ignore_index``     255                     the mask value that is not trained on nor scored
``mask_encoding``    ``"auto"``              ``index``: a mask pixel's value is its class id (grayscale PNG, or a
                                             palette PNG's own indices); ``rgb``: its colour is looked up in
                                             ``segmentation_colors``; ``auto``: by each PNG's colour type
``value_map``        ``{}``                  raw mask value -> class id, e.g. ``{"255": 1}`` for 0/255 masks
``reduce_zero_label`` false                  0 -> ignore, L -> L - 1 (mmseg's flag) for values not in value_map
``layout``           detected                ``common`` (``images/`` + ``masks/``), ``mmseg`` (``img_dir/`` +
                                             ``ann_dir/``) or ``cvat`` (VOC folders, ``labelmap.txt``)
``img_suffix``       any image               the image file ending (``.jpg``); mmseg: default ``.jpg``
``seg_map_suffix``   ``.png``                the mask file ending (``_mask.png`` when masks are named so)
``splits``           split folders           ``{"train": "train.txt", ...}``: files of ids, one per line
==================== ======================= =====================================================================

A CVAT "Segmentation mask" export (VOC folders) carries ``labelmap.txt`` (``name:r,g,b:parts:actions``) instead:
it is read when no ``dataset_meta.json`` exists. Every problem is a ``ValueError`` naming the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

META_FILE = "dataset_meta.json"
CVAT_LABELMAP = "labelmap.txt"
LAYOUTS = ("common", "mmseg", "cvat")
MASK_ENCODINGS = ("auto", "index", "rgb")
_OWN_KEYS = {"ignore_index", "mask_encoding", "value_map", "reduce_zero_label", "layout", "img_suffix",
             "seg_map_suffix", "splits"}
_META_KEYS = {"labels", "label_map", "segmentation_colors", "background_label"}
_DATUMARO_EXTRA_KEYS = {"parts", "actions", "label_groups"}  # datumaro's VOC meta file: not about masks


@dataclass(frozen=True)
class DatasetDescription:
    """A custom dataset's classes and mask coding (see the module docstring); ``source`` names the file."""

    source: str
    classes: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...] = ()  # per class id; empty: none declared
    background: int | None = None
    ignore_index: int = 255
    mask_encoding: str = "auto"
    value_map: tuple[tuple[int, int], ...] = ()
    reduce_zero_label: bool = False
    layout: str = ""  # "" = detect
    img_suffix: str = ""
    seg_map_suffix: str = ".png"
    splits: tuple[tuple[str, str], ...] = ()  # (split, file of ids as an absolute path)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def value_table(self):
        """256 entries: the class id (or ``ignore_index``) each raw mask value trains as."""
        import numpy as np

        table = np.arange(256, dtype=np.int64)
        if self.reduce_zero_label:
            table = np.where(table == 0, self.ignore_index, table - 1)
            table[self.ignore_index] = self.ignore_index
        for raw, value in self.value_map:
            table[raw] = value
        return np.clip(table, 0, 255).astype(np.uint8)


def _fail(source, message):
    raise ValueError(f"{source}: {message}")


def _int(source, key, value, low=0, high=255):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        _fail(source, f"{key} must be an integer {low}..{high}, found {value!r}")
    try:
        number = int(value)
    except ValueError:
        _fail(source, f"{key} must be an integer {low}..{high}, found {value!r}")
    if not low <= number <= high:
        _fail(source, f"{key} must be an integer {low}..{high}, found {value!r}")
    return number


def _colour(source, key, value):
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)):
        _fail(source, f"{key} must be [r, g, b] with values 0..255, found {value!r}")
    return tuple(value)


def _classes_of(source, meta: dict) -> tuple[str, ...]:
    labels = meta.get("labels")
    label_map = meta.get("label_map")
    if label_map is None and labels is None:
        _fail(source, "declares no classes: expected \"label_map\": {\"0\": \"background\", ...} (or a \"labels\" "
                      "list)")
    names = None
    if label_map is not None:
        if not isinstance(label_map, dict) or not label_map:
            _fail(source, f"label_map must be a non-empty object of class id -> name, found {label_map!r}")
        ids = {_int(source, f"label_map key {key!r}", key, 0, 254): name for key, name in label_map.items()}
        if sorted(ids) != list(range(len(ids))):
            _fail(source, f"label_map ids must be 0..{len(ids) - 1} without gaps, found {sorted(ids)}")
        names = tuple(str(ids[i]) for i in range(len(ids)))
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
            _fail(source, f"labels must be a list of class names, found {labels!r}")
        if names is not None and tuple(labels) != names:
            _fail(source, f"labels {labels} and label_map {list(names)} name different classes")
        names = names or tuple(labels)
    if len(set(names)) != len(names):
        _fail(source, f"class names repeat: {list(names)}")
    return names


def _unique_keys(pairs) -> dict:
    """A JSON object's pairs as a dict, refusing a repeated key (``label_map`` entries above all)."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise KeyError(key)
        seen[key] = value
    return seen


def _from_meta(path: Path) -> DatasetDescription:
    source = str(path)
    try:
        meta = json.loads(path.read_text(), object_pairs_hook=_unique_keys)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        _fail(source, f"not a readable JSON file ({error})")
    except KeyError as error:
        _fail(source, f"key {error.args[0]!r} appears twice in one object (JSON keeps only the last; say it once)")
    if not isinstance(meta, dict):
        _fail(source, f"expected a JSON object, found {type(meta).__name__}")
    unknown = sorted(set(meta) - _OWN_KEYS - _META_KEYS - _DATUMARO_EXTRA_KEYS)
    if unknown:
        _fail(source, f"unknown key(s) {unknown}; known: {sorted(_META_KEYS | _OWN_KEYS)}")
    classes = _classes_of(source, meta)
    colours = meta.get("segmentation_colors") or ()
    if colours:
        if not isinstance(colours, list) or len(colours) != len(classes):
            _fail(source, f"segmentation_colors must give one [r, g, b] per class ({len(classes)}), found "
                          f"{len(colours) if isinstance(colours, list) else colours!r}")
        colours = tuple(_colour(source, f"segmentation_colors[{i}]", c) for i, c in enumerate(colours))
        if len(set(colours)) != len(colours):
            _fail(source, "segmentation_colors repeat a colour: a colour mask could not say which class it means")
    background = meta.get("background_label")
    if background is not None:
        background = _int(source, "background_label", background, 0, len(classes) - 1)
    ignore = _int(source, "ignore_index", meta.get("ignore_index", 255))
    if ignore < len(classes):
        _fail(source, f"ignore_index {ignore} is a class id (classes are 0..{len(classes) - 1})")
    encoding = meta.get("mask_encoding", "auto")
    if encoding not in MASK_ENCODINGS:
        _fail(source, f"mask_encoding must be one of {MASK_ENCODINGS}, found {encoding!r}")
    if encoding == "rgb" and not colours:
        _fail(source, "mask_encoding \"rgb\" needs segmentation_colors (one [r, g, b] per class)")
    value_map = meta.get("value_map", {})
    if not isinstance(value_map, dict):
        _fail(source, f"value_map must be an object of raw mask value -> class id, e.g. {{\"255\": 1}}, found "
                      f"{value_map!r}")
    pairs = []
    for raw, value in value_map.items():
        raw_value = _int(source, f"value_map key {raw!r}", raw)
        value = _int(source, f"value_map[{raw!r}]", value)
        if value >= len(classes) and value != ignore:
            _fail(source, f"value_map[{raw!r}] = {value} is neither a class id (0..{len(classes) - 1}) nor the "
                          f"ignore index {ignore}")
        pairs.append((raw_value, value))
    reduce_zero_label = meta.get("reduce_zero_label", False)
    if not isinstance(reduce_zero_label, bool):
        _fail(source, f"reduce_zero_label must be true or false, found {reduce_zero_label!r}")
    layout = meta.get("layout", "")
    if layout and layout not in LAYOUTS:
        _fail(source, f"layout must be one of {LAYOUTS}, found {layout!r}")
    suffixes = {}
    for key in ("img_suffix", "seg_map_suffix"):
        value = meta.get(key)
        if value is not None and (not isinstance(value, str) or not value or "/" in value):
            _fail(source, f"{key} must be a file ending such as \".png\", found {value!r}")
        if value is not None:
            suffixes[key] = value
    splits = meta.get("splits", {})
    if not isinstance(splits, dict) or not all(isinstance(v, str) for v in splits.values()):
        _fail(source, f"splits must be an object of split name -> file of ids, found {str(splits)[:80]!r}")
    root = path.parent.resolve()
    for name, value in splits.items():
        if not (root / value).resolve().is_relative_to(root):
            _fail(source, f"splits.{name} names {value[:80]!r}, outside the dataset root {root}: split files must be "
                          "inside the dataset's folder")
    return DatasetDescription(source, classes, colours, background, ignore, encoding, tuple(sorted(pairs)),
                              reduce_zero_label, layout, splits=tuple((k, str(path.parent / v)) for k, v in splits.items()),
                              **suffixes)


def _from_cvat_labelmap(path: Path) -> DatasetDescription:
    """CVAT's / datumaro's VOC ``labelmap.txt``: ``name:r,g,b:parts:actions`` per class, in class-id order."""
    source = str(path)
    names, colours = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        name, rgb = fields[0].strip(), fields[1].strip() if len(fields) > 1 else ""
        try:
            colour = tuple(int(c) for c in rgb.split(",")) if rgb else None
        except ValueError:
            colour = ()
        if not name or (colour is not None and (len(colour) != 3 or not all(0 <= c <= 255 for c in colour))):
            _fail(f"{source}:{number}", f"expected 'name:r,g,b:parts:actions', found {line!r}")
        names.append(name)
        colours.append(colour)
    if not names:
        _fail(source, "lists no labels")
    declared = tuple(colours) if all(c is not None for c in colours) else ()
    if declared and len(set(declared)) != len(declared):
        _fail(source, "repeats a colour: a colour mask could not say which class it means")
    background = names.index("background") if "background" in names else None
    return DatasetDescription(source, tuple(names), declared, background, layout="cvat")


def description_file(root) -> Path | None:
    """The description file of a custom dataset root (``dataset_meta.json``, else CVAT's ``labelmap.txt``)."""
    root = Path(root)
    for path in (root / META_FILE, root / CVAT_LABELMAP):
        if path.is_file():
            return path
    subsets = sorted(p for p in root.glob(f"*/{META_FILE}") if p.is_file()) if root.is_dir() else []
    return subsets[0] if subsets else None


def read_description(root) -> DatasetDescription:
    """The description of the custom dataset at ``root``: ``root/dataset_meta.json``, CVAT's ``labelmap.txt``,
    or -- for Common Semantic Segmentation with subset folders -- the ``<subset>/dataset_meta.json`` files,
    which must then agree."""
    root = Path(root)
    path = description_file(root)
    if path is None:
        raise ValueError(f"{root}: no {META_FILE} (nor CVAT's {CVAT_LABELMAP}) describing the custom dataset's "
                         f"classes; write one, e.g. {{\"label_map\": {{\"0\": \"background\", \"1\": \"cat\"}}}} "
                         "(see docs/own_data.md)")
    if path.name == CVAT_LABELMAP:
        return _from_cvat_labelmap(path)
    description = _from_meta(path)
    if path.parent != root:  # subset folders, each with its own file: all must describe the same classes
        for other in sorted(root.glob(f"*/{META_FILE}")):
            theirs = _from_meta(other)
            if (theirs.classes, theirs.colours) != (description.classes, description.colours):
                raise ValueError(f"{other}: describes classes {list(theirs.classes)} but {path} describes "
                                 f"{list(description.classes)}; the subsets must share one description")
    return description


def described(config, data_root=None):
    """``config`` with a custom dataset's classes and declared colours (``data.class_names``, ``data.palette``;
    without colours ``datasets_meta.palette_of`` gives the VOC map) from the description at its data root (``description.py``); other datasets, or a custom one without a data root here
    (predicting from saved weights), unchanged. The model's class count, ignore index and reduce_zero_label
    must agree with the description: an error naming both values otherwise."""
    root = data_root or config.data.data_root
    if config.data.dataset != "custom" or not root:
        return config
    description = read_description(root)
    source, classes = description.source, description.classes
    if description.num_classes != config.model.num_classes:
        raise ValueError(f"{source} declares {description.num_classes} classes ({', '.join(classes)}) but "
                         f"model.num_classes of {config.name!r} is {config.model.num_classes}: pass "
                         f"--cfg-options num_classes={description.num_classes} (a model loaded from another class "
                         "count gets new classifiers, see train.load_from)")
    if config.data.class_names and tuple(config.data.class_names) != classes:
        raise ValueError(f"{source} declares classes {list(classes)} but the config names "
                         f"{list(config.data.class_names)} (data.class_names)")
    for key, theirs, ours in (("ignore_index", description.ignore_index, config.data.ignore_index),
                              ("reduce_zero_label", description.reduce_zero_label, config.data.reduce_zero_label)):
        if theirs != ours:
            raise ValueError(f"{source} sets {key} {theirs!r} but the config's data.{key} is {ours!r}: pass "
                             f"--cfg-options {key}={theirs!r} (or change the description)")
    return config.replace(class_names=classes, palette=tuple(c for colour in description.colours for c in colour))

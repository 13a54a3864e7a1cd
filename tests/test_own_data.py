"""A user's own data (``data.dataset = "custom"``): the dataset description, the three layouts, every mask format,
the refusals naming the file, the 0/255 trap, fine-tuning to the user's classes, and the classes downstream --
checked against writers no one here wrote (datumaro's CVAT/VOC segmentation-mask and Cityscapes exporters) and
against hand-made folders."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_mv2seg
from keras_mv2seg.data.check import check_dataset, training_split_problem
from keras_mv2seg.data.description import described, read_description
from keras_mv2seg.data.sources import evaluation_data
from keras_mv2seg.data.toy import CLASS_IDS, CUSTOM_CLASSES, custom_classes, make_toy_dataset, render_scene
from keras_mv2seg.errors import DataError, data_errors_named

NAMES = [name for name, _, _ in CUSTOM_CLASSES]
COLOURS = [colour for _, colour, _ in CUSTOM_CLASSES]


def scenes(count=3, seed=0, height=32, width=64):
    rng = np.random.default_rng(seed)
    return [render_scene(rng, height, width) for _ in range(count)]


def png(array) -> bytes:
    return tf.io.encode_png(array if array.ndim == 3 else array[..., None]).numpy()


def write(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def palette_png(ids: np.ndarray, colours) -> bytes:
    """A palette PNG whose indices are ``ids`` and whose palette is ``colours`` (not VOC's map)."""
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette([c for colour in colours for c in colour])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def meta(root: Path, **keys):
    description = {"label_map": {str(i): n for i, n in enumerate(NAMES)}, "background_label": "0", **keys}
    (root / "dataset_meta.json").write_text(json.dumps(description))


def config_for(root, **overrides):
    return keras_mv2seg.get_config("toy", dataset="custom", data_root=str(root), num_classes=len(NAMES), **overrides)


def pipeline_labels(root, split="val", **overrides) -> dict:
    config = described(config_for(root, **overrides))
    with data_errors_named():
        return {name.numpy().decode(): label.numpy() for _, label, name in evaluation_data(config, split)}


def expected_ids(pairs):
    return [custom_classes(label) for _, label in pairs]


# --- the description --------------------------------------------------------------------------------------------

def test_description_reads_the_common_semantic_segmentation_file_and_datumaro_labels(tmp_path):
    meta(tmp_path, segmentation_colors=[list(c) for c in COLOURS], value_map={"255": 1}, ignore_index=254)
    description = read_description(tmp_path)
    assert description.classes == tuple(NAMES) and description.colours == tuple(COLOURS)
    assert description.background == 0 and description.ignore_index == 254
    table = description.value_table()
    assert table[255] == 1 and table[3] == 3 and table[254] == 254
    (tmp_path / "dataset_meta.json").write_text(json.dumps({"labels": NAMES}))  # datumaro's own meta file
    assert read_description(tmp_path).classes == tuple(NAMES)


@pytest.mark.parametrize("keys, message", [
    ({"label_map": {"0": "a", "2": "b"}}, "without gaps"),
    ({"label_map": {"0": "a", "1": "b"}, "segmentation_colors": [[0, 0, 0]]}, "one [r, g, b] per class (2)"),
    ({"label_map": {"0": "a", "1": "b"}, "segmentation_colors": [[0, 0, 0], [0, 0, 0]]}, "repeat a colour"),
    ({"label_map": {"0": "a", "1": "b"}, "ignore_index": 1}, "ignore_index 1 is a class id"),
    ({"label_map": {"0": "a", "1": "b"}, "value_map": {"255": 7}}, "value_map['255'] = 7"),
    ({"label_map": {"0": "a", "1": "b"}, "mask_encodin": "rgb"}, "unknown key(s) ['mask_encodin']"),
    ({"label_map": {"0": "a", "1": "b"}, "mask_encoding": "rgb"}, "needs segmentation_colors"),
    ({"segmentation_colors": [[0, 0, 0]]}, "declares no classes"),
])
def test_a_bad_description_is_an_error_naming_the_file_and_key(tmp_path, keys, message):
    (tmp_path / "dataset_meta.json").write_text(json.dumps(keys))
    with pytest.raises(ValueError) as error:
        read_description(tmp_path)
    assert message in str(error.value) and "dataset_meta.json" in str(error.value)


def test_a_config_that_disagrees_with_the_description_names_both_values(tmp_path):
    make_toy_dataset(tmp_path, "custom", train=2, val=1, height=32, width=64)
    with pytest.raises(ValueError, match=r"declares 4 classes .* model.num_classes of 'toy' is 19: pass "
                                         r"--cfg-options num_classes=4"):
        described(keras_mv2seg.get_config("toy", dataset="custom", data_root=str(tmp_path)))
    with pytest.raises(ValueError, match="ignore_index 255 but the config's data.ignore_index is 0"):
        described(config_for(tmp_path, ignore_index=0))
    config = described(config_for(tmp_path))
    assert config.data.class_names == tuple(NAMES) and config.data.palette[9:12] == COLOURS[3]


# --- the layouts and mask formats -------------------------------------------------------------------------------

def test_common_semantic_segmentation_with_subset_folders_and_rgb_masks(tmp_path):
    make_toy_dataset(tmp_path, "custom", train=3, val=2, height=32, width=64, seed=3)
    rng = np.random.default_rng(3)
    pairs = [render_scene(rng, 32, 64) for _ in range(5)]
    labels = pipeline_labels(tmp_path)
    assert sorted(labels) == ["val/images/scene_val_0000.png", "val/images/scene_val_0001.png"]
    for (name, label), expected in zip(sorted(labels.items()), expected_ids(pairs[3:])):
        np.testing.assert_array_equal(label, expected, err_msg=name)


def test_split_folders_under_images_with_palette_masks_of_their_own_palette(tmp_path):
    pairs = scenes(2)
    own_palette = [(9, 9, 9), (200, 10, 10), (10, 200, 10), (10, 10, 200)]  # not VOC's colour map
    for index, (image, label) in enumerate(pairs):
        write(tmp_path / "images" / "val" / f"{index}.png", png(image))
        write(tmp_path / "masks" / "val" / f"{index}.png", palette_png(custom_classes(label), own_palette))
    meta(tmp_path)
    labels = pipeline_labels(tmp_path)
    for index, expected in enumerate(expected_ids(pairs)):
        np.testing.assert_array_equal(labels[f"images/val/{index}.png"], expected)
    checked, problems = check_dataset("custom", tmp_path, ["val"])  # the eager path check_data and train take
    assert problems == [], problems


def test_flat_folders_with_split_files_and_grayscale_masks(tmp_path):
    pairs = scenes(3)
    for index, (image, label) in enumerate(pairs):
        write(tmp_path / "images" / f"a{index}.jpg", tf.io.encode_jpeg(image, quality=95).numpy())
        write(tmp_path / "masks" / f"a{index}.png", png(custom_classes(label)))
    (tmp_path / "val.txt").write_text("a2\na0\n")
    meta(tmp_path, splits={"val": "val.txt"})
    labels = pipeline_labels(tmp_path)
    assert list(labels) == ["images/a2.jpg", "images/a0.jpg"]  # the split file's order
    np.testing.assert_array_equal(labels["images/a0.jpg"], expected_ids(pairs)[0])


def test_mmseg_layout_with_a_mask_suffix(tmp_path):
    pairs = scenes(2)
    for index, (image, label) in enumerate(pairs):
        write(tmp_path / "img_dir" / "val" / f"s{index}.jpg", tf.io.encode_jpeg(image, quality=95).numpy())
        write(tmp_path / "ann_dir" / "val" / f"s{index}_mask.png", png(custom_classes(label)))
    meta(tmp_path, seg_map_suffix="_mask.png")
    labels = pipeline_labels(tmp_path)
    np.testing.assert_array_equal(labels["img_dir/val/s1.jpg"], expected_ids(pairs)[1])


def _bad_dataset(root: Path, kind: str) -> str:
    """A one-image custom dataset (RGB masks) with one fault; returns a fragment the error must contain."""
    image, label = scenes(1)[0]
    colour_mask = np.asarray(COLOURS, np.uint8)[custom_classes(label)]
    write(root / "val" / "images" / "x.png", png(image))
    meta(root, segmentation_colors=[list(c) for c in COLOURS])
    mask = root / "val" / "masks" / "x.png"
    if kind == "undeclared colour":
        colour_mask[:3, :5] = (1, 2, 3)
        write(mask, png(colour_mask))
        return "has 15 pixels of colour (r g b) 1 2 3"
    if kind == "size":
        write(mask, png(colour_mask[:-2]))
        return "differs from its image"
    if kind == "jpeg":
        write(mask, tf.io.encode_jpeg(colour_mask).numpy())
        return "JPEG file, expected an 8-bit PNG class map"
    if kind == "16-bit":
        write(mask, tf.io.encode_png(custom_classes(label)[..., None].astype(np.uint16)).numpy())
        return "16-bit PNG"
    if kind == "values":
        write(mask, png(np.full(label.shape, 9, np.uint8)))
        return "mask values [9] are neither class ids (0..3"
    if kind == "no mask":
        write(root / "val" / "masks" / "other.png", png(custom_classes(label)))
        return "no mask"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["undeclared colour", "size", "jpeg", "16-bit", "values", "no mask"])
def test_each_mask_problem_is_reported_naming_the_file(tmp_path, kind):
    fragment = _bad_dataset(tmp_path, kind)
    report = check_dataset("custom", tmp_path, ["val"])
    assert any(fragment in problem for problem in report.problems), report.problems
    assert any("x.png" in problem for problem in report.problems)
    if kind == "no mask":
        assert any("other.png: mask without an image" in problem for problem in report.problems)
    if kind in ("undeclared colour", "size", "values"):  # the pipeline names the file too, in one sentence
        with pytest.raises((DataError, ValueError)) as error:
            pipeline_labels(tmp_path)
        assert "x.png" in str(error.value) and "\n" not in str(error.value)


# --- the 0/255 trap and fine-tuning to the user's classes ------------------------------------------------------

def _binary_dataset(root: Path, value_map: dict | None, count=(16, 4), size=(64, 128)):
    """Sky as the foreground, saved as 0/255 masks in the mmseg layout with a mask suffix."""
    rng = np.random.default_rng(0)
    for split, number in zip(("train", "val"), count):
        for index in range(number):
            image, label = render_scene(rng, *size)
            mask = np.where(label == CLASS_IDS["sky"][0], 255, 0).astype(np.uint8)
            write(root / "img_dir" / split / f"{index}.jpg", tf.io.encode_jpeg(image, quality=95).numpy())
            write(root / "ann_dir" / split / f"{index}_mask.png", png(mask))
    keys = {"label_map": {"0": "background", "1": "sky"}, "background_label": "0", "seg_map_suffix": "_mask.png"}
    (root / "dataset_meta.json").write_text(json.dumps({**keys, **({"value_map": value_map} if value_map else {})}))


def test_binary_masks_of_0_and_255_are_warned_about_and_refused_for_training(tmp_path):
    _binary_dataset(tmp_path, None, count=(2, 1), size=(32, 64))
    report = check_dataset("custom", tmp_path)
    assert any("hold only 0 and 255" in w and "value_map" in w for w in report.warnings), report.warnings
    config = keras_mv2seg.get_config("toy", dataset="custom", data_root=str(tmp_path), num_classes=2)
    problem = training_split_problem(config)
    assert "no pixel belongs to a class other than the background" in problem and "value_map" in problem
    from keras_mv2seg.training import train

    with pytest.raises(ValueError, match="refusing to train: train: no pixel belongs"):
        train(config, tmp_path / "work", verbose=0)
    assert not (tmp_path / "work").exists()  # refused before anything is written


@pytest.mark.heavy
def test_with_value_map_a_short_run_from_the_mmseg_fixture_learns_the_foreground(tmp_path, mmseg_fixtures):
    from keras_mv2seg.evaluation import evaluate
    from keras_mv2seg.training import train

    root = tmp_path / "data"
    _binary_dataset(root, {"255": 1})
    assert check_dataset("custom", root).warnings == []
    config = keras_mv2seg.get_config(
        "fcn_m-v2-d8_512x1024_80k_cityscapes", decode_channels=64, aux_channels=32, num_classes=2, dataset="custom",
        data_root=str(root), crop_size=(64, 64), base_scale=(128, 64), batch_size=4, max_iters=30, eval_interval=30,
        checkpoint_interval=30, log_interval=30, lr=0.05, load_from=str(mmseg_fixtures / "fcn_cityscapes.pth"))
    train(config, tmp_path / "work", verbose=0)
    model = keras_mv2seg.build_for_inference(config, tmp_path / "work" / "best.weights.h5")
    config = described(config)
    metrics = evaluate(model, config, evaluation_data(config, "val"))
    assert metrics["IoU"][1] > 0.3, metrics["IoU"]  # an all-background model scores 0 on the foreground
    assert keras_mv2seg.weights.weights_metadata(tmp_path / "work" / "best.weights.h5")["class_names"] == ["background",
                                                                                                    "sky"]


def test_weights_trained_on_a_users_classes_build_under_their_base_config(tmp_path):
    from keras_mv2seg.weights import config_for_weights

    base = keras_mv2seg.get_config("toy", widen_factor=0.25, decode_channels=8, aux_channels=4, c1_channels=8)
    own = base.replace(dataset="custom", num_classes=2, class_names=("background", "sky"), palette=(0, 0, 0, 9, 9, 9))
    path = keras_mv2seg.save_weights(keras_mv2seg.build_segmenter(own), tmp_path / "own.weights.h5", own)
    adopted = config_for_weights(base, path)
    assert adopted.model.num_classes == 2 and adopted.data.class_names == ("background", "sky")
    model = keras_mv2seg.build_for_inference(base, path)
    assert model.output.shape[-1] == 2
    with pytest.raises(ValueError, match="was trained on classes"):
        config_for_weights(base.replace(num_classes=2, class_names=("a", "b")), path)


def test_export_writes_the_class_names_beside_the_file(tmp_path):
    from keras_mv2seg.export.artifacts import labels_path, labels_text

    config = keras_mv2seg.get_config("toy", dataset="custom", num_classes=2, class_names=("background", "sky"))
    assert labels_text(config) == "background\nsky\n"
    assert labels_path(tmp_path / "m_128x128_float32.tflite").name == "m_128x128_float32.labels.txt"


# --- writers no one here wrote: datumaro ------------------------------------------------------------------------

def _datumaro_dataset(pairs_by_split, names, colours, classes_of):
    datumaro = pytest.importorskip("datumaro", reason="datumaro is in the test extra (the writer CVAT exports "
                                                      "through)")
    from datumaro.components.annotation import AnnotationType, LabelCategories, Mask, MaskCategories
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image as DatumaroImage

    items = []
    for split, pairs in pairs_by_split.items():
        for index, (image, label) in enumerate(pairs):
            ids = classes_of(label)
            items.append(DatasetItem(id=f"toytown/toytown_{index:06d}_{split}", subset=split,
                                     media=DatumaroImage.from_numpy(data=np.ascontiguousarray(image[..., ::-1])),
                                     annotations=[Mask(image=ids == c, label=int(c)) for c in np.unique(ids)]))
    categories = {AnnotationType.label: LabelCategories.from_iterable(names)}
    if colours:
        categories[AnnotationType.mask] = MaskCategories(dict(enumerate(colours)))
    return datumaro.Dataset.from_iterable(items, categories=categories)


def test_datumaro_cvat_segmentation_mask_export_reads_pixel_for_pixel(tmp_path):
    pairs = {"train": scenes(2, seed=1), "val": scenes(3, seed=2)}
    dataset = _datumaro_dataset(pairs, NAMES, COLOURS, custom_classes)
    dataset.export(str(tmp_path), "voc_segmentation", save_media=True)  # CVAT's "Segmentation mask 1.1"
    assert (tmp_path / "labelmap.txt").is_file() and read_description(tmp_path).colours == tuple(COLOURS)
    labels = pipeline_labels(tmp_path)
    assert len(labels) == 3
    for index, expected in enumerate(expected_ids(pairs["val"])):
        np.testing.assert_array_equal(labels[f"JPEGImages/toytown/toytown_{index:06d}_val.jpg"], expected)
    assert check_dataset("custom", tmp_path).problems == []


def test_datumaro_cityscapes_export_reads_pixel_for_pixel_as_train_ids(tmp_path):
    pytest.importorskip("datumaro", reason="datumaro is in the test extra")
    from datumaro.plugins.data_formats.cityscapes import CITYSCAPES_LABEL_MAP

    from keras_mv2seg.datasets_meta import CITYSCAPES_TRAIN_TO_LABEL_ID

    names = list(CITYSCAPES_LABEL_MAP)  # datumaro's Cityscapes labels, in label-id order
    train_to_label = np.full(256, 1, np.uint8)  # 255 (ignored: the ego band) -> 'ego vehicle'
    train_to_label[:19] = CITYSCAPES_TRAIN_TO_LABEL_ID
    pairs = {"train": scenes(1, seed=4), "val": scenes(2, seed=5)}
    dataset = _datumaro_dataset(pairs, names, [CITYSCAPES_LABEL_MAP[n] for n in names], lambda t: train_to_label[t])
    dataset.export(str(tmp_path), "cityscapes", save_media=True, label_map="cityscapes")
    config = keras_mv2seg.get_config("toy", dataset="cityscapes", data_root=str(tmp_path))
    labels = {name.numpy().decode(): label.numpy() for _, label, name in evaluation_data(config, "val")}
    assert len(labels) == 2
    for index, (_, expected) in enumerate(pairs["val"]):
        np.testing.assert_array_equal(labels[f"leftImg8bit/val/toytown/toytown_{index:06d}_val_leftImg8bit.png"],
                                      expected)



def test_the_tfrecords_writer_and_the_sample_cache_read_the_masks_as_the_pipeline(tmp_path):
    from keras_mv2seg.data.cache import cache_samples, read_raw
    from keras_mv2seg.data.layouts import list_samples
    from keras_mv2seg.data.tfrecord import write_tfrecords

    root = make_toy_dataset(tmp_path / "data", "custom", train=2, val=2, height=32, width=64)
    expected = pipeline_labels(root)
    samples, _ = list_samples("custom", root, "val")
    write_tfrecords(samples, tmp_path / "records" / "val")
    config = described(config_for(root, val_records=str(tmp_path / "records" / "val*")))
    from_records = {n.numpy().decode(): label.numpy() for _, label, n in evaluation_data(config, "val")}
    for name, label in expected.items():
        np.testing.assert_array_equal(from_records[name], label)
    cached = cache_samples(samples, tmp_path / "cache")
    for sample, entry in zip(samples, cached):
        np.testing.assert_array_equal(read_raw(entry.label, 1).numpy()[..., 0], expected[sample.name])

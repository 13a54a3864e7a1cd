"""Data: layouts and their checks, label mapping, augmentation invariants, determinism and resume."""

import re

import numpy as np
import pytest
import tensorflow as tf

import keras_mv2seg
from keras_mv2seg.data import augment, list_samples, make_toy_dataset, png
from keras_mv2seg.data.pipeline import eval_dataset, map_label, pad_pixel, train_dataset
from keras_mv2seg.errors import DataError, data_errors_named
from tests.conftest import load_tool


def seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def test_toy_dataset_in_both_layouts(tmp_path):
    city = make_toy_dataset(tmp_path / "city", train=3, val=2, height=32, width=64)
    samples, problems = list_samples("cityscapes", city, "train")
    assert len(samples) == 3 and not problems and samples[0].label_kind == "train_ids"
    ade = make_toy_dataset(tmp_path / "ade", layout="ade20k", train=2, val=1, height=32, width=64)
    samples, _ = list_samples("ade20k", ade, "val")
    assert len(samples) == 1 and samples[0].image.endswith(".jpg") and samples[0].label_kind == "ade20k"
    assert make_toy_dataset(tmp_path / "city", train=3, val=2, height=32, width=64) == city  # reused
    with pytest.raises(ValueError, match="other settings"):
        make_toy_dataset(tmp_path / "city", train=4, val=2, height=32, width=64)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="refusing to write"):
        make_toy_dataset(tmp_path / "mine")


def test_layout_problems_are_all_listed_with_file_names(tmp_path):
    root = make_toy_dataset(tmp_path / "c", train=3, val=1, height=32, width=64)
    labels = sorted((root / "gtFine" / "train").rglob("*_labelTrainIds.png"))
    label_ids = sorted((root / "gtFine" / "train").rglob("*_labelIds.png"))
    labels[0].unlink()  # falls back to labelIds
    labels[1].unlink()
    label_ids[1].unlink()  # no label at all
    samples, problems = list_samples("cityscapes", root, "train", strict=False)
    assert [s.label_kind for s in samples] == ["label_ids", "train_ids"]
    assert len(problems) == 1 and "no label" in problems[0] and labels[1].name.split("_gtFine")[0] in problems[0]
    with pytest.raises(ValueError, match="1 problem"):
        list_samples("cityscapes", root, "train")
    _, problems = list_samples("ade20k", tmp_path / "nothing", "training", strict=False)
    assert "does not exist" in problems[0]
    with pytest.raises(ValueError, match="splits"):
        list_samples("cityscapes", root, "training")


def test_label_mapping_rules():
    label_ids = tf.constant([[[7], [26], [0], [33]]], tf.uint8)
    assert map_label(label_ids, "label_ids", False).numpy().ravel().tolist() == [0, 13, 255, 18]
    ade = tf.constant([[[0], [1], [150]]], tf.uint8)
    assert map_label(ade, "ade20k", True).numpy().ravel().tolist() == [255, 0, 149]
    assert map_label(ade, "ade20k", False).numpy().ravel().tolist() == [0, 1, 150]


def test_label_ids_and_train_ids_give_the_same_training_labels(tmp_path):
    root = make_toy_dataset(tmp_path / "c", train=2, val=1, height=32, width=64)
    config = keras_mv2seg.get_config("toy", data_root=str(root))
    from_train_ids = [lab.numpy() for _, lab, _ in eval_dataset(config, split="train")]
    for path in (root / "gtFine" / "train").rglob("*_labelTrainIds.png"):
        path.unlink()
    from_label_ids = [lab.numpy() for _, lab, _ in eval_dataset(config, split="train")]
    for a, b in zip(from_train_ids, from_label_ids):
        np.testing.assert_array_equal(a, b)


def test_rescale_keeps_ratio_and_rounds_like_mmcv():
    assert [int(v) for v in augment.rescale_size(1024, 2048, (2048, 1024), 0.5)] == [512, 1024]
    assert [int(v) for v in augment.rescale_size(300, 400, (2048, 512))] == [512, 683]  # short side 512
    assert [int(v) for v in augment.rescale_size(100, 2000, (2048, 512))] == [102, 2048]  # long side capped


def test_nearest_label_resize_never_creates_new_ids():
    label = tf.constant(np.random.default_rng(0).choice([3, 7, 255], (1, 17, 23)).astype(np.uint8))[0, ..., None]
    for size in ((40, 51), (7, 9)):
        resized = augment.resize_label(label, size)
        assert set(np.unique(resized.numpy())) <= {3, 7, 255}


def test_crop_redraws_until_no_class_dominates():
    label = np.zeros((100, 100, 1), np.uint8)
    label[:, 50:] = 1  # a 20x20 crop holds both classes under 75 % each only near the boundary (~1 in 4)
    image = tf.zeros((100, 100, 3))

    def good_share(ratio):
        good = 0
        for i in range(40):
            _, crop = augment.random_crop(image, tf.constant(label), seed(i), (20, 20), cat_max_ratio=ratio)
            values, counts = np.unique(crop.numpy(), return_counts=True)
            good += len(values) > 1 and counts.max() / counts.sum() < 0.75
        return good / 40

    with_rule, without = good_share(0.75), good_share(1.0)
    assert with_rule >= 0.8 and without <= 0.45, (with_rule, without)  # up to 10 draws: 1 - 0.77^10 = 0.93


def test_ignore_and_padding_never_become_classes():
    image = tf.random.uniform((30, 40, 3), 0, 255, seed=1)
    label = tf.fill((30, 40, 1), tf.constant(255, tf.uint8))
    out_image, out_label = augment.train_augment(
        image, label, seed(3), scale=(40, 30), crop_size=(64, 64), ratio_range=(0.5, 2.0), cat_max_ratio=0.75,
        ignore_index=255, pad_pixel=(123.675, 116.28, 103.53))
    assert out_image.shape == (64, 64, 3) and set(np.unique(out_label.numpy())) == {255}
    padded_image, padded_label = augment.pad_to_size(tf.zeros((10, 12, 3)), tf.zeros((10, 12, 1), tf.uint8),
                                                     (16, 16), (1.0, 2.0, 3.0))
    assert padded_label.numpy()[10:].max() == 255 == padded_label.numpy()[:, 12:].min()
    np.testing.assert_array_equal(padded_image.numpy()[12, 14], [1.0, 2.0, 3.0])


def test_flip_moves_image_and_label_together():
    image = tf.reshape(tf.range(2 * 3 * 3, dtype=tf.float32), (2, 3, 3))
    label = tf.constant([[[0], [1], [2]], [[3], [4], [5]]], tf.uint8)
    for i in range(6):
        flipped_image, flipped_label = augment.random_flip(image, label, seed(i))
        first_col = flipped_label.numpy()[0, 0, 0]
        np.testing.assert_array_equal(flipped_image.numpy()[0, 0], image.numpy()[0, first_col])


def test_photometric_distortion_stays_in_uint8_range_and_is_deterministic():
    image = tf.random.uniform((16, 16, 3), 0, 255, seed=2)
    results = [augment.photometric_distortion(image, seed(i)) for i in range(8)]
    for result in results:
        values = result.numpy()
        assert values.min() >= 0 and values.max() <= 255 and np.array_equal(values, np.floor(values))
    np.testing.assert_array_equal(augment.photometric_distortion(image, seed(5)), results[5])
    assert any(not np.allclose(r, image) for r in results)


@pytest.mark.parametrize("shape", [(20, 32, 3), (24, 17, 3), (24, 32, 3)])
def test_distortion_runs_on_the_padded_crop_with_the_same_pixels(shape):
    """``pad_to_size(..., image_step=distortion)`` (the pipeline's form: the distortion, compiled by XLA, sees the
    crop size whatever the crop) equals distorting the crop and then padding it: the pad pixel and the ignore label
    outside, the same distorted values inside (XLA and TensorFlow's kernels, to the x.5 ties)."""
    rng = np.random.default_rng(sum(shape))
    image = tf.constant(rng.integers(0, 256, shape), tf.float32)
    label = tf.constant(rng.integers(0, 19, shape[:2] + (1,)), tf.uint8)
    pixel = (123.675, 116.28, 103.53)
    for i in range(6):
        stepped, stepped_label = augment.pad_to_size(
            image, label, (24, 32), pixel, image_step=lambda x: augment.photometric_distortion(x, seed(i)))
        for jit in (True, False):
            expected, expected_label = augment.pad_to_size(
                augment.photometric_distortion(image, seed(i), jit=jit), label, (24, 32), pixel)
            np.testing.assert_array_equal(stepped_label, expected_label)
            difference = np.abs(stepped.numpy() - expected.numpy())
            assert difference.max() <= 2 and (difference > 0).mean() < 0.02, (jit, difference.max())
        outside = np.ones((24, 32), bool)
        outside[:shape[0], :shape[1]] = False
        np.testing.assert_array_equal(stepped.numpy()[outside], np.broadcast_to(np.float32(pixel), (outside.sum(), 3)))


def test_pad_pixel_normalises_to_zero():
    for name in ("toy", "deeplab_mnv2_pascal"):
        config = keras_mv2seg.get_config(name)
        pixel = np.asarray(pad_pixel(config), np.float32)
        convention = config.model.conventions
        np.testing.assert_allclose(pixel * np.asarray(convention.input_scale) + np.asarray(convention.input_offset),
                                   0, atol=1e-5)


def test_training_stream_is_deterministic_and_resumable(tiny_toy_root):
    config = keras_mv2seg.get_config("toy", data_root=str(tiny_toy_root), crop_size=(32, 32))
    first = [(x.numpy(), y.numpy()) for x, y in train_dataset(config, batch_size=2, seed=4).take(5)]
    again = [(x.numpy(), y.numpy()) for x, y in train_dataset(config, batch_size=2, seed=4).take(5)]
    resumed = [(x.numpy(), y.numpy()) for x, y in train_dataset(config, batch_size=2, seed=4, start_sample=6).take(2)]
    for (a, b), (c, d) in zip(first, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    for (a, b), (c, d) in zip(first[3:], resumed):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    other = next(iter(train_dataset(config, batch_size=2, seed=5)))[1].numpy()
    assert not np.array_equal(other, first[0][1])
    assert first[0][0].shape == (2, 32, 32, 3) and first[0][1].dtype == np.int32
    # every file is read once per epoch (8 files, 4 batches of 2)
    epoch = [y for _, y in first[:4]]
    assert len({y.tobytes() for batch in epoch for y in batch}) == 8


def test_eval_dataset_keeps_original_labels(tiny_toy_root):
    config = keras_mv2seg.get_config("toy", data_root=str(tiny_toy_root), base_scale=(64, 32))
    image, label, name = next(iter(eval_dataset(config)))
    assert image.shape == (32, 64, 3) and label.shape == (64, 128)
    assert name.numpy().decode().startswith("leftImg8bit/val/")


def test_check_data_reports_every_problem(tmp_path, capsys):
    tool = load_tool("check_data")
    root = make_toy_dataset(tmp_path / "c", train=3, val=1, height=32, width=64)
    assert tool.main(["--dataset", "cityscapes", str(root)]) == 0
    assert "4 samples checked, 0 problem(s)" in capsys.readouterr().out
    labels = sorted((root / "gtFine" / "train").rglob("*_labelTrainIds.png"))
    labels[0].write_bytes(tf.io.encode_png(np.full((32, 64, 1), 40, np.uint8)).numpy())  # invalid train id
    labels[1].write_bytes(tf.io.encode_png(np.zeros((16, 64, 1), np.uint8)).numpy())  # wrong size
    images = sorted((root / "leftImg8bit" / "train").rglob("*.png"))
    images[2].write_bytes(b"broken")
    val_label = next((root / "gtFine" / "val").rglob("*_labelTrainIds.png"))
    val_label.write_bytes(tf.io.encode_png(np.zeros((32, 64, 1), np.uint16)).numpy())
    assert tool.main(["--dataset", "cityscapes", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{val_label}: 16-bit PNG, expected an 8-bit class map" in out
    assert f"{labels[0]}: label values [40] are not valid train_ids" in out
    assert f"{labels[1]}: size 64x16 differs from its image 64x32" in out
    assert f"{images[2]}: image does not decode" in out and "4 problem(s)" in out


def test_check_data_counts_classes_and_warns_about_masks_that_train_on_nothing(tmp_path, capsys):
    """Binary masks saved as 0/255 in a standard layout: 255 is the ignore index, so the foreground would never
    be learnt -- check_data says so, naming the setting; the per-class table counts pixels and images."""
    tool = load_tool("check_data")
    root = make_toy_dataset(tmp_path / "c", train=2, val=1, height=32, width=64)
    assert tool.main(["--dataset", "cityscapes", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 4096 pixels" in out and "    0 road" in out and "0 problem(s)" in out
    mask = np.zeros((32, 64, 1), np.uint8)
    mask[8:24, 16:48] = 255  # the foreground, as many tools save it
    for label in (root / "gtFine").rglob("*_labelTrainIds.png"):
        label.write_bytes(tf.io.encode_png(mask).numpy())
    assert tool.main(["--dataset", "cityscapes", str(root)]) == 0  # warnings, not problems
    out = capsys.readouterr().out
    assert ("warning: train: the masks hold only 0 and 255, and 255 is the ignore index (data.ignore_index): the "
            "foreground of such binary masks is never learnt") in out
    assert "warning: train: 18 of 19 classes never occur: 1 sidewalk, 2 building" in out
    assert "train: 4096 pixels, 25.0% ignored" in out and re.search(r"\n +0 road +100\.00 +2\n", out)


def test_prepare_cityscapes_writes_train_ids_from_polygons(tmp_path, capsys, monkeypatch):
    import json

    # the tool adds np.in1d for cityscapesscripts on NumPy 2.4; restore NumPy as it was after the test
    monkeypatch.setattr(np, "in1d", getattr(np, "in1d", None), raising=False)
    if np.in1d is None:
        monkeypatch.delattr(np, "in1d")
    tool = load_tool("prepare_cityscapes")
    folder = tmp_path / "gtFine" / "val" / "city"
    folder.mkdir(parents=True)
    annotation = {"imgHeight": 20, "imgWidth": 30, "objects": [
        {"label": "road", "polygon": [[0, 10], [29, 10], [29, 19], [0, 19]]},
        {"label": "car", "polygon": [[5, 12], [12, 12], [12, 16], [5, 16]]}]}
    (folder / "city_000000_000019_gtFine_polygons.json").write_text(json.dumps(annotation))
    assert tool.main([str(tmp_path)]) == 0
    label = tf.io.decode_png((folder / "city_000000_000019_gtFine_labelTrainIds.png").read_bytes()).numpy()[..., 0]
    assert label[0, 0] == 255 and label[18, 25] == 0 and label[14, 8] == 13
    assert tool.main([str(tmp_path)]) == 0 and "1 existing kept" in capsys.readouterr().out


def test_deeplab_tfrecords_round_trip_and_feed_both_pipelines(tmp_path, tiny_toy_root):
    from keras_mv2seg.data.tfrecord import parse_example, write_tfrecords

    config = keras_mv2seg.get_config("toy", data_root=str(tiny_toy_root), crop_size=(32, 32))
    samples, _ = list_samples("toy", tiny_toy_root, "val")
    paths = write_tfrecords(samples, tmp_path / "rec" / "val", shards=2)
    assert [p.name for p in paths] == ["val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
    with pytest.raises(FileExistsError, match="exists"):
        write_tfrecords(samples, tmp_path / "rec" / "val", shards=2)
    from_layout = {n.numpy(): lab.numpy() for _, lab, n in eval_dataset(config, split="val")}
    from_records = {n.numpy(): lab.numpy() for _, lab, n in eval_dataset(config, records=tmp_path / "rec" / "val-*")}
    assert from_layout.keys() == from_records.keys()
    for name, label in from_layout.items():
        np.testing.assert_array_equal(label, from_records[name])
    record = next(iter(tf.data.TFRecordDataset(str(paths[0]))))
    image, label, name = parse_example(record)
    assert image.shape[-1] == 3 and label.shape[-1] == 1 and name.numpy().startswith(b"leftImg8bit/val/")
    batches = list(train_dataset(config, batch_size=2, records=tmp_path / "rec" / "val-*", seed=1).take(3))
    resumed = next(iter(train_dataset(config, batch_size=2, records=tmp_path / "rec" / "val-*", seed=1,
                                      start_sample=4)))
    np.testing.assert_array_equal(batches[2][1], resumed[1])
    assert batches[0][0].shape == (2, 32, 32, 3)
    with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
        eval_dataset(config, records=tmp_path / "missing-*")


@pytest.mark.parametrize("problem, message", [
    ("corrupt_image", "not a PNG/JPEG/BMP/GIF image"),
    ("truncated_label_header", "label is not an 8-bit PNG"),
    ("label_16_bit", "label is not an 8-bit PNG"),
    ("label_size", "image and label sizes differ"),
])
def test_bad_files_fail_in_the_pipeline_naming_the_file(tmp_path, problem, message):
    root = make_toy_dataset(tmp_path / "c", train=2, val=1, height=32, width=64)
    config = keras_mv2seg.get_config("toy", data_root=str(root))
    image = sorted((root / "leftImg8bit" / "val").rglob("*.png"))[0]
    label = sorted((root / "gtFine" / "val").rglob("*_labelTrainIds.png"))[0]
    if problem == "corrupt_image":
        image.write_bytes(b"garbage" * 10)
        culprit = image
    elif problem == "truncated_label_header":
        label.write_bytes(label.read_bytes()[:10])
        culprit = label
    elif problem == "label_16_bit":
        label.write_bytes(tf.io.encode_png(np.zeros((32, 64, 1), np.uint16)).numpy())
        culprit = label
    else:
        label.write_bytes(tf.io.encode_png(np.zeros((16, 64, 1), np.uint8)).numpy())
        culprit = label
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"(?s){message}.*{culprit.name}"):
        list(eval_dataset(config))
    with pytest.raises(DataError, match=f"^{message}.*{culprit.name}"):  # one sentence where data is consumed
        with data_errors_named():
            list(eval_dataset(config))


@pytest.mark.parametrize("channels", [1, 4])
def test_grayscale_and_rgba_images_are_converted_to_rgb(tmp_path, channels):
    root = make_toy_dataset(tmp_path / "c", train=2, val=1, height=32, width=64)
    config = keras_mv2seg.get_config("toy", data_root=str(root))
    image = sorted((root / "leftImg8bit" / "val").rglob("*.png"))[0]
    pixels = np.random.default_rng(0).integers(0, 255, (32, 64, channels), dtype=np.uint8)
    image.write_bytes(tf.io.encode_png(pixels).numpy())
    decoded = next(iter(eval_dataset(config.replace(base_scale=(64, 32)))))[0].numpy()
    expected = np.repeat(pixels, 3, -1) if channels == 1 else pixels[..., :3]
    np.testing.assert_array_equal(decoded, expected.astype(np.float32))


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "leftImg8bit" / "val" / "city").mkdir(parents=True)
    with pytest.raises(ValueError, match="no \\*_leftImg8bit.png images"):
        list_samples("cityscapes", tmp_path, "val")


def opencv_step(rgb, step, value):
    """The reference's photometric steps (mmcv/mmseg) with OpenCV on uint8 images."""
    import cv2

    image = rgb.astype(np.float32)
    if step == "brightness":
        return np.clip(image + value, 0, 255).astype(np.uint8)
    if step == "contrast":
        return np.clip(image * value, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(rgb[..., ::-1].copy(), cv2.COLOR_BGR2HSV)
    if step == "saturation":
        hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * value, 0, 255).astype(np.uint8)
    else:
        hsv[..., 0] = ((hsv[..., 0].astype(int) + value) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[..., ::-1]


@pytest.mark.parametrize("step, value", [("brightness", -23.5), ("brightness", 31.0), ("contrast", 0.55),
                                         ("contrast", 1.4), ("saturation", 0.5), ("saturation", 1.3),
                                         ("hue", -18), ("hue", 7)])
def test_photometric_steps_match_opencv(step, value):
    rgb = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    ours = getattr(augment, f"adjust_{step}")(tf.constant(rgb, tf.float32), value).numpy()
    reference = opencv_step(rgb, step, value).astype(np.float32)
    difference = np.abs(ours - reference)
    if step in ("brightness", "contrast"):
        assert difference.max() == 0  # same arithmetic, same truncation
    else:  # OpenCV quantises H, S, V to uint8 (H in 2-degree steps); our HSV is float
        assert difference.mean() < 1.0 and difference.max() <= 8, (difference.mean(), difference.max())


def _float_hsv_step(rgb, step, value, dtype=tf.float32):
    """The HSV steps as the second wave wrote them: unfused RGB -> HSV -> RGB on 0..1 floats (before rounding)."""
    h, s, v = tf.unstack(tf.image.rgb_to_hsv(tf.cast(rgb, dtype) / 255.0), axis=-1)
    if step == "saturation":
        s = tf.clip_by_value(s * value, 0.0, 1.0)
    else:
        h = tf.math.floormod(h + value / 180.0, 1.0)
    return tf.clip_by_value(tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1)) * 255.0, 0.0, 255.0).numpy()


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("step, value", [("saturation", 0.5), ("saturation", 1.45), ("hue", -18.0), ("hue", 11.0)])
def test_fused_hsv_steps_give_the_same_samples(step, value, jit):
    """The fused kernels (``jit``: compiled by XLA, as the pipeline runs them) on 0..255 values against the unfused
    0..1 round trip: the same rounded values wherever the exact (float64) result is not a tie; at an exact x.5
    (common: a saturation of 0.5 halves odd channel gaps) float32 round-off picks either neighbour, in both
    implementations."""
    pixels = np.random.default_rng(2).integers(0, 256, (64, 96, 3))
    # the closed forms' edge cases: grey, two channels sharing the largest or smallest value, pure and extreme colours
    pixels[0, :12] = [[0, 0, 0], [255, 255, 255], [77, 77, 77], [200, 200, 13], [13, 200, 200], [200, 13, 200],
                      [40, 90, 90], [90, 40, 40], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 254, 0]]
    rgb = tf.constant(pixels, tf.float32)
    step_function = tf.function(lambda x: getattr(augment, f"adjust_{step}")(x, value), jit_compile=jit)
    ours = step_function(rgb).numpy()
    before = np.round(_float_hsv_step(rgb, step, value))
    exact = _float_hsv_step(rgb, step, value, tf.float64)
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    assert np.abs(ours - before).max() <= 1
    np.testing.assert_array_equal(ours[~tie], before[~tie])
    np.testing.assert_array_equal(ours[~tie], np.round(exact[~tie]))


def test_hue_shift_is_drawn_as_numpy_randint():
    """mmseg draws the hue shift with numpy's ``randint(-18, 18)``: -18..17, the upper end excluded."""
    drawn = set()
    for i in range(400):
        drawn.add(int(augment.random_hue_shift(tf.constant([i, 3], tf.int64), 18)))
    assert drawn == set(range(-18, 18))


@pytest.mark.parametrize("num_classes, ignore", [(19, 255), (1, 255), (255, 255), (150, 0), (19, 300), (2, 7)])
def test_label_range_check_agrees_with_the_plain_rule(num_classes, ignore):
    """The uint8 fast paths (ignore 255 through the wrap of ``label + 1``; an ignore beyond uint8) accept a label
    exactly when every value is a class id or the ignore index, as the int32 rule does."""
    from keras_mv2seg.data.pipeline import _labels_in_range

    rng = np.random.default_rng(num_classes + ignore)
    for values in ([0], [num_classes - 1], [num_classes], [254], [255], [ignore % 256], [0, 255, num_classes - 1],
                   rng.integers(0, 256, 8), []):
        label = np.array(values, np.uint8).reshape(-1, 1, 1)
        expected = bool(np.all((label.astype(int) < num_classes) | (label.astype(int) == ignore)))
        assert bool(_labels_in_range(tf.constant(label), num_classes, ignore)) == expected, values
        assert bool(_labels_in_range(tf.constant(label.astype(np.int32)), num_classes, ignore)) == expected, values


def test_out_of_range_labels_are_named_before_the_loss(tmp_path):
    root = make_toy_dataset(tmp_path / "c", train=2, val=1, height=32, width=64)
    config = keras_mv2seg.get_config("toy", data_root=str(root), num_classes=5, crop_size=(32, 32))
    # named against the label file (the first wave named the image, which is not what is wrong)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="(?s)label values outside 0...*4.*largest.*label of.*gtFine.*labelTrainIds.png"):
        next(iter(train_dataset(config, batch_size=1)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?s)label values outside.*gtFine/val"):
        list(eval_dataset(config))
    with pytest.raises(DataError, match=r"^label values outside 0\.\.4 and the ignore index 255 \(largest: \d+\) in "
                                        r"the label of .*gtFine/val.*\.png; fix the file, or make model.num_classes"):
        with data_errors_named():
            list(eval_dataset(config))


def test_image_and_label_stay_aligned_through_the_whole_chain():
    """Blocks of 16x16 pixels carry their id in the image (every channel) and in the label; after rescale,
    crop, flip and pad, inside every block (a 5x5 neighbourhood of one label; at block borders nearest and
    bilinear resizing legitimately differ by up to half a pixel) the image holds the label's id."""
    rows, cols = np.meshgrid(np.arange(96), np.arange(160), indexing="ij")
    ids = (rows // 16) * 10 + cols // 16
    image = tf.constant(np.repeat(ids[..., None], 3, -1), tf.float32)
    label = tf.constant(ids[..., None], tf.uint8)
    for i in range(6):
        out_image, out_label = augment.train_augment(
            image, label, seed(i), scale=(160, 96), crop_size=(80, 80), ratio_range=(0.5, 2.0), cat_max_ratio=1.0,
            ignore_index=255, pad_pixel=(251.0, 251.0, 251.0), photometric=False)
        values, labels = out_image.numpy()[..., 0], out_label.numpy()[..., 0]
        inside = labels != 255
        padded = np.pad(labels, 2, constant_values=255)
        interior = inside.copy()
        for dy in range(5):
            for dx in range(5):
                interior &= padded[dy:dy + labels.shape[0], dx:dx + labels.shape[1]] == labels
        assert interior.sum() > 0.1 * inside.sum()
        np.testing.assert_array_equal(values[interior], labels[interior].astype(np.float32))
        assert (values[~inside] == 251.0).all()  # padding: the pad pixel, label 255


def test_decoded_cache_gives_the_same_stream_and_names_bad_files(tmp_path):
    root = make_toy_dataset(tmp_path / "c", train=4, val=1, height=32, width=64)
    config = keras_mv2seg.get_config("toy", data_root=str(root), crop_size=(32, 32))
    cached = config.replace(cache_dir=str(tmp_path / "cache"))
    plain = [(x.numpy(), y.numpy()) for x, y in train_dataset(config, batch_size=2, seed=3).take(3)]
    fast = [(x.numpy(), y.numpy()) for x, y in train_dataset(cached, batch_size=2, seed=3).take(3)]
    for (a, b), (c, d) in zip(plain, fast):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert len(list((tmp_path / "cache").glob("*.raw"))) == 8
    label = sorted((root / "gtFine" / "train").rglob("*_labelTrainIds.png"))[0]
    raw = sorted((tmp_path / "cache").glob("*.image.raw"))
    raw[0].write_bytes(raw[0].read_bytes()[:100])  # a cut-off cache entry: named, decoded again
    with pytest.warns(UserWarning, match=f"{raw[0].name}: a decoded-sample cache file of 100 bytes"):
        again = [(x.numpy(), y.numpy()) for x, y in train_dataset(cached, batch_size=2, seed=3).take(3)]
    for (a, b), (c, d) in zip(plain, again):
        np.testing.assert_array_equal(a, c)
    raw[1].write_bytes(raw[1].read_bytes()[:100])  # cut off while training: named by the pipeline
    from keras_mv2seg.data.cache import read_raw

    with pytest.raises(tf.errors.InvalidArgumentError, match=f"(?s)cache file cut off or corrupt.*{raw[1].name}"):
        read_raw(str(raw[1]), 3)
    label.write_bytes(label.read_bytes()[:60])  # truncated: a valid header, broken data
    with pytest.raises(ValueError, match=f"{label.name}: label does not decode"):
        train_dataset(cached, batch_size=2)


def test_augmentation_distributions():
    image = tf.fill((40, 80, 3), 100.0)
    label = tf.zeros((40, 80, 1), tf.uint8)
    ratios, flips, changed = [], 0, 0
    for i in range(300):
        resized, _ = augment.random_rescale(image, label, seed(i), scale=(80, 40), ratio_range=(0.5, 2.0))
        ratios.append(resized.shape[1] / 80)
        ramp = tf.reshape(tf.range(4, dtype=tf.float32), (1, 4, 1))
        flipped, _ = augment.random_flip(ramp, tf.zeros((1, 4, 1), tf.uint8), seed(i, 1))
        flips += int(flipped.numpy()[0, 0, 0] == 3)
        changed += int(not np.array_equal(augment.photometric_distortion(image, seed(i, 2)).numpy(), image.numpy()))
    ratios = np.asarray(ratios)
    assert 0.49 <= ratios.min() and ratios.max() <= 2.01  # U(0.5, 2.0), sides rounded
    assert abs(ratios.mean() - 1.25) < 0.06 and abs(np.median(ratios) - 1.25) < 0.1
    assert 0.42 < flips / 300 < 0.58  # p = 0.5
    # each of the 4 photometric steps applies with p 0.5 (hue/saturation can leave a grey image unchanged,
    # brightness/contrast change it), so at least 1 - 0.5^2 = 75 % of images change
    assert 0.68 < changed / 300 < 0.9


def _rescale_then_crop(image, label, scale_seed, crop_seed, scale, crop_size, ratio_range, cat_max_ratio,
                       ignore_index, attempts=10, flip=None):
    """The chain as it was: the whole image decoded by TensorFlow, rescaled, then cropped, then flipped."""
    if hasattr(image, "pixels"):  # a decode.ImageFile, which the new chain decodes down to the rows it reads
        image = tf.io.decode_image(image.data, channels=3, expand_animations=False)
    image, label = augment.random_rescale(tf.cast(image, tf.float32), label, scale_seed, scale, ratio_range)
    image, label = augment.random_crop(image, label, crop_seed, crop_size, cat_max_ratio, ignore_index, attempts)
    if flip is None:
        return image, label
    return (tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image),
            tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label))


def test_window_is_not_rounded_once_by_a_fused_multiply_add():
    """The XLA window rounds each product before its addition, as resize_bilinear does: pixel pairs and lerps
    where a fused multiply-add (one rounding) would move the rounded value come out as the kernel's."""
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, 200_000).astype(np.float32)
    right = rng.integers(0, 256, 200_000).astype(np.float32)
    # lerps a few float32 steps from 0.5 (as the sampling positions give): an odd difference times one is a hair
    # from x.5, which the float32 product rounds to x.5 exactly and a fused multiply-add keeps
    lerp = (0.5 + rng.integers(-8, 9, 200_000) * 2.0 ** -24).astype(np.float32)
    separate = np.round(left + (right - left) * lerp)  # float32 product, rounded, then the addition
    fused = np.round((left.astype(np.float64) + (right - left).astype(np.float64) * lerp).astype(np.float32))
    cases = np.flatnonzero(separate != fused)[:64]
    assert cases.size  # there are such cases
    count = cases.size
    image = np.stack([left[cases], right[cases]], 1).reshape(1, 2 * count, 1).repeat(3, axis=2).astype(np.uint8)
    zero = tf.zeros([1], tf.int32)
    arguments = (tf.constant(image), zero, zero, tf.zeros([1]), tf.range(0, 2 * count, 2), tf.range(1, 2 * count, 2),
                 tf.constant(lerp[cases]), tf.constant(-1, tf.int32))
    window = augment._bilinear_window_xla(*arguments).numpy()[0, :, 0]
    np.testing.assert_array_equal(window, separate[cases])
    np.testing.assert_array_equal(window, augment._bilinear_window(*arguments).numpy()[0, :, 0])


@pytest.mark.parametrize("ratio_range", [(0.5, 0.5), (2.0, 2.0), (0.5, 2.0)])
def test_rescaling_only_the_crop_gives_the_same_samples(ratio_range):
    """random_rescale_crop (the crop's pixels alone, from the source pixels they read) equals rescaling the whole
    image and cropping it, in tf.data's graph mode: scales at both ends of the range, frames smaller than the crop
    (cut windows, padding) and larger, windows at the borders, and the 75 % rule's re-draws (labels where one class
    dominates most windows), flipped or not, from float32 or uint8 images. Labels exactly; images to 1e-4 of 255
    (they come out equal)."""
    rng = np.random.default_rng(1)
    cases = []
    for height, width, crop, factor in ((64, 128, (64, 64), 2), (37, 53, (48, 40), 2), (256, 512, (128, 256), 2),
                                        (30, 30, (64, 64), 1)):  # the last one's frame stays below its crop
        image = rng.integers(0, 256, (height, width, 3)).astype(np.float32)
        label = np.zeros((height, width, 1), np.uint8)
        label[:, : width // 6] = rng.integers(1, 4)  # one class dominates most windows: re-draws
        label[rng.random((height, width, 1)) < 0.05] = 255
        cases.append((image, label, crop, (factor * width, factor * height)))
    redrawn = borders = 0
    for index, (image, label, crop, scale) in enumerate(cases):

        def both(seed, image=image, label=label, crop=crop, scale=scale):
            scale_seed, crop_seed = augment._seeds(seed, 2)
            flip = tf.equal(seed[0] % 2, 1)
            kwargs = dict(scale=scale, crop_size=crop, ratio_range=ratio_range, cat_max_ratio=0.75, ignore_index=255,
                          flip=flip)
            source = image.astype(np.uint8) if index % 2 else image  # decoded files come as uint8
            new = augment.random_rescale_crop(source, label, scale_seed, crop_seed, **kwargs)
            old = _rescale_then_crop(image, label, scale_seed, crop_seed, **kwargs)
            first = _rescale_then_crop(image, label, scale_seed, crop_seed, **kwargs, attempts=1)  # no re-draw
            return new, old, first

        seeds = tf.data.Dataset.range(12).map(lambda i, k=index: tf.stack([i, tf.constant(k, tf.int64)]))
        for (new_image, new_label), (old_image, old_label), (first_image, _) in seeds.map(both):
            assert new_image.shape == old_image.shape and new_label.shape == old_label.shape
            np.testing.assert_array_equal(new_label, old_label)
            np.testing.assert_allclose(new_image, old_image, rtol=0, atol=1e-4 * 255)
            redrawn += not np.array_equal(old_image, first_image)
            borders += new_image.shape[0] < crop[0] or new_image.shape[1] < crop[1]
    assert redrawn and borders  # the cases did exercise the re-draws and windows cut at the frame


@pytest.mark.parametrize("size", ["tiny", "taller than the rows a crop reads"])
def test_training_batches_equal_the_whole_image_rescale(tiny_toy_root, tmp_path, monkeypatch, size):
    """train_dataset's batches, several seeds: the same with the crop-only rescale, which decodes a PNG's rows down to
    the last its window reads, as with the whole image decoded and rescaled."""
    from keras_mv2seg.data import decode

    root, crop, scale = tiny_toy_root, (32, 48), (128, 64)
    if size != "tiny":  # 384-row images, 64-row crops: windows read 128 to 384 rows
        root = make_toy_dataset(tmp_path / "tall", train=4, val=1, height=384, width=192)
        crop, scale = (64, 96), (192, 384)
    config = keras_mv2seg.get_config("toy").replace(data_root=str(root), crop_size=crop, base_scale=scale)
    read = []
    monkeypatch.setattr(decode, "decode_rows", lambda data, rows: read.append(int(rows)) or png.decode_rows(data, rows))

    def batches(seed):
        return [(i.numpy(), l.numpy()) for i, l in train_dataset(config, batch_size=4, seed=seed).take(2)]

    new = {seed: batches(seed) for seed in (0, 1, 5)}
    assert len(read) >= 24 and (min(read) < 384 if size != "tiny" else max(read) <= 64)  # 24 and what is prefetched
    monkeypatch.setattr(augment, "random_rescale_crop", _rescale_then_crop)
    for seed, expected in new.items():
        for (image, label), (old_image, old_label) in zip(expected, batches(seed)):
            np.testing.assert_array_equal(label, old_label)
            np.testing.assert_allclose(image, old_image, rtol=0, atol=1e-4 * 255)


def test_freed_buffers_are_kept_unless_the_user_tuned_malloc(monkeypatch):
    """``machine.keep_freed_buffers`` (called by train_dataset): applied under glibc, never over the user's own malloc
    settings."""
    import platform

    from keras_mv2seg.machine import keep_freed_buffers

    for name, value in (("KERAS_MV2SEG_MALLOC", "default"), ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1000000"),
                        ("MALLOC_TRIM_THRESHOLD_", "1000")):
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            assert keep_freed_buffers.__wrapped__() is False
    for name in ("KERAS_MV2SEG_MALLOC", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_buffers.__wrapped__() is glibc

"""PASCAL VOC 2012 (+ SBD train_aug): palette-index decoding, the layout, the check, SBD conversion, records,
the official DeepLab augmentation and recipe, and training/testing from the tools on generated VOC data."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_mv2seg
from keras_mv2seg.data import augment, list_samples, make_toy_dataset
from keras_mv2seg.data.check import check_dataset
from keras_mv2seg.data.decode import LABEL_KINDS, decode_label, read_label, read_pair, voc_colours_to_indices
from keras_mv2seg.data.pipeline import eval_dataset, train_dataset
from keras_mv2seg.datasets_meta import voc_palette
from tests.conftest import load_tool

VOC = ("VOCdevkit", "VOC2012")


def palette_png(label, colours=None) -> bytes:
    image = Image.fromarray(np.asarray(label, np.uint8), mode="P")
    image.putpalette((voc_palette(256) if colours is None else colours).ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def every_voc_value(height=16, width=24):
    values = np.array(list(range(21)) + [255], np.uint8)
    return values[np.arange(height * width).reshape(height, width) % len(values)]


@pytest.fixture
def voc_root(tmp_path):
    return make_toy_dataset(tmp_path / "voc", "pascal_voc", train=4, val=2, height=32, width=48)


def test_palette_png_indices_decode_exactly(tmp_path):
    label = every_voc_value()
    path = tmp_path / "label.png"
    path.write_bytes(palette_png(label))
    # TensorFlow's decoder returns colours for a palette PNG: the inverse colour map gives the indices back
    assert tf.io.decode_png(path.read_bytes()).shape[-1] == 3
    graph = decode_label(tf.constant(str(path)), tf.constant(LABEL_KINDS.index("voc"))).numpy()[..., 0]
    np.testing.assert_array_equal(graph, label)
    np.testing.assert_array_equal(read_label(path, "voc")[..., 0], label)
    # all 256 VOC colours round-trip
    indices, in_map = voc_colours_to_indices(voc_palette(256)[None])
    np.testing.assert_array_equal(indices.numpy()[0, :, 0], np.arange(256))
    assert bool(in_map)
    # grayscale index PNGs (SegmentationClassRaw / SegmentationClassAug) hold the values themselves
    path.write_bytes(tf.io.encode_png(label[..., None]).numpy())
    np.testing.assert_array_equal(read_label(path, "voc")[..., 0], label)


def test_labels_that_are_not_voc_index_maps_are_refused_naming_the_file(tmp_path):
    label = every_voc_value()
    rgb = tmp_path / "resaved_rgb.png"
    rgb.write_bytes(tf.io.encode_png(voc_palette(256)[label]).numpy())
    with pytest.raises(ValueError, match=f"{rgb}: RGB PNG, expected a palette PNG with the VOC colours"):
        read_label(rgb, "voc")
    other = tmp_path / "other_palette.png"
    colours = voc_palette(256)
    colours[7] = (13, 200, 77)  # index 7 painted a non-VOC colour
    other.write_bytes(palette_png(label, colours))
    with pytest.raises(ValueError, match=f"{other}: label colours are not the VOC palette"):
        read_label(other, "voc")
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"(?s)not the VOC palette.*{other.name}"):
        decode_label(tf.constant(str(other)), tf.constant(LABEL_KINDS.index("voc")))
    # a palette PNG is a VOC thing: a Cityscapes train-id label in palette form is refused, not converted to grey
    palette = tmp_path / "palette.png"
    palette.write_bytes(palette_png(label))
    with pytest.raises(ValueError, match=f"{palette}: palette PNG, expected a single-channel"):
        read_label(palette, "train_ids")


def test_voc_layout_lists_split_files_and_prefers_voc_labels(voc_root):
    base = voc_root.joinpath(*VOC)
    samples, problems = list_samples("pascal_voc", voc_root, "train")
    assert len(samples) == 4 and not problems
    assert samples[0].name == "2026_000000" and samples[0].label_kind == "voc"
    assert samples[0].label.endswith("SegmentationClass/2026_000000.png")
    for root in (voc_root / "VOCdevkit", base):  # the root may be VOCdevkit or VOC2012 itself
        assert len(list_samples("pascal_voc", root, "val")[0]) == 2
    assert len(list_samples("pascal_voc", voc_root, "trainval")[0]) == 6
    # train_aug: VOC's own label where it exists, SBD's (SegmentationClassAug) for the rest
    aug = base / "SegmentationClassAug"
    aug.mkdir()
    (aug / "2026_000000.png").write_bytes(tf.io.encode_png(np.zeros((32, 48, 1), np.uint8)).numpy())
    (base / "JPEGImages" / "2026_900000.jpg").write_bytes((base / "JPEGImages" / "2026_000001.jpg").read_bytes())
    (aug / "2026_900000.png").write_bytes(tf.io.encode_png(np.zeros((32, 48, 1), np.uint8)).numpy())
    (base / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("2026_000000\n2026_900000\n")
    samples = list_samples("pascal_voc", voc_root, "trainaug")[0]  # mmseg's name is an alias
    assert [s.label.split("/")[-2] for s in samples] == ["SegmentationClass", "SegmentationClassAug"]


def test_voc_layout_and_check_report_every_problem(voc_root, capsys):
    base = voc_root.joinpath(*VOC)
    lists = base / "ImageSets" / "Segmentation"
    lists.joinpath("train.txt").write_text(lists.joinpath("train.txt").read_text() + "2026_777777\n2026_000001\n")
    (base / "JPEGImages" / "2026_000003.jpg").unlink()
    labels = sorted((base / "SegmentationClass").glob("*.png"))
    bad_values = every_voc_value(32, 48)
    bad_values[0, 0] = 30
    labels[0].write_bytes(tf.io.encode_png(bad_values[..., None]).numpy())  # grayscale with 30: not a VOC value
    labels[2].write_bytes(tf.io.encode_png(voc_palette(256)[every_voc_value(32, 48)]).numpy())  # re-saved as RGB
    labels[5].write_bytes(palette_png(np.zeros((16, 48), np.uint8)))  # size differs from its image
    checked, problems = check_dataset("pascal_voc", voc_root)
    text = "\n".join(problems)
    assert f"{base / 'JPEGImages' / '2026_777777.jpg'}: missing image of id 2026_777777" in text
    assert f"{lists / 'train.txt'}:6: id 2026_000001 is listed twice" in text
    assert f"{base / 'JPEGImages' / '2026_000003.jpg'}: missing image" in text
    assert f"{labels[0]}: label values [30] are not valid voc" in text
    assert f"{labels[2]}: RGB PNG, expected a palette PNG with the VOC colours" in text
    assert f"{labels[5]}: size 48x16 differs from its image 48x32" in text
    assert len(problems) == 6 and checked == 5, text  # 3 train images left + 2 val
    assert load_tool("check_data").main(["--dataset", "pascal_voc", str(voc_root)]) == 1
    assert "6 problem(s)" in capsys.readouterr().out
    lists.joinpath("train_aug.txt").unlink(missing_ok=True)
    _, problems = check_dataset("pascal_voc", voc_root, ["train_aug"])
    assert "missing split file (tools/prepare_voc.py writes it from SBD)" in problems[0]


def _save_sbd(sbd, image_id, class_map):
    from scipy.io import savemat

    savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": class_map, "Boundaries": np.zeros(1),
                                                         "CategoriesPresent": np.unique(class_map)}})


def test_prepare_voc_builds_train_aug_from_sbd(voc_root, tmp_path, capsys):
    pytest.importorskip("scipy")
    base = voc_root.joinpath(*VOC)
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    rng = np.random.default_rng(0)
    maps = {}
    # SBD covers two VOC train images, one VOC val image (excluded from train_aug) and one extra image
    (base / "JPEGImages" / "2026_500000.jpg").write_bytes((base / "JPEGImages" / "2026_000000.jpg").read_bytes())
    for image_id in ("2026_000000", "2026_000001", "2026_100000", "2026_500000"):
        maps[image_id] = rng.integers(0, 21, (32, 48)).astype(np.uint8)
        _save_sbd(sbd, image_id, maps[image_id])
    (sbd / "train.txt").write_text("2026_000000\n2026_100000\n")
    (sbd / "val.txt").write_text("2026_000001\n2026_500000\n")
    tool = load_tool("prepare_voc")
    assert tool.main([str(voc_root), str(tmp_path / "benchmark_RELEASE")]) == 0
    assert "4 SBD annotations" in capsys.readouterr().out
    for image_id, class_map in maps.items():
        np.testing.assert_array_equal(read_label(base / "SegmentationClassAug" / f"{image_id}.png", "voc")[..., 0],
                                      class_map)
    train_aug = (base / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()
    assert train_aug == ["2026_000000", "2026_000001", "2026_000002", "2026_000003", "2026_500000"]
    samples = list_samples("pascal_voc", voc_root, "train_aug")[0]
    assert [s.label.split("/")[-2] for s in samples] == ["SegmentationClass"] * 4 + ["SegmentationClassAug"]
    # a second run keeps identical files; a different existing file is not replaced without --overwrite
    assert tool.main([str(voc_root), str(sbd)]) == 0
    assert "0 written" in capsys.readouterr().out
    _save_sbd(sbd, "2026_500000", np.zeros((32, 48), np.uint8))
    with pytest.raises(FileExistsError, match="2026_500000.png exists with other contents; pass overwrite"):
        tool.main([str(voc_root), str(sbd)])
    assert tool.main([str(voc_root), str(sbd), "--overwrite"]) == 0
    # a class value outside 0..20 names the .mat file
    _save_sbd(sbd, "2026_500000", np.full((32, 48), 40, np.uint8))
    with pytest.raises(ValueError, match="2026_500000.mat: class values \\[40\\] outside 0..20"):
        tool.main([str(voc_root), str(sbd), "--overwrite"])


def test_voc_records_round_trip_in_the_official_format(voc_root, tmp_path):
    tool = load_tool("make_tfrecords")
    assert tool.main(["--dataset", "pascal_voc", str(voc_root), "--split", "val", "--output",
                      str(tmp_path / "rec" / "val"), "--shards", "2"]) == 0
    samples = list_samples("pascal_voc", voc_root, "val")[0]
    files = sorted((tmp_path / "rec").glob("val-*"))
    assert len(files) == 2
    from keras_mv2seg.data.tfrecord import FEATURES

    examples = [tf.io.parse_single_example(r, FEATURES) for r in tf.data.TFRecordDataset([str(f) for f in files])]
    by_name = {e["image/filename"].numpy().decode(): e for e in examples}
    assert sorted(by_name) == [s.name for s in samples]  # the VOC id, as build_voc2012_data.py writes it
    for sample in samples:
        example = by_name[sample.name]
        assert example["image/format"].numpy() == b"jpeg"
        np.testing.assert_array_equal(tf.io.decode_png(example["image/segmentation/class/encoded"]).numpy(),
                                      read_pair(sample)[1])
    config = keras_mv2seg.get_config("deeplab_mnv2_pascal", val_records=str(tmp_path / "rec" / "val-*"))
    assert len(list(eval_dataset(config, records=config.data.val_records))) == 2


def test_deeplab_augmentation_scales_by_steps_pads_and_keeps_labels():
    label = tf.constant(np.tile(np.arange(20, dtype=np.uint8)[None, :, None], (10, 1, 1)))
    image = tf.cast(tf.tile(tf.cast(label, tf.float32), [1, 1, 3]), tf.float32)
    sizes = set()
    for index in range(40):
        seed = tf.constant([3, index], tf.int64)
        scaled, scaled_label = augment.deeplab_random_scale(image, label, seed, 0.5, 2.0, 0.25)
        sizes.add(tuple(scaled_label.shape[:2]))
        assert set(np.unique(scaled_label.numpy())) <= set(range(20))
        out, out_label = augment.deeplab_train_augment(image, label, seed, crop_size=(16, 16), ratio_range=(0.5, 2.0),
                                                       scale_step=0.25, ignore_index=255, pad_pixel=(127.5,) * 3)
        assert out.shape == (16, 16, 3) and out_label.shape == (16, 16, 1)
        padded = out_label.numpy() == 255
        if padded.any():  # padding: the mean pixel and the ignore label
            assert np.all(out.numpy()[padded[..., 0]] == 127.5)
    allowed = {(int(10 * s), int(20 * s)) for s in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)}
    assert sizes <= allowed and len(sizes) >= 5


def test_official_voc_recipe_and_voc12aug_rows():
    config = keras_mv2seg.get_config("deeplab_mnv2_pascal")
    assert (config.data.train_split, config.data.augmentation, config.data.test_mode) == ("train_aug", "deeplab", "pad")
    assert (config.model.output_stride, config.data.crop_size, config.train.max_iters) == (16, (513, 513), 30000)
    assert (config.train.lr, config.train.min_lr, config.train.weight_decay) == (0.007, 0.0, 4e-5)
    assert config.train.weight_decay_on == "kernels"
    for head, name in (("fcn", "fcn"), ("psp", "pspnet"), ("aspp", "deeplabv3"), ("sepaspp", "deeplabv3plus")):
        row = keras_mv2seg.get_config(f"{name}_m-v2-d8_512x512_20k_voc12aug")
        assert (row.model.head, row.model.num_classes, row.data.dataset, row.data.train_split) == (
            head, 21, "pascal_voc", "train_aug")
        assert (row.data.crop_size, row.train.max_iters, row.train.batch_size) == ((512, 512), 20000, 16)


def test_kernel_only_weight_decay_leaves_batch_norm_alone():
    import keras

    from keras_mv2seg.training.optimizer import TorchSGD

    layer = keras.layers.Dense(2)
    norm = keras.layers.BatchNormalization()
    norm(layer(np.ones((4, 3), np.float32)), training=True)
    variables = layer.trainable_variables + norm.trainable_variables
    before = [v.numpy().copy() for v in variables]
    optimizer = TorchSGD(0.1, momentum=0.0, coupled_weight_decay=0.5, decay_kernels_only=True)
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables])
    for variable, old in zip(variables, before):
        if "kernel" in variable.name:
            np.testing.assert_allclose(variable.numpy(), old * (1 - 0.1 * 0.5), rtol=1e-6)
        else:
            np.testing.assert_array_equal(variable.numpy(), old)


def test_voc_pipeline_streams_palette_labels(voc_root):
    config = keras_mv2seg.get_config("deeplab_mnv2_pascal", data_root=str(voc_root), crop_size=(24, 24),
                                     train_split="train")
    images, labels = next(iter(train_dataset(config, batch_size=2)))
    assert images.shape == (2, 24, 24, 3) and set(np.unique(labels.numpy())) <= {0, 7, 15, 16, 255}
    image, label, name = next(iter(eval_dataset(config, split="val")))
    assert image.shape == (32, 48, 3) and name.numpy() == b"2026_100000"  # pad mode: the image at its own size


@pytest.mark.heavy
def test_train_and_test_deeplab_voc_from_the_tools(voc_root, tmp_path, capsys):
    overrides = ["--cfg-options", "crop_size=48,48", "batch_size=2", "max_iters=2", "eval_interval=2",
                 "checkpoint_interval=2", "train_split=train"]
    work = tmp_path / "work"
    assert load_tool("train").main(["deeplab_mnv2_pascal", "--data-root", str(voc_root), "--work-dir", str(work),
                                    *overrides]) == 0
    out = tmp_path / "metrics.json"
    assert load_tool("test").main(["deeplab_mnv2_pascal", str(work / "best.weights.h5"), "--data-root", str(voc_root),
                                   "--out", str(out), *overrides[:2]]) == 0
    printed = capsys.readouterr().out
    assert "pottedplant" in printed and "mode pad" in printed
    result = json.loads(out.read_text())
    assert result["images"] == 2 and set(result["per_class"]) >= {"background", "car", "person", "tvmonitor"}
    # prediction with the VOC palette
    image = sorted(voc_root.joinpath(*VOC, "JPEGImages").glob("*.jpg"))[0]
    assert load_tool("predict").main(["deeplab_mnv2_pascal", str(work / "best.weights.h5"), str(image), "--out-dir",
                                      str(tmp_path / "pred")]) == 0
    written = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert len(written) == 3 and "legend.png" in written, written
    class_map = next(p for p in (tmp_path / "pred").iterdir() if p.name.endswith("_labels.png"))
    assert set(np.unique(np.asarray(Image.open(class_map)))) <= set(range(21))

"""tensorflow-datasets sources, prepared offline from generated files in their real formats."""

import zipfile

import numpy as np
import pytest
import tensorflow as tf

from keras_mv2seg.data import list_samples, make_toy_dataset

tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is part of the test extra")


def zip_folder(zip_path, root, folder):
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and (folder != "gtFine" or path.name.endswith("_labelIds.png")):
                archive.write(path, path.relative_to(root))


@pytest.mark.heavy
def test_cityscapes_builder_from_generated_zips_maps_label_ids(tmp_path):
    from keras_mv2seg.data.tfds_sources import tfds_stream

    root = make_toy_dataset(tmp_path / "city", train=1, val=1, height=1024, width=2048)
    for kind in ("leftImg8bit", "gtFine"):  # the builder also wants a test split
        for path in (root / kind / "val").rglob("*"):
            if path.is_file():
                target = root / kind / "test" / path.relative_to(root / kind / "val")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    manual = tmp_path / "manual"
    manual.mkdir()
    zip_folder(manual / "leftImg8bit_trainvaltest.zip", root, "leftImg8bit")
    zip_folder(manual / "gtFine_trainvaltest.zip", root, "gtFine")
    image, label, name = next(iter(tfds_stream("cityscapes", "val", data_dir=tmp_path / "tfds", manual_dir=manual)))
    sample = list_samples("cityscapes", root, "val")[0][0]
    expected = tf.io.decode_png(tf.io.read_file(sample.label)).numpy()  # the toy's train ids
    assert image.shape == (1024, 2048, 3) and name.numpy().decode() in sample.name
    np.testing.assert_array_equal(label.numpy(), expected)


def test_own_ade20k_builder_over_the_standard_layout(tmp_path):
    from keras_mv2seg.data.tfds_sources import tfds_stream

    root = make_toy_dataset(tmp_path / "ade", layout="ade20k", train=2, val=1, height=32, width=48)
    elements = list(tfds_stream("ade20k", "validation", data_dir=tmp_path / "tfds", manual_dir=root,
                                reduce_zero_label=True))
    sample = list_samples("ade20k", root, "validation")[0][0]
    raw = tf.io.decode_png(tf.io.read_file(sample.label)).numpy()
    assert len(elements) == 1 and elements[0][0].shape == (32, 48, 3)
    np.testing.assert_array_equal(elements[0][1].numpy(), np.where(raw == 0, 255, raw - 1))
    train = list(tfds_stream("ade20k", "train", data_dir=tmp_path / "tfds", manual_dir=root))
    assert len(train) == 2 and set(np.unique(train[0][1].numpy())) <= set(range(151))


def test_training_and_evaluation_read_tfds(tmp_path, tiny_config_file):
    import keras_mv2seg
    from keras_mv2seg.training import train

    root = make_toy_dataset(tmp_path / "ade", layout="ade20k", train=4, val=2, height=64, width=128)
    config = keras_mv2seg.get_config(str(tiny_config_file(iters=2, interval=2))).replace(
        dataset="ade20k", data_root=str(root), tfds_data_dir=str(tmp_path / "tfds"), reduce_zero_label=True,
        num_classes=150)
    summary = train(config, tmp_path / "run", verbose=0)
    assert summary["iterations"] == 2 and summary["last_mIoU"] is not None

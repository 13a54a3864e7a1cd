"""Hostile files met by the tools: images that state more pixels than memory holds, truncated validation images,
names that look like the error convention's brackets -- each named, with the documented exit status, in bounded
time and memory."""

import shutil
import struct
import zlib

import pytest

import keras_mv2seg
from keras_mv2seg.cli import run_main
from keras_mv2seg.training import train
from tests.conftest import TINY_CONFIG, load_tool


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width=50000, height=50000) -> bytes:
    """A PNG declaring ``width`` x ``height`` RGB pixels with a few rows of deflated zeros: a few kB on disk."""
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 4, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", rows) + _chunk(b"IEND", b""))


@pytest.fixture
def toy_copy(tiny_toy_root, tmp_path):
    """A private copy of the tiny toy dataset, a config reading it and that config's initial weights."""
    root = tmp_path / "toy"
    shutil.copytree(tiny_toy_root, root)
    config_file = tmp_path / "tiny.py"
    config_file.write_text(TINY_CONFIG.format(head="fcn", root=root, iters=2, interval=2, extra="", batch=2))
    config = keras_mv2seg.get_config(str(config_file))
    weights = tmp_path / "init.weights.h5"
    keras_mv2seg.save_weights(keras_mv2seg.build_segmenter(config), weights, config)
    return root, config_file, weights


def _val_image(root):
    return sorted((root / "leftImg8bit" / "val").rglob("*.png"))[0]


def test_a_validation_png_stating_50000x50000_pixels_is_named_not_decoded(toy_copy, capsys):
    root, config_file, weights = toy_copy
    victim = _val_image(root)
    victim.write_bytes(png_bomb())
    assert run_main(load_tool("test").main, [str(config_file), str(weights)]) == 1
    err = capsys.readouterr().err
    assert "image states 50000 x 50000 pixels, over the budget of 150000000" in err and victim.name in err
    assert "KERAS_MV2SEG_MAX_PIXELS" in err


def test_a_truncated_validation_image_is_named_by_test_and_by_train(toy_copy, capsys):
    root, config_file, weights = toy_copy
    victim = _val_image(root)
    victim.write_bytes(victim.read_bytes()[:300])  # header intact, pixels cut off
    assert run_main(load_tool("test").main, [str(config_file), str(weights)]) == 1
    err = capsys.readouterr().err
    assert "an image or label of the val split could not be decoded" in err
    assert f"{victim.name}: image does not decode" in err and "internal error" not in err
    with pytest.raises(ValueError, match=f"train or val split could not be decoded .*{victim.name}: image does not"):
        train(keras_mv2seg.get_config(str(config_file)), root.parent / "run", verbose=0)


def test_the_eager_readers_refuse_an_oversized_file_before_decoding(tmp_path):
    from keras_mv2seg.data.decode import read_image

    (tmp_path / "bomb.png").write_bytes(png_bomb())
    with pytest.raises(ValueError, match=r"bomb.png: 50000x50000 pixels \(2500.0 megapixels"):
        read_image(tmp_path / "bomb.png")


def test_a_bracket_in_a_file_name_keeps_the_whole_message():
    """The pipeline's assertions name files inside tf.data; a name holding brackets kept the message whole."""
    import tensorflow as tf

    from keras_mv2seg.errors import DataError, data_assertion, data_errors_named

    name = "data/val/photo[1]].png"

    def check(path):
        failing = data_assertion(tf.constant(False), "mask", path, "has", tf.constant(7), "pixels of colour (r g b)",
                                 tf.constant(1), tf.constant(2), tf.constant(3), "that nobody declares")
        with tf.control_dependencies([failing]):
            return tf.identity(path)

    with pytest.raises(DataError) as raised:
        with data_errors_named():
            for _ in tf.data.Dataset.from_tensors(tf.constant(name)).map(check):
                pass
    assert str(raised.value) == f"mask {name} has 7 pixels of colour (r g b) 1 2 3 that nobody declares"

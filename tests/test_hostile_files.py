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


def test_exporting_a_model_of_other_classes_without_data_writes_nothing_beside_it(tmp_path, monkeypatch, capsys):
    """A model fine-tuned to 4 classes under the toy config: the checks run on synthetic images; no toy data of
    19 classes is generated into the current folder."""
    base = keras_mv2seg.get_config("toy", widen_factor=0.25, decode_channels=8, aux_channels=4, c1_channels=8)
    own = base.replace(dataset="custom", num_classes=4, class_names=("a", "b", "c", "d"))
    weights = keras_mv2seg.save_weights(keras_mv2seg.build_segmenter(own), tmp_path / "own.weights.h5", own)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["toy", str(weights), "--cfg-options", "widen_factor=0.25", "decode_channels=8", "aux_channels=4",
            "c1_channels=8", "--format", "tflite", "--input-size", "32", "64", "--output", str(tmp_path / "m.tflite")]
    assert run_main(load_tool("export").main, argv) == 0, capsys.readouterr().err
    assert (tmp_path / "m.tflite").is_file() and list(work.iterdir()) == []


# --- a full disk: exit 1 naming the path and the free space, nothing half-written left, no crash -------------

@pytest.fixture
def full_disk(tmp_path):
    """A 6 MiB tmpfs at ``tmp_path/disk`` and a function that fills it up to ``free`` bytes (needs root, as CI
    and the project's machines run; skipped elsewhere, saying so)."""
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")

    def fill(free: int):
        total = shutil.disk_usage(disk).free - free
        with open(disk / "filler", "wb") as handle:
            handle.write(b"\0" * max(total, 0))

    try:
        yield disk, fill
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _run_tool(*arguments, cwd=None):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, str(root / "tools" / arguments[0]), *arguments[1:]], capture_output=True,
                          text=True, cwd=cwd or root)


def _says_disk_full(done, path_part):
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    line = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert "no space left on the device while writing" in line and path_part in line and "MiB free there" in line


@pytest.mark.parametrize("first", ["checkpoint", "best weights"])
def test_a_full_disk_during_training_exits_1_and_leaves_no_partial_checkpoint(tiny_toy_root, tmp_path, full_disk,
                                                                               first):
    disk, fill = full_disk
    checkpoint, evaluation = (2, 4) if first == "checkpoint" else (4, 2)
    config_file = tmp_path / "tiny.py"
    config_file.write_text(TINY_CONFIG.format(head="fcn", root=tiny_toy_root, iters=4, interval=2, extra="",
                                              batch=2).replace("eval_interval=2, checkpoint_interval=2",
                                                               f"eval_interval={evaluation}, "
                                                               f"checkpoint_interval={checkpoint}"))
    fill(48 << 10)
    done = _run_tool("train.py", str(config_file), "--work-dir", str(disk / "run"))
    _says_disk_full(done, "ckpt-2" if first == "checkpoint" else "best.weights.h5")
    leftovers = [p.name for p in (disk / "run").rglob("*") if "_temp" in p.name or ".tmp" in p.name]
    assert leftovers == []


def test_a_full_disk_during_export_and_predict_exits_1_with_no_partial_file(toy_copy, full_disk):
    root, config_file, weights = toy_copy
    disk, fill = full_disk
    fill(16 << 10)
    done = _run_tool("export.py", str(config_file), str(weights), "--format", "tflite", "--input-size", "64", "64",
                     "--output", str(disk / "m.tflite"))
    _says_disk_full(done, str(disk))
    done = _run_tool("predict.py", str(config_file), str(weights), str(_val_image(root)), "--out-dir",
                     str(disk / "out"))
    _says_disk_full(done, str(disk / "out"))
    written = [p for p in disk.rglob("*") if p.is_file() and p.name != "filler"]
    assert not [p.name for p in written if ".tmp" in p.name or p.suffix == ".tflite"]  # nothing half-written
    for png in written:  # an output that fitted before the disk filled is whole
        import tensorflow as tf

        assert tf.io.decode_png(png.read_bytes()).shape[:2] == (64, 128)


def test_a_work_dir_in_use_is_refused_at_once_and_a_dead_holders_lock_is_taken_over(tmp_path):
    import subprocess
    import sys
    import time

    from keras_mv2seg.training.trainer import work_dir_lock

    work_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom keras_mv2seg.training.trainer import work_dir_lock\n"
        f"with work_dir_lock(Path({str(work_dir)!r})):\n    print('held', flush=True)\n    time.sleep(120)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        config = keras_mv2seg.get_config("toy")
        with pytest.raises(TimeoutError, match=f"work dir {work_dir} is in use by another run: process "
                                               f"{holder.pid} holds"):
            train(config, work_dir, verbose=0)
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    with work_dir_lock(work_dir):  # the killed holder's lock is gone with it
        assert (work_dir / ".lock").read_text().strip() == str(__import__("os").getpid())


def test_split_files_stay_inside_the_dataset_root_and_are_quoted_briefly(tmp_path):
    import json

    from keras_mv2seg.data.description import read_description
    from keras_mv2seg.data.layouts import list_samples

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    meta = {"labels": ["background", "sky"]}
    for outside in ("/etc/passwd", "../secrets.txt"):
        (root / "dataset_meta.json").write_text(json.dumps({**meta, "splits": {"val": outside}}))
        with pytest.raises(ValueError, match=r"splits.val names .* outside the dataset root"):
            read_description(root)
    (root / "val.txt").write_text("".join(f"line{i}:x:0:0:root:/root:/bin/bash\n" for i in range(40)))
    (root / "dataset_meta.json").write_text(json.dumps({**meta, "splits": {"val": "val.txt"}}))
    _, problems = list_samples("custom", root, "val", strict=False)
    assert len(problems) == 6 and problems[-1].endswith("35 more ids (listed in " + str(root / "val.txt") + ") have "
                                                        "no image")


def test_a_key_repeated_in_dataset_meta_is_refused_not_silently_dropped(tmp_path):
    from keras_mv2seg.data.description import read_description

    (tmp_path / "dataset_meta.json").write_text('{"labels": ["background", "sky"], "label_map": {"1": 0, "1": 1}}')
    with pytest.raises(ValueError, match="key '1' appears twice in one object"):
        read_description(tmp_path)


@pytest.mark.parametrize("weights, named", [([1.0, float("nan")], "nan is not"), ([1.0, -2.0], "-2.0 is not"),
                                            ([0, 0], "all 0")])
def test_class_weights_that_would_train_on_nothing_or_nan_are_refused(weights, named):
    from keras_mv2seg.training.losses import FocalLoss, LovaszLoss, SegmentationCrossEntropy

    for loss in (SegmentationCrossEntropy, FocalLoss, LovaszLoss):
        with pytest.raises(ValueError, match=f"{loss.__name__} class_weight must be finite.*{named}"):
            loss(class_weight=weights)

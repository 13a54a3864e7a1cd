"""Command-line tools, run in-process through their main(argv)."""


import numpy as np
import pytest

from keras_mv2seg.cli import UsageError, run_main
from tests.conftest import load_tool


def test_convert_mmseg_prints_its_checks(mmseg_fixtures, tmp_path, capsys):
    out = tmp_path / "fcn.weights.h5"
    argv = ["fcn_m-v2-d8_512x1024_80k_cityscapes", str(mmseg_fixtures / "fcn_cityscapes.pth"),
            "--cfg-options", "decode_channels=64", "aux_channels=32", "--output", str(out),
            "--input", str(mmseg_fixtures / "input_rgb_uint8.npy"), "--reference", str(mmseg_fixtures / "fcn_logits.npy")]
    assert load_tool("convert_mmseg").main(argv) == 0
    printed = capsys.readouterr().out
    assert "set 279 weights" in printed and "-> PASS" in printed and "FAIL" not in printed and out.is_file()
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        load_tool("convert_mmseg").main(argv)


def test_convert_reports_failure_against_wrong_reference(mmseg_fixtures, tmp_path, capsys):
    argv = ["fcn_m-v2-d8_512x1024_80k_cityscapes", str(mmseg_fixtures / "fcn_cityscapes.pth"),
            "--cfg-options", "decode_channels=64", "aux_channels=32", "--output", str(tmp_path / "x.weights.h5"),
            "--input", str(mmseg_fixtures / "input_rgb_uint8.npy"), "--reference", str(mmseg_fixtures / "psp_logits.npy")]
    assert load_tool("convert_mmseg").main(argv) == 1
    printed = capsys.readouterr().out
    assert "-> FAIL" in printed and "not written" in printed
    assert not list(tmp_path.glob("*.weights.h5"))  # the first wave left the failed output behind


def test_convert_deeplab_at_head_resolution_reference(deeplab_fixtures, tmp_path, capsys):
    argv = ["deeplab_mnv2_cityscapes", str(deeplab_fixtures / "model.ckpt"), "--output", str(tmp_path / "d.weights.h5"),
            "--input", str(deeplab_fixtures / "even_input_image_f32.npy"),
            "--reference", str(deeplab_fixtures / "even_logits_os8.npy")]
    assert load_tool("convert_deeplab").main(argv) == 0
    assert capsys.readouterr().out.count("PASS") == 2


def test_convert_refuses_a_config_of_the_other_convention(deeplab_fixtures, tmp_path):
    with pytest.raises(SystemExit):
        load_tool("convert_mmseg").main(["deeplab_mnv2_cityscapes", str(deeplab_fixtures / "model.ckpt")])


def test_demo_writes_colour_maps(tmp_path, capsys):
    argv = ["--configs", "fcn_m-v2-d8_512x1024_80k_cityscapes", "deeplab_mnv2_pascal", "--size", "64", "96",
            "--output-dir", str(tmp_path)]
    assert load_tool("demo").main(argv) == 0
    import tensorflow as tf

    picture = tf.io.decode_png((tmp_path / "fcn_m-v2-d8_512x1024_80k_cityscapes.png").read_bytes()).numpy()
    assert picture.shape == (64, 96, 3)
    assert (tmp_path / "deeplab_mnv2_pascal.png").is_file() and (tmp_path / "input.png").is_file()


def test_cfg_options_parsing():
    from keras_mv2seg.cli import parse_cfg_options

    assert parse_cfg_options(["a=1", "b=(2, 3)", "c=text", "d.e=0.5"]) == {"a": 1, "b": (2, 3), "c": "text", "d.e": 0.5}
    with pytest.raises(ValueError, match="key=value, received 'oops'"):
        parse_cfg_options(["oops"])


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory, tiny_toy_root):
    """A tiny model trained for 2 iterations: a config file and its final weights."""
    from tests.conftest import TINY_CONFIG
    import keras_mv2seg
    from keras_mv2seg.training import train

    folder = tmp_path_factory.mktemp("trained")
    config_file = folder / "tiny.py"
    config_file.write_text(TINY_CONFIG.format(head="sepaspp", root=tiny_toy_root, iters=2, interval=2, extra="",
                                              batch=2))
    train(keras_mv2seg.get_config(str(config_file)), folder / "run", verbose=0)
    return config_file, folder / "run" / "final.weights.h5"


def test_test_tool_prints_per_class_table_and_writes_outputs(trained_tiny, tmp_path, capsys):
    import json

    config_file, weights = trained_tiny
    out, plot, submission = tmp_path / "r.json", tmp_path / "cm.png", tmp_path / "sub"
    assert load_tool("test").main([str(config_file), str(weights), "--out", str(out), "--confusion-plot", str(plot),
                                   "--cityscapes-submission", str(submission)]) == 0
    printed = capsys.readouterr().out
    assert "road" in printed and "mIoU" in printed and "2 images, mode whole" in printed
    result = json.loads(out.read_text())
    assert result["images"] == 2 and 0 <= result["mIoU"] <= 100 and "sky" in result["per_class"]
    assert plot.stat().st_size > 1000
    pngs = sorted(submission.rglob("*_leftImg8bit.png"))
    assert len(pngs) == 2 and pngs[0].relative_to(submission).parts[:2] == ("leftImg8bit", "val")
    import tensorflow as tf

    ids = set(np.unique(tf.io.decode_png(pngs[0].read_bytes()).numpy()).tolist())
    assert ids <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        load_tool("test").main([str(config_file), str(weights), "--out", str(out)])
    assert run_main(load_tool("test").main, [str(config_file), str(weights), "--out", str(out)]) == 2  # usage
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_predict_outputs_never_collide_resume_and_skip_what_cannot_be_read(trained_tiny, tmp_path, capsys):
    """a/same.png and b/same.png, photo.png beside photo.jpg: four inputs, four outputs. A broken image is named
    and skipped, the rest written, exit 1. A second run refuses before writing; --skip-existing resumes."""
    import tensorflow as tf

    from keras_mv2seg.cli import write_png

    config_file, weights = trained_tiny
    image = np.random.default_rng(0).integers(0, 255, (32, 48, 3)).astype(np.uint8)
    for name in ("a/same.png", "b/same.png", "c/photo.png"):
        write_png(tmp_path / "in" / name, image)
    (tmp_path / "in" / "c" / "photo.jpg").write_bytes(tf.io.encode_jpeg(image).numpy())
    (tmp_path / "in" / "c" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    argv = [str(config_file), str(weights), *(str(tmp_path / "in" / d) for d in "abc"), "--out-dir", str(out)]
    tool = load_tool("predict")
    assert run_main(tool.main, argv) == 1
    captured = capsys.readouterr()
    assert f"{tmp_path / 'in' / 'c' / 'broken.png'}: not a decodable image" in captured.err
    assert "1 of 5 image(s) could not be read and have no output" in captured.err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == sorted([f"{stem}_{kind}.png" for stem in ("a/same", "b/same", "c/photo.jpg", "c/photo.png")
                              for kind in ("labels", "overlay")] + ["legend.png"])  # the colours' names
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert run_main(tool.main, argv) == 1  # everything there: refused before anything is written
    assert "exists (8 output file(s) of this run already exist); pass --overwrite" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before
    (out / "b" / "same_overlay.png").unlink()
    (tmp_path / "in" / "c" / "broken.png").unlink()
    assert run_main(tool.main, argv + ["--skip-existing"]) == 0
    printed = capsys.readouterr().out
    assert "1 image(s) segmented" in printed and "3 skipped with their outputs already there" in printed
    assert (out / "b" / "same_overlay.png").is_file()
    assert (out / "a" / "same_labels.png").stat().st_mtime_ns == before[out / "a" / "same_labels.png"]
    with pytest.raises(SystemExit) as exit_:  # one or the other: argparse's usage error
        tool.main(argv + ["--skip-existing", "--overwrite"])
    assert exit_.value.code == 2


def test_test_tool_slide_and_aug_test_modes(trained_tiny, capsys):
    config_file, weights = trained_tiny
    tool = load_tool("test")
    assert tool.main([str(config_file), str(weights), "--mode", "slide", "--crop", "48", "64", "--stride", "32", "32",
                      "--max-images", "1"]) == 0
    assert "1 images, mode slide" in capsys.readouterr().out
    assert tool.main([str(config_file), str(weights), "--aug-test", "--max-images", "1"]) == 0
    assert "mode aug-test + whole" in capsys.readouterr().out


def test_predict_tool_writes_class_maps_and_overlays(trained_tiny, tiny_toy_root, tmp_path, capsys):
    import tensorflow as tf

    config_file, weights = trained_tiny
    folder = next((tiny_toy_root / "leftImg8bit" / "val").iterdir())
    assert load_tool("predict").main([str(config_file), str(weights), str(folder), "--out-dir", str(tmp_path)]) == 0
    overlays = sorted(tmp_path.glob("*_overlay.png"))
    labels = sorted(tmp_path.glob("*_labels.png"))
    assert overlays and len(overlays) == len(labels)
    assert tf.io.decode_png(overlays[0].read_bytes()).shape == (64, 128, 3)
    assert tf.io.decode_png(labels[0].read_bytes()).numpy().max() < 19
    with pytest.raises(UsageError, match="no image file"):
        load_tool("predict").main([str(config_file), str(weights), str(tmp_path / "missing*.png")])


@pytest.mark.parametrize("backend", ["keras", "saved_model", "tflite"])
def test_benchmark_tool_backends(tiny_config_file, backend, capsys):
    config_file = tiny_config_file()
    assert load_tool("benchmark").main([str(config_file), "--backend", backend, "--shape", "32", "48",
                                        "--iters", "2", "--warmup", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"{backend}" in printed and "fps" in printed and "x the float32 matmul" in printed


def test_library_messages_name_parameters_and_the_tools_print_flags(capsys):
    from keras_mv2seg.cli import run_main

    def main(argv):
        raise FileExistsError("out.onnx exists; pass overwrite=True to replace it")

    assert run_main(main, []) == 1
    assert "error: out.onnx exists; pass --overwrite to replace it" in capsys.readouterr().err


def test_offline_and_timeouts_exit_1_with_what_to_do(tmp_path, monkeypatch, capsys):
    """ConnectionError (offline, a server or peer that does not answer) and TimeoutError (a held lock) are
    the user's environment, not a bug: exit 1 with the message, never 70."""
    from keras_mv2seg.cli import write_png

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_MV2SEG_WEIGHTS_URL", "http://127.0.0.1:9")  # nothing listens there
    write_png(tmp_path / "photo.png", np.zeros((16, 16, 3), np.uint8))
    argv = ["--preset", "deeplab_mnv2_dm05_pascal_trainaug", str(tmp_path / "photo.png"), "--out-dir",
            str(tmp_path / "out")]
    assert run_main(load_tool("predict").main, argv) == 1
    err = capsys.readouterr().err
    assert "error: could not download preset 'deeplab_mnv2_dm05_pascal_trainaug' from http://127.0.0.1:9/" in err
    assert "Offline? Put the file deeplabv3_mnv2_dm05_pascal_trainaug_2018_10_01.tar.gz into" in err

    def held(argv):
        raise TimeoutError("downloading and converting preset 'x': process 123 has held the lock l for more than 1 s")

    assert run_main(held, []) == 1


def test_a_data_error_inside_training_is_one_line_naming_the_file_and_exit_1(tiny_config_file, capsys):
    """Labels 0..18 for a 5-class model: found inside fit by the pipeline's check, reported as a sentence."""
    config_file = tiny_config_file(iters=2, interval=2, extra=", num_classes=5")
    assert run_main(load_tool("train").main, [str(config_file), "--work-dir", str(config_file.parent / "run")]) == 1
    err = capsys.readouterr().err
    assert "error: label values outside 0..4 and the ignore index 255 (largest: " in err
    assert "_gtFine_labelTrainIds.png; fix the file, or make model.num_classes" in err and "Assert" not in err


def test_train_load_from_a_model_of_another_class_count(tiny_config_file, tmp_path, capsys):
    """train.load_from (mmseg's name) from a .weights.h5 of 5 classes into the 19-class toy model: loaded,
    classifiers re-initialised and said so, trained."""
    import keras_mv2seg

    config_file = tiny_config_file(iters=2, interval=2)
    config = keras_mv2seg.get_config(str(config_file))
    five = config.replace(num_classes=5)
    source = keras_mv2seg.save_weights(keras_mv2seg.build_segmenter(five, auxiliary=True),
                                       tmp_path / "five.weights.h5", five)
    argv = [str(config_file), "--work-dir", str(tmp_path / "run"), "--cfg-options", f"load_from={source}"]
    assert run_main(load_tool("train").main, argv) == 0
    out = capsys.readouterr().out
    assert f"load_from {source}: " in out and "re-initialised for 19 classes (the source has 5)" in out
    assert (tmp_path / "run" / "final.weights.h5").is_file()

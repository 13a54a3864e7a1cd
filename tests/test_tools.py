"""Command-line tools, run in-process through their main(argv)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert "-> FAIL" in capsys.readouterr().out


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

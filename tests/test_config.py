"""Configs: the table's names, strict overrides, printing, files."""

import json

import pytest

import keras_mv2seg
from keras_mv2seg.config import ModelConfig, get_config, list_configs

TABLE = [f"{h}_m-v2-d8_{suffix}" for h in ("fcn", "pspnet", "deeplabv3", "deeplabv3plus")
         for suffix in ("512x1024_80k_cityscapes", "512x512_160k_ade20k")]
OFFICIAL = ["deeplab_mnv2_cityscapes", "deeplab_mnv2_pascal", "deeplab_mnv2_dm05_pascal", "deeplab_mnv2_ade20k"]
VOC = [f"{h}_m-v2-d8_512x512_20k_voc12aug" for h in ("fcn", "pspnet", "deeplabv3", "deeplabv3plus")]


def test_every_table_row_and_official_model_has_a_config():
    assert sorted(TABLE + OFFICIAL + VOC + ["toy"]) == list_configs()


@pytest.mark.parametrize("name", TABLE)
def test_table_configs_hold_model_data_schedule_and_results(name):
    cfg = keras_mv2seg.get_config(name)
    assert cfg.name == name
    head = {"fcn": "fcn", "pspnet": "psp", "deeplabv3": "aspp", "deeplabv3plus": "sepaspp"}[name.split("_")[0]]
    assert cfg.model.head == head and cfg.model.output_stride == 8 and cfg.model.decode_channels == 512
    if name.endswith("cityscapes"):
        assert (cfg.model.num_classes, cfg.data.crop_size, cfg.train.max_iters, cfg.train.batch_size) == \
            (19, (512, 1024), 80000, 8)
    else:
        assert (cfg.model.num_classes, cfg.data.crop_size, cfg.train.max_iters, cfg.train.batch_size) == \
            (150, (512, 512), 160000, 16)
        assert cfg.data.reduce_zero_label
    assert {"mIoU", "fps", "train_memory_gb"} <= set(cfg.results)


def test_overrides_are_explicit_and_checked():
    cfg = get_config("pspnet_m-v2-d8_512x1024_80k_cityscapes", decode_channels=64, aux_channels=32)
    assert (cfg.model.decode_channels, cfg.model.aux_channels) == (64, 32)
    assert cfg.replace(**{"train.max_iters": 10}).train.max_iters == 10
    assert cfg.replace(crop_size=[64, 64]).data.crop_size == (64, 64)
    with pytest.raises(ValueError, match="unknown config key 'decode_chanels'"):
        cfg.replace(decode_chanels=64)
    with pytest.raises(ValueError, match="unknown config key 'model.max_iters'"):
        cfg.replace(**{"model.max_iters": 1})
    with pytest.raises(ValueError, match="model.output_stride must be one of .* received 4"):
        cfg.replace(output_stride=4)


def test_invalid_model_fields_name_the_value():
    with pytest.raises(ValueError, match="model.head must be one of .* received 'unet'"):
        ModelConfig(head="unet")
    with pytest.raises(ValueError, match="needs convention 'deeplab'"):
        ModelConfig(head="deeplab")


def test_config_prints_in_full_as_json():
    cfg = get_config("deeplabv3plus_m-v2-d8_512x512_160k_ade20k")
    data = json.loads(str(cfg))
    assert data["model"]["head"] == "sepaspp" and data["train"]["weight_decay"] == 5e-4
    assert data["results"]["mIoU"] == 34.02


def test_config_file_path_and_unknown_names(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("from keras_mv2seg.configs._base import cityscapes_80k\n"
                    "CONFIG = cityscapes_80k('mine', head='fcn').replace(num_classes=5)\n")
    assert get_config(str(path)).model.num_classes == 5
    with pytest.raises(ValueError, match="unknown config 'nope'.*known configs: deeplab"):
        get_config("nope")
    bad = tmp_path / "bad.py"
    bad.write_text("X = 1\n")
    with pytest.raises(ValueError, match="bad.py must define CONFIG"):
        get_config(str(bad))

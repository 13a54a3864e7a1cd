"""Backbone: the per-block (stride, dilation) schedule as a pure function, channel rounding, features."""

import numpy as np
import pytest

from keras_mv2seg.config import ModelConfig
from keras_mv2seg.models.mobilenet_v2 import block_schedule, build_backbone, make_divisible, scaled_channels


def _strides_dilations(specs):
    return [s.stride for s in specs], [s.dilation for s in specs]


#            blocks: 0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16
MMSEG = {
    8: ([1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 4, 1, 1, 4]),
    16: ([1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
         [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 2]),
    32: ([1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1], [1] * 17),
}
DEEPLAB = {
    8: ([1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 4, 4, 4]),
    16: ([1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
         [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2]),
    32: ([1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1], [1] * 17),
}


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_mmseg_schedule(output_stride):
    assert _strides_dilations(block_schedule(output_stride, "mmseg")) == MMSEG[output_stride]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_deeplab_schedule(output_stride):
    assert _strides_dilations(block_schedule(output_stride, "deeplab")) == DEEPLAB[output_stride]


def test_mmseg_stage_dilations_at_os8_are_the_tables():
    first_of_stage = {}
    for spec in block_schedule(8, "mmseg"):
        first_of_stage.setdefault(spec.stage, spec)
    assert [first_of_stage[s].stride for s in range(7)] == [1, 2, 2, 1, 1, 1, 1]
    assert [first_of_stage[s].dilation for s in range(7)] == [1, 1, 1, 2, 2, 4, 4]


def test_schedule_positions_follow_the_architecture():
    specs = block_schedule(8, "mmseg")
    assert [(s.stage, s.position) for s in specs][:6] == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    assert [s.out_channels for s in specs][-1] == 320 and len(specs) == 17


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32, received 4"):
        block_schedule(4)
    with pytest.raises(ValueError, match="convention must be .* received 'torch'"):
        block_schedule(8, "torch")


def test_channel_rounding_of_the_two_conventions():
    assert make_divisible(24 * 0.5, 8) == 16
    assert [scaled_channels(c, 0.5, "deeplab") for c in (32, 16, 24, 32, 64, 96, 160, 320)] == \
        [16, 8, 12, 16, 32, 48, 80, 160]
    assert [scaled_channels(c, 0.5, "mmseg") for c in (32, 16, 24, 32, 64, 96, 160, 320)] == \
        [16, 8, 16, 16, 32, 48, 80, 160]
    assert all(scaled_channels(c, 1.0, r) == c for c in (16, 24, 32, 96, 320) for r in ("mmseg", "deeplab"))
    with pytest.raises(ValueError, match="rounding"):
        scaled_channels(8, 1.0, "keras")


@pytest.mark.parametrize("output_stride, size", [(8, (97, 193)), (16, (97, 193)), (32, (64, 64))])
def test_backbone_feature_shapes(output_stride, size):
    backbone = build_backbone(ModelConfig(output_stride=output_stride))
    features = backbone(np.zeros((1, *size, 3), "float32"))
    def down(n, times):
        for _ in range(times):
            n = -(-n // 2)
        return n
    deepest = {8: 3, 16: 4, 32: 5}[output_stride]
    assert tuple(features["c1"].shape) == (1, down(size[0], 2), down(size[1], 2), 24)
    assert tuple(features["c4"].shape) == (1, down(size[0], deepest), down(size[1], deepest), 320)
    assert features["c3"].shape[-1] == 96 and features["c2"].shape[-1] == 32
    assert tuple(features["low_level"].shape)[1:] == (down(size[0], 2), down(size[1], 2), 144)

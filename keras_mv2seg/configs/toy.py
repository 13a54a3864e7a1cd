"""The README's main job: DeepLabV3+ M-V2-D8 with narrow heads on the built-in toy dataset (CPU, minutes)."""

from keras_mv2seg.configs._base import toy

CONFIG = toy("toy", head="sepaspp", decode_channels=64, aux_channels=32, c1_channels=32)

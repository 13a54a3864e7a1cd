"""``train.paramwise``: mmengine's ``paramwise_cfg`` (as JSON or a dict) read and checked, with errors naming the key
and what it expects. A leaf (no package imports), so the config can check it before anything runs;
``training.controls.parameter_multipliers`` applies it to a model."""

from __future__ import annotations

import json
import math

PARAMWISE_KEYS = ("custom_keys", "bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult",
                  "flat_decay_mult")
CUSTOM_KEYS = ("lr_mult", "decay_mult")


def parse_paramwise(text) -> dict:
    """``train.paramwise`` (mmengine's ``paramwise_cfg`` as JSON, or a dict) checked: ValueError naming the key
    and what it expects. ``{}`` for ""."""
    if not text:
        return {}
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"train.paramwise is not JSON ({error}): {text!r}") from None
    if not isinstance(text, dict):
        raise ValueError(f"train.paramwise must be a JSON object like mmengine's paramwise_cfg, received {text!r}")
    unknown = sorted(set(text) - set(PARAMWISE_KEYS))
    if unknown:
        raise ValueError(f"train.paramwise has unknown key(s) {', '.join(unknown)}; known: {', '.join(PARAMWISE_KEYS)}")
    for key in PARAMWISE_KEYS[1:]:
        if key in text:
            _multiplier(f"train.paramwise.{key}", text[key], key.endswith("lr_mult"))
    custom = text.get("custom_keys", {})
    if not isinstance(custom, dict):
        raise ValueError(f"train.paramwise.custom_keys must map name patterns to {{lr_mult, decay_mult}}, "
                         f"received {custom!r}")
    for pattern, options in custom.items():
        where = f"train.paramwise.custom_keys[{pattern!r}]"
        if not isinstance(options, dict) or not options or set(options) - set(CUSTOM_KEYS):
            raise ValueError(f"{where} must hold lr_mult and/or decay_mult, received {options!r}")
        for key, value in options.items():
            _multiplier(f"{where}.{key}", value, key == "lr_mult")
    return text


def _multiplier(where: str, value, is_lr: bool):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (is_lr and value == 0):
        expected = ("a number > 0 (to stop a part training, freeze it: train.frozen_stages)" if is_lr
                    else "a number >= 0 (0: no weight decay)")
        raise ValueError(f"{where} must be {expected}, received {value!r}")

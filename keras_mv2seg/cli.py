"""Helpers shared by the command-line tools in ``tools/``: config arguments and image files."""

from __future__ import annotations

import argparse
import ast
import os
from pathlib import Path

import numpy as np


def parse_cfg_options(items) -> dict:
    """``["decode_channels=64", "train.max_iters=100", "crop_size=(64,64)"]`` -> dict; values are Python
    literals where they parse as such, strings otherwise."""
    options = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--cfg-options expects key=value, received {item!r}")
        try:
            options[key.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key.strip()] = text
    return options


def add_config_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("config", help="table config name (see configs/) or path to a config file")
    parser.add_argument("--cfg-options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config fields, e.g. decode_channels=64 train.max_iters=100")


def config_from_args(args):
    from keras_mv2seg.config import get_config

    return get_config(args.config, **parse_cfg_options(args.cfg_options))


def write_png(path, image: np.ndarray, overwrite: bool = False):
    """Write an [H, W] or [H, W, 3] uint8 array as PNG; refuses to replace a file unless ``overwrite``."""
    import tensorflow as tf

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(tf.io.encode_png(image).numpy())
    os.replace(tmp, path)


def read_image(path) -> np.ndarray:
    """RGB uint8 [H, W, 3] from a PNG/JPEG/BMP/GIF file, with the file named in any error."""
    import tensorflow as tf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        image = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"{path}: not a decodable image ({error.message.splitlines()[0]})") from None
    return image.numpy()

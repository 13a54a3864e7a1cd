"""Helpers shared by the command-line tools in ``tools/``: config arguments, image files, and
:func:`run_main`, which turns errors into one line and an exit status.

Exit statuses of every tool: 0 success; 1 bad input (a file, weights, data or a value the user gave -- the
message names it) or an environment to fix (offline, a server or peer that does not answer, a held lock);
2 usage (arguments: argparse's own errors and :class:`UsageError`); 3 a training run
stopped on a non-finite loss; 70 an internal error (a bug: the message says so and asks for ``--verbose``);
130 interrupted. ``--verbose`` anywhere on a tool's command line prints the traceback too.
"""

from __future__ import annotations

import argparse
import ast
import errno
import os
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np

from keras_mv2seg.files import atomic_write, refuse_existing

EXIT_BAD_INPUT, EXIT_USAGE, EXIT_NON_FINITE, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 3, 70, 130


class UsageError(ValueError):
    """A command-line argument that cannot be used as given (exit status 2)."""


def _user_errors():
    """Exception types that mean "the input is wrong", not "the program is wrong"."""
    from keras_mv2seg.weights.torch_pickle import UnsafeCheckpointError

    return (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError, UnsafeCheckpointError, KeyError,
            ConnectionError, TimeoutError)  # offline, a server or a peer that does not answer, a held lock


def run_main(main, argv=None) -> int:
    """Run a tool's ``main(argv)``; print one ``error: ...`` line (plus a hint) for a user error instead of a
    traceback, and return the tool's exit status (see the module docstring)."""
    from keras_mv2seg.training.trainer import NonFiniteLossError

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    hint = "" if verbose else " (run with --verbose for the traceback)"
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteLossError as error:
        _report(error, verbose)
        return EXIT_NON_FINITE
    except UsageError as error:
        _report(error, verbose)
        print("hint: --help lists the arguments", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            _report(f"no space left on the device while writing {error.filename or 'a file'}"
                    f"{_free_space(error.filename)}: free space (or choose another --work-dir / output) and run the "
                    "same command again; completed files are kept and a training run resumes from its last "
                    "checkpoint", verbose)
            return EXIT_BAD_INPUT
        if isinstance(error, _user_errors()):
            _report(error, verbose)
            return EXIT_BAD_INPUT
        return _internal(error, verbose, hint)
    except _user_errors() as error:
        _report(error, verbose)
        return EXIT_BAD_INPUT
    except Exception as error:  # noqa: BLE001 -- the one place that turns a crash into a status
        return _internal(error, verbose, hint)


# Library messages name the Python parameter to change; a tool's user changes a flag. The one translation:
FLAGS_OF_PARAMETERS = {"pass overwrite=True": "pass --overwrite", "pass data_root": "pass --data-root",
                       "pass winograd=0": "pass --winograd 0", "another work_dir": "another --work-dir",
                       "only with resume_from": "only with --resume-from", "dynamic=True": "--dynamic",
                       "pad_to_crop": "--pad-to-crop", "needs input_size (H, W)": "needs --input-size H W",
                       "supports quantization": "supports --quantization"}


def as_flags(text: str) -> str:
    """A library message in the tools' words (:data:`FLAGS_OF_PARAMETERS`)."""
    for parameter, flag in FLAGS_OF_PARAMETERS.items():
        text = text.replace(parameter, flag)
    return text


def _free_space(path) -> str:
    """' (N MiB free there)' for the nearest existing folder of ``path``, or nothing when it cannot be told."""
    if not path:
        return ""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        return f" ({shutil.disk_usage(folder).free / 2**20:.1f} MiB free there)"
    except OSError:
        return ""


def _report(message, verbose):
    if verbose:
        traceback.print_exc()
    text = str(message)
    if isinstance(message, KeyError):
        text = message.args[0] if message.args else text
    print(f"error: {as_flags(text)}", file=sys.stderr)


def _internal(error, verbose, hint) -> int:
    if verbose:
        traceback.print_exc()
    print(f"internal error: {type(error).__name__}: {error}{hint}; this is a bug, please report it with the "
          "traceback", file=sys.stderr)
    return EXIT_INTERNAL


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
    """The config named on the command line with its ``--cfg-options``, and the classes it works with: a custom
    dataset's from its description at ``--data-root`` (or ``data.data_root``), those of the ``weights`` file's
    metadata (a model fine-tuned on a user's own classes). A bad name, key or value, or classes that disagree,
    is a :class:`UsageError` (checked before anything runs)."""
    from keras_mv2seg.config import get_config

    try:
        config = get_config(args.config, **parse_cfg_options(args.cfg_options))
        if getattr(args, "weights", None):
            from keras_mv2seg.weights import config_for_weights

            config = config_for_weights(config, args.weights)
        if config.data.dataset == "custom":
            from keras_mv2seg.data.description import described

            config = described(config, getattr(args, "data_root", None))
        return config
    except ValueError as error:
        raise UsageError(str(error)) from None


def write_png(path, image: np.ndarray, overwrite: bool = False):
    """Write an [H, W] or [H, W, 3] uint8 array as PNG; refuses to replace a file unless ``overwrite``."""
    import tensorflow as tf

    path = refuse_existing(path, overwrite, how="--overwrite")
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    atomic_write(path, tf.io.encode_png(image).numpy())


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


def convert_main(argv, kind: str) -> int:
    """The converter tools (tools/convert_mmseg.py, tools/convert_deeplab.py): parse, convert, check."""
    from keras_mv2seg.weights.check import convert_and_check

    source_help = {"mmseg": "mmseg .pth checkpoint", "deeplab": "DeepLab TF1 checkpoint prefix (model.ckpt)"}
    parser = argparse.ArgumentParser(description=f"Convert an {source_help[kind]} to Keras weights and check it.")
    add_config_arguments(parser)
    parser.add_argument("checkpoint", help=source_help[kind])
    parser.add_argument("--output", help="output .weights.h5 (default: <checkpoint name>.weights.h5 beside it)")
    parser.add_argument("--input", help=".npy image batch (NHWC RGB 0..255) for the parity check")
    parser.add_argument("--reference", help=".npy reference logits for --input (NCHW or NHWC)")
    parser.add_argument("--skip-classifier", action="store_true", help="keep the classifier as initialised")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    if (args.input is None) != (args.reference is None):
        parser.error("--input and --reference go together")
    config = config_from_args(args)
    if config.model.convention != kind:
        parser.error(f"config {config.name!r} uses the {config.model.convention} convention, not {kind}")
    checkpoint = Path(args.checkpoint)
    output = args.output or str(checkpoint.with_name(checkpoint.name.split(".")[0] + ".weights.h5"))
    refuse_existing(output, args.overwrite, how="--overwrite")
    summary = convert_and_check(
        config, checkpoint, output,
        images=np.load(args.input) if args.input else None,
        reference=np.load(args.reference) if args.reference else None,
        skip_classifier=args.skip_classifier, overwrite=args.overwrite,
    )
    return 0 if summary["passed"] else 1

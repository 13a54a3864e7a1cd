#!/usr/bin/env python
"""Segment images: for each input, a class-map PNG (class ids) and a colour overlay with the classes' colours
(the dataset's palette, or a custom dataset's own); ``OUT/legend.png`` names the colours.

    python tools/predict.py CONFIG WEIGHTS INPUT [INPUT ...] [--out-dir outputs/predict] [--opacity 0.5]
    python tools/predict.py --preset NAME INPUT [INPUT ...]      # released weights by name, downloaded once

WEIGHTS may also be a preset name (see keras_mv2seg.list_presets()).

INPUT is an image file, a folder (its .png/.jpg/.jpeg/.bmp files) or a glob pattern in quotes.

Outputs keep each input's path below the inputs' common folder (``a/x.png`` and ``b/x.png`` give
``OUT/a/x_labels.png`` and ``OUT/b/x_labels.png``; ``x.png`` beside ``x.jpg`` gives ``x.png_labels.png`` and
``x.jpg_labels.png``), so no two inputs write one file. Existing outputs are refused before anything is
written, unless ``--overwrite`` (replace them) or ``--skip-existing`` (resume a large job: inputs whose outputs
are all there are skipped). An image that cannot be read is reported and skipped; the others are written and
the tool exits 1 at the end, naming each one.
"""

import argparse
import glob
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_mv2seg.cli import (  # noqa: E402
    EXIT_BAD_INPUT, add_config_arguments, config_from_args, read_image, run_main, write_png, UsageError,
)
from keras_mv2seg.datasets_meta import classes_of, colorize, palette_of  # noqa: E402
from keras_mv2seg.evaluation import plot_legend  # noqa: E402
from keras_mv2seg.files import refuse_existing  # noqa: E402
from keras_mv2seg.inference import predict_labels  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def expand_inputs(items) -> list[Path]:
    paths = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UsageError(f"{item}: no image file, folder with images, or glob match")
        paths.extend(found)
    unique = list(dict.fromkeys(path.resolve() for path in paths))
    if len(unique) < len(paths):
        print(f"note: {len(paths) - len(unique)} input(s) matched more than once; each image is segmented once")
    return unique


OUTPUT_KINDS = ("labels", "overlay")
LEGEND = "legend.png"  # the colour of each class in the overlays


def output_stems(paths: list[Path]) -> dict[Path, Path]:
    """Each input's output stem, relative to the output folder: its path below the inputs' common folder,
    without its suffix -- or with it, for inputs that share a stem there (``x.png``, ``x.jpg``). Injective: no
    two inputs get one stem (the tool checks it before writing anything)."""
    if not paths:
        return {}
    base = Path(os.path.commonpath([str(path.parent) for path in paths]))
    relative = {path: path.relative_to(base) for path in paths}
    shared = Counter(rel.with_suffix("") for rel in relative.values())
    stems = {path: rel.with_suffix("") if shared[rel.with_suffix("")] == 1 else rel for path, rel in relative.items()}
    clashes = [stem for stem, count in Counter(stems.values()).items() if count > 1]
    if clashes:  # only names that differ in case on a case-insensitive folder could get here
        raise UsageError(f"inputs would write the same output {clashes[0]}: rename one of them")
    return stems


def output_path(out: Path, stem: Path, kind: str) -> Path:
    return out / stem.parent / f"{stem.name}_{kind}.png"


def overlay(image: np.ndarray, colours: np.ndarray, opacity: float) -> np.ndarray:
    return np.clip((1 - opacity) * image + opacity * colours, 0, 255).astype(np.uint8)


def _output_arguments(parser):
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out-dir", default="outputs/predict")
    parser.add_argument("--opacity", type=float, default=0.5, help="colour weight in the overlay (0..1)")
    written = parser.add_mutually_exclusive_group()
    written.add_argument("--overwrite", action="store_true", help="replace existing output files")
    written.add_argument("--skip-existing", action="store_true",
                         help="skip inputs whose outputs all exist (resume a large job)")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if any(a == "--preset" or a.startswith("--preset=") for a in argv):
        from keras_mv2seg.weights.presets import list_presets

        parser.add_argument("--preset", required=True, choices=list_presets(), metavar="NAME",
                            help="a released model by name: " + ", ".join(list_presets()))
        _output_arguments(parser)
        return parser.parse_args(argv)
    add_config_arguments(parser)
    parser.add_argument("weights", help=".weights.h5 from training, mmseg .pth, DeepLab TF1 checkpoint or a preset name")
    _output_arguments(parser)
    args = parser.parse_args(argv)
    args.preset = None
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not 0.0 <= args.opacity <= 1.0:
        raise UsageError(f"--opacity must be in [0, 1], received {args.opacity}")
    inputs = expand_inputs(args.inputs)
    if args.preset:
        from keras_mv2seg.weights.presets import from_preset, preset_config

        config, model = preset_config(args.preset), from_preset(args.preset)
    else:
        config = config_from_args(args)
        model = build_for_inference(config, args.weights)
    colours, names = palette_of(config), classes_of(config)
    out = Path(args.out_dir)
    stems = output_stems(inputs)
    todo = _inputs_to_write(inputs, stems, out, args)
    legend = refuse_existing(out / LEGEND, args.overwrite or args.skip_existing, how="--overwrite (or --skip-existing)")
    failed = []
    for path in todo:
        try:
            image = read_image(path)
        except ValueError as error:  # undecodable: named, skipped, and the exit status says so at the end
            print(f"error: {error}; skipped", file=sys.stderr)
            failed.append(path)
            continue
        labels = predict_labels(model, image[None].astype(np.float32))[0].numpy()
        target = {kind: output_path(out, stems[path], kind) for kind in OUTPUT_KINDS}
        write_png(target["labels"], labels.astype(np.uint8), overwrite=True)
        write_png(target["overlay"], overlay(image, colorize(labels, colours), args.opacity), overwrite=True)
        present = ", ".join(f"{c} {names[c]}" for c in np.unique(labels))
        print(f"{path} -> {target['overlay']} (classes {present})")
    out.mkdir(parents=True, exist_ok=True)
    plot_legend(names, colours, legend)
    print(f"{len(todo) - len(failed)} image(s) segmented into {out}"
          + (f", {len(inputs) - len(todo)} skipped with their outputs already there" if args.skip_existing else ""))
    if failed:
        print(f"error: {len(failed)} of {len(todo)} image(s) could not be read and have no output: "
              + ", ".join(str(path) for path in failed), file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _inputs_to_write(inputs, stems, out: Path, args) -> list[Path]:
    """The inputs to segment: all of them, less those whose outputs all exist with --skip-existing; without
    --overwrite or --skip-existing, any existing output is refused here, before anything is written."""
    existing = {path: [output_path(out, stems[path], kind).exists() for kind in OUTPUT_KINDS] for path in inputs}
    if args.skip_existing:
        return [path for path in inputs if not all(existing[path])]
    if not args.overwrite:
        clashing = [output_path(out, stems[path], kind) for path in inputs
                    for kind, there in zip(OUTPUT_KINDS, existing[path]) if there]
        if clashing:
            raise FileExistsError(f"{clashing[0]} exists ({len(clashing)} output file(s) of this run already exist); "
                                  "pass --overwrite to replace them or --skip-existing to keep them and segment "
                                  "the rest")
    return list(inputs)


if __name__ == "__main__":
    sys.exit(run_main(main))

#!/usr/bin/env python
"""Segment images and videos: for each image, a class-map PNG (class ids) and a colour overlay with the classes'
colours (the dataset's palette, or a custom dataset's own); with --scores also the per-class probabilities
(float16 .npy, [H, W, classes]) and a confidence PNG (the top probability, 0-255). For each video, an overlay
video with the input's frame count, size and frame rate (and with --save-labels a class-id PNG per frame).
``OUT/legend.png`` names the colours.

    python tools/predict.py CONFIG WEIGHTS INPUT [INPUT ...] [--out-dir outputs/predict] [--opacity 0.5]
                            [--scores] [--flip] [--scales 0.75 1.0 1.25] [--mode whole|slide|pad]
    python tools/predict.py --preset NAME INPUT [INPUT ...]      # released weights by name, downloaded once
    python tools/predict.py CONFIG WEIGHTS --camera 0            # a camera, until Ctrl+C or --max-frames

WEIGHTS may also be a preset name (see keras_mv2seg.list_presets()).

INPUT is an image file (PNG, JPEG, BMP, GIF, TIFF, WebP), a video file (.mp4, .avi, .mov, .mkv, .webm, ...), a
folder (its images and videos) or a glob pattern in quotes. Images of any size are segmented in bounded memory:
the network runs compiled, on the whole image up to --max-whole-megapixels, through the config's sliding window
above, and every output is written band by band; an image whose header states more than --max-megapixels is
refused before decoding.

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


from keras_mv2seg.cli import (  # noqa: E402
    EXIT_BAD_INPUT, add_config_arguments, config_from_args, run_main, UsageError,
)
from keras_mv2seg.data.image_files import IMAGE_SUFFIXES  # noqa: E402
from keras_mv2seg.evaluation import plot_legend  # noqa: E402
from keras_mv2seg.files import refuse_existing  # noqa: E402
from keras_mv2seg.predictor import Segmenter  # noqa: E402
from keras_mv2seg.predictor.video import VIDEO_SUFFIXES, VideoDamaged  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402

MEDIA_SUFFIXES = IMAGE_SUFFIXES + VIDEO_SUFFIXES


def expand_inputs(items) -> list[Path]:
    paths = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES)
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).suffix.lower() in MEDIA_SUFFIXES)
        if not found:
            raise UsageError(f"{item}: no image file, video file, folder with images or videos, or glob match")
        paths.extend(found)
    unique = list(dict.fromkeys(path.resolve() for path in paths))
    if len(unique) < len(paths):
        print(f"note: {len(paths) - len(unique)} input(s) matched more than once; each image is segmented once")
    return unique


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


SUFFIX_OF_KIND = {"scores": ".npy", "video": ".mp4"}


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def output_kinds(path: Path, args) -> tuple[str, ...]:
    """What is written for an input: an image's class map and overlay (and with --scores its probabilities
    and confidence), a video's overlay video (and with --save-labels its per-frame class maps' folder)."""
    if is_video(path):
        return ("video",) + (("labels_dir",) if args.save_labels else ())
    return ("labels", "overlay") + (("scores", "confidence") if args.scores else ())


def output_path(out: Path, stem: Path, kind: str) -> Path:
    if kind == "video":
        return out / stem.parent / f"{stem.name}_overlay.mp4"
    if kind == "labels_dir":
        return out / stem.parent / f"{stem.name}_labels"
    return out / stem.parent / f"{stem.name}_{kind}{SUFFIX_OF_KIND.get(kind, '.png')}"


def _output_arguments(parser):
    parser.add_argument("inputs", nargs="*", help="image or video files, folders or glob patterns")
    parser.add_argument("--out-dir", default="outputs/predict")
    parser.add_argument("--opacity", type=float, default=0.5, help="colour weight in the overlay (0..1)")
    written = parser.add_mutually_exclusive_group()
    written.add_argument("--overwrite", action="store_true", help="replace existing output files")
    written.add_argument("--skip-existing", action="store_true",
                         help="skip inputs whose outputs all exist (resume a large job)")
    parser.add_argument("--scores", action="store_true",
                        help="also write <name>_scores.npy (float16 probabilities [H, W, classes]) and "
                             "<name>_confidence.png (top probability, 0-255)")
    parser.add_argument("--flip", action="store_true", help="test-time augmentation: average with the mirrored image")
    parser.add_argument("--scales", nargs="+", type=float, metavar="R",
                        help="test-time augmentation: average over the image scaled by these ratios (e.g. 0.75 1 1.25)")
    parser.add_argument("--mode", choices=("whole", "slide", "pad"), help="default: the config's data.test_mode")
    parser.add_argument("--crop", nargs=2, type=int, metavar=("H", "W"), help="sliding window (default: crop size)")
    parser.add_argument("--stride", nargs=2, type=int, metavar=("H", "W"), help="window stride (default: 2/3 crop)")
    parser.add_argument("--max-whole-megapixels", type=float,
                        help="larger images go through the sliding window instead of whole (default 4.19: 2048x2048)")
    parser.add_argument("--max-megapixels", type=float,
                        help="refuse images larger than this before decoding (default 150, or "
                             "$KERAS_MV2SEG_MAX_PIXELS)")
    parser.add_argument("--batch", type=int, default=4, help="video frames (or windows) per network call")
    parser.add_argument("--save-labels", action="store_true", help="videos: also a class-id PNG per frame")
    parser.add_argument("--camera", metavar="INDEX", help="segment a camera (an index such as 0, or a device path)")
    parser.add_argument("--max-frames", type=int, help="videos and cameras: stop after this many frames")


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


def segmenter_of(args) -> Segmenter:
    options = dict(mode=args.mode, crop=args.crop, stride=args.stride, flip=args.flip or None,
                   scales=tuple(args.scales) if args.scales else None, batch=args.batch,
                   max_whole_pixels=int(args.max_whole_megapixels * 1e6) if args.max_whole_megapixels else None)
    max_pixels = int(args.max_megapixels * 1e6) if args.max_megapixels else None
    if args.preset:
        return Segmenter.from_preset(args.preset, max_pixels=max_pixels, **options)
    config = config_from_args(args)
    return Segmenter(build_for_inference(config, args.weights), config, max_pixels=max_pixels, **options)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not 0.0 <= args.opacity <= 1.0:
        raise UsageError(f"--opacity must be in [0, 1], received {args.opacity}")
    if args.camera is None and not args.inputs:
        raise UsageError("give at least one image, video, folder or glob (or --camera INDEX)")
    if args.camera is not None and args.inputs:
        raise UsageError("--camera segments the camera alone; give the inputs in another run")
    for name in ("batch", "max_frames"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    out = Path(args.out_dir)
    if args.camera is not None:
        return _camera(args, out)
    inputs = expand_inputs(args.inputs)
    stems = output_stems(inputs)
    todo = _inputs_to_write(inputs, stems, out, args)
    legend = refuse_existing(out / LEGEND, args.overwrite or args.skip_existing, how="--overwrite (or --skip-existing)")
    segmenter = segmenter_of(args)
    failed, damaged = [], []
    targets = {path: {kind: output_path(out, stems[path], kind) for kind in output_kinds(path, args)}
               for path in todo}
    for path in todo:
        if is_video(path) and not _video(segmenter, path, targets[path], args):
            damaged.append(path)
    images = [(path, targets[path]) for path in todo if not is_video(path)]
    # existing outputs were refused above unless --overwrite or --skip-existing chose them
    for path, result, seconds in segmenter.write_all(images, opacity=args.opacity, overwrite=True):
        if isinstance(result, Exception):  # unreadable or over the budget: named, skipped, the status says so
            print(f"error: {result}; skipped", file=sys.stderr)
            failed.append(path)
            continue
        (height, width, _), present = result
        names = ", ".join(f"{c} {segmenter.classes[c]}" for c in sorted(present))
        print(f"{path} -> {targets[path]['overlay']} ({width}x{height}, {seconds:.2f} s; classes {names})")
    out.mkdir(parents=True, exist_ok=True)
    plot_legend(segmenter.classes, segmenter.palette, legend)
    videos = sum(is_video(path) for path in todo)
    print(f"{len(todo) - videos - len(failed)} image(s)" + (f" and {videos - len(damaged)} video(s)" if videos else "")
          + f" segmented into {out}"
          + (f", {len(inputs) - len(todo)} skipped with their outputs already there" if args.skip_existing else ""))
    if failed:
        print(f"error: {len(failed)} of {len(todo)} image(s) could not be read and have no output: "
              + ", ".join(str(path) for path in failed), file=sys.stderr)
    if damaged:
        print(f"error: {len(damaged)} video(s) could not be read to the end; the frames before the damage are "
              "written: " + ", ".join(str(path) for path in damaged), file=sys.stderr)
    return EXIT_BAD_INPUT if failed or damaged else 0


def _video(segmenter, path, targets, args, camera=False) -> bool:
    """Segment one video (or the camera); False when its stream broke off (the frames before are written)."""
    try:
        result = segmenter.video(path, targets["video"], labels_dir=targets.get("labels_dir"), opacity=args.opacity,
                                 batch=args.batch, camera=camera, max_frames=args.max_frames)
    except VideoDamaged as error:
        print(f"error: {error}", file=sys.stderr)
        return False
    except ValueError as error:
        print(f"error: {error}; skipped", file=sys.stderr)
        return False
    height, width = result["size"]
    print(f"{path} -> {targets['video']} ({result['frames']} frames, {width}x{height} at {float(result['rate']):.3g} "
          f"frames/s; segmented at {result['fps']:.2f} frames/s)")
    return True


def _camera(args, out: Path) -> int:
    stem = Path(f"camera{args.camera}" if str(args.camera).isdigit() else Path(args.camera).stem)
    targets = {"video": output_path(out, stem, "video")}
    if args.save_labels:
        targets["labels_dir"] = output_path(out, stem, "labels_dir")
    for target in targets.values():
        refuse_existing(target, args.overwrite, how="--overwrite")
    segmenter = segmenter_of(args)
    print("segmenting the camera; Ctrl+C stops and writes the video")
    return 0 if _video(segmenter, args.camera, targets, args, camera=True) else EXIT_BAD_INPUT


def _inputs_to_write(inputs, stems, out: Path, args) -> list[Path]:
    """The inputs to segment: all of them, less those whose outputs all exist with --skip-existing; without
    --overwrite or --skip-existing, any existing output is refused here, before anything is written."""
    existing = {path: {kind: output_path(out, stems[path], kind).exists() for kind in output_kinds(path, args)}
                for path in inputs}
    if args.skip_existing:
        return [path for path in inputs if not all(existing[path].values())]
    if not args.overwrite:
        clashing = [output_path(out, stems[path], kind) for path in inputs
                    for kind, there in existing[path].items() if there]
        if clashing:
            raise FileExistsError(f"{clashing[0]} exists ({len(clashing)} output file(s) of this run already exist); "
                                  "pass --overwrite to replace them or --skip-existing to keep them and segment "
                                  "the rest")
    return list(inputs)


if __name__ == "__main__":
    sys.exit(run_main(main))

"""Videos and cameras through a ``Segmenter``: frames decoded and the overlay encoded by PyAV (FFmpeg's libraries,
shipped inside its wheel: H.264 through libx264, MPEG-4 Part 2 where that is missing), frames batched through
the compiled network, the overlay written with the input's frame count, size and frame rate.

A stream that breaks off (a truncated or corrupt file, a camera unplugged) keeps the frames before the damage:
they are written and :class:`VideoDamaged` names the file, the frame and FFmpeg's words."""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from keras_mv2seg.datasets_meta import colorize
from keras_mv2seg.files import remove_stale_staging, staging_path
from keras_mv2seg.predictor.outputs import PngRows, blend

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class VideoDamaged(ValueError):
    """The input stream broke off; ``frames`` frames before the damage were segmented and written."""

    def __init__(self, message: str, frames: int):
        super().__init__(message)
        self.frames = frames


def camera_source(index_or_device: str):
    """(url, FFmpeg input format) of a camera: an index (``0`` -> ``/dev/video0`` through v4l2 on Linux,
    AVFoundation on macOS, DirectShow on Windows) or a device path or a file (a stand-in)."""
    text = str(index_or_device)
    if not text.isdigit():
        return text, None
    if sys.platform == "darwin":
        return text, "avfoundation"
    if sys.platform.startswith("win"):
        return f"video={text}", "dshow"
    return f"/dev/video{text}", "v4l2"


def _encoder(container, width: int, height: int, rate):
    import av

    for codec in ("libx264", "mpeg4"):
        if codec in av.codecs_available:
            stream = container.add_stream(codec, rate=rate)
            break
    else:  # pragma: no cover - every PyAV wheel has mpeg4
        raise RuntimeError("this PyAV build has neither libx264 nor mpeg4 to encode with")
    stream.width, stream.height = width, height
    # 4:2:0 needs even sides; other sizes keep every pixel in 4:4:4 rather than being cropped or scaled
    stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 or codec == "mpeg4" else "yuv444p"
    if codec == "libx264":
        stream.options = {"crf": "18", "preset": "veryfast"}
    else:
        stream.bit_rate = 8_000_000
    return stream


def segment_video(segmenter, source, out_path, *, labels_dir=None, opacity: float = 0.5, batch: int = 4,
                  camera: bool = False, max_frames: int | None = None, log=print) -> dict:
    """Segment every frame of ``source`` (a video file; with ``camera`` a camera index or device) into the overlay
    video ``out_path`` and, with ``labels_dir``, one class-id PNG per frame (``000000.png``, ...). Returns
    {"frames", "seconds", "fps", "size", "rate"}; raises :class:`VideoDamaged` after writing the frames before a
    break in the stream."""
    import av

    url, input_format = camera_source(source) if camera else (str(source), None)
    try:
        container = av.open(url, format=input_format)
    except (av.error.FFmpegError, OSError) as error:
        raise ValueError(f"{source}: not a readable video ({error})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{source}: holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        declared = stream.frames or None
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out_path)
        staging = staging_path(out_path).with_suffix(out_path.suffix)  # FFmpeg picks the container by suffix
        output = av.open(str(staging), "w")
        encoder, frames, started, damage = None, 0, time.perf_counter(), None
        try:
            pending = []

            def flush():
                nonlocal frames
                for image, labels in zip(pending, segmenter.predict_frames(pending)):
                    picture = av.VideoFrame.from_ndarray(blend(image, colorize(labels, segmenter.palette), opacity),
                                                         format="rgb24")
                    picture.pts = frames
                    for packet in encoder.encode(picture):
                        output.mux(packet)
                    if labels_dir is not None:
                        with PngRows(Path(labels_dir) / f"{frames:06d}.png", *labels.shape, 1) as png:
                            png.write(labels.astype(np.uint8))
                    frames += 1
                pending.clear()

            try:
                for frame in container.decode(stream):
                    image = frame.to_ndarray(format="rgb24")
                    if encoder is None:
                        encoder = _encoder(output, image.shape[1], image.shape[0], rate)
                        encoder.time_base = 1 / Fraction(rate)
                    pending.append(image)
                    if len(pending) >= batch:
                        flush()
                    if max_frames is not None and frames + len(pending) >= max_frames:
                        break
            except (av.error.FFmpegError, OSError) as error:
                damage = f"{source}: the stream breaks off after frame {frames + len(pending)} ({error})"
            except KeyboardInterrupt:
                if not camera:
                    raise
                log("stopped; writing the frames so far")
            if encoder is not None:
                flush()
                for packet in encoder.encode(None):
                    output.mux(packet)
            output.close()
        except BaseException:
            output.close()
            staging.unlink(missing_ok=True)
            raise
        if encoder is None:
            staging.unlink(missing_ok=True)
            raise VideoDamaged(damage or f"{source}: holds no decodable frame", 0)
        staging.replace(out_path)
        seconds = time.perf_counter() - started
        if damage is None and declared and not camera and max_frames is None and frames < declared:
            damage = f"{source}: ends after frame {frames} of the {declared} its header declares (truncated?)"
        result = {"frames": frames, "seconds": seconds, "fps": frames / max(seconds, 1e-9),
                  "size": (encoder.height, encoder.width), "rate": rate}
        if damage:
            raise VideoDamaged(damage + f"; the {frames} frames before it are in {out_path}", frames)
        return result

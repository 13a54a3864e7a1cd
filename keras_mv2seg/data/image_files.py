"""Photos as users have them, read for inference: PNG, JPEG, BMP, GIF, TIFF and WebP, of any size up to a pixel
budget that is checked from the file's header before a byte of pixels is allocated.

:func:`image_header` reads the format and size from the first bytes of the file (every format states its size
there); :func:`read_image` refuses a file above ``max_pixels`` naming its size and the setting to raise, then
decodes it to RGB uint8 [H, W, 3]: PNG, JPEG, BMP and GIF by TensorFlow (the pixels training and evaluation see),
TIFF and WebP, which TensorFlow does not read, by imagecodecs (grey replicated, alpha dropped, 16-bit scaled to 8
bits as TensorFlow scales them).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# 150 megapixels (450 MB decoded): every camera and most stitched panoramas; the variable or the argument raises it
MAX_PIXELS_VARIABLE = "KERAS_MV2SEG_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 150_000_000
_HEAD_BYTES = 1 << 16  # enough for a JPEG's SOF after typical EXIF/ICC segments; more is read when needed


class ImageTooLarge(ValueError):
    """An image whose header states more pixels than the budget; raised before decoding."""


def max_pixels_setting(value: int | None = None) -> int:
    """The pixel budget: ``value`` when given, else ``$KERAS_MV2SEG_MAX_PIXELS``, else 150 million."""
    if value is None:
        text = os.environ.get(MAX_PIXELS_VARIABLE)
        if text is None:
            return DEFAULT_MAX_PIXELS
        try:
            value = int(float(text))
        except ValueError:
            raise ValueError(f"{MAX_PIXELS_VARIABLE}={text!r} is not a number of pixels") from None
    if value < 1:
        raise ValueError(f"the pixel budget must be positive, received {value}")
    return int(value)


def _png(data, path):
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a decodable image (a PNG without its IHDR header: truncated or corrupt)")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _jpeg(data, path, handle):
    position = 2
    while True:
        while len(data) < position + 9:
            more = handle.read(_HEAD_BYTES)
            if not more:
                raise ValueError(f"{path}: not a decodable image (a JPEG without a frame header: truncated or corrupt)")
            data += more
        if data[position] != 0xFF:
            raise ValueError(f"{path}: not a decodable image (a JPEG with a corrupt marker at byte {position})")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return height, width
        if marker == 0xDA or length < 2:
            raise ValueError(f"{path}: not a decodable image (a JPEG without a frame header before its scan)")
        position += 2 + length


def _bmp(data, path):
    if len(data) < 26:
        raise ValueError(f"{path}: not a decodable image (a BMP with its header cut off)")
    header_size = struct.unpack("<I", data[14:18])[0]
    if header_size == 12:
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(height), abs(width)


def _gif(data, path):
    if len(data) < 10:
        raise ValueError(f"{path}: not a decodable image (a GIF with its header cut off)")
    width, height = struct.unpack("<HH", data[6:10])
    return height, width


def _tiff(data, path, handle):
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    handle.seek(struct.unpack(order + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0])
    count_format, entry_format, entry_size = (("Q", "HHQ8s", 20) if big else ("H", "HHI4s", 12))
    count_bytes = handle.read(struct.calcsize(count_format))
    if len(count_bytes) < struct.calcsize(count_format):
        raise ValueError(f"{path}: not a decodable image (a TIFF with its directory cut off)")
    count = struct.unpack(order + count_format, count_bytes)[0]
    entries = handle.read(entry_size * min(count, 4096))
    size = {}
    for index in range(len(entries) // entry_size):
        tag, kind, _, value = struct.unpack(order + entry_format, entries[index * entry_size:(index + 1) * entry_size])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG (or LONG8)
            code = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if code is None:
                raise ValueError(f"{path}: not a decodable image (a TIFF whose size tag {tag} has the unexpected "
                                 f"type {kind})")
            size[tag] = struct.unpack(order + code, value[:struct.calcsize(code)])[0]
    if 256 not in size or 257 not in size:
        raise ValueError(f"{path}: not a decodable image (a TIFF without its image size tags)")
    return size[257], size[256]


def _webp(data, path):
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return height, width
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return height & 0x3FFF, width & 0x3FFF
    raise ValueError(f"{path}: not a decodable image (a WebP with its header cut off or of an unknown kind)")


def image_header(path) -> tuple[str, int, int]:
    """(format, height, width) of an image file from its header alone; ValueError naming the file when the format
    is not one of PNG, JPEG, BMP, GIF, TIFF, WebP or the header is cut off."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    with open(path, "rb") as handle:
        data = handle.read(_HEAD_BYTES)
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return ("png", *_png(data, path))
        if data.startswith(b"\xff\xd8"):
            return ("jpeg", *_jpeg(data, path, handle))
        if data.startswith(b"BM"):
            return ("bmp", *_bmp(data, path))
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return ("gif", *_gif(data, path))
        if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            return ("tiff", *_tiff(data, path, handle))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return ("webp", *_webp(data, path))
    if not data:
        raise ValueError(f"{path}: not a decodable image (an empty file)")
    raise ValueError(f"{path}: not a decodable image (not PNG, JPEG, BMP, GIF, TIFF or WebP: an unknown format "
                     "or corrupt)")


def check_image_size(path, max_pixels: int | None = None) -> tuple[str, int, int]:
    """:func:`image_header`, refusing (:class:`ImageTooLarge`) a file that states more than the budget's pixels."""
    kind, height, width = image_header(path)
    budget = max_pixels_setting(max_pixels)
    if height < 1 or width < 1:
        raise ValueError(f"{path}: not a decodable image (its header states an empty {width}x{height} image)")
    if height * width > budget:
        raise ImageTooLarge(
            f"{path}: {width}x{height} pixels ({height * width / 1e6:.1f} megapixels, {3 * height * width / 2**30:.2f} "
            f"GiB decoded) is over the budget of {budget / 1e6:.1f} megapixels; raise it with --max-megapixels, "
            f"max_pixels= or ${MAX_PIXELS_VARIABLE} if this machine has the memory")
    return kind, height, width


def _to_rgb8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint16:  # as TensorFlow scales 16-bit samples to 8 bits: the high byte
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise ValueError(f"{pixels.dtype} samples")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3:
        raise ValueError(f"an image of shape {pixels.shape}")
    channels = pixels.shape[-1]
    if channels in (1, 2):
        return np.repeat(pixels[..., :1], 3, axis=-1)
    if channels in (3, 4):
        return np.ascontiguousarray(pixels[..., :3])
    raise ValueError(f"{channels} channels")


def read_image(path, max_pixels: int | None = None) -> np.ndarray:
    """RGB uint8 [H, W, 3] of an image file, its size checked against the pixel budget before decoding (see the
    module); a ValueError names the file for anything that cannot be read."""
    import tensorflow as tf

    path = Path(path)
    kind, height, width = check_image_size(path, max_pixels)
    try:
        if kind in ("tiff", "webp"):
            import imagecodecs

            decode = imagecodecs.tiff_decode if kind == "tiff" else imagecodecs.webp_decode
            image = _to_rgb8(np.asarray(decode(path.read_bytes())))
        else:
            image = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"{path}: not a decodable image ({error.message.splitlines()[0]})") from None
    except Exception as error:  # imagecodecs' own errors, a format feature it lacks
        raise ValueError(f"{path}: not a decodable image ({kind.upper()}: {error})") from None
    if image.shape[:2] != (height, width):
        raise ValueError(f"{path}: not a decodable image (decoded to {image.shape[1]}x{image.shape[0]}, its header "
                         f"says {width}x{height})")
    return image

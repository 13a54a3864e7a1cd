"""The top rows of a PNG file, decoded without inflating the rest: for the training crop, which reads only the rows
down to its window's last.

A PNG's rows are filtered and compressed in order, each row's filter reading at most the row above it, so the first
``n`` rows of an image are a complete image: its scanlines are the first ``n * (1 + row bytes)`` bytes of the
inflated data, unchanged. Those bytes alone are inflated (by ISA-L, 3.5x faster than zlib on Cityscapes-size images,
when the ``isal`` package is there) and stored uncompressed (deflate's stored blocks) in a PNG whose header says
``n`` rows, every chunk before the image data copied as it is. :func:`png_prefix` returns that file, for TensorFlow's
own decoder: the same decoder on the same scanlines, so the pixels are the first ``n`` rows of the whole file's, bit
for bit, whatever the colour type, bit depth, palette or transparency. :func:`decode_rows` decodes it here for the
common files (8-bit grey, RGB and their alpha forms without tRNS) with ``imagecodecs``' libpng, whose SIMD filters
decode stored rows 2.8x faster than TensorFlow's decoder, converted to RGB as TensorFlow converts; the tests check
both against TensorFlow's decoding of the whole file.

A file this cannot shorten is returned unchanged, for the decoder to decode whole (or refuse as it always does):
one that is not a PNG, an interlaced PNG (Adam7 spreads each row over seven passes), ``n`` not below the height,
and a file whose chunks are cut off or fail their CRC (every image data chunk's CRC is checked, those past the rows
kept included, so a damaged file fails as before rather than being cut short of its damage) or whose kept rows do
not inflate -- or, when every row is kept, whose stream does not end right after them with its checksum. Compressed
data past the kept rows is not inflated, so a stream broken only there (with correct CRCs: a faulty writer) is
decoded as far as the rows kept.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

try:  # ISA-L's inflate: the same bytes as zlib's, 3-4x faster on x86 and ARM (wheels on PyPI for both)
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - a platform without an isal wheel: zlib, the same bytes, slower
    _zlib = zlib
_INFLATE_ERRORS = (zlib.error, _zlib.error)
try:  # libpng 1.6 with SIMD filters, releasing the GIL: 2.8x faster than TensorFlow's decoder on stored rows
    import imagecodecs
except ImportError:  # pragma: no cover - no wheel for this platform: TensorFlow decodes every file
    imagecodecs = None

__all__ = ["decode_rows", "png_prefix", "png_header"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # samples per pixel of each IHDR colour type
_STORED_BLOCK = 65535  # the most bytes a stored deflate block holds
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, no dictionary; (0x78 * 256 + 0x01) % 31 == 0


def png_header(data) -> dict | None:
    """The IHDR fields of a PNG file's bytes (width, height, bit_depth, colour_type, interlace), or None when
    ``data`` does not start with a PNG signature and a well-formed IHDR chunk (its CRC included)."""
    data = memoryview(data)
    if len(data) < 33 or data[:8] != SIGNATURE or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        return None
    if struct.unpack(">I", data[29:33])[0] != zlib.crc32(data[12:29]):
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if not (0 < width < 2 ** 31 and 0 < height < 2 ** 31) or colour not in _CHANNELS:
        return None
    return {"width": width, "height": height, "bit_depth": depth, "colour_type": colour, "interlace": interlace}


def _chunks(data: memoryview):
    """(type, start of the chunk, start of its data, end of the chunk) of each chunk; stops at IEND. Raises
    ValueError for a chunk that runs past the end of the file or whose CRC is wrong."""
    position = 8
    while True:
        if position + 12 > len(data):
            raise ValueError("truncated")
        length = struct.unpack(">I", data[position:position + 4])[0]
        end = position + 12 + length
        if end > len(data):
            raise ValueError("truncated")
        kind = bytes(data[position + 4:position + 8])
        yield kind, position, position + 8, end
        if kind == b"IEND":
            return
        position = end


def _chunk(kind: bytes, parts: list) -> list:
    """A chunk of ``kind`` whose data are the concatenated ``parts``, as a list of pieces to join."""
    crc = _zlib.crc32(kind)
    for part in parts:
        crc = _zlib.crc32(part, crc)
    return [struct.pack(">I", sum(len(part) for part in parts)), kind, *parts, struct.pack(">I", crc)]


def _stored_zlib_stream(scanlines: memoryview) -> list:
    """``scanlines`` as a zlib stream of stored (uncompressed) deflate blocks, as a list of pieces to join."""
    pieces = [_ZLIB_HEADER]
    for start in range(0, len(scanlines), _STORED_BLOCK):
        block = scanlines[start:start + _STORED_BLOCK]
        final = start + _STORED_BLOCK >= len(scanlines)
        pieces += [struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF), block]
    return pieces + [struct.pack(">I", _zlib.adler32(scanlines))]


def _cuttable(data):
    """(IHDR fields, the chunks before the image data as they are, the image data chunks' contents) of a
    non-interlaced PNG whose chunks are whole with correct CRCs, their image data in one run; None otherwise."""
    header = png_header(data)
    if header is None or header["interlace"] != 0:
        return None
    view = memoryview(data)
    before, idat, seen_idat, after_idat = [], [], False, False
    try:
        for kind, start, body, end in _chunks(view):
            if kind == b"IDAT":
                if after_idat or _zlib.crc32(view[start + 4:end - 4]) != struct.unpack(">I", view[end - 4:end])[0]:
                    return None  # image data split by other chunks, or damaged: the decoder's verdict
                idat.append(view[body:end - 4])
                seen_idat = True
            elif seen_idat:
                after_idat = True
            elif kind != b"IHDR":
                before.append(view[start:end])
    except ValueError:
        return None
    return header, before, idat


def _top_rows_png(header, before, idat, rows):
    """A PNG of the top ``rows`` rows, its scanlines stored uncompressed; None when the compressed data do not
    inflate to them."""
    row_bytes = 1 + (header["width"] * _CHANNELS[header["colour_type"]] * header["bit_depth"] + 7) // 8
    wanted = rows * row_bytes
    inflater = _zlib.decompressobj()
    try:  # one call on the joined chunks: 15 % faster than one call per chunk (libpng writes 8 KiB chunks)
        scanlines = inflater.decompress(b"".join(idat), wanted)
        if rows == header["height"] and (inflater.decompress(inflater.unconsumed_tail) or not inflater.eof):
            return None  # every row: the stream must end there, checksum included, as the decoder would check
    except _INFLATE_ERRORS:
        return None
    if len(scanlines) < wanted:
        return None
    ihdr = struct.pack(">IIBBBBB", header["width"], rows, header["bit_depth"], header["colour_type"], 0, 0, 0)
    return b"".join([SIGNATURE, *_chunk(b"IHDR", [ihdr]), *before,
                     *_chunk(b"IDAT", _stored_zlib_stream(memoryview(scanlines)[:wanted])), *_chunk(b"IEND", [])])


def png_prefix(data, rows) -> bytes:
    """A PNG of the first ``rows`` rows of the PNG file ``data`` (bytes), the same pixels as those rows of the
    whole file; ``data`` itself where that cannot be done (see the module docstring)."""
    rows = int(rows)
    parts = _cuttable(data)
    if parts is None or not 0 < rows < parts[0]["height"]:
        return data
    return _top_rows_png(*parts, rows) or data


_DECODED_HERE = (0, 2, 4, 6)  # the colour types decoded here: 8-bit grey, RGB and their alpha forms
_NO_PIXELS = np.zeros((0, 0, 3), np.uint8)


def decode_rows(data, rows=0) -> tuple[np.ndarray, bytes]:
    """The top ``rows`` rows of an image file (all of them when ``rows`` is below 1 or not below the height) as RGB
    uint8 [h, W, 3], the same pixels as TensorFlow's ``decode_image(..., channels=3)``, with the bytes left to
    TensorFlow's decoder: (pixels, b"") for the files decoded here -- 8-bit grayscale, RGB and their alpha forms
    without a tRNS chunk, their rows inflated by ISA-L and stored uncompressed, then decoded by ``imagecodecs``'
    libpng (SIMD filters, the GIL released) and converted as TensorFlow converts: grey replicated, alpha dropped --;
    (an empty array, :func:`png_prefix`'s PNG or ``data`` itself) for the others."""
    rows = int(rows)
    parts = _cuttable(data)
    if parts is None:
        return _NO_PIXELS, data
    header, before, idat = parts
    rows = rows if 0 < rows < header["height"] else header["height"]
    fast = (imagecodecs is not None and header["bit_depth"] == 8 and header["colour_type"] in _DECODED_HERE
            and not any(bytes(chunk[4:8]) == b"tRNS" for chunk in before))
    top = _top_rows_png(header, before, idat, rows) if fast or rows < header["height"] else None
    if top is None:
        return _NO_PIXELS, data
    if not fast:
        return _NO_PIXELS, top
    try:
        pixels = imagecodecs.png_decode(top)
    except Exception:  # noqa: BLE001 - a file libpng refuses: TensorFlow's decoder gives its own verdict
        return _NO_PIXELS, top
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[-1] < 3:  # grey, grey + alpha: the grey replicated
        return np.repeat(pixels[..., :1], 3, axis=-1), b""
    return np.ascontiguousarray(pixels[..., :3]), b""

"""The top rows of a PNG (``data/png.py``): as a PNG of their own, which TensorFlow's decoder decodes to the same
pixels as those rows of the whole file, and decoded here (ISA-L and imagecodecs) to the same pixels as TensorFlow's
for the common kinds of file -- files written by TensorFlow, Pillow and OpenCV and by hand with each PNG filter --;
every file that cannot be shortened comes back unchanged."""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from keras_mv2seg.data import png
from keras_mv2seg.data.decode import ImageFile, decode_image


def scene(height, width, channels, dtype=np.uint8, seed=0):
    """Noise on gradients and flat patches: every PNG filter has something to win on some rows."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    y, x = np.mgrid[:height, :width]
    ramp = (y * 7 + x * 3) % (top + 1)
    noise = rng.integers(0, top + 1, (height, width, channels))
    pixels = np.where((x // 8 + y // 8)[..., None] % 3 == 0, ramp[..., None], noise)
    pixels[: height // 4, : width // 3] = top // 3  # flat
    return pixels.astype(dtype)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def handmade_png(pixels, idat_size=1000):
    """An 8-bit RGB PNG whose row ``r`` uses filter ``r % 5`` (None, Sub, Up, Average, Paeth), its compressed data
    split into ``idat_size``-byte IDAT chunks, with a text chunk before them."""
    height, width, _ = pixels.shape
    rows = pixels.reshape(height, width * 3).astype(np.int32)
    lines = []
    for r in range(height):
        kind = r % 5
        above = rows[r - 1] if r else np.zeros_like(rows[r])
        left = np.concatenate([np.zeros(3, np.int32), rows[r, :-3]])
        upper_left = np.concatenate([np.zeros(3, np.int32), above[:-3]])
        predictor = [0 * left, left, above, (left + above) // 2, _paeth(left, above, upper_left)][kind]
        lines.append(bytes([kind]) + ((rows[r] - predictor) % 256).astype(np.uint8).tobytes())
    compressed = zlib.compress(b"".join(lines), 6)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (png.SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"tEXt", b"Comment\0hand made")
            + b"".join(chunk(b"IDAT", compressed[i:i + idat_size]) for i in range(0, len(compressed), idat_size))
            + chunk(b"IEND", b""))


def pillow_png(pixels, mode, **save):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "PNG", **save) if mode else \
        Image.fromarray(pixels).save(buffer, "PNG", **save)
    return buffer.getvalue()


def palette_png(pixels, colours, transparency=None):
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] % colours, "L").convert("P")
    image.putpalette([v for i in range(colours) for v in (i * 40 % 256, 255 - i * 30 % 256, i * 90 % 256)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **({"transparency": transparency} if transparency is not None else {}),
               bits=max(1, int(np.ceil(np.log2(colours)))))
    return buffer.getvalue()


def opencv_png(pixels, **flags):
    import cv2

    params = [p for name, value in flags.items() for p in (getattr(cv2, name), value)]
    return cv2.imencode(".png", pixels, params)[1].tobytes()


def with_chunks(data, *chunks):
    """``data`` (a PNG) with ``chunks`` put in after its IHDR."""
    return data[:33] + b"".join(chunks) + data[33:]


FILES = {
    "tensorflow rgb": lambda: tf.io.encode_png(scene(61, 90, 3)).numpy(),
    "tensorflow gray": lambda: tf.io.encode_png(scene(61, 90, 1)).numpy(),
    "tensorflow gray+alpha": lambda: tf.io.encode_png(scene(61, 90, 2)).numpy(),
    "tensorflow rgba": lambda: tf.io.encode_png(scene(61, 90, 4)).numpy(),
    "tensorflow rgb 16-bit": lambda: tf.io.encode_png(scene(61, 90, 3, np.uint16)).numpy(),
    "tensorflow gray 16-bit": lambda: tf.io.encode_png(scene(61, 90, 1, np.uint16)).numpy(),
    "pillow rgb": lambda: pillow_png(scene(61, 90, 3), None),
    "pillow 1-bit": lambda: pillow_png(scene(61, 90, 3), "1"),
    "pillow palette 256 colours": lambda: pillow_png(scene(61, 90, 3), "P"),
    "pillow palette 2 bits, tRNS": lambda: palette_png(scene(61, 93, 1), 4, transparency=1),
    "pillow palette 4 bits": lambda: palette_png(scene(61, 93, 1), 13),
    "opencv bgr": lambda: opencv_png(scene(61, 90, 3)),
    "opencv bgr, huffman only": lambda: opencv_png(scene(61, 90, 3), IMWRITE_PNG_STRATEGY=2, IMWRITE_PNG_COMPRESSION=1),
    "every filter, 1000-byte IDATs": lambda: handmade_png(scene(61, 90, 3)),
    "gamma and sRGB chunks": lambda: with_chunks(tf.io.encode_png(scene(61, 90, 3)).numpy(),
                                                 chunk(b"gAMA", struct.pack(">I", 45455)), chunk(b"sRGB", b"\0")),
    "rgb with a tRNS colour": lambda: with_chunks(tf.io.encode_png(scene(61, 90, 3)).numpy(),
                                                  chunk(b"tRNS", struct.pack(">HHH", 7, 7, 7))),
}
DECODED_HERE = {"tensorflow rgb", "tensorflow gray", "tensorflow gray+alpha", "tensorflow rgba", "pillow rgb",
                "opencv bgr", "opencv bgr, huffman only", "every filter, 1000-byte IDATs", "gamma and sRGB chunks"}


@pytest.mark.parametrize("writer", FILES)
def test_top_rows_decode_as_the_whole_file_does(writer):
    data = FILES[writer]()
    header = png.png_header(data)
    assert header is not None and header["height"] == 61 and header["interlace"] == 0
    whole = tf.io.decode_png(data, dtype=tf.uint16 if header["bit_depth"] == 16 else tf.uint8).numpy()
    whole_rgb = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    for rows in (1, 2, 5, 30, 60):
        top = png.png_prefix(data, rows)
        assert top != data and len(top) > rows  # shortened, stored uncompressed
        np.testing.assert_array_equal(
            tf.io.decode_png(top, dtype=tf.uint16 if header["bit_depth"] == 16 else tf.uint8).numpy(), whole[:rows])
        np.testing.assert_array_equal(tf.io.decode_image(top, channels=3, expand_animations=False).numpy(),
                                      whole_rgb[:rows])
    assert png.png_prefix(data, 61) is data and png.png_prefix(data, 500) is data  # nothing to leave out


@pytest.mark.parametrize("writer", FILES)
def test_decoded_rows_are_tensorflows_pixels(writer):
    """``decode_rows``: the top rows as TensorFlow's ``decode_image(..., channels=3)`` gives them, decoded here for
    8-bit grey, RGB and their alpha forms without tRNS, left to TensorFlow (as a PNG of those rows) for the rest."""
    data = FILES[writer]()
    whole = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    for rows in (1, 7, 60, 61, 0, 1000):
        pixels, rest = png.decode_rows(data, rows)
        expected = whole[:rows] if 0 < rows < 61 else whole
        if writer in DECODED_HERE:
            assert rest == b"" and pixels.flags.c_contiguous
            np.testing.assert_array_equal(pixels, expected)
        else:
            assert pixels.shape == (0, 0, 3) and (rest is data) == (expected is whole)
            np.testing.assert_array_equal(tf.io.decode_image(rest, channels=3, expand_animations=False), expected)


def test_files_it_cannot_shorten_come_back_unchanged():
    data = tf.io.encode_png(scene(64, 80, 3)).numpy()
    ihdr_end = 33
    interlaced = bytearray(data)
    interlaced[28] = 1  # Adam7: every row spread over seven passes
    interlaced[29:ihdr_end] = struct.pack(">I", zlib.crc32(bytes(interlaced[12:29])))
    chunks = list(png._chunks(memoryview(data)))
    idat = [(start, end) for kind, start, _, end in chunks if kind == b"IDAT"]
    last_start, last_end = idat[-1]
    damaged_tail = bytearray(data)  # a flipped bit in the last IDAT chunk, far below the rows asked for
    damaged_tail[last_end - 6] ^= 1
    split = data[:last_start] + chunk(b"tEXt", b"Comment\0between") + data[last_start:]
    cases = {
        "interlaced": bytes(interlaced),
        "jpeg": tf.io.encode_jpeg(scene(64, 80, 3)).numpy(),
        "garbage": b"garbage" * 10,
        "empty": b"",
        "cut off in the image data": data[: (idat[0][0] + idat[0][1]) // 2],
        "cut off before IEND": data[:-12],
        "damaged image data past the rows": bytes(damaged_tail),
        "wrong IHDR CRC": data[:29] + b"\0\0\0\0" + data[33:],
        "IDAT chunks split by another chunk": split,
    }
    if len(idat) < 2:  # TensorFlow writes one IDAT for a file this small: split it by hand for the last cases
        body = data[idat[0][0] + 8: idat[0][1] - 4]
        many = data[: idat[0][0]] + chunk(b"IDAT", body[:100]) + chunk(b"IDAT", body[100:]) + data[idat[0][1]:]
        damaged = bytearray(many)
        damaged[-12 - 6] ^= 1
        cases["damaged image data past the rows"] = bytes(damaged)
        cases["IDAT chunks split by another chunk"] = (data[: idat[0][0]] + chunk(b"IDAT", body[:100])
                                                       + chunk(b"tEXt", b"Comment\0between")
                                                       + chunk(b"IDAT", body[100:]) + data[idat[0][1]:])
    for name, case in cases.items():
        assert png.png_prefix(case, 3) is case, name
        pixels, rest = png.decode_rows(case, 3)
        assert pixels.size == 0 and rest is case, name
    assert png.png_prefix(data, 0) is data
    # a wrong stream checksum (valid CRCs): every row decoded -> the decoder's verdict; the top rows -> not read
    body = b"".join(bytes(memoryview(data)[body:end - 4]) for kind, _, body, end in chunks if kind == b"IDAT")
    wrong_sum = (data[: idat[0][0]] + chunk(b"IDAT", body[:-4] + bytes(b ^ 0xFF for b in body[-4:]))
                 + chunk(b"IEND", b""))
    assert png.decode_rows(wrong_sum, 0)[1] is wrong_sum and png.decode_rows(wrong_sum, 64)[1] is wrong_sum
    assert png.decode_rows(wrong_sum, 3)[0].shape == (3, 80, 3)
    # the inflater's own errors: valid CRCs around a stream that is not deflate data
    bad_stream = data[: idat[0][0]] + chunk(b"IDAT", b"\x78\x01not deflate at all" * 10) + chunk(b"IEND", b"")
    assert png.png_prefix(bad_stream, 3) is bad_stream


def test_image_file_decodes_the_top_rows_or_the_whole_image(tmp_path):
    """``ImageFile``: the frame from a PNG's header, ``pixels(rows)`` exactly its top ``rows`` rows; a JPEG decoded
    whole, its frame its decoded size; both the pixels of ``decode_image``."""
    pixels = scene(50, 70, 3)
    (tmp_path / "a.png").write_bytes(tf.io.encode_png(pixels).numpy())
    (tmp_path / "a.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())

    @tf.function
    def read(path, rows):
        image = ImageFile(path)
        return image.frame, image.pixels(rows), image.pixels()

    for name, expected_rows in (("a.png", 20), ("a.jpg", 50)):
        path = str(tmp_path / name)
        frame, top, whole = read(tf.constant(path), tf.constant(20))
        assert frame.numpy().tolist() == [50, 70]
        expected = decode_image(tf.constant(path), tf.uint8).numpy()
        np.testing.assert_array_equal(whole, expected)
        np.testing.assert_array_equal(top, expected[:expected_rows])


EXIT_SCRIPT = """
import sys
import keras_mv2seg
from keras_mv2seg.data import train_dataset
config = keras_mv2seg.get_config("toy").replace(data_root=sys.argv[1], crop_size=(32, 48), base_scale=(1024, 512))
iterator = iter(train_dataset(config, batch_size=2))  # module level: alive when the interpreter exits
for _ in range(3):
    next(iterator)
print("done", flush=True)
"""


def test_a_module_level_iterator_does_not_hang_the_exit(tmp_path):
    """An iterator over the decoding pipeline left alive at exit, its map calls into Python in flight: released
    before the interpreter finalizes (``decode._release_iterators_before_exit``; without it this process hung at
    exit in 3 runs of 3)."""
    import subprocess
    import sys
    from pathlib import Path

    from keras_mv2seg.data import make_toy_dataset

    root = make_toy_dataset(tmp_path / "toy", train=4, val=1, height=256, width=512)
    script = tmp_path / "leave_iterator.py"
    script.write_text(EXIT_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-2000:]

"""Reading image and label files: the label-kind vocabulary, what a label file may look like, decoding and the
mapping of raw label values to training ids. Every reader of files (pipelines, cache, TFRecord writer, dataset
check) comes here, in graph form (``decode_pair``, inside tf.data) or eager form (``read_pair``, naming the file
in a ``ValueError``).

Label kinds (a layout tags each sample with one, see ``layouts.py``):

========== ================================================= ================== =====================
kind       file                                              values in the file mapped to
========== ================================================= ================== =====================
train_ids  Cityscapes ``*_labelTrainIds.png``, toy           0..18, 255         as is
label_ids  Cityscapes ``*_labelIds.png``                     0..33 (255)        train ids, 255 ignored
ade20k     ADE20K annotations (0 = other)                    0..150             0 -> 255, L -> L - 1
                                                                                with reduce_zero_label
voc        PASCAL VOC / SBD: palette PNG with the VOC        0..20, 255         as is
           colours, or grayscale index PNG
           (``SegmentationClassRaw``, ``SegmentationClassAug``)
cached     raw pixels of ``cache.py``, already mapped        training ids       as is
custom     a user's masks, coded as its                      class ids (index,  the description's
           ``description.DatasetDescription`` says           palette index or   value table
                                                             declared colour)   (value_map, reduce)
========== ================================================= ================== =====================

Labels are 8-bit PNGs. A grayscale PNG holds the values. A palette PNG's *indices* are the values: for ``voc``
TensorFlow's PNG decoder returns a palette PNG's colours, so the colours are turned back into indices by
inverting the VOC colour map (bit-interleaved, each index has its own colour, whose low 5 bits per channel are
zero) -- exact for every VOC palette PNG, and a colour outside the map (a re-saved, resized or recoloured label)
is refused naming the file; for ``custom`` the indices are read through the file's own palette (Pillow). RGB
colour masks are accepted for ``custom`` only, through the colours its description declares; an undeclared
colour is refused naming the file, the colour and how many pixels carry it.
"""

from __future__ import annotations

import atexit
import gc

import numpy as np
import tensorflow as tf

from keras_mv2seg.datasets_meta import cityscapes_label_id_to_train_id
from keras_mv2seg.data.image_files import (
    MAX_PIXELS_VARIABLE, ImageTooLarge, check_image_size, max_pixels_setting,
)
from keras_mv2seg.data.png import SIGNATURE, decode_rows
from keras_mv2seg.errors import data_assertion, pipeline_problem


def _release_iterators_before_exit():
    """Release every tf.data iterator still alive when the interpreter exits, while Python still runs. An iterator
    destroyed during the interpreter's finalization (a module-level ``it = iter(dataset)``) waits for its
    in-flight map calls, and a call into Python (``tf.numpy_function``: the PNG decoder, palette masks) can no longer
    take the GIL then: the process would hang at exit."""
    from tensorflow.python.data.ops.iterator_ops import OwnedIterator

    for value in gc.get_objects():
        if isinstance(value, OwnedIterator):
            value.__dict__.pop("_iterator_resource", None)


atexit.register(_release_iterators_before_exit)

LABEL_KINDS = ("train_ids", "label_ids", "ade20k", "voc", "cached", "custom")

_GRAY, _RGB, _PALETTE = 0, 2, 3  # PNG IHDR colour types
_PALETTE_KINDS = ("voc", "custom")
_COLOUR_TYPE_NAMES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8", b"BM", b"GIF8")


def kind_index(kind: str) -> int:
    if kind not in LABEL_KINDS:
        raise ValueError(f"unknown label kind {kind!r}; known: {LABEL_KINDS}")
    return LABEL_KINDS.index(kind)


def map_label(label, kind, reduce_zero_label: bool, coding=None):
    """Raw label file values -> training ids (uint8, 255 = ignore); ``coding``: the custom dataset's
    ``DatasetDescription`` (its value table holds its own reduce_zero_label)."""
    if kind == "custom":
        return tf.gather(tf.constant(coding.value_table()), tf.cast(label, tf.int32))
    if kind == "label_ids":
        return tf.gather(tf.constant(cityscapes_label_id_to_train_id()), tf.cast(label, tf.int32))
    if kind == "ade20k" and reduce_zero_label:
        return tf.where(label == 0, tf.constant(255, tf.uint8), label - 1)  # 0 -> 255, L -> L - 1
    return label


def voc_colours_to_indices(rgb):
    """Inverse of the VOC colour map: bit ``7 - k`` of channel ``c`` is bit ``3k + c`` of the index.
    Returns (indices uint8 [H, W, 1], whether every colour is a VOC colour)."""
    rgb = tf.cast(rgb, tf.int32)
    index = tf.zeros_like(rgb[..., :1])
    for k in range(3):
        for channel in range(3):
            bit = tf.bitwise.bitwise_and(tf.bitwise.right_shift(rgb[..., channel:channel + 1], 7 - k), 1)
            index += tf.bitwise.left_shift(bit, 3 * k + channel)
    in_map = tf.reduce_all(tf.equal(tf.bitwise.bitwise_and(rgb, 0x1F), 0))
    return tf.cast(index, tf.uint8), in_map


# --- graph form: inside tf.data, problems raise InvalidArgumentError naming the file --------------------------

def _assert(ok, message, path):
    return data_assertion(ok, message, path)


def checked_image_bytes(path, data):
    """``data`` after asserting a known image format (a bare decode error inside tf.data names no file)."""
    ok = tf.reduce_any([tf.equal(tf.strings.substr(data, 0, len(magic)), magic) for magic in _IMAGE_MAGIC])
    with tf.control_dependencies([_assert(ok, "not a PNG/JPEG/BMP/GIF image (corrupt or unknown format):", path)]):
        return tf.identity(data)


def within_pixel_budget(data, path, is_png, width_height):
    """``data`` after asserting that the size its header states (a PNG's IHDR, a JPEG's frame header) is within
    the pixel budget (``image_files.max_pixels_setting``): a file declaring 50000x50000 pixels is refused by name
    before anything is allocated for its pixels."""
    budget = max_pixels_setting()
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8")
    declared = tf.cond(is_png, lambda: tf.reverse(width_height, [0]),
                       lambda: tf.cond(is_jpeg, lambda: tf.image.extract_jpeg_shape(data)[:2],
                                       lambda: tf.zeros([2], tf.int32)))
    pixels = tf.reduce_prod(tf.cast(declared, tf.int64))
    check = data_assertion(pixels <= budget, "image states", declared[1], "x", declared[0],
                           "pixels, over the budget of", tf.constant(budget, tf.int64),
                           f"pixels ({MAX_PIXELS_VARIABLE} raises it):", path)
    with tf.control_dependencies([check]):
        return tf.identity(data)


def _decode_rgb(data):
    """The decoder of every image file: RGB uint8 [H, W, 3], grayscale replicated, alpha dropped, 16-bit scaled to
    8 bits."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    return tf.ensure_shape(image, [None, None, 3])


def decode_image(path, dtype=tf.float32):
    """RGB [H, W, 3] as ``dtype`` (float32, or uint8 as decoded): grayscale replicated, alpha dropped, 16-bit
    scaled to 8 bits (:class:`ImageFile`'s pixels)."""
    return tf.cast(ImageFile(path).pixels(), dtype)


class ImageFile:
    """An image file read but not yet decoded, for a step that needs only its top rows: ``frame`` (int32 [2],
    height and width, from a PNG's header) and :meth:`pixels`. The training crop decodes only down to the last row
    its window reads (``augment.rescaled_image_window``): a non-interlaced PNG's rows are stored in order, so the
    rows below are never inflated (``png.decode_rows``; on 1024x2048 Cityscapes-size files a 512x1024 crop at scale
    0.5-2.0 reads 73 % of the rows on average). Other files (JPEG, BMP, GIF, a PNG without a well-formed header) are
    decoded whole here, as :func:`decode_image` does, and ``frame`` is their decoded size."""

    def __init__(self, path):
        self.path = path
        self.data = checked_image_bytes(path, tf.io.read_file(path))
        head = tf.strings.join([tf.strings.substr(self.data, 0, 24), b"\0" * 24])  # short files: no substr error
        width_height = tf.io.decode_raw(tf.strings.substr(head, 16, 8), tf.int32, little_endian=False)
        self.is_png = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 16), SIGNATURE + b"\0\0\0\x0dIHDR"),
                                     tf.reduce_all(width_height > 0))
        self.data = within_pixel_budget(self.data, path, self.is_png, width_height)
        self._whole = tf.cond(self.is_png, lambda: tf.zeros([0, 0, 3], tf.uint8), lambda: _decode_rgb(self.data))
        self.frame = tf.cond(self.is_png, lambda: tf.reverse(width_height, [0]), lambda: tf.shape(self._whole)[:2])

    def pixels(self, rows=None):
        """RGB uint8 [h, W, 3], the image's top ``h >= rows`` rows (``rows`` an int32 scalar; None: every row), the
        same pixels as TensorFlow's ``decode_image(..., channels=3)`` (``png.decode_rows``: common PNGs decoded
        there, the others by TensorFlow, from their top rows' PNG where it can be made)."""
        rows = tf.constant(0) if rows is None else rows
        return tf.cond(self.is_png, lambda: decode_png_rows(self.data, rows), lambda: self._whole)


def decode_png_rows(data, rows=0):
    """RGB uint8 [h, W, 3] of the PNG file ``data``: its top ``h >= rows`` rows (every row when ``rows`` is 0), the
    same pixels as TensorFlow's decoder gives (``png.decode_rows``: common PNGs decoded there, the others by
    TensorFlow, from their top rows' PNG where it can be made)."""
    pixels, rest = tf.numpy_function(decode_rows, [data, rows], [tf.uint8, tf.string], stateful=False)
    pixels = tf.ensure_shape(pixels, [None, None, 3])
    return tf.cond(tf.shape(pixels)[0] > 0, lambda: pixels, lambda: _decode_rgb(tf.ensure_shape(rest, [])))


def colours_to_classes(rgb, colours, path, source: str):
    """RGB uint8 [H, W, 3] -> class ids uint8 [H, W, 1] through ``colours`` (class id -> (r, g, b)); a colour
    not among them fails naming the file, the colour, how many pixels carry it and ``source``."""
    keys = np.array([r * 65536 + g * 256 + b for r, g, b in colours], np.int32)
    order = np.argsort(keys, kind="stable").astype(np.int32)
    sorted_keys = tf.constant(keys[order])
    pixels = tf.cast(rgb, tf.int32)
    flat = tf.reshape(pixels[..., 0] * 65536 + pixels[..., 1] * 256 + pixels[..., 2], [-1])
    position = tf.minimum(tf.searchsorted(sorted_keys, flat), len(keys) - 1)
    found = tf.equal(tf.gather(sorted_keys, position), flat)
    unknown = tf.logical_not(found)
    count = tf.reduce_sum(tf.cast(unknown, tf.int32))
    first = tf.gather(flat, tf.argmax(tf.cast(unknown, tf.int32)))
    check = tf.debugging.Assert(tf.equal(count, 0), [
        "mask", path, "has", count, "pixels of colour (r g b)", first // 65536, first // 256 % 256, first % 256,
        "that", source, "does not declare (segmentation_colors); declare it or repaint those pixels"])
    with tf.control_dependencies([check]):
        classes = tf.gather(tf.constant(order), position)
    return tf.cast(tf.reshape(classes, tf.concat([tf.shape(rgb)[:2], [1]], 0)), tf.uint8)


def _palette_indices(path) -> np.ndarray:
    from PIL import Image  # only palette masks of custom datasets need it

    if isinstance(path, np.ndarray):  # run eagerly (read_label), tf.numpy_function passes a 0-d array of bytes
        path = path.item()
    with Image.open(path.decode() if isinstance(path, bytes) else path) as image:
        return np.asarray(image, np.uint8)[..., None]


def _custom_mask_types(coding) -> tuple[list[int], str]:
    """(the PNG colour types a custom dataset's masks may have, what to say is expected instead)."""
    rgb = f"an RGB colour mask with the colours of {coding.source}"
    if coding.mask_encoding == "rgb":
        return [_RGB, _PALETTE], rgb
    index = "a grayscale or palette PNG of class ids"
    if coding.mask_encoding == "index":
        return [_GRAY, _PALETTE], index
    if coding.colours:
        return [_GRAY, _PALETTE, _RGB], f"{index}, or {rgb}"
    return [_GRAY, _PALETTE], f"{index} (RGB colour masks need segmentation_colors in {coding.source})"


def _decode_custom_label(data, path, colour_type, coding):
    """A custom dataset's mask -> raw class values: grayscale as is, a palette PNG's own indices (or, with
    ``mask_encoding`` rgb, its colours), an RGB PNG through the declared colours."""
    allowed, expected = _custom_mask_types(coding)
    check = tf.debugging.Assert(tf.reduce_any(tf.equal(colour_type, allowed)), [
        "mask PNG has colour type", colour_type, "(0 grayscale, 2 RGB, 3 palette, 4/6 with alpha); expected",
        expected + ":", path])
    with tf.control_dependencies([check]):
        data = tf.identity(data)

    def colours():
        return colours_to_classes(tf.io.decode_png(data, channels=3), coding.colours, path, coding.source)

    def palette():
        if coding.mask_encoding == "rgb":
            return colours()
        indices = tf.numpy_function(_palette_indices, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(indices, [None, None, 1])

    def gray_or_rgb():
        if not coding.colours:
            return tf.io.decode_png(data, channels=1)
        return tf.cond(tf.equal(colour_type, _RGB), colours, lambda: tf.io.decode_png(data, channels=1))

    return tf.cond(tf.equal(colour_type, _PALETTE), palette, gray_or_rgb)


def decode_label(path, kind_id, coding=None):
    """Raw label values uint8 [H, W, 1] of the PNG at ``path`` (``kind_id``: index in ``LABEL_KINDS``;
    ``coding``: the description of a custom dataset, whose masks are decoded by its rules)."""
    data = tf.io.read_file(path)
    header = tf.strings.join([tf.strings.substr(data, 0, 26), b"\0" * 26])  # short files: no substr error
    is_png = tf.equal(tf.strings.substr(header, 0, 16), SIGNATURE + b"\0\0\0\x0dIHDR")
    data = within_pixel_budget(data, path, is_png, tf.io.decode_raw(tf.strings.substr(header, 16, 8), tf.int32,
                                                                    little_endian=False))
    png8 = tf.logical_and(tf.equal(tf.strings.substr(header, 0, 4), b"\x89PNG"),
                          tf.equal(tf.strings.substr(header, 24, 1), b"\x08"))  # IHDR bit depth
    colour_type = tf.io.decode_raw(tf.strings.substr(header, 25, 1), tf.uint8)[0]
    if coding is not None:  # palette PNGs may index with 1, 2 or 4 bits (Pillow writes few colours so)
        depth = tf.io.decode_raw(tf.strings.substr(header, 24, 1), tf.uint8)[0]
        ok = tf.logical_or(png8, tf.logical_and(tf.equal(tf.strings.substr(header, 0, 4), b"\x89PNG"),
                                                tf.logical_and(tf.equal(colour_type, _PALETTE),
                                                               tf.reduce_any(tf.equal(depth, [1, 2, 4])))))
        with tf.control_dependencies([_assert(ok, "mask is not an 8-bit PNG class map:", path)]):
            return _decode_custom_label(tf.identity(data), path, colour_type, coding)
    palette_allowed = tf.reduce_any(tf.equal(kind_id, [kind_index(k) for k in _PALETTE_KINDS]))
    format_ok = tf.logical_or(tf.equal(colour_type, _GRAY),
                              tf.logical_and(tf.equal(colour_type, _PALETTE), palette_allowed))
    checks = [_assert(png8, "label is not an 8-bit PNG class map:", path),
              tf.debugging.Assert(format_ok, ["label PNG has colour type", colour_type, "(0 grayscale, 2 RGB, "
                                              "3 palette, 4/6 with alpha); expected a grayscale class map (or a "
                                              "palette PNG with the VOC colours for PASCAL VOC):", path])]
    with tf.control_dependencies(checks):
        data = tf.identity(data)

    def from_palette():
        indices, in_map = voc_colours_to_indices(tf.io.decode_png(data, channels=3))
        with tf.control_dependencies([_assert(in_map, "label colours are not the VOC palette (a re-saved or "
                                              "resized label?):", path)]):
            return tf.identity(indices)

    return tf.cond(tf.equal(colour_type, _PALETTE), from_palette, lambda: tf.io.decode_png(data, channels=1))


def _label_sized(image_size, image_path, label_path, kind_id, reduce_zero_label: bool, coding=None):
    """The label of ``label_path`` in training ids, after asserting that its size is ``image_size``."""
    label = decode_label(label_path, kind_id, coding)
    same_size = tf.debugging.Assert(tf.reduce_all(tf.equal(image_size, tf.shape(label)[:2])),
                                    ["image and label sizes differ:", image_path, "is (H W)", image_size,
                                     "but", label_path, "is", tf.shape(label)[:2]])
    with tf.control_dependencies([same_size]):
        if coding is not None:  # a custom dataset's samples are all of its kind
            return map_label(label, "custom", reduce_zero_label, coding)
        kinds = [k for k in LABEL_KINDS if k != "custom"]
        return tf.switch_case(kind_id, [lambda k=k: map_label(label, k, reduce_zero_label) for k in kinds])


def decode_pair(image_path, label_path, kind_id, reduce_zero_label: bool, coding=None, image_dtype=tf.float32):
    """(image [H, W, 3] as ``image_dtype``, label uint8 [H, W, 1] in training ids) of one sample; sizes must
    agree."""
    image = decode_image(image_path, image_dtype)
    return image, _label_sized(tf.shape(image)[:2], image_path, label_path, kind_id, reduce_zero_label, coding)


def image_file_and_label(image_path, label_path, kind_id, reduce_zero_label: bool, coding=None):
    """(:class:`ImageFile` of the image, label uint8 [H, W, 1] in training ids) of one sample, for the training crop,
    which decodes the image's top rows only; sizes must agree (the image's from its header)."""
    image = ImageFile(image_path)
    return image, _label_sized(image.frame, image_path, label_path, kind_id, reduce_zero_label, coding)


# --- eager form: Python errors naming the file ------------------------------------------------------------------

def label_format_problem(path, kind: str, coding=None) -> str | None:
    """Why the file at ``path`` cannot be a label of ``kind`` judged by its PNG header, or None."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    if len(header) < 26 or header[:4] != b"\x89PNG":
        what = "a JPEG file" if header[:2] == b"\xff\xd8" else "not a PNG file"
        return f"{what}, expected an 8-bit PNG class map (lossless: a JPEG mask changes class ids at edges)"
    if header[24] != 8 and not (coding is not None and header[25] == _PALETTE and header[24] in (1, 2, 4)):
        return f"{header[24]}-bit PNG, expected an 8-bit class map"
    colour_type = header[25]
    if coding is not None:
        allowed, expected = _custom_mask_types(coding)
        if colour_type in allowed:
            return None
        return f"{_COLOUR_TYPE_NAMES.get(colour_type, colour_type)} PNG, expected {expected}"
    if colour_type == _GRAY or (colour_type == _PALETTE and kind in _PALETTE_KINDS):
        return None
    expected = "a palette PNG with the VOC colours or a grayscale index PNG" if kind in _PALETTE_KINDS \
        else "a single-channel (grayscale) class map"
    return f"{_COLOUR_TYPE_NAMES.get(colour_type, colour_type)} PNG, expected {expected}"


def _eager(function, *args):
    try:
        return function(*args)
    except tf.errors.OpError as error:
        message = pipeline_problem(error) or error.message.splitlines()[0]
        raise ValueError(message.replace("assertion failed: ", "")) from None


def read_image(path) -> np.ndarray:
    """uint8 RGB [H, W, 3]; ValueError '<path>: image does not decode (...)', or naming its size when its
    header states more pixels than the budget."""
    try:
        check_image_size(path)
    except ImageTooLarge:
        raise
    except ValueError:  # not a format the header reader knows, or cut off: TensorFlow's decoder gives its verdict
        pass
    try:
        return tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False).numpy()
    except tf.errors.OpError as error:
        raise ValueError(f"{path}: image does not decode ({error.message.splitlines()[0]})") from None


def read_label(path, kind: str, coding=None) -> np.ndarray:
    """Raw label values uint8 [H, W, 1]; ValueError '<path>: <what is wrong>'."""
    problem = label_format_problem(path, kind, coding)
    if problem:
        raise ValueError(f"{path}: {problem}")
    try:
        return _eager(decode_label, tf.constant(str(path)), tf.constant(kind_index(kind)), coding).numpy()
    except ValueError as error:
        if "VOC palette" in str(error):
            raise ValueError(f"{path}: label colours are not the VOC palette (a re-saved or resized label?)") from None
        if str(error).startswith("mask "):
            raise ValueError(" ".join(str(error).split())) from None
        raise ValueError(f"{path}: label does not decode ({error})") from None


def read_pair(sample, reduce_zero_label: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [H, W, 3], label uint8 [H, W, 1] in training ids) of a ``layouts.Sample``."""
    image = read_image(sample.image)
    label = read_label(sample.label, sample.label_kind, sample.coding)
    if label.shape[:2] != image.shape[:2]:
        raise ValueError(f"{sample.label}: size {label.shape[1]}x{label.shape[0]} differs from its image "
                         f"{image.shape[1]}x{image.shape[0]}")
    return image, np.asarray(map_label(label, sample.label_kind, reduce_zero_label, sample.coding))

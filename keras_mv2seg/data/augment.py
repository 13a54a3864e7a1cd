"""The reference's training augmentations and test resize as pure TensorFlow graph ops.

Every random decision uses stateless random ops seeded from a per-example seed (shape [2] int), so a
pipeline is reproducible and can be resumed at any sample. Images are float32 RGB in 0..255 ([H, W, 3]),
labels uint8 [H, W, 1]; padding uses the label ``ignore_index`` and, for images, the pixel value that the
model's normalisation maps to 0 (``pad_pixel``), exactly like the reference padding after normalisation.
"""

from __future__ import annotations

import tensorflow as tf

from keras_mv2seg.ops import rescale_size, resize_image  # the test-time geometry, shared with inference


def _seeds(seed, count: int):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count))


def _uniform(seed, low=0.0, high=1.0):
    return tf.random.stateless_uniform([], seed, minval=low, maxval=high)


def resize_label(label, size):
    """Nearest neighbour with src = floor(dst * in / out) (OpenCV INTER_NEAREST); never creates new ids."""
    resized = tf.compat.v1.image.resize_nearest_neighbor(label[None], size, align_corners=False,
                                                         half_pixel_centers=False)
    return resized[0]


def random_rescale(image, label, seed, scale, ratio_range=(0.5, 2.0)):
    ratio = _uniform(seed, ratio_range[0], ratio_range[1])
    size = rescale_size(tf.shape(image)[0], tf.shape(image)[1], scale, ratio)
    # the reference resizes uint8 images: rounded back to integers
    return tf.round(tf.clip_by_value(resize_image(image, size), 0.0, 255.0)), resize_label(label, size)


def _crop_window(seed, height, width, crop_h, crop_w):
    seeds = _seeds(seed, 2)
    top = tf.random.stateless_uniform([], seeds[0], 0, tf.maximum(height - crop_h, 0) + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[1], 0, tf.maximum(width - crop_w, 0) + 1, dtype=tf.int32)
    return top, left


def _dominant_fraction(label_crop, ignore_index):
    """(number of classes, largest class share) of the non-ignored pixels of a crop."""
    values = tf.reshape(tf.cast(label_crop, tf.int32), [-1])
    counts = tf.math.bincount(values, minlength=256, maxlength=256)
    counts = tf.tensor_scatter_nd_update(counts, [[ignore_index]], [0])
    total = tf.reduce_sum(counts)
    present = tf.reduce_sum(tf.cast(counts > 0, tf.int32))
    share = tf.cast(tf.reduce_max(counts), tf.float32) / tf.cast(tf.maximum(total, 1), tf.float32)
    return present, share


def _choose_window(label_crop, seed, height, width, crop_size, cat_max_ratio, ignore_index, attempts):
    """(top, left) of mmseg RandomCrop's window in a ``height`` x ``width`` frame; ``label_crop(top, left)`` gives
    the label under a window, read only for the ``cat_max_ratio`` re-draws."""
    crop_h, crop_w = crop_size
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), attempts)
    top, left = _crop_window(seeds[0], height, width, crop_h, crop_w)
    if cat_max_ratio < 1.0:
        def redraw(i, top, left):
            return i + 1, *_crop_window(seeds[i], height, width, crop_h, crop_w)

        def keep_going(i, top, left):
            present, share = _dominant_fraction(label_crop(top, left), ignore_index)
            good = tf.logical_and(present > 1, share < cat_max_ratio)
            return tf.logical_and(i < attempts, tf.logical_not(good))

        _, top, left = tf.while_loop(keep_going, redraw, (tf.constant(1), top, left))
    return top, left


def random_crop(image, label, seed, crop_size, cat_max_ratio=0.75, ignore_index=255, attempts=10):
    """mmseg RandomCrop: a crop of at most ``crop_size``; when ``cat_max_ratio < 1`` the window is re-drawn
    up to ``attempts`` times until the crop has more than one class and the largest non-ignored class covers
    less than ``cat_max_ratio`` of it (the last draw is kept otherwise)."""
    crop_h, crop_w = crop_size

    def crop(tensor, top, left):
        return tensor[top: top + crop_h, left: left + crop_w]

    top, left = _choose_window(lambda top, left: crop(label, top, left), seed, tf.shape(image)[0],
                               tf.shape(image)[1], crop_size, cat_max_ratio, ignore_index, attempts)
    return crop(image, top, left), crop(label, top, left)


# --- the rescale and crop of one window ------------------------------------------------------------------------
# Rescaling a whole 1024x2048 image to up to 2048x4096 and then keeping a 512x1024 crop resizes up to 16x the
# pixels it keeps. These compute the crop's pixels alone, from the source rows and columns the window reads, with
# the sampling positions and arithmetic of the resize kernels themselves (TensorFlow's ResizeBilinear with half-pixel
# centres and ResizeNearestNeighbor without: float32 ``scale = in / out``, ``lerp = src - floor(src)``,
# ``top + (bottom - top) * y_lerp``), so the window equals the same window of the whole resize.

def _nearest_sources(positions, in_size, out_size):
    """Source index of each output position of ``resize_label`` (``min(floor(y * in / out), in - 1)``)."""
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    return tf.minimum(tf.cast(tf.floor(tf.cast(positions, tf.float32) * scale), tf.int32), in_size - 1)


def _bilinear_taps(positions, in_size, out_size):
    """(lower, upper, lerp) of each output position of ``resize_image``: ``src = (y + 0.5) * in / out - 0.5``."""
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    source = (tf.cast(positions, tf.float32) + 0.5) * scale - 0.5
    floor = tf.floor(source)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(source), tf.int32), in_size - 1)
    return lower, upper, source - floor


def _window_positions(start, length, out_size):
    """The output rows (or columns) of a window: ``start`` .. ``start + length``, cut at the frame's end."""
    return tf.range(start, tf.minimum(start + length, out_size))


def _reversed_if(flip, tensor, axis: int):
    """``tensor`` reversed along ``axis`` when the boolean tensor ``flip`` is true; as it is when ``flip`` is None."""
    if flip is None:
        return tensor
    return tf.cond(flip, lambda: tf.reverse(tensor, [axis]), lambda: tensor)


def _window_columns(left, size, crop_size, flip):
    """The window's columns (reversed when ``flip``: a left-right flip of the window is its columns read in
    reverse order, so the flip costs nothing)."""
    return _reversed_if(flip, _window_positions(left, crop_size[1], size[1]), 0)


def _label_window_columns_first(label, size, top, left, crop_size, flip=None):
    """The window of ``resize_label(label, size)`` as [w, h] (columns first: both gathers then move whole rows;
    the 75 % rule's class counts need no other order)."""
    rows = _nearest_sources(_window_positions(top, crop_size[0], size[0]), tf.shape(label)[0], size[0])
    columns = _nearest_sources(_window_columns(left, size, crop_size, flip), tf.shape(label)[1], size[1])
    return tf.gather(tf.transpose(tf.gather(label[..., 0], rows)), columns)


def rescaled_label_window(label, size, top, left, crop_size, flip=None):
    """``resize_label(label, size)[top:top + h, left:left + w]`` (flipped left-right when ``flip``, a boolean
    tensor) from the source pixels it reads."""
    return tf.transpose(_label_window_columns_first(label, size, top, left, crop_size, flip))[..., None]


def _rounded_product(product, ones):
    """``product`` as it is, rounded to float32 before the addition that follows: XLA's CPU compiler always fuses a
    multiply and an add into one instruction (rounding once), which moves about one pixel in a million across a
    rounding boundary; a bitwise AND with ``ones`` (all bits set, a runtime argument it cannot fold) keeps them
    apart."""
    return tf.bitcast(tf.bitwise.bitwise_and(tf.bitcast(product, tf.int32), ones), tf.float32)


def _bilinear_window(image, y0, y1, y_lerp, x0, x1, x_lerp, ones):
    """Each output pixel from its four source pixels with resize_bilinear's own operations in its order (``top_left +
    (top_right - top_left) * x_lerp``, the same for the bottom pair, then ``top + (bottom - top) * y_lerp``), rounded:
    the whole resize's pixels bit for bit. ``image`` uint8 or float32 [H, W, 3]; the taps [h] and [w]."""
    top, bottom = tf.gather(image, y0), tf.gather(image, y1)
    x_lerp, y_lerp = x_lerp[None, :, None], y_lerp[:, None, None]

    def across(rows):
        left = tf.cast(tf.gather(rows, x0, axis=1), tf.float32)
        right = tf.cast(tf.gather(rows, x1, axis=1), tf.float32)
        return left + _rounded_product((right - left) * x_lerp, ones)

    top, bottom = across(top), across(bottom)
    return tf.round(top + _rounded_product((bottom - top) * y_lerp, ones))


# One loop over the window's pixels, gathering from the source: 2-3x faster than the kernels on a CPU.
# One compilation per (source shape, crop size, dtype); sources are padded to a multiple of _SOURCE_STEP first, so
# that datasets whose images differ in size compile a few shapes only.
_bilinear_window_xla = tf.function(_bilinear_window, jit_compile=True, autograph=False)
_SOURCE_STEP = 128


def _padded_to(positions, length):
    """``positions`` (1 .. ``length`` of them) made ``length`` long by repeating the last one."""
    return tf.concat([positions, tf.fill([length - tf.size(positions)], positions[-1])], 0)


def _bucketed(image):
    """``image`` padded with zeros at the bottom and right to a multiple of ``_SOURCE_STEP`` (as it is when it is one
    already); the taps never read the padding."""
    shape = tf.shape(image)
    extra = (-shape[:2]) % _SOURCE_STEP
    return tf.cond(tf.reduce_any(extra > 0), lambda: tf.pad(image, [[0, extra[0]], [0, extra[1]], [0, 0]]),
                   lambda: image)


def _frame(image):
    """(height, width) of a crop's source: a pixel tensor [H, W, 3], or an image file decoded on demand
    (``decode.ImageFile``: ``frame`` from the file's header, ``pixels(rows)`` decodes its top rows)."""
    if hasattr(image, "pixels"):
        return image.frame[0], image.frame[1]
    return tf.shape(image)[0], tf.shape(image)[1]


def _rows_read(bottom_taps, height):
    """How many of the source's top rows the bilinear taps read, given ``bottom_taps`` (the lower, larger-index row
    of each pair): rounded up to a multiple of ``_SOURCE_STEP`` (so that ``_bucketed`` has nothing to copy), at most
    ``height``."""
    return tf.minimum((tf.reduce_max(bottom_taps) // _SOURCE_STEP + 1) * _SOURCE_STEP, height)


def source_rows_read(height, size, top, crop_size):
    """How many of a ``height``-row source's top rows :func:`rescaled_image_window` decodes for the window at row
    ``top`` of the rescaled ``size`` frame."""
    _, y1, _ = _bilinear_taps(_window_positions(top, crop_size[0], size[0]), height, size[0])
    return _rows_read(y1, height)


def rescaled_image_window(image, size, top, left, crop_size, flip=None):
    """``round(clip(resize_image(image, size)))[top:top + h, left:left + w]`` (flipped left-right when ``flip``)
    without resizing what the window drops (``image`` float32 or uint8, or a ``decode.ImageFile``, decoded here down
    to the last row the window reads, rounded up to a multiple of 128; float32 out): each window pixel from the four
    source pixels it reads, in one XLA loop (on 1024x2048 images, one thread: 2.9-3.2 ms for a 512x1024 window at
    any scale, the gathers and whole-frame kernel it replaces 4.3-7.6 ms). The same values bit for bit (no clip:
    bilinear weights are in [0, 1], so a value cannot leave 0..255 by more than float32 round-off, which the rounding
    absorbs)."""
    size = tf.convert_to_tensor(size, tf.int32)
    height, width = _frame(image)
    rows = _window_positions(top, crop_size[0], size[0])
    columns = _window_columns(left, size, crop_size, flip)
    y0, y1, y_lerp = _bilinear_taps(_padded_to(rows, crop_size[0]), height, size[0])
    x0, x1, x_lerp = _bilinear_taps(_padded_to(columns, crop_size[1]), width, size[1])
    if hasattr(image, "pixels"):
        image = image.pixels(_rows_read(y1, height))
    window = _bilinear_window_xla(_bucketed(image), y0, y1, y_lerp, x0, x1, x_lerp, tf.constant(-1, tf.int32))
    return window[: tf.size(rows), : tf.size(columns)]


def random_rescale_crop(image, label, scale_seed, crop_seed, scale, crop_size, ratio_range=(0.5, 2.0),
                        cat_max_ratio=0.75, ignore_index=255, attempts=10, flip=None):
    """``random_crop(*random_rescale(image, label, scale_seed, ...), crop_seed, ...)`` -- the same ratio, the same
    window (its re-draws read only the label's windows), the same pixels -- without rescaling what the crop
    drops; flipped left-right when ``flip`` (a boolean tensor; ``random_flip``'s decision). ``image``: pixels, or a
    ``decode.ImageFile`` of which only the rows the window reads are decoded."""
    size, top, left = rescale_crop_window(label, _frame(image), scale_seed, crop_seed, scale, crop_size, ratio_range,
                                          cat_max_ratio, ignore_index, attempts)
    return (rescaled_image_window(image, size, top, left, crop_size, flip),
            rescaled_label_window(label, size, top, left, crop_size, flip))


def rescale_crop_window(label, frame, scale_seed, crop_seed, scale, crop_size, ratio_range=(0.5, 2.0),
                        cat_max_ratio=0.75, ignore_index=255, attempts=10):
    """:func:`random_rescale_crop`'s draws: (the rescaled frame's size int32 [2], the window's top, left) for a
    source of ``frame`` = (height, width) whose label is ``label``."""
    ratio = _uniform(scale_seed, ratio_range[0], ratio_range[1])
    size = rescale_size(frame[0], frame[1], scale, ratio)
    top, left = _choose_window(lambda top, left: _label_window_columns_first(label, size, top, left, crop_size),
                               crop_seed, size[0], size[1], crop_size, cat_max_ratio, ignore_index, attempts)
    return tf.convert_to_tensor(size, tf.int32), top, left


def flip_decision(seed, probability=0.5):
    return _uniform(seed) < probability


def random_flip(image, label, seed, probability=0.5):
    flip = flip_decision(seed, probability)
    return _reversed_if(flip, image, 1), _reversed_if(flip, label, 1)


def _to_uint8_range(image):
    """Clip to 0..255 and truncate to integers, as the reference's ``astype(np.uint8)`` after each step."""
    return tf.floor(tf.clip_by_value(image, 0.0, 255.0))


def adjust_brightness(image, delta):
    return _to_uint8_range(image + delta)


def adjust_contrast(image, alpha):
    return _to_uint8_range(image * alpha)


# The two HSV steps in closed form on the 0..255 values as they are (the HSV round trip is linear in V, so no
# rescale to 0..1 is needed): one pass each under XLA, 1.5-2x faster than XLA's lowering of the round trip.

def _channels_value_chroma(image):
    """(red, green, blue [..., 1] each, value = the largest channel, chroma = largest - smallest) of RGB values."""
    red, green, blue = image[..., 0:1], image[..., 1:2], image[..., 2:3]
    largest = tf.maximum(tf.maximum(red, green), blue)
    return red, green, blue, largest, largest - tf.minimum(tf.minimum(red, green), blue)


def adjust_saturation(image, alpha):
    """Saturation times ``alpha``, clipped to 1 (the reference scales OpenCV's uint8 S channel), back to 0..255
    integers. In closed form: at a fixed hue and value every channel is ``V - S * V * g`` with ``g`` set by the hue,
    so scaling S moves each channel's gap to the largest, ``V - c``, by ``S' / S = min(alpha, V / (V - min))`` -- one
    pass without the HSV round trip, the same rounded values (the test checks it against TensorFlow's kernel and the
    float64 round trip)."""
    _, _, _, largest, gap = _channels_value_chroma(image)
    factor = tf.minimum(tf.cast(alpha, image.dtype), largest / tf.maximum(gap, 1e-6))
    return tf.round(tf.clip_by_value(largest - (largest - image) * factor, 0.0, 255.0))


def adjust_hue(image, delta):
    """Hue shifted by ``delta`` in OpenCV's 0..180 hue scale (2 degrees per unit), wrapping around, back to 0..255
    integers. In closed form, value and chroma kept: the hue in sextants (``h`` in 0..6) from the largest channel,
    shifted by ``delta / 30``, and each channel ``V - C * clip(min(k, 4 - k), 0, 1)`` with ``k = (n + h) mod 6``
    (``n`` = 5, 3, 1 for red, green, blue) -- one pass, the same rounded values as the HSV round trip (the test
    checks it against TensorFlow's kernel and the float64 round trip)."""
    red, green, blue, largest, chroma = _channels_value_chroma(image)
    safe = tf.maximum(chroma, 1e-6)
    sextant = tf.where(tf.equal(largest, red), (green - blue) / safe,
                       tf.where(tf.equal(largest, green), (blue - red) / safe + 2.0, (red - green) / safe + 4.0))
    sextant = sextant + tf.cast(delta, image.dtype) / 30.0

    def channel(n):
        k = n + sextant
        k = k - 6.0 * tf.floor(k / 6.0)
        return largest - chroma * tf.clip_by_value(tf.minimum(k, 4.0 - k), 0.0, 1.0)

    return tf.round(tf.clip_by_value(tf.concat([channel(5.0), channel(3.0), channel(1.0)], -1), 0.0, 255.0))


def random_hue_shift(seed, hue_delta):
    """mmseg's ``numpy.random.randint(-hue_delta, hue_delta)``: a whole number in -hue_delta .. hue_delta - 1."""
    return tf.floor(_uniform(seed, -hue_delta, hue_delta))


def _photometric_steps(image, apply, values, steps=None):
    """The four pixel steps in mmseg's order: brightness, contrast (first or last), saturation, hue. ``apply``:
    bool [5] (brightness, contrast, saturation, hue, contrast first); ``values``: float32 [4] (brightness delta,
    contrast alpha, saturation alpha, hue shift). ``steps``: the four step functions (default: ``adjust_*`` run
    op by op)."""
    brightness, contrast, saturation, hue = steps or (adjust_brightness, adjust_contrast, adjust_saturation,
                                                      adjust_hue)

    def maybe(flag, image, fn, value):
        return tf.cond(flag, lambda: fn(image, value), lambda: image)

    image = maybe(apply[0], image, brightness, values[0])
    image = maybe(tf.logical_and(apply[4], apply[1]), image, contrast, values[1])
    image = maybe(apply[2], image, saturation, values[2])
    image = maybe(apply[3], image, hue, values[3])
    return maybe(tf.logical_and(tf.logical_not(apply[4]), apply[1]), image, contrast, values[1])


# Each step compiled by XLA into one loop over the pixels (a 512x1024 crop: 0.8 ms for brightness or contrast, 1.2
# for saturation, 2.4 for hue; TensorFlow's fused HSV kernels: 10.4 and 8.1), with the same rounded values
# except at exact x.5 ties (as between any two float32 implementations).
# The decisions stay outside, in TensorFlow conditionals, so that a step not taken costs nothing (one XLA function
# with conditionals inside copied the image at each of them: 2.7 ms for a 512x1024 crop that no step changed).
# One compilation per image shape; ``train_augment`` gives them the crop size always.
_PHOTOMETRIC_STEPS_XLA = tuple(tf.function(step, jit_compile=True, autograph=False)
                               for step in (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue))


def photometric_parameters(seed, brightness_delta=32, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                           hue_delta=18):
    """mmseg PhotoMetricDistortion's random decisions for one image: (``apply`` bool [5], ``values`` float32 [4])
    as :func:`_photometric_steps` takes them."""
    seeds = _seeds(seed, 10)
    coin = lambda s: _uniform(s) < 0.5  # noqa: E731
    apply = tf.stack([coin(seeds[0]), coin(seeds[2]), coin(seeds[4]), coin(seeds[6]), coin(seeds[8])])
    values = tf.stack([_uniform(seeds[1], -brightness_delta, brightness_delta), _uniform(seeds[3], *contrast_range),
                       _uniform(seeds[5], *saturation_range), random_hue_shift(seeds[7], hue_delta)])
    return apply, values


def photometric_distortion(image, seed, brightness_delta=32, contrast_range=(0.5, 1.5),
                           saturation_range=(0.5, 1.5), hue_delta=18, jit: bool = True):
    """mmseg PhotoMetricDistortion on 0..255 values: brightness, contrast (first or last, chosen at random),
    saturation and hue (in OpenCV's 0..180 hue scale), each applied with probability 0.5, clipped to uint8.
    ``jit``: the pixel steps compiled by XLA (default; ``False``: op by op, the same values except
    at exact x.5 ties)."""
    apply, values = photometric_parameters(seed, brightness_delta, contrast_range, saturation_range, hue_delta)
    return _photometric_steps(tf.cast(image, tf.float32), apply, values, _PHOTOMETRIC_STEPS_XLA if jit else None)


def pad_to_size(image, label, size, pad_pixel, ignore_index=255, static: bool = True, image_step=None):
    """Pad bottom/right to ``size``: image with ``pad_pixel`` (per channel), label with ``ignore_index``
    (``static``: ``size`` is a Python pair, the result gets that static shape). ``image_step``: a per-pixel
    function of the image (the photometric distortion) run before the padding is put in -- on the image padded
    with zeros, so that it sees one shape whatever the image's size; the image's own pixels come out the same."""
    step = image_step or (lambda x: x)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    paddings = [[0, tf.maximum(size[0] - height, 0)], [0, tf.maximum(size[1] - width, 0)], [0, 0]]

    def padded():
        stepped = step(tf.pad(image, paddings))
        inside = tf.logical_and(tf.range(tf.shape(stepped)[0])[:, None] < height,
                                tf.range(tf.shape(stepped)[1])[None, :] < width)
        return (tf.where(inside[..., None], stepped, tf.constant(pad_pixel, stepped.dtype)),
                tf.pad(label, paddings, constant_values=ignore_index))

    full = tf.logical_and(height >= size[0], width >= size[1])
    image, label = tf.cond(full, lambda: (step(image), label), padded)
    if not static:
        return image, label
    return tf.ensure_shape(image, [size[0], size[1], 3]), tf.ensure_shape(label, [size[0], size[1], 1])


def train_augment(image, label, seed, *, scale, crop_size, ratio_range, cat_max_ratio, ignore_index, pad_pixel,
                  photometric: bool = True):
    """The reference's training chain: rescale, crop and flip (the three as one, :func:`random_rescale_crop`),
    photometric distortion on the crop, pad. ``image`` float32 or uint8 (the decoded file, not yet cast), or a
    ``decode.ImageFile`` (the crop decodes its top rows only)."""
    seeds = _seeds(seed, 4)
    image, label = random_rescale_crop(image, label, seeds[0], seeds[1], scale, crop_size, ratio_range,
                                       cat_max_ratio, ignore_index, flip=flip_decision(seeds[2]))
    distort = (lambda x: photometric_distortion(x, seeds[3])) if photometric else None
    return pad_to_size(image, label, crop_size, pad_pixel, ignore_index, image_step=distort)


def deeplab_random_scale(image, label, seed, min_scale=0.5, max_scale=2.0, step=0.25):
    """The official DeepLab's random scale (``core/preprocess_utils.py`` ``get_random_scale`` and
    ``randomly_scale_image_and_label``): one of ``min, min + step, ..., max`` (uniform in [min, max] when
    ``step`` is 0), new size ``int(size * scale)``, image bilinear and label nearest with align_corners=True
    (float image, no rounding)."""
    if step:
        count = int(round((max_scale - min_scale) / step)) + 1
        choice = tf.random.stateless_uniform([], seed, 0, count, dtype=tf.int32)
        scale = min_scale + tf.cast(choice, tf.float32) * step
    else:
        scale = _uniform(seed, min_scale, max_scale)
    size = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * scale, tf.int32)
    image = tf.raw_ops.ResizeBilinear(images=image[None], size=size, align_corners=True)[0]
    label = tf.raw_ops.ResizeNearestNeighbor(images=label[None], size=size, align_corners=True)[0]
    return image, label


def deeplab_train_augment(image, label, seed, *, crop_size, ratio_range, scale_step, ignore_index, pad_pixel):
    """The official DeepLab's training chain (``input_preprocess.py`` ``preprocess_image_and_label``): random
    scale, pad bottom/right to at least the crop size (image with the mean pixel, label with the ignore
    label), a uniform random crop, left-right flip with probability 0.5; no photometric distortion."""
    seeds = _seeds(seed, 3)
    image = tf.cast(image, tf.float32)
    image, label = deeplab_random_scale(image, label, seeds[0], ratio_range[0], ratio_range[1], scale_step)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    padded = (tf.maximum(height, crop_size[0]), tf.maximum(width, crop_size[1]))
    image, label = pad_to_size(image, label, padded, pad_pixel, ignore_index, static=False)
    image, label = random_crop(image, label, seeds[1], crop_size, cat_max_ratio=1.0, ignore_index=ignore_index)
    image, label = random_flip(image, label, seeds[2])
    return (tf.ensure_shape(image, [crop_size[0], crop_size[1], 3]),
            tf.ensure_shape(label, [crop_size[0], crop_size[1], 1]))


def test_resize(image, scale):
    """The reference's test-time resize: keep ratio to fit ``scale`` (Cityscapes (2048, 1024): unchanged for
    2048x1024 images; ADE20K (2048, 512): short side 512, long side at most 2048)."""
    size = rescale_size(tf.shape(image)[0], tf.shape(image)[1], scale)
    return resize_image(image, size)

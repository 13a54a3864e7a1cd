"""Images and network outputs as streams of rows, so that no full-resolution logits are ever held.

A *row stream* has ``height``, ``width``, ``channels`` and ``rows(start, stop) -> float32 [stop - start, width,
channels]``, asked for in order: ``start`` never goes back (a stream keeps only the rows it may still be asked
for). Streams compose: an image (:class:`ArrayRows`), resized (:class:`Resized`), mirrored (:class:`Flipped`),
run through the network window by window (:class:`Windowed`, mmseg's ``slide_inference`` whose overlapping
logits are summed only over the band of rows that windows still cover) or whole (:class:`Whole`), and averaged
(:class:`Averaged`, the multi-scale + flip test). Each computes what the in-memory forms of ``modes.py``
compute, row band by row band: the same windows, the same bilinear weights as TensorFlow's ``ResizeBilinear``.
"""

from __future__ import annotations

import numpy as np


class ArrayRows:
    """An array [H, W, C] (any dtype, e.g. a decoded uint8 image) as a row stream of float32 rows."""

    def __init__(self, array):
        array = np.asarray(array)
        if array.ndim != 3:
            raise ValueError(f"expected an array [height, width, channels], received shape {array.shape}")
        self.array = array
        self.height, self.width, self.channels = array.shape

    def rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop], np.float32)


class Flipped:
    """``source`` mirrored left to right (the flip of the flip test; flipping it again restores it)."""

    def __init__(self, source):
        self.source = source
        self.height, self.width, self.channels = source.height, source.width, source.channels

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.source.rows(start, stop)[:, ::-1]


def bilinear_taps(in_size: int, out_size: int, align_corners: bool):
    """TensorFlow's ``ResizeBilinear`` weights along one axis (``half_pixel_centers`` when not
    ``align_corners``): for each output index the lower and upper source index and the weight of the upper,
    computed in float32 as TensorFlow computes them."""
    if align_corners and out_size > 1:
        scale = np.float32((in_size - 1) / (out_size - 1))
    else:
        scale = np.float32(in_size / out_size)
    index = np.arange(out_size, dtype=np.float32)
    position = index * scale if align_corners else (index + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(position), in_size - 1).astype(np.int64)
    return lower, upper, (position - floor).astype(np.float32)


class Resized:
    """``source`` resized bilinearly to ``size`` (height, width): ``align_corners`` as the official DeepLab,
    otherwise half-pixel centres (``tf.image.resize``, PyTorch ``align_corners=False``, OpenCV INTER_LINEAR).
    Columns are interpolated first, then rows, in float32, as TensorFlow's kernel does."""

    def __init__(self, source, size, align_corners: bool):
        self.source = source
        self.height, self.width = int(size[0]), int(size[1])
        self.channels = source.channels
        if min(self.height, self.width) < 1:
            raise ValueError(f"cannot resize to {size}")
        self.top, self.bottom, self.y_weight = bilinear_taps(source.height, self.height, align_corners)
        self.left, self.right, x_weight = bilinear_taps(source.width, self.width, align_corners)
        self.x_weight = x_weight[None, :, None]
        self.identity = (source.height, source.width) == (self.height, self.width)

    def rows(self, start: int, stop: int) -> np.ndarray:
        if self.identity:
            return self.source.rows(start, stop)
        first, last = int(self.top[start]), int(self.bottom[stop - 1])
        band = self.source.rows(first, last + 1)
        left, right = band[:, self.left], band[:, self.right]
        across = left + (right - left) * self.x_weight  # [source rows, width, channels]
        upper, lower = across[self.top[start:stop] - first], across[self.bottom[start:stop] - first]
        return upper + (lower - upper) * self.y_weight[start:stop, None, None]


def window_starts(size: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """mmseg's slide windows along one axis: ``(start, stop)`` every ``stride``, the last aligned to the edge,
    one window (the whole axis) when the axis is shorter than the crop."""
    count = max(size - crop + stride - 1, 0) // stride + 1
    spans = []
    for index in range(count):
        stop = min(index * stride + crop, size)
        spans.append((max(stop - crop, 0), stop))
    return spans


class Windowed:
    """mmseg ``slide_inference`` as a row stream: logits of ``crop`` windows every ``stride`` pixels averaged
    where they overlap. Windows are run one grid row at a time (``batch`` windows per network call); their sums
    are kept in a ring of rows (row ``y`` in slot ``y % capacity``) holding only the rows a later window may still
    add to and those not yet handed out -- about one window's height -- and rows no window will touch again are
    handed out divided by their window count."""

    def __init__(self, source, forward, crop, stride, *, batch: int = 1):
        if min(*crop, *stride) < 1:
            raise ValueError(f"window crop and stride must be positive, received {tuple(crop)} and {tuple(stride)}")
        self.source, self.forward, self.batch = source, forward, max(1, int(batch))
        self.height, self.width = source.height, source.width
        self.channels = None  # known after the first window
        self.grid_rows = window_starts(self.height, crop[0], stride[0])
        self.grid_cols = window_starts(self.width, crop[1], stride[1])
        self.row_count = np.zeros(self.height, np.float32)
        for y1, y2 in self.grid_rows:
            self.row_count[y1:y2] += 1
        col_count = np.zeros(self.width, np.float32)
        for x1, x2 in self.grid_cols:
            col_count[x1:x2] += 1
        self.col_count = col_count[None, :, None]
        self.next_grid_row = 0
        self.kept = 0  # rows below this one are handed out and dropped
        self.filled = 0  # rows below this one hold sums (their slots are in use)
        self.ring = None  # [capacity, width, channels] float32 sums, made with the first window
        self._run_grid_row()  # the channel count is known from here on

    def windows(self) -> int:
        return len(self.grid_rows) * len(self.grid_cols)

    def _final_rows(self) -> int:
        """Rows above this one get no more windows."""
        if self.next_grid_row >= len(self.grid_rows):
            return self.height
        return self.grid_rows[self.next_grid_row][0]

    def _spans(self, start: int, stop: int):
        """The ring's slices of rows ``start..stop`` (two when they wrap around its end)."""
        capacity = len(self.ring)
        first, count = start % capacity, stop - start
        if first + count <= capacity:
            return [slice(first, first + count)]
        return [slice(first, capacity), slice(0, first + count - capacity)]

    def _slots(self, start: int, stop: int) -> np.ndarray:
        return np.concatenate([self.ring[part] for part in self._spans(start, stop)], axis=0)

    def _reserve(self, stop: int):
        """Make rows ``filled..stop`` hold zero sums, growing the ring when the rows held would not fit."""
        if stop <= self.filled:
            return
        if self.ring is None or stop - self.kept > len(self.ring):
            held = self._slots(self.kept, self.filled) if self.ring is not None and self.filled > self.kept else None
            self.ring = np.zeros((stop - self.kept, self.width, self.channels), np.float32)
            if held is not None:  # the rows held move to their slots in the larger ring
                self._write(self.kept, held)
        else:
            for part in self._spans(self.filled, stop):
                self.ring[part] = 0
        self.filled = stop

    def _write(self, start: int, rows: np.ndarray):
        offset = 0
        for part in self._spans(start, start + len(rows)):
            count = part.stop - part.start
            self.ring[part] = rows[offset:offset + count]
            offset += count

    def _run_grid_row(self):
        y1, y2 = self.grid_rows[self.next_grid_row]
        strip = self.source.rows(y1, y2)
        for first in range(0, len(self.grid_cols), self.batch):
            spans = self.grid_cols[first:first + self.batch]
            logits = self.forward(np.stack([strip[:, x1:x2] for x1, x2 in spans]))
            self.channels = logits.shape[-1]
            self._reserve(y2)
            for (x1, x2), window in zip(spans, logits):
                offset = 0
                for part in self._spans(y1, y2):
                    count = part.stop - part.start
                    self.ring[part, x1:x2] += window[offset:offset + count]
                    offset += count
        self.next_grid_row += 1

    def rows(self, start: int, stop: int) -> np.ndarray:
        self.kept = max(self.kept, start)  # rows above start are never asked for again: their slots are free
        while self._final_rows() < stop:
            self._run_grid_row()
        band = self._slots(start, stop)
        band /= self.row_count[start:stop, None, None] * self.col_count
        return band


class Whole:
    """The network on the whole of ``source`` at once (mmseg's ``whole`` test mode); the logits are held until
    their last row is handed out, so callers use it only for images within a memory budget."""

    def __init__(self, source, forward):
        self.logits = forward(source.rows(0, source.height)[None])[0]
        self.height, self.width, self.channels = self.logits.shape

    def rows(self, start: int, stop: int) -> np.ndarray:
        band = self.logits[start:stop]
        if stop >= self.height:
            self.logits = self.logits[:0]  # nothing is asked for below the last row
        return band


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


class Averaged:
    """The mean of ``streams`` (same size), each passed through ``transform`` first (softmax for the
    multi-scale + flip test, whose probabilities are averaged)."""

    def __init__(self, streams, transform=None):
        self.streams, self.transform = list(streams), transform or (lambda band: band)
        first = self.streams[0]
        self.height, self.width, self.channels = first.height, first.width, first.channels

    def rows(self, start: int, stop: int) -> np.ndarray:
        total = None
        for stream in self.streams:
            band = self.transform(stream.rows(start, stop))
            total = band if total is None else total + band
        return total / len(self.streams)


def row_bands(height: int, band: int):
    """(start, stop) of consecutive bands of ``band`` rows covering ``height`` rows."""
    for start in range(0, height, band):
        yield start, min(start + band, height)

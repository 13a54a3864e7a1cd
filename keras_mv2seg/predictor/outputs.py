"""Prediction outputs written band by band as inference hands out rows, so that no output of a large image is
ever whole in memory: PNGs (class ids, overlays, confidence) and float16 ``.npy`` probability maps. Each is
written under a staging name and renamed over its target when complete (``files.atomic_save``'s rule): a
crash or a full disk leaves what was there before, never half a file."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from keras_mv2seg.files import remove_stale_staging, staging_path

try:  # ISA-L's deflate: 4-6x zlib's speed at level 1-2, same format (a dependency, see docs/dependencies.md)
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - isal is in install_requires
    _deflate = zlib


class _StagedFile:
    """A file written under a staging name and renamed over ``path`` by :meth:`close`; :meth:`abort` (or an
    exception inside ``with``) removes the staging file."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.path)
        self.staging = staging_path(self.path)
        self.handle = open(self.staging, "wb")

    def close(self):
        try:
            self._finish()
            self.handle.close()
        except BaseException:
            self.abort()
            raise
        os.replace(self.staging, self.path)

    def _finish(self):
        """What a format writes after its last row (checked there: every row written)."""

    def abort(self):
        try:
            self.handle.close()
        except OSError:  # the flush of a file on a full disk
            pass
        self.staging.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:
            self.abort()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


class PngRows(_StagedFile):
    """An 8-bit grey (``channels=1``) or RGB (``channels=3``) PNG of ``height`` x ``width`` written as rows
    arrive (:meth:`write`, top to bottom). Rows are Sub-filtered (RGB) or unfiltered (grey, class ids) and
    deflated at a fast level."""

    def __init__(self, path, height: int, width: int, channels: int):
        super().__init__(path)
        if channels not in (1, 3):
            raise ValueError(f"PngRows writes grey or RGB, not {channels} channels")
        self.height, self.width, self.channels, self.written = height, width, channels, 0
        colour_type = 0 if channels == 1 else 2
        self.handle.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8,
                                                                            colour_type, 0, 0, 0)))
        self.deflate = _deflate.compressobj(2)

    def write(self, rows: np.ndarray):
        rows = np.asarray(rows, np.uint8).reshape(len(rows), self.width * self.channels)
        if self.written + len(rows) > self.height:
            raise ValueError(f"{self.path}: {self.written + len(rows)} rows written to a {self.height}-row PNG")
        lines = np.empty((len(rows), 1 + rows.shape[1]), np.uint8)
        if self.channels == 3:  # Sub filter: each byte minus the byte one pixel to its left
            lines[:, 0] = 1
            lines[:, 1:4] = rows[:, :3]
            np.subtract(rows[:, 3:], rows[:, :-3], out=lines[:, 4:])
        else:
            lines[:, 0] = 0
            lines[:, 1:] = rows
        compressed = self.deflate.compress(lines.tobytes())
        if compressed:
            self.handle.write(_chunk(b"IDAT", compressed))
        self.written += len(rows)

    def _finish(self):
        if self.written != self.height:
            raise ValueError(f"{self.path}: {self.written} of {self.height} rows written")
        self.handle.write(_chunk(b"IDAT", self.deflate.flush()) + _chunk(b"IEND", b""))


class NpyRows(_StagedFile):
    """A ``.npy`` array [height, width, channels] of ``dtype`` (float16 for probabilities) written row band by
    row band, sequentially: readable with ``np.load(path, mmap_mode="r")`` without loading it whole."""

    def __init__(self, path, shape, dtype=np.float16):
        super().__init__(path)
        self.shape, self.dtype, self.written = tuple(int(v) for v in shape), np.dtype(dtype), 0
        np.lib.format.write_array_header_1_0(self.handle, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                          "fortran_order": False, "shape": self.shape})

    def write(self, rows: np.ndarray):
        rows = np.ascontiguousarray(rows, self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.written + len(rows) > self.shape[0]:
            raise ValueError(f"{self.path}: rows of shape {rows.shape} do not continue an array of {self.shape}")
        self.handle.write(rows.tobytes())
        self.written += len(rows)

    def _finish(self):
        if self.written != self.shape[0]:
            raise ValueError(f"{self.path}: {self.written} of {self.shape[0]} rows written")


def blend(image_rows: np.ndarray, colours: np.ndarray, opacity: float) -> np.ndarray:
    """The overlay: ``(1 - opacity) * image + opacity * colours``, uint8."""
    mixed = (1.0 - opacity) * np.asarray(image_rows, np.float32) + opacity * np.asarray(colours, np.float32)
    return np.clip(mixed, 0, 255).astype(np.uint8)


def confidence_rows(probabilities: np.ndarray) -> np.ndarray:
    """The top class probability of each pixel as 0..255 (uint8), the confidence picture."""
    return np.round(probabilities.max(axis=-1) * 255).astype(np.uint8)

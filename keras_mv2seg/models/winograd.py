"""Winograd minimal filtering for the dense 3x3 stride-1 convolutions (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016): F(m x m, 3 x 3) computes an m x m block of outputs from an (m+2) x (m+2)
input tile with (m+2)^2 multiplications per (input, output) channel pair instead of 9 m^2 -- 2.25x fewer for
F(2x2, 3x3), 4x fewer for F(4x4, 3x3) -- as

    Y = A^T [ (G g G^T) * (B^T d B) ] A      (per tile d, per kernel g; * element-wise, summed over channels)

The channel sums of all tiles are one batched matrix product ``[(m+2)^2, tiles, C] @ [(m+2)^2, C, O]``, which
every CPU runtime runs near its peak; the tile transforms are additions of strided slices (B and A hold only
0, +-1 and small powers of two), so the graph is made of ops every converter and runtime knows (Pad,
StridedSlice, Add/Sub/Mul, Reshape, MatMul) and needs no custom kernel. The result equals the direct
convolution up to float32 rounding (F(2x2): ~1e-6 relative, F(4x4): ~1e-5 relative; measured in the tests).

Used for deployment graphs only (``layers.winograd_convolutions``): training keeps Keras' convolution.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# (B^T, G, A^T) for F(m x m, 3 x 3), the interpolation points 0, +-1 (m = 2) and 0, +-1, +-2 (m = 4).
TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)),
}
TILES = tuple(TRANSFORMS)


def check_tile(tile: int):
    """ValueError unless ``tile`` is an output tile size with transforms here."""
    if tile not in TRANSFORMS:
        raise ValueError(f"Winograd output tile must be one of {TILES}, received {tile!r}")


def _combine(matrix: np.ndarray, parts: list) -> list:
    """``[sum_j matrix[i, j] * parts[j] for each row i]`` with the zero terms left out and +-1 as add/subtract."""
    rows = []
    for row in matrix:
        total = None
        for weight, part in zip(row, parts):
            if weight == 0:
                continue
            term = part if weight == 1 else -part if weight == -1 else part * np.float32(weight)
            total = term if total is None else total + term
        rows.append(total)
    return rows


def transformed_kernel(kernel, tile: int):
    """``G g G^T`` of a 3x3 kernel [3, 3, C, O] -> [(m+2)^2, C, O] (constant-folded in exported graphs)."""
    check_tile(tile)
    g = tf.constant(TRANSFORMS[tile][1], kernel.dtype)
    n = tile + 2
    u = tf.einsum("ia,abco,jb->ijco", g, kernel, g)
    return tf.reshape(u, [n * n, kernel.shape[2], kernel.shape[3]])


def winograd_conv3x3(x, kernel, tile: int = 4, padding: str = "same"):
    """The 3x3, stride-1, dilation-1 convolution of ``x`` [B, H, W, C] (static H, W, C) with ``kernel``
    [3, 3, C, O] by Winograd F(tile x tile, 3 x 3); ``padding`` 'same' (1 pixel each side) or 'valid'."""
    check_tile(tile)
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', received {padding!r}")
    b_t, _, a_t = TRANSFORMS[tile]
    n = tile + 2
    _, height, width, channels = x.shape
    if None in (height, width, channels):
        raise ValueError(f"Winograd convolution needs a static input size, received {tuple(x.shape)}")
    border = 1 if padding == "same" else 0
    out_h, out_w = height + 2 * border - 2, width + 2 * border - 2
    tiles_h, tiles_w = -(-out_h // tile), -(-out_w // tile)
    # pad to whole tiles: (tiles * m + 2) input rows/columns, the extra ones (zeros) only feed cropped outputs
    x = tf.pad(x, [[0, 0], [border, tiles_h * tile + 2 - height - border],
                   [border, tiles_w * tile + 2 - width - border], [0, 0]])
    rows = _combine(b_t, [x[:, a:a + tile * tiles_h:tile] for a in range(n)])          # B^T d (rows)
    v = [part for row in rows for part in _combine(b_t, [row[:, :, b:b + tile * tiles_w:tile] for b in range(n)])]
    v = tf.reshape(tf.stack(v), [n * n, -1, channels])                                # [n^2, B*tiles, C]
    m = tf.matmul(v, transformed_kernel(kernel, tile))                                 # [n^2, B*tiles, O]
    m = tf.reshape(m, [n, n, -1, tiles_h, tiles_w, kernel.shape[-1]])
    s = _combine(a_t, [m[i] for i in range(n)])                                       # A^T over rows
    y = [tf.stack(_combine(a_t, [row[j] for j in range(n)]), axis=3) for row in s]     # A over columns
    y = tf.stack(y, axis=2)                                                           # [B, th, m, tw, m, O]
    y = tf.reshape(y, [-1, tiles_h * tile, tiles_w * tile, kernel.shape[-1]])
    return y[:, :out_h, :out_w]

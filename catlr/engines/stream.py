"""The stream engine: the prepared file's uint8 images read a block at a time at every pass.

X is never held whole, so memory stays near the block budget whatever m is. NumPy
converts uint8 to floats on one thread, and here that conversion costs more than the
products it feeds (bench/scale.py): with numba installed (pip install "catlr[fast]") a
compiled kernel does the same division, x / 255 computed in float64 and rounded to the
block's dtype, bit for bit as NumPy does, on every core.
"""

from __future__ import annotations

import numpy as np

from ..design import Pixels
from . import BLOCK_SHARE

try:
    import numba
except ImportError:  # catlr[fast] not installed: NumPy converts
    numba = None


if numba is not None:
    @numba.njit(parallel=True, cache=True)
    def _divide(src, out):
        for i in numba.prange(src.shape[0]):
            for j in range(src.shape[1]):
                out[i, j] = src[i, j] / 255.0


def normalize_into(pixels, out):
    """pixels (k, n_x) uint8 / 255 into out (k, n_x) float32 or float64; returns out."""
    _divide(np.ascontiguousarray(pixels), out)
    return out


class Stream(Pixels):
    """Images on disk (an h5py dataset or a zarr array) read a block at a time at every pass."""

    engine = "stream"

    def __init__(self, x, dtype="float32", block_bytes=64 << 20):
        super().__init__(x, dtype)
        self.block_bytes = block_bytes

    def block_rows(self) -> int:
        # a block's uint8 read and its float copy both fit block_bytes, in whole chunks
        k = max(1, self.block_bytes // (self.n_x * (1 + self.dtype.itemsize)))
        chunk = (getattr(self.x, "chunks", None) or (1,))[0]
        return max(chunk, k // chunk * chunk) if k >= chunk else k

    def blocks(self):
        if numba is None:
            yield from super().blocks()
            return
        k = self.block_rows()
        buf = np.empty((k, self.n_x), self.dtype)
        for start in range(0, self.m, k):
            part = np.asarray(self.x[start:start + k]).reshape(-1, self.n_x)
            yield start, normalize_into(part, buf[:len(part)])

    def dense(self):
        return self


def build(x, choice, cfg, on_event=None):
    return Stream(x, choice.dtype, block_bytes=int(choice.budget * BLOCK_SHARE))

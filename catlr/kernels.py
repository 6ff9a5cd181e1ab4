"""Compiled kernels for the streaming engine (numba, optional: pip install "catlr[fast]").

NumPy converts uint8 to floats on one thread, and in the streaming engine that conversion
costs more than the products it feeds (bench/scale.py). This kernel does the same division,
x / 255 computed in float64 and rounded to the block's dtype, bit for bit as NumPy does, on
every core. Only design.Stream imports this module, and only when numba is installed.
"""

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _divide(src, out):
    for i in numba.prange(src.shape[0]):
        for j in range(src.shape[1]):
            out[i, j] = src[i, j] / 255.0


def normalize_into(pixels, out):
    """pixels (k, n_x) uint8 / 255 into out (k, n_x) float32 or float64; returns out."""
    _divide(np.ascontiguousarray(pixels), out)
    return out

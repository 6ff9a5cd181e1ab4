"""The fused uint8 products compiled by numba (pip install "catlr[fast]"): loaded by
kernels.py on first use only, so that a command that never trains (predict, serve) never
pays numba's import.

    scores(x, w, b, out)   out[i] = sum_j x[i, j] w[j] + b
    back(x, d, out, parts) out[j] = sum_i d[i] x[i, j]  (parts: threads)
x (k, n) uint8, C order; w, d, out and b in one float type (float32 or float64), which
every product and sum is computed in (each pixel converted exactly). kernels.py folds the
1 / 255 into w and d. Each output element is summed by one thread in a fixed order
(scores: rows split between threads; back: the columns split in one part per thread,
at multiples of ALIGN, each column summed over the rows in order), so the bits of an
element do not depend on which thread computes it. `fastmath` allows LLVM to
reassociate a dot product into vector lanes and to fuse multiply-adds; it assumes
nothing about NaN or infinity, so a diverging run still shows as one.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ..files.caches import numba_cache


def configure_numba() -> None:
    """numba's threading layer: `workqueue` unless NUMBA_THREADING_LAYER chooses. On the
    shared 2-core machine OpenMP's threads (numba's default here), spinning between
    kernels, made a pass 1.5 to 3 times slower than workqueue's (bench/README.md). It runs
    one parallel kernel at a time: kernels.py calls the parallel ones from the main thread
    only. Set before the first parallel kernel runs (this import, or stream.py's)."""
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        numba.config.THREADING_LAYER = "workqueue"


configure_numba()


def _nothing():
    pass


def _probe():
    numba.njit(cache=True)(_nothing)  # numba finds its cache place here, compiling nothing


# numba caches beside this file, or in the user's cache; with neither writable (installed
# read-only, a read-only HOME) in a private folder (files.caches), else compiled each start
CACHE = numba_cache(_probe)

FASTMATH = {"reassoc", "contract", "nsz"}
BACK_FASTMATH = {"contract", "nsz"}  # back sums no reduction across lanes: no reassociation
ALIGN = 256  # `back` splits the columns at multiples of this


def _as(v, like):
    """v converted to the float type of `like` (numba's own rule would make uint8 times
    float32 a float64)."""
    return v


@overload(_as)
def _as_impl(v, like):
    to = np.float32 if like == types.float32 else np.float64
    return lambda v, like: to(v)


@numba.njit(nogil=True, fastmath=FASTMATH, cache=CACHE)
def _score_rows(x, w, b, out, i):
    """out[i:i + 4] of `scores` (fewer at the end of x)."""
    k, n = x.shape
    zero = _as(0, w[0])
    if i + 4 <= k:  # four rows share each load of w
        a0, a1, a2, a3 = zero, zero, zero, zero
        r0, r1, r2, r3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        for j in range(n):
            wj = w[j]
            a0 += _as(r0[j], wj) * wj
            a1 += _as(r1[j], wj) * wj
            a2 += _as(r2[j], wj) * wj
            a3 += _as(r3[j], wj) * wj
        out[i], out[i + 1], out[i + 2], out[i + 3] = a0 + b, a1 + b, a2 + b, a3 + b
    else:
        for r in range(i, k):
            a, row = zero, x[r]
            for j in range(n):
                a += _as(row[j], w[j]) * w[j]
            out[r] = a + b


@numba.njit(nogil=True, fastmath=BACK_FASTMATH, cache=CACHE)
def _back_columns(x, d, out, j0, j1):
    """out[j0:j1] of `back`, the rows in order (vectorized over j)."""
    k = x.shape[0]
    acc = np.zeros(j1 - j0, d.dtype)
    i = 0
    while i + 4 <= k:  # four rows per pass over the sums
        d0, d1, d2, d3 = d[i], d[i + 1], d[i + 2], d[i + 3]
        # slices indexed from 0: LLVM sees contiguous loads (an index j0 + jj, which
        # could be negative to numba, made it load byte by byte)
        r0, r1, r2, r3 = x[i, j0:j1], x[i + 1, j0:j1], x[i + 2, j0:j1], x[i + 3, j0:j1]
        for jj in range(j1 - j0):
            acc[jj] += (d0 * _as(r0[jj], d0) + d1 * _as(r1[jj], d0)
                        + d2 * _as(r2[jj], d0) + d3 * _as(r3[jj], d0))
        i += 4
    while i < k:
        di, r0 = d[i], x[i, j0:j1]
        for jj in range(j1 - j0):
            acc[jj] += di * _as(r0[jj], di)
        i += 1
    out[j0:j1] = acc


# Each product twice: on every core (prange), and on this thread alone for small blocks,
# where waking the other threads costs more than it saves. Two functions, not one
# compiled twice: numba's cache keys a function by its source, not by `parallel`.
@numba.njit(parallel=True, nogil=True, fastmath=FASTMATH, cache=CACHE)
def scores(x, w, b, out):
    for t in prange((x.shape[0] + 3) // 4):
        _score_rows(x, w, b, out, 4 * t)


@numba.njit(nogil=True, fastmath=FASTMATH, cache=CACHE)
def scores_serial(x, w, b, out):
    for t in range((x.shape[0] + 3) // 4):
        _score_rows(x, w, b, out, 4 * t)


@numba.njit(parallel=True, nogil=True, fastmath=BACK_FASTMATH, cache=CACHE)
def back(x, d, out, parts):
    # `parts` (numba's threads) parts of the columns: each thread streams its share of
    # every row from memory; narrower parts, each walking all rows, read memory far slower
    n = x.shape[1]
    width = (n + parts * ALIGN - 1) // (parts * ALIGN) * ALIGN
    for c in prange((n + width - 1) // width):
        _back_columns(x, d, out, c * width, min(n, (c + 1) * width))


@numba.njit(nogil=True, fastmath=BACK_FASTMATH, cache=CACHE)
def back_serial(x, d, out):
    _back_columns(x, d, out, 0, x.shape[1])


def threads() -> int:
    """The threads numba's parallel kernels run on here."""
    return numba.get_num_threads()

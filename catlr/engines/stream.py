"""The stream engine: the prepared file's uint8 images read a block at a time at every pass.

X is never held whole, so memory stays near the block budget whatever m is. The products
run on the uint8 blocks as read (design.py's fused products, kernels.py), and a second
thread reads the next block while this one is computed: two uint8 buffers (kept from pass
to pass), which the budget's block share holds. The read and the products then overlap: h5py keeps the GIL
while it reads, but the compiled kernels run without it (kernels_numba: nogil), and the
reader reads a piece of a block at a time so the products' Python between kernels waits
little. A read that fails in that thread is raised here, where the pass asks for the
block, as the checked reader's one line; the thread ends with the pass, however the pass
ends (its last block, an error, a break, Ctrl-C).

`blocks()` still yields X's floats (for what needs floats): with numba
installed (pip install "catlr[fast]") a compiled kernel divides, x / 255 computed in
float64 and rounded to the block's dtype, bit for bit as NumPy does, on every core.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from ..learn.design import Pixels
from ..learn.kernels import run_kernel
from . import BLOCK_SHARE

try:
    import numba
except ImportError:  # catlr[fast] not installed: NumPy converts
    numba = None
else:
    # kernels_numba's import sets numba's threading layer, and whether it can cache
    from ..learn import kernels_numba


if numba is not None:
    @numba.njit(parallel=True, cache=kernels_numba.CACHE)
    def _divide(src, out):
        for i in numba.prange(src.shape[0]):
            for j in range(src.shape[1]):
                out[i, j] = src[i, j] / 255.0


def normalize_into(pixels, out):
    """pixels (k, n_x) uint8 / 255 into out (k, n_x) float32 or float64; returns out."""
    run_kernel(_divide, out.dtype, np.ascontiguousarray(pixels), out)
    return out


PIECE_BYTES = 4 << 20  # read at a time by the read-ahead thread (h5py holds the GIL in a read)
THREAD_NAME = "catlr-read-ahead"


def read_rows(x, start, stop, out):
    """x[start:stop] (images) into out[:stop - start] (rows of n_x uint8) through x's checked
    reader, straight into the buffer where the reader can (HDF5); returns that view."""
    n = stop - start
    view = out[:n]
    if hasattr(x, "read_into"):
        x.read_into(start, stop, view.reshape((n, *x.shape[1:])))
    else:  # a Zarr array, some rows of an array (datasets.Rows)
        view[...] = np.asarray(x[start:stop]).reshape(n, -1)
    return view


class Stream(Pixels):
    """Images on disk (an h5py dataset or a zarr array) read a block at a time at every pass.
    `ahead`: read the next block in a second thread while this one is computed."""

    engine = "stream"

    def __init__(self, x, dtype="float32", block_bytes=64 << 20, ahead=True):
        super().__init__(x, dtype)
        self.block_bytes = block_bytes
        self.ahead = ahead
        self._pool = []  # read buffers kept from pass to pass (no fresh pages each pass)

    def _take(self, n):
        """n read buffers: kept ones, or new ones (a pass inside another gets its own)."""
        shape = (min(self.read_rows(), self.m), self.n_x)
        return [self._pool.pop() if self._pool else np.empty(shape, np.uint8)
                for _ in range(n)]

    def _give(self, bufs):
        self._pool = (self._pool + bufs)[:2]

    def _whole_chunks(self, k):
        chunk = (getattr(self.x, "chunks", None) or (1,))[0]
        return max(chunk, k // chunk * chunk) if k >= chunk else k

    def block_rows(self) -> int:
        # the float blocks of blocks(): a block's uint8 read and its float copy both fit
        return self._whole_chunks(max(1, self.block_bytes // (self.n_x * (1 + self.dtype.itemsize))))

    def read_rows(self) -> int:
        """Examples per read: two uint8 buffers (the block computed, the next one read) fit
        block_bytes, in whole chunks of the file."""
        return self._whole_chunks(max(1, self.block_bytes // (2 * self.n_x)))

    def blocks(self):
        if numba is None:
            yield from super().blocks()
            return
        k = self.block_rows()
        buf = np.empty((k, self.n_x), self.dtype)
        for start in range(0, self.m, k):
            part = np.asarray(self.x[start:start + k]).reshape(-1, self.n_x)
            yield start, normalize_into(part, buf[:len(part)])

    def product_blocks(self):
        sub = self.pixel_rows()  # products a cache-sized piece of a read at a time
        for start, part in (self._ahead() if self.ahead else self._serial()):
            for i in range(0, len(part), sub):
                yield start + i, part[i:i + sub]

    def _serial(self):
        k = self.read_rows()
        bufs = self._take(1)
        try:
            for start in range(0, self.m, k):
                yield start, read_rows(self.x, start, min(start + k, self.m), bufs[0])
        finally:
            self._give(bufs)

    def _ahead(self):
        k = self.read_rows()
        bufs = self._take(2)
        piece = max(1, self._whole_chunks(max(1, PIECE_BYTES // self.n_x)))
        ready, free, stop = queue.Queue(), queue.Queue(), threading.Event()
        free.put(0)
        free.put(1)

        def reader():
            try:
                for start in range(0, self.m, k):
                    i = free.get()
                    if stop.is_set():
                        return
                    end = min(start + k, self.m)
                    for s in range(start, end, piece):  # a piece at a time: see above
                        if stop.is_set():
                            return
                        read_rows(self.x, s, min(s + piece, end), bufs[i][s - start:])
                    ready.put((start, bufs[i][:end - start], i))
            except BaseException as e:  # raised where the pass asks for the block
                ready.put(e)
                return
            ready.put(None)

        thread = threading.Thread(target=reader, name=THREAD_NAME, daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                start, part, i = item
                yield start, part
                free.put(i)  # computed: the reader may fill it again
        finally:
            stop.set()
            free.put(-1)  # wakes a reader waiting for a buffer
            thread.join()
            self._give(bufs)

    def dense(self):
        return self


def build(x, choice, cfg, on_event=None):
    return Stream(x, choice.dtype, block_bytes=int(choice.budget * BLOCK_SHARE))

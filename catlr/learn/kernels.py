"""Products of a block of uint8 pixels with a float vector, without a float copy of the block.

    times(x, v, b)    x v + b   (k,)   x (k, n) uint8, v (n,) floats
    times_t(x, d)     d x       (n,)   d (k,) floats
computed in v's (d's) float type, each pixel converted exactly. design.py folds X's
1 / 255 into v and d, so that a block of X = x / 255 is never built. With numba
installed (pip install "catlr[fast]") the compiled kernels of kernels_numba.py run them
(on every core for a block of PARALLEL_BYTES or more, on this thread below: waking the
other threads costs more than small blocks save; on this thread always where the process
is limited to one, OMP_NUM_THREADS=1 as a Dask worker's nanny sets: one worker a core);
numba is imported on first use only.
Without it NumPy converts SCRATCH_BYTES of rows at a time into a float buffer and
multiplies there (BLAS), so no float copy of the whole block is made either.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ..packages import installed

PARALLEL_BYTES = 1 << 17   # pixels in a block from which the compiled kernels use every core
SCRATCH_BYTES = 4 << 20    # the NumPy path's float buffer
USE_NUMBA = True           # False: NumPy's path even where numba is installed (tests, bench)
_compiled = None           # kernels_numba once imported; False: numba is not installed
ONE_THREAD = os.environ.get("OMP_NUM_THREADS", "").strip() == "1"


def compiled(use=True):
    """The compiled kernels (catlr.learn.kernels_numba), or None: numba is not installed, or
    USE_NUMBA is off, or use=False (NumPy's path asked for)."""
    global _compiled
    if not (USE_NUMBA and use):
        return None
    if _compiled is None:
        try:
            from . import kernels_numba
        except ImportError:  # catlr[fast] not installed
            kernels_numba = False
        _compiled = kernels_numba
    return _compiled or None


def available() -> bool:
    """Whether the compiled kernels would run (numba installed, USE_NUMBA on), found without
    importing numba: what the planner prices the primal form's passes by."""
    if _compiled is not None:
        return USE_NUMBA and bool(_compiled)
    return USE_NUMBA and installed("numba")


def loaded() -> bool:
    """Whether the compiled kernels are imported in this process already (a pass whose bits
    need not be NumPy's may then run on them without paying for numba's import)."""
    return USE_NUMBA and bool(_compiled)


_ready = set()  # (kernel, float type) pairs numba has compiled or loaded in this process


def run_kernel(kernel, dtype, *args):
    """kernel(*args); its first call for a float type compiles it (or loads numba's cache),
    with Ctrl-C, SIGTERM and SIGHUP held until that is over: a KeyboardInterrupt raised
    inside LLVM's callbacks left the process hung, or printing "Exception ignored on
    calling ctypes callback" (seen with a fresh cache). The signal then acts as it would
    have, a few seconds late."""
    key = (kernel.__name__, np.dtype(dtype).name)
    if key in _ready or threading.current_thread() is not threading.main_thread():
        return kernel(*args)
    import signal

    came, old = [], {}
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None and signal.getsignal(sig) not in (signal.SIG_IGN, None):
            old[sig] = signal.signal(sig, lambda signum, frame: came.append(signum))
    try:
        result = kernel(*args)
        _ready.add(key)
        return result
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if came:
            signal.raise_signal(came[0])  # now, to the handler that was there


def _parallel(x) -> bool:
    # every core only from the main thread: numba's workqueue layer (kernels_numba) runs
    # one parallel kernel at a time, and a thread of a pool (a Dask worker's) has one core
    return (x.size >= PARALLEL_BYTES and not ONE_THREAD
            and threading.current_thread() is threading.main_thread())


def _pixels(x):
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2):
        raise TypeError(f"expected (k, n) uint8 pixels, got {getattr(x, 'dtype', type(x))} "
                        f"of shape {getattr(x, 'shape', None)}")
    return np.ascontiguousarray(x)


def _floats(v):
    v = np.asarray(v)
    return v if v.dtype in (np.float32, np.float64) else v.astype(np.float64)


def times(x, v, b=0.0, out=None, fast=True):
    """x v + b (k,) in v's float type: x (k, n) uint8, v (n,) floats, b a number.
    fast=False: NumPy's path, always (for a single pass, which numba's import does not pay
    for, bench/startup.py: the dual form's one X c, say; always, so that its bits
    do not depend on whether something else loaded numba)."""
    x, v = _pixels(x), np.ascontiguousarray(_floats(v))
    b = v.dtype.type(b)
    if out is None:
        out = np.empty(x.shape[0], v.dtype)
    if x.shape[0] == 0:
        return out
    fast = compiled(fast)
    if fast is not None:
        kernel = fast.scores if _parallel(x) else fast.scores_serial
        run_kernel(kernel, v.dtype, x, v, b, out)
        return out
    for i, block in _float_rows(x, v.dtype):
        np.matmul(block, v, out=out[i:i + len(block)])
    out += b
    return out


def times_t(x, d, fast=True):
    """d x (n,) in d's float type: x (k, n) uint8, d (k,) floats; `fast` as for times."""
    x, d = _pixels(x), np.ascontiguousarray(_floats(d))
    out = np.zeros(x.shape[1], d.dtype)
    if x.shape[0] == 0:
        return out
    fast = compiled(fast)
    if fast is not None:
        if _parallel(x):
            run_kernel(fast.back, d.dtype, x, d, out, fast.threads())
        else:
            run_kernel(fast.back_serial, d.dtype, x, d, out)
        return out
    for i, block in _float_rows(x, d.dtype):
        out += d[i:i + len(block)] @ block
    return out


def _float_rows(x, dtype):
    """NumPy's path: (start, rows of x as `dtype`), SCRATCH_BYTES of floats at a time in
    one reused buffer (exact: every uint8 is a float), so no float copy of x is built."""
    rows = max(1, SCRATCH_BYTES // (x.shape[1] * np.dtype(dtype).itemsize))
    buf = np.empty((min(rows, x.shape[0]), x.shape[1]), dtype)
    for i in range(0, x.shape[0], rows):
        part = x[i:i + rows]
        block = buf[:len(part)]
        block[...] = part
        yield i, block

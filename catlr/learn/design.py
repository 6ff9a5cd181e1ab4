"""X (n_x, m) as gradient descent sees it: a few products, computed a block of examples at a time.

Every solver runs against this seam, and nothing else touches X:
    gradient(w, b, y, s)  (X dZ, sum(dZ), the summed cost) with dZ = s (sigmoid(w.T X + b) - y):
                          the primal step's products, one read of each block per call
    scores(w, b, fast)    Z = w.T X + b  (m,)
    gram()                K = X.T X      (m, m), the dual form's one pass
    times(c)              X c            (n_x,), w from the dual coefficients
    normal(w, b)          (X u, sum(u))  with u = X.T w + b: [X; 1] [X; 1].T [w; b], the
                          power iteration's product, one read of each block
A source of data is a subclass that says where blocks of X come from (`blocks`); an
engine that runs the products elsewhere (a cluster) overrides `gradient` and `scores`
and maps `block_gradient` over its blocks (catlr/engines/). Blocks are X's columns,
transposed: (k, n_x) floats, one example per row. A source of pixels (Pixels and the
engines over it) runs its products on the uint8 pixels instead (`product_blocks`): a
block of X = x / 255 is never built, the 1 / 255 is folded into w (once per pass) and
into the residual (kernels.py: numba's compiled kernels, or NumPy).

Arrays: a design's `xp` is the array library of its data (the Python Array API
standard; NumPy unless X is a CuPy, torch or array-api-strict array). The solvers
create every array with `xp`, so the same loop runs wherever the blocks live, and
`to_host` brings results to NumPy once, at the end.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .loss import Objective

SCALE = 255.0               # X = pixels / 255: the course's normalization, written once
NORMALIZATION = "x / 255"   # how model files name it
BLOCK_BYTES = 8 << 20       # a block stays in the cache between its two products
PIXEL_BLOCK_BYTES = 32 << 20  # pixels per fused product: few parallel calls (each waits for
                              # every thread, and on a shared machine a thread can be late)
FEATURE_BLOCK = 2048        # features converted at a time when X is read by columns (gram),
FEATURE_BYTES = 32 << 20    # or as many as this many bytes of floats hold, for a small m: each
                            # block is a few products, whose BLAS threads meet at each one
EACH_ROWS = 16              # examples scored at a time by scores_each: its buffer stays in cache
GRAM_SLAB = 256             # columns of K added at a time: the product's temporary is m x GRAM_SLAB
COURSE = Objective()        # the course's cost: no penalty, every example weighs 1


def feature_block(m: int, n_x: int) -> int:
    """Features a block when X is read by columns (K): FEATURE_BLOCK, or more for a small m
    (FEATURE_BYTES of float64 floats), n_x at most."""
    return max(1, min(n_x, max(FEATURE_BLOCK, FEATURE_BYTES // (8 * max(m, 1)))))


def normalize(pixels, dtype="float64", out=None):
    """uint8 pixels (any shape) / 255 in `dtype` (or into `out`)."""
    if out is not None:
        return np.divide(pixels, SCALE, out=out)
    return np.divide(pixels, SCALE, dtype=np.dtype(dtype))


def namespace(x):
    """The Array API namespace of x: NumPy for NumPy arrays, else array_api_compat's."""
    if isinstance(x, (np.ndarray, np.generic)):
        return np
    import array_api_compat  # only for other array libraries: a NumPy run never loads it

    return array_api_compat.array_namespace(x)


def to_host(a, dtype=np.float64) -> np.ndarray:
    """a (any array library, any device) as a NumPy array of `dtype`."""
    if not isinstance(a, (np.ndarray, np.generic, float, int)):
        if hasattr(a, "get"):            # CuPy: device to host
            a = a.get()
        elif hasattr(a, "cpu"):          # torch
            a = a.detach().cpu().numpy()
        else:                            # array-api-strict and other DLPack producers
            a = np.from_dlpack(a)
    return np.asarray(a, dtype=dtype)


def dtype_name(dtype) -> str:
    """'float64' for np.float64 and for another library's float64 alike."""
    return getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]


def is_pixels(xt) -> bool:
    """Whether a block is uint8 pixels (X = xt / 255) rather than X's floats."""
    return isinstance(xt, np.ndarray) and xt.dtype == np.uint8


def block_scores(xt, w, b, w255=None):
    """xt w + b (k,): a block's scores. For a block of pixels, X = xt / 255: the product
    runs on the uint8 pixels with w / 255 (w255: computed once by a caller with many blocks)."""
    if is_pixels(xt):
        return kernels.times(xt, w / SCALE if w255 is None else w255, b)
    z = xt @ w
    z += b
    return z


def block_times(d, xt):
    """d xt (n_x,): X's block times a vector of its examples. For pixels, (d / 255) xt."""
    if is_pixels(xt):
        return kernels.times_t(xt, d / SCALE)
    return d @ xt


def block_gradient(xt, y, w, b, s=None, objective=COURSE, w255=None):
    """The update rule's products on one block: xt (k, n_x) = X[:, block].T (floats, or the
    uint8 pixels of X = xt / 255), y (k,), weights s (k,) or None. Returns (xt.T dz (n_x,),
    sum(dz), the block's summed cost), with dz = objective.residual(xt w + b): written
    once, run by every engine. w255: w / 255, when the caller computed it once for its blocks."""
    z = block_scores(xt, w, b, w255)
    total = objective.terms(z, y, s)
    dz = objective.residual(z, y, s)
    return block_times(dz, xt), namespace(dz).sum(dz), total


class Design:
    """X (n_x, m) seen through its blocks of examples. Subclasses define `blocks`."""

    n_x: int
    m: int
    dtype: object            # X's float type, in its own library
    xp = np                  # the array namespace of X's blocks
    engine = "memory"        # where the products run, for -v and the model's metadata
    objective = COURSE       # set by the solver: the cost that `gradient` differentiates
    iteration = 0            # set by the solver at each iteration's start: the one an
                             # engine names in what it reports (a worker lost)

    def blocks(self):
        """Yield (start, xt) with xt = X[:, start:start + k].T, (k, n_x) floats."""
        raise NotImplementedError

    def product_blocks(self):
        """The blocks the products run on: `blocks()`, or for a source of pixels the uint8
        pixels themselves (X = block / 255)."""
        return self.blocks()

    def block_rows(self) -> int:
        return max(1, BLOCK_BYTES // (self.n_x * np.dtype(self.dtype).itemsize))

    def asarray(self, a):
        """A NumPy vector (labels, weights) as an array of X's library and dtype."""
        return self.xp.asarray(np.asarray(a, dtype=dtype_name(self.dtype)), dtype=self.dtype)

    def gradient(self, w, b, y, s=None):
        xp = self.xp
        g = xp.zeros(self.n_x, dtype=self.dtype)
        sd = total = 0.0
        w255 = None
        for start, xt in self.product_blocks():
            stop = start + xt.shape[0]
            if w255 is None and is_pixels(xt):
                w255 = w / SCALE  # once per pass
            gb, sb, tb = block_gradient(xt, y[start:stop], w, b,
                                        None if s is None else s[start:stop], self.objective,
                                        w255)
            g += gb
            sd += sb
            total += tb
        return g, sd, total

    def scores(self, w, b, fast=False):
        """Z = w.T X + b (m,). `fast`: a source of pixels runs on the compiled kernels where
        installed (a run whose passes ran on them), else on NumPy's path (Pixels.scores);
        floats run on BLAS either way."""
        parts = [block_scores(xt, w, 0.0) for _, xt in self.product_blocks()]
        z = parts[0] if len(parts) == 1 else self.xp.concat(parts)
        return z + b

    def normal(self, w, b):
        """(X u (n_x,), sum(u)) for u = X.T w + b (m,), w (n_x,) float64: [X; 1] [X; 1].T
        [w; b], the power iteration's product (descent.largest_step), in one read of each
        block. Its bits need not be NumPy's: on pixels it runs on the compiled kernels when
        they are loaded already (a primal run's), else on NumPy's path (no numba import
        for a few passes)."""
        fast = kernels.loaded()
        v, total, w255 = None, 0.0, None
        for _, xt in self.product_blocks():
            if is_pixels(xt):
                if w255 is None:
                    w255 = w / SCALE  # once per pass
                u = kernels.times(xt, w255, b, fast=fast)
                part = kernels.times_t(xt, u / SCALE, fast=fast)
            else:
                u = xt @ w + b
                part = u @ xt
            total += float(self.xp.sum(u))
            if v is None:
                v = part
            else:
                v += part
        return v, total

    def gram(self):
        return self.dense().gram()

    def cross(self, other):
        """X.T X_other (m, m_other): this design's examples against another's (the
        held-out examples' scores in the dual form come from it)."""
        return self.dense().X.T @ other.dense().X

    def times(self, c):
        w = self.xp.zeros(self.n_x, dtype=self.dtype)
        for start, xt in self.product_blocks():
            w += block_times(c[start:start + xt.shape[0]], xt)
        return w

    def dense(self) -> Design:
        """This X in memory for the primal form's many passes (floats, or the uint8 pixels
        for a source of pixels), or the source itself where it runs the passes (stream,
        dask)."""
        raise NotImplementedError

    def close(self):
        """Let go of what the source holds (a cluster, for the Dask engine)."""


class Dense(Design):
    """A float X (n_x, m) in memory, of any Array API library: what
    LogisticRegression.fit(X, Y) is given."""

    def __init__(self, X):
        self.X = X
        self.n_x, self.m = (int(n) for n in X.shape)
        self.dtype = X.dtype
        self.xp = namespace(X)

    def blocks(self):
        # One block: X is in memory already, and on 2 cores smaller blocks that stay in
        # the cache between the two products measured no faster (bench/scale.py).
        yield 0, self.X.T

    def gram(self):
        return self.X.T @ self.X  # numpy runs a.T @ a as a symmetric rank-k update

    def times(self, c):
        return self.X @ c

    def normal(self, w, b):
        u = self.X.T @ w + b
        return self.X @ u, float(self.xp.sum(u))

    def dense(self):
        return self


class Pixels(Design):
    """Images (m, size, size, 3) uint8, in memory or on disk (an h5py dataset, a memmap).

    X = pixels / 255 in `dtype`. The products (gradient, scores, times) run on the uint8
    pixels, PIXEL_BLOCK_BYTES of them at a time, so the (n_x, m) float matrix is never built: `dense()` holds the pixels
    in memory, m n_x bytes. The dual form reads K a block of features at a time.
    `blocks()` still yields X's floats, for what needs them.
    """

    def __init__(self, x, dtype="float64"):
        self.x = x
        self.m = int(x.shape[0])
        self.n_x = int(np.prod(x.shape[1:], dtype=np.int64))
        self.dtype = np.dtype(dtype)

    def _flat(self):
        return np.asarray(self.x).reshape(self.m, self.n_x)

    def pixel_rows(self) -> int:
        """Examples in a block of pixels (a product block)."""
        return max(1, PIXEL_BLOCK_BYTES // self.n_x)

    def product_blocks(self):
        k = self.pixel_rows()
        if isinstance(self.x, np.ndarray):  # in memory: views, no copy
            flat = np.ascontiguousarray(self._flat())
            for start in range(0, self.m, k):
                yield start, flat[start:start + k]
            return
        for start in range(0, self.m, k):
            yield start, np.asarray(self.x[start:start + k]).reshape(-1, self.n_x)

    def blocks(self):
        k = self.block_rows()
        buf = np.empty((k, self.n_x), self.dtype)
        for start in range(0, self.m, k):
            part = np.asarray(self.x[start:start + k]).reshape(-1, self.n_x)
            yield start, normalize(part, out=buf[:len(part)])

    def scores(self, w, b, fast=False):
        z = np.empty(self.m, np.result_type(self.dtype, np.asarray(w).dtype))
        w255 = np.asarray(w, z.dtype) / SCALE  # once per pass
        for start, xt in self.product_blocks():  # one pass: NumPy's path unless fast
            kernels.times(xt, w255, b, out=z[start:start + len(xt)], fast=fast)
        return z

    def scores_each(self, w, b):
        """Z (m,) float64 for w (n_x,), each example's score summed in one fixed order: its
        products (x / 255) * w added by NumPy's pairwise sum along the row. So an image gets
        the same bits whatever else is scored with it (one file or a folder, the CLI, eval
        or a web request), on any number of cores: no BLAS (whose threads split a long dot
        product differently by their number) and nothing shared between threads, so
        concurrent callers need no lock. EACH_ROWS examples at a time
        in a float buffer (bounded memory)."""
        w = np.ascontiguousarray(w, np.float64)
        z = np.empty(self.m, np.float64)
        buf = np.empty((min(EACH_ROWS, max(self.m, 1)), self.n_x), np.float64)
        k = self.pixel_rows()  # read from disk in large blocks, scored in small ones
        for start in range(0, self.m, k):
            pixels = np.asarray(self.x[start:start + k]).reshape(-1, self.n_x)
            for i in range(0, len(pixels), EACH_ROWS):
                part = pixels[i:i + EACH_ROWS]
                block = buf[:len(part)]
                normalize(part, out=block)
                np.multiply(block, w, out=block)
                np.add.reduce(block, axis=1, out=z[start + i:start + i + len(part)])
        z += b
        return z

    def _feature_blocks(self, k):
        """(start, X[start:start + k].T) as floats (m, k): k features at a time, one buffer."""
        flat = self._flat()
        buf = np.empty((self.m, k), self.dtype)
        for start in range(0, self.n_x, k):
            part = flat[:, start:start + k]
            yield start, normalize(part, out=buf[:, :part.shape[1]])

    def gram(self):
        K = np.zeros((self.m, self.m), self.dtype)
        for _, block in self._feature_blocks(feature_block(self.m, self.n_x)):
            add_gram(K, block)
        mirror_lower(K)
        return K

    def cross(self, other):
        if not isinstance(other, Pixels):
            return Dense(normalize(self._flat().T, self.dtype)).cross(other)
        K = np.zeros((self.m, other.m), np.result_type(self.dtype, other.dtype))
        k = feature_block(self.m + other.m, self.n_x)  # both blocks: the bytes of one
        for (_, a), (_, b) in zip(self._feature_blocks(k), other._feature_blocks(k)):
            for i in range(0, self.m, GRAM_SLAB):  # in place: a slab's temporary only
                K[i:i + GRAM_SLAB] += a[i:i + GRAM_SLAB] @ b.T
        return K

    def times(self, c):
        c = np.asarray(c)
        w = np.zeros(self.n_x, np.result_type(self.dtype, c.dtype))
        for start, xt in self.product_blocks():  # one pass (the dual form's w = X c):
            w += kernels.times_t(xt, c[start:start + len(xt)] / SCALE, fast=False)  # NumPy
        return w

    def dense(self):
        """The pixels in memory (m, n_x) uint8, read once if they are on disk: what the
        primal form's passes run on (a float X would take 4 or 8 times the memory)."""
        if isinstance(self.x, np.ndarray) and self.x.flags.c_contiguous:
            return self
        return Pixels(np.ascontiguousarray(self._flat()), self.dtype)


def add_gram(K, a):
    """K += a a.T on K's lower triangle (diagonal included), in place: a slab of GRAM_SLAB
    columns at a time, every row from the slab's first down, so the product's temporary is
    m x GRAM_SLAB at most, not a second K. Column slabs, not row slabs: each product is
    tall (m - i rows), which BLAS shares between its threads with less waiting than a
    GRAM_SLAB-row one (bench/gram_memory.py)."""
    m = a.shape[0]
    for i in range(0, m, GRAM_SLAB):
        j = min(i + GRAM_SLAB, m)
        K[i:, i:j] += a[i:] @ a[i:j].T


def mirror_lower(K):
    """K's upper triangle from its lower one (add_gram fills the lower), a slab at a time."""
    m = K.shape[0]
    for i in range(0, m, GRAM_SLAB):
        j = min(i + GRAM_SLAB, m)
        square = K[i:j, i:j]
        square[...] = np.tril(square) + np.tril(square, -1).T
        K[i:j, j:] = K[j:, i:j].T

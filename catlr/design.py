"""X (n_x, m) as gradient descent sees it: a few products, computed a block of examples at a time.

Every solver runs against this seam, and nothing else touches X:
    gradient(w, b, y)  (X dZ, sum(dZ), sum of the cost terms), dZ = sigmoid(w.T X + b) - y:
                       the primal step's products, one read of each block per call
    scores(w, b)       Z = w.T X + b  (m,)
    gram()             K = X.T X      (m, m), the dual form's one pass
    times(c)           X c            (n_x,), w from the dual coefficients
A source of data is a subclass that says where blocks of X come from (`blocks`);
an engine that runs the products elsewhere (a cluster, a GPU array library)
overrides `gradient` and `scores` and maps `block_gradient` over its blocks.
Blocks are X's columns, transposed: (k, n_x) float, one example per row.
"""

from __future__ import annotations

import numpy as np

from .loss import cost_sum, sigmoid

SCALE = 255.0               # X = pixels / 255: the course's normalization, written once
NORMALIZATION = "x / 255"   # how model files name it
BLOCK_BYTES = 8 << 20       # a block stays in the cache between its two products
FEATURE_BLOCK = 2048        # features converted at a time when X is read by columns (gram, times)


def normalize(pixels, dtype="float64", out=None):
    """uint8 pixels (any shape) / 255 in `dtype` (or into `out`)."""
    if out is not None:
        return np.divide(pixels, SCALE, out=out)
    return np.divide(pixels, SCALE, dtype=np.dtype(dtype))


def block_gradient(xt, y, w, b):
    """The update rule's products on one block: xt (k, n_x) = X[:, block].T, y (k,).

    Returns (xt.T dz (n_x,), sum(dz), sum of the cost terms), dz = sigmoid(xt w + b) - y.
    """
    z = xt @ w
    z += b
    total = cost_sum(z, y)
    dz = sigmoid(z)
    dz -= y
    return dz @ xt, dz.sum(), total


class Design:
    """X (n_x, m) seen through its blocks of examples. Subclasses define `blocks`."""

    n_x: int
    m: int
    dtype: np.dtype
    engine = "memory"  # where the products run, for -v and the model's metadata

    def blocks(self):
        """Yield (start, xt) with xt = X[:, start:start + k].T, (k, n_x) floats."""
        raise NotImplementedError

    def block_rows(self) -> int:
        return max(1, BLOCK_BYTES // (self.n_x * self.dtype.itemsize))

    def gradient(self, w, b, y):
        g = np.zeros(self.n_x, self.dtype)
        s = total = 0.0
        for start, xt in self.blocks():
            gb, sb, tb = block_gradient(xt, y[start:start + len(xt)], w, b)
            g += gb
            s += sb
            total += tb
        return g, s, total

    def scores(self, w, b):
        z = np.empty(self.m, np.result_type(self.dtype, np.asarray(w).dtype))
        for start, xt in self.blocks():
            np.matmul(xt, w, out=z[start:start + len(xt)])
        z += b
        return z

    def gram(self):
        return self.dense().gram()

    def times(self, c):
        w = np.zeros(self.n_x, self.dtype)
        for start, xt in self.blocks():
            w += c[start:start + len(xt)] @ xt
        return w

    def dense(self) -> Dense:
        """This X in memory as floats, for the primal form's many passes."""
        raise NotImplementedError

    def close(self):
        """Let go of what the source holds (a cluster, for the Dask engine)."""


class Dense(Design):
    """A float X (n_x, m) in memory: what LogisticRegression.fit(X, Y) is given."""

    def __init__(self, X):
        self.X = X
        self.n_x, self.m = X.shape
        self.dtype = X.dtype

    def blocks(self):
        # One block: X is in memory already, and on 2 cores smaller blocks that stay in
        # the cache between the two products measured no faster (1 MB blocks 2.3 x slower,
        # 8 MB 1.05 x, whole X 1.0 x at m = 20,000).
        yield 0, self.X.T

    def gram(self):
        return self.X.T @ self.X  # numpy runs a.T @ a as a symmetric rank-k update

    def times(self, c):
        return self.X @ c

    def dense(self):
        return self


class Pixels(Design):
    """Images (m, size, size, 3) uint8, in memory or on disk (an h5py dataset, a memmap).

    X = pixels / 255 in `dtype`. The dual form reads K and X c a block of features at
    a time, so the (n_x, m) float matrix is never built; `dense()` builds it once.
    """

    def __init__(self, x, dtype="float64"):
        self.x = x
        self.m = int(x.shape[0])
        self.n_x = int(np.prod(x.shape[1:], dtype=np.int64))
        self.dtype = np.dtype(dtype)

    def _flat(self):
        return np.asarray(self.x).reshape(self.m, self.n_x)

    def blocks(self):
        k = self.block_rows()
        buf = np.empty((k, self.n_x), self.dtype)
        for start in range(0, self.m, k):
            part = np.asarray(self.x[start:start + k]).reshape(-1, self.n_x)
            yield start, normalize(part, out=buf[:len(part)])

    def _feature_blocks(self):
        flat = self._flat()
        buf = np.empty((self.m, FEATURE_BLOCK), self.dtype)
        for start in range(0, self.n_x, FEATURE_BLOCK):
            part = flat[:, start:start + FEATURE_BLOCK]
            yield start, normalize(part, out=buf[:, :part.shape[1]])

    def gram(self):
        K = np.zeros((self.m, self.m), self.dtype)
        for _, block in self._feature_blocks():
            K += block @ block.T
        return K

    def times(self, c):
        w = np.empty(self.n_x, self.dtype)
        for start, block in self._feature_blocks():
            w[start:start + block.shape[1]] = c @ block
        return w

    def dense(self):
        # reshape(m, -1).T is a view; the division writes the only copy, one example
        # per contiguous row of X.T, in its final dtype.
        return Dense(normalize(self._flat().T, self.dtype))


class Stream(Pixels):
    """Images on disk (an h5py dataset) read a block at a time at every pass: X is never
    held whole, so memory stays near `block_bytes` whatever m is."""

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
        try:  # numba's conversion on every core, when installed: measured in bench/scale.py
            from .kernels import normalize_into
        except ImportError:
            yield from super().blocks()
            return
        k = self.block_rows()
        buf = np.empty((k, self.n_x), self.dtype)
        for start in range(0, self.m, k):
            part = np.asarray(self.x[start:start + k]).reshape(-1, self.n_x)
            yield start, normalize_into(part, buf[:len(part)])

    def dense(self):
        return self

"""X (n_x, m) as gradient descent sees it: a few products, computed a block of examples at a time.

Every solver runs against this seam, and nothing else touches X:
    gradient(w, b, y, s)  (X dZ, sum(dZ), the summed cost) with dZ = s (sigmoid(w.T X + b) - y):
                          the primal step's products, one read of each block per call
    scores(w, b)          Z = w.T X + b  (m,)
    gram()                K = X.T X      (m, m), the dual form's one pass
    times(c)              X c            (n_x,), w from the dual coefficients
A source of data is a subclass that says where blocks of X come from (`blocks`); an
engine that runs the products elsewhere (a cluster) overrides `gradient` and `scores`
and maps `block_gradient` over its blocks (catlr/engines/). Blocks are X's columns,
transposed: (k, n_x) floats, one example per row.

Arrays: a design's `xp` is the array library of its data (the Python Array API
standard; NumPy unless X is a CuPy, torch or array-api-strict array). The solvers
create every array with `xp`, so the same loop runs wherever the blocks live, and
`to_host` brings results to NumPy once, at the end.
"""

from __future__ import annotations

import numpy as np

from .loss import Objective

SCALE = 255.0               # X = pixels / 255: the course's normalization, written once
NORMALIZATION = "x / 255"   # how model files name it
BLOCK_BYTES = 8 << 20       # a block stays in the cache between its two products
FEATURE_BLOCK = 2048        # features converted at a time when X is read by columns (gram, times)
COURSE = Objective()        # the course's cost: no penalty, every example weighs 1


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


def block_gradient(xt, y, w, b, s=None, objective=COURSE):
    """The update rule's products on one block: xt (k, n_x) = X[:, block].T, y (k,), weights
    s (k,) or None. Returns (xt.T dz (n_x,), sum(dz), the block's summed cost), with
    dz = objective.residual(xt w + b): written once, run by every engine."""
    z = xt @ w
    z += b
    total = objective.terms(z, y, s)
    dz = objective.residual(z, y, s)
    return dz @ xt, namespace(dz).sum(dz), total


class Design:
    """X (n_x, m) seen through its blocks of examples. Subclasses define `blocks`."""

    n_x: int
    m: int
    dtype: object            # X's float type, in its own library
    xp = np                  # the array namespace of X's blocks
    engine = "memory"        # where the products run, for -v and the model's metadata
    objective = COURSE       # set by the solver: the cost that `gradient` differentiates

    def blocks(self):
        """Yield (start, xt) with xt = X[:, start:start + k].T, (k, n_x) floats."""
        raise NotImplementedError

    def block_rows(self) -> int:
        return max(1, BLOCK_BYTES // (self.n_x * np.dtype(self.dtype).itemsize))

    def asarray(self, a):
        """A NumPy vector (labels, weights) as an array of X's library and dtype."""
        return self.xp.asarray(np.asarray(a, dtype=dtype_name(self.dtype)), dtype=self.dtype)

    def gradient(self, w, b, y, s=None):
        xp = self.xp
        g = xp.zeros(self.n_x, dtype=self.dtype)
        sd = total = 0.0
        for start, xt in self.blocks():
            stop = start + xt.shape[0]
            gb, sb, tb = block_gradient(xt, y[start:stop], w, b,
                                        None if s is None else s[start:stop], self.objective)
            g += gb
            sd += sb
            total += tb
        return g, sd, total

    def scores(self, w, b):
        parts = [xt @ w for _, xt in self.blocks()]
        z = parts[0] if len(parts) == 1 else self.xp.concat(parts)
        return z + b

    def gram(self):
        return self.dense().gram()

    def cross(self, other):
        """X.T X_other (m, m_other): this design's examples against another's (the
        held-out examples' scores in the dual form come from it)."""
        return self.dense().X.T @ other.dense().X

    def times(self, c):
        w = self.xp.zeros(self.n_x, dtype=self.dtype)
        for start, xt in self.blocks():
            w += c[start:start + xt.shape[0]] @ xt
        return w

    def dense(self) -> Dense:
        """This X in memory as floats, for the primal form's many passes."""
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

    def scores(self, w, b):
        z = np.empty(self.m, np.result_type(self.dtype, np.asarray(w).dtype))
        for start, xt in self.blocks():
            np.matmul(xt, w, out=z[start:start + len(xt)])
        z += b
        return z

    def scores_each(self, w, b):
        """Z (m,) with each example's score its own dot product, so an image gets the same
        bits whatever else is scored with it (one file or a folder, the CLI or a web
        request); a matrix product's rounding depends on the batch."""
        z = np.empty(self.m, np.float64)
        dot = np.dot
        for start, xt in self.blocks():
            for i, row in enumerate(xt, start):
                z[i] = dot(row, w)
        z += b
        return z

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

    def cross(self, other):
        if not isinstance(other, Pixels):
            return super().cross(other)
        K = np.zeros((self.m, other.m), np.result_type(self.dtype, other.dtype))
        for (_, a), (_, b) in zip(self._feature_blocks(), other._feature_blocks()):
            K += a @ b.T
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

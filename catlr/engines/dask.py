"""The dask engine: blocks of X kept in a cluster's workers, the products run there.

Each block of examples is read by a worker itself from the prepared file (every worker
must reach its path), converted to floats once and kept in that worker's memory.
An iteration is one task per block (design.block_gradient, the same update rule as
every other engine) and a tree reduction of their (n_x,) gradients; only w (n_x
floats) goes out and one gradient comes back. A block lost with its worker is read
again from the file by Dask, so the result does not change. Needs the optional
extra: pip install "catlr[dask]".
"""

from __future__ import annotations

import os

import numpy as np
from distributed import Client, LocalCluster

from ..containers import open_container
from ..design import Design, block_gradient, normalize

BLOCK_BYTES = 64 << 20  # per task: large enough that scheduling stays a small share


def read_block(path, key, start, stop, dtype):
    """X[:, start:stop].T as floats, read by the worker from the HDF5 file or Zarr store
    through the same checked reader as every other read."""
    with open_container(path) as c:
        part = np.asarray(c.pixels(key)[start:stop])
    return normalize(part.reshape(len(part), -1), dtype)


def _add(*parts):
    return tuple(sum(values) for values in zip(*parts))


def _scores(xt, w, b):
    return xt @ w + b


class DaskPixels(Design):
    """Images in an HDF5 file (an h5py dataset), as blocks in a Dask cluster's workers."""

    engine = "dask"

    def __init__(self, x, dtype="float32", scheduler=None, n_workers=None, block_bytes=None):
        if hasattr(x, "file"):  # an h5py dataset
            self.path, self.key = os.path.abspath(x.file.filename), x.name.lstrip("/")
        else:  # an array of a Zarr store (containers.py)
            self.path, self.key = os.path.abspath(x.store.path), x.key
        self.m = int(x.shape[0])
        self.n_x = int(np.prod(x.shape[1:], dtype=np.int64))
        self.dtype = np.dtype(dtype)
        if scheduler:
            self.cluster, self.client = None, Client(scheduler)
        else:  # a local cluster of worker processes, the way a user tries it first
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
            self.cluster = LocalCluster(n_workers=n_workers or cores, threads_per_worker=1,
                                        processes=True, dashboard_address="127.0.0.1:0")
            self.client = Client(self.cluster)
        self.detail = f"Dask dashboard: {self.client.dashboard_link}"
        k = max(1, (block_bytes or BLOCK_BYTES) // (self.n_x * self.dtype.itemsize))
        self.spans = [(s, min(s + k, self.m)) for s in range(0, self.m, k)]
        self.parts = [self.client.submit(read_block, self.path, self.key, s, e, self.dtype.name,
                                         pure=True, key=f"catlr-block-{self.key}-{s}-{e}")
                      for s, e in self.spans]

    def _reduce(self, futures, fan_in=4):
        """A tree of additions over the workers: no single task sums them all."""
        while len(futures) > 1:
            futures = [self.client.submit(_add, *futures[i:i + fan_in], pure=False)
                       for i in range(0, len(futures), fan_in)]
        return futures[0]

    def gradient(self, w, b, y, s=None):
        # w (n_x floats) and the block's labels travel inside each task: no scatter round
        # trip (cheaper per iteration, bench/scale.py), and nothing a lost worker held that
        # Dask could not compute again
        parts = [self.client.submit(block_gradient, part, y[i:j], w, b,
                                    None if s is None else s[i:j], self.objective, pure=False)
                 for part, (i, j) in zip(self.parts, self.spans)]
        return self._reduce(parts).result()

    def scores(self, w, b):
        return np.concatenate(self.client.gather(
            [self.client.submit(_scores, part, w, b, pure=False) for part in self.parts]))

    def worker_pids(self) -> dict:
        return self.client.run(os.getpid)

    def dense(self):
        return self

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def build(x, choice, cfg):
    return DaskPixels(x, choice.dtype, scheduler=cfg.get("scheduler") or None)

"""The course's schema in a Zarr store (a folder): for a Dask cluster whose workers read
blocks from object or shared storage. Same arrays as the HDF5 file (hdf5.py):
train_set_x/_y/_paths, test_set_x/_y/_paths, list_classes. Needs zarr (catlr[dask]).
"""

from __future__ import annotations

import os

import numpy as np
import zarr

from .errors import CatlrError, describe
from .hdf5 import DEFAULT_CLASSES, Sink, check_split


def open_store(path):
    try:
        return zarr.open_group(os.fspath(path), mode="r")
    except Exception as e:  # a damaged store can raise anything zarr meets
        raise CatlrError(f"{path} is not a readable Zarr store ({describe(e)}), give one "
                         "written by 'catlr prepare SRC --out NAME.zarr'") from None


def read_split(group, path, split: str):
    """(x, y, classes, paths) of one split, as hdf5.read_split: x is the zarr array itself."""
    xk, yk = f"{split}_set_x", f"{split}_set_y"
    keys = set(group.array_keys())
    if not {xk, yk} <= keys:
        raise CatlrError(f"{path} has no {xk} / {yk} arrays (found: "
                         f"{', '.join(sorted(keys)) or 'none'}), write it with 'catlr prepare'")
    x, y = group[xk], group[yk]
    ys = check_split(path, split, x, y)
    classes = DEFAULT_CLASSES
    if "list_classes" in keys:
        names = [str(c) for c in np.asarray(group["list_classes"][:]).reshape(-1)]
        classes = tuple(names) if len(names) == 2 else classes
    pk = f"{split}_set_paths"
    paths = [str(p) for p in group[pk][:]] if pk in keys else []
    return x, ys, classes, paths


class ZarrSink(Sink):
    """hdf5.Sink's appends, into the arrays of a zarr group."""

    def create(self, name, shape, dtype, chunks):
        self.f.create_array(name, shape=(0, *shape), chunks=(chunks, *shape), dtype=dtype)

    def write_classes(self, classes):
        a = self.f.create_array("list_classes", shape=(2,), chunks=(2,), dtype=str)
        a[:] = np.array(list(classes))

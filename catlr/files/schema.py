"""The course's schema: read one split from a container (an HDF5 file or a Zarr store,
through containers.py's checked reader), write both splits in chunks.

    {split}_set_x      (m, size, size, 3) uint8   RGB pixels
    {split}_set_y      (m,) int64                 1 = positive
    list_classes       (2,) bytes                 [negative, positive]
    {split}_set_paths  (m,) UTF-8                 written by catlr prepare
"""

from __future__ import annotations

import glob
import json
import os

import h5py
import numpy as np

from ..errors import CatlrError
from .containers import open_container
from .outputs import KINDS, Kind

DEFAULT_CLASSES = ("non-cat", "cat")


def _prepared(path) -> bool:
    """An HDF5 file that 'catlr prepare' wrote (so catlr may replace it)."""
    try:
        with open_container(path, is_input=False) as c:
            return c.kind == "hdf5" and c.written_by_catlr()
    except (CatlrError, OSError, ValueError):
        return False


KINDS["hdf5"] = Kind("a prepared HDF5 file", False, _prepared, (".h5", ".hdf5"),
                    "or NAME.zarr for a Zarr store")


def _store(path) -> bool:
    """A Zarr store that 'catlr prepare' wrote: its group records catlr's version."""
    try:
        with open(os.path.join(path, "zarr.json"), "rb") as f:
            meta = json.loads(f.read(1 << 20))
        return isinstance(meta, dict) and "catlr_version" in (meta.get("attributes") or {})
    except (OSError, ValueError, RecursionError):
        return False


KINDS["zarr"] = Kind("a Zarr store written by catlr", True, _store)


def find_course_pair(folder) -> tuple[str, str] | None:
    """(train file, test file) when `folder` holds exactly one train_*.h5 and one test_*.h5."""
    train = sorted(glob.glob(os.path.join(glob.escape(os.fspath(folder)), "train_*.h5")))
    test = sorted(glob.glob(os.path.join(glob.escape(os.fspath(folder)), "test_*.h5")))
    if not train and not test:
        return None
    if len(train) != 1 or len(test) != 1:
        raise CatlrError(f"{folder} holds {len(train)} train_*.h5 and {len(test)} test_*.h5 "
                         "files, expected exactly one of each")
    return train[0], test[0]


def has_split(c, split: str) -> bool:
    """Whether the container holds a split's images and labels."""
    return f"{split}_set_x" in c and f"{split}_set_y" in c


def read_split(c, split: str):
    """One split of an open container (containers.py: every read checked), in the schema.

    Returns (x, y, classes, paths): x the (m, s, s, 3) uint8 array itself (the pixels stay
    in the container until read), y (m,) int64, classes a tuple, paths a list (or []).
    """
    xk, yk = f"{split}_set_x", f"{split}_set_y"
    if not has_split(c, split):
        hint = ("use the course's schema (see 'catlr prepare --help')" if "train_set_x" not in c
                else f"for the course pair pass the folder that holds both files "
                     f"({os.path.dirname(os.path.abspath(c.path))})")
        raise CatlrError(f"{c.path} has no {xk} / {yk} datasets (found: {c.found()}), {hint}")
    x = c.pixels(xk)
    y = c.labels(yk, x.shape[0])
    names = c.strings("list_classes", 2)
    classes = tuple(names) if names else DEFAULT_CLASSES
    return x, y, classes, c.strings(f"{split}_set_paths", x.shape[0]) or []


class Sink:
    """Appends each split to resizable arrays of an open, writable store (bounded memory):
    an h5py.File, or a zarr group (zarr_store.py) whose arrays resize and slice alike."""

    def __init__(self, f, size, classes, splits=("train", "test")):
        self.f = f
        for split in splits:
            for key, shape, dtype, chunks in (("x", (size, size, 3), np.uint8, 64),
                                              ("y", (), np.int64, 4096),
                                              ("paths", (), str, 1024)):
                self.create(f"{split}_set_{key}", shape, dtype, chunks)
        self.write_classes(classes)

    def create(self, name, shape, dtype, chunks):
        strings = h5py.string_dtype("utf-8") if dtype is str else dtype
        self.f.create_dataset(name, (0, *shape), strings, maxshape=(None, *shape),
                              chunks=(chunks, *shape), track_times=False)

    def write_classes(self, classes):
        self.f.create_dataset("list_classes", data=np.array([c.encode() for c in classes]),
                              track_times=False)

    def add(self, split, arrays, labels, paths):
        if not arrays:
            return
        n = len(arrays)
        # a file name that is not valid UTF-8 is stored with replacement characters
        paths = [q.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for q in paths]
        for key, values in (("x", np.stack(arrays)), ("y", np.asarray(labels, np.int64)),
                            ("paths", paths)):
            ds = self.f[f"{split}_set_{key}"]
            start = ds.shape[0]
            ds.resize((start + n, *ds.shape[1:]))
            ds[start:start + n] = values

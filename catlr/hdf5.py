"""The course's HDF5 schema: read one split (pixels left on disk), write both in chunks.

    {split}_set_x      (m, size, size, 3) uint8   RGB pixels
    {split}_set_y      (m,) int64                 1 = positive
    list_classes       (2,) bytes                 [negative, positive]
    {split}_set_paths  (m,) UTF-8                 written by catlr prepare
"""

from __future__ import annotations

import glob
import os

import h5py
import numpy as np

from .errors import CatlrError, describe

DEFAULT_CLASSES = ("non-cat", "cat")


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


def open_file(path):
    """An h5py.File opened for reading, or one line saying why it cannot be."""
    if not os.path.isfile(path):  # a FIFO named train_x.h5 would block the read forever
        raise CatlrError(f"{path} is not a regular file, give a .h5 written by "
                         "'catlr prepare' or the course")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CatlrError(f"{path} is not a readable HDF5 file ({describe(e)}), "
                         "give a .h5 written by 'catlr prepare' or the course") from None


def has_split(f, split: str) -> bool:
    return f"{split}_set_x" in f and f"{split}_set_y" in f


def read_split(f, split: str):
    """One split of an open file, checked against the schema.

    Returns (x, y, classes, paths): x the (m, s, s, 3) uint8 h5py dataset itself (the
    pixels stay on disk until read), y (m,) int64, classes a tuple, paths a list.
    """
    path = f.filename
    xk, yk = f"{split}_set_x", f"{split}_set_y"
    if not has_split(f, split):
        hint = ("use the course's schema (see 'catlr prepare --help')" if "train_set_x" not in f
                else f"for the course pair pass the folder that holds both files "
                     f"({os.path.dirname(os.path.abspath(path))})")
        raise CatlrError(f"{path} has no {xk} / {yk} datasets (found: "
                         f"{', '.join(sorted(f.keys())) or 'none'}), {hint}")
    for key in (xk, yk):
        if isinstance(f.get(key, getlink=True), h5py.ExternalLink):
            raise CatlrError(f"{path}: {key} is a link to another file, catlr reads data that "
                             "lives in the file itself: copy the data in")
    x, y = f.get(xk), f.get(yk)  # None for a link that points nowhere
    if not isinstance(x, h5py.Dataset) or not isinstance(y, h5py.Dataset):
        raise CatlrError(f"{path}: {xk} and {yk} must be datasets (found "
                         f"{_kind(x)} and {_kind(y)}), write the file with 'catlr prepare'")
    for key, ds in ((xk, x), (yk, y)):
        if ds.is_virtual or ds.external:
            raise CatlrError(f"{path}: {key} keeps its data outside the file ("
                             f"{'a virtual dataset' if ds.is_virtual else 'external storage'}), "
                             "catlr reads data that lives in the file itself: copy the data in")
    declared = x.size * x.dtype.itemsize
    stored = x.id.get_storage_size()
    if declared > (64 << 20) and stored * 1000 < declared:
        raise CatlrError(f"{path}: {xk} declares {x.shape[0]} images ({declared >> 20} MB) but "
                         f"stores {stored >> 10} KB: the file is damaged or forged, prepare it again")
    ys = check_split(path, split, x, y)
    return x, ys, _classes(f), _paths(f, f"{split}_set_paths", x.shape[0])


def _kind(obj) -> str:
    return ("a link to nothing" if obj is None else "a group" if isinstance(obj, h5py.Group)
            else "a dataset" if isinstance(obj, h5py.Dataset) else type(obj).__name__)


def _text(value) -> str:
    """A name stored as bytes or str, decoded whatever it holds (not UTF-8: replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _classes(f) -> tuple:
    """[negative, positive] from list_classes when it is a dataset of two names."""
    ds = f.get("list_classes")
    if isinstance(ds, h5py.Dataset) and ds.shape == (2,) and ds.dtype.kind in "SUO":
        return tuple(_text(c) for c in ds[()])
    return DEFAULT_CLASSES


def _paths(f, key, m) -> list:
    """Each image's path when {split}_set_paths is a dataset of m strings, else none."""
    ds = f.get(key)
    if isinstance(ds, h5py.Dataset) and ds.shape == (m,) and ds.dtype.kind in "SUO":
        return [_text(p) for p in ds[()]]
    return []


def check_split(path, split, x, y):
    """The labels (m,) int64 of a split whose images x and labels y (array-likes: an h5py
    dataset, a zarr array) follow the schema; one line naming the file when they do not."""
    xk, yk = f"{split}_set_x", f"{split}_set_y"
    if x.ndim != 4 or x.shape[3] != 3 or x.shape[1] != x.shape[2] or x.dtype != np.uint8:
        raise CatlrError(f"{path}: {xk} has shape {x.shape} and dtype {x.dtype}, expected "
                         "(m, size, size, 3) uint8 RGB images")
    if y.shape not in ((x.shape[0],), (1, x.shape[0])):
        raise CatlrError(f"{path}: {yk} has shape {y.shape}, expected ({x.shape[0]},), "
                         f"one label per image of {xk}")
    ys = np.asarray(y[:]).reshape(-1)
    # labels as integers, or as floats that are exactly 0.0 and 1.0
    if ys.dtype.kind not in "iubf" or not np.isin(ys, (0, 1)).all():
        bad = (sorted(set(np.unique(ys).tolist()) - {0, 1})[:5] if ys.dtype.kind in "iubf"
               else f"dtype {ys.dtype}")
        raise CatlrError(f"{path}: {yk} holds labels other than 0 and 1 ({bad}), "
                         "relabel as 0 = negative, 1 = positive")
    return ys.astype(np.int64)


class Sink:
    """Appends each split to resizable arrays of an open, writable store (bounded memory):
    an h5py.File, or a zarr group (zarr_store.py) whose arrays resize and slice alike."""

    def __init__(self, f, size, classes):
        self.f = f
        for split in ("train", "test"):
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

"""Datasets: the three kinds of DATA, the course's HDF5 schema, and flattening to X.

DATA is one of
    a folder holding a course pair   train_*.h5 + test_*.h5 (train_set_x, ..., test_set_y)
    a prepared file                  one .h5 with both splits (written by `catlr prepare`)
    an image folder                  SRC/<class>/ or SRC/train/<class>/ + SRC/test/<class>/
Images arrays are (m, size, size, 3) uint8 and labels (m,) int64, as in the course files.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from .errors import CatlrError, describe

DEFAULT_CLASSES = ("non-cat", "cat")


@dataclass
class Dataset:
    """Both splits of a dataset. classes[label] names each label (classes[1] is positive)."""

    x_train: object  # (m_train, size, size, 3) uint8
    y_train: object  # (m_train,) int64
    x_test: object   # (m_test, size, size, 3) uint8
    y_test: object   # (m_test,) int64
    classes: tuple = DEFAULT_CLASSES
    source: str = ""
    kind: str = ""   # "course", "prepared" or "folder"
    split: dict | None = None  # {"seed", "test_fraction"} when catlr made the split
    paths_train: list = field(default_factory=list)
    paths_test: list = field(default_factory=list)
    report: dict | None = None  # the ingestion report, for image folders

    @property
    def size(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_x(self) -> int:
        return self.size * self.size * 3


def flatten(x, dtype="float64"):
    """(m, size, size, 3) uint8 -> X (n_x, m) in `dtype`, divided by 255 (one allocation)."""
    import numpy as np

    # reshape(m, -1).T is a view; the division writes the only copy, already
    # laid out one example per contiguous column block, in its final dtype.
    return np.divide(x.reshape(len(x), -1).T, 255, dtype=np.dtype(dtype))


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


def load(data, cfg: dict, on_event=None) -> Dataset:
    """Load DATA of any kind; image folders are ingested with cfg's size, fit and split."""
    path = os.path.abspath(os.fspath(data))
    if not os.path.exists(path):
        raise CatlrError(f"{data} does not exist, give an image folder, a prepared .h5 file "
                         "or a folder holding train_*.h5 and test_*.h5")
    if os.path.isfile(path):
        tr = read_split(path, "train")
        te = read_split(path, "test")
        kind, classes = "prepared", tr[2]
    else:
        pair = find_course_pair(path)
        if pair is None:
            from .prepare import prepare_in_memory

            return prepare_in_memory(path, cfg, on_event=on_event)
        tr, te = read_split(pair[0], "train"), read_split(pair[1], "test")
        kind, classes = "course", tr[2]
    if tr[0].shape[1:] != te[0].shape[1:]:
        raise CatlrError(f"{data}: train images are {tr[0].shape[1:]} but test images are "
                         f"{te[0].shape[1:]}, prepare both splits at one --size")
    return Dataset(tr[0], tr[1], te[0], te[1], classes, path, kind,
                   paths_train=tr[3], paths_test=te[3])


def read_split(path, split: str):
    """Read `{split}_set_x/_y` (and paths, classes) from an HDF5 file, checking the schema.

    Returns (x (m, s, s, 3) uint8, y (m,) int64, classes tuple, paths list).
    """
    import h5py
    import numpy as np

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CatlrError(f"{path} is not a readable HDF5 file ({describe(e)}), "
                         "give a .h5 written by 'catlr prepare' or the course") from None
    with f:
        xk, yk = f"{split}_set_x", f"{split}_set_y"
        if xk not in f or yk not in f:
            hint = ("use the course's schema (data/README.md)" if "train_set_x" not in f
                    else f"for the course pair pass the folder that holds both files "
                         f"({os.path.dirname(os.path.abspath(path))})")
            raise CatlrError(f"{path} has no {xk} / {yk} datasets (found: "
                             f"{', '.join(sorted(f.keys())) or 'none'}), {hint}")
        x, y = f[xk], f[yk]
        if not isinstance(x, h5py.Dataset) or not isinstance(y, h5py.Dataset):
            raise CatlrError(f"{path}: {xk} and {yk} must be datasets, not groups")
        if x.ndim != 4 or x.shape[3] != 3 or x.shape[1] != x.shape[2] or x.dtype != np.uint8:
            raise CatlrError(f"{path}: {xk} has shape {x.shape} and dtype {x.dtype}, expected "
                             "(m, size, size, 3) uint8 RGB images")
        if y.shape not in ((x.shape[0],), (1, x.shape[0])):
            raise CatlrError(f"{path}: {yk} has shape {y.shape}, expected ({x.shape[0]},), "
                             f"one label per image of {xk}")
        xs, ys = x[()], y[()].reshape(-1)
        if ys.dtype.kind not in "iub" or not np.isin(ys, (0, 1)).all():
            bad = sorted(set(np.unique(ys).tolist()) - {0, 1})[:5]
            raise CatlrError(f"{path}: {yk} holds labels other than 0 and 1 ({bad}), "
                             "relabel as 0 = negative, 1 = positive")
        classes = DEFAULT_CLASSES
        if "list_classes" in f:
            names = [c.decode() if isinstance(c, bytes) else str(c) for c in f["list_classes"][()]]
            classes = tuple(names) if len(names) == 2 else classes
        pk = f"{split}_set_paths"
        paths = [p.decode() if isinstance(p, bytes) else str(p)
                 for p in f[pk][()]] if pk in f else []
    return xs, ys.astype(np.int64), classes, paths

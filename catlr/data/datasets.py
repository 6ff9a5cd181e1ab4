"""Datasets: what DATA can be, recognised and loaded through one small registry.

SOURCES lists each kind of DATA with how it is recognised and how it loads:
    prepared            one .h5 with both splits (written by `catlr prepare`)
    zarr                the same schema in a Zarr store (`catlr prepare SRC --out NAME.zarr`)
    course              a folder holding a course pair, train_*.h5 + test_*.h5
    prepared-in-folder  a folder holding one prepared file (data/prepared.h5)
    folder              an image folder: SRC/<class>/ or SRC/train/<class>/ + SRC/test/<class>/
    nested              a folder whose one subfolder holds a course pair or a prepared file
A new kind of DATA is one more entry. Images are (m, size, size, 3) uint8 and labels
(m,) int64, as in the course files; from an HDF5 file the pixels stay on disk (an
h5py dataset) until `in_memory()` reads them.
"""

from __future__ import annotations

import contextlib
import glob
import os
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .. import engines
from ..config import DEFAULT_PREPARED
from ..errors import CatlrError
from ..events import Preparing, ignore
from ..files import schema, storage
from ..files.containers import open_container
from ..files.inputs import reading
from ..files.schema import DEFAULT_CLASSES, find_course_pair
from ..learn.metrics import share_report
from .fingerprint import of_split
from .names import has_images, is_image_name


@dataclass
class Dataset:
    """Both splits of a dataset. classes[label] names each label (classes[1] is positive).

    x_train / x_test are arrays, or h5py datasets while the file stays open (`files`):
    close() (or a with block) closes them.
    """

    x_train: object  # (m_train, size, size, 3) uint8
    y_train: object  # (m_train,) int64
    x_test: object   # (m_test, size, size, 3) uint8
    y_test: object   # (m_test,) int64
    classes: tuple = DEFAULT_CLASSES
    source: str = ""
    kind: str = ""   # a key of SOURCES
    split: dict | None = None  # {"seed", "test_fraction"} when catlr made the split
    paths_train: list = field(default_factory=list)
    paths_test: list = field(default_factory=list)
    report: dict | None = None  # the ingestion report, for image folders
    files: list = field(default_factory=list)
    fingerprints: dict = field(default_factory=dict)  # {split: hex}, known or computed once
    note: str = ""   # how DATA was read, when it was a choice (said on the Data line)
    # a validation split, taken from the training split (hold_out) or stored in the file
    x_val: object = None
    y_val: object = None
    paths_val: list = field(default_factory=list)
    validation: dict | None = None  # how it was made: {fraction, seed, indices or paths}
    val_repeats: list = field(default_factory=list)  # [[train path, val path]] alike

    @property
    def has_val(self) -> bool:
        return self.y_val is not None and len(self.y_val) > 0

    def hold_out(self, fraction: float, seed: int) -> Dataset:
        """Hold out a seeded, stratified `fraction` of the training split as a validation
        split (by file, for an image folder); returns self. Pixels on disk stay there
        (Rows reads the kept ones a block at a time)."""
        rng = np.random.default_rng(seed)
        y = np.asarray(self.y_train)
        held = []
        for label in (0, 1):
            idx = np.flatnonzero(y == label)
            n = min(max(round(len(idx) * fraction), 1 if len(idx) > 1 else 0), max(len(idx) - 1, 0))
            held += idx[rng.permutation(len(idx))[:n]].tolist()
        held = np.array(sorted(held), np.int64)
        kept = np.setdiff1d(np.arange(len(y)), held)
        x = self.x_train
        if isinstance(x, np.ndarray):
            self.x_val, self.x_train = x[held], x[kept]
        else:
            self.x_val, self.x_train = np.asarray(Rows(x, held)), Rows(x, kept)
        self.y_val, self.y_train = y[held], y[kept]
        paths = self.paths_train
        if len(paths) == len(y):
            self.paths_val, self.paths_train = [paths[i] for i in held], [paths[i] for i in kept]
        self.validation = {"fraction": fraction, "seed": seed, **(
            {"paths": self.paths_val} if self.paths_val else {"indices": held.tolist()})}
        self.fingerprints.pop("train", None)  # the training split is not what it was
        self._repeats()
        return self

    def shares(self) -> dict:
        """The share of the positive class in each split, its interval, and the splits
        whose share differs from train's more than chance allows (metrics.share_report)."""
        splits = {"train": self.y_train, "validation": self.y_val, "test": self.y_test}
        return share_report({name: (int(np.sum(y)), len(y)) for name, y in splits.items()
                             if y is not None})

    def _repeats(self):
        """Validation images whose pixels repeat a training image: a leak to report."""
        if not isinstance(self.x_train, np.ndarray) or not isinstance(self.x_val, np.ndarray):
            return
        from .fingerprint import image_digest

        seen = {image_digest(img): i for i, img in enumerate(self.x_train)}
        name = (lambda paths, i: paths[i] if len(paths) > i else f"[{i}]")
        self.val_repeats = [[name(self.paths_train, seen[d]), name(self.paths_val, j)]
                            for j, d in enumerate(map(image_digest, self.x_val)) if d in seen]

    @property
    def on_disk(self) -> bool:
        """Whether the pixels can be read again a block at a time (an HDF5 file, a Zarr store)."""
        return not isinstance(self.x_train, np.ndarray)

    @property
    def size(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_x(self) -> int:
        return self.size * self.size * 3

    def fingerprint(self, split: str) -> str:
        """The split's fingerprint (fingerprint.py): recorded by prepare, else computed."""
        if split not in self.fingerprints:
            x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
            self.fingerprints[split] = of_split(x, y)
        return self.fingerprints[split]

    def in_memory(self) -> Dataset:
        """Read pixels still on disk into arrays (and close the files); returns self."""
        self.x_train, self.x_test = np.asarray(self.x_train), np.asarray(self.x_test)
        if self.x_val is not None:
            self.x_val = np.asarray(self.x_val)
        self.close()
        return self

    def close(self):
        for f in self.files:
            f.close()
        self.files = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Rows:
    """Some rows (sorted indices) of an array left where it is (an HDF5 dataset, a Zarr
    array): rows[a:b] reads the one contiguous span those rows lie in and keeps them."""

    def __init__(self, base, index):
        self.base, self.index = base, np.asarray(index, np.int64)
        self.shape = (len(self.index), *base.shape[1:])
        self.dtype, self.ndim = base.dtype, len(base.shape)
        self.chunks = getattr(base, "chunks", None)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, sel):
        if not isinstance(sel, slice) and sel is not Ellipsis:
            raise TypeError("rows are read by slices")
        rows = self.index[slice(None) if sel is Ellipsis else sel]
        if not len(rows):
            return np.zeros((0, *self.shape[1:]), self.dtype)
        lo = int(rows[0])
        return np.asarray(self.base[lo:int(rows[-1]) + 1])[rows - lo]

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)


def _from_files(path, kind, train_file, test_file, storage_options=None) -> Dataset:
    """Both splits from one container (a prepared file or store) or two (the course pair),
    every read through containers.py's checks."""
    files = [open_container(train_file, storage_options=storage_options)]
    try:
        if test_file != train_file:
            files.append(open_container(test_file))
        tr = schema.read_split(files[0], "train")
        te = schema.read_split(files[-1], "test")
        if tr[0].shape[1:] != te[0].shape[1:]:
            raise CatlrError(f"{path}: train images are {tr[0].shape[1:]} but test images are "
                             f"{te[0].shape[1:]}, prepare both splits at one --size")
    except BaseException:
        for f in files:
            f.close()
        raise
    known = {}
    if len(files) == 1:  # a prepared file or store records its splits' fingerprints
        attrs = files[0].attributes()
        known = {s: attrs[f"fingerprint_{s}"] for s in ("train", "test")
                 if isinstance(attrs.get(f"fingerprint_{s}"), str)}
    ds = Dataset(tr[0], tr[1], te[0], te[1], tr[2], path, kind,
                 paths_train=tr[3], paths_test=te[3], files=files, fingerprints=known)
    if schema.has_split(files[0], "val"):  # a validation split that prepare stored
        va = schema.read_split(files[0], "val")
        ds.x_val, ds.y_val, ds.paths_val = va[0], va[1], va[3]
        ds.validation = {"stored": True}
    return ds


def _load_prepared(path, cfg, on_event, opts):
    return _from_files(path, "prepared", path, path)


def _zarr(path) -> str | None:
    """A Zarr store written by 'catlr prepare SRC --out NAME.zarr'."""
    if not (os.path.isdir(path) and any(os.path.isfile(os.path.join(path, n))
                                        for n in ("zarr.json", ".zgroup"))):
        return None
    return path


def _load_course(path, cfg, on_event, opts):
    return _from_files(path, "course", *find_course_pair(path))


def _load_folder(path, cfg, on_event, opts):
    # ingest (and Pillow with it) only for image folders: 'catlr train' on HDF5 data
    # starts sooner without Pillow and hashlib (bench/startup.py, python -X importtime)
    from .ingest import ArraySink, discover, ingest, start_decoding

    layout = discover(path, cfg["positive"], cfg["test_fraction"], cfg["seed"])
    if opts.get("split"):  # only the split asked for is decoded (eval)
        layout = replace(layout, **{"test" if opts["split"] == "train" else "train": []})
    n = len(layout.items())
    need = engines.needs("primal", n, cfg["size"] ** 2 * 3, 4)  # the pixels, held as uint8
    limit, why = engines.budget(cfg)
    if need > limit and opts.get("prepare") is None:
        raise CatlrError(f"{path}: its {n} images would take {engines.size_text(need)} in "
                         f"memory, over the budget of {engines.size_text(limit)} ({why}), and "
                         f"this command writes no files: run 'catlr prepare {path}' and give "
                         "the .h5 it writes, or raise --memory")
    if need > limit:  # a folder too large for memory goes through a file
        out = os.path.join(os.path.dirname(DEFAULT_PREPARED), os.path.basename(path) + ".h5")
        on_event(Preparing(path, os.path.abspath(out),
                           f"{n} images would take {engines.size_text(need)} in memory, over "
                           f"the budget of {engines.size_text(limit)} ({why})"))
        opts["prepare"](path, out, cfg, on_event=on_event)
        return _load_prepared(os.path.abspath(out), cfg, on_event, opts)
    sink, sizes = ArraySink(cfg["size"]), {}
    report = ingest(layout, start_decoding(layout, cfg, sizes), sink, on_event=on_event,
                    sizes=sizes)
    report["fit"] = cfg["fit"]
    (xtr, ytr, ptr), (xte, yte, pte) = sink.arrays("train"), sink.arrays("test")
    prints = {s: v for s, v in report["fingerprint"].items()
              if not opts.get("split") or s == opts["split"]}  # only the splits decoded
    return Dataset(xtr, ytr, xte, yte, layout.classes, layout.root, "folder", layout.split,
                   ptr, pte, report, fingerprints=prints)


def _prepared_in(folder) -> list[str]:
    """The .h5 files and Zarr stores directly in `folder` that hold both splits (catlr's
    prepared schema)."""
    found = [p for p in sorted(glob.glob(os.path.join(glob.escape(folder), "*.zarr")))
             if _zarr(p)]
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "*.h5"))):
        try:
            with open_container(path) as c:
                if schema.has_split(c, "train") and schema.has_split(c, "test"):
                    found.append(path)
        except (CatlrError, OSError):
            continue  # not HDF5, unreadable: not data here
    return found


def _one_prepared(folder) -> str | None:
    """The prepared file a folder holds; None if none; one line if several."""
    if not os.path.isdir(folder):
        return None
    found = _prepared_in(folder)
    if len(found) > 1:
        names = ", ".join(os.path.basename(p) for p in found)
        raise CatlrError(f"{folder} holds {len(found)} prepared files ({names}), pass the one "
                         f"to use as DATA, e.g. {found[0]}")
    return found[0] if found else None


def _image_folder(folder) -> str | None:
    """An image folder: some visible subfolder holds images."""
    if not os.path.isdir(folder):
        return None
    subs = [os.path.join(folder, d) for d in os.listdir(folder) if not d.startswith(".")]
    return folder if any(os.path.isdir(sub) and has_images(sub) for sub in subs) else None


def _nested(folder) -> str | None:
    """A folder with no data of its own whose one subfolder holds a course pair or a prepared
    file (data/ holding data/catvnoncat/): that subfolder."""
    if not os.path.isdir(folder):
        return None
    inner = []
    for name in sorted(os.listdir(folder)):
        sub = os.path.join(folder, name)
        if not name.startswith(".") and os.path.isdir(sub):
            if _course(sub) or _one_prepared(sub):
                inner.append(sub)
    if len(inner) > 1:
        names = ", ".join(os.path.basename(p) + "/" for p in inner)
        raise CatlrError(f"{folder} holds data in {len(inner)} folders ({names}), pass the one "
                         f"to use as DATA, e.g. {inner[0]}")
    return inner[0] if inner else None


def _loose_images(folder) -> int:
    """How many image files lie directly in `folder` (photos not yet sorted into classes)."""
    try:
        return sum(1 for n in os.listdir(folder) if is_image_name(n)
                   and os.path.isfile(os.path.join(folder, n)))
    except OSError:
        return 0


def _course(folder) -> str | None:
    return folder if os.path.isdir(folder) and find_course_pair(folder) is not None else None


def _load_nested(path, cfg, on_event, opts):
    return load(path, cfg, on_event, in_memory=False, **opts)


@dataclass(frozen=True)
class Source:
    """One kind of DATA: `find(path)` gives what to load (path itself, or a file or folder
    inside it) or None when DATA is not of this kind; `load` reads it."""

    kind: str
    find: Callable[[str], str | None]
    load: Callable[[str, dict, Callable, dict], Dataset]


def _course_file(path) -> str | None:
    """The train file of a course pair, given alone: the pair's folder (so that
    'catlr train data/train_catvnoncat.h5' picks the pair when data/ holds other data)."""
    name = os.path.basename(path)
    if not (os.path.isfile(path) and name.startswith("train_") and name.endswith(".h5")):
        return None
    folder = os.path.dirname(path)
    try:
        pair = find_course_pair(folder)
    except CatlrError:
        return None
    return folder if pair and os.path.samefile(pair[0], path) else None


def _load_course_file(path, cfg, on_event, opts):
    ds = _load_course(path, cfg, on_event, opts)
    ds.note = f"the course pair in {path} (train_*.h5 + test_*.h5)"
    return ds


def stored_validation(data, storage_options=None) -> bool:
    """Whether DATA is a prepared file or store that holds its own validation split
    (cheap: the container's keys only)."""
    url = storage.remote(data)
    path = url or os.path.abspath(os.fspath(storage.local(data)))
    if not (url or os.path.isfile(path) or _zarr(path)):
        return False
    try:
        with open_container(path, is_input=False, storage_options=storage_options) as c:
            return schema.has_split(c, "val")
    except CatlrError:
        return False


def _holdings(folder) -> list[str]:
    """What a folder holds directly, each in words with how to pick it: a course pair,
    prepared files and stores, image class folders."""
    found = []
    try:
        pair = find_course_pair(folder)
    except CatlrError:
        pair = None
    if pair:
        found.append(f"the course pair ({os.path.basename(pair[0])} + "
                     f"{os.path.basename(pair[1])}: pass {pair[0]})")
    found += [f"a prepared {'store' if os.path.isdir(p) else 'file'} ({os.path.basename(p)}: "
              f"pass {p})" for p in _prepared_in(folder)]
    if _image_folder(folder):
        found.append(f"image class folders (pass {folder} alone once the others are moved)")
    for name in sorted(os.listdir(folder)):
        sub = os.path.join(folder, name)
        if not name.startswith(".") and os.path.isdir(sub) and not _zarr(sub):
            with contextlib.suppress(CatlrError):
                if _course(sub) or _one_prepared(sub):
                    found.append(f"data in {name}/ (pass {sub})")
    return found


# Tried in this order: the first whose find() answers is used.
SOURCES = {s.kind: s for s in (
    Source("course-file", _course_file, _load_course_file),
    Source("prepared", lambda p: p if os.path.isfile(p) else None, _load_prepared),
    Source("zarr", _zarr, _load_prepared),
    Source("course", _course, _load_course),
    Source("prepared-in-folder", _one_prepared, _load_prepared),
    Source("folder", _image_folder, _load_folder),
    Source("nested", _nested, _load_nested),
)}


def load(data, cfg: dict, on_event=ignore, *, in_memory=True, split=None,
         prepare=None) -> Dataset:
    """Load DATA of any kind; image folders are ingested with cfg's size, fit and split.

    With in_memory=False pixels in HDF5 files stay on disk (close the Dataset after use).
    `split` ("train" or "test"): of an image folder only that split is decoded (the other
    is empty). `prepare(src, out, cfg, on_event=...)`: how an image folder too large for
    memory is written to data/NAME.h5 first (the prepare stage, which the training stages
    pass); without it such a folder is refused (eval writes no files).
    """
    url = storage.url(data)
    if storage.remote(data):  # a Zarr store at a URL (only that: storage.refuse_non_zarr)
        storage.refuse_non_zarr(url)
        ds = _from_files(url, "zarr", url, url, cfg.get("storage_options"))
        return ds.in_memory() if in_memory else ds
    data = storage.local(data)  # file:///x is the path /x, recorded as the URL given
    path = os.path.abspath(os.fspath(data))
    reading(path)
    if url:
        ds = load(path, cfg, on_event, in_memory=in_memory, split=split, prepare=prepare)
        ds.source = url
        return ds
    if not os.path.exists(path):
        raise CatlrError(f"{data} does not exist, give an image folder, a prepared .h5 file "
                         "or a folder holding train_*.h5 and test_*.h5")
    if not (os.path.isfile(path) or os.path.isdir(path)):
        raise CatlrError(f"{data} is not a regular file or a folder (a device or a FIFO), give "
                         "an image folder, a prepared .h5 file or a folder holding the course pair")
    if os.path.isdir(path):
        held = _holdings(path)
        if len(held) > 1 and not all(h.startswith("a prepared") for h in held):
            # never pick one silently (several prepared files: _one_prepared says so)
            raise CatlrError(f"{os.fspath(data).rstrip(os.sep)}/ holds {len(held)} kinds of data, "
                             f"{'; '.join(held)}: pass the one to train on as DATA")
    for source in SOURCES.values():
        found = source.find(path)
        if found is not None:
            ds = source.load(found, cfg, on_event, {"split": split, "prepare": prepare})
            return ds.in_memory() if in_memory else ds
    loose = _loose_images(path)
    if loose:
        raise CatlrError(f"{os.fspath(data).rstrip(os.sep)}/ holds {loose} images but no class "
                         f"folders: put the cats in {os.path.join(os.fspath(data), 'cat')}/ and the "
                         f"rest in {os.path.join(os.fspath(data), 'non-cat')}/ (see 'catlr "
                         "prepare --help'), then train on the folder")
    out = os.path.join(os.fspath(data), "prepared.h5")
    command = ("'catlr prepare PHOTOS' (it writes data/prepared.h5)"
               if os.path.abspath(out) == os.path.abspath(DEFAULT_PREPARED) else
               f"'catlr prepare PHOTOS --out {out}'")
    raise CatlrError(f"{os.fspath(data).rstrip(os.sep)}/ holds no training data yet: copy the "
                     "course's train_catvnoncat.h5 and test_catvnoncat.h5 into it, or run "
                     f"{command} on a folder of photos with cat/ and non-cat/ inside")

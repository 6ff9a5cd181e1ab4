"""The one checked reader for every dataset of every container: an HDF5 file or a Zarr store.

Nothing else in catlr opens a container to read it (tests/test_structure.py checks), so
every dataset, whatever its key (pixels, labels, class names, paths, any future one),
passes the same checks before a byte of it is read:
  - it lives in the container itself: no external links, external storage or virtual
    datasets in an HDF5 file, no symbolic link out of a Zarr store;
  - its dtype and shape are what its role needs (pixels, labels, strings);
  - what it declares is stored: no missing chunks (missing data is an error, never zeros)
    and no declared size far beyond the stored bytes (a decompression bomb, a forgery);
  - compression is a filter or codec catlr knows, each chunk decompresses to at most its
    declared size (checked from the Zarr chunk's header, before decoding), and strings
    are at most MAX_STRING bytes;
and every refusal is one line naming the file and the dataset.
"""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np

from ..errors import CatlrError, describe
from . import storage
from .inputs import reading

MAX_RATIO = 50                 # declared / stored bytes of a large dataset: more is a bomb
MAX_SIZE = 1024                # pixels a side (config.LIMITS["size"], what a model can hold)
LARGE = 64 << 20               # ... where "large" starts
MAX_STRING = 4096              # bytes in one class name or path
HEAP_SLACK = 64 << 20          # bytes of a file besides pixels and strings (labels, metadata)
MAX_CHUNK = 256 << 20          # bytes of one chunk, decompressed
MAX_META = 1 << 20             # bytes of one Zarr metadata document
MAX_FILES = 2_000_000          # files in a Zarr store
HDF5_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
                6: "scaleoffset", 32000: "lzf"}   # built into HDF5 and h5py: no plugin loads
ZARR_TYPES = {"uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "int32": 4, "uint32": 4,
              "int64": 8, "uint64": 8, "float32": 4, "float64": 8, "bool": 1, "string": None}
FIX = "prepare the data again with 'catlr prepare'"


class ContainerError(CatlrError):
    """A dataset catlr will not read: names the file and the dataset."""


def open_container(path, *, is_input=True, storage_options=None) -> Container:
    """The container at `path`: an HDF5 file, or a Zarr store (a folder with zarr.json, or
    a NAME.zarr at an fsspec URL, opened with `storage_options`; file:// is a local path).
    It counts as an input of the command (no output may replace it) unless is_input=False
    (the output guard looking at what an output would replace)."""
    url = storage.remote(path)
    if url:
        storage.refuse_non_zarr(url)
        if is_input:
            reading(url)
        return ZarrContainer(url, storage_options)
    path = os.fspath(storage.local(path))
    if is_input:
        reading(path)
    if os.path.isdir(path):
        return ZarrContainer(path)
    return HDF5Container(path)


class Container:
    """A read-only view of a container whose every read is checked. Use as a context
    manager, or close(); pixels() arrays read from the open container."""

    kind = ""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def fail(self, key, why: str, fix: str = FIX) -> ContainerError:
        return ContainerError(f"{self.path}: {key} {why}, {fix}")

    def found(self) -> str:
        """The container's keys for a message: the first few, and how many more."""
        keys = self.keys()
        shown = ", ".join(k[:40] for k in keys[:8])
        return (shown + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")) or "none"

    # ---- what each backend provides ----
    def keys(self) -> list[str]:
        raise NotImplementedError

    def __contains__(self, key) -> bool:
        raise NotImplementedError

    def _array(self, key):
        """The checked array at key (lives here, is stored, known compression), or raise."""
        raise NotImplementedError

    def written_by_catlr(self) -> bool:
        raise NotImplementedError

    def _raw_attributes(self) -> dict:
        raise NotImplementedError

    def attributes(self) -> dict:
        """The container's own attributes that are short texts or numbers (what 'catlr
        prepare' records: its source, when, how many images, each split's fingerprint);
        anything else is left unread."""
        out = {}
        for key, value in self._raw_attributes().items():
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, (np.integer, np.floating)):
                value = value.item()
            if isinstance(value, str) and len(value) <= MAX_STRING or (
                    isinstance(value, (int, float)) and not isinstance(value, bool)):
                out[str(key)[:64]] = value
        return out

    # ---- the roles: every read goes through one of these ----
    def pixels(self, key):
        """Images (m, size, size, 3) uint8, left in the container (read when sliced)."""
        a = self._array(key)
        if len(a.shape) != 4 or a.shape[3] != 3 or a.shape[1] != a.shape[2] or \
                np.dtype(a.dtype) != np.uint8:
            raise self.fail(key, f"has shape {tuple(a.shape)} and dtype {a.dtype}, expected "
                                 "(m, size, size, 3) uint8 RGB images",
                            "write the file with 'catlr prepare'")
        if not 1 <= a.shape[1] <= MAX_SIZE:
            raise self.fail(key, f"holds images of {a.shape[1]} x {a.shape[2]} pixels, catlr "
                                 f"trains on images of 1 to {MAX_SIZE} pixels a side",
                            "prepare the images with --size 64")
        return _Checked(self, key, a) if self.kind == "hdf5" else a

    def labels(self, key, m: int):
        """Labels (m,) int64, each 0 or 1 (stored as (m,) or (1, m) integers or floats)."""
        a = self._array(key)
        if np.dtype(a.dtype).kind not in "iubf":
            raise self.fail(key, f"holds {a.dtype} values, not numbers",
                            "relabel as 0 = negative, 1 = positive")
        if tuple(a.shape) not in ((m,), (1, m)):
            raise self.fail(key, f"has shape {tuple(a.shape)}, expected ({m},), one label per "
                                 "image", "write one label per image")
        try:
            y = np.asarray(a[...]).reshape(-1)
        except (OSError, ValueError, TypeError) as e:
            raise self.fail(key, f"cannot be read ({describe(e)})") from None
        if not np.isin(y, (0, 1)).all():
            bad = sorted(set(np.unique(y).tolist()) - {0, 1})[:5]
            raise self.fail(key, f"holds labels other than 0 and 1 ({bad})",
                            "relabel as 0 = negative, 1 = positive")
        return y.astype(np.int64)

    def strings(self, key, n: int | None = None) -> list[str] | None:
        """A 1-D dataset of n strings (class names, paths) as a list; None when the key is
        absent or holds something else (these keys are optional: catlr does without)."""
        if key not in self or not self._is_array(key):
            return None
        a = self._array(key)
        if len(a.shape) != 1 or (n is not None and a.shape[0] != n) or not self._stringy(a):
            return None
        out = []
        for start in range(0, a.shape[0], 1024):
            try:
                values = self._read_strings(a, start, min(start + 1024, a.shape[0]))
            except (OSError, ValueError, TypeError) as e:
                raise self.fail(key, f"cannot be read ({describe(e)})") from None
            for value in values:
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                if len(text.encode("utf-8", "surrogatepass")) > MAX_STRING:
                    raise self.fail(key, f"holds a string of over {MAX_STRING} bytes, not a "
                                         "name or a path")
                if not text:
                    raise self.fail(key, "holds an empty name", "name every class and path")
                out.append(text)
        return out

    def _is_array(self, key) -> bool:
        raise NotImplementedError

    def _stringy(self, a) -> bool:
        raise NotImplementedError

    def _read_strings(self, a, start, stop):
        return a[start:stop].tolist()

    def _check_size(self, key, declared: int, stored: int, entries: int, what="entries"):
        if declared > LARGE and stored * MAX_RATIO < declared:
            raise self.fail(key, f"declares {entries} {what} ({declared >> 20} MB) but stores "
                                 f"{stored >> 10} KB: the file is damaged or forged")


# ---------------------------------------------------------------- HDF5

class _Checked:
    """An HDF5 dataset that passed the checks, read by rows: a read that fails (a corrupt
    chunk, a filter error) names the file and the dataset."""

    def __init__(self, container, key, ds):
        self.container, self.key, self.ds, self.path = container, key, ds, container.path
        self.shape, self.dtype, self.ndim, self.chunks = ds.shape, ds.dtype, ds.ndim, ds.chunks

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, sel):
        try:
            return self.ds[sel]
        except (OSError, ValueError, TypeError) as e:
            raise self.container.fail(self.key, f"cannot be read ({describe(e)})") from None

    def read_into(self, start, stop, out):
        """Rows start:stop into `out` (C order, their shape), with no array of its own
        (the stream engine's buffers); a failed read names the file as __getitem__ does."""
        try:
            self.ds.read_direct(out, np.s_[start:stop], np.s_[0:stop - start])
        except (OSError, ValueError, TypeError) as e:
            raise self.container.fail(self.key, f"cannot be read ({describe(e)})") from None
        return out

    def __array__(self, dtype=None, copy=None):
        a = self[()]
        return a if dtype is None else a.astype(dtype)


class HDF5Container(Container):
    kind = "hdf5"

    def __init__(self, path):
        super().__init__(path)
        if not os.path.isfile(self.path):  # a FIFO named train_x.h5 would block the read forever
            raise ContainerError(f"{self.path} is not a regular file, give a .h5 written by "
                                 "'catlr prepare' or the course")
        try:
            self.f = h5py.File(self.path, "r")
        except OSError as e:
            raise ContainerError(f"{self.path} is not a readable HDF5 file ({describe(e)}), "
                                 "give a .h5 written by 'catlr prepare' or the course") from None
        self._heap = None

    def close(self):
        self.f.close()

    def keys(self):
        return sorted(self.f.keys())

    def __contains__(self, key):
        return key in self.f

    def written_by_catlr(self) -> bool:
        return "catlr_version" in self.f.attrs

    def _raw_attributes(self):
        out = {}
        for name in list(self.f.attrs)[:64]:
            aid = self.f.attrs.get_id(name)
            if aid.shape in ((), None) and aid.dtype.itemsize <= MAX_STRING:
                with _quiet():
                    out[name] = self.f.attrs[name]
        return out

    def _is_array(self, key):
        link = self.f.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            return True  # refused by _array, never skipped: it points outside the file
        return isinstance(self.f.get(key), h5py.Dataset)

    def _stringy(self, a):
        info = h5py.check_string_dtype(a.dtype)
        if info is None:
            return a.dtype.kind in "SU"
        if info.length is not None and info.length > MAX_STRING:
            raise self.fail(a.name.lstrip("/"), f"holds strings of {info.length} bytes, not "
                                                 "names or paths")
        if info.length is None:  # variable length: bounded by what no dataset accounts for
            bound = self._heap_bound()
            if bound > a.shape[0] * MAX_STRING + HEAP_SLACK:
                raise self.fail(a.name.lstrip("/"), f"may hold up to {bound >> 20} MB of text "
                                                     f"for {a.shape[0]} names or paths")
        return True

    def _heap_bound(self) -> int:
        """Bytes of the file besides its pixels: an upper bound on what its variable-length
        strings (kept apart, in the file's heap) can take. (The pixel datasets only: visiting
        every object of a file with many would take seconds.)"""
        if self._heap is None:
            pixels = 0
            for split in ("train", "test", "val"):
                ds = self.f.get(f"{split}_set_x")
                if isinstance(ds, h5py.Dataset):
                    pixels += ds.id.get_storage_size()
            self._heap = max(os.path.getsize(self.path) - pixels, 0)
        return self._heap

    def _read_strings(self, a, start, stop):
        return a[start:stop].tolist()

    def _array(self, key):
        ds = self._dataset(key)
        plist = ds.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code = plist.get_filter(i)[0]
            if code not in HDF5_FILTERS:
                raise self.fail(key, f"is compressed with HDF5 filter {code}, which catlr does "
                                     f"not read (it reads {', '.join(sorted(HDF5_FILTERS.values()))})",
                                "write it uncompressed or with gzip")
        if h5py.check_string_dtype(ds.dtype) is not None and ds.dtype.kind == "O":
            return ds  # variable-length strings: bounded when read (strings())
        if ds.dtype.kind not in "biufSU":
            raise self.fail(key, f"holds {ds.dtype} values", "write numbers or strings")
        self._check_stored(key, ds, plist.get_layout())
        return ds

    def _dataset(self, key):
        """The dataset at `key`, living in this file: no link out of it, no group, no data
        kept elsewhere (virtual, external storage)."""
        link = self.f.get(key, getlink=True)
        if link is None:
            raise self.fail(key, f"is missing (found: {self.found()})",
                            "use the course's schema (see 'catlr prepare --help')")
        if isinstance(link, h5py.ExternalLink):
            raise self.fail(key, "is a link to another file",
                            "catlr reads data that lives in the file itself: copy the data in")
        ds = self.f.get(key)
        if not isinstance(ds, h5py.Dataset):
            what = ("a link to nothing" if ds is None else "a group"
                    if isinstance(ds, h5py.Group) else type(ds).__name__)
            raise self.fail(key, f"must be a dataset (found {what})",
                            "write the file with 'catlr prepare'")
        if ds.file.filename != self.f.filename:
            raise self.fail(key, "lives in another file", "copy the data in")
        if ds.is_virtual or ds.external:
            raise self.fail(key, "keeps its data outside the file ("
                                 f"{'a virtual dataset' if ds.is_virtual else 'external storage'})",
                            "catlr reads data that lives in the file itself: copy the data in")
        return ds

    def _check_stored(self, key, ds, layout) -> None:
        """What the dataset declares is stored: every chunk written (each of a bounded
        size), a contiguous one's every byte, and no size far beyond what is stored."""
        itemsize = ds.dtype.itemsize
        declared = int(np.prod(ds.shape, dtype=np.int64)) * itemsize if ds.shape else itemsize
        stored = ds.id.get_storage_size()
        entries = ds.shape[0] if ds.shape else 1
        what = "images" if len(ds.shape) == 4 else "entries"
        if layout == h5py.h5d.CHUNKED and declared:
            chunk = int(np.prod(ds.chunks, dtype=np.int64)) * itemsize
            if chunk > MAX_CHUNK:
                raise self.fail(key, f"has chunks of {chunk >> 20} MB, over catlr's "
                                     f"{MAX_CHUNK >> 20} MB")
            expected = int(np.prod([math.ceil(s / c) for s, c in zip(ds.shape, ds.chunks)]))
            have = ds.id.get_num_chunks()
            if have < expected:
                raise self.fail(key, f"declares {entries} {what} ({declared >> 20} MB) but "
                                     f"stores {stored >> 10} KB: {expected - have} of its "
                                     f"{expected} chunks were never written, the file is "
                                     "damaged or forged")
        elif layout == h5py.h5d.CONTIGUOUS and declared and stored < declared:
            raise self.fail(key, f"declares {entries} {what} ({declared >> 10} KB) but stores "
                                 f"{stored >> 10} KB: its data was never written")
        self._check_size(key, declared, stored, entries, what)


# ---------------------------------------------------------------- Zarr

class _LocalFiles:
    """A store's files on a local filesystem: listed with os.scandir, a link out of the
    store refused, FIFOs and devices refused."""

    def __init__(self, path):
        self.path, self.root = path, os.path.realpath(path)

    def is_file(self, rel) -> bool:
        return os.path.isfile(os.path.join(self.path, rel))

    def walk(self) -> dict[str, int]:
        """Every file of the store, relative, '/'-separated, with its size; a link out of
        it is refused. Iterative and bounded: a deep or huge tree is not a store catlr wrote."""
        found, todo = {}, [("", 0)]
        while todo:
            rel, depth = todo.pop()
            if depth > 16:
                raise ContainerError(f"{self.path}: {rel} is nested {depth} folders deep, "
                                     "deeper than any Zarr store catlr writes")
            try:
                entries = list(os.scandir(os.path.join(self.path, rel) if rel else self.path))
            except OSError as e:
                raise ContainerError(f"{self.path}: {rel or '.'} cannot be listed "
                                     f"({e.strerror}), check its permissions") from None
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if os.path.commonpath([target, self.root]) != self.root:
                        raise ContainerError(f"{self.path}: {name} is a link out of the store "
                                             f"(to {target}), catlr reads data that lives in "
                                             "the store itself: copy the data in")
                if entry.is_dir():
                    todo.append((name, depth + 1))
                elif entry.is_file():
                    found[name] = entry.stat().st_size
                else:
                    raise ContainerError(f"{self.path}: {name} is not a regular file (a FIFO or "
                                         "a device), give a store written by 'catlr prepare'")
                if len(found) > MAX_FILES:
                    raise ContainerError(f"{self.path} holds over {MAX_FILES:,} files, more "
                                         "than any store catlr writes")
        return found

    def read(self, rel, limit: int) -> bytes:
        """At most `limit` bytes of a file (OSError as it comes)."""
        with open(os.path.join(self.path, rel), "rb") as f:
            return f.read(limit)


class _RemoteFiles:
    """A store's files at an fsspec URL (s3://, memory://, ...): one listing of every key
    (fs.find), bounded reads (fs.cat_file with a range); any failure of the filesystem
    (no bucket, no credentials, nothing listening) is one line naming the URL."""

    def __init__(self, url, options):
        self.path, self.options = url, dict(options or {})
        self.fs, self.root = storage.filesystem(url, self.options)
        self.root = self.root.rstrip("/")

    def _call(self, what, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except CatlrError:
            raise
        except Exception as e:  # a filesystem's own errors: botocore's, aiohttp's, OSError
            raise storage.failure(self.path, e, self.options, what) from None

    def is_file(self, rel) -> bool:
        """Whether the key is there (fs.isfile would take a refused connection for no)."""
        try:
            return self.fs.info(f"{self.root}/{rel}").get("type") == "file"
        except FileNotFoundError:
            return False
        except Exception as e:
            raise storage.failure(self.path, e, self.options) from None

    def exists(self) -> bool:
        try:
            self.fs.info(self.root)
            return True
        except FileNotFoundError:
            return False
        except Exception as e:
            raise storage.failure(self.path, e, self.options) from None

    def walk(self) -> dict[str, int]:
        listing = self._call("listed", self.fs.find, self.root, maxdepth=17, withdirs=True,
                             detail=True)
        if len(listing) > MAX_FILES:
            raise ContainerError(f"{self.path} holds over {MAX_FILES:,} files, more than any "
                                 "store catlr writes")
        found = {}
        for full, info in listing.items():
            rel = full.rstrip("/")[len(self.root):].lstrip("/")
            if not rel:
                continue
            kind = info.get("type")
            if rel.count("/") > 16:
                raise ContainerError(f"{self.path}: {rel[:80]} is nested {rel.count('/')} "
                                     "folders deep, deeper than any Zarr store catlr writes")
            if kind == "file":
                found[rel] = int(info.get("size") or 0)
            elif kind != "directory":
                raise ContainerError(f"{self.path}: {rel[:80]} is not a regular file ({kind}), "
                                     "give a store written by 'catlr prepare'")
        return found

    def read(self, rel, limit: int) -> bytes:
        try:
            return self.fs.cat_file(f"{self.root}/{rel}", start=0, end=limit)
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as e:
            raise storage.failure(self.path, e, self.options) from None


def _files(path, options):
    url = storage.remote(path)
    return _RemoteFiles(url, options) if url else _LocalFiles(os.fspath(storage.local(path)))


class _ZarrArray:
    """One array of a Zarr store: metadata read and checked by catlr; zarr decodes its
    chunks from catlr's store (_CheckedStore), which hands zarr the metadata catlr checked
    and each chunk's bytes only once their header says they fit."""

    def __init__(self, store, key, meta, chunk_files):
        self.store, self.key, self.meta, self.path = store, key, meta, store.path
        self.storage_options = store.options
        self.shape = tuple(meta["shape"])
        self.dtype = np.dtype("O") if meta["data_type"] == "string" else np.dtype(meta["data_type"])
        self.chunks = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        self.chunk_files = chunk_files   # {chunk index tuple: relative key}
        self._zarr = None

    @property
    def ndim(self):
        return len(self.shape)

    def __len__(self):
        return self.shape[0]

    def _open(self):
        if self._zarr is None:
            zarr = self.store.zarr()
            try:
                self._zarr = zarr.open_array(store=self.store.checked_store(), path=self.key,
                                             mode="r", zarr_format=3)
            except CatlrError:
                raise
            except Exception as e:  # anything zarr meets in a damaged store
                raise self.store.fail(self.key, f"cannot be opened ({describe(e)})") from None
        return self._zarr

    def __getitem__(self, sel):
        if sel is Ellipsis:
            sel = slice(None)
        if isinstance(sel, tuple) or not isinstance(sel, (slice, int, np.integer)):
            raise TypeError("a container array is read by rows: a[i] or a[start:stop]")
        try:
            return np.asarray(self._open()[sel])
        except CatlrError:
            raise
        except Exception as e:  # a corrupt chunk, a codec error
            raise self.store.fail(self.key, f"cannot be read ({describe(e)})") from None

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    def tolist(self):
        return self[:].tolist()


class ZarrContainer(Container):
    """A Zarr version 3 store: a local folder, or at an fsspec URL with `options` (the
    same checks either way; storage.py turns the URL into a filesystem)."""

    kind = "zarr"

    def __init__(self, path, options=None):
        super().__init__(path)
        self.options = dict(options or {})
        self.io = _files(path, self.options)
        self.path = self.io.path
        self._docs, self._chunks, self._store = {}, {}, None   # what zarr may be handed
        if not self.io.is_file("zarr.json"):
            if self.io.is_file(".zgroup"):
                raise ContainerError(f"{self.path} is a Zarr version 2 store, catlr reads "
                                     "version 3 stores written by 'catlr prepare SRC --out "
                                     "NAME.zarr'")
            if self.io.is_file(storage.PARTIAL):  # a copy cut short
                raise ContainerError(f"{self.path} is a store catlr was writing when it "
                                     "stopped (incomplete), prepare it again with 'catlr "
                                     "prepare SRC --out URL.zarr'")
            if isinstance(self.io, _RemoteFiles) and not self.io.exists():
                raise ContainerError(f"{self.path} does not exist (check the URL and "
                                     f"--storage-option), give a store written by 'catlr "
                                     "prepare SRC --out URL.zarr'")
            raise ContainerError(f"{self.path} is not a Zarr store (no zarr.json), give one "
                                 "written by 'catlr prepare SRC --out NAME.zarr'")
        self.files = self.io.walk()
        group = self._meta("zarr.json", "the store")
        if group.get("node_type") != "group" or group.get("zarr_format") != 3:
            raise ContainerError(f"{self.path}: zarr.json does not describe a version 3 group, "
                                 f"give a store written by 'catlr prepare'")
        self.attrs = group.get("attributes") if isinstance(group.get("attributes"), dict) else {}
        self.arrays = {}
        for rel in self.files:
            parts = rel.split("/")
            if len(parts) == 2 and parts[1] == "zarr.json":
                self.arrays[parts[0]] = None  # read when asked for

    def _meta(self, rel, what) -> dict:
        try:
            text = self.io.read(rel, MAX_META + 1)
            if len(text) > MAX_META:
                raise ValueError(f"over {MAX_META >> 10} KB")
            doc = json.loads(text.decode("utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, RecursionError) as e:
            raise ContainerError(f"{self.path}: the metadata of {what} ({rel}) is malformed "
                                 f"({describe(e)}), {FIX}") from None
        self._docs[rel] = bytes(text)  # zarr reads exactly what was checked
        return doc

    def zarr(self):
        try:
            import zarr
        except ImportError:
            raise ContainerError(f"{self.path} is a Zarr store and reading it needs zarr, "
                                 "which is not installed: pip install \"catlr[dask]\"") from None
        return zarr

    def checked_store(self):
        if self._store is None:
            self._store = _checked_store(self)
        return self._store

    def keys(self):
        return sorted(self.arrays)

    def __contains__(self, key):
        return key in self.arrays

    def written_by_catlr(self) -> bool:
        return "catlr_version" in self.attrs

    def _raw_attributes(self):
        return self.attrs

    def _is_array(self, key):
        return key in self.arrays

    def _stringy(self, a):
        return a.meta["data_type"] == "string"

    def _array(self, key) -> _ZarrArray:
        if key not in self.arrays:
            raise self.fail(key, f"is missing (found: {self.found()})",
                            "write the store with 'catlr prepare'")
        if self.arrays[key] is None:
            self.arrays[key] = self._load(key)
        return self.arrays[key]

    def _load(self, key) -> _ZarrArray:
        meta = self._meta(f"{key}/zarr.json", key)
        bad = self._bad_meta(meta)
        if bad:
            raise self.fail(key, f"has metadata catlr cannot use ({bad})")
        shape, chunks = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
        itemsize = ZARR_TYPES[meta["data_type"]]
        chunk_bytes = int(np.prod(chunks, dtype=np.int64)) * (itemsize or 0)
        if chunk_bytes > MAX_CHUNK:
            raise self.fail(key, f"has chunks of {chunk_bytes >> 20} MB, over catlr's "
                                 f"{MAX_CHUNK >> 20} MB")
        files = self._chunk_files(key, meta)
        grid = [math.ceil(s / c) for s, c in zip(shape, chunks)]
        expected = int(np.prod(grid, dtype=np.int64)) if all(shape) else 0
        present = sum(1 for i in files if all(a < g for a, g in zip(i, grid)))
        entries = shape[0] if shape else 1
        what = "images" if len(shape) == 4 else "entries"
        if present < expected:
            raise self.fail(key, f"declares {entries} {what} but {expected - present} of its "
                                 f"{expected} chunks are missing: missing data is not zeros, "
                                 "the store is damaged or incomplete")
        if itemsize:
            stored = sum(self.files[rel] for rel in files.values())
            self._check_size(key, int(np.prod(shape, dtype=np.int64)) * itemsize, stored,
                             entries, what)
        a = _ZarrArray(self, key, meta, files)
        self._chunks.update({rel: a for rel in files.values()})
        return a

    def _chunk_files(self, key, meta) -> dict:
        """{chunk index: its file} of the array at `key`, named as zarr reads them ('01',
        ' 1' or '+1' is no chunk 1 to zarr, so none to catlr either)."""
        sep = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
        prefix = f"{key}/c{sep}" if sep == "/" else f"{key}/c."
        files = {}
        for rel in self.files:
            if not rel.startswith(prefix):
                continue
            parts = rel[len(prefix):].split(sep)
            if all(_CANONICAL.fullmatch(p) for p in parts) and len(parts) == len(meta["shape"]):
                files[tuple(int(p) for p in parts)] = rel
        return files

    @staticmethod
    def _bad_meta(meta) -> str | None:
        """Why an array's metadata is not one catlr reads, or None: the first of
        _META_CHECKS it fails. Every field's type is checked before its value (a list where
        a name goes is a reason, not a crash), and each check may rely on the ones before."""
        return next((why(meta) for ok, why in _META_CHECKS if not ok(meta)), None)

    def document(self, key: str) -> bytes | None:
        """What catlr's store hands zarr for `key`: the metadata catlr checked, a chunk of a
        checked array (check_chunk), or nothing (a key catlr did not check)."""
        if key in self._docs:
            return self._docs[key]
        a = self._chunks.get(key)
        return self.check_chunk(a, key) if a is not None else None

    def check_chunk(self, a: _ZarrArray, rel: str) -> bytes:
        """A chunk's bytes, read with a bound; refused when they pass what the array's
        metadata says one chunk holds (its zstd header's decompressed size, or its stored
        size), before zarr allocates anything for them."""
        rows = a.chunks[0]
        itemsize = ZARR_TYPES[a.meta["data_type"]]
        limit = (int(np.prod(a.chunks, dtype=np.int64)) * itemsize if itemsize else
                 rows * (MAX_STRING + 4) + 64)
        names = [c["name"] for c in a.meta["codecs"]]
        # zstd's worst case for data it cannot compress: a little over the data itself
        bound = limit + 64 + (limit // 128 + 1024 if "zstd" in names else 0)
        try:
            data = self.io.read(rel, bound + 1)
        except OSError as e:
            raise self.fail(a.key, f"has a chunk that cannot be read "
                                   f"({e.strerror or describe(e)})") from None
        if len(data) > bound:
            raise self.fail(a.key, f"has a chunk larger than the array allows (over {bound} "
                                   f"bytes for at most {limit})")
        if "zstd" not in names:
            return data
        content = _zstd_content_size(data[:18])
        if content is None:
            raise self.fail(a.key, f"has a chunk ({rel}) that is not a zstd frame with its size")
        if content > limit:
            raise self.fail(a.key, f"has a chunk that decompresses to {content} bytes, more "
                                   f"than the {limit} one chunk holds: the store is damaged "
                                   "or forged")
        return data


def _ints(v, low) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(s, int) and not isinstance(s, bool) and low <= s < 2**40 for s in v)


def _conf(d) -> dict | None:
    c = d.get("configuration", {}) if isinstance(d, dict) else None
    return c if isinstance(c, dict) else None


def _grid_ok(meta) -> bool:
    grid = meta.get("chunk_grid")
    chunks = (_conf(grid) or {}).get("chunk_shape")
    return (isinstance(grid, dict) and grid.get("name") == "regular" and _ints(chunks, 1)
            and len(chunks) == len(meta["shape"]))


def _encoding_ok(meta) -> bool:
    enc = meta.get("chunk_key_encoding")
    return (isinstance(enc, dict) and enc.get("name") == "default" and _conf(enc) is not None
            and _conf(enc).get("separator", "/") in ("/", "."))


def _codec_names(meta):
    codecs = meta.get("codecs")
    return ([c.get("name") if isinstance(c, dict) else c for c in codecs]
            if isinstance(codecs, list) else codecs)


def _codecs_ok(meta) -> bool:
    """Exactly what catlr writes: the serializer, at most one zstd, a checksum at the end."""
    first = "vlen-utf8" if meta["data_type"] == "string" else "bytes"
    allowed = ([first], [first, "zstd"], [first, "crc32c"], [first, "zstd", "crc32c"])
    names = _codec_names(meta)
    return (isinstance(names, list) and names in allowed
            and all(_conf(c) is not None for c in meta["codecs"]))


def _codecs_why(meta) -> str:
    first = "vlen-utf8" if meta["data_type"] == "string" else "bytes"
    return (f"codecs {str(_codec_names(meta))[:60]}: catlr reads {first}, then zstd (once) "
            "and a crc32c checksum")


# ZarrContainer._bad_meta's checks, in order: (whether the metadata passes, why not)
_META_CHECKS = (
    (lambda m: m.get("node_type") == "array" and m.get("zarr_format") == 3,
     lambda m: "not a version 3 array"),
    (lambda m: _ints(m.get("shape"), 0), lambda m: f"shape {str(m.get('shape'))[:40]}"),
    (lambda m: isinstance(m.get("data_type"), str) and m["data_type"] in ZARR_TYPES,
     lambda m: f"data type {str(m.get('data_type'))[:40]}"),
    (_grid_ok, lambda m: f"chunk grid {str(m.get('chunk_grid'))[:60]}"),
    (_encoding_ok, lambda m: f"chunk key encoding {str(m.get('chunk_key_encoding'))[:60]}"),
    (_codecs_ok, _codecs_why),
    (lambda m: not m.get("storage_transformers"), lambda m: "storage transformers"),
)


def _checked_store(container: ZarrContainer):
    """A read-only zarr store whose every byte comes from container.document: zarr never
    opens the store's files itself (locally or at a URL)."""
    import asyncio

    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest

    class CheckedStore(Store):
        supports_writes = supports_deletes = supports_partial_writes = False
        supports_listing = False

        def __init__(self):
            super().__init__(read_only=True)

        def __eq__(self, other):
            return self is other

        async def get(self, key, prototype, byte_range=None):
            data = await asyncio.to_thread(container.document, key)
            if data is None:
                return None
            if isinstance(byte_range, RangeByteRequest):
                data = data[byte_range.start:byte_range.end]
            elif isinstance(byte_range, OffsetByteRequest):
                data = data[byte_range.offset:]
            elif isinstance(byte_range, SuffixByteRequest):
                data = data[-byte_range.suffix:]
            return prototype.buffer.from_bytes(data)

        async def get_partial_values(self, prototype, key_ranges):
            return [await self.get(k, prototype, r) for k, r in key_ranges]

        async def exists(self, key):
            return key in container._docs or key in container._chunks

        async def set(self, key, value):
            raise PermissionError("catlr reads stores read-only")

        async def delete(self, key):
            raise PermissionError("catlr reads stores read-only")

        async def list(self):
            for key in container.files:
                yield key

        async def list_prefix(self, prefix):
            for key in container.files:
                if key.startswith(prefix):
                    yield key

        async def list_dir(self, prefix):
            prefix = prefix.rstrip("/") + "/" if prefix else ""
            seen = set()
            for key in container.files:
                if key.startswith(prefix):
                    name = key[len(prefix):].split("/", 1)[0]
                    if name not in seen:
                        seen.add(name)
                        yield name

    return CheckedStore()


_CANONICAL = __import__("re").compile(r"0|[1-9][0-9]{0,17}", __import__("re").ASCII)


def _quiet():
    """Reading one attribute: a malformed one is skipped, not an error."""
    import contextlib

    return contextlib.suppress(OSError, ValueError, TypeError)


def _zstd_content_size(head: bytes) -> int | None:
    """The decompressed size a zstd frame declares in its header, or None (RFC 8878, 3.1.1)."""
    if len(head) < 6 or head[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = head[4]
    fcs_flag, single, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if size == 0 or len(head) < pos + size:
        return None
    value = int.from_bytes(head[pos:pos + size], "little")
    return value + 256 if size == 2 else value

"""Writing the course's schema into a Zarr store (a folder, or at an fsspec URL): for a
Dask cluster whose workers read blocks from object or shared storage. Same arrays as the HDF5 file
(hdf5.py): train_set_x/_y/_paths, test_set_x/_y/_paths, list_classes. Reading a store is
containers.py's, like every read. Needs zarr (catlr[dask]): `require` says so in one line.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import CatlrError
from . import storage
from .schema import Sink

# the store's methods that reach the filesystem: coroutines, and async generators (listing)
_CALLS = ("get", "get_partial_values", "set", "set_if_not_exists", "exists", "delete",
          "delete_dir", "getsize", "is_empty", "clear", "_set_many")
_LISTINGS = ("list", "list_prefix", "list_dir")


def require(where):
    """The zarr module, or one line naming `where` when it cannot be imported (prepare asks
    before any work; a prepare to an HDF5 file never imports it)."""
    try:
        import zarr
    except ImportError:  # catlr[dask] not installed
        raise CatlrError(f"{where} is a Zarr store and writing it needs zarr, which is not "
                         "installed: pip install \"catlr[dask]\"") from None
    return zarr


def target(where, storage_options=None, shown=None):
    """Where zarr writes a new group: a local folder (storage_options None), or a store at
    an fsspec URL (the temporary prefix remote.remote_folder gives), whose filesystem is
    storage.filesystem's (its timeouts and retry caps) and whose every failure is one line
    naming `shown` (the store's URL, not its temporary prefix)."""
    require(shown or where)
    if storage_options is None:
        return str(where)
    url = str(where)
    fs, path = storage.filesystem(url, storage_options, "written", asynchronous=True)
    if not fs.async_impl:  # zarr drives its store from an event loop
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

        fs = AsyncFileSystemWrapper(fs, asynchronous=True)
    store = _reaching_store()(fs=fs, path=path.rstrip("/"), read_only=False)
    store.url, store.options = shown or url, storage_options
    return store


@functools.cache
def _reaching_store():
    """zarr's FsspecStore whose every call to the filesystem goes through storage.reaching:
    a dropped connection or a refused write mid-prepare is one line naming the store."""
    from zarr.storage import FsspecStore

    def call(name):
        base = getattr(FsspecStore, name)

        async def method(self, *args, **kw):
            with storage.reaching(self.url, self.options, "written"):
                return await base(self, *args, **kw)
        return method

    def listing(name):
        base = getattr(FsspecStore, name)

        async def method(self, *args, **kw):
            with storage.reaching(self.url, self.options, "written"):
                async for item in base(self, *args, **kw):
                    yield item
        return method

    def with_read_only(self, read_only=False):
        other = FsspecStore.with_read_only(self, read_only)
        other.url, other.options = self.url, self.options
        return other

    methods = {"url": "", "options": None, "with_read_only": with_read_only,
               **{n: call(n) for n in _CALLS if hasattr(FsspecStore, n)},
               **{n: listing(n) for n in _LISTINGS}}
    return type("ReachingStore", (FsspecStore,), methods)


class ZarrSink(Sink):
    """hdf5.Sink's appends, into the arrays of a zarr group."""

    def create(self, name, shape, dtype, chunks):
        self.f.create_array(name, shape=(0, *shape), chunks=(chunks, *shape), dtype=dtype)

    def write_classes(self, classes):
        a = self.f.create_array("list_classes", shape=(2,), chunks=(2,), dtype=str)
        a[:] = np.array(list(classes))

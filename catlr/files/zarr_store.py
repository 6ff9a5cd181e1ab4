"""Writing the course's schema into a Zarr store (a folder, or at an fsspec URL): for a
Dask cluster whose workers read blocks from object or shared storage. Same arrays as the HDF5 file
(hdf5.py): train_set_x/_y/_paths, test_set_x/_y/_paths, list_classes. Reading a store is
containers.py's, like every read. Needs zarr (catlr[dask]).
"""

from __future__ import annotations

import numpy as np
import zarr  # noqa: F401  (prepare opens its group with this module: imported once, here)

from .schema import Sink


def target(where, storage_options=None):
    """Where zarr writes a new group: a local folder (storage_options None), or a store at
    an fsspec URL (the temporary prefix remote.remote_folder gives)."""
    if storage_options is None:
        return str(where)
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(str(where), storage_options=storage_options or None,
                                read_only=False)


class ZarrSink(Sink):
    """hdf5.Sink's appends, into the arrays of a zarr group."""

    def create(self, name, shape, dtype, chunks):
        self.f.create_array(name, shape=(0, *shape), chunks=(chunks, *shape), dtype=dtype)

    def write_classes(self, classes):
        a = self.f.create_array("list_classes", shape=(2,), chunks=(2,), dtype=str)
        a[:] = np.array(list(classes))

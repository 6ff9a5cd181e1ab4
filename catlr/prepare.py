"""The prepare stage: an image folder -> one HDF5 file in the course's schema.

Ingestion (discovery, parallel decoding, the report) is ingest.py's; this stage
writes what it yields to a file, atomically.
"""

from __future__ import annotations

import os

import h5py

from . import __version__
from .atomic import atomic_folder, atomic_path
from .errors import CatlrError
from .events import ignore
from .hdf5 import Sink, find_course_pair
from .ingest import discover, ingest, start_decoding


def prepare(src, out, cfg: dict, *, dedupe=False, strict=False, on_event=ignore) -> dict:
    """Write SRC as one HDF5 file in the course's schema at `out`, atomically; returns the report."""
    pair = find_course_pair(src) if os.path.isdir(src) else None
    if pair:
        raise CatlrError(f"{src} holds the course pair ({os.path.basename(pair[0])} and "
                         f"{os.path.basename(pair[1])}), which needs no preparing: "
                         f"train on it directly with 'catlr train {src}'")
    layout = discover(src, cfg["positive"], cfg["test_fraction"], cfg["seed"])
    stream = start_decoding(layout, cfg["size"], cfg["fit"], cfg["workers"])
    attrs = {"catlr_version": __version__, "size": cfg["size"], "fit": cfg["fit"],
             "positive": cfg["positive"], "split": str(layout.split or "given")}
    if os.fspath(out).rstrip(os.sep).endswith(".zarr"):  # a Zarr store, for a Dask cluster
        from .zarr_store import ZarrSink, zarr

        with atomic_folder(out) as tmp:
            group = zarr.open_group(os.fspath(tmp), mode="w")
            report = ingest(layout, stream, ZarrSink(group, cfg["size"], layout.classes),
                            dedupe=dedupe, strict=strict, on_event=on_event)
            group.attrs.update(attrs)
    else:
        with atomic_path(out, "hdf5") as tmp:
            with h5py.File(tmp, "w", track_order=False) as f:
                report = ingest(layout, stream, Sink(f, cfg["size"], layout.classes),
                                dedupe=dedupe, strict=strict, on_event=on_event)
                f.attrs.update(attrs)
    report["out"] = os.path.abspath(os.fspath(out))
    return report

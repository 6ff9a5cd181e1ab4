"""The prepare stage: an image folder -> one HDF5 file in the course's schema.

Ingestion (discovery, parallel decoding, the report) is ingest.py's; this stage
writes what it yields to a file, atomically.
"""

from __future__ import annotations

import os
import time

import h5py

from ..data.ingest import discover, ingest, start_decoding
from ..errors import CatlrError, UsageError
from ..events import ignore
from ..files import storage, zarr_store
from ..files.containers import open_container
from ..files.inputs import scope
from ..files.outputs import atomic_folder, atomic_path, guard, remove_stale
from ..files.remote import remote_folder
from ..files.schema import Sink, find_course_pair
from ..learn.metrics import share_report
from ..version import __version__


def _check_room(out, n: int, size: int):
    """Refuse before writing when the output cannot fit: HDF5 buffers its writes, and a disk
    that fills up surfaces only when the file closes, inside h5py (where it has crashed the
    interpreter). The estimate: the pixels, 8 bytes of label and a path per image, 2% and
    1 MB of the format's own."""
    import shutil

    remove_stale(out)  # what a killed run left would count against the free space
    folder = os.path.dirname(os.path.abspath(os.fspath(out))) or "."
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    need = int(n * (size * size * 3 + 8 + 100) * 1.02) + (1 << 20)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise CatlrError(f"{out}: {n} images at {size} x {size} need about {need / 2**20:.1f} MB "
                         f"and {folder} has {free / 2**20:.1f} MB free, free some space or choose "
                         "another --out")


def prepare(src, out, cfg: dict, *, dedupe=False, strict=False, on_event=ignore) -> dict:
    """Write SRC as one HDF5 file (or Zarr store: out NAME.zarr, at a URL too) in the
    course's schema at `out`, atomically; returns the report. Inside the CLI's scope of
    inputs, or one of its own: a store at a URL is looked at once (inputs.once)."""
    with scope():
        return _prepare(src, out, cfg, dedupe=dedupe, strict=strict, on_event=on_event)


def _prepare(src, out, cfg: dict, *, dedupe, strict, on_event) -> dict:
    if storage.remote(src):
        raise UsageError(f"{storage.url(src)} is a URL: catlr prepares photos from a local (or "
                         "mounted) folder; what it writes may go to a URL (--out URL.zarr)")
    src = storage.local(src)
    options = cfg.get("storage_options") or {}
    url = storage.remote(out)
    out = url or storage.local(out)
    store = os.fspath(out).rstrip(os.sep).rstrip("/").endswith(".zarr")
    zarr = zarr_store.require(out) if store else None  # before the guard's round trips
    guard({"out": (out, "zarr" if store else "hdf5")}, [src], options)
    pair = find_course_pair(src) if os.path.isdir(src) else None
    if pair:
        raise CatlrError(f"{src} holds the course pair ({os.path.basename(pair[0])} and "
                         f"{os.path.basename(pair[1])}), which needs no preparing: "
                         f"train on it directly with 'catlr train {src}'")
    layout = discover(src, cfg["positive"], cfg["test_fraction"], cfg["seed"],
                      cfg.get("val_fraction", 0.0))
    if not url:
        _check_room(out, len(layout.items()), cfg["size"])
    splits = [s for s, _ in layout.splits()]
    replaced = previous(out, options)  # what is there now, to say what the new file replaces
    sizes = {}
    stream = start_decoding(layout, cfg, sizes)
    attrs = {"catlr_version": __version__, "size": cfg["size"], "fit": cfg["fit"],
             "positive": cfg["positive"], "split": str(layout.split or "given"),
             "source": os.path.abspath(os.fspath(src)), "created": _now()}

    def finish(report, target):
        target.update({**attrs, "images": report["used"],
                       **{f"fingerprint_{s}": v for s, v in report["fingerprint"].items()}})

    if store:  # a Zarr store, for a Dask cluster: a folder, or at a URL
        with (remote_folder(out, "zarr", options) if url else atomic_folder(out, "zarr")) as tmp:
            group = zarr.open_group(store=zarr_store.target(tmp, options if url else None, url),
                                    mode="w")
            sink = zarr_store.ZarrSink(group, cfg["size"], layout.classes, splits)
            report = ingest(layout, stream, sink,
                            dedupe=dedupe, strict=strict, on_event=on_event, sizes=sizes)
            finish(report, group.attrs)
    else:
        with atomic_path(out, "hdf5") as tmp:
            with h5py.File(tmp, "w", track_order=False) as f:
                report = ingest(layout, stream, Sink(f, cfg["size"], layout.classes, splits),
                                dedupe=dedupe, strict=strict, on_event=on_event, sizes=sizes)
                finish(report, f.attrs)
    neg_pos = report["classes"]
    report["shares"] = share_report({split: (c[neg_pos[1]], sum(c.values()))
                                     for split, c in report["counts"].items()})
    report["out"] = url or os.path.abspath(os.fspath(out))
    report["replaced"], report["fit"] = replaced, cfg["fit"]
    return report


def _now() -> str:
    """When the file was prepared; SOURCE_DATE_EPOCH (the reproducible-builds convention)
    fixes it, so two runs on the same photos can write the same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    when = time.gmtime(int(epoch)) if epoch.isdigit() else time.localtime()
    return time.strftime("%Y-%m-%d %H:%M:%S", when)


def previous(out, storage_options=None) -> dict | None:
    """What a prepared output holds before it is replaced: {images, source, created} from
    its attributes (None when there is nothing, or nothing catlr wrote, there)."""
    if not storage.remote(out) and not os.path.exists(out):
        return None
    try:
        with open_container(out, is_input=False, storage_options=storage_options) as c:
            a = c.attributes()
    except CatlrError:
        return None
    return {"images": a.get("images"), "source": a.get("source"), "created": a.get("created")}

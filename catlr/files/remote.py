"""A Zarr store written at an fsspec URL as atomically as object storage allows.

Object storage has no rename: the store is written under a temporary prefix beside its
place, then copied in with a PARTIAL marker first and zarr.json last (the output guard,
outputs.py, checks the destination first, as for a local folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from . import storage
from .caches import private_folder
from .outputs import _HOST, _hold, _stem, check_output, stale_lock
from .storage import PARTIAL


@contextlib.contextmanager
def remote_folder(dest, kind: str, storage_options=None):
    """atomic_folder for a Zarr store at an fsspec URL: yield the URL of a temporary prefix
    beside `dest` (.NAME.HOST.PID-RANDOM.tmp), removed if the block fails; on success its
    files are copied to `dest`, the group's zarr.json last, and the prefix removed. Object
    storage has no rename, so: the writing (minutes) never touches `dest`; an old store is
    first stripped of its zarr.json (it stops looking whole), then removed; and until the new
    zarr.json lands `dest` is no store a reader takes (catlr refuses one without it). A
    PARTIAL marker, there while the copy runs, keeps a copy cut short catlr's own output.
    While it is written, the prefix's lock (a local file: _lock_path) is held."""
    url = check_output(dest, kind, storage_options=storage_options)
    fs, root = storage.filesystem(url, storage_options, "written")
    root = root.rstrip("/")
    parent, _, name = root.rpartition("/")
    tmp = f"{parent}/.{_stem(name)}.{_HOST}.{os.getpid()}-{os.urandom(8).hex()}.tmp"
    _remove_stale_remote(fs, url, parent, _stem(name))
    lock = _lock_path(url, tmp)
    held = _hold(lock) if lock is not None else None
    try:
        try:
            yield fs.unstrip_protocol(tmp)
        except OSError as e:  # the filesystem's, from zarr writing the temporary prefix
            raise storage.failure(url, e, storage_options, "written") from None
        with storage.reaching(url, storage_options, "written"):
            _copy_in(fs, tmp, root)
    finally:
        with contextlib.suppress(Exception):
            fs.rm(tmp, recursive=True)
        if held is not None:
            held.release()


def _copy_in(fs, tmp: str, root: str) -> None:
    """The temporary prefix's files to `root`: PARTIAL first (a copy cut short is still
    catlr's own: the next prepare replaces it, and the reader says what it is), an old
    store's zarr.json next (it stops looking whole), the new zarr.json last, PARTIAL gone."""
    fs.pipe_file(f"{root}/{PARTIAL}", b"catlr was writing this store\n")
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(f"{root}/zarr.json")
    for f in fs.find(root):
        if not f.endswith(f"/{PARTIAL}"):
            fs.rm_file(f)
    marker = f"{tmp}/zarr.json"
    for f in sorted(f for f in fs.find(tmp) if f != marker) + [marker]:
        fs.copy(f, root + f[len(tmp):])
    fs.rm_file(f"{root}/{PARTIAL}")


def _lock_path(url: str, tmp: str) -> Path | None:
    """The local lock of a temporary prefix at a URL: object storage has no locks, so the
    writer holds a file of this host's (files.caches.private_folder), named after the
    prefix; None where there is no private folder."""
    folder = private_folder("locks")
    if folder is None:
        return None
    name = tmp.rstrip("/").rsplit("/", 1)[-1]  # its random part names it: one of a kind
    digest = hashlib.sha256(f"{storage.protocol(url)}:{name}".encode()).hexdigest()[:32]
    return Path(folder) / f"{digest}.lock"


def _remove_stale_remote(fs, url: str, parent: str, stem: str) -> None:
    """The temporary prefixes beside a store at a URL that no process of this host writes
    any more (killed with SIGKILL mid-prepare), as outputs._remove_stale does for local
    ones: by the local lock its writer held (a writer in another PID namespace of this
    host holds it too), or, with none, by its pid."""
    pattern = re.compile(re.escape(f".{stem}.{_HOST}.") + r"(\d+)-[0-9a-f]{16}\.tmp")
    with contextlib.suppress(Exception):
        for entry in fs.ls(parent or "/", detail=False):
            entry = entry.rstrip("/")
            match = pattern.fullmatch(entry.rsplit("/", 1)[-1])
            if not match:
                continue
            lock = _lock_path(url, entry) or Path("/nonexistent/catlr.lock")  # the pid decides
            stale, held = stale_lock(lock, int(match.group(1)))
            if stale:
                with contextlib.suppress(Exception):
                    fs.rm(entry, recursive=True)
            if held is not None:
                held.release()

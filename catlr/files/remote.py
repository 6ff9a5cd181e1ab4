"""A Zarr store written at an fsspec URL as atomically as object storage allows.

Object storage has no rename: the store is written under a temporary prefix beside its
place, then copied in with a PARTIAL marker first and zarr.json last (the output guard,
outputs.py, checks the destination first, as for a local folder).
"""

from __future__ import annotations

import contextlib
import os
import re

from . import storage
from .outputs import _HOST, _alive, _stem, check_output
from .storage import PARTIAL


@contextlib.contextmanager
def remote_folder(dest, kind: str, storage_options=None):
    """atomic_folder for a Zarr store at an fsspec URL: yield the URL of a temporary prefix
    beside `dest` (.NAME.HOST.PID-RANDOM.tmp), removed if the block fails; on success its
    files are copied to `dest`, the group's zarr.json last, and the prefix removed. Object
    storage has no rename, so: the writing (minutes) never touches `dest`; an old store is
    first stripped of its zarr.json (it stops looking whole), then removed; and until the new
    zarr.json lands `dest` is no store a reader takes (catlr refuses one without it). A
    PARTIAL marker, there while the copy runs, keeps a copy cut short catlr's own output."""
    url = check_output(dest, kind, storage_options=storage_options)
    fs, root = storage.filesystem(url, storage_options)
    root = root.rstrip("/")
    parent, _, name = root.rpartition("/")
    tmp = f"{parent}/.{_stem(name)}.{_HOST}.{os.getpid()}-{os.urandom(8).hex()}.tmp"
    _remove_stale_remote(fs, parent, _stem(name))
    try:
        try:
            yield fs.unstrip_protocol(tmp)
        except OSError as e:  # the filesystem's, from zarr writing the temporary prefix
            raise storage.failure(url, e, storage_options, "written") from None
        try:
            # PARTIAL first: a copy cut short is still catlr's own (the next prepare replaces
            # it) and the reader says what it is; it goes once zarr.json has landed
            fs.pipe_file(f"{root}/{PARTIAL}", b"catlr was writing this store\n")
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(f"{root}/zarr.json")  # an old store stops looking whole
            for f in fs.find(root):
                if not f.endswith(f"/{PARTIAL}"):
                    fs.rm_file(f)
            marker = f"{tmp}/zarr.json"
            files = sorted(f for f in fs.find(tmp) if f != marker) + [marker]
            for f in files:
                fs.copy(f, root + f[len(tmp):])
            fs.rm_file(f"{root}/{PARTIAL}")
        except Exception as e:  # the filesystem's own errors, as one line naming the URL
            raise storage.failure(url, e, storage_options, "written") from None
    finally:
        with contextlib.suppress(Exception):
            fs.rm(tmp, recursive=True)


def _remove_stale_remote(fs, parent: str, stem: str) -> None:
    """The temporary prefixes that dead processes of this host left beside a store at a
    URL (killed with SIGKILL mid-prepare), as _remove_stale does for local ones."""
    pattern = re.compile(re.escape(f".{stem}.{_HOST}.") + r"(\d+)-[0-9a-f]{16}\.tmp")
    with contextlib.suppress(Exception):
        for entry in fs.ls(parent or "/", detail=False):
            match = pattern.fullmatch(entry.rstrip("/").rsplit("/", 1)[-1])
            if match and not _alive(int(match.group(1))):
                with contextlib.suppress(Exception):
                    fs.rm(entry, recursive=True)

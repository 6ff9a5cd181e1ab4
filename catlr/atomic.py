"""Write every output file whole or not at all.

Each writer gets a temporary path in the destination's folder; only when it has
finished is the file synced and renamed over the destination, so an interrupt,
a full disk or a crash leaves the old file (if any) byte-identical and no
temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .errors import UsageError

NAME_MAX = 255  # bytes in a file name on the file systems catlr meets
# The first bytes of each kind of file catlr writes: an output never replaces a file of
# another kind (a model over the data it came from, a picture over a model).
MAGIC = {"png": b"\x89PNG", "model": b"PK", "hdf5": b"\x89HDF"}
NAMES = {"png": "a PNG picture", "model": "a model file (.npz)", "hdf5": "an HDF5 file",
         "text": "a text file"}


def check_output(dest, kind: str | None = None) -> Path:
    """The path to write `dest` to, after refusing what must not be replaced: anything that
    is not a regular file (a device, a FIFO, a folder), or a file of another kind than
    `kind` ("png", "model", "hdf5", or "text": none of those). A symbolic link is written
    through: its target is replaced."""
    dest = Path(dest)
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))
    if not dest.exists():
        return dest
    if not dest.is_file():
        raise UsageError(f"{dest} exists and is not a regular file (a device, FIFO or folder), "
                         "choose another output path")
    if kind is not None and dest.stat().st_size:
        with open(dest, "rb") as f:
            head = f.read(8)
        found = next((k for k, magic in MAGIC.items() if head.startswith(magic)), None)
        if found is not None and found != kind:  # an unknown or damaged file may be replaced
            what = NAMES[found]
            raise UsageError(f"{dest} is {what}, not {NAMES[kind]}: catlr will not write over "
                             "it, choose another output path")
    return dest


def _umask() -> int:
    # os.umask can only be read by setting it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _create_temp(folder: Path, name: str) -> Path:
    """A new empty file `.NAME.PID-RANDOM.tmp` beside the destination (mode 0600), its name
    cut so that it fits wherever NAME fits. Temporary files of the same output left by a
    process that no longer runs (killed with SIGKILL, a power cut) are removed first.
    (No tempfile module: importing it slows every start, bench/startup.py.)"""
    room = NAME_MAX - len(".") - len(".4194304-0123456789abcdef.tmp")
    stem = os.fsencode(name)[:room].decode(errors="ignore") or "out"
    _remove_stale(folder, stem)
    while True:
        path = folder / f".{stem}.{os.getpid()}-{os.urandom(8).hex()}.tmp"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return path
        except FileExistsError:
            continue


def remove_stale(dest) -> None:
    """Remove the temporary files that dead processes left for the output `dest`."""
    dest = Path(dest)
    stem = os.fsencode(dest.name)[:NAME_MAX - len(".4194304-0123456789abcdef.tmp") - 1]
    if dest.parent.is_dir():
        _remove_stale(dest.parent, stem.decode(errors="ignore") or "out")


def _remove_stale(folder: Path, stem: str):
    import re

    pattern = re.compile(re.escape(f".{stem}.") + r"(\d+)-[0-9a-f]{16}\.tmp")
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = pattern.fullmatch(entry.name)
            if match and not _alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        import shutil

                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def atomic_folder(dest: str | os.PathLike):
    """Yield a temporary folder beside `dest`; on success it replaces `dest` (a store of
    many files, such as Zarr's). An old `dest` is removed only once the new one is whole."""
    import shutil

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(dest.parent, dest.name)
    os.unlink(tmp)
    os.mkdir(tmp)
    try:
        yield tmp
        old = None
        if dest.exists():
            old = _create_temp(dest.parent, dest.name + ".old")
            os.unlink(old)
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, kind: str | None = None):
    """Yield a temporary path beside `dest`; on success rename it to `dest`.

    check_output refuses first what must not be replaced; an existing file keeps its mode."""
    dest = check_output(dest, kind)
    mode = stat.S_IMODE(dest.stat().st_mode) if dest.exists() else 0o666 & ~_umask()
    folder = dest.parent
    folder.mkdir(parents=True, exist_ok=True)  # --out models/m.npz works without a mkdir
    tmp = _create_temp(folder, dest.name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # the temporary file is made 0600: give it the file's mode, or a new file's
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if e.filename is None or str(e.filename) == str(tmp):  # say which output, not the temp
            raise OSError(e.errno, e.strerror or str(e), str(dest)) from None
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

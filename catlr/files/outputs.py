"""The one output guard: every file and folder catlr writes goes through here.

`atomic_path` (a file) and `atomic_folder` (a store of many files, a run folder) give the
writer a temporary path beside the destination; only when it has finished is the output
synced and renamed into place, so an interrupt, a full disk or a crash leaves the old
output (if any) byte-identical and no temporary behind. Before that, `check_output`
refuses what must not be written:
  - an output that is an input of the command, lies inside an input folder, or holds an
    input (inputs are what the command was given and everything its readers opened:
    inputs.reading records them while a scope is open, as the CLI keeps one per command);
  - an output of the wrong shape: a folder where a file goes, a file where a folder goes,
    a device or a FIFO;
  - an existing output that is not catlr's own of that kind (KINDS): a model over the data
    it came from, a store over a folder of photos, a CSV over a spreadsheet.
A new kind of output is one entry in KINDS, registered by the module that writes it (the
course's schema adds "hdf5" and "zarr", export "onnx", demo "demo", evaluate
"predictions", the run folder "run" and "text", modelfile "model", runs/state.py "state":
telling catlr's own HDF5 files needs h5py, which predict never loads); writing any other
kind is refused.
The inputs are recorded by inputs.py; a store at a URL is copied in by remote.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import CatlrError, UsageError
from . import pictures, storage
from .inputs import once, reading, recorded

NAME_MAX = 255  # bytes in a file name on the file systems catlr meets


@dataclass(frozen=True)
class Kind:
    """One kind of output: its name in messages, whether it is a folder, and how to tell
    that an existing one is catlr's own (and so may be replaced)."""

    name: str
    folder: bool
    own: Callable[[str], bool]
    suffix: str | tuple = ""  # the name's ending (or endings), when the format must be
                              # what the name says
    other: str = ""  # what another ending would write, said when the ending is refused


KINDS = {  # the pictures' here (catlr's mark); every other kind its writer's module adds
    "png": Kind("a PNG picture catlr drew", False, pictures.png_is_catlr, ".png"),
    "image": Kind("a sample image catlr drew", False,
                  lambda p: pictures.png_is_catlr(p) or pictures.jpeg_is_catlr(p)),
}

def _inside(path: str, folder: str) -> bool:
    return path != folder and os.path.commonpath([path, folder]) == folder


def refuse_url(path, flag: str | None = None, kind: str = "hdf5") -> None:
    """A URL given where only a local path will do (storage.py tells one): one line, not a
    local folder named 'memory:' (a real folder of that name is still a path). Only a Zarr
    store may be at a URL; file:// is a local path."""
    url = storage.remote(path)
    if url is None:
        return
    if kind in ("hdf5", "zarr"):
        storage.refuse_non_zarr(url, flag, writing=kind == "zarr")
        return
    name = f"--{flag} {url}" if flag else url
    raise UsageError(f"{name} is a URL: catlr writes {KINDS[kind].name} to a local (or "
                     "mounted) path only, give a path")


def _check_remote(url: str, kind: str, flag, inputs, options) -> str:
    """check_output for a Zarr store at a URL: not an input, not inside one (always: no
    round trip), and what is there already is catlr's own store, or nothing (looked at
    once in a command: inputs.once)."""
    name = f"--{flag} {url}" if flag else url
    for source in recorded() | {u for u in map(storage.remote, inputs) if u}:
        if source == url:
            raise UsageError(f"{name} is also an input of this command, writing it would "
                             "destroy it: choose another URL")
        if _under(url, source) or _under(source, url):
            raise UsageError(f"{name} {'lies inside' if _under(url, source) else 'holds'} the "
                             f"input {source}: choose another URL")
    key = (url, kind, tuple(sorted((k, repr(v)) for k, v in (options or {}).items())))
    once(key, lambda: _look_at_remote(url, name, KINDS[kind], options))
    return url


def _look_at_remote(url: str, name: str, spec: Kind, options) -> None:
    """What is at `url` now: nothing (in a bucket that is there), or catlr's own store (or
    the copy of one cut short); anything else is refused, and every failure of the
    filesystem is one line naming the URL."""
    fs, root = storage.filesystem(url, options, "written")
    root = root.rstrip("/")
    with storage.reaching(url, options, "written"):
        try:
            info = fs.info(root)  # fs.exists would take a refused connection for no
        except FileNotFoundError:
            bucket = root.strip("/").split("/")[0]
            if storage.protocol(url) not in ("memory", "file", "local") and bucket != root:
                fs.info(bucket)  # a store goes into a bucket that is there
            return
        if info.get("type") == "file":
            raise UsageError(f"{name} exists and is not a folder, catlr will not replace it "
                             f"with {spec.name}: choose another URL")
        if not (_remote_is_catlrs(fs, root) or _remote_file(fs, f"{root}/{storage.PARTIAL}")):
            raise UsageError(f"{name} holds something that is not {spec.name}, catlr will "
                             "not replace it: choose another URL")


def _remote_is_catlrs(fs, root: str) -> bool:
    """Whether the store's zarr.json records catlr's version (read with a bound)."""
    try:
        meta = json.loads(fs.cat_file(f"{root}/zarr.json", start=0, end=1 << 20))
    except (FileNotFoundError, ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and "catlr_version" in (meta.get("attributes") or {})


def _remote_file(fs, path: str) -> bool:
    """Whether `path` is a file (a copy of catlr's cut short: remote_folder's marker)."""
    try:
        return fs.info(path).get("type") == "file"
    except FileNotFoundError:
        return False


def _under(url: str, folder: str) -> bool:
    return url != folder and url.startswith(folder.rstrip("/") + "/")


def check_output(dest, kind: str, flag: str | None = None, inputs=(),
                 storage_options=None) -> Path | str:
    """The path to write `dest` to (a symbolic link is written through), after refusing
    what must not be written there; one line, exit 2 (see the module's docstring), or 1
    where the file system will not let catlr write there (a read-only folder).
    `inputs`: paths read by the command, besides those its scope recorded. A Zarr store
    may be at an fsspec URL (reached with `storage_options`): its URL is returned."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}: import the module that registers it "
                         "in files.outputs.KINDS first (catlr.files.schema for hdf5 and zarr)")
    spec = KINDS[kind]
    refuse_url(dest, flag, kind)
    url = storage.remote(dest)
    if url:
        return _check_remote(url, kind, flag, inputs, storage_options)
    dest = Path(storage.local(dest))
    name = (f"the run folder {dest}" if flag == "run" else f"--{flag} {dest}" if flag
            else str(dest))
    endings = (spec.suffix,) if isinstance(spec.suffix, str) else spec.suffix
    if spec.suffix and dest.suffix.lower() not in endings:
        raise UsageError(f"{name}: catlr writes {spec.name} here, name the file with "
                         f"{' or '.join(endings)} (e.g. {dest.with_suffix(endings[0]).name})"
                         + (f", {spec.other}" if spec.other else ""))
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))
    _refuse_inputs(os.path.realpath(dest), name, spec, inputs)
    for part in dest.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise UsageError(f"{name}: the name {part[:40]}... is over {NAME_MAX} bytes, longer "
                             "than a file system allows: choose a shorter one")
    if dest.exists() or dest.is_symlink():
        _check_existing(dest, name, spec)
    else:
        _check_parent(dest, name)
    return dest


def _refuse_inputs(real: str, name: str, spec: Kind, inputs) -> None:
    """An output that is an input, lies inside an input folder, or (a folder) holds one."""
    given = {os.path.realpath(os.fspath(storage.local(p))) for p in inputs
             if p is not None and not storage.remote(p) and os.path.exists(storage.local(p))}
    for source in recorded() | given:
        if "://" in source:  # a store at a URL: never a local output's concern
            continue
        if real == source:
            raise UsageError(f"{name} is also an input of this command, writing it would "
                             "destroy it: choose another path")
        if os.path.isdir(source) and _inside(real, source):
            raise UsageError(f"{name} lies inside the input folder {source}, which catlr reads "
                             "as data: choose a path outside it")
        if spec.folder and _inside(source, real):
            raise UsageError(f"{name} holds the input {source}, replacing it would destroy "
                             "it: choose another path")


def _check_parent(dest: Path, name: str) -> None:
    """A new output: the nearest folder that exists above it is a folder catlr may write in
    (a read-only one is a file problem, exit 1, not a flag's)."""
    parent = dest.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not os.path.isdir(parent):
        raise UsageError(f"{name} cannot be written: {parent} is "
                         f"{'a link to nothing' if os.path.islink(parent) else 'not a folder'}"
                         ", choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CatlrError(f"{name} cannot be written: catlr may not write in "
                         f"{os.path.abspath(parent)}, "
                         "choose another path or fix its permissions")


def _check_existing(dest: Path, name: str, spec: Kind) -> None:
    """An output that exists: of the right shape, and catlr's own of this kind."""
    if spec.folder:
        if not dest.is_dir():
            raise UsageError(f"{name} exists and is not a folder, catlr will not replace it "
                             f"with {spec.name}: choose another path")
        if not spec.own(str(dest)):
            raise UsageError(f"{name} is a folder that is not {spec.name}, catlr will not "
                             "replace it: choose another path")
        return
    if not dest.is_file():
        raise UsageError(f"{name} exists and is not a regular file (a device, FIFO or folder), "
                         "choose another output path")
    if dest.stat().st_size and not spec.own(str(dest)):
        other = next((k.name for k in KINDS.values() if not k.folder and k is not spec
                      and k.own(str(dest))), None)
        what = f"is {other}, not {spec.name}" if other else "exists and was not written by catlr"
        raise UsageError(f"{name} {what}: catlr will not write over it, choose another "
                         "output path (or remove the file)")


def guard(outputs: dict, inputs=(), storage_options=None) -> None:
    """Check, before any work, every output of a command ({flag: (path or None, kind)})
    against its inputs, each other and what is there already (check_output)."""
    inputs = [p for p in inputs if p is not None]
    for path in inputs:
        reading(path)
    seen = {}
    for flag, (path, kind) in outputs.items():
        if path is None:
            continue
        dest = check_output(path, kind, flag.replace("_", "-"), inputs, storage_options)
        dest = dest if isinstance(dest, str) else os.path.realpath(dest)
        if dest in seen:
            raise UsageError(f"--{flag.replace('_', '-')} {path} is also {seen[dest]}, choose "
                             "another path for one of them")
        seen[dest] = f"--{flag.replace('_', '-')}"


def _umask() -> int:
    # os.umask can only be read by setting it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_HOST = os.uname().nodename.replace(".", "-")[:40] or "host"
_TEMP_TAIL = len(".") + 40 + len(".4194304-0123456789abcdef.lock")


def _stem(name: str) -> str:
    return os.fsencode(name)[:NAME_MAX - 1 - _TEMP_TAIL].decode(errors="ignore") or "out"


class Held:
    """A temporary's lock: the file `.NAME.HOST.PID-RANDOM.lock` beside it, created before
    the temporary and held (flock) by the process writing it until the temporary is gone.
    Whether a temporary is stale is asked of its lock, not of its pid: a catlr in another
    PID namespace of this host (a container sharing the folder) sees a writer's pid as
    dead, but its lock as held."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still held: no one takes a lock file being dropped
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _hold(path: Path) -> Held | None:
    """Create the lock file `path` and hold it; None when the name is taken."""
    import fcntl

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another process is judging this new name stale: not ours
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None  # the caller takes another name
    except OSError:  # a file system without flock: the pid decides
        pass
    return Held(path, fd)


def _create_temp(folder: Path, name: str, folder_kind=False) -> tuple[Path, Held]:
    """A new empty file (mode 0600) or folder `.NAME.HOST.PID-RANDOM.tmp` beside the
    destination, its name cut so that it fits wherever NAME fits, and its lock (Held: release it
    once the temporary is gone). Temporaries of the same output that no process holds any
    more (killed with SIGKILL, a power cut) are removed first. (No tempfile module:
    importing it slows every start, bench/startup.py.)"""
    stem = _stem(name)
    _remove_stale(folder, stem)
    while True:
        base = folder / f".{stem}.{_HOST}.{os.getpid()}-{os.urandom(8).hex()}"
        held = _hold(base.with_name(base.name + ".lock"))
        if held is None:
            continue
        path = base.with_name(base.name + ".tmp")
        try:
            if folder_kind:
                os.mkdir(path)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return path, held
        except FileExistsError:
            held.release()
        except BaseException:
            held.release()
            raise


def remove_stale(dest) -> None:
    """Remove the temporaries for `dest` that no process of this host writes any more."""
    dest = Path(dest)
    if dest.parent.is_dir():
        _remove_stale(dest.parent, _stem(dest.name))


def _remove_stale(folder: Path, stem: str):
    # Only this host's: on shared storage a lock may not reach the machine that wrote it.
    pattern = re.compile(re.escape(f".{stem}.{_HOST}.") + r"(\d+)-[0-9a-f]{16}\.(tmp|lock)")
    with contextlib.suppress(OSError):
        found = {}
        for entry in os.scandir(folder):
            match = pattern.fullmatch(entry.name)
            if match:
                found.setdefault(entry.name[:-len(match.group(2)) - 1], int(match.group(1)))
        for base, pid in found.items():
            _remove_if_stale(folder / base, pid)


def _remove_if_stale(base: Path, pid: int) -> None:
    """Remove BASE.tmp, and its lock, when no process holds BASE.lock (stale)."""
    stale, held = stale_lock(base.with_name(base.name + ".lock"), pid)
    if stale:
        _remove(base.with_name(base.name + ".tmp"))
    if held is not None:
        held.release()


def stale_lock(lock: Path, pid: int) -> tuple[bool, Held | None]:
    """(whether the temporary that `lock` guards is no longer written, the lock taken when
    it was free: release it once the temporary is removed). No process holds the lock: its
    writer has ended. No lock file: a temporary of a catlr before locks (or lost with its
    lock), stale when `pid` is not alive here, as is a lock on a file system without flock."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return not _alive(pid), None
    except OSError:
        return False, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # held: its writer runs (here, or in another PID namespace)
        os.close(fd)
        return False, None
    except OSError:  # no flock on this file system
        if _alive(pid):
            os.close(fd)
            return False, None
    return True, Held(lock, fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path)
        else:
            os.unlink(path)


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
def atomic_folder(dest: str | os.PathLike, kind: str):
    """Yield a temporary folder beside `dest`; on success it replaces `dest` (a store of
    many files, a run folder). check_output refuses first what must not be replaced; an
    old `dest` is removed only once the new one is whole."""
    import shutil

    dest = check_output(dest, kind)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, held = _create_temp(dest.parent, dest.name, folder_kind=True)
    try:
        yield tmp
        if dest.exists():
            old, held_old = _create_temp(dest.parent, dest.name + ".old", folder_kind=True)
            os.rmdir(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
            held_old.release()
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        held.release()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, kind: str):
    """Yield a temporary path beside `dest`; on success rename it to `dest`.

    check_output refuses first what must not be replaced; an existing file keeps its mode."""
    dest = check_output(dest, kind)
    mode = stat.S_IMODE(dest.stat().st_mode) if dest.exists() else 0o666 & ~_umask()
    folder = dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)  # --out models/m.npz works without a mkdir
        tmp, held = _create_temp(folder, dest.name)
    except OSError as e:  # say which output, not the temporary
        raise OSError(e.errno, e.strerror or str(e), str(dest)) from None
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
    finally:
        held.release()

"""Where libraries keep what they reuse between runs when their usual place cannot be
written: a read-only HOME (a container, a CI runner, a locked-down account) or catlr
installed read-only (a system package). numba caches its compiled kernels beside their
source or in ~/.cache, matplotlib its settings and font list in ~/.config and ~/.cache;
when neither can be written, numba fails outright ("cannot cache function") and
matplotlib warns on stderr. catlr points them at a folder of this user's instead
(`private_folder`), or, where there is none, runs without the cache.
"""

from __future__ import annotations

import os
import stat
import sys


def private_folder(name: str) -> str | None:
    """TMPDIR/catlr-UID/NAME, made 0700 if need be, and used only when it is a real folder
    (not a link) that this user owns and no one else may write: in a temporary folder
    everyone shares, someone else could have made it first to plant a cache (numba's are
    pickles). None where there is no such folder to be had."""
    import tempfile

    uid = os.geteuid()
    folder = os.path.join(tempfile.gettempdir(), f"catlr-{uid}")
    for path in (folder, os.path.join(folder, name)):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
        try:
            info = os.lstat(path)
        except OSError:
            return None
        if (not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022
                or not os.access(path, os.W_OK | os.X_OK)):
            return None
    return path


def can_make(folder: str) -> bool:
    """Whether files can be written in `folder`, or it can be made: its nearest existing
    parent is a folder this process may write in (os.access: a read-only mount too)."""
    path = os.path.abspath(folder)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def _home() -> str:
    return os.path.expanduser("~")


def matplotlib_folders() -> list[str]:
    """The folders matplotlib writes its settings and font list to when MPLCONFIGDIR is not
    set: the XDG ones on Linux and BSD, ~/.matplotlib elsewhere."""
    if sys.platform.startswith(("linux", "freebsd")):
        return [os.path.join(os.environ.get(var) or os.path.join(_home(), default), "matplotlib")
                for var, default in (("XDG_CONFIG_HOME", ".config"),
                                     ("XDG_CACHE_HOME", ".cache"))]
    return [os.path.join(_home(), ".matplotlib")]


def quiet_matplotlib() -> None:
    """Before matplotlib is imported: its folders where it can write them (MPLCONFIGDIR,
    when the usual ones cannot be: matplotlib would make a temporary one at every start
    and warn), and none of its log lines on the terminal (building the font list, the
    first time, is a WARNING)."""
    import logging

    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    if "matplotlib" in sys.modules or os.environ.get("MPLCONFIGDIR"):
        return
    if not all(can_make(f) for f in matplotlib_folders()):
        folder = private_folder("matplotlib")
        if folder is not None:
            os.environ["MPLCONFIGDIR"] = folder


def numba_cache(probe) -> bool:
    """Whether numba can cache compiled kernels, after pointing it at a private folder
    (numba.config.CACHE_DIR) when none of NUMBA_CACHE_DIR, the package's folder and the
    user's cache can be written. `probe()` decorates a function with cache=True (numba finds its cache place
    then, and raises RuntimeError "cannot cache function" when there is none). False: run
    the kernels uncached (compiled at each start)."""
    import numba

    try:
        probe()
        return True
    except RuntimeError:
        pass
    folder = private_folder("numba")
    if folder is None:
        return False
    numba.config.CACHE_DIR = folder
    try:
        probe()
        return True
    except RuntimeError:
        return False

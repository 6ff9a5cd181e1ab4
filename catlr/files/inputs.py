"""The input recorder: what a command reads, so that no output of it may replace it.

The CLI opens one `scope` per command; every reader (the checked reader of containers,
the model and state readers, image folders, the config file) calls `reading(path)`, and
the output guard (outputs.py) refuses an output that is, lies inside, or holds a recorded
input. Outside a scope (the library used from Python) nothing is recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

from . import storage

_INPUTS: contextvars.ContextVar[set | None] = contextvars.ContextVar("catlr_inputs",
                                                                     default=None)
# outputs at a URL that the output guard checked in this scope (each check is round trips)
_CHECKED: contextvars.ContextVar[set | None] = contextvars.ContextVar("catlr_checked",
                                                                      default=None)


@contextlib.contextmanager
def scope():
    """Record the inputs read inside this block, so every output written in it is checked
    against them (the CLI opens one per command). Inside an open scope it is that scope:
    a stage that opens one for its library callers shares the CLI's."""
    if _INPUTS.get() is not None:
        yield
        return
    token, checked = _INPUTS.set(set()), _CHECKED.set(set())
    try:
        yield
    finally:
        _INPUTS.reset(token)
        _CHECKED.reset(checked)


def once(key, check) -> None:
    """check(), unless it passed for `key` in the open scope already (the output guard's
    look at an output at a URL: a prepare checks it in the CLI, the stage and the writer,
    and each look is round trips to the store). Outside a scope: every time."""
    seen = _CHECKED.get()
    if seen is not None and key in seen:
        return
    check()
    if seen is not None:
        seen.add(key)


def reading(path) -> None:
    """Note that `path` (a file or a folder) is an input of the command being run."""
    inputs = _INPUTS.get()
    if inputs is not None and path is not None:
        url = storage.remote(path)
        with contextlib.suppress(OSError, ValueError, TypeError):
            inputs.add(url or os.path.realpath(os.fspath(storage.local(path))))


def recorded() -> set:
    """The inputs recorded in the open scope: real local paths and URLs (empty outside one)."""
    return set(_INPUTS.get() or ())

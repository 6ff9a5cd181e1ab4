"""The planner: where training runs (the engine), how (the form) and in which floats (the
dtype), decided once, with the reason, from what each costs on this machine.

    memory  the uint8 pixels in memory, the products run on them (primal form), or K
            built once (dual form): fastest when it fits
    stream  the prepared file's uint8 images read a block at a time at every iteration:
            memory stays within the budget whatever m is
    dask    the blocks kept in a Dask cluster's workers, the products run there
The gradient step is the same on all of them (descent.py over design.py's seam); an
engine only says where blocks of X come from and where their products run. An engine is
one module in this package, with `build(x, choice, cfg) -> design.Design`, and one line
in ENGINES.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import numpy as np

from .. import packages
from ..config import parse_memory
from ..errors import CatlrError, UsageError
from ..events import ignore
from ..learn.design import GRAM_SLAB, feature_block
from ..learn.forms import choose_form
from ..learn.kernels import SCRATCH_BYTES

# name: (module in this package, reads the pixels again from a file, what it needs installed)
ENGINES = {
    "memory": ("memory", False, ()),
    "stream": ("stream", True, ()),
    "dask": ("dask", True, ("distributed", "dask")),
}
SHARE = 0.5  # of the memory that is free, when --memory is auto
BLOCK_SHARE = 0.25  # of the budget that the streaming engine's block buffers may take

def available_memory() -> int:
    """Bytes of memory free for a new process (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def budget(cfg) -> tuple[int, str]:
    """(bytes, how it was set): --memory, or SHARE of what is free."""
    if cfg.get("memory", "auto") != "auto":
        return parse_memory(cfg["memory"]), f"--memory {cfg['memory']}"
    free = available_memory()
    return int(free * SHARE), f"half of the {size_text(free)} free"


def size_text(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def needs(form: str, m: int, n_x: int, itemsize: int) -> int:
    """Bytes the memory engine takes. Primal: the uint8 pixels, which the products run on
    (no float X is built, whatever `itemsize`), and vectors of m and of n_x floats (a few
    each: w, the gradient, z, the labels) plus the NumPy path's scratch buffer. Dual: the
    pixels, K (float64), a block of features as floats (design.feature_block) and the
    temporary of one slab of K (design.GRAM_SLAB columns)."""
    pixels = m * n_x
    if form == "dual":
        return pixels + m * m * 8 + m * feature_block(m, n_x) * 8 + GRAM_SLAB * m * 8
    return pixels + 8 * 8 * (m + n_x) + SCRATCH_BYTES


def require(engine: str) -> None:
    """Refuse, before any data is read, an engine whose packages are not installed."""
    packages.require(f"--engine {engine}", ENGINES.get(engine, (None, None, ()))[2], engine)


@dataclass(frozen=True)
class Choice:
    """How to train: form (primal or dual), engine, dtype, the budget, and why (one phrase)."""

    form: str
    engine: str
    dtype: str
    budget: int
    why: str


def choose(m: int, n_x: int, iters: int, cfg: dict, on_disk: bool) -> Choice:
    """The form, engine and dtype for m examples of n_x features, as cfg asks or auto.

    on_disk: the pixels can be read again block by block (an HDF5 file), so that the
    stream and dask engines are possible.
    """
    limit, limit_why = budget(cfg)
    form, engine = cfg["form"], cfg["engine"]
    if engine != "auto" and ENGINES[engine][1] and form == "dual":
        raise UsageError(f"--form dual needs K in memory, it cannot run on --engine {engine}, "
                         "use --form primal or auto")
    if engine != "auto" and ENGINES[engine][1] and not on_disk:
        raise UsageError(f"--engine {engine} reads the images from a prepared file, run "
                         "'catlr prepare' on the folder and train on the .h5 it writes")
    if form == "auto":
        primal_size = np.dtype("float32" if cfg["dtype"] == "auto" else cfg["dtype"]).itemsize
        form = (choose_form(n_x, m, iters, primal_size) if engine in ("auto", "memory")
                else "primal")
        if form == "dual" and engine == "auto" and needs("dual", m, n_x, 8) > limit:
            form = "primal"
    dtype = cfg["dtype"] if cfg["dtype"] != "auto" else (
        "float64" if form == "dual" else "float32")
    need = needs(form, m, n_x, np.dtype(dtype).itemsize)
    if engine == "auto":
        if need <= limit:
            engine, why = "memory", f"{size_text(need)} fits the budget ({limit_why})"
        elif on_disk:
            engine, why = "stream", (f"{size_text(need)} in memory would pass the budget of "
                                     f"{size_text(limit)} ({limit_why})")
        else:
            raise CatlrError(f"training in memory needs {size_text(need)}, over the budget of "
                             f"{size_text(limit)} ({limit_why}), run 'catlr prepare' on the data and "
                             "train on the .h5 it writes, or raise --memory")
    else:
        why = "asked for"
    return Choice(form, engine, dtype, limit, why)


def design(choice: Choice, x, cfg: dict, on_event=ignore):
    """The design-matrix source of the chosen engine over images x (m, s, s, 3) uint8;
    `on_event` hears what the engine has to say while it runs (events.Notice)."""
    require(choice.engine)
    module = importlib.import_module(f".{ENGINES[choice.engine][0]}", __name__)
    return module.build(x, choice, cfg, on_event)

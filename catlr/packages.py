"""Optional packages: whether one is installed (without importing it), and the one line
that names the extra installing it. The engines (engines.ENGINES) and the solvers
(solvers.SOLVERS) both ask here, before any data is read."""

from __future__ import annotations

import importlib.util
import sys

from .errors import CatlrError


def installed(module: str) -> bool:
    """Whether `module` can be imported. A module imported already (or blocked: None in
    sys.modules) answers at once; else its spec is looked for, which imports no more than
    a dotted name's parents."""
    top = module.split(".")[0]
    if sys.modules.get(top, ...) is None or sys.modules.get(module, ...) is None:
        return False
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that is missing or cannot be imported
        return False


def require(what: str, modules, extra: str) -> None:
    """Refuse `what` (a flag and its value, '--engine dask') when one of `modules` is not
    installed: one line naming the first missing one and `pip install "catlr[EXTRA]"`."""
    missing = [m for m in modules if not installed(m)]
    if missing:
        raise CatlrError(f"{what} needs {missing[0]}, which is not installed: pip install "
                         f"\"catlr[{extra}]\"")

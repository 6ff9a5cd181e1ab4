"""The solvers' facts, in one table: what each takes, where it runs, whether it can stop
and go on, and what it needs installed. config (the choices of --solver and its help), the
estimator (check_params), train (its refusals, its checkpoints, a resume) and descent all
read them here; a new solver is one entry (and its loop in learn/descent.py; its state's
fields in runs/state.py when it resumes).
"""

from __future__ import annotations

from typing import NamedTuple

from . import packages


class Solver(NamedTuple):
    name: str
    help: str            # what it is, in --solver's help
    takes_lr: bool       # a fixed step, --lr; False: a line search finds each step
    forms: tuple         # the forms it runs in ("primal", "dual")
    resumes: bool        # keeps its whole state: checkpoints, and --resume goes on bit for bit
    needs: tuple = ()    # modules it imports that catlr does not require
    extra: str = ""      # pip install "catlr[EXTRA]" installs them
    primal_why: str = ""  # why it runs in the primal form only
    resume_why: str = ""  # why it cannot go on as the same run


SOLVERS = {s.name: s for s in (
    Solver("gd", "the course's fixed-step descent", True, ("primal", "dual"), True),
    Solver("nesterov", "accelerated descent with the same step", True, ("primal",), True,
           primal_why="a step from a point that is not the last iterate"),
    Solver("lbfgs", "L-BFGS with a line search", False, ("primal",), True,
           primal_why="its vectors over w and b"),
)}
NAMES = tuple(SOLVERS)  # config.CHOICES["solver"]: gd first, the default


def facts(name: str) -> Solver:
    """The facts of solver `name` (one of NAMES: config.problem checked it)."""
    return SOLVERS[name]


def primal_only(name: str) -> bool:
    return "dual" not in SOLVERS[name].forms


def require(name: str) -> None:
    """Refuse, before any data is read, a solver whose packages are not installed."""
    s = SOLVERS[name]
    packages.require(f"--solver {name}", s.needs, s.extra)


def help_text() -> str:
    """--solver's help, from the table."""
    each = [f"{s.name} ({s.help}" + ("" if s.takes_lr else ", no --lr")
            + (f"; pip install \"catlr[{s.extra}]\"" if s.extra else "") + ")"
            for s in SOLVERS.values()]
    primal = [s.name for s in SOLVERS.values() if "dual" not in s.forms]
    return (f"How the cost is minimized: {', '.join(each)}; {' and '.join(primal)} run in the "
            "primal form")

"""What the library reports while it works: one small type per kind of event.

Library functions take `on_event(event)` and call it with these; only the CLI
(catlr/progress.py) draws them. A new kind of event is a new class here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decoded:
    """`done` of `total` image files decoded (prepare, train and eval on a folder, predict)."""

    done: int
    total: int


@dataclass(frozen=True)
class Loaded:
    """The data a command will use (a datasets.Dataset)."""

    dataset: object


@dataclass(frozen=True)
class Plan:
    """How training is computed: the form (primal or dual), its size and dtype, and why."""

    form: str
    m: int
    n_x: int
    dtype: str
    why: str = ""


@dataclass(frozen=True)
class Step:
    """Iteration `i` of `iters` is about to run; `cost` is set where the cost is recorded.

    `lr` names the run in a sweep (None for a single training run).
    """

    i: int
    iters: int
    cost: float | None = None
    lr: float | None = None


def ignore(event) -> None:
    """The on_event used when the caller passes none."""

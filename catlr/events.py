"""What the library reports while it works: one small type per kind of event.

Library functions take `on_event(event)` and call it with these; only the CLI
(catlr/progress.py) draws them. A new kind of event is a new class here. (Named
tuples rather than dataclasses: frozen dataclasses are built at every start, which
bench/startup.py shows.)
"""

from __future__ import annotations

from typing import NamedTuple


class Decoded(NamedTuple):
    """`done` of `total` image files decoded (prepare, train and eval on a folder, predict)."""

    done: int
    total: int


class Preparing(NamedTuple):
    """An image folder too large for memory is being prepared to a file first, and why."""

    source: str
    out: str
    why: str


class Loaded(NamedTuple):
    """The data a command will use (a datasets.Dataset)."""

    dataset: object


class Plan(NamedTuple):
    """How training is computed: the form (primal or dual), its size, dtype and engine
    (memory, stream or dask), and why that engine."""

    form: str
    m: int
    n_x: int
    dtype: str
    engine: str = "memory"
    why: str = ""
    detail: str = ""  # what the engine says of itself (a Dask dashboard's address)


class Step(NamedTuple):
    """Iteration `i` of `iters` is about to run; `cost` is set where the cost is recorded.

    `lr` names the run in a sweep (None for a single training run).
    """

    i: int
    iters: int
    cost: float | None = None
    lr: float | None = None
    held: float | None = None   # the validation cost at a recorded iteration, when there is one
    held_name: str = ""


class Wrote(NamedTuple):
    """An output file is complete at `path` (a model, a picture, a run's files)."""

    path: str
    iteration: int | None = None  # a checkpoint: the iteration it holds


class Notice(NamedTuple):
    """Something the user should know while a command runs (a cluster whose memory does
    not hold the blocks, a worker lost), as one line."""

    text: str


def ignore(event) -> None:
    """The on_event used when the caller passes none."""


class Serving(NamedTuple):
    """`catlr serve` listens at `url` for the model `model`; `warnings` say what to mind."""

    url: str
    model: str
    warnings: tuple = ()


class Served(NamedTuple):
    """The server answered one request: `status`, in `ms` milliseconds, for `images` images."""

    method: str
    path: str
    status: int
    ms: float
    images: int = 0


class Failed(NamedTuple):
    """A request the server could not answer for a reason of its own (a bug): `text`."""

    text: str

"""Batch gradient descent from w = 0, b = 0: the course's update, written once.

Primal form (the course's loop), against the design-matrix seam (design.py):
    Z = w.T X + b;  dZ = A - Y;  w -= lr X dZ.T / m;  b -= lr sum(dZ) / m
design.gradient computes X dZ.T, sum(dZ) and the cost in one read of each block
of X, wherever those blocks live. Dual form: from w = 0, b = 0 every step adds a
combination of X's columns to w, and b moves by the sum of that combination, so
at every iteration
    w = X c,  b = sum(c),  Z = (K + 1) c   with K = X.T X (m x m), 1 all ones,
(the bias is the dual of a constant feature). Each step is then
    c -= lr (A - Y) / m,   one m x m product instead of two passes over X.
The iterates are the primal loop's up to rounding; K costs one pass of m^2 n_x.
`reference` is the course's loop as the notebook writes it: the fast forms are
tested against it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .config import CHOICES
from .errors import CatlrError
from .events import Plan, Step, ignore
from .loss import cost

REPORTS_PER_SECOND = 10  # progress events a second, so a bar moves smoothly
SAMPLE_EVERY = 20        # the cost is sampled every 20 iterations, to notice it rising


@dataclass
class Fit:
    """What a run of gradient descent returns: w (n_x,), b, the recorded costs, the form
    used, z = w.T X + b (m,) after the last update, and trace: (iteration, cost) every
    SAMPLE_EVERY iterations."""

    w: object
    b: float
    costs: list
    form: str
    z: object
    trace: list


def reference(X, Y, lr, iters, print_every=100):
    """The course's week-2 loop, written plainly. X (n_x, m), Y (1, m).

    Returns (w (n_x, 1), b, costs every `print_every` iterations).
    """
    n_x, m = X.shape
    w, b, costs = np.zeros((n_x, 1)), 0.0, []
    for i in range(iters):
        A = 1 / (1 + np.exp(-(w.T @ X + b)))
        J = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
        dw = X @ (A - Y).T / m
        db = np.sum(A - Y) / m
        w = w - lr * dw
        b = b - lr * db
        if i % print_every == 0:
            costs.append(float(J))
    return w, float(b), costs


# What each form costs on a machine, in seconds per unit, measured on a 2-core AMD EPYC
# (python bench/train_speed.py --forms measures them again and checks the choice):
K_TIME = 20e-12        # per m^2 n_x: K = X.T X from the pixels, a symmetric rank-k update
DUAL_STEP = 1.2e-9     # per m^2: one dual iteration, an m x m product in float64
X_TIME = 2e-9          # per m n_x: building X from the pixels
PRIMAL_BYTE = 0.11e-9  # per byte of X: one primal iteration reads X twice, bound by memory


def form_costs(n_x: int, m: int, iters: int, itemsize: int = 4) -> dict:
    """Estimated seconds of each form: K at BLAS speed then m^2 per step for the dual,
    X then two passes over it per step (memory bandwidth) for the primal."""
    return {"dual": K_TIME * m * m * n_x + iters * DUAL_STEP * m * m,
            "primal": X_TIME * m * n_x + iters * PRIMAL_BYTE * m * n_x * itemsize}


def choose_form(n_x: int, m: int, iters: int, itemsize: int = 4) -> str:
    """The form that costs less on this machine (form_costs): 'dual' or 'primal'.

    `itemsize` is the primal form's float size (4: float32, its default)."""
    costs = form_costs(n_x, m, iters, itemsize)
    return "dual" if m < n_x and costs["dual"] < costs["primal"] else "primal"


def resolve_form(form, n_x, m, iters, itemsize=4):
    """The form to run: `form` itself, or choose_form's pick for "auto"."""
    if form == "auto":
        return choose_form(n_x, m, iters, itemsize)
    if form not in CHOICES["form"]:
        raise CatlrError(f"unknown form {form!r}, use one of {', '.join(CHOICES['form'])}")
    return form


def run(design, y, lr, iters, *, print_every=100, form="auto", on_event=ignore, gram=None,
        tag=None, why="") -> Fit:
    """Gradient descent on `design` (X, n_x x m) and labels y (m,) of 0/1.

    The cost is recorded before the update at every iteration i with i % print_every
    == 0, as the course does. `gram`, if given, is design.gram() computed earlier
    (not modified). `tag` (a learning rate in a sweep) is passed on in Step events, `why` (the reason
    for the engine) in the Plan event.
    """
    n_x, m = design.n_x, design.m
    chosen = resolve_form(form, n_x, m, iters, design.dtype.itemsize)
    on_event(Plan(chosen, m, n_x, design.dtype.name, design.engine, why,
                  getattr(design, "detail", "")))
    y = np.asarray(y, dtype=design.dtype).reshape(m)
    steps = _Steps(iters, print_every, on_event, tag)
    if chosen == "dual":
        K = design.gram() if gram is None else gram.copy()
        c, costs, z = dual(K, y, lr, iters, steps)
        return Fit(design.times(c).astype(np.float64), float(c.sum()), costs, chosen, z,
                   steps.trace)
    dense = design.dense()  # X built once (memory), or the source itself (stream, dask)
    w, b, costs = primal(dense, y, lr, iters, steps)
    return Fit(w.astype(np.float64), b, costs, chosen, dense.scores(w, b), steps.trace)


class _Steps:
    """When the loops look at the cost and report progress.

    The cost is recorded (and printed) every print_every iterations and sampled every
    SAMPLE_EVERY: iterations fixed in advance, so that the trace, and any warning drawn
    from it, is the same on every machine whatever print_every is. Between those, a
    Step goes out about REPORTS_PER_SECOND times a second so a progress bar moves;
    the clock is read only at reported iterations, never in between.
    """

    def __init__(self, iters, print_every, on_event, tag):
        self.iters, self.every, self.on_event, self.tag = iters, print_every, on_event, tag
        self.sample = SAMPLE_EVERY
        self.next, self.last = 0, (0, time.perf_counter())
        self.costs, self.trace = [], []

    def due(self, i) -> bool:
        return i == self.next or i % self.sample == 0 or i % self.every == 0

    def report(self, i, lr, cost_of):
        """At a due iteration: sample the cost where fixed, record it where printed, send a Step."""
        printed, sampled = i % self.every == 0, i % self.sample == 0
        value = None
        if printed or sampled:
            value = cost_of()
            if not math.isfinite(value):
                _diverged(i, lr)
            if sampled:
                self.trace.append((i, value))
            if printed:
                self.costs.append(value)
        self.on_event(Step(i, self.iters, value if printed else None, self.tag))
        if i >= self.next:
            now = time.perf_counter()
            done, seconds = i - self.last[0], now - self.last[1]
            per_second = done / seconds if done and seconds > 0 else 0.0
            self.next = i + max(int(per_second / REPORTS_PER_SECOND), 1)
            self.last = (i, now)


def primal(design, y, lr, iters, steps):
    """The course's loop on the seam: one design.gradient per iteration. Returns (w, b, costs)."""
    m = design.m
    step = lr / m
    w = np.zeros(design.n_x, design.dtype)
    b = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by name
        for i in range(iters):
            g, s, total = design.gradient(w, b, y)
            if steps.due(i):
                steps.report(i, lr, lambda: float(total) / m)
            w -= step * g
            b -= step * s  # s stays where the products ran: no sync per step
    if not (np.isfinite(w).all() and math.isfinite(b)):
        _diverged(iters, lr)
    return w, float(b), steps.costs


def dual(K, y, lr, iters, steps):
    """The dual loop on K = X.T X (m, m), modified in place. Returns (c, costs, z_final).

    A - Y is written as (tanh(Z / 2) + 1 - 2Y) / 2: one call for the sigmoid, exact for
    any Z (tanh saturates at +-1 without overflow). The loop runs on u = 2 c m / lr,
    so that each step is u -= tanh(Z / 2) + (1 - 2Y), with Z / 2 = (lr / 2m) (K + 1) u.
    """
    m = len(y)
    scale = lr / (2 * m)  # c = scale * u
    u = np.zeros(m, K.dtype)
    half_z = np.empty(m, K.dtype)
    shift = 1.0 - 2.0 * y
    dot, tanh = np.dot, np.tanh
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by name
        K += 1.0
        K *= 0.5 * scale  # K now maps u to Z / 2
        # |u_k| grows by at most 2 per step, so |Z / 2| <= 2 iters * max row sum of |K|:
        # when that cannot overflow, no per-iteration check is needed.
        check = not float(np.abs(K).sum(axis=1).max()) * 2.0 * iters < 1e300
        for i in range(iters):
            dot(K, u, out=half_z)
            if check and not math.isfinite(half_z.sum()):
                _diverged(i, lr)
            if steps.due(i):
                steps.report(i, lr, lambda: cost(2 * half_z, y))
            tanh(half_z, out=half_z)
            half_z += shift
            u -= half_z  # c -= lr (A - Y) / m
        z = 2 * (K @ u)
    if not np.isfinite(z).all():
        _diverged(iters, lr)
    return scale * u, steps.costs, z


def _diverged(i: int, lr: float):
    raise CatlrError(f"training diverged at iteration {i} (weights are no longer finite "
                     f"with --lr {lr:g}), use a smaller learning rate such as --lr {lr / 10:g} "
                     "(the course uses 0.005)")

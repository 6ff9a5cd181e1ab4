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
Both minimize a loss.Objective: the course's cost by default, or course 2's L2 penalty
and per-example weights. `reference` is the course's loop as the notebook writes it,
kept apart from the objective on purpose: it is the oracle the fast forms are tested
against (and the loop bench/train_speed.py times catlr against).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .design import COURSE, dtype_name, namespace, to_host
from .errors import CatlrError, ParameterError
from .events import Plan, Step, ignore

REPORTS_PER_SECOND = 10  # progress events a second, so a bar moves smoothly
SAMPLE_EVERY = 20        # the cost is sampled every 20 iterations, to notice it rising


@dataclass
class Fit:
    """What a run of gradient descent returns: w (n_x,), b, the recorded costs, the form
    used, z = w.T X + b (m,) after the last update (or at the best iteration, when it
    stopped early), and trace: (iteration, cost) every SAMPLE_EVERY iterations. With
    held-out examples (Held): their cost at every recorded iteration, the best one and
    where, and the iteration an early stop ended at (None: it ran to the end)."""

    w: object
    b: float
    costs: list
    form: str
    z: object
    trace: list
    held_costs: list = field(default_factory=list)
    best: tuple | None = None      # (iteration, held-out cost) of the lowest
    stopped: int | None = None     # the iteration early stopping ended at
    iters: int = 0                 # iterations run
    state: dict | None = None      # where the solver is: Start(state=...) goes on from it


@dataclass
class Held:
    """Examples kept out of training, whose cost is watched at every recorded iteration:
    a validation split (or the test split, named so). patience > 0: stop when the cost has
    not improved for that many recorded iterations, and keep the best weights."""

    design: object   # X of the held-out examples, a design.Design
    y: object        # (m_held,) labels 0/1
    name: str = "validation"
    patience: int = 0


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


@dataclass
class Start:
    """Where a descent begins, when not at w = 0, b = 0 and iteration 0.

    w, b: a warm start, any weights (the course's optimize(w, b, ...); resuming a model
    whose solver state is gone): the dual form carries them as an offset, Z = X.T w0 + b0
    + (K + 1) c. state: the solver's own state that a checkpoint or a finished run kept
    (State.snapshot), from which it goes on exactly as if it had never stopped. at: the
    iteration it starts at (costs are recorded at at, at + ..., on the same grid), and
    history: what was recorded before (costs, trace, held_costs, best, since).
    """

    w: object = None
    b: float = 0.0
    state: dict | None = None
    at: int = 0
    history: dict | None = None


class Saver:
    """Checkpoints during a run: store(snapshot) every `every` seconds (read from the clock
    at reported iterations only), and once more when a signal stops the run. While a
    Saver is active, SIGINT, SIGTERM and SIGHUP are deferred to the next iteration's
    start, so the state saved is always whole (never between the update of w and b)."""

    def __init__(self, store, every: float | None = 60.0):
        self.store, self.every = store, every
        self.last = time.monotonic()
        self.signum = None   # a signal that came, waiting for the iteration to end
        self._old = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
                # an ignored signal stays ignored (nohup, a background job of a script)
                if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._defer)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def _defer(self, signum, frame):
        self.signum = signum

    def due(self) -> bool:
        return self.every is not None and time.monotonic() - self.last >= self.every

    def halt(self, snapshot):
        """A signal came: save where the run is, then stop as the signal asks."""
        import signal

        self.store(snapshot())
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        from .errors import Terminated

        raise Terminated(self.signum)

    def tick(self, snapshot):
        if self.due():
            self.store(snapshot())
            self.last = time.monotonic()


def run(design, y, lr, iters, *, form, objective=COURSE, print_every=100, on_event=ignore,
        gram=None, tag=None, why="", held=None, start=None, saver=None) -> Fit:
    """Gradient descent on `design` (X, n_x x m) and labels y (m,) of 0/1, in the decided
    `form` ("primal" or "dual": engines.choose decides), minimizing `objective`.

    The cost is recorded before the update at every iteration i with i % print_every
    == 0, as the course does. `gram`, if given, is design.gram() computed earlier (not
    modified). `tag` (a learning rate in a sweep) is passed on in Step events, `why` (the
    reason for the engine) in the Plan event. Arrays live in design.xp's library until
    the end: w and z come back as NumPy float64. `held` (Held): examples whose cost is
    watched at each recorded iteration (one product with K_held = X_held.T X in the dual
    form, one pass over X_held in the primal), and early stopping on it. `start` (Start):
    a warm start or a resumed state; `iters` is then the iteration to end at. `saver`
    (Saver): checkpoints. Fit.state is the solver's state at the end (for a resume).
    """
    if form not in ("primal", "dual"):
        raise ParameterError(f"form={form!r} is not decided: expected 'primal' or 'dual' "
                             "(engines.choose_form picks one)")
    start = start or Start()
    n_x, m = design.n_x, design.m
    design.objective = objective
    on_event(Plan(form, m, n_x, dtype_name(design.dtype), design.engine, why,
                  getattr(design, "detail", "")))
    y = design.xp.reshape(design.asarray(y), (m,))
    s = objective.weights(y)
    steps = _Steps(iters, print_every, on_event, tag, held, history=start.history)
    held_cost = None
    if held is not None:
        xp, yh = design.xp, held.design.asarray(held.y)

        def held_cost(z):  # the plain cross-entropy: no penalty, no weights
            return float(xp.mean(xp.logaddexp(0.0, z) - yh * z))
    w0 = start.w if start.state is None else start.state.get("w0")
    if form == "dual":
        K = design.gram() if gram is None else design.xp.asarray(gram, copy=True)
        offset = None
        if w0 is not None:  # Z = X.T w0 (shrunk by the penalty) + b0 + (K + 1) c
            w0 = design.asarray(np.ravel(w0))
            offset = (design.scores(w0, 0.0),
                      None if held is None else held.design.scores(w0, 0.0),
                      float(design.xp.sum(w0 * w0)), to_host(w0))
        score = None
        if held is not None:
            K_held = held.design.cross(design)  # (m_held, m): Z_held = K_held c + b
            score = lambda c, b, zw: held_cost(K_held @ c + b + (0.0 if zw is None else zw))  # noqa: E731
        with saver or contextlib.nullcontext():  # signals wait for the iteration's end
            out = dual(K, y, s, lr, iters, steps, objective, score, start, offset, saver)
        c, b, costs, z, ran, state = out
        w = design.times(c)
        if w0 is not None:
            w = w + w0 * objective.shrink(lr, m) ** state["t"]
        steps.finish()
        return _fit(steps, to_host(w), b, costs, form, z, ran, state)
    dense = design.dense()  # X built once (memory), or the source itself (stream, dask)
    score = None if held is None else (lambda w, b: held_cost(held.design.scores(w, b)))
    with saver or contextlib.nullcontext():  # signals wait for the iteration's end
        w, b, costs, ran, state = primal(dense, y, s, lr, iters, steps, objective, score,
                                         start, saver)
    steps.finish()
    return _fit(steps, to_host(w), b, costs, form, dense.scores(w, b), ran, state)


def _fit(steps, w, b, costs, form, z, ran, state) -> Fit:
    return Fit(w, b, costs, form, to_host(z, None), steps.trace, steps.held_costs,
               steps.best, ran if steps.stop else None, ran, state)


class _Steps:
    """When the loops look at the cost and report progress.

    The cost is recorded (and printed) every print_every iterations and sampled every
    SAMPLE_EVERY: iterations fixed in advance, so that the trace, and any warning drawn
    from it, is the same on every machine whatever print_every is. Between those, a
    Step goes out about REPORTS_PER_SECOND times a second so a progress bar moves;
    the clock is read only at reported iterations, never in between.
    """

    def __init__(self, iters, print_every, on_event, tag, held=None, watch=None, history=None):
        self.iters, self.every, self.on_event, self.tag = iters, print_every, on_event, tag
        self.sample = SAMPLE_EVERY
        self.next, self.last = 0, (0, time.perf_counter())
        h = history or {}
        self.costs, self.trace = list(h.get("costs", [])), [tuple(t) for t in h.get("trace", [])]
        # the held-out cost: watch() at each recorded iteration; the best so far; stopping
        self.held, self.watch, self.held_costs = held, watch, list(h.get("held_costs", []))
        self.best = tuple(h["best"]) if h.get("best") else None
        self.since, self.stop, self.improved = int(h.get("since", 0)), False, False

    def history(self) -> dict:
        """What was recorded so far, as a checkpoint keeps it."""
        return {"costs": list(self.costs), "trace": [list(t) for t in self.trace],
                "held_costs": list(self.held_costs),
                "best": list(self.best) if self.best else None, "since": self.since}

    def _look(self, i):
        held = self.watch()
        self.held_costs.append(held)
        self.improved = self.best is None or held < self.best[1]
        if self.improved:
            self.best, self.since = (i, held), 0
        else:
            self.since += 1
            self.stop = 0 < self.held.patience <= self.since

    def finish(self):
        """The run is over: a last Step at `iters`, so a bar ends at its total."""
        self.on_event(Step(self.iters, self.iters, None, self.tag))

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
                if self.watch is not None:
                    self._look(i)
        held = self.held_costs[-1] if printed and self.watch is not None else None
        self.on_event(Step(i, self.iters, value if printed else None, self.tag, held,
                           self.held.name if self.held else ""))
        if i >= self.next:
            now = time.perf_counter()
            done, seconds = i - self.last[0], now - self.last[1]
            per_second = done / seconds if done and seconds > 0 else 0.0
            self.next = i + max(int(per_second / REPORTS_PER_SECOND), 1)
            self.last = (i, now)


def primal(design, y, s, lr, iters, steps, objective=COURSE, score=None, start=None,
           saver=None):
    """The course's loop on the seam: one design.gradient per iteration. Returns (w, b,
    costs, iterations run, the state to resume from). score(w, b): the held-out cost
    (steps watches it); start: where it begins (Start); saver: checkpoints (Saver)."""
    xp, m = design.xp, design.m
    step = lr / m
    shrink = objective.shrink(lr, m)
    start = start or Start()
    first, keep = start.at, None
    st = start.state
    if st is not None:   # exactly where it stopped: w and b in their own float type
        w = xp.asarray(design.asarray(st["w"]), copy=True)  # the caller's array stays as it is
        b, keep = st["b"], st.get("keep")
        if keep is not None:
            keep = (design.asarray(keep[0]), keep[1], keep[2])
    elif start.w is not None:
        w, b = xp.asarray(design.asarray(np.ravel(start.w)), copy=True), start.b
    else:
        w, b = xp.zeros(design.n_x, dtype=design.dtype), 0.0
    ran = iters

    def norm2():
        return float(xp.sum(w * w)) if objective.l2 else 0.0

    def snapshot(i):
        return {"form": "primal", "w": to_host(w, None), "b": b, "i": i,
                "keep": None if keep is None else (to_host(keep[0], None), keep[1], keep[2]),
                **steps.history()}

    if score is not None:
        steps.watch = lambda: score(w, b)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by name
        for i in range(first, iters):
            if saver is not None and saver.signum is not None:
                saver.halt(lambda: snapshot(i))
            g, sd, total = design.gradient(w, b, y, s)
            if steps.due(i):
                if saver is not None:  # before i's record: a resume from i records it once
                    saver.tick(lambda: snapshot(i))
                steps.report(i, lr, lambda: objective.cost(float(total) / m, m, norm2()))
                if steps.improved and steps.held.patience:
                    keep, steps.improved = (xp.asarray(w, copy=True), b, i), False
                if steps.stop:  # early stopping: the best weights, not the last
                    w, b, ran = keep[0], keep[1], i
                    break
            if shrink != 1.0:
                w *= shrink
            w -= step * g
            b -= step * sd  # sd stays where the products ran: no sync per step
    if not (bool(xp.all(xp.isfinite(w))) and math.isfinite(float(b))):
        _diverged(iters, lr)
    end = snapshot(keep[2] if steps.stop else iters)
    return w, float(b), steps.costs, ran, end


def dual(K, y, s, lr, iters, steps, objective=COURSE, score=None, start=None, offset=None,
         saver=None):
    """The dual loop on K = X.T X (m, m), modified in place. Returns (c, b, costs, z_final,
    iterations run, the state to resume from); score(c, b, zw): the held-out cost (steps
    watches it); start: where it begins (Start); offset: (X.T w0, X_held.T w0) of a warm
    start; saver: checkpoints (Saver).

    A - Y is written as (tanh(Z / 2) + 1 - 2Y) / 2: one call for the sigmoid, exact for
    any Z (tanh saturates at +-1 without overflow). The loop runs on u = 2 c m / lr,
    so that each step is u -= s (tanh(Z / 2) + (1 - 2Y)), with Z / 2 = (lr / 2m) (K u + v)
    and v the bias in u's units. Without a penalty b = sum(c) at every step (the bias is
    the dual of a constant feature), so K + 1 carries it; with one, w shrinks (u *= 1 -
    lr l2 / m) and b does not, so v is kept apart. |w|^2 = c.T K c, for the penalized cost.
    A warm start w0, b0 adds X.T w0 (shrunk by the penalty at each step) and b0 to Z.
    """
    xp = namespace(K)
    m = y.shape[0]
    scale = lr / (2 * m)  # c = scale * u
    start = start or Start()
    st = start.state
    shift = 1.0 - 2.0 * y
    shrink = objective.shrink(lr, m)
    fold = objective.l2 == 0
    first, keep = start.at, None
    if st is not None:   # exactly where it stopped
        u, v, t = xp.asarray(st["u"], dtype=K.dtype), st["v"], int(st.get("t", 0))
        b0 = float(st.get("b0", 0.0))
        if st.get("keep") is not None:
            keep = (xp.asarray(st["keep"][0], dtype=K.dtype), *st["keep"][1:])
    else:
        u, v, t, b0 = xp.zeros(m, dtype=K.dtype), 0.0, 0, float(start.b or 0.0)
    z0, z0_held, w0_norm2, w0 = offset if offset is not None else (None, None, 0.0, None)
    ran = iters

    def warm():  # (Z / 2's offset from w0 and b0, now; the held-out examples' X.T w0 now)
        if z0 is None:
            return (0.5 * b0 if b0 else None), None
        k = shrink ** t
        return 0.5 * (k * z0 + b0), None if z0_held is None else k * z0_held

    def state():  # (c, b, X_held.T w0 now) now
        c = scale * u
        return c, b0 + (xp.sum(c) if fold else scale * v), warm()[1]

    def snapshot(i):
        return {"form": "dual", "u": to_host(u, None), "v": float(v), "t": t, "b0": b0,
                "i": i, "keep": None if keep is None else (to_host(keep[0], None), *keep[1:]),
                "w0": w0, **steps.history()}

    if score is not None:
        steps.watch = lambda: score(*state())
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by name
        if fold:
            K += 1.0
        K *= 0.5 * scale  # K now maps u to Z / 2 (less the bias, when it is apart)
        # |u_k| grows by at most 2 max(s) per step, so |Z / 2| <= 2 iters * max row sum of |K|
        # (times the weights): when that cannot overflow, no per-iteration check is needed.
        top = 1.0 if s is None else float(xp.max(s))
        check = not float(xp.max(xp.sum(xp.abs(K), axis=1))) * 2.0 * top * iters < 1e300
        off = warm()[0]
        for i in range(first, iters):
            if saver is not None and saver.signum is not None:
                saver.halt(lambda: snapshot(i))
            ku = K @ u
            half_z = ku if fold else ku + 0.5 * scale * v
            if off is not None:
                half_z = half_z + off
            if check and not math.isfinite(float(xp.sum(half_z))):
                _diverged(i, lr)
            if steps.due(i):
                if saver is not None:  # before i's record: a resume from i records it once
                    saver.tick(lambda: snapshot(i))
                steps.report(i, lr, lambda: objective.cost(
                    float(objective.terms(2 * half_z, y, s) / m), m,
                    0.0 if fold else _dual_norm2(xp, u, ku, scale, z0, shrink ** t, w0_norm2)))
                if steps.improved and steps.held.patience:
                    keep, steps.improved = (xp.asarray(u, copy=True), v, i, t), False
                if steps.stop:  # early stopping: the best weights, not the last
                    u, v, ran, t = keep[0], keep[1], i, keep[3]
                    break
            r2 = xp.tanh(half_z)  # 2 (A - Y), before the weights
            r2 += shift
            if s is not None:
                r2 *= s
            if shrink != 1.0:
                u *= shrink
            u -= r2  # c -= lr (A - Y) / m
            if not fold:
                v = v - xp.sum(r2)  # stays where the products ran: no sync per step
            if z0 is not None and shrink != 1.0:
                t += 1
                off = warm()[0]
        z = 2 * (K @ u) if fold else 2 * (K @ u) + scale * v
        if warm()[0] is not None:
            z = z + 2 * warm()[0]
    if not bool(xp.all(xp.isfinite(z))):
        _diverged(iters, lr)
    c = scale * u
    b = b0 + (float(xp.sum(c)) if fold else scale * float(v))
    end = snapshot(keep[2] if steps.stop else iters)
    end["w0_t"] = t
    return c, b, steps.costs, z, ran, {**end, "t": t}


def _dual_norm2(xp, u, ku, scale, z0, k, w0_norm2):
    """|w|^2 in the dual form with a penalty, w = k w0 + X c: c.T K c + 2 k (X.T w0).c +
    k^2 |w0|^2. K is scaled here (it maps u to Z / 2 less the bias): c.T K_orig c =
    2 scale u.(K u)."""
    value = 2 * scale * float(xp.sum(u * ku))
    if z0 is not None:
        value += 2 * k * scale * float(xp.sum(z0 * u)) + k * k * w0_norm2
    return value


def largest_step(design, objective=COURSE, iters=12, max_work=2e10) -> float | None:
    """The largest learning rate at which gradient descent's cost cannot rise on this data,
    2 / L, or None when finding it would take too long (max_work multiply-adds).

    The cost is L-smooth with L <= max(s) lambda_max([X; 1] [X; 1].T) / (4m) + l2 / m (the
    sigmoid's slope is at most 1/4), and a step under 2 / L always lowers it. lambda_max by
    power iteration from all ones, which for images (all pixels >= 0) starts near the top
    eigenvector; each iteration is one scores and one times pass over X.
    """
    n_x, m = design.n_x, design.m
    if 2 * iters * m * n_x > max_work or not hasattr(design, "blocks"):
        return None
    try:
        w, b, top = np.ones(n_x), 1.0, 0.0
        for _ in range(iters):
            norm = math.sqrt(float(w @ w) + b * b)
            w, b = w / norm, b / norm
            u = to_host(design.scores(w, b))
            w, b = to_host(design.times(u)), float(u.sum())
            top = math.sqrt(float(w @ w) + b * b)
    except NotImplementedError:
        return None
    weight = 1.0 if objective.class_weight is None else float(
        np.max(to_host(objective.weights(np.array([0.0, 1.0])))))
    smooth = weight * top / (4 * m) + objective.l2 / m
    return 2.0 / smooth if smooth > 0 else None


def _diverged(i: int, lr: float):
    raise CatlrError(f"training diverged at iteration {i} (weights are no longer finite "
                     f"with --lr {lr:g}), use a smaller learning rate such as --lr {lr / 10:g} "
                     "(the course uses 0.005)")

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

from .. import solvers
from ..errors import CatlrError, ParameterError
from ..events import Notice, Plan, Step, ignore
from . import lbfgs
from .design import COURSE, dtype_name, namespace, to_host

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
    """Checkpoints of a run, and its last complete iteration saved whatever stops it.

    A loop calls reached(i, snapshot) at each iteration's start (i iterations complete;
    snapshot(i) is the state there, its record as it was then), once more with its end
    state when it ends, and tick() at its reported iterations: a checkpoint,
    store(snapshot(i)), every `every` seconds of the loop (the clock is read at reported
    iterations only). While a Saver is active, SIGINT, SIGTERM and SIGHUP are deferred to
    the next iteration's start (or the end), where the run saves and stops (halt), so the
    state saved is always whole (never between the update of w and b). Anything else that
    ends the run inside the loop (a Dask scheduler lost, a read error, a bug) saves the
    last complete iteration on its way out, unless none completed here or the run diverged
    (Diverged: those weights are no use). A checkpoint that cannot be written (store
    raises) stops the run; none is tried again, and the last one written stays whole
    (store writes atomically). `saved`: the iteration the last one holds."""

    def __init__(self, store, every: float | None = 60.0):
        self.store, self.every = store, every
        self.last = time.monotonic()
        self.signum = None   # a signal that came, waiting for the iteration to end
        self._old = {}
        self.where = None    # (i, snapshot): the last complete iteration, as the loop said
        self.began = None    # the iteration the loop began at, in this process
        self.saved = None    # the iteration the last checkpoint written holds
        self.broken = False  # a checkpoint could not be written

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
                # an ignored signal stays ignored (nohup, a background job of a script)
                if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._defer)
        return self

    def __exit__(self, kind, exc, tb):
        import signal

        try:  # signals still deferred: a second Ctrl-C does not cut this write short
            if exc is None and self.signum is not None and self.where is not None:
                self.halt()  # it came after the loop's end: the end is saved, then it stops
            if exc is not None and not isinstance(exc, Diverged) and self.where is not None \
                    and self.where[0] != self.began:
                with contextlib.suppress(Exception):  # the stop's own error is the one to say
                    self.checkpoint()
        finally:
            for sig, old in self._old.items():
                signal.signal(sig, old)
            self._old = {}

    def _defer(self, signum, frame):
        self.signum = signum

    def due(self) -> bool:
        return self.every is not None and time.monotonic() - self.last >= self.every

    def reached(self, i: int, snapshot):
        """Iteration i starts, i iterations complete (snapshot(i): the state there). A
        signal that came meanwhile stops the run here, after a checkpoint."""
        if self.began is None:  # the clock starts with the loop, not with the data's reading
            self.began, self.last = i, time.monotonic()
        self.where = (i, snapshot)
        if self.signum is not None:
            self.halt()

    def checkpoint(self):
        """A checkpoint of the last complete iteration (unless the last one holds it)."""
        i, snapshot = self.where
        if self.broken or self.saved == i:
            return
        try:
            self.store(snapshot(i))
        except BaseException:
            self.broken = True
            raise
        self.saved, self.last = i, time.monotonic()

    def halt(self):
        """A signal came: save where the run is, then stop as the signal asks."""
        import signal

        self.checkpoint()
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        from ..errors import Terminated

        raise Terminated(self.signum)

    def tick(self):
        """At a reported iteration (after reached): a checkpoint when one is due."""
        if self.due():
            self.checkpoint()


def run(design, y, lr, iters, *, form, objective=COURSE, print_every=100, on_event=ignore,
        gram=None, tag=None, why="", held=None, start=None, saver=None, solver="gd") -> Fit:
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
    (Saver): checkpoints, and the last complete iteration saved whatever stops the run.
    Fit.state is the solver's state at the end (for a resume).

    `solver` (config.CHOICES["solver"]): "gd", the course's descent (either form);
    "nesterov", the same step from an extrapolated point (primal); "lbfgs", L-BFGS on the
    same objective and seam (primal; no lr; lbfgs.py). Without a penalty, a non-gd run
    whose weights end up classifying every training example correctly says so (a Notice):
    the data is separable, so the cost has no minimum and the weights grow without bound.
    The solver tells the design the iteration it is at (design.iteration), which an
    engine names in what it reports (a Dask worker lost).
    """
    _check_form(form, solver)
    start = start or Start()
    design.objective = objective
    on_event(Plan(form, design.m, design.n_x, dtype_name(design.dtype), design.engine, why,
                  getattr(design, "detail", "")))
    y = design.xp.reshape(design.asarray(y), (design.m,))
    steps = _Steps(iters, print_every, on_event, tag, held, history=start.history)
    task = (design, y, objective.weights(y), lr, iters, steps, objective, held, start, saver)
    if form == "dual":
        return _run_dual(*task, gram)
    return _run_primal(*task, solver, on_event)



def _held_cost(design, held):
    """cost(z): the held-out examples' plain cross-entropy from their scores z (no penalty,
    no weights); None without held-out examples."""
    if held is None:
        return None
    xp, yh = design.xp, held.design.asarray(held.y)
    return lambda z: float(xp.mean(xp.logaddexp(0.0, z) - yh * z))


def _run_dual(design, y, s, lr, iters, steps, objective, held, start, saver, gram):
    held_cost = _held_cost(design, held)
    w0 = start.w if start.state is None else start.state.get("w0")
    if w0 is not None and not np.any(to_host(w0)):
        w0 = None  # from w = 0 there is no warm start: no offset, and no pass to make it
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
    with saver or contextlib.nullcontext():  # signals wait for the iteration's end, and
        c, b, costs, z, ran, state = dual(K, y, s, lr, iters, steps, objective, score, start,
                                          offset, saver)
        w = design.times(c)  # a stop in this last pass saves the end
        if w0 is not None:
            w = w + w0 * objective.shrink(lr, design.m) ** state["t"]
        steps.finish()
    return _fit(steps, to_host(w), b, costs, "dual", z, ran, state)


def _run_primal(design, y, s, lr, iters, steps, objective, held, start, saver, solver,
                on_event):
    held_cost = _held_cost(design, held)
    dense = design.dense()  # X built once (memory), or the source itself (stream, dask)
    score = None if held is None else (lambda w, b: held_cost(held.design.scores(w, b)))
    with saver or contextlib.nullcontext():  # signals wait for the iteration's end, and
        if solver == "lbfgs":
            w, b, costs, ran, state = quasi_newton(dense, y, s, iters, steps, objective, score,
                                                   start, saver, on_event)
        else:
            w, b, costs, ran, state = primal(dense, y, s, lr, iters, steps, objective, score,
                                             start, saver, solver)
        steps.finish()
        dense.iteration = state["i"]  # a stop in this last pass saves the end: name it
        z = dense.scores(w, b, fast=True)  # the kernels the passes ran on (fused, where installed)
    if solver != "gd" and not objective.l2 and separates(z, y):
        on_event(Notice(SEPARABLE))
    return _fit(steps, to_host(w), b, costs, "primal", z, ran, state)


def _check_form(form: str, solver: str) -> None:
    """Refuse a form that is not decided, a solver that is not one, or a form the solver
    does not run in (solvers.SOLVERS)."""
    if form not in ("primal", "dual"):
        raise ParameterError(f"form={form!r} is not decided: expected 'primal' or 'dual' "
                             "(forms.choose_form picks one)")
    if solver not in solvers.SOLVERS:
        raise ParameterError(f"solver={solver!r} is not a solver: expected one of "
                             f"{', '.join(solvers.NAMES)}")
    if form not in solvers.facts(solver).forms:
        raise ParameterError(f"solver={solver!r} runs in the primal form ("
                             f"{solvers.facts(solver).primal_why}), not form='dual': pass "
                             "form='primal'")


SEPARABLE = ("the training set is separable (these weights classify every training image "
             "correctly): without --l2 the cost goes to 0 and the weights grow without "
             "bound, so more iterations only scale them up; add a penalty such as --l2 1 "
             "for a model that converges")


def separates(z, y) -> bool:
    """Whether scores z put every example on its label's side of 0 (y of 0/1): then the
    data is linearly separable, and without a penalty the cost has no minimum."""
    xp = namespace(z)
    return bool(xp.all((2 * y - 1) * z > 0))


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

    def mark(self) -> tuple:
        """Where the record is now, for history(): cheap enough for every iteration."""
        return len(self.costs), len(self.trace), len(self.held_costs), self.best, self.since

    def history(self, mark=None) -> dict:
        """What was recorded so far (or up to a mark()), as a checkpoint keeps it."""
        costs, trace, held, best, since = mark or self.mark()
        return {"costs": self.costs[:costs], "trace": [list(t) for t in self.trace[:trace]],
                "held_costs": self.held_costs[:held],
                "best": list(best) if best else None, "since": since}

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



def _record(steps, saver, i, lr, cost_of):
    """The work at a due iteration i: a checkpoint when one is due (before i's record, so
    that a resume from i records it once), the record and a Step. Returns (whether early
    stopping keeps this iterate as the best so far, whether it stops here)."""
    if saver is not None:
        saver.tick()
    steps.report(i, lr, cost_of)
    best = bool(steps.improved and steps.held.patience)
    if best:
        steps.improved = False
    return best, steps.stop


def _ended(saver, end: dict):
    """The loop is over: its end state is where the run is (a signal that came during the
    last iteration stops it there, after a checkpoint of the end; an error after this
    saves the end)."""
    if saver is not None:
        saver.reached(end["i"], lambda i: end)


def primal(design, y, s, lr, iters, steps, objective=COURSE, score=None, start=None,
           saver=None, solver="gd"):
    """The course's loop on the seam: one design.gradient per iteration. Returns (w, b,
    costs, iterations run, the state to resume from). score(w, b): the held-out cost
    (steps watches it); start: where it begins (Start); saver: checkpoints (Saver).

    solver "gd" takes the step at w itself (the course's iterates, exactly). "nesterov"
    takes the same step at an extrapolated point (_Momentum). The recorded (and sampled)
    cost, and the held-out cost, are those of w, not of the extrapolated point p: the
    gradient's pass gives p's, so w's costs one more pass over X (design.scores) at those
    iterations only. Stopped early, a nesterov run keeps its best w with its momentum
    restarted (w_prev = w, t = 1): that is what it resumes from. The step must be smaller
    than gd's: accelerated descent is stable below 1 / L, gd below 2 / L.
    """
    xp, m = design.xp, design.m
    step = lr / m
    shrink = objective.shrink(lr, m)
    start = start or Start()
    w, b, keep = _primal_start(design, start)
    mom = _Momentum(design, w, b, start.state) if solver == "nesterov" else None
    ran, marks = iters, None

    def norm2(v):
        return float(xp.sum(v * v)) if objective.l2 else 0.0

    def cost_at_w(total, at_w):
        """J at w: from the gradient's pass when it was taken at w, else one more pass."""
        if not at_w:
            total = objective.terms(design.scores(w, b), y, s)
        return objective.cost(float(total) / m, m, norm2(w))

    def snapshot(i):  # the record as it was at the iteration's start (marks)
        state = {"form": "primal", "w": to_host(w, None), "b": b, "i": i,
                 "keep": None if keep is None else (to_host(keep[0], None), keep[1], keep[2]),
                 **steps.history(marks)}
        if mom is not None:
            state.update(mom.state())
        return state

    if score is not None:
        steps.watch = lambda: score(w, b)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by name
        for i in range(start.at, iters):
            if saver is not None:
                marks = steps.mark()
                saver.reached(i, snapshot)
            design.iteration = i
            p, pb = (w, b) if mom is None else mom.point(w, b)
            g, sd, total = design.gradient(p, pb, y, s)
            if steps.due(i):
                best, stop = _record(steps, saver, i, lr, lambda: cost_at_w(
                    total, mom is None or mom.beta == 0.0))
                if best:
                    keep = (xp.asarray(w, copy=True), b, i)
                if stop:  # early stopping: the best weights, not the last
                    w, b, ran = keep[0], keep[1], i
                    if mom is not None:
                        mom.restart(w, b)
                    break
            if mom is not None:
                mom.hold(p, pb)
            # the gradient step, written once: at w itself (gd) or at the point p
            if shrink != 1.0:
                p *= shrink
            p -= step * g
            pb -= step * sd  # sd stays where the products ran: no sync per step
            if mom is not None:
                mom.moved(w, b, p, pb)
            w, b = p, pb
    if not (bool(xp.all(xp.isfinite(w))) and math.isfinite(float(b))):
        _diverged(iters, lr)
    marks = None
    end = snapshot(keep[2] if steps.stop else iters)
    _ended(saver, end)
    return w, float(b), steps.costs, ran, end


def _primal_start(design, start):
    """(w, b, the best iterate kept) where a primal loop begins: a state's own, w and b in
    their own float type; a warm start's; or w = 0, b = 0."""
    xp, st = design.xp, start.state
    if st is not None:  # exactly where it stopped; the caller's array stays as it is
        keep = st.get("keep")
        if keep is not None:
            keep = (design.asarray(keep[0]), keep[1], keep[2])
        return xp.asarray(design.asarray(st["w"]), copy=True), st["b"], keep
    w = (xp.asarray(design.asarray(np.ravel(start.w)), copy=True) if start.w is not None
         else xp.zeros(design.n_x, dtype=design.dtype))
    # b as a scalar of X's dtype from the start (NumPy), as every step leaves it, so that a
    # state saved at this iteration holds it in that type (the same bits)
    b = float(start.b or 0.0)
    if xp is np:
        b = np.dtype(design.dtype).type(b)
    return w, b, None


class _Momentum:
    """Nesterov's momentum: the step is taken at p = w + beta (w - w_prev) (b alike), with
    FISTA's t' = (1 + sqrt(1 + 4 t^2)) / 2, beta' = (t - 1) / t' from t = 1, beta = 0, and
    its gradient restart (O'Donoghue and Candes, 2015): when the step taken from p points
    against the move it makes, (p - w_new).(w_new - w) > 0, the momentum starts again
    (t = 1, beta = 0). Without it, on the course's data with --l2 100 the iterates circle
    the optimum (3e-2 from it after 2,000 iterations at lr 0.0018; 8e-5 with it). That
    test is one scalar brought to the host per iteration. w_prev, b_prev, t and beta are
    in the state, so a resume goes on bit for bit."""

    def __init__(self, design, w, b, st=None):
        self.xp = design.xp
        if st is not None and st.get("wp") is not None:
            self.wp = self.xp.asarray(design.asarray(st["wp"]), copy=True)
            self.bp, self.t, self.beta = st["bp"], float(st["t"]), float(st["beta"])
        else:  # the momentum starts (again) at w
            self.restart(w, b)

    def restart(self, w, b):
        self.wp, self.bp, self.t, self.beta = self.xp.asarray(w, copy=True), b, 1.0, 0.0

    def point(self, w, b):
        """Where the step is taken."""
        p = w - self.wp
        p *= self.beta
        p += w
        return p, b + self.beta * (b - self.bp)

    def hold(self, p, pb):
        """The point before its step (the restart's test compares the two)."""
        self.back, self.pb0 = self.xp.asarray(p, copy=True), pb

    def moved(self, w, b, p, pb):
        """The step went from the held point to (p, pb), from the iterate (w, b)."""
        back = self.back
        back -= p  # p before the step less after it: the step, reversed
        against = float(self.xp.sum(back * (p - w))) + float((self.pb0 - pb) * (pb - b)) > 0
        self.wp, self.bp = w, b
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * self.t * self.t)) / 2.0
        self.t, self.beta = (1.0, 0.0) if against else (t_next, (self.t - 1.0) / t_next)
        self.back = None

    def state(self) -> dict:
        return {"solver": "nesterov", "wp": to_host(self.wp, None), "bp": self.bp, "t": self.t,
                "beta": self.beta}


def quasi_newton(design, y, s, iters, steps, objective=COURSE, score=None, start=None,
                 saver=None, on_event=ignore):
    """L-BFGS (lbfgs.py) on the objective, one design.gradient (one pass over X) per
    evaluation of the cost and its gradient. Returns (w, b, costs, iterations run, the
    state to resume from).

    x = [w; b] is float64; w is cast to the design's dtype for each pass (float32 X: the
    gradient is float32's, and the optimum is reached to its precision). `iters` is the
    iteration it ends at; each takes one evaluation or a few (the line search). costs: the
    cost at the iterate after i iterations, for i = 0, print_every, ... below `iters`
    (at i = 0: w = 0, b = 0, or the warm start), as gd's grid; the sampled trace and the
    held-out cost likewise. The cost at an iterate is its evaluation's, so recording
    costs nothing. Early stopping on the held-out cost ends it there with the best
    iterate (kept with the memory dropped: a resume starts L-BFGS again from it). It stops
    before `iters` when the cost no longer falls (lbfgs.stopping, or a line search that
    finds nothing lower): a Notice says where. The state (state.npz, checkpoint.npz)
    holds x, its cost and gradient, the memory's pairs in their order and the cost before
    the last iteration; a checkpoint falls between iterations, never inside a line search,
    so a resumed run makes the same iterations as an unbroken one, bit for bit.
    """
    n_x = design.n_x
    start = start or Start()
    evaluate = _evaluation(design, y, s, objective)
    x, f, g, memory, f_prev, keep = _lbfgs_start(start, n_x, evaluate)
    ran, why, marks = iters, None, None

    def snapshot(i, whole=False):  # else the record as it was at the iteration's start
        pairs = memory.arrays()
        return {"form": "primal", "solver": "lbfgs", "w": x[:n_x].copy(), "b": np.float64(x[n_x]),
                "i": i, "keep": keep, "lbfgs_f": f, "lbfgs_g": g, "lbfgs_f_prev": f_prev,
                "lbfgs_s": pairs[0], "lbfgs_y": pairs[1], "lbfgs_sy": pairs[2],
                **steps.history(None if whole else marks)}

    if score is not None:
        steps.watch = lambda: score(design.asarray(x[:n_x]), float(x[n_x]))
    for i in range(start.at, iters):
        marks = steps.mark()  # a stop after i's record saves the state without it
        if saver is not None:
            saver.reached(i, snapshot)
        design.iteration = i
        if steps.due(i):
            best, stop = _record(steps, saver, i, None, lambda: f)
            if best:
                keep = (x.copy(), i)
            if stop:  # early stopping: the best iterate, L-BFGS to start again from it
                x, f, g, f_prev, ran = keep[0], None, None, None, i
                memory.clear()
                break
        why = lbfgs.stopping(f_prev, f, g)
        found = None if why else lbfgs.iterate(evaluate, x, f, g, memory, f_prev is None)
        if found is None:
            ran, why = i, why or "search"
            break
        f_prev, (x, f, g) = f, found
    if not np.all(np.isfinite(x)):
        _diverged(ran, None)
    end = snapshot(keep[1] if steps.stop else ran, whole=why is None)
    _ended(saver, end)
    if why is not None:
        on_event(Notice(f"L-BFGS stopped after {ran} of {iters} iterations: "
                        f"{lbfgs.REASONS[why]}"))
    return design.asarray(x[:n_x]), float(x[n_x]), steps.costs, ran, end


def _evaluation(design, y, s, objective):
    """evaluate(x) -> (f, g): the objective and its gradient (n_x + 1,) float64 at
    x = [w; b], from one design.gradient (one pass over X)."""
    m, n_x, l2 = design.m, design.n_x, float(objective.l2)

    def evaluate(x):
        g, sd, total = design.gradient(design.asarray(x[:n_x]), float(x[n_x]), y, s)
        wx = x[:n_x]
        f = objective.cost(float(total) / m, m, lbfgs.dot(wx, wx) if l2 else 0.0)
        grad = np.empty(n_x + 1)
        grad[:n_x] = to_host(g)
        grad[:n_x] /= m
        if l2:
            grad[:n_x] += (l2 / m) * wx
        grad[n_x] = float(sd) / m
        return f, grad

    return evaluate


def _lbfgs_start(start, n_x, evaluate):
    """(x, f, g, memory, f_prev, the best iterate kept) where an L-BFGS run begins: a
    state's own, or a warm start's x (w = 0, b = 0 without one), evaluated once."""
    st = start.state or {}
    x = np.zeros(n_x + 1)
    if start.state is not None:
        x[:n_x], x[n_x] = st["w"], st["b"]
    elif start.w is not None:
        x[:n_x], x[n_x] = to_host(np.ravel(start.w)), float(start.b)
    memory = lbfgs.Memory(n_x + 1, st.get("lbfgs_s"), st.get("lbfgs_y"), st.get("lbfgs_sy"))
    f, g = st.get("lbfgs_f"), st.get("lbfgs_g")
    if g is None:  # a fresh start, or the best iterate of a run stopped early
        f, g = evaluate(x)
    keep = st.get("keep")
    if keep is not None:
        keep = (np.array(keep[0], dtype=np.float64), int(keep[1]))
    return x, f, np.array(g, dtype=np.float64), memory, st.get("lbfgs_f_prev"), keep


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
    shift = 1.0 - 2.0 * y
    shrink = objective.shrink(lr, m)
    fold = objective.l2 == 0
    u, v, t, b0, keep = _dual_start(xp, K.dtype, m, start)
    z0, z0_held, w0_norm2, w0 = offset if offset is not None else (None, None, 0.0, None)
    ran, marks = iters, None

    def warm():  # (Z / 2's offset from w0 and b0, now; the held-out examples' X.T w0 now)
        if z0 is None:
            return (0.5 * b0 if b0 else None), None
        k = shrink ** t
        return 0.5 * (k * z0 + b0), None if z0_held is None else k * z0_held

    def state():  # (c, b, X_held.T w0 now) now
        c = scale * u
        return c, b0 + (xp.sum(c) if fold else scale * v), warm()[1]

    def snapshot(i):  # the record as it was at the iteration's start (marks)
        return {"form": "dual", "u": to_host(u, None), "v": float(v), "t": t, "b0": b0,
                "i": i, "keep": None if keep is None else (to_host(keep[0], None), *keep[1:]),
                "w0": w0, **steps.history(marks)}

    def cost(half_z, ku):
        return objective.cost(float(objective.terms(2 * half_z, y, s) / m), m, 0.0 if fold
                              else _dual_norm2(xp, u, ku, scale, z0, shrink ** t, w0_norm2))

    if score is not None:
        steps.watch = lambda: score(*state())
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by name
        check = _dual_scale(K, fold, scale, s, iters)
        off = warm()[0]
        for i in range(start.at, iters):
            if saver is not None:
                marks = steps.mark()
                saver.reached(i, snapshot)
            ku = K @ u
            half_z = ku if fold else ku + 0.5 * scale * v
            if off is not None:
                half_z = half_z + off
            if check and not math.isfinite(float(xp.sum(half_z))):
                _diverged(i, lr)
            if steps.due(i):
                best, stop = _record(steps, saver, i, lr, lambda: cost(half_z, ku))
                if best:
                    keep = (xp.asarray(u, copy=True), v, i, t)
                if stop:  # early stopping: the best weights, not the last
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
        z = _dual_scores(K, u, v, scale, fold, warm()[0], iters, lr)
    c = scale * u
    b = b0 + (float(xp.sum(c)) if fold else scale * float(v))
    marks = None
    end = snapshot(keep[2] if steps.stop else iters)
    end.update(w0_t=t, t=t)
    _ended(saver, end)
    return c, b, steps.costs, z, ran, end


def _dual_start(xp, dtype, m, start):
    """(u, v, t, b0, the best iterate kept) where the dual loop begins: a state's own,
    exactly where it stopped; or u = 0 with a warm start's b0."""
    st = start.state
    if st is None:
        return xp.zeros(m, dtype=dtype), 0.0, 0, float(start.b or 0.0), None
    keep = None
    if st.get("keep") is not None:
        keep = (xp.asarray(st["keep"][0], dtype=dtype), *st["keep"][1:])
    return (xp.asarray(st["u"], dtype=dtype), st["v"], int(st.get("t", 0)),
            float(st.get("b0", 0.0)), keep)


def _dual_scale(K, fold, scale, s, iters) -> bool:
    """K scaled in place so that it maps u to Z / 2 (less the bias, when it is apart);
    whether a step could overflow. |u_k| grows by at most 2 max(s) per step, so
    |Z / 2| <= 2 iters * max row sum of |K| (times the weights): when that cannot
    overflow, no per-iteration check is needed."""
    xp = namespace(K)
    if fold:
        K += 1.0
    K *= 0.5 * scale
    top = 1.0 if s is None else float(xp.max(s))
    return not float(xp.max(xp.sum(xp.abs(K), axis=1))) * 2.0 * top * iters < 1e300


def _dual_scores(K, u, v, scale, fold, off, iters, lr):
    """Z after the last step (m,), from the scaled K; a run whose Z is not finite diverged."""
    xp = namespace(K)
    z = 2 * (K @ u) if fold else 2 * (K @ u) + scale * v
    if off is not None:
        z = z + 2 * off
    if not bool(xp.all(xp.isfinite(z))):
        _diverged(iters, lr)
    return z


def _dual_norm2(xp, u, ku, scale, z0, k, w0_norm2):
    """|w|^2 in the dual form with a penalty, w = k w0 + X c: c.T K c + 2 k (X.T w0).c +
    k^2 |w0|^2. K is scaled here (it maps u to Z / 2 less the bias): c.T K_orig c =
    2 scale u.(K u)."""
    value = 2 * scale * float(xp.sum(u * ku))
    if z0 is not None:
        value += 2 * k * scale * float(xp.sum(z0 * u)) + k * k * w0_norm2
    return value


def largest_step(design, objective=COURSE, iters=12, max_work=2e10, tol=1e-4) -> float | None:
    """The largest learning rate at which gradient descent's cost cannot rise on this data,
    2 / L, or None when finding it would take too long (max_work multiply-adds).

    The cost is L-smooth with L <= max(s) lambda_max([X; 1] [X; 1].T) / (4m) + l2 / m (the
    sigmoid's slope is at most 1/4), and a step under 2 / L always lowers it. lambda_max by
    power iteration from all ones, one pass over X an iteration (design.normal), at most
    `iters` of them, until the estimate moves by less than `tol` (relative): for images
    (all pixels >= 0) all ones starts near the top eigenvector, and 3 passes do.
    """
    n_x, m = design.n_x, design.m
    if 2 * iters * m * n_x > max_work or not hasattr(design, "blocks"):
        return None
    try:
        w, b, top = np.ones(n_x), 1.0, 0.0
        for _ in range(iters):
            norm = math.sqrt(float(w @ w) + b * b)
            v, b = design.normal(w / norm, b / norm)
            w = to_host(v)
            before, top = top, math.sqrt(float(w @ w) + b * b)
            if abs(top - before) <= tol * top:
                break
    except NotImplementedError:
        return None
    weight = 1.0 if objective.class_weight is None else float(
        np.max(to_host(objective.weights(np.array([0.0, 1.0])))))
    smooth = weight * top / (4 * m) + objective.l2 / m
    return 2.0 / smooth if smooth > 0 else None


class Diverged(CatlrError):
    """Training diverged: the weights are no longer finite (a stop that keeps no checkpoint:
    a resume with the same settings would diverge again)."""


def _diverged(i: int, lr: float | None):
    if lr is None:  # L-BFGS: no step to make smaller
        raise Diverged(f"training diverged at iteration {i} (the cost or the weights are no "
                         "longer finite), try --solver gd or add a penalty such as --l2 1")
    raise Diverged(f"training diverged at iteration {i} (weights are no longer finite "
                     f"with --lr {lr:g}), use a smaller learning rate such as --lr {lr / 10:g} "
                     "(the course uses 0.005)")

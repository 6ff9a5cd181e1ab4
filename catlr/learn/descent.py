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

from ..config import CHOICES
from ..errors import CatlrError, ParameterError
from ..events import Notice, Plan, Step, ignore
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
        from ..errors import Terminated

        raise Terminated(self.signum)

    def tick(self, snapshot):
        if self.due():
            self.store(snapshot())
            self.last = time.monotonic()


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
    (Saver): checkpoints. Fit.state is the solver's state at the end (for a resume).

    `solver` (config.CHOICES["solver"]): "gd", the course's descent (either form);
    "nesterov", the same step from an extrapolated point (primal); "lbfgs", scipy's
    L-BFGS-B on the same objective and seam (primal; no lr, no checkpoints and no state:
    `saver` is not used). Without a penalty, a non-gd run whose weights end up
    classifying every training example correctly says so (a Notice): the data is
    separable, so the cost has no minimum and the weights grow without bound.
    """
    if form not in ("primal", "dual"):
        raise ParameterError(f"form={form!r} is not decided: expected 'primal' or 'dual' "
                             "(forms.choose_form picks one)")
    if solver not in SOLVERS:
        raise ParameterError(f"solver={solver!r} is not a solver: expected one of "
                             f"{', '.join(SOLVERS)}")
    if form == "dual" and solver != "gd":
        raise ParameterError(f"solver={solver!r} runs in the primal form (a step from a point "
                             "that is not the last iterate, or scipy's vectors over w), not "
                             "form='dual': pass form='primal'")
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
    if solver == "lbfgs":
        w, b, costs, ran, state = quasi_newton(dense, y, s, iters, steps, objective, score,
                                               start, on_event)
    else:
        with saver or contextlib.nullcontext():  # signals wait for the iteration's end
            w, b, costs, ran, state = primal(dense, y, s, lr, iters, steps, objective, score,
                                             start, saver, solver)
    steps.finish()
    z = dense.scores(w, b, fast=True)  # the kernels the passes ran on (fused, where installed)
    if solver != "gd" and not objective.l2 and separates(z, y):
        on_event(Notice(SEPARABLE))
    return _fit(steps, to_host(w), b, costs, form, z, ran, state)


SOLVERS = CHOICES["solver"]
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
           saver=None, solver="gd"):
    """The course's loop on the seam: one design.gradient per iteration. Returns (w, b,
    costs, iterations run, the state to resume from). score(w, b): the held-out cost
    (steps watches it); start: where it begins (Start); saver: checkpoints (Saver).

    solver "gd" takes the step at w itself (the course's iterates, exactly). "nesterov"
    takes the same step at an extrapolated point p = w + beta (w - w_prev) (b alike),
    with FISTA's momentum t' = (1 + sqrt(1 + 4 t^2)) / 2, beta' = (t - 1) / t' from
    t = 1, beta = 0, and its gradient restart (O'Donoghue and Candes, 2015): when the
    step taken from p points against the move it makes, (p - w_new).(w_new - w) > 0,
    the momentum starts again (t = 1, beta = 0). Without it, on the course's data with
    --l2 100 the iterates circle the optimum (3e-2 from it after 2,000 iterations at lr
    0.0018; 8e-5 with it). That test is one scalar brought to the host per iteration.
    w_prev, b_prev, t and beta are in the state, so a resume goes on bit for bit. The
    recorded (and sampled) cost, and the held-out cost, are those of w, not of p: the
    gradient's pass gives p's, so w's costs one more pass over X (design.scores) at
    those iterations only. Stopped early, a nesterov run keeps its best w with its
    momentum restarted (w_prev = w, t = 1): that is what it resumes from. The step must
    be smaller than gd's: accelerated descent is stable below 1 / L, gd below 2 / L.
    """
    xp, m = design.xp, design.m
    step = lr / m
    shrink = objective.shrink(lr, m)
    start = start or Start()
    first, keep = start.at, None
    accel = solver == "nesterov"
    st = start.state
    wp = bp = None
    t, beta = 1.0, 0.0   # FISTA's t and the next extrapolation's coefficient
    if st is not None:   # exactly where it stopped: w and b in their own float type
        w = xp.asarray(design.asarray(st["w"]), copy=True)  # the caller's array stays as it is
        b, keep = st["b"], st.get("keep")
        if keep is not None:
            keep = (design.asarray(keep[0]), keep[1], keep[2])
        if accel and st.get("wp") is not None:
            wp = xp.asarray(design.asarray(st["wp"]), copy=True)
            bp, t, beta = st["bp"], float(st["t"]), float(st["beta"])
    else:  # b as a scalar of X's dtype from the start (NumPy), as every step leaves it,
        # so that a state saved at this iteration holds it in that type (the same bits)
        w = (xp.asarray(design.asarray(np.ravel(start.w)), copy=True) if start.w is not None
             else xp.zeros(design.n_x, dtype=design.dtype))
        b = float(start.b or 0.0)
        if xp is np:
            b = np.dtype(design.dtype).type(b)
    if accel and wp is None:  # the momentum starts (again) at w
        wp, bp, t, beta = xp.asarray(w, copy=True), b, 1.0, 0.0
    ran = iters

    def norm2(v):
        return float(xp.sum(v * v)) if objective.l2 else 0.0

    def cost_at_w(total, at_w):
        """J at w: from the gradient's pass when it was taken at w, else one more pass."""
        if not at_w:
            total = objective.terms(design.scores(w, b), y, s)
        return objective.cost(float(total) / m, m, norm2(w))

    def snapshot(i):
        state = {"form": "primal", "w": to_host(w, None), "b": b, "i": i,
                 "keep": None if keep is None else (to_host(keep[0], None), keep[1], keep[2]),
                 **steps.history()}
        if accel:
            state.update(solver=solver, wp=to_host(wp, None), bp=bp, t=t, beta=beta)
        return state

    if score is not None:
        steps.watch = lambda: score(w, b)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by name
        for i in range(first, iters):
            if saver is not None and saver.signum is not None:
                saver.halt(lambda: snapshot(i))
            if accel:  # where the step is taken: w for gd, w + beta (w - w_prev) here
                p = w - wp
                p *= beta
                p += w
                pb = b + beta * (b - bp)
            else:
                p, pb = w, b
            g, sd, total = design.gradient(p, pb, y, s)
            if steps.due(i):
                if saver is not None:  # before i's record: a resume from i records it once
                    saver.tick(lambda: snapshot(i))
                steps.report(i, lr, lambda: cost_at_w(total, p is w or beta == 0.0))
                if steps.improved and steps.held.patience:
                    keep, steps.improved = (xp.asarray(w, copy=True), b, i), False
                if steps.stop:  # early stopping: the best weights, not the last
                    w, b, ran = keep[0], keep[1], i
                    if accel:
                        wp, bp, t, beta = xp.asarray(w, copy=True), b, 1.0, 0.0
                    break
            if accel:
                back, pb0 = xp.asarray(p, copy=True), pb
            # the gradient step, written once: at w itself (gd) or at the point p
            if shrink != 1.0:
                p *= shrink
            p -= step * g
            pb -= step * sd  # sd stays where the products ran: no sync per step
            if accel:
                back -= p  # p before the step less after it: the step, reversed
                against = float(xp.sum(back * (p - w))) + float((pb0 - pb) * (pb - b)) > 0
                wp, bp, w, b = w, b, p, pb
                t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
                t, beta = (1.0, 0.0) if against else (t_next, (t - 1.0) / t_next)
            else:
                b = pb
    if not (bool(xp.all(xp.isfinite(w))) and math.isfinite(float(b))):
        _diverged(iters, lr)
    end = snapshot(keep[2] if steps.stop else iters)
    return w, float(b), steps.costs, ran, end


# L-BFGS-B's stopping rules (scipy's names): a relative fall of the cost under FTOL, or
# every component of the gradient under GTOL. Tighter than scipy's defaults (2.2e-9,
# 1e-5), so that a run ends at the optimum to float precision (or at --iters) rather
# than a few digits short of it; the line search then ends most runs ("ABNORMAL": no
# lower cost along the direction), which is reported as the optimum reached.
LBFGS_FTOL = 1e-15
LBFGS_GTOL = 1e-10
LBFGS_HISTORY = 10  # gradient pairs kept (scipy's default)


class _Stop(Exception):
    """Early stopping, raised in L-BFGS's callback to end scipy's loop."""


class _Threads:
    """BLAS on one thread while scipy does its own vector work (L-BFGS's two-loop recursion
    over n_x-long vectors), and on as many as before during catlr's passes over X. Two
    loaded BLAS libraries (numpy's and scipy's OpenBLAS), each with threads spinning for
    the cores, slowed every iteration (bench/README.md, Solvers: "lbfgs spin"). Needs
    threadpoolctl (catlr[lbfgs]); without it, nothing changes."""

    def __init__(self):
        try:
            from threadpoolctl import ThreadpoolController

            self.libs = [c for c in ThreadpoolController().lib_controllers
                         if c.user_api == "blas"]
        except Exception:  # not installed, or a library it cannot drive
            self.libs = []
        self.counts = [c.num_threads for c in self.libs]
        self.depth = 0

    def scipy(self):
        for c in self.libs:
            c.set_num_threads(1)

    def catlr(self):
        for c, n in zip(self.libs, self.counts):
            c.set_num_threads(n)

    @contextlib.contextmanager
    def ours(self):
        """catlr's work inside scipy's loop (a pass over X, a record): the usual threads."""
        if not self.depth:
            self.catlr()
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth:
                self.scipy()


def require(solver: str) -> None:
    """Refuse, before any data is read, a solver whose package is not installed."""
    if solver == "lbfgs":
        import importlib.util
        import sys

        missing = sys.modules["scipy"] is None if "scipy" in sys.modules else (
            importlib.util.find_spec("scipy") is None)
        if not missing:
            try:
                import scipy.optimize  # noqa: F401
            except ImportError:
                missing = True
        if missing:
            raise CatlrError("--solver lbfgs needs scipy, which is not installed: pip install "
                             "\"catlr[lbfgs]\"")


def quasi_newton(design, y, s, iters, steps, objective=COURSE, score=None, start=None,
                 on_event=ignore):
    """L-BFGS-B (scipy.optimize.minimize, jac=True) on the objective, one design.gradient
    (one pass over X) per evaluation of the cost and its gradient. Returns (w, b, costs,
    iterations run, None: no state to resume from, L-BFGS's gradient pairs are not kept).

    scipy's vectors are float64, [w; b]; w is cast to the design's dtype for each pass
    (float32 X: the gradient is float32's, and the optimum is reached to its precision).
    `iters` is the most L-BFGS iterations it runs; each takes one evaluation or a few
    (the line search). costs: the cost at the iterate after i iterations, for i = 0,
    print_every, ... below `iters` (at i = 0: w = 0, b = 0), as gd's grid; the sampled
    trace and the held-out cost likewise. The cost at an iterate is the one its
    evaluation computed, so recording costs nothing. Early stopping on the held-out cost
    ends it there with the best iterate. It stops before `iters` when the cost no longer
    falls (LBFGS_FTOL, LBFGS_GTOL, or a line search that finds nothing lower): a Notice
    says where.
    """
    from scipy.optimize import minimize

    m, n_x = design.m, design.n_x
    start = start or Start()
    first = start.at  # iterations are counted from there (a warm start's own count)
    if start.state is not None:
        raise ParameterError("an L-BFGS run keeps no state to resume from (its gradient "
                             "pairs are not saved): start again, or warm-start from its "
                             "weights (Start(w=..., b=...))")
    x0 = np.zeros(n_x + 1)
    if start.w is not None:
        x0[:n_x], x0[n_x] = to_host(np.ravel(start.w)), float(start.b)
    l2 = float(objective.l2)
    last = {}   # the one evaluation kept: scipy asks for the point it just accepted
    threads = _Threads()

    def evaluate(x):
        if last and np.array_equal(x, last["x"]):
            return last["f"], last["g"].copy()
        w = design.asarray(x[:n_x])
        with threads.ours():
            g, sd, total = design.gradient(w, float(x[n_x]), y, s)
        wx = x[:n_x]
        f = objective.cost(float(total) / m, m, float(wx @ wx) if l2 else 0.0)
        grad = np.empty(n_x + 1)
        grad[:n_x] = to_host(g)
        grad[:n_x] /= m
        if l2:
            grad[:n_x] += (l2 / m) * wx
        grad[n_x] = float(sd) / m
        last.update(x=x.copy(), f=f, g=grad)
        return f, grad.copy()

    state = {"x": x0, "i": first, "keep": None}

    def current():
        x = state["x"]
        return design.asarray(x[:n_x]), float(x[n_x])

    if score is not None:
        steps.watch = lambda: score(*current())

    def look(x, i):
        """At iterate i (i iterations done): the record, the held-out cost, a Step."""
        state["x"], state["i"] = x, i
        if i < iters and steps.due(i):
            with threads.ours():
                steps.report(i, None, lambda: evaluate(x)[0])
            if steps.improved and steps.held.patience:
                state["keep"], steps.improved = (x.copy(), i), False
            if steps.stop:
                raise _Stop

    result = None
    threads.scipy()  # from here on one BLAS thread, but inside threads.ours()
    try:
        evaluate(x0)
        look(x0, first)
        result = minimize(evaluate, x0, jac=True, method="L-BFGS-B",
                          callback=lambda xk: look(np.array(xk, dtype=np.float64),
                                                   state["i"] + 1),
                          options={"maxiter": iters - first, "maxfun": 10**9, "ftol": LBFGS_FTOL,
                                   "gtol": LBFGS_GTOL, "maxcor": LBFGS_HISTORY})
        x, ran = np.asarray(result.x, dtype=np.float64), first + int(result.nit)
    except _Stop:
        x, ran = state["keep"][0], state["i"]
    finally:
        threads.catlr()
    if not np.all(np.isfinite(x)):
        _diverged(ran, None)
    if result is not None and ran < iters:
        why = {0: "converged", 2: "its line search found no lower cost, the optimum to the "
                                  "precision of the floats"}.get(result.status, "stopped")
        on_event(Notice(f"L-BFGS stopped after {ran} of {iters} iterations: {why} "
                        f"(scipy: {' '.join(str(result.message).split())[:80].rstrip(': ')})"))
    return design.asarray(x[:n_x]), float(x[n_x]), steps.costs, ran, None


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


def _diverged(i: int, lr: float | None):
    if lr is None:  # L-BFGS: no step to make smaller
        raise CatlrError(f"training diverged at iteration {i} (the cost or the weights are no "
                         "longer finite), try --solver gd or add a penalty such as --l2 1")
    raise CatlrError(f"training diverged at iteration {i} (weights are no longer finite "
                     f"with --lr {lr:g}), use a smaller learning rate such as --lr {lr / 10:g} "
                     "(the course uses 0.005)")

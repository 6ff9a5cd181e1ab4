"""L-BFGS's arithmetic, written in catlr so that every number it goes on from can be saved.

The iterate x = [w; b] (n,) float64 with n = n_x + 1, its cost f and gradient g, and the
memory: the last HISTORY pairs s = x' - x, y = g' - g, oldest first, with s.y of each.
One iteration (`iterate`) takes the direction d = -H g of the two-loop recursion (Nocedal
and Wright, Numerical Optimization, 2006, Algorithm 7.4; H0 = (s.y / y.y) I of the newest
pair), and a step along it found by More and Thuente's line search (ACM TOMS 20, 1994;
MINPACK-2's dcsrch and dcstep, `_Search`), with the tolerances and rules of L-BFGS-B
(Byrd, Lu, Nocedal and Zhu, 1995; scipy.optimize's "L-BFGS-B"): the first step 1 / |g|,
then 1; at most MAX_EVALS evaluations a search; a pair kept only when s.y > eps (-g.s);
a search that fails drops the memory and tries again along -g, and fails for good only
without memory. On a problem without bounds that is L-BFGS-B's algorithm, so its iterates
are scipy's up to rounding (tests/test_solvers.py compares them).

Nothing here keeps a hidden state between iterations: what the next one needs is x, f, g,
the memory and whether an iteration ran yet, which descent.quasi_newton saves in a
checkpoint, so that a resumed run makes the same iterations bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

HISTORY = 10      # pairs kept (scipy's default maxcor)
# The stopping rules (scipy's names): a relative fall of the cost of at most FTOL in the
# last iteration, or every component of the gradient at most GTOL. Tighter than scipy's
# defaults (2.2e-9, 1e-5), so that a run ends at the optimum to float precision (or at
# --iters) rather than a few digits short of it; the line search then ends most runs
# (no lower cost along the direction), which is reported as the optimum reached.
FTOL = 1e-15
GTOL = 1e-10
MAX_EVALS = 20    # evaluations in one line search before it gives up (L-BFGS-B's)
STEP_MAX = 1e10   # the longest step (L-BFGS-B's, without bounds)
# More and Thuente's tolerances as L-BFGS-B sets them: sufficient decrease
# f(t) <= f(0) + DECREASE t f'(0), curvature |f'(t)| <= CURVATURE |f'(0)|, and the
# relative width of the interval under which the search stops.
DECREASE, CURVATURE, WIDTH = 1e-3, 0.9, 0.1
EPS = float(np.finfo(np.float64).eps)

REASONS = {
    "gradient": f"converged (every component of the gradient is under {GTOL:g})",
    "cost": f"converged (the cost fell by less than {FTOL:g} of itself in the last iteration)",
    "search": "its line search found no lower cost, the optimum to the precision of the floats",
}


def dot(a, b) -> float:
    """a.b of two vectors, summed by NumPy's own loop rather than BLAS: a threaded BLAS dot
    of n_x floats waits on threads that a busy machine does not give it (bench/README.md,
    Solvers: 80 times slower than this on a loaded 2-core machine), and the sum's order
    does not depend on how many threads there are."""
    return float(np.einsum("i,i->", a, b))


class Memory:
    """The last HISTORY pairs (s, y) and s.y of each, oldest first: H's action on a vector.

    s, y: (k, n) float64 rows (k <= HISTORY) and sy (k,), as a state file keeps them."""

    def __init__(self, n: int, s=None, y=None, sy=None):
        self.n = n
        self.pairs = []
        if s is not None:
            for si, yi, d in zip(np.asarray(s, np.float64), np.asarray(y, np.float64),
                                 np.asarray(sy, np.float64)):
                self.pairs.append((si.copy(), yi.copy(), float(d)))

    def __len__(self):
        return len(self.pairs)

    def direction(self, g):
        """d = -H g by the two-loop recursion; -g without pairs."""
        q = g.copy()
        alphas = []
        for s, y, sy in reversed(self.pairs):
            a = dot(s, q) / sy
            q -= a * y
            alphas.append(a)
        if self.pairs:
            _, y, sy = self.pairs[-1]
            q *= sy / dot(y, y)
        for (s, y, sy), a in zip(self.pairs, reversed(alphas)):
            q += (a - dot(y, q) / sy) * s
        return -q

    def add(self, s, y, sy: float):
        self.pairs.append((s, y, sy))
        if len(self.pairs) > HISTORY:
            del self.pairs[0]

    def clear(self):
        self.pairs = []

    def arrays(self):
        """(s (k, n), y (k, n), sy (k,)): what a state file keeps, oldest first."""
        if not self.pairs:
            empty = np.zeros((0, self.n))
            return empty, empty.copy(), np.zeros(0)
        s, y, sy = zip(*self.pairs)
        return np.stack(s), np.stack(y), np.array(sy, dtype=np.float64)


def stopping(f_prev, f: float, g) -> str | None:
    """Why the run stops at the iterate with cost f and gradient g (f_prev: the cost
    before the last iteration, None before the first): a key of REASONS, or None."""
    if float(np.max(np.abs(g))) <= GTOL:
        return "gradient"
    if f_prev is not None and f_prev - f <= FTOL * max(abs(f_prev), abs(f), 1.0):
        return "cost"
    return None


def iterate(evaluate, x, f: float, g, memory: Memory, first: bool):
    """One L-BFGS iteration from x (cost f, gradient g): (x', f', g') after it, the memory
    updated in place; or None when no step along the direction lowers the cost (even along
    -g with the memory dropped). evaluate(x) -> (f, g): one pass over X. `first`: no
    iteration ran yet, so the step starts at 1 / |d| (not 1)."""
    while True:
        d = memory.direction(g)
        slope = dot(g, d)
        if slope < 0 and math.isfinite(slope):
            step = min(1.0 / math.sqrt(dot(d, d)), STEP_MAX) if first and not memory else 1.0
            found = search(evaluate, x, f, slope, d, step)
            if found is not None:
                t, x_new, f_new, g_new, slope_new = found
                _remember(memory, t, d, g, g_new, slope, slope_new)
                return x_new, f_new, g_new
        if not memory:
            return None
        memory.clear()


def _remember(memory, t, d, g, g_new, slope, slope_new):
    """Keep the pair of the step t d (L-BFGS-B's rule: s.y from the two slopes, and only
    when it is above eps (-g.s), so that H stays positive definite)."""
    s = d if t == 1.0 else t * d
    sy = slope_new - slope if t == 1.0 else (slope_new - slope) * t
    if sy > EPS * (-slope if t == 1.0 else -slope * t):
        memory.add(s, g_new - g, sy)


def search(evaluate, x, f: float, slope: float, d, step: float):
    """More and Thuente's line search along d from x (cost f, slope g.d < 0), starting at
    `step`: (t, x + t d, its cost, its gradient, its slope), or None when MAX_EVALS
    evaluations found no acceptable step or an evaluation was not finite."""
    lookout = _Search(f, slope, step)
    t = step
    for _ in range(MAX_EVALS):
        x_new = x + t * d
        f_new, g_new = evaluate(x_new)
        slope_new = dot(g_new, d)
        if not (math.isfinite(f_new) and math.isfinite(slope_new)):
            return None
        t_next, done = lookout.next(t, f_new, slope_new)
        if done:
            return t, x_new, f_new, g_new, slope_new
        t = t_next
    return None


class _Search:
    """The state of one More-Thuente search (dcsrch): the interval [stx, sty] holding a
    step that satisfies both conditions, with the cost and slope at each end, the bounds
    [stmin, stmax] of the next trial, its stage and the widths that decide a bisection."""

    def __init__(self, f0: float, g0: float, step: float):
        self.finit, self.ginit, self.gtest = f0, g0, DECREASE * g0
        self.brackt, self.stage = False, 1
        self.width = STEP_MAX
        self.width1 = self.width / 0.5
        self.stx, self.fx, self.gx = 0.0, f0, g0
        self.sty, self.fy, self.gy = 0.0, f0, g0
        self.stmin, self.stmax = 0.0, step + 4.0 * step

    def _done(self, stp, f, g, ftest) -> bool:
        """Both conditions hold, or (MINPACK's warnings) no better step can be found: the
        step is taken either way, as L-BFGS-B takes it."""
        narrow = self.brackt and (stp <= self.stmin or stp >= self.stmax
                                  or self.stmax - self.stmin <= WIDTH * self.stmax)
        at_max = stp == STEP_MAX and f <= ftest and g <= self.gtest
        at_min = stp == 0.0 and (f > ftest or g >= self.gtest)
        return narrow or at_max or at_min or (f <= ftest and abs(g) <= CURVATURE * -self.ginit)

    def next(self, stp: float, f: float, g: float):
        """The cost f and slope g at the trial step stp: (the next trial, whether stp is
        the step to take)."""
        ftest = self.finit + stp * self.gtest
        if self.stage == 1 and f <= ftest and g >= 0:
            self.stage = 2
        if self._done(stp, f, g, ftest):
            return stp, True
        if self.stage == 1 and self.fx >= f > ftest:
            # the modified function psi(t) = f(t) - f(0) - DECREASE t f'(0) predicts the step
            gt = self.gtest
            stx, fx, gx, sty, fy, gy, stp, self.brackt = _step(
                self.stx, self.fx - self.stx * gt, self.gx - gt,
                self.sty, self.fy - self.sty * gt, self.gy - gt,
                stp, f - stp * gt, g - gt, self.brackt, self.stmin, self.stmax)
            fx, fy, gx, gy = fx + stx * gt, fy + sty * gt, gx + gt, gy + gt
        else:
            stx, fx, gx, sty, fy, gy, stp, self.brackt = _step(
                self.stx, self.fx, self.gx, self.sty, self.fy, self.gy, stp, f, g,
                self.brackt, self.stmin, self.stmax)
        self.stx, self.fx, self.gx, self.sty, self.fy, self.gy = stx, fx, gx, sty, fy, gy
        return self._bounded(stp), False

    def _bounded(self, stp: float) -> float:
        """A bisection when the interval shrinks too slowly; the bounds of the next trial."""
        if self.brackt:
            if abs(self.sty - self.stx) >= 0.66 * self.width1:
                stp = self.stx + 0.5 * (self.sty - self.stx)
            self.width1, self.width = self.width, abs(self.sty - self.stx)
            self.stmin, self.stmax = min(self.stx, self.sty), max(self.stx, self.sty)
        else:
            self.stmin = stp + 1.1 * (stp - self.stx)
            self.stmax = stp + 4.0 * (stp - self.stx)
        stp = min(max(stp, 0.0), STEP_MAX)
        if self.brackt and (stp <= self.stmin or stp >= self.stmax
                            or self.stmax - self.stmin <= WIDTH * self.stmax):
            stp = self.stx  # no further progress: the best step found
        return stp


def _cubic(stx, fx, dx, stp, fp, dp):
    """(gamma, theta) of the cubic through (stx, fx, dx) and (stp, fp, dp), from which each
    case of _step signs gamma and takes the cubic's minimizer. The root is of a number >= 0
    up to rounding (MINPACK clamps it in one case only, and a NaN step in the others)."""
    theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
    s = max(abs(theta), abs(dx), abs(dp))
    return s * math.sqrt(max(0.0, (theta / s) ** 2 - (dx / s) * (dp / s))), theta


def _step(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):
    """MINPACK-2's dcstep: a safeguarded trial step from the cubic and quadratic (or
    secant) interpolants, and the interval [stx, sty] updated with the trial stp. Returns
    (stx, fx, dx, sty, fy, dy, the next step, brackt)."""
    sgnd = dp * (dx / abs(dx)) if dx else 0.0
    if fp > fx:       # a higher cost: the minimum is bracketed
        stpf, brackt = _higher(stx, fx, dx, stp, fp, dp), True
    elif sgnd < 0.0:  # lower, the slopes of opposite signs: bracketed
        stpf, brackt = _opposite(stx, fx, dx, stp, fp, dp), True
    elif abs(dp) < abs(dx):  # lower, the same sign, the slope's magnitude decreasing
        stpf = _flatter(stx, fx, dx, sty, stp, fp, dp, brackt, stpmin, stpmax)
    elif brackt:      # lower, the same sign, not flatter: the cubic on [stp, sty]
        gamma, theta = _cubic(stp, fp, dp, sty, fy, dy)
        if stp > sty:
            gamma = -gamma
        r = ((gamma - dp) + theta) / (((gamma - dp) + gamma) + dy)
        stpf = stp + r * (sty - stp)
    else:
        stpf = stpmax if stp > stx else stpmin
    if fp > fx:
        sty, fy, dy = stp, fp, dp
    else:
        if sgnd < 0.0:
            sty, fy, dy = stx, fx, dx
        stx, fx, dx = stp, fp, dp
    return stx, fx, dx, sty, fy, dy, stpf, brackt


def _higher(stx, fx, dx, stp, fp, dp):
    gamma, theta = _cubic(stx, fx, dx, stp, fp, dp)
    if stp < stx:
        gamma = -gamma
    r = ((gamma - dx) + theta) / (((gamma - dx) + gamma) + dp)
    stpc = stx + r * (stp - stx)
    stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
    return stpc if abs(stpc - stx) < abs(stpq - stx) else stpc + (stpq - stpc) / 2.0


def _opposite(stx, fx, dx, stp, fp, dp):
    gamma, theta = _cubic(stx, fx, dx, stp, fp, dp)
    if stp > stx:
        gamma = -gamma
    r = ((gamma - dp) + theta) / (((gamma - dp) + gamma) + dx)
    stpc = stp + r * (stx - stp)
    stpq = stp + (dp / (dp - dx)) * (stx - stp)
    return stpc if abs(stpc - stp) > abs(stpq - stp) else stpq


def _flatter(stx, fx, dx, sty, stp, fp, dp, brackt, stpmin, stpmax):
    gamma, theta = _cubic(stx, fx, dx, stp, fp, dp)
    if stp > stx:
        gamma = -gamma
    r = ((gamma - dp) + theta) / ((gamma + (dx - dp)) + gamma)
    if r < 0.0 and gamma != 0.0:
        stpc = stp + r * (stx - stp)
    else:
        stpc = stpmax if stp > stx else stpmin
    stpq = stp + (dp / (dp - dx)) * (stx - stp)
    if brackt:  # the step closer to stp, kept inside the interval
        stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
        edge = stp + 0.66 * (sty - stp)
        return min(edge, stpf) if stp > stx else max(edge, stpf)
    stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
    return min(max(stpf, stpmin), stpmax)

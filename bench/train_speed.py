"""catlr's trainer against the seed's loop (and scikit-learn), side by side in one run.

    python bench/train_speed.py [--runs 5] [--quick]

1. Whole process on the course pair: `catlr train <pair> --lr 0.005 --iters 2000`
   against a script that loads the same files and runs the seed's loop in the same
   Python; medians of alternated runs, their ratio (issue 3 target: <= 0.20), and
   the weights of both compared (relative difference, target <= 1e-9).
2. In process, on the course pair and synthetic sets (m = 2000 and m = 20000):
   catlr's trainer (the form it chooses), the seed loop, and scikit-learn's
   LogisticRegression(C=inf), i.e. no penalty, where installed.
3. For m > n_x: the primal form's time per iteration against two matrix-vector
   products over X (issue 3 target: <= 1.5x).
4. The form choice at m = 2000, 5000 and 10000, over 200 and 2000 iterations: both
   forms timed, against the one catlr picks (--forms runs this part alone).
"""

import argparse
import inspect
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    COURSE,
    alternate,
    catlr_cmd,
    compile_catlr,
    machine,
    median,
    report,
    uptime,
)

from catlr.learn.descent import reference
from catlr.learn.design import normalize
from catlr.learn.forms import choose_form
from catlr.learn.model import LogisticRegression

# The seed's script, whole: the same loop as catlr.learn.descent.reference (its source is pasted
# in, so the loop is written once and the script imports nothing of catlr).
SEED_SCRIPT = """
import sys, glob
import h5py, numpy as np
folder, out, lr, iters = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
with h5py.File(glob.glob(folder + '/train_*.h5')[0], 'r') as f:
    x, y = f['train_set_x'][()], f['train_set_y'][()]
X = x.reshape(x.shape[0], -1).T / 255.
Y = y.reshape(1, -1)
%s
w, b, costs = reference(X, Y, lr, iters)
for i, cost in enumerate(costs):
    print('Cost after iteration %%i: %%f' %% (i * 100, cost))
np.save(out, w)
""" % inspect.getsource(reference)


def seed_loop(X, Y, lr, iters):
    return reference(X, Y, lr, iters)[0]


def best_of(fn, repeat, clock=time.perf_counter):
    ts = []
    for _ in range(repeat):
        t = clock()
        out = fn()
        ts.append(clock() - t)
    return median(ts), out


def whole_process(runs):
    from catlr.runs import modelfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "seed.py").write_text(SEED_SCRIPT)
        times = alternate({
            "catlr train (whole process)": catlr_cmd("train", COURSE, "--lr", "0.005", "--iters",
                                                     "2000", "--out", tmp / "m.npz"),
            "seed loop script (whole process)": [sys.executable, str(tmp / "seed.py"), str(COURSE),
                                                 str(tmp / "w.npy"), "0.005", "2000"],
        }, runs)
        r = report(times, "seed loop script (whole process)",
                   "1. Course pair, lr 0.005, 2000 iterations, whole process:")
        model, _ = modelfile.load(tmp / "m.npz")
        w_ref = np.load(tmp / "w.npy")
        diff = np.linalg.norm(model.w_ - w_ref) / np.linalg.norm(w_ref)
    ratio = r["catlr train (whole process)"]
    print(f"  ratio {ratio:.3f} ({'meets' if ratio <= 0.20 else 'misses'} the 0.20 target); "
          f"weights differ by {diff:.1e} relative ({'ok' if diff <= 1e-9 else 'TOO FAR'})")


def synthetic(m, n_x=12288, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (m, n_x), dtype=np.uint8)
    y = (x[:, :64].mean(axis=1) + rng.normal(0, 8, m) > 127.5).astype(np.int64)
    return x, y


def in_process(sets, iters, repeat):
    """sets: {name: (x, y, catlr's iterations, the seed loop's iterations)}. A shorter run is
    scaled to `iters` (only done where each iteration costs the same: the seed loop, and
    catlr's primal form); weights are compared when both ran `iters`."""
    try:
        from sklearn.linear_model import LogisticRegression as SK
    except ImportError:
        SK = None
    print(f"\n2. In process, times for {iters} iterations (medians of {repeat}):")
    for name, (x, y, c_iters, s_iters) in sets.items():
        print(_compare(name, x, y, c_iters, s_iters, iters, repeat, SK))


def _compare(name, x, y, c_iters, s_iters, iters, repeat, SK):
    X = normalize(x.reshape(len(x), -1).T)
    Y = y.reshape(1, -1)
    form = choose_form(*X.shape, iters)
    assert c_iters == iters or form == "primal"
    t_catlr, model = best_of(lambda: LogisticRegression(0.005, c_iters, form=form).fit(X, Y),
                             repeat if c_iters == iters else 1)
    w = model.w_
    t_seed, w_seed = best_of(lambda: seed_loop(X, Y, 0.005, s_iters), 1)
    t_catlr, t_seed = t_catlr * iters / c_iters, t_seed * iters / s_iters
    line = (f"  {name:<22} catlr ({form}) {t_catlr * 1000:9.1f} ms | seed loop "
            f"{t_seed * 1000:9.1f} ms | ratio {t_catlr / t_seed:.3f}")
    if c_iters == s_iters == iters:
        line += f" | weights differ {np.linalg.norm(w - w_seed) / np.linalg.norm(w_seed):.1e}"
    else:
        line += f" (catlr timed over {c_iters}, the seed loop over {s_iters} iterations)"
    if SK is not None and len(y) <= 2000:
        t_sk, _ = best_of(lambda: SK(C=np.inf, max_iter=iters).fit(X.T, y), 1)
        line += f" | scikit-learn lbfgs {t_sk * 1000:8.1f} ms (catlr / sklearn {t_catlr / t_sk:.3f})"
    return line


def primal_per_iteration(m, iters=10):
    x, y = synthetic(m, seed=1)
    X = normalize(x.reshape(m, -1).T)
    Y = y.reshape(1, -1)
    assert choose_form(*X.shape, 2000) == "primal"
    LogisticRegression(0.005, 2, form="primal").fit(X, Y)  # warm up
    t, _ = best_of(lambda: LogisticRegression(0.005, iters, form="primal").fit(X, Y), 3)
    w = np.zeros(X.shape[0])
    dz = np.zeros(m)

    def two_matvecs():
        for _ in range(iters):
            w @ X
            X @ dz

    t_ref, _ = best_of(two_matvecs, 3)
    r = t / t_ref
    print(f"\n3. m = {m} > n_x = {X.shape[0]}: primal chosen; {t / iters * 1000:.1f} ms per iteration, "
          f"two matrix-vector products {t_ref / iters * 1000:.1f} ms: ratio {r:.2f} "
          f"({'meets' if r <= 1.5 else 'misses'} the 1.5x target)")


def forms(sizes=(2000, 5000, 10000), iters=(200, 2000), repeat=3, one_core=False):
    """4. Is choose_form right? Each form timed in parts on synthetic data (K, a few dual
    steps; a few primal steps on the uint8 pixels, float32 and float64, with the compiled
    kernels and with NumPy's path), medians of `repeat`, totals for each count of
    iterations, against the form catlr picks. Prints the per-unit costs, to compare with
    catlr.learn.forms' constants.

    one_core: BLAS (threadpoolctl) and numba on one thread, timed by the CPU time they
    take, halved (two cores doing the same work): on a machine shared with other work the
    wall time of two threads is mostly their waiting for each other, and BLAS's more than
    numba's, so that those figures no longer say which form is the faster."""
    import contextlib

    from catlr.learn import descent, kernels
    from catlr.learn import forms as planner
    from catlr.learn.design import Pixels

    global best_of
    limit = contextlib.nullcontext()
    if one_core:
        import numba
        from threadpoolctl import threadpool_limits

        numba.set_num_threads(1)
        limit = threadpool_limits(1, "blas")
        timed = best_of

        def best_of(fn, repeat):  # the CPU time of one core, as two cores' wall time
            t, out = timed(fn, repeat, time.process_time)
            return t / 2, out
    print("\n4. Form choice: measured totals of each form, and the one choose_form picks"
          + (" (one core, CPU time / 2)" if one_core else ""))
    print(f"   uptime: {uptime()}")
    with limit:
        _forms(sizes, iters, repeat, descent, kernels, planner, Pixels)
    print(f"   uptime: {uptime()}")


def _old_pick(n_x, m, iters, itemsize):
    """The form the planner's constants before issue 32 picked (they priced building a float
    X and BLAS passes over it, before the fused uint8 products)."""
    dual = 20e-12 * m * m * n_x + iters * 1.2e-9 * m * m
    primal = 2e-9 * m * n_x + iters * 0.11e-9 * m * n_x * itemsize
    return "dual" if m < n_x and dual < primal else "primal"


def _forms(sizes, iters, repeat, descent, kernels, planner, Pixels):
    n_x = 12288
    wrong = {"now": [], "before 32": []}
    fused = kernels.compiled() is not None
    for m in sizes:
        x, y = synthetic(m, seed=2)
        x = x.reshape(m, 64, 64, 3)
        y = y.astype(np.float64)
        design = Pixels(x, "float64")
        t_k, K = best_of(design.gram, max(1, repeat - 1))
        steps = 20
        t_d, _ = best_of(lambda: descent.dual(K.copy(), y, None, 0.005, steps, descent._Steps(
            steps, 10**9, descent.ignore, None)), repeat)
        K = None  # its memory back before the next m (not del: the lambda above names it)
        step = {}
        for dtype in ("float32", "float64"):
            dense = Pixels(x, dtype).dense()
            w = np.zeros(n_x, dtype)
            yd = y.astype(dtype)
            dense.gradient(w, 0.0, yd)  # compiles, or loads numba's cache
            step[dtype], _ = best_of(lambda: dense.gradient(w, 0.0, yd), repeat)
            kernels.USE_NUMBA = False
            try:
                step[dtype + " numpy"], _ = best_of(lambda: dense.gradient(w, 0.0, yd), repeat)
            finally:
                kernels.USE_NUMBA = True
        per = {k: v / (m * n_x) * 1e9 for k, v in step.items()}
        print(f"  m = {m}: K {t_k:.2f} s ({t_k / (m * m * n_x) * 1e12:.1f} ps per m^2 n_x), "
              f"dual step {t_d / steps * 1e3:.1f} ms ({t_d / steps / (m * m) * 1e9:.2f} ns per "
              f"m^2); primal step, ns per pixel: " + ", ".join(f"{k} {v:.3f}"
                                                                for k, v in per.items()))
        for it in iters:
            dual = t_k + it * t_d / steps
            for dtype, itemsize in (("float32", 4), ("float64", 8)):
                paths = [(dtype, True), (dtype + " numpy", False)] if fused else [
                    (dtype + " numpy", False)]
                for key, compiled in paths:
                    primal = it * step[key]
                    costs = planner.form_costs(n_x, m, it, itemsize, compiled)
                    chosen = planner.choose_form(n_x, m, it, itemsize, compiled)
                    best = "dual" if dual < primal else "primal"
                    took = dual if chosen == "dual" else primal
                    old = _old_pick(n_x, m, it, itemsize)
                    print(f"    {it:>5} iterations, {key:<13}: dual {dual:7.2f} s "
                          f"(model {costs['dual']:7.2f}), primal {primal:7.2f} s (model "
                          f"{costs['primal']:7.2f}); catlr picks {chosen} "
                          f"({'right' if chosen == best else 'WRONG'}, "
                          f"{took / min(dual, primal):.2f} x the faster); before 32: {old}")
                    for name, pick in (("now", chosen), ("before 32", old)):
                        if pick != best:
                            wrong[name].append((dual if pick == "dual" else primal)
                                               / min(dual, primal))
    for name, factors in wrong.items():
        print(f"  {name}: {len(factors)} wrong picks"
              + (f", at worst {max(factors):.2f} x the faster" if factors else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="skip m = 20000 and the form check")
    ap.add_argument("--forms", action="store_true", help="only the form check (section 4)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000],
                    help="m for the form check")
    ap.add_argument("--one-core", action="store_true",
                    help="the form check on one thread, by CPU time (a shared machine)")
    args = ap.parse_args()
    compile_catlr()
    print(f"Machine: {machine()}")
    if args.forms:
        return forms(args.sizes, one_core=args.one_core)
    whole_process(args.runs)
    import h5py

    with h5py.File(COURSE / "train_catvnoncat.h5", "r") as f:
        cx, cy = f["train_set_x"][()], f["train_set_y"][()]
    sets = {"course (m = 209)": (cx.reshape(len(cx), -1), cy, 2000, 2000),
            "synthetic m = 2000": (*synthetic(2000), 2000, 100)}
    if not args.quick:
        sets["synthetic m = 20000"] = (*synthetic(20000), 10, 10)
    in_process(sets, 2000, 3)
    if not args.quick:
        primal_per_iteration(20000)
        forms(args.sizes, one_core=args.one_core)


if __name__ == "__main__":
    main()

"""Solvers: time to reach the training cost of the course's 2,000 gd iterations, at m = 20,000.

    python bench/solvers.py [--m 20000] [--rounds 3] [--gd-iters 40] [--target-iters 2000]
                            [--l2 0] [--dir DIR] [--only NAME ...]

A synthetic prepared file from the course's train images (scale.py's: flips, shifts,
noise), read once into memory. The target is the cost gd reaches after --target-iters
iterations at the course's lr 0.005 (float32, catlr's primal default; computed once and
kept in DIR). Then, for each solver, the fewest iterations whose iterate's cost is at or
below the target (found once, recording the cost at every iteration), and, in alternated
rounds in this one process, the time of a fit that runs exactly that many:
    gd          catlr --solver gd: timed over --gd-iters iterations and extrapolated to
                --target-iters (it needs all of them, by definition of the target)
    nesterov    catlr --solver nesterov, the same step, float32
    lbfgs       catlr --solver lbfgs (catlr's own L-BFGS, learn/lbfgs.py), float32 X
    lbfgs f64   the same on a float64 X
    lbfgs 1t    lbfgs with every BLAS library on one thread during L-BFGS's own vector
                work (its passes over X on as many as before): what catlr did around
                scipy's loop, to see whether it still pays
    scipy       scipy's L-BFGS-B (what --solver lbfgs was before it kept a state) over the
                same passes (design.gradient, float32 X), its own vector work on one BLAS
                thread as catlr ran it
    sklearn     scikit-learn's LogisticRegression(solver="lbfgs") on the float64 X, the
                same objective (C = 1 / l2, or C = inf without a penalty), max_iter as found
    sklearn 1t  the same with every BLAS library on one thread (threadpoolctl)
Ratios are of medians, to gd's time. The catlr fits run on a float X in memory (design.Dense,
what LogisticRegression.fit is given); `catlr train`'s memory engine now keeps the uint8
pixels and runs the fused pass instead (bench/stream_pass.py times one against the other),
which speeds every solver's passes alike.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
from common import compile_catlr, machine, median
from scale import synthetic_file


def fit(X_T, y, solver, iters, l2, every=None, on_event=None):
    from catlr import LogisticRegression
    from catlr.learn.design import Dense

    model = LogisticRegression(0.005, iters, every or iters, "primal", l2=l2, solver=solver)
    kw = {"on_event": on_event} if on_event else {}
    return model.fit_design(Dense(X_T), y, form="primal", **kw)


def cost(X, y, w, b, l2):
    """catlr's objective of (w, b) on X (m, n_x) in float64."""
    z = X @ np.asarray(w, np.float64).ravel() + b
    m = len(y)
    return float(np.mean(np.logaddexp(0, z) - y * z) + l2 / (2 * m) * float(w.ravel() @ w.ravel()))


class _Reached(Exception):
    pass


def first_below(X_T, y, solver, target, l2, most):
    """The fewest iterations of `solver` whose iterate's cost is <= target (costs recorded
    at every iteration, the run stopped there), or None within `most`."""
    from catlr.events import Step

    def on_event(e):
        if isinstance(e, Step) and e.cost is not None and e.cost <= target:
            raise _Reached(e.i)

    try:
        fit(X_T, y, solver, most, l2, every=1, on_event=on_event)
    except _Reached as e:
        return e.args[0]
    return None


def sklearn_fit(X, y, l2, iters, one_thread=False):
    from sklearn.linear_model import LogisticRegression as SK

    sk = SK(C=1 / l2 if l2 else np.inf, tol=0.0, max_iter=iters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "failed to converge": max_iter is the point
        if one_thread:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1, "blas"):
                return sk.fit(X, y)
        return sk.fit(X, y)


@contextlib.contextmanager
def _blas(threads):
    """Every BLAS library on `threads` threads (None: as they were)."""
    from threadpoolctl import ThreadpoolController

    libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    counts = [c.num_threads for c in libs]
    for c, n in zip(libs, counts):
        c.set_num_threads(threads or n)
    try:
        yield
    finally:
        for c, n in zip(libs, counts):
            c.set_num_threads(n)


def one_thread_vectors(run):
    """run() with L-BFGS's own vector work on one BLAS thread, its passes on as many as
    before (each evaluation restores them)."""
    from catlr.learn import descent, lbfgs

    real = lbfgs.iterate

    def iterate(evaluate, *args):
        def passes(x):
            with _blas(None):
                return evaluate(x)
        with _blas(1):
            return real(passes, *args)

    descent.lbfgs.iterate = iterate
    try:
        return run()
    finally:
        descent.lbfgs.iterate = real


def scipy_fit(X_T, y, iters, l2, target=None):
    """scipy's L-BFGS-B over catlr's passes, as --solver lbfgs ran before: with `target`,
    the fewest iterations whose iterate's cost is at or below it (None within iters)."""
    from scipy.optimize import minimize
    from threadpoolctl import ThreadpoolController

    from catlr.learn import lbfgs
    from catlr.learn.descent import _evaluation
    from catlr.learn.design import Dense
    from catlr.learn.loss import Objective

    design = Dense(X_T)
    design.objective = Objective(l2)
    evaluate = _evaluation(design, design.asarray(y), None, design.objective)
    libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    counts = [c.num_threads for c in libs]
    last, done = {}, []

    def fun(x):
        for c, n in zip(libs, counts):
            c.set_num_threads(n)
        try:
            last["f"], g = evaluate(x)
            return last["f"], g
        finally:
            for c in libs:
                c.set_num_threads(1)

    def callback(xk):
        done.append(last["f"])
        if target is not None and last["f"] <= target:
            raise _Reached(len(done))

    try:
        minimize(fun, np.zeros(design.n_x + 1), jac=True, method="L-BFGS-B", callback=callback,
                 options={"maxiter": iters, "maxfun": 10**9, "ftol": lbfgs.FTOL,
                          "gtol": lbfgs.GTOL, "maxcor": lbfgs.HISTORY})  # catlr's own
    except _Reached as e:
        return e.args[0]
    finally:
        for c, n in zip(libs, counts):
            c.set_num_threads(n)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gd-iters", type=int, default=40)
    ap.add_argument("--target-iters", type=int, default=2000)
    ap.add_argument("--l2", type=float, default=0.0)
    ap.add_argument("--dir", type=Path, default=None, help="keep the file and target here")
    ap.add_argument("--only", nargs="*", default=None, help="time only these (and gd)")
    args = ap.parse_args()
    compile_catlr()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="catlr-solvers-"))
    path = synthetic_file(folder, args.m)
    with h5py.File(path, "r") as f:
        pixels, y = f["train_set_x"][()], f["train_set_y"][()].astype(np.float64)
    from catlr.learn.design import normalize

    flat = pixels.reshape(len(pixels), -1)
    X32, X64 = normalize(flat, "float32"), normalize(flat, "float64")   # (m, n_x)
    del pixels, flat
    print(f"machine: {machine()}; load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"data: {path}, m = {args.m}, n_x = {X32.shape[1]}, l2 = {args.l2:g}")

    key = folder / f"target-{args.m}-{args.target_iters}-{args.l2:g}.json"
    if key.exists():
        target = json.loads(key.read_text())["cost"]
    else:
        t = time.perf_counter()
        gd = fit(X32.T, y, "gd", args.target_iters, args.l2)
        target = cost(X64, y, gd.w_, gd.b_, args.l2)
        key.write_text(json.dumps({"cost": target, "seconds": time.perf_counter() - t}))
    print(f"target: the cost after {args.target_iters} gd iterations, lr 0.005: {target:.6f}")

    wanted = set(args.only or ("nesterov", "lbfgs", "lbfgs f64", "lbfgs 1t", "scipy",
                               "sklearn", "sklearn 1t")) | {"gd"}
    most = args.target_iters
    found = {"nesterov": lambda: first_below(X32.T, y, "nesterov", target, args.l2, most),
             "lbfgs": lambda: first_below(X32.T, y, "lbfgs", target, args.l2, most),
             "lbfgs f64": lambda: first_below(X64.T, y, "lbfgs", target, args.l2, most),
             "scipy": lambda: scipy_fit(X32.T, y, most, args.l2, target)}
    iters = {name: find() for name, find in found.items()
             if name in wanted or name == "lbfgs" and "lbfgs 1t" in wanted}
    iters["lbfgs 1t"] = iters.get("lbfgs")
    if wanted & {"sklearn", "sklearn 1t"}:
        k = iters.get("lbfgs f64") or 1
        while cost(X64, y, *(lambda s: (s.coef_.ravel(), float(s.intercept_[0])))(
                sklearn_fit(X64, y, args.l2, k, one_thread=True)), args.l2) > target:
            k += 1
        iters["sklearn"] = iters["sklearn 1t"] = k
    print("iterations to the target: " + ", ".join(f"{n} {i}" for n, i in iters.items())
          + f"; gd {args.target_iters} (timed over {args.gd_iters}, extrapolated)")

    runs = {
        "gd": lambda: fit(X32.T, y, "gd", args.gd_iters, args.l2),
        "nesterov": lambda: fit(X32.T, y, "nesterov", iters["nesterov"], args.l2),
        "lbfgs": lambda: fit(X32.T, y, "lbfgs", iters["lbfgs"], args.l2),
        "lbfgs f64": lambda: fit(X64.T, y, "lbfgs", iters["lbfgs f64"], args.l2),
        "lbfgs 1t": lambda: one_thread_vectors(
            lambda: fit(X32.T, y, "lbfgs", iters["lbfgs 1t"], args.l2)),
        "scipy": lambda: scipy_fit(X32.T, y, iters["scipy"], args.l2),
        "sklearn": lambda: sklearn_fit(X64, y, args.l2, iters["sklearn"]),
        "sklearn 1t": lambda: sklearn_fit(X64, y, args.l2, iters["sklearn 1t"], True),
    }
    runs = {name: run for name, run in runs.items() if name in wanted}
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    scale = {"gd": args.target_iters / args.gd_iters}
    base = median(times["gd"]) * scale["gd"]
    print(f"\ntime to the target (median of {args.rounds} alternated rounds), ratio to gd's")
    for name, ts in times.items():
        seconds = median(ts) * scale.get(name, 1.0)
        note = " (extrapolated)" if name == "gd" else ""
        print(f"  {name:<11} {seconds:9.2f} s{note:<15} ratio {seconds / base:.4f}")

    def ratio(a, b):
        return (f"{median(times[a]) / median(times[b]):.3f}" if a in times and b in times
                else "-")

    print(f"  lbfgs / scipy: {ratio('lbfgs', 'scipy')}, lbfgs / lbfgs 1t: "
          f"{ratio('lbfgs', 'lbfgs 1t')}, lbfgs / sklearn: {ratio('lbfgs', 'sklearn')}, "
          f"lbfgs f64 / sklearn 1t: {ratio('lbfgs f64', 'sklearn 1t')}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())

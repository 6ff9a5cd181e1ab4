"""--solver gd | nesterov | lbfgs: with L2 every solver reaches scikit-learn's optimum;
nesterov is the plain loop of its algorithm written here; lbfgs records its costs on gd's
grid; every engine gives the same iterates; the CLI's refusals are one line each; without
L2 on the course's (separable) data a note says so."""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import COURSE, ROOT, dask_cluster, joined, needs_course, rel

SKLEARN = pytest.importorskip("sklearn.linear_model")


def _toy(seed=0, n_x=20, m=60):
    """A small problem that is not separable (labels drawn from a logistic model)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_x, m)) / 2
    w = rng.normal(size=n_x)
    Y = (rng.random(m) < 1 / (1 + np.exp(-(w @ X)))).astype(float).reshape(1, m)
    return X, Y


def _sklearn(X, Y, l2):
    """scikit-learn's optimum of catlr's objective: mean loss + l2 / (2m) |w|^2 is its
    0.5 |w|^2 + C sum(loss) with C = 1 / l2. Its BLAS on one thread (two spinning thread
    pools on two cores make it many times slower; the numbers are the same)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        sk = SKLEARN.LogisticRegression(C=1 / l2, tol=1e-14, max_iter=100_000).fit(X.T, Y.ravel())
    return sk.coef_.ravel(), float(sk.intercept_[0])


def _objective(X, Y, w, b, l2):
    z = w @ X + b
    m = X.shape[1]
    return float(np.mean(np.logaddexp(0, z) - Y.ravel() * z) + l2 / (2 * m) * w @ w)


def nesterov_loop(X, Y, lr, iters, l2=0.0, every=100, restart=True):
    """Nesterov's accelerated gradient as catlr documents it, written plainly: FISTA's
    momentum from an extrapolated point, restarted when the step opposes the move, the
    cost recorded at the iterate w (not the extrapolated point)."""
    n_x, m = X.shape
    y = Y.ravel()
    w, b = np.zeros(n_x), 0.0
    w_prev, b_prev, t, beta, costs = w.copy(), b, 1.0, 0.0, []
    for i in range(iters):
        if i % every == 0:
            costs.append(_objective(X, Y, w, b, l2))
        pw, pb = w + beta * (w - w_prev), b + beta * (b - b_prev)
        a = 1 / (1 + np.exp(-(pw @ X + pb)))
        nw = pw - lr * (X @ (a - y) / m + l2 / m * pw)
        nb = pb - lr * np.sum(a - y) / m
        against = restart and (pw - nw) @ (nw - w) + (pb - nb) * (nb - b) > 0
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        t, beta = (1.0, 0.0) if against else (t_next, (t - 1) / t_next)
        w_prev, b_prev, w, b = w, b, nw, nb
    return w, b, costs


def _fit(X, Y, solver, **kw):
    from catlr import LogisticRegression

    return LogisticRegression(form="primal", solver=solver, **kw).fit(X, Y)


# -- 1. the same optimum as scikit-learn, with L2 ------------------------------------------

@pytest.mark.parametrize("solver, iters, close", [("nesterov", 3_000, 1e-12), ("lbfgs", 500, 1e-7)])
def test_with_l2_every_solver_reaches_the_optimum_of_gd_run_long_and_scikit_learn(
        solver, iters, close):
    X, Y = _toy()
    w_sk, b_sk = _sklearn(X, Y, 1.0)
    gd = _fit(X, Y, "gd", lr=0.5, iters=20_000, l2=1.0)   # converged to float64's last bits
    model = _fit(X, Y, solver, lr=0.5, iters=iters, l2=1.0)
    # measured against gd: nesterov 4e-15 in w, 5e-16 in b; lbfgs 1.9e-8, 1.5e-8 (it ends
    # when the cost stops falling in float64, 1e-16 of it, and the cost is flat to second
    # order there: w is known to about the square root of that)
    assert rel(model.w_, gd.w_) <= close and abs(model.b_ - gd.b_) <= close
    # measured against scikit-learn (whose own rules stop it as early): gd and nesterov
    # 9.8e-8, lbfgs 1.1e-7 in w; 2e-8 and 3.6e-8 in b
    for fit in (gd, model):
        assert rel(fit.w_.ravel(), w_sk) <= 1e-6 and abs(fit.b_ - b_sk) <= 1e-6


def _scipy_lbfgs_b(X, Y, l2, callback=None, maxiter=2000):
    """scipy's L-BFGS-B on catlr's objective with catlr's rules (ftol, gtol, 10 pairs):
    the oracle of catlr's own L-BFGS (learn/lbfgs.py)."""
    from scipy.optimize import minimize

    from catlr.learn import lbfgs

    n_x, m = X.shape
    y = Y.ravel()

    def evaluate(x):
        w, b = x[:n_x], x[n_x]
        z = w @ X + b
        r = 1 / (1 + np.exp(-z)) - y
        return _objective(X, Y, w, b, l2), np.append(X @ r / m + l2 / m * w, r.sum() / m)

    return minimize(evaluate, np.zeros(n_x + 1), jac=True, method="L-BFGS-B", callback=callback,
                    options={"maxiter": maxiter, "maxfun": 10**9, "ftol": lbfgs.FTOL,
                             "gtol": lbfgs.GTOL, "maxcor": lbfgs.HISTORY})


@needs_course
def test_on_the_course_data_with_l2_lbfgs_reaches_scikit_learns_and_scipys_optimum(course):
    x, y = course["train"]
    X, Y = x.reshape(len(x), -1).T / 255.0, y.reshape(1, -1).astype(float)
    w_sk, b_sk = _sklearn(X, Y, 100.0)
    scipy = _scipy_lbfgs_b(X, Y, 100.0)
    model = _fit(X, Y, "lbfgs", iters=2000, l2=100.0, dtype="float64")
    assert model.iters_run_ < 2000   # it stops at the optimum
    w, b = model.w_.ravel(), model.b_
    # measured: 2.1e-7 in w and 1.8e-7 in b from scikit-learn's, 1.2e-7 and 2.7e-7 from
    # scipy's (which stops at 132 iterations, catlr at 134); the costs 1e-14 apart
    for w_o, b_o in ((w_sk, b_sk), (scipy.x[:-1], scipy.x[-1])):
        assert rel(w, w_o) <= 1e-6 and abs(b - b_o) <= 1e-6
        assert abs(_objective(X, Y, w, b, 100.0) - _objective(X, Y, w_o, b_o, 100.0)) <= 1e-10


def test_lbfgs_with_class_weights_reaches_scikit_learns_weighted_optimum():
    """The objective's per-example weights reach L-BFGS through the one update seam
    (design.gradient): scikit-learn's class_weight is the same objective."""
    from threadpoolctl import threadpool_limits

    X, Y = _toy(5)
    with threadpool_limits(1, "blas"):
        sk = SKLEARN.LogisticRegression(C=1 / 0.5, class_weight={0: 1.0, 1: 3.0}, tol=1e-14,
                                        max_iter=100_000).fit(X.T, Y.ravel())
    model = _fit(X, Y, "lbfgs", iters=500, l2=0.5, class_weight={0: 1.0, 1: 3.0})
    plain = _fit(X, Y, "lbfgs", iters=500, l2=0.5)
    # measured: 1.4e-7 in w, 4e-9 in b; the weights move the optimum by 0.19 of |w|
    assert rel(model.w_.ravel(), sk.coef_.ravel()) <= 1e-6
    assert abs(model.b_ - sk.intercept_[0]) <= 1e-6
    assert rel(plain.w_.ravel(), sk.coef_.ravel()) > 1e-2


@pytest.mark.parametrize("l2", [0.0, 0.1, 1.0])
def test_lbfgs_makes_the_iterates_of_scipys_l_bfgs_b(l2):
    """catlr's L-BFGS (two-loop recursion, More-Thuente's search with L-BFGS-B's rules) is
    scipy's L-BFGS-B without bounds: iterate by iterate, and it stops where scipy stops."""
    from catlr.learn.descent import Saver
    from catlr.learn.design import Dense

    X, Y = _toy(4)
    if not l2:   # separable: the cost goes to 0, and the gradient rule ends both
        X = X[:, :15]
        Y = Y[:, :15]
    theirs = []
    scipy = _scipy_lbfgs_b(X, Y, l2, callback=lambda xk: theirs.append(xk.copy()), maxiter=300)
    ours = {}   # the state at every iteration, as a checkpoint holds it (x = [w; b])
    from catlr import LogisticRegression

    model = LogisticRegression(iters=300, print_every=1, form="primal", l2=l2,
                               solver="lbfgs").fit_design(
        Dense(X), Y, form="primal",
        saver=Saver(lambda st: ours.setdefault(st["i"], np.append(st["w"], st["b"])), 0.0))
    assert model.iters_run_ == scipy.nit < 300 and len(theirs) == scipy.nit
    # the same arithmetic in another order (the compact form of L-BFGS-B, the two-loop
    # recursion here): measured 1e-16 to 1e-15 over the first 10 iterates, then up to 8e-11
    # with a penalty; without one the weights grow and the difference with them, to 1.4e-8
    # at the last iterate
    for i, x in enumerate(theirs, 1):
        assert rel(ours[i], x) <= (1e-14 if i <= 10 else 1e-7), i
    assert rel(np.append(model.w_.ravel(), model.b_), scipy.x) <= 1e-7
    assert _objective(X, Y, model.w_.ravel(), model.b_, l2) <= scipy.fun + 1e-15


@pytest.mark.slow
@needs_course
def test_on_the_course_data_with_l2_nesterov_reaches_scikit_learns_optimum(course):
    x, y = course["train"]
    X, Y = x.reshape(len(x), -1).T / 255.0, y.reshape(1, -1).astype(float)
    w_sk, b_sk = _sklearn(X, Y, 100.0)
    # below 1 / L (descent.largest_step is 2 / L = 0.0036 here): accelerated descent is
    # stable there, not at the course's 0.005; measured 3.4e-7 after 3,000 iterations
    model = _fit(X, Y, "nesterov", lr=0.0018, iters=3000, l2=100.0, dtype="float64")
    assert rel(model.w_.ravel(), w_sk) <= 1e-5 and abs(model.b_ - b_sk) <= 1e-5


# -- 2. nesterov is its algorithm, lbfgs's record ------------------------------------------

@pytest.mark.parametrize("l2", [0.0, 0.7])
def test_nesterov_is_the_plain_loop_of_its_algorithm(l2):
    X, Y = _toy(1)
    w, b, costs = nesterov_loop(X, Y, 0.8, 400, l2, every=10)
    model = _fit(X, Y, "nesterov", lr=0.8, iters=400, l2=l2, print_every=10)
    assert rel(model.w_.ravel(), w) <= 1e-12 and abs(model.b_ - b) <= 1e-12 * max(abs(b), 1)
    assert len(model.costs_) == 40 and rel(model.costs_, costs) <= 1e-12
    assert model.costs_[0] == pytest.approx(math.log(2), abs=1e-15)
    if l2:  # the restart acted here (else the test would not tell it from plain FISTA)
        fista, _, _ = nesterov_loop(X, Y, 0.8, 400, l2, every=10, restart=False)
        assert rel(fista, w) > 1e-6


@needs_course
def test_nesterov_on_the_course_data_is_the_plain_loop(course):
    x, y = course["train"]
    X, Y = x.reshape(len(x), -1).T / 255.0, y.reshape(1, -1).astype(float)
    w, b, costs = nesterov_loop(X, Y, 0.005, 300)
    model = _fit(X, Y, "nesterov", lr=0.005, iters=300, dtype="float64")
    assert rel(model.w_.ravel(), w) <= 1e-12 and abs(model.b_ - b) <= 1e-12 * abs(b)
    assert rel(model.costs_, costs) <= 1e-12 and len(costs) == 3
    # far faster than the course's descent on the same step
    gd = _fit(X, Y, "gd", lr=0.005, iters=300, dtype="float64")
    assert model.costs_[-1] < gd.costs_[-1] / 5


def test_lbfgs_records_the_cost_of_its_iterates_on_gds_grid():
    from catlr import LogisticRegression
    from catlr.events import Step

    X, Y = _toy(2)
    steps = []
    model = LogisticRegression(iters=25, print_every=5, l2=0.1, solver="lbfgs").fit(
        X, Y, on_event=lambda e: isinstance(e, Step) and steps.append(e))
    assert model.iters_run_ == 25 and len(model.costs_) == 5   # at 0, 5, ..., 20
    assert model.costs_[0] == pytest.approx(math.log(2), abs=1e-15)   # w = 0, b = 0
    for k, cost in enumerate(model.costs_[1:], 1):   # the iterate after 5k iterations
        at = _fit(X, Y, "lbfgs", iters=5 * k, l2=0.1)
        assert at.iters_run_ == 5 * k
        assert cost == pytest.approx(_objective(X, Y, at.w_.ravel(), at.b_, 0.1), abs=1e-14)
    assert all(a > b for a, b in zip(model.costs_, model.costs_[1:]))
    # a bar moves: Steps along the way, and the last at the total
    assert len(steps) >= 5 and steps[-1].i == steps[-1].iters == 25
    assert [s.cost for s in steps if s.cost is not None] == model.costs_


@pytest.mark.parametrize("solver, every", [("nesterov", 5), ("lbfgs", 1)])
def test_early_stopping_keeps_the_best_iterate(solver, every):
    from catlr import LogisticRegression
    from catlr.learn.descent import Held
    from catlr.learn.design import Dense

    rng = np.random.default_rng(0)
    w = rng.normal(size=30)   # 40 examples of 30 features drawn from a logistic model:
    X, Xv = rng.normal(size=(30, 40)) / 2, rng.normal(size=(30, 200)) / 2   # it overfits
    Y, Yv = ((rng.random(x.shape[1]) < 1 / (1 + np.exp(-(w @ x)))).astype(float)
             for x in (X, Xv))
    held = Held(Dense(Xv), Yv, "validation", patience=2)
    model = LogisticRegression(0.3, 3000, every, "primal", solver=solver).fit_design(
        Dense(X), Y, form="primal", held=held)
    assert model.stopped_ is not None and model.stopped_ < 3000
    best, best_cost = model.best_
    assert best > 0 and model.stopped_ == best + 2 * every
    assert len(model.held_costs_) == len(model.costs_) and min(model.held_costs_) == best_cost
    # the weights kept are the iterate at the best iteration: a run that ends there
    there = LogisticRegression(0.3, best, every, "primal", solver=solver).fit_design(
        Dense(X), Y, form="primal")
    assert np.array_equal(model.w_, there.w_) and model.b_ == there.b_


def test_the_library_refuses_the_dual_form_and_an_unknown_solver():
    from catlr import LogisticRegression
    from catlr.errors import ParameterError

    X, Y = _toy()
    with pytest.raises(ParameterError, match="lbfgs runs in the primal form"):
        LogisticRegression(form="dual", solver="lbfgs").fit(X, Y)
    with pytest.raises(ParameterError, match="solver must be one of gd, nesterov, lbfgs"):
        LogisticRegression(solver="adam").fit(X, Y)
    assert LogisticRegression(iters=5, solver="nesterov").fit(X, Y).form_ == "primal"


# -- 3. resume: nesterov's momentum goes to disk and back ----------------------------------

@pytest.mark.parametrize("solver", ["nesterov", "lbfgs"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_checkpoint_written_to_disk_resumes_bit_for_bit(tmp_path, dtype, solver):
    """Every state a run passes through (a checkpoint at every reported iteration: every
    iteration for lbfgs), written to disk and read back, goes on to the unbroken run's
    weights and costs, bit for bit: nesterov's momentum, L-BFGS's memory are in it."""
    from catlr import LogisticRegression
    from catlr.learn.descent import Saver, Start
    from catlr.learn.design import Dense
    from catlr.runs.state import load as load_state
    from catlr.runs.state import save as save_state

    X, Y = _toy(3)
    X = X.astype(dtype)
    every = 10 if solver == "nesterov" else 1

    def fit(**kw):
        return LogisticRegression(0.5, 150, every, "primal", l2=0.3, solver=solver).fit_design(
            Dense(X), Y, form="primal", **kw)

    whole = fit()
    paths = []

    def store(st):
        paths.append(tmp_path / f"{len(paths)}.npz")
        save_state(paths[-1], st, {"iters": 150})

    fit(saver=Saver(store, every=0.0))
    assert len(paths) >= 15
    pairs = []
    for path in paths:
        st, _ = load_state(path)
        assert st["solver"] == solver
        if solver == "nesterov":
            assert st["wp"].dtype == np.dtype(dtype)
            assert np.asarray(st["bp"]).dtype == np.asarray(st["b"]).dtype
        else:   # [w; b] in float64 whatever X is, and the memory in its order
            assert st["w"].dtype == np.float64 and st["lbfgs_s"].shape[1] == X.shape[0] + 1
            pairs.append(len(st["lbfgs_sy"]))
        rest = fit(start=Start(state=st, at=st["i"], history=st))
        assert np.array_equal(rest.w_, whole.w_) and rest.b_ == whole.b_, st["i"]
        assert rest.costs_ == whole.costs_
    if solver == "lbfgs":   # from an empty memory to a full one (it keeps 10 pairs)
        assert pairs[0] == 0 and max(pairs) == 10 and whole.iters_run_ < 150


def test_a_damaged_solver_state_is_one_line_naming_the_file(tmp_path):
    from catlr import LogisticRegression
    from catlr.errors import CatlrError
    from catlr.learn.descent import Saver
    from catlr.learn.design import Dense
    from catlr.runs.state import load as load_state
    from catlr.runs.state import save as save_state

    X, Y = _toy(3)
    states = {}
    for solver in ("nesterov", "lbfgs"):
        LogisticRegression(0.5, 40, 1, "primal", l2=0.3, solver=solver).fit_design(
            Dense(X), Y, form="primal",
            saver=Saver(lambda st, solver=solver: states.__setitem__(solver, st), every=0.0))
    nesterov, lbfgs = states["nesterov"], states["lbfgs"]
    assert len(lbfgs["lbfgs_sy"]) == 10
    n = X.shape[0] + 1
    damaged = {  # each refused in one line naming the field
        "nesterov's previous weights are missing": {**nesterov, "wp": None},
        f"lbfgs_s has shape (10, 5), expected (10, {n})": {
            **lbfgs, "lbfgs_s": lbfgs["lbfgs_s"][:, :5]},
        "lbfgs_sy holds 10 values, expected up to 10, each > 0": {
            **lbfgs, "lbfgs_sy": -lbfgs["lbfgs_sy"]},
        "lbfgs_sy holds 11 values, expected up to 10, each > 0": {
            **lbfgs, "lbfgs_s": np.ones((11, n)), "lbfgs_y": np.ones((11, n)),
            "lbfgs_sy": np.ones(11)},
        "lbfgs_g and lbfgs_f disagree": {**lbfgs, "lbfgs_g": None},
        "lbfgs_f is": {**lbfgs, "lbfgs_f": float("inf")},
        "w is float32, expected float64": {**lbfgs, "w": lbfgs["w"].astype(np.float32)},
        f"keep has shape (3,), expected ({n},)": {**lbfgs, "keep": (np.ones(3), 4)},
    }
    for words, state in damaged.items():
        path = tmp_path / "bad.npz"
        save_state(path, state, {"iters": 40})
        with pytest.raises(CatlrError) as e:
            load_state(path)
        assert str(e.value).startswith(f"{path} is not a state catlr can resume from")
        assert words.strip() in str(e.value) and "\n" not in str(e.value), str(e.value)


# -- 4. every engine -----------------------------------------------------------------------

def _train(cli, *args):
    code, out, err = cli(["train", *map(str, args), "--json"])
    assert code == 0, err
    return json.loads(out)


def _load(path):
    from catlr.runs.modelfile import load

    return load(path)


@needs_course
@pytest.mark.parametrize("solver, iters", [("lbfgs", 60), ("nesterov", 150)])
def test_memory_and_stream_engines_give_the_same_iterates(cli, solver, iters):
    flags = (COURSE, "--solver", solver, "--iters", iters, "--l2", "100", "--dtype", "float64",
             "--lr", "0.0018", "--print-every", "10")
    memory = _train(cli, *flags, "--name", "memory")
    stream = _train(cli, *flags, "--name", "stream", "--memory", "4MB")
    assert (memory["engine"], stream["engine"]) == ("memory", "stream")
    assert memory["form"] == stream["form"] == "primal" and memory["solver"] == solver
    a, _ = _load(memory["model"])
    b, _ = _load(stream["model"])
    # the stream engine sums the gradient a block at a time (another rounding), which
    # L-BFGS's steps carry on; measured: nesterov 1e-15, lbfgs 3.2e-9 in w
    assert rel(a.w_, b.w_) <= 1e-7 and abs(a.b_ - b.b_) <= 1e-7
    assert rel(a.costs_, b.costs_) <= 1e-12


@pytest.mark.slow
@needs_course
@pytest.mark.parametrize("solver, iters", [("lbfgs", 60), ("nesterov", 150)])
def test_the_dask_engine_gives_the_memory_engines_iterates(cli, tmp_path, solver, iters):
    flags = (COURSE, "--solver", solver, "--iters", iters, "--l2", "100", "--dtype", "float64",
             "--lr", "0.0018", "--print-every", "10")
    memory = _train(cli, *flags, "--name", "memory")
    with dask_cluster(tmp_path) as cluster:
        dask = _train(cli, *flags, "--name", "dask", "--engine", "dask",
                      "--scheduler", cluster.address)
    assert dask["engine"] == "dask"
    a, _ = _load(memory["model"])
    b, _ = _load(dask["model"])
    assert rel(a.w_, b.w_) <= 1e-7 and abs(a.b_ - b.b_) <= 1e-7
    assert rel(a.costs_, b.costs_) <= 1e-12


# -- 5. the command line -------------------------------------------------------------------

@needs_course
def test_train_with_lbfgs_from_the_command_line(cli):
    code, out, err = cli(["train", COURSE, "--solver", "lbfgs", "--l2", "100", "--name", "l"])
    assert code == 0, err
    assert "Cost after iteration 0: 0.693147" in out
    stop = [line for line in out.splitlines() if line.startswith("Note: L-BFGS stopped")]
    assert len(stop) == 1 and "of 2000 iterations" in stop[0], out
    assert "separable" not in out   # with a penalty there is an optimum
    model, meta = _load("runs/l/model.npz")
    assert meta["solver"] == meta["config"]["solver"] == "lbfgs"
    assert meta["form"] == "primal" and meta["dtype"] == "float32"
    assert f"Final cost (after iteration {meta['iters_run']}, the last)" in out
    assert meta["iters_run"] < 2000 and len(model.costs_) == meta["iters_run"] // 100 + 1
    assert out.count("Cost after iteration") == len(model.costs_)
    # its state is kept: a resume goes on as the same run, which stops where it stopped
    assert sorted(os.listdir("runs/l")) == ["config.toml", "costs.csv", "metrics.json",
                                            "model.npz", "state.npz"]
    code, again, err = cli(["train", "--resume", "runs/l", "--iters", "100"])
    assert code == 0, err
    assert [line for line in again.splitlines() if line.startswith("Note: L-BFGS")] == [
        stop[0].replace("of 2000", f"of {meta['iters_run'] + 100}")]
    more, _ = _load("runs/train-1/model.npz")
    assert np.array_equal(more.w_, model.w_) and more.b_ == model.b_
    assert more.costs_ == model.costs_
    code, out, err = cli(["runs"])
    assert "lbfgs l2 100" in out
    assert "lr -  iters 2000" in out, out  # no rate shown: L-BFGS took none
    code, out, err = cli(["inspect", "runs/l/model.npz"])
    assert any(line.split()[:2] == ["solver", "lbfgs"] for line in out.splitlines()), out


@needs_course
def test_without_l2_on_the_course_data_a_note_says_it_is_separable(cli):
    for solver, iters in (("lbfgs", 2000), ("nesterov", 300)):
        code, out, err = cli(["train", COURSE, "--solver", solver, "--iters", iters,
                              "--out", f"{solver}.npz"])
        assert code == 0, err
        notes = [line for line in joined(out).splitlines() if "separable" in line]
        assert notes == ["Note: the training set is separable (these weights classify every "
                         "training image correctly): without --l2 the cost goes to 0 and the "
                         "weights grow without bound, so more iterations only scale them "
                         "up; add a penalty such as --l2 1 for a model that converges"], out
        assert "train accuracy: 100.00%" in out
    code, out, err = cli(["train", COURSE, "--iters", "300", "--out", "gd.npz"])
    assert code == 0 and "Note:" not in out   # the course's run says what it always said


def test_solver_is_a_setting_of_train_sweep_and_config_files(cli, tmp_path, small_folder):
    from catlr.config import DEFAULTS, read_toml

    assert DEFAULTS["solver"] == "gd"
    assert read_toml(ROOT / "configs" / "default.toml")["solver"] == "gd"
    for command in ("train", "sweep"):
        code, out, err = cli([command, "--help"])
        training = out[out.index("Training (the course's settings)"):]
        assert "--solver" in training.split("\n\n")[0], out
    code, out, err = cli(["train", small_folder, "--solver", "adam"])
    assert code == 2 and err == ("Error: --solver must be one of gd, nesterov, lbfgs, got "
                                 "'adam'\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text('solver = "newton"\n')
    code, out, err = cli(["train", small_folder, "--config", cfg])
    assert code == 1 and "solver must be one of gd, nesterov, lbfgs" in err
    cfg.write_text('solver = "nesterov"\niters = 40\nsize = 16\n')
    code, out, err = cli(["train", small_folder, "--config", cfg, "--json"])
    assert code == 0, err
    assert json.loads(out)["solver"] == "nesterov"
    code, out, err = cli(["sweep", small_folder, "--solver", "lbfgs", "--l2", "1", "--l2",
                          "10", "--iters", "30", "--size", "16", "--json"])
    assert code == 0, err
    rows = json.loads(out)
    assert [r["l2"] for r in rows] == [1.0, 10.0] and {r["solver"] for r in rows} == {"lbfgs"}


def test_what_lbfgs_cannot_do_is_refused_in_one_line(cli, small_folder):
    for flags, words in ((["--form", "dual"], "--solver lbfgs runs in the primal form only, "
                                              "not --form dual"),
                         (["--lr", "auto", "--val-fraction", "0.2"],
                          "--lr auto chooses gradient descent's step")):
        code, out, err = cli(["train", small_folder, "--solver", "lbfgs", *flags])
        assert code == 2 and err.count("\n") == 1 and words in err, err
    code, out, err = cli(["train", small_folder, "--solver", "nesterov", "--form", "dual"])
    assert code == 2 and "--solver nesterov runs in the primal form only" in err
    assert not os.path.exists("runs")


BLOCKED = textwrap.dedent("""
    import sys
    sys.modules["scipy"] = None   # as if scipy were not installed
    sys.argv = ["catlr", *sys.argv[1:]]
    from catlr.entry import main
    main()
""")


def test_lbfgs_needs_no_scipy(tmp_path, small_folder):
    """L-BFGS is catlr's own (learn/lbfgs.py), so that its state can be saved: it runs,
    checkpoints and resumes where scipy cannot be imported."""
    for args in (["train", small_folder, "--solver", "lbfgs", "--l2", "1", "--iters", "30",
                  "--size", "16", "--name", "l", "--checkpoint-every", "0"],
                 ["train", "--resume", "runs/l", "--iters", "5"]):
        p = subprocess.run([sys.executable, "-c", BLOCKED, *map(str, args)], capture_output=True,
                           text=True, cwd=tmp_path, timeout=120)
        assert p.returncode == 0 and "Saved the run in runs/" in p.stdout, p.stderr
    assert sorted(os.listdir(tmp_path / "runs")) == ["l", "train-1"]


def test_a_nesterov_run_whose_cost_rose_is_told_a_rate_under_one_over_l():
    from catlr import LogisticRegression
    from catlr.learn.descent import largest_step
    from catlr.learn.design import Dense
    from catlr.stages.train import _largest

    X, _ = _toy()
    design = Dense(X)
    top = largest_step(design)   # 2 / L: gd's limit
    assert _largest(design, LogisticRegression(solver="gd")) == top
    assert _largest(design, LogisticRegression(solver="nesterov")) == top / 2   # 1 / L


@needs_course
def test_the_suggested_rate_is_two_over_l_found_in_a_few_passes(course):
    """descent.largest_step: 2 / L with L = lambda_max([X; 1] [X; 1].T) / (4m), against
    NumPy's eigvalsh, on the course's images as floats, pixels in memory and streamed from
    the course's file, to 1e-6 (the rate suggested is rounded down to 1, 2 or 5 times a
    power of ten); the power iteration stops once its estimate settles (4 passes at most
    here), each one pass over X (design.normal)."""
    from catlr.engines.stream import Stream
    from catlr.files.containers import open_container
    from catlr.learn.descent import largest_step
    from catlr.learn.design import Dense, Pixels
    from catlr.learn.loss import Objective

    x, y = course["train"]
    X = x.reshape(len(x), -1).T / 255.0
    m = X.shape[1]
    ones = np.ones((1, m))
    top = np.linalg.eigvalsh(X.T @ X + ones.T @ ones)[-1]  # [X; 1].T [X; 1]: the same top
    with open_container(COURSE / "train_catvnoncat.h5") as c:
        designs = {"floats": Dense(X), "pixels": Pixels(x, "float32"),
                   "stream": Stream(c.pixels("train_set_x"), "float32", block_bytes=1 << 20)}
        for name, design in designs.items():
            passes, normal = [], design.normal
            design.normal = lambda w, b, normal=normal: passes.append(1) or normal(w, b)
            got = largest_step(design)
            assert abs(got - 2 / (top / (4 * m))) <= 1e-6 * got and len(passes) <= 4, name
            penalized = largest_step(design, Objective(l2=3.0, class_weight={0: 1, 1: 2.5}))
            assert abs(penalized - 2 / (2.5 * top / (4 * m) + 3.0 / m)) <= 1e-6 * penalized

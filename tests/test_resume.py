"""Going on where a run stopped: warm starts in both forms, `train --resume` that gives
one longer run's weights bit for bit, checkpoints that survive SIGKILL and are never
half-written, signals that save before stopping, and refusals that keep a resume the
same run."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import COURSE, dask_cluster, needs_course, rel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _loop_from(X, Y, w, b, lr, iters, l2=0.0, every=100):
    """The course's loop written plainly, from a given w (n_x, 1) and b, with course 2's
    L2 penalty l2 / (2m) |w|^2: the oracle for warm starts."""
    m = X.shape[1]
    costs = []
    for i in range(iters):
        A = 1 / (1 + np.exp(-(w.T @ X + b)))
        if i % every == 0:
            costs.append(float(-np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
                               + l2 / (2 * m) * float(np.sum(w * w))))
        dw = X @ (A - Y).T / m + l2 / m * w
        db = np.sum(A - Y) / m
        w, b = w - lr * dw, b - lr * db
    return w, float(b), costs


def _toy(seed=0, n_x=40, m=30):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_x, m)) / 4
    Y = (rng.random((1, m)) < 0.5).astype(float)
    return X, Y, rng.normal(size=(n_x, 1)) / 3, float(rng.normal())


# -- 1. warm start in the library ---------------------------------------------------------

@pytest.mark.parametrize("form", ["primal", "dual"])
@pytest.mark.parametrize("l2", [0.0, 0.7])
def test_a_warm_start_is_the_course_loop_from_w0_b0(form, l2):
    from catlr import LogisticRegression

    X, Y, w0, b0 = _toy()
    model = LogisticRegression(lr=0.3, iters=400, form=form, l2=l2).fit(X, Y, w0=w0, b0=b0)
    w, b, costs = _loop_from(X, Y, w0, b0, 0.3, 400, l2)
    assert model.form_ == form
    assert rel(model.w_, w) <= 1e-12 and abs(model.b_ - b) <= 1e-12 * max(abs(b), 1)
    assert rel(model.costs_, costs) <= 1e-12
    assert rel(model.train_z_, (w.T @ X + b).ravel()) <= 1e-12


def test_a_warm_start_takes_either_shape_and_refuses_a_wrong_one():
    from catlr import LogisticRegression
    from catlr.errors import ParameterError

    X, Y, w0, b0 = _toy()
    a = LogisticRegression(iters=50, form="primal").fit(X, Y, w0=w0, b0=b0)
    b = LogisticRegression(iters=50, form="primal").fit(X, Y, w0=w0.ravel(), b0=b0)
    assert np.array_equal(a.w_, b.w_) and a.b_ == b.b_
    with pytest.raises(ParameterError, match="w0 has 39 weights, expected 40"):
        LogisticRegression(iters=5).fit(X, Y, w0=w0[:-1])


def test_w0_of_zeros_is_the_course_start():
    from catlr import LogisticRegression

    X, Y, _, _ = _toy()
    cold = LogisticRegression(iters=120, form="primal").fit(X, Y)
    warm = LogisticRegression(iters=120, form="primal").fit(X, Y, w0=np.zeros((40, 1)), b0=0.0)
    assert np.array_equal(cold.w_, warm.w_) and cold.b_ == warm.b_


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_a_finished_fit_goes_on_from_its_state_bit_for_bit(form):
    from catlr import LogisticRegression
    from catlr.learn.descent import Start
    from catlr.learn.design import Dense

    X, Y, _, _ = _toy(1)
    whole = LogisticRegression(lr=0.2, iters=300, form=form).fit(X, Y)
    half = LogisticRegression(lr=0.2, iters=200, form=form).fit(X, Y)
    st = half.state_
    rest = LogisticRegression(lr=0.2, iters=300, form=form).fit_design(
        Dense(X), Y, form=form, start=Start(state=st, at=st["i"], history=st))
    assert np.array_equal(rest.w_, whole.w_) and rest.b_ == whole.b_
    assert rest.costs_ == whole.costs_


@pytest.mark.parametrize("form, solver", [("primal", "gd"), ("dual", "gd"),
                                          ("primal", "nesterov"), ("primal", "lbfgs")])
def test_a_checkpoint_at_any_reported_iteration_resumes_bit_for_bit(form, solver):
    # every checkpoint a run could write (a Saver due at every reported iteration), the
    # recorded ones included: resumed from each, the costs and weights are the whole run's
    from catlr import LogisticRegression
    from catlr.learn.descent import Saver, Start
    from catlr.learn.design import Dense

    X, Y, _, _ = _toy(2)
    whole = LogisticRegression(lr=0.2, iters=120, print_every=10, form=form,
                               solver=solver).fit(X, Y)
    import copy

    kept = []
    saver = Saver(lambda st: kept.append(copy.deepcopy(st)), every=0.0)  # as written to disk
    LogisticRegression(lr=0.2, iters=120, print_every=10, form=form, solver=solver).fit_design(
        Dense(X), Y, form=form, saver=saver)
    # (L-BFGS reaches this problem's optimum in 34 iterations)
    assert {st["i"] for st in kept} >= ({0, 10, 20, 30} if solver == "lbfgs" else {0, 10, 50, 100})
    if solver == "nesterov":  # the momentum is in each checkpoint
        assert all({"wp", "bp", "t", "beta"} <= set(st) for st in kept)
    if solver == "lbfgs":  # and L-BFGS's memory
        assert all({"lbfgs_g", "lbfgs_s", "lbfgs_y", "lbfgs_sy"} <= set(st) for st in kept)
    for st in kept:
        rest = LogisticRegression(lr=0.2, iters=120, print_every=10, form=form,
                                  solver=solver).fit_design(
            Dense(X), Y, form=form, start=Start(state=st, at=st["i"], history=st))
        assert np.array_equal(rest.w_, whole.w_) and rest.b_ == whole.b_, st["i"]
        assert rest.costs_ == whole.costs_, st["i"]


# -- 2. catlr train --resume ---------------------------------------------------------------

def _load(path):
    from catlr.runs.modelfile import load

    return load(path)


def _train(cli, *args):
    code, out, err = cli(["train", *map(str, args), "--json"])
    assert code == 0, err
    return json.loads(out)


ENGINES = {"primal": ("--form", "primal", "--dtype", "float64"),
           "dual": ("--form", "dual"),
           "stream": ("--form", "primal", "--dtype", "float64", "--memory", "4MB"),
           "nesterov": ("--solver", "nesterov"),   # primal, float32: its momentum is kept
           "nesterov-stream": ("--solver", "nesterov", "--memory", "4MB"),
           # L-BFGS's memory is kept (with --l2 1 it runs 596 iterations to its optimum)
           "lbfgs": ("--solver", "lbfgs", "--l2", "1", "--dtype", "float64"),
           "lbfgs-stream": ("--solver", "lbfgs", "--l2", "1", "--dtype", "float64", "--memory",
                            "4MB")}


@needs_course
@pytest.mark.parametrize("how", list(ENGINES))
def test_two_thousand_then_a_thousand_more_is_one_run_of_three_thousand(cli, how):
    flags = ENGINES[how]
    first = _train(cli, COURSE, "--iters", "200", "--name", "first", *flags)
    assert first["engine"] == ("stream" if how.endswith("stream") else "memory")
    more = _train(cli, "--resume", "runs/first", "--iters", "100")
    whole = _train(cli, COURSE, "--iters", "300", "--name", "whole", *flags)
    a, meta = _load(more["model"])
    b, _ = _load(whole["model"])
    # the solver's own state is kept: the same arithmetic in the same order, bit for bit
    assert np.array_equal(a.w_, b.w_) and a.b_ == b.b_, rel(a.w_, b.w_)
    assert a.costs_ == b.costs_ and len(a.costs_) == 3
    assert more["final_cost"] == whole["final_cost"]
    assert meta["parent"] == {"run": "first", "at": 200} and meta["iters"] == 300
    assert meta["engine"] == first["engine"] and meta["form"] == first["form"]
    assert os.path.basename(os.path.dirname(more["model"])) == "train-1"
    with open("runs/train-1/costs.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == \
            ["0", "100", "200", "300"]


@needs_course
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_a_run_whose_state_is_gone_resumes_from_its_weights(cli, form):
    _train(cli, COURSE, "--iters", "200", "--name", "first", "--form", form, "--dtype", "float64")
    os.remove("runs/first/state.npz")
    more = _train(cli, "--resume", "first", "--iters", "100")
    whole = _train(cli, COURSE, "--iters", "300", "--name", "whole", "--form", form,
                   "--dtype", "float64")
    a, _ = _load(more["model"])
    b, _ = _load(whole["model"])
    # a warm start from the saved w, b: the same iterates up to rounding
    assert rel(a.w_, b.w_) <= 1e-12 and abs(a.b_ - b.b_) <= 1e-12 * abs(b.b_)
    assert rel(a.costs_, b.costs_) <= 1e-12


@needs_course
def test_a_resume_refuses_other_data_and_other_settings(cli, tmp_path):
    from catlr.config import DEFAULTS
    from catlr.stages.demo import make_sample
    from catlr.stages.prepare import prepare

    _train(cli, COURSE, "--iters", "20", "--name", "first")
    code, out, err = cli(["train", "--resume", "runs/first", "--iters", "5", "--lr", "0.01"])
    assert code == 2 and err.count("\n") == 1
    assert "--lr 0.01 contradicts runs/first (lr 0.005)" in err
    code, out, err = cli(["train", "--resume", "runs/first"])
    assert code == 2 and "is complete (20 iterations): pass --iters N" in err
    sample = make_sample(tmp_path / "s", n_per_class=6, unseen=0)["images"]
    other = tmp_path / "other.h5"
    prepare(sample, other, {**DEFAULTS})
    code, out, err = cli(["train", other, "--resume", "runs/first", "--iters", "5"])
    assert code == 1 and err.count("\n") == 1 and "its fingerprint differs" in err
    code, out, err = cli(["train", "--resume", "runs/nothing", "--iters", "5"])
    assert code == 1 and "runs/nothing is not a run folder" in err
    assert sorted(os.listdir("runs")) == ["first"]  # nothing half-made was left


@needs_course
def test_runs_shows_the_lineage(cli):
    _train(cli, COURSE, "--iters", "20", "--name", "first")
    _train(cli, "--resume", "runs/first", "--iters", "10", "--name", "second")
    code, out, err = cli(["runs", "--json"])
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["second"]["parent"] == {"run": "first", "at": 20}
    assert rows["second"]["iters"] == 30 and rows["first"].get("parent") is None
    code, out, err = cli(["runs"])
    assert code == 0 and "from first@20" in out


# -- 3. checkpoints ------------------------------------------------------------------------

def _spawn(args, cwd):
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.Popen([sys.executable, "-m", "catlr", *map(str, args)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _wait_for(path, p, seconds=60):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert p.poll() is None, p.stderr.read().decode()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


@pytest.mark.slow
@needs_course
def test_a_run_killed_with_sigkill_resumes_to_the_unbroken_run(cli, tmp_path):
    flags = ("--form", "primal", "--dtype", "float64", "--iters", "2000")
    p = _spawn(["train", COURSE, *flags, "--name", "k", "--checkpoint-every", "0.2"], tmp_path)
    try:
        _wait_for(tmp_path / "runs/k/checkpoint.npz", p)
        time.sleep(0.3)
        p.kill()   # no handler runs: only what the checkpoint holds is left
    finally:
        p.kill()
        p.wait(30)
    from catlr.runs.state import load as load_state

    state, info = load_state(tmp_path / "runs/k/checkpoint.npz")
    assert 0 < state["i"] < 2000 and info["iters"] == 2000
    os.chdir(tmp_path)
    code, out, err = cli(["runs"])
    assert f"interrupted at {state['i']} of 2000" in out
    resumed = _train(cli, "--resume", "runs/k")  # no --iters: completes what was asked
    whole = _train(cli, COURSE, *flags, "--name", "whole")
    a, meta = _load(resumed["model"])
    b, _ = _load(whole["model"])
    assert resumed["model"] == os.path.join("runs", "k", "model.npz")
    assert np.array_equal(a.w_, b.w_) and a.b_ == b.b_ and a.costs_ == b.costs_
    assert meta["iters"] == 2000 and len(a.costs_) == 20
    # complete: its own state for a later resume, no checkpoint and no temporaries left
    assert sorted(os.listdir("runs/k")) == ["config.toml", "costs.csv", "metrics.json",
                                            "model.npz", "state.npz"]


@pytest.mark.slow
@needs_course
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "Interrupted"),
                                             (signal.SIGTERM, 143, "Terminated")])
def test_ctrl_c_and_sigterm_save_a_checkpoint_first(cli, tmp_path, sig, code, word):
    p = _spawn(["train", COURSE, "--form", "primal", "--iters", "100000", "--name", "s"],
               tmp_path)
    try:
        _wait_for(tmp_path / "runs" / "s", p)
        time.sleep(1.0)   # well inside the loop (the checkpoint interval is 60 s)
        p.send_signal(sig)
        err = p.communicate(timeout=60)[1].decode()
    finally:
        p.kill()
        p.wait(30)
    assert p.returncode == code, err
    from catlr.runs.state import load as load_state

    at = load_state(tmp_path / "runs/s/checkpoint.npz")[0]["i"]
    assert err == (f"{word}: stopped; its checkpoint (iteration {at}) is in runs/s/, go on with "
                   "'catlr train --resume runs/s'\n")
    assert os.listdir(tmp_path / "runs/s") == ["checkpoint.npz"]
    os.chdir(tmp_path)
    code, out, err = cli(["train", "--resume", "runs/s", "--iters", "50", "--json"])
    assert code == 0, err
    meta = json.loads(out)
    assert meta["iters"] == at + 50 and meta["model"] == os.path.join("runs", "s", "model.npz")


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from catlr import runs
    folder, n = sys.argv[1], int(sys.argv[2])
    i = 0
    while True:
        snap = {"form": "primal", "w": np.full(n, float(i)), "b": float(i), "i": i,
                "keep": None, "costs": [float(i)], "trace": [], "held_costs": [],
                "best": None, "since": 0}
        runs.write_checkpoint(folder, snap, {"iters": 10**6})
        if i == 0:
            print("ready", flush=True)
        i += 1
""")


@pytest.mark.slow
def test_a_checkpoint_is_never_half_written(tmp_path):
    """Kill a process that does nothing but write checkpoints (each a few tens of MB), at
    random moments: the checkpoint is always one whole write, never a mix or a torn file."""
    from catlr.runs.state import load as load_state

    folder = tmp_path / "run"
    folder.mkdir()
    rng, torn = random.Random(0), 0
    for _ in range(6):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(3_000_000)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            assert p.stdout.readline() == b"ready\n", p.stderr.read().decode()
            time.sleep(rng.uniform(0.05, 0.6))
            p.kill()
        finally:
            p.kill()
            p.wait(30)
        torn += any(n.endswith(".tmp") for n in os.listdir(folder))  # killed mid-write
        state, info = load_state(folder / "checkpoint.npz")
        i = state["i"]
        assert np.array_equal(state["w"], np.full(3_000_000, float(i)))
        assert state["b"] == i and state["costs"] == [float(i)] and info["iters"] == 10**6
    assert torn >= 1  # at least one kill landed during a write (nearly all do)


def test_a_finished_run_leaves_no_checkpoint(small_folder):
    from catlr.config import DEFAULTS
    from catlr.events import Wrote
    from catlr.stages.train import train

    wrote = []
    cfg = {**DEFAULTS, "iters": 3000, "checkpoint_every": 1e-9, "form": "primal", "size": 16}
    model, meta, saved = train(small_folder, cfg, on_event=lambda e: isinstance(e, Wrote)
                               and wrote.append(e.path))
    checkpoints = [p for p in wrote if p.endswith("checkpoint.npz")]
    assert len(checkpoints) >= 3   # it did write them during the run
    assert sorted(os.listdir(saved.folder)) == ["config.toml", "costs.csv", "metrics.json",
                                                "model.npz", "state.npz"]


def test_checkpoint_every_is_checked_and_in_the_help(cli):
    code, out, err = cli(["train", "--help"])
    assert "--checkpoint-every" in out and "--resume" in out
    code, out, err = cli(["train", ".", "--checkpoint-every", "-1"])
    assert code == 2 and "must be a number of seconds >= 0" in err


# -- 3b. the Dask engine: a client killed and resumed against the same cluster -----------

@pytest.fixture
def cluster(tmp_path):
    """A real Dask scheduler and two workers, each its own process on loopback."""
    with dask_cluster(tmp_path) as c:
        yield c.address


@pytest.mark.slow
@needs_course
def test_a_dask_client_killed_and_resumed_on_the_same_cluster(cli, tmp_path, cluster):
    flags = ("--engine", "dask", "--scheduler", cluster, "--dtype", "float64",
             "--iters", "200", "--print-every", "20")
    p = _spawn(["train", COURSE, *flags, "--name", "d",
                "--checkpoint-every", "0.1"], tmp_path)
    try:
        _wait_for(tmp_path / "runs/d/checkpoint.npz", p, 120)
        time.sleep(0.3)
        p.kill()
    finally:
        p.kill()
        p.wait(30)
    os.chdir(tmp_path)
    resumed = _train(cli, "--resume", "runs/d")
    whole = _train(cli, COURSE, *flags, "--name", "whole")
    a, meta = _load(resumed["model"])
    b, _ = _load(whole["model"])
    assert meta["engine"] == "dask" and meta["iters"] == 200
    assert rel(a.w_, b.w_) <= 1e-12 and abs(a.b_ - b.b_) <= 1e-12 * abs(b.b_)
    assert rel(a.costs_, b.costs_) <= 1e-12


@pytest.mark.slow
def test_an_ignored_sighup_stays_ignored_as_under_nohup(tmp_path, small_folder):
    # nohup sets SIGHUP to SIG_IGN: the run must outlive its terminal, checkpoints or not
    p = subprocess.Popen([sys.executable, "-m", "catlr", "train", small_folder, "--iters",
                          "10000000", "--form", "primal", "--name", "n",
                          "--checkpoint-every", "0.2"],
                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        _wait_for(tmp_path / "runs/n/checkpoint.npz", p, 120)
        p.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=60)[1].decode()
    finally:
        p.kill()
        p.wait(30)
    assert p.returncode == 130 and err.startswith("Interrupted: stopped; its checkpoint"), err

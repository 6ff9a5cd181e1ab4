"""Nothing lost, whatever stops a run (issue 28): for each cause (Ctrl-C, SIGTERM, SIGHUP,
SIGKILL, a Dask scheduler lost, a disk that fills) and each solver (gd, nesterov, lbfgs), a
real `python -m catlr train` is stopped; what it leaves is one line and a checkpoint of its
last complete iteration (SIGKILL: of the last periodic one), and going on from it gives the
unbroken run's weights, bias and costs bit for bit. Every run is bounded in time, and every
process a test starts is stopped by it."""

import contextlib
import errno
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import COURSE, dask_cluster, needs_course

# gd runs in the dual form here (the planner's choice for the course's 209 images), nesterov
# and lbfgs in the primal; lbfgs in float64 with --l2 1 runs 596 iterations to its optimum:
# long enough to be stopped on the way (in float32 its line search ends it at 170)
# gd's form pinned: for an unbroken run's fewer iterations the planner may pick another
SOLVERS = {"gd": ("--form", "dual"), "nesterov": ("--solver", "nesterov"),
           "lbfgs": ("--solver", "lbfgs", "--dtype", "float64")}
COMMON = ("--l2", "1", "--print-every", "10")
SECONDS = 180   # any one catlr run here
MORE = 30       # iterations a resume goes on for


class _Run:
    """`python -m catlr ARGS` in its own process (under `prefix`, a command such as
    unshare), its output read as it comes."""

    def __init__(self, args, cwd, prefix=()):
        # a session of its own: stop() ends whatever it started (under a prefix's shell too)
        self.p = subprocess.Popen([*prefix, sys.executable, "-m", "catlr", *map(str, args)],
                                  cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
        self.lines, self.out = queue.Queue(), []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.out.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def until(self, start, seconds=SECONDS):
        """Wait for a line of stdout that starts with `start`."""
        while True:
            try:
                line = self.lines.get(timeout=seconds)
            except queue.Empty:
                pytest.fail(f"no line {start!r} within {seconds} s: {''.join(self.out)}")
            if line is None:
                pytest.fail(f"catlr ended before {start!r}: {''.join(self.out)}"
                            f"{self.p.stderr.read()}")
            if line.startswith(start):
                return

    def finish(self, seconds=SECONDS):
        try:
            err = self.p.stderr.read() if self.p.wait(seconds) is not None else ""
        except subprocess.TimeoutExpired:
            pytest.fail("catlr did not end")
        return self.p.returncode, "".join(self.out), err

    def stop(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGKILL)   # its group: the one it leads
        self.p.wait(30)


@contextlib.contextmanager
def _running(args, cwd, prefix=()):
    run = _Run(args, cwd, prefix)
    try:
        yield run
    finally:
        run.stop()


def _checkpoint(folder, missing=None):
    """The iteration the run's checkpoint holds (`missing` when it has none yet)."""
    from catlr.runs.state import load as load_state

    path = os.path.join(folder, "checkpoint.npz")
    if missing is not None and not os.path.exists(path):
        return missing
    return load_state(path)[0]["i"]


def _said(k, name="s"):
    return (f"stopped; its checkpoint (iteration {k}) is in runs/{name}/, go on with "
            f"'catlr train --resume runs/{name}'")


def _goes_on_as_unbroken(cli, folder, flags, k, resume=()):
    """From `folder` (a run stopped at iteration k, under the cwd's runs/): MORE iterations
    further, and the unbroken run of k + MORE iterations: the same model, bit for bit."""
    code, out, err = cli(["train", "--resume", folder, "--iters", MORE, *resume])
    assert code == 0, err
    code, out, err = cli(["train", COURSE, *flags, "--iters", k + MORE, "--name", "unbroken"])
    assert code == 0, err
    a, b = (np.load(os.path.join("runs", n, "model.npz")) for n in (folder, "unbroken"))
    assert np.array_equal(a["w"], b["w"]) and a["b"] == b["b"]
    assert np.array_equal(a["costs"], b["costs"]) and len(a["costs"]) > k // 10
    assert not os.path.exists(os.path.join("runs", folder, "checkpoint.npz"))  # complete now


# -- Ctrl-C, SIGTERM, SIGHUP, SIGKILL --------------------------------------------------------

@pytest.mark.slow
@needs_course
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("cause, code, word", [("SIGINT", 130, "Interrupted"),
                                               ("SIGTERM", 143, "Terminated"),
                                               ("SIGHUP", 129, "Terminated"),
                                               ("SIGKILL", -9, None)])
def test_a_signal_leaves_a_checkpoint_that_goes_on_as_the_unbroken_run(cli, tmp_path, cause,
                                                                        code, word, solver):
    flags = (*SOLVERS[solver], *COMMON)
    # a signal saves where the run is; SIGKILL cannot be caught: a checkpoint every 0.2 s
    every = ("--checkpoint-every", "0.2") if word is None else ()
    with _running(["train", COURSE, *flags, "--iters", 100_000, "--name", "s", *every],
                  tmp_path) as run:
        run.until("Cost after iteration 10:")   # well inside the loop
        while word is None and not _checkpoint(tmp_path / "runs/s", missing=0) > 10:
            assert run.p.poll() is None   # (a checkpoint is replaced whole: never torn)
        run.p.send_signal(getattr(signal, cause))
        got, out, err = run.finish()
    k = _checkpoint(tmp_path / "runs/s")
    assert got == code, err
    if word is None:
        assert err == "" and k > 10   # the last periodic checkpoint
    else:  # the iteration the signal found, after iteration 10's record
        assert err == f"{word}: {_said(k)}\n" and k > 10
        assert os.listdir(tmp_path / "runs/s") == ["checkpoint.npz"]
    assert "L-BFGS stopped" not in out   # it was stopped on its way, not at its optimum
    os.chdir(tmp_path)
    _goes_on_as_unbroken(cli, "s", flags, k)


# -- a Dask scheduler lost ---------------------------------------------------------------

@pytest.mark.slow
@needs_course
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_a_lost_scheduler_leaves_a_checkpoint_of_the_last_iteration(cli, tmp_path, solver):
    pytest.importorskip("distributed")
    flags = (*(f for f in SOLVERS[solver] if solver != "gd"), *COMMON, "--engine", "dask",
             "--form", "primal")
    with dask_cluster(tmp_path, workers=2) as cluster:
        # before the first periodic checkpoint (every 60 s by default): none was written
        with _running(["train", COURSE, *flags, "--scheduler", cluster.address,
                       "--iters", 100_000, "--name", "s"], tmp_path) as run:
            run.until("Cost after iteration 10:")
            assert not (tmp_path / "runs/s/checkpoint.npz").exists()
            cluster.scheduler.kill()
            got, out, err = run.finish()
    k = _checkpoint(tmp_path / "runs/s")
    assert got == 1 and k >= 10, err
    # the iteration it was lost at is the one its checkpoint holds
    assert re.fullmatch(rf"Error: the Dask scheduler at {re.escape(cluster.address)} was lost "
                        rf"at iteration {k} \(\w+\): {re.escape(_said(k))}\n", err), err
    os.chdir(tmp_path)
    with dask_cluster(tmp_path, workers=2) as cluster:   # a new cluster
        where = ("--scheduler", cluster.address)
        _goes_on_as_unbroken(cli, "s", (*flags, *where), k, resume=where)


# -- a disk that fills ---------------------------------------------------------------------

def _filling_disk(folder, keep):
    """A command prefix: catlr runs in a mount namespace of its own, its working folder a
    tmpfs at `folder` that a file fills up as soon as the run has replaced its first checkpoint
    (L-BFGS reaches its optimum on the course in about a second: a fill at a fixed delay
    can miss it); its
    runs/ is copied to `keep` when it ends. None where mounting is not allowed (not root,
    no unshare)."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f'mount -t tmpfs -o size=4096 none "{folder}"'], capture_output=True).returncode:
        return None
    script = ('dir=$1 keep=$2; shift 2; mount -t tmpfs -o size=64m none "$dir" && cd "$dir" || '
              'exit 99; "$@" & pid=$!; while kill -0 $pid 2>/dev/null && '
              '[ ! -e runs/s/checkpoint.npz ]; do sleep 0.02; done; '
              'first=$(stat -c %i runs/s/checkpoint.npz 2>/dev/null); while kill -0 $pid '
              '2>/dev/null && [ "$(stat -c %i runs/s/checkpoint.npz 2>/dev/null)" = "$first" ]; '
              'do sleep 0.02; done; '
              'dd if=/dev/zero of=filler bs=64k 2>/dev/null; wait $pid; rc=$?; '
              'cp -a runs/. "$keep/"; exit $rc')
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "disk", str(folder),
            str(keep)]


@pytest.mark.slow
@needs_course
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_a_disk_that_fills_keeps_the_last_checkpoint(cli, tmp_path, solver):
    """A tmpfs filled up while the run keeps a checkpoint every 0.2 s: the next write fails
    with ENOSPC. The run stops with one line saying which iteration the checkpoint kept
    holds, and that checkpoint goes on as the run once there is space."""
    (tmp_path / "disk").mkdir()
    (tmp_path / "kept").mkdir()
    prefix = _filling_disk(tmp_path / "disk", tmp_path / "kept")
    if prefix is None:
        pytest.skip("no tmpfs can be mounted here (unshare -m, mount): the guard's ENOSPC "
                    "test below covers the same path")
    flags = (*SOLVERS[solver], *COMMON)
    with _running(["train", COURSE, *flags, "--iters", 100_000, "--name", "s",
                   "--checkpoint-every", "0.2"], tmp_path, prefix) as run:
        got, out, err = run.finish()
    k = _checkpoint(tmp_path / "kept/s")
    assert got == 1 and k > 0, err
    # the next checkpoint's write fails; or, where the run reached its end first (lbfgs
    # stops at its optimum), the finished run's folder's: the checkpoint before it stays
    said = _said(k).split("; ")[1]
    assert err == ("Error: No space left on device writing runs/s/checkpoint.npz, free some "
                   f"space on its disk: stopped; {said}\n") or re.fullmatch(
        r"Error: No space left on device \(runs/\.s\.\S+\), check the path, its permissions "
        rf"and free space; {re.escape(said)}\n", err), err
    assert os.listdir(tmp_path / "kept/s") == ["checkpoint.npz"]  # no temporary left
    shutil.copytree(tmp_path / "kept", tmp_path / "runs")   # where there is space
    os.chdir(tmp_path)
    _goes_on_as_unbroken(cli, "s", flags, k)


def _filling(mp, after):
    """The output guard's write of a solver state fails with ENOSPC from the `after`-th
    one on: the write is made to the temporary, and atomic_path's failure path runs as it
    does on a full disk (the temporary removed, the error naming the destination)."""
    from catlr.files import outputs
    from catlr.runs import state

    real, writes = outputs.atomic_path, []

    @contextlib.contextmanager
    def atomic_path(dest, kind):
        with real(dest, kind) as tmp:
            yield tmp
            writes.append(dest)
            if kind == "state" and len(writes) >= after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    mp.setattr(state, "atomic_path", atomic_path)  # the state's writer (runs/state.py)
    return writes


@needs_course
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_a_checkpoint_that_cannot_be_written_keeps_the_last_one(cli, monkeypatch, solver):
    flags = (*SOLVERS[solver], *COMMON)
    with monkeypatch.context() as mp:
        writes = _filling(mp, after=3)
        code, out, err = cli(["train", COURSE, *flags, "--iters", 100_000, "--name", "s",
                              "--checkpoint-every", "1e-9"])   # at every reported iteration
    k = _checkpoint("runs/s")
    assert code == 1 and len(writes) == 3 and k > 0
    assert err == ("Error: No space left on device writing runs/s/checkpoint.npz, free some "
                   f"space on its disk: {_said(k)}\n")
    assert os.listdir("runs/s") == ["checkpoint.npz"]
    _goes_on_as_unbroken(cli, "s", flags, k)   # space again


@needs_course
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_a_stop_while_the_run_is_saved_checkpoints_where_it_ended(cli, monkeypatch, solver):
    """The disk fills as the finished run's folder is written: the run's end is kept as a
    checkpoint (the state, not the model), and a resume writes the model from it."""
    from catlr.runs import modelfile

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/.s.tmp/model.npz")

    flags = (*SOLVERS[solver], *COMMON)
    with monkeypatch.context() as mp:
        mp.setattr(modelfile, "save", full)
        code, out, err = cli(["train", COURSE, *flags, "--iters", 40, "--name", "s"])
    assert code == 1 and _checkpoint("runs/s") == 40
    assert err == ("Error: No space left on device (runs/.s.tmp/model.npz), check the path, its "
                   f"permissions and free space; {_said(40).split('; ')[1]}\n")
    assert os.listdir("runs/s") == ["checkpoint.npz"]
    code, out, err = cli(["train", "--resume", "runs/s"])   # the run as it was asked: 40
    assert code == 0, err
    code, out, err = cli(["train", COURSE, *flags, "--iters", 40, "--name", "unbroken"])
    a, b = (np.load(f"runs/{n}/model.npz") for n in ("s", "unbroken"))
    assert np.array_equal(a["w"], b["w"]) and a["b"] == b["b"]
    assert np.array_equal(a["costs"], b["costs"])


@needs_course
def test_any_other_error_mid_run_keeps_the_last_complete_iteration(cli, monkeypatch):
    """A pass over the data that fails mid-run (a read error, here at the 25th): the
    iterations before it are kept, and said so on the error's one line."""
    from catlr.learn import design

    real, calls = design.Design.gradient, []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 25:
            raise OSError(errno.EIO, os.strerror(errno.EIO), "train_catvnoncat.h5")
        return real(self, *args)

    flags = (*COMMON, "--form", "primal")
    with monkeypatch.context() as mp:
        mp.setattr(design.Design, "gradient", failing)
        code, out, err = cli(["train", COURSE, *flags, "--iters", 100, "--name", "s"])
    assert code == 1 and _checkpoint("runs/s") == 24   # 24 complete, the 25th failed
    assert err == ("Error: Input/output error (train_catvnoncat.h5), check the path, its "
                   f"permissions and free space; {_said(24).split('; ')[1]}\n")
    _goes_on_as_unbroken(cli, "s", flags, 24)


def test_a_diverged_run_keeps_nothing(cli, small_folder):
    # its weights are no longer finite: no checkpoint of them, and no run folder
    code, out, err = cli(["train", small_folder, "--lr", "1e308", "--iters", 300, "--size", 16,
                          "--form", "primal", "--name", "d", "--checkpoint-every", "1e-9"])
    assert code == 1 and "training diverged" in err and err.count("\n") == 1, err
    assert not os.path.exists("runs/d")


def test_the_iteration_an_engine_names_is_the_solvers_not_its_pass(monkeypatch):
    """Under lbfgs an iteration takes one pass or more (its line search): what the design
    is told (design.iteration, which a Dask worker lost names) counts iterations."""
    from catlr import LogisticRegression
    from catlr.learn.design import Dense

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 60)) / 2
    Y = (rng.random((1, 60)) < 0.5).astype(float)
    seen = []

    class Watched(Dense):
        def gradient(self, *args):
            seen.append(self.iteration)
            return super().gradient(*args)

    model = LogisticRegression(iters=300, form="primal", l2=0.1, solver="lbfgs").fit_design(
        Watched(X), Y, form="primal")
    ran = model.iters_run_
    assert len(seen) > ran + 1   # more passes than iterations (and the first evaluation)
    assert seen == sorted(seen) and seen[-1] == ran - 1 and set(seen) == set(range(ran))


@pytest.mark.parametrize("form, solver", [("primal", "gd"), ("dual", "gd"),
                                          ("primal", "nesterov"), ("primal", "lbfgs")])
def test_a_signal_in_the_last_iteration_saves_the_end(form, solver):
    """Ctrl-C during the last iteration: the run stops once it is over, its end saved as
    the checkpoint (a resume writes the model from it), not the signal lost."""
    from catlr import LogisticRegression
    from catlr.events import Step
    from catlr.learn.descent import Saver, Start
    from catlr.learn.design import Dense

    rng = np.random.default_rng(5)
    X = rng.normal(size=(20, 60)) / 2
    Y = (rng.random((1, 60)) < 0.5).astype(float)

    def fit(**kw):
        return LogisticRegression(0.5, 50, 1, form, l2=0.1, solver=solver).fit_design(
            Dense(X), Y, form=form, **kw)

    whole, saved = fit(), []
    saver = Saver(saved.append, every=None)

    def ctrl_c_at_the_last(event):
        if isinstance(event, Step) and event.i == whole.iters_run_ - 1 and event.cost:
            saver.signum = signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        fit(saver=saver, on_event=ctrl_c_at_the_last)
    assert [st["i"] for st in saved] == [whole.iters_run_]
    rest = fit(start=Start(state=saved[0], at=saved[0]["i"], history=saved[0]))
    assert np.array_equal(rest.w_, whole.w_) and rest.b_ == whole.b_
    assert rest.costs_ == whole.costs_


@pytest.mark.parametrize("solver", ["gd", "lbfgs"])
@pytest.mark.parametrize("stop", ["scheduler lost", "SIGTERM"])
def test_a_stop_in_the_pass_after_the_loop_saves_the_end(solver, stop):
    """The scores after the last update are one more pass over X (on a cluster, one more
    round trip): a scheduler lost there, or a signal that comes then, saves the end."""
    from catlr.errors import EngineLost, Terminated
    from catlr.learn import descent
    from catlr.learn.design import Dense

    rng = np.random.default_rng(6)
    X = rng.normal(size=(20, 60)) / 2
    y = (rng.random(60) < 0.5).astype(float)
    saved = []
    saver = descent.Saver(saved.append, every=None)

    class LastPassFails(Dense):
        def scores(self, w, b, fast=False):
            if stop == "SIGTERM":
                saver.signum = signal.SIGTERM
                return super().scores(w, b, fast)
            raise EngineLost("the Dask scheduler at tcp://127.0.0.1:1 was lost at iteration 40")

    with pytest.raises(EngineLost if stop != "SIGTERM" else Terminated):
        descent.run(LastPassFails(X), y, 0.5, 40, form="primal", saver=saver, solver=solver,
                    objective=descent.COURSE)
    whole = descent.run(Dense(X), y, 0.5, 40, form="primal", solver=solver)
    assert [st["i"] for st in saved] == [whole.iters]   # the end, not an iteration before
    assert np.array_equal(saved[0]["w"], whole.w.ravel()) and saved[0]["b"] == whole.b

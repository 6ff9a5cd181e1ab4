"""A real cluster (issue 20): a scheduler and workers started by hand, each its own process
on loopback, with what goes wrong on one: a worker without catlr or with another numpy, a
worker that cannot see the data, blocks larger than the workers' memory, a worker killed,
the scheduler killed, Ctrl-C. Each is one line and its exit code; nothing hangs (every
run is bounded in time, and every process a test starts is stopped by it)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import COURSE, dask_cluster, needs_course

pytest.importorskip("distributed")
pytestmark = [pytest.mark.slow, needs_course]

SECONDS = 180  # any one catlr run here; a hang fails the test instead of the suite


def _catlr(args, cwd, env=None, seconds=SECONDS):
    r = subprocess.run([sys.executable, "-m", "catlr", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=seconds,
                       env={**os.environ, **(env or {})})
    return r.returncode, r.stdout, r.stderr


def _train_args(address, *more):
    return ["train", COURSE, "--engine", "dask", "--scheduler", address, "--form", "primal",
            "--dtype", "float64", *more]


def _one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "unexpected" not in err and "Traceback" not in err, err
    return lines[0]


def _shadow(tmp_path, broken_catlr=False, numpy_version=None):
    """A folder to put first on a worker's PYTHONPATH: a catlr whose import fails (as on a
    machine without it), or a numpy distribution record of another version."""
    d = tmp_path / "shadow"
    if broken_catlr:
        (d / "catlr").mkdir(parents=True, exist_ok=True)
        (d / "catlr" / "__init__.py").write_text(
            "raise ModuleNotFoundError(\"No module named 'catlr'\")\n")
    if numpy_version:
        info = d / f"numpy-{numpy_version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: numpy\n"
                                       f"Version: {numpy_version}\n")
    return {"PYTHONPATH": str(d)}


def test_a_worker_that_cannot_import_catlr_is_named_before_any_work(tmp_path):
    with dask_cluster(tmp_path, workers=1) as c:
        bad = c.worker(env=_shadow(tmp_path, broken_catlr=True))
        c.wait(2)
        code, out, err = _catlr(_train_args(c.address, "--iters", "5"), tmp_path)
        assert bad.poll() is None  # catlr asked; it did not kill the worker with a task
    line = _one_error_line(err)
    assert code == 1 and "cannot import catlr (ModuleNotFoundError" in line, err
    assert "worker tcp://127.0.0.1:" in line and "install catlr" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_only_workers_without_catlr_is_one_line_not_a_hang(tmp_path):
    with dask_cluster(tmp_path, workers=0) as c:
        for _ in range(2):
            c.worker(env=_shadow(tmp_path, broken_catlr=True))
        c.wait(2)
        start = time.monotonic()
        code, _, err = _catlr(_train_args(c.address, "--iters", "5"), tmp_path)
    line = _one_error_line(err)
    assert code == 1 and "cannot import catlr" in line and "(and 1 more of 2 workers)" in line
    assert time.monotonic() - start < SECONDS


def test_a_worker_with_another_numpy_is_named(tmp_path):
    import numpy as np

    with dask_cluster(tmp_path, workers=1) as c:
        c.worker(env=_shadow(tmp_path, numpy_version="9.9.9"))
        c.wait(2)
        code, _, err = _catlr(_train_args(c.address, "--iters", "5"), tmp_path)
    line = _one_error_line(err)
    assert code == 1 and "has numpy 9.9.9" in line and f"numpy=={np.__version__}" in line


def _hiding(folder):
    """A command prefix: the worker runs in a mount namespace of its own where `folder`
    is an empty tmpfs (the data is not there for it), or None where that is not allowed."""
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True)
    if shutil.which("unshare") is None or probe.returncode != 0:
        return None
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs none "{folder}" && exec "$@"', "hide"]


def test_a_worker_that_cannot_see_the_data_is_named(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in COURSE.glob("*.h5"):
        shutil.copy(f, data)
    prefix = _hiding(data)
    if prefix is None:
        pytest.skip("unshare -m is not allowed here: no way to hide a file from one worker")
    with dask_cluster(tmp_path, workers=1) as c:
        c.worker(prefix=prefix)
        c.wait(2)
        code, _, err = _catlr(["train", data, "--engine", "dask", "--scheduler", c.address,
                               "--iters", "5"], tmp_path)
    line = _one_error_line(err)
    assert code == 1 and f"cannot open {data / 'train_catvnoncat.h5'}" in line, err
    assert "(no such file or folder on that worker)" in line, line
    assert "every worker reads the data itself" in line


def test_blocks_larger_than_the_workers_memory_are_said_once(tmp_path):
    # the share of its limit a worker keeps before spilling is Dask's config (distributed
    # .worker.memory.target): at 0.1%, a worker of 1 GB holds 1 MB, less than the 2.6 MB
    # of the course's one block, kept as uint8 pixels (float64 blocks were 21 MB)
    env = {"DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "0.001"}
    with dask_cluster(tmp_path, workers=2, memory="1GB") as c:
        code, out, err = _catlr(_train_args(c.address, "--iters", "3"), tmp_path, env)
        assert code == 0, err
        notes = [x for x in (out + err).splitlines() if x.startswith("Note: ")]
        assert notes == ["Note: the blocks take 3 MB, 3 MB of them on one worker, but a "
                         "worker holds 1 MB before it spills (0.1% of its 1.0 GB memory "
                         "limit, or 70% of it less the 168 MB the worker itself takes): every "
                         "iteration will read the rest back from disk; add workers, give them "
                         "a larger --memory-limit, or use --engine stream"], out + err
        code, out, err = _catlr(_train_args(c.address, "--iters", "3"), tmp_path)
        assert code == 0 and "Note: " not in out + err  # at Dask's own 60%, they fit


def test_a_worker_without_catlr_and_on_another_numpy_is_named_for_both(tmp_path):
    with dask_cluster(tmp_path, workers=1) as c:
        c.worker(env=_shadow(tmp_path, broken_catlr=True, numpy_version="9.9.9"))
        c.wait(2)
        code, _, err = _catlr(_train_args(c.address, "--iters", "5"), tmp_path)
    line = _one_error_line(err)
    assert code == 1 and "has numpy 9.9.9 and cannot import catlr (ModuleNotFoundError" in line
    assert "pip install catlr==" in line and f"numpy=={np.__version__}" in line, line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _pixels(path, key="train_set_x"):
    from catlr.files.containers import open_container

    c = open_container(path)
    return c, c.pixels(key)


def _reference_scores(x, w, b):
    """X.T w + b for the pixels x (m, s, s, 3): the formula, in float64 NumPy."""
    return (np.asarray(x[:], np.float64).reshape(len(x), -1) / 255) @ w + b


def test_the_spill_note_is_predicted_from_the_limits_and_the_blocks(tmp_path):
    """Fresh workers, whose current use said nothing: the course's one block (2.6 MB) goes
    to one worker, which holds 2 MB (Dask's target of 0.2% of 1 GB), though the two hold 4
    MB together. It spills, as the note now says before the first iteration; with Dask's
    own target (60%) nothing spills and nothing is said. The scores are the formula's."""
    import dask

    from catlr.engines.dask import DaskPixels

    w = np.random.default_rng(0).normal(size=64 * 64 * 3) / 1000
    for target, note in ((0.002, True), (0.6, False)):
        env = {"DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": str(target)}
        with dask_cluster(tmp_path, workers=2, memory="1GB", env=env) as c, \
                dask.config.set({"distributed.worker.memory.target": target}):
            notes = []
            container, x = _pixels(COURSE / "train_catvnoncat.h5")
            d = DaskPixels(x, "float64", scheduler=c.address, on_event=notes.append)
            try:
                np.testing.assert_allclose(d.scores(w, 0.5), _reference_scores(x, w, 0.5),
                                           rtol=1e-12)
                spilled = sum(d.client.run(lambda dask_worker: len(dask_worker.data.slow))
                              .values())
            finally:
                d.close()
                container.close()
        texts = [n.text for n in notes if "spills" in getattr(n, "text", "")]
        assert bool(texts) == note and (spilled > 0) == note, (target, texts, spilled)
        if note:
            assert texts[0].startswith("the blocks take 3 MB, 3 MB of them on one worker, but "
                                       "a worker holds 2 MB before it spills (0.2% of its 1.0 "
                                       "GB memory limit"), texts


def test_each_worker_opens_the_store_once_a_run_not_once_a_block(tmp_path, cli):
    """A block task reopened (and, at a URL, relisted) the store for every block: now each
    worker opens it once a run (and once for the check before it), counted in the
    workers by a sitecustomize; the blocks' scores are the formula's."""
    from catlr.engines.dask import DaskPixels
    from catlr.stages.demo import make_sample

    images = make_sample(tmp_path / "sample", n_per_class=10, unseen=0)["images"]
    store = tmp_path / "x.zarr"
    assert cli(["prepare", images, "--out", store])[0] == 0
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import catlr.files.containers as c\n"
        "c.OPENED = []\n"
        "real = c.ZarrContainer.__init__\n"
        "def init(self, path, *a, **k):\n"
        "    c.OPENED.append(str(path))\n"
        "    real(self, path, *a, **k)\n"
        "c.ZarrContainer.__init__ = init\n")

    def opened():
        import catlr.files.containers as c

        return len(getattr(c, "OPENED", []))

    w = np.random.default_rng(1).normal(size=64 * 64 * 3) / 1000
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    with dask_cluster(tmp_path, workers=2, env={"PYTHONPATH": path}) as c:
        container, x = _pixels(store)
        for run in (1, 2):
            d = DaskPixels(x, "float64", scheduler=c.address, block_bytes=64 * 64 * 3)
            try:
                assert len(d.spans) == len(x) > 8  # a block an image
                np.testing.assert_allclose(d.scores(w, 0.0), _reference_scores(x, w, 0.0),
                                           rtol=1e-12)
                counts = d.client.run(opened)
            finally:
                d.close()
            assert sorted(counts.values()) == [2 * run, 2 * run], counts  # probe + blocks
        container.close()


def test_two_runs_on_one_cluster_never_share_blocks(tmp_path):
    """Two runs at once on a cluster, on two files whose arrays have the same name and
    shape: each computes on its own pixels (the blocks' keys were the array's name and
    span, the same for both: the second run was handed the first one's blocks)."""
    import h5py

    from catlr.engines.dask import DaskPixels

    with h5py.File(COURSE / "train_catvnoncat.h5", "r") as f:
        x, y = f["train_set_x"][()], f["train_set_y"][()]
    other = tmp_path / "inverted.h5"
    with h5py.File(other, "w") as f:
        f["train_set_x"], f["train_set_y"] = 255 - x, y
    w = np.random.default_rng(2).normal(size=64 * 64 * 3) / 1000
    with dask_cluster(tmp_path, workers=2) as c:
        (ca, xa), (cb, xb) = _pixels(COURSE / "train_catvnoncat.h5"), _pixels(other)
        a = DaskPixels(xa, "float64", scheduler=c.address)
        b = DaskPixels(xb, "float64", scheduler=c.address)
        try:
            np.testing.assert_allclose(a.scores(w, 0.0), _reference_scores(x, w, 0.0),
                                       rtol=1e-12)
            np.testing.assert_allclose(b.scores(w, 0.0), _reference_scores(255 - x, w, 0.0),
                                       rtol=1e-12)
        finally:
            a.close()
            b.close()
            ca.close()
            cb.close()


def _spawn(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "catlr", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for(path, p, seconds=120):
    end = time.monotonic() + seconds
    while not Path(path).exists():
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.05)


def _finish(p, seconds=SECONDS):
    try:
        out, err = p.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("catlr did not end")
    return p.returncode, out, err


@pytest.mark.parametrize("solver", ["gd", "lbfgs"])
def test_a_killed_worker_is_one_line_and_the_run_goes_on(tmp_path, solver):
    more = ("--solver", "lbfgs", "--l2", "1") if solver == "lbfgs" else ()
    with dask_cluster(tmp_path, workers=2) as c:
        p = _spawn(_train_args(c.address, "--iters", "400", "--print-every", "10",
                               "--checkpoint-every", "0.2", "--name", "k", *more), tmp_path)
        try:
            _wait_for(tmp_path / "runs/k/checkpoint.npz", p)
            c.workers[0].kill()
            code, out, err = _finish(p)
        finally:
            p.kill()
    assert code == 0, err
    lost = [x for x in (out + err).splitlines() if "lost at iteration" in x]
    assert len(lost) == 1 and lost[0].startswith("Note: worker tcp://127.0.0.1:"), out + err
    assert lost[0].endswith(", continuing on 1 worker"), lost
    # an iteration of the solver (L-BFGS's take a pass or more each), within the run's
    from catlr.runs.modelfile import load

    at = int(re.search(r"lost at iteration (\d+),", lost[0])[1])
    assert 0 < at <= load(tmp_path / "runs/k/model.npz")[1]["iters_run"], at
    assert "Traceback" not in err and "distributed" not in err, err


def test_workers_that_die_on_a_block_are_one_line_not_dasks_traceback(tmp_path, monkeypatch):
    """Every worker dies (its process exits) as soon as it reads a block, as one killed for
    its memory does: Dask gives up on the block (KilledWorker) and catlr says so in one line
    with what to do, instead of Dask's traceback."""
    d = tmp_path / "dying"
    d.mkdir()
    (d / "sitecustomize.py").write_text(
        "import os\n"
        "try:\n"
        "    import catlr.engines.dask as engine\n"
        "except ImportError:\n"
        "    engine = None\n"
        "if engine is not None:\n"
        "    def read_block(*args, **kw):\n"
        "        os._exit(3)\n"
        "    engine.read_block = read_block\n")
    # the scheduler gives a task up after one more death (Dask's default is 3: slower)
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "1")
    with dask_cluster(tmp_path, workers=2, env={"PYTHONPATH": str(d)}) as c:
        code, out, err = _catlr(_train_args(c.address, "--iters", "20"), tmp_path)
    line = _one_error_line(err)
    assert code == 1, err
    assert "the Dask workers died running one block (2 tried it)" in line, line
    assert "give the workers more memory, add workers, or use --engine stream" in line


def test_a_killed_scheduler_is_one_line_and_the_run_resumes_on_a_new_cluster(tmp_path, cli):
    import numpy as np

    flags = ("--iters", "300", "--print-every", "10")
    with dask_cluster(tmp_path, workers=2) as c:
        p = _spawn(_train_args(c.address, *flags, "--checkpoint-every", "0.2", "--name", "s"),
                   tmp_path)
        try:
            _wait_for(tmp_path / "runs/s/checkpoint.npz", p)
            time.sleep(0.5)
            c.scheduler.kill()
            code, out, err = _finish(p, 120)
        finally:
            p.kill()
    line = _one_error_line(err)
    assert code == 1 and "the Dask scheduler at tcp://127.0.0.1:" in line, err
    # lost at the iteration its checkpoint holds: the last complete one, saved on the way out
    lost = re.search(r"was lost at iteration (\d+) ", line)
    assert lost, line
    assert (f"its checkpoint (iteration {lost[1]}) is in runs/s/, go on with 'catlr train "
            "--resume runs/s'") in line
    with dask_cluster(tmp_path, workers=2) as c:
        code, out, err = _catlr(["train", "--resume", "runs/s", "--scheduler", c.address],
                                tmp_path)
        assert code == 0, err
        code, out, err = _catlr(_train_args(c.address, *flags, "--name", "whole"), tmp_path)
        assert code == 0, err
    a, b = (np.load(tmp_path / f"runs/{n}/model.npz") for n in ("s", "whole"))
    assert np.array_equal(a["w"], b["w"]) and a["b"] == b["b"]  # bit for bit


def _interrupt(args, delays, tmp_path):
    for delay in delays:
        p = _spawn([*args, "--name", f"c{len(args)}-{delay}"], tmp_path)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        code, out, err = _finish(p, 60)
        assert code == 130, (delay, code, err)
        assert err.count("\n") == 1 and err.startswith("Interrupted"), (delay, err)


def test_ctrl_c_on_the_dask_engine_is_one_line_every_time(tmp_path):
    # while connecting, checking the workers, reading the blocks, and training
    with dask_cluster(tmp_path, workers=2) as c:
        _interrupt(_train_args(c.address, "--iters", "100000"), (0.5, 1.5, 3.0, 5.0), tmp_path)
    # a local cluster: while its workers start, and after
    args = ["train", COURSE, "--engine", "dask", "--form", "primal", "--iters", "100000"]
    _interrupt(args, (1.0, 3.0, 6.0), tmp_path)

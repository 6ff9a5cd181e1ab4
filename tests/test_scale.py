"""Past one machine's memory: the streaming and Dask engines give the course loop's iterates,
memory stays within the budget, and a lost Dask worker changes nothing."""

import json
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import COURSE, joined, needs_course, rel


def _course_run(cli, tmp_path, *flags):
    out = tmp_path / "m.npz"
    code, text, err = cli(["train", COURSE, "--dtype", "float64", "--out", out, "--json", *flags])
    assert code == 0, err
    from catlr.runs.modelfile import load

    return load(out)[0], json.loads(text)


@pytest.mark.slow
@needs_course
def test_streaming_gives_the_course_loop(cli, tmp_path, course_oracle):
    model, meta = _course_run(cli, tmp_path, "--memory", "4MB")  # K and X do not fit
    w_ref, b_ref, costs_ref = course_oracle
    assert meta["engine"] == "stream" and meta["form"] == "primal"
    assert "would pass the budget of 4 MB (--memory 4MB)" in meta["engine_reason"]
    assert len(model.costs_) == 20 and rel(model.costs_, costs_ref) <= 1e-9
    assert rel(model.w_, w_ref) <= 1e-9 and abs(model.b_ - b_ref) <= 1e-9 * abs(b_ref)
    assert meta["test_accuracy"] == pytest.approx(0.70)


@pytest.mark.slow
@needs_course
def test_dask_gives_the_course_loop_and_survives_a_lost_worker(cli, tmp_path, course_oracle,
                                                              monkeypatch):
    pytest.importorskip("distributed")
    import catlr.learn.descent as descent
    from catlr.events import Step

    real, killed = descent.run, []

    def run_and_kill_a_worker(design, *a, **kw):
        on_event = kw["on_event"]

        def kill_at_500(event):
            on_event(event)
            if isinstance(event, Step) and event.i >= 500 and not killed:
                pid = sorted(design.worker_pids().values())[0]
                os.kill(pid, signal.SIGKILL)  # its block is lost: Dask reads it again
                killed.append(pid)
        return real(design, *a, **{**kw, "on_event": kill_at_500})

    monkeypatch.setattr(descent, "run", run_and_kill_a_worker)
    model, meta = _course_run(cli, tmp_path, "--engine", "dask", "--print-every", "100")
    w_ref, b_ref, costs_ref = course_oracle
    assert killed and meta["engine"] == "dask"
    assert len(model.costs_) == 20 and rel(model.costs_, costs_ref) <= 1e-9
    assert rel(model.w_, w_ref) <= 1e-9 and abs(model.b_ - b_ref) <= 1e-9 * abs(b_ref)


def test_dask_says_where_its_dashboard_is(cli, tmp_path):
    pytest.importorskip("distributed")
    path = _prepared(tmp_path / "p.h5", 120)
    code, out, err = cli(["train", path, "--engine", "dask", "--iters", "3", "-v",
                          "--out", tmp_path / "m.npz"])
    assert code == 0, err
    assert "dask engine (asked for)" in out
    # the address only where the page works: Dask's dashboard needs bokeh
    import importlib.util

    if importlib.util.find_spec("bokeh") is not None:
        assert "Dask dashboard: http://127.0.0.1:" in out
    else:
        assert "Dask dashboard: needs bokeh" in out and "http://" not in out


def test_dask_missing_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.delitem(sys.modules, "catlr.engines.dask", raising=False)
    code, out, err = cli(["train", _prepared(tmp_path / "p.h5", 20), "--engine", "dask"])
    assert code == 1 and err.count("\n") == 1
    assert 'pip install "catlr[dask]"' in err


def _prepared(path, m, size=64, seed=0):
    """A prepared file of m random images (labels from the mean of the red channel)."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for split, n in (("train", m), ("test", max(m // 5, 2))):
            x = f.create_dataset(f"{split}_set_x", (n, size, size, 3), np.uint8,
                                 chunks=(min(64, n), size, size, 3))
            y = np.zeros(n, np.int64)
            for start in range(0, n, 1000):
                part = rng.integers(0, 256, (min(1000, n - start), size, size, 3), np.uint8)
                x[start:start + len(part)] = part
                y[start:start + len(part)] = part[..., 0].mean(axis=(1, 2)) > 127.5
            y[:2] = [0, 1]
            f[f"{split}_set_y"] = y
    return path


def _peak_rss(args, cwd) -> int:
    """Peak resident memory (bytes) of `catlr ARGS` run in a fresh process."""
    # VmHWM, not getrusage's ru_maxrss: Linux carries a forked parent's peak over into the
    # child's ru_maxrss, so under a large pytest process every child would look large
    code = ("import sys\nfrom catlr.cli import main\n"
            f"sys.argv = ['catlr', *{[str(a) for a in args]!r}]\n"
            "try: main()\nexcept SystemExit as e: assert e.code == 0, e.code\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print('RSS', int(hwm.split()[1]) * 1024)")
    # the environment a user's shell has: not the variables a Dask cluster started by an
    # earlier test leaves in this process (thread counts, malloc settings)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MALLOC_", "OMP_", "MKL_", "OPENBLAS_NUM", "__DASK"))}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                       env=env)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.rsplit("RSS ", 1)[1])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's VmHWM")
def test_a_file_larger_than_the_budget_trains_within_it(tmp_path):
    """6,000 images: 74 MB of pixels, 295 MB (281 MiB) as a float32 X. With --memory 48MB the
    streaming engine's peak stays within 48 MB of a streaming run on 20 images (the
    interpreter and libraries); the memory engine, for contrast, takes the whole pixels
    (as uint8: it builds no float X)."""
    big = _prepared(tmp_path / "big.h5", 6000)
    small = _prepared(tmp_path / "small.h5", 20)
    common = ["--iters", "3", "--form", "primal", "--out", tmp_path / "m.npz"]
    # the base streams too, so that both load the same libraries (numba's LLVM: 100 MB)
    base = _peak_rss(["train", small, *common, "--memory", "48MB", "--engine", "stream"],
                     tmp_path)
    stream = _peak_rss(["train", big, *common, "--memory", "48MB"], tmp_path)
    memory = _peak_rss(["train", big, *common, "--engine", "memory"], tmp_path)
    assert stream - base <= 48 << 20, (stream - base) >> 20
    # the contrast: the memory engine holds the uint8 pixels (70 MiB), no float32 X (281 MiB)
    pixels = 6000 * 12288
    assert pixels <= memory - base <= pixels + (48 << 20), ((memory - base) >> 20, base >> 20)
    from catlr.runs.modelfile import load

    assert load(tmp_path / "m.npz")[1]["engine"] == "memory"


def test_primal_trains_in_float32_unless_asked(cli, tmp_path):
    path = _prepared(tmp_path / "p.h5", 400, size=8)  # n_x = 192 < m: the primal form
    code, out, err = cli(["train", path, "--iters", "50", "--json", "--out", tmp_path / "a.npz"])
    assert code == 0, err
    meta = json.loads(out)
    assert (meta["form"], meta["dtype"], meta["engine"]) == ("primal", "float32", "memory")
    code, out, err = cli(["train", path, "--iters", "50", "--json", "--dtype", "float64",
                          "--out", tmp_path / "b.npz"])
    assert code == 0 and json.loads(out)["dtype"] == "float64"
    a, b = (json.loads(out)["final_cost"], meta["final_cost"])
    assert a == pytest.approx(b, rel=1e-4)  # float32 and float64 train alike


def test_a_folder_too_large_for_memory_is_prepared_to_a_file_first(cli, small_folder):
    code, out, err = cli(["train", small_folder, "--iters", "5", "--memory", "512KB",
                          "--out", "m.npz"])
    assert code == 0, err
    out = joined(out)
    assert f"Preparing {small_folder} into " in out and "images.h5 first: 16 images" in out
    assert os.path.exists(os.path.join("data", "images.h5"))


def test_eval_on_a_large_split_reads_it_a_block_at_a_time(cli, tmp_path):
    path = _prepared(tmp_path / "p.h5", 300)
    code, _, err = cli(["train", path, "--iters", "20", "--out", tmp_path / "m.npz"])
    assert code == 0, err
    from catlr.stages.evaluate import evaluate

    whole = evaluate(tmp_path / "m.npz", path)
    assert isinstance(whole.images, np.ndarray)
    blocks = evaluate(tmp_path / "m.npz", path, memory="64KB")
    assert isinstance(blocks.images.ds, h5py.Dataset)  # left on disk (read through the checks)
    assert np.array_equal(blocks.probabilities, whole.probabilities)
    blocks.close()


def test_stream_and_dual_do_not_mix(cli, tmp_path):
    path = _prepared(tmp_path / "p.h5", 20)
    code, _, err = cli(["train", path, "--engine", "stream", "--form", "dual"])
    assert code == 2 and "--form dual needs K in memory" in err
    code, _, err = cli(["train", path, "--memory", "lots"])
    assert code == 2 and "--memory must be auto or a size such as 512MB" in err


def test_a_zarr_store_trains_like_the_hdf5_file_on_every_engine(cli, small_folder, tmp_path):
    pytest.importorskip("zarr")
    for out in ("p.h5", "p.zarr"):
        code, _, err = cli(["prepare", small_folder, "--out", tmp_path / out])
        assert code == 0, err
    from catlr.runs.modelfile import load

    weights = {}
    engines = ["memory", "stream"] + (["dask"] if _has("distributed") else [])
    for data, engine in [("p.h5", "memory")] + [("p.zarr", e) for e in engines]:
        out = tmp_path / f"{data}-{engine}.npz"
        code, _, err = cli(["train", tmp_path / data, "--engine", engine, "--form", "primal",
                            "--dtype", "float64", "--iters", "30", "--out", out])
        assert code == 0, (engine, err)
        weights[(data, engine)] = load(out)[0].w_
    reference = weights[("p.h5", "memory")]
    for key, w in weights.items():
        assert rel(w, reference) <= 1e-9, key
    os.mkdir("data")
    os.rename(tmp_path / "p.zarr", os.path.join("data", "prepared.zarr"))
    code, out, err = cli(["train", "data/", "--iters", "5", "--json", "--out", tmp_path / "m.npz"])
    assert code == 0 and json.loads(out)["data"].endswith("prepared.zarr"), err


def _has(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def test_the_compiled_conversion_gives_the_same_blocks(tmp_path):
    """Stream.blocks() (X's floats, for what needs floats) converts with numba's kernel,
    bit for bit NumPy's division; the products run on the uint8 blocks (test_fused.py)."""
    pytest.importorskip("numba")
    from catlr.engines.stream import Stream
    from catlr.files.containers import open_container
    from catlr.learn.design import Pixels

    path = _prepared(tmp_path / "p.h5", 300)
    with open_container(path) as c:
        x = c.pixels("train_set_x")
        for dtype in ("float32", "float64"):
            fast = Stream(x, dtype, block_bytes=1 << 20)
            blocks = [(s, b.copy()) for s, b in fast.blocks()]
            plain = [(s, b.copy()) for s, b in Pixels.blocks(fast)]  # NumPy's conversion
            assert len(blocks) == len(plain) > 1
            for (s, a), (t, b) in zip(blocks, plain):
                assert s == t and a.dtype == np.dtype(dtype) and np.array_equal(a, b)

"""The fused uint8 products (issue 22): a block's products computed from the pixels, X =
x / 255 never built, against the float blocks they replace; the NumPy path; the memory,
stream and Dask engines against the course's loop; reading ahead; K in place.

Tolerances, relative by norms: float64 1e-12 against the float blocks (measured 1e-15);
float32 2e-6 against float64's exact products (measured 1e-7 to 4e-7; the float32 float
blocks' BLAS products measure the same)."""

import os
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
from conftest import rel

F32 = 2e-6   # float32, fused or not, against float64
F64 = 1e-12  # float64 fused against float64 float blocks


def _pixels(k, n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (k, n), dtype=np.uint8)


def _case(k, n, dtype, seed=0):
    rng = np.random.default_rng(seed + 1)
    x = _pixels(k, n, seed)
    y = (rng.random(k) < 0.4).astype(dtype)
    w = (rng.normal(size=n) * 0.01).astype(dtype)
    return x, y, w


OBJECTIVES = [{}, {"class_weight": {0: 0.3, 1: 2.5}}, {"class_weight": "balanced", "l2": 0.7}]


@pytest.fixture(params=["numba", "numpy"])
def path(request, monkeypatch):
    """Each test twice: numba's compiled kernels, and NumPy's path (forced)."""
    from catlr.learn import kernels

    if request.param == "numba":
        pytest.importorskip("numba")
        assert kernels.compiled() is not None
    else:
        monkeypatch.setattr(kernels, "USE_NUMBA", False)
        assert kernels.compiled() is None
    return request.param


# k = 1 row, odd sizes, and one over kernels.PARALLEL_BYTES (every core)
@pytest.mark.parametrize("k,n", [(1, 12288), (7, 5), (13, 1027), (683, 192), (130, 1031)])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_fused_block_gradient_is_the_float_blocks(path, k, n, objective):
    from catlr.learn.design import block_gradient, normalize
    from catlr.learn.loss import Objective

    obj = Objective(**objective)
    for dtype in ("float64", "float32"):
        x, y, w = _case(k, n, dtype, seed=k + n)
        s = obj.weights(y)
        fused = block_gradient(x, y, w, 0.3, s, obj)
        floats = block_gradient(normalize(x, dtype), y, w, 0.3, s, obj)
        assert fused[0].dtype == np.dtype(dtype) and fused[0].shape == (n,)
        if dtype == "float64":
            for a, b in zip(fused, floats):
                assert rel(a, b) <= F64, (k, n)
        else:  # both against float64's products
            exact = block_gradient(normalize(x, "float64"), y.astype(float), w.astype(float),
                                   0.3, None if s is None else s.astype(float), obj)
            for a, b, c in zip(fused, floats, exact):
                assert rel(a, c) <= F32 and rel(b, c) <= F32, (k, n)


def test_the_products_on_pixels_are_x_over_255(path):
    from catlr.learn import kernels

    x = _pixels(37, 300)
    v, d = np.random.default_rng(5).normal(size=300), np.random.default_rng(6).normal(size=37)
    assert rel(kernels.times(x, v, 0.25), x.astype(float) @ v + 0.25) <= 1e-14
    assert rel(kernels.times_t(x, d), d @ x.astype(float)) <= 1e-14
    assert kernels.times(x[:0], v).shape == (0,) and not kernels.times_t(x[:0], d[:0]).any()
    with pytest.raises(TypeError, match="uint8"):
        kernels.times(x.astype(np.float32), v)


def test_numba_and_numpy_paths_agree(monkeypatch):
    pytest.importorskip("numba")
    from catlr.learn import kernels
    from catlr.learn.design import block_gradient

    x, y, w = _case(700, 1100, "float64", seed=3)  # over PARALLEL_BYTES
    fast = block_gradient(x, y, w, -0.2)
    monkeypatch.setattr(kernels, "USE_NUMBA", False)
    plain = block_gradient(x, y, w, -0.2)
    for a, b in zip(fast, plain):
        assert rel(a, b) <= F64


def test_one_thread_where_the_process_is_limited_to_one(monkeypatch):
    """OMP_NUM_THREADS=1 (a Dask worker's nanny sets it), or a thread other than the main
    one: the kernels stay on the calling thread, with the bits of the parallel ones (each
    element summed by one thread, in order)."""
    pytest.importorskip("numba")
    from catlr.learn import kernels

    x, y, w = _case(900, 1024, "float32", seed=9)
    both = kernels.times(x, w, 0.5), kernels.times_t(x, y)
    fast = kernels.compiled()

    def refuse(*a):
        raise AssertionError("a parallel kernel ran")

    monkeypatch.setattr(kernels, "ONE_THREAD", True)
    monkeypatch.setattr(fast, "scores", refuse)
    monkeypatch.setattr(fast, "back", refuse)
    one = kernels.times(x, w, 0.5), kernels.times_t(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(both, one))
    # nor from a thread other than the main one (a Dask worker's pool)
    monkeypatch.setattr(kernels, "ONE_THREAD", False)
    seen = []
    worker = threading.Thread(target=lambda: seen.append(
        (kernels.times(x, w, 0.5), kernels.times_t(x, y))))
    worker.start()
    worker.join()
    assert all(np.array_equal(a, b) for a, b in zip(both, seen[0]))
    code = "from catlr.learn import kernels; print(kernels.ONE_THREAD)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.stdout.strip() == "True", r.stderr


def test_without_numba_installed_the_numpy_path_trains(tmp_path):
    """numba blocked in a fresh process: the fused products run on NumPy, and train."""
    path = _prepared(tmp_path / "p.h5", 90)
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import numpy as np\n"
        "from catlr import config\nfrom catlr.learn import kernels\nfrom catlr.stages import train\n"
        f"cfg = config.resolve(None, iters=30, form='primal', dtype='float64', engine='stream', "
        f"memory='64KB')\n"
        f"train.train({str(path)!r}, cfg, out={str(tmp_path / 'm.npz')!r})\n"
        "assert kernels.compiled() is None\n"
        "print('OK')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-2000:]
    from catlr.runs.modelfile import load

    model = load(tmp_path / "m.npz")[0]
    w_ref, b_ref = _reference(path, 30)
    assert rel(model.w_, w_ref) <= 1e-9


# ---- the engines against the course's loop

def _prepared(path, m, size=8, seed=0, chunk=16):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for split, n in (("train", m), ("test", 10)):
            x = rng.integers(0, 256, (n, size, size, 3), np.uint8)
            f.create_dataset(f"{split}_set_x", data=x, chunks=(min(chunk, n), size, size, 3))
            y = (x[..., 0].mean(axis=(1, 2)) > 127.5).astype(np.int64)
            y[:2] = [0, 1]
            f[f"{split}_set_y"] = y
    return path


def _reference(path, iters, lr=0.005):
    from catlr.learn.descent import reference

    with h5py.File(path, "r") as f:
        x, y = f["train_set_x"][()], f["train_set_y"][()]
    X = x.reshape(len(x), -1).T / 255.0
    w, b, _ = reference(X, y.reshape(1, -1), lr, iters)
    return w, b


def _fit(design, y, iters, lr=0.005):
    from catlr.learn.model import LogisticRegression

    return LogisticRegression(lr, iters, form="primal").fit_design(design, y, form="primal")


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 1e-4)])
def test_memory_and_stream_engines_give_the_course_loop(path, tmp_path, dtype, tol):
    from catlr.engines.stream import Stream
    from catlr.files.containers import open_container
    from catlr.learn.design import Pixels

    p = _prepared(tmp_path / "p.h5", 203)
    w_ref, b_ref = _reference(p, 150)
    with open_container(p) as c:
        x = c.pixels("train_set_x")
        y = c.labels("train_set_y", x.shape[0])
        designs = {"memory": Pixels(np.asarray(x), dtype),
                   "stream": Stream(x, dtype, block_bytes=4 * 16 * 192),  # 2 chunks a read
                   "stream serial": Stream(x, dtype, block_bytes=4 * 16 * 192, ahead=False),
                   "memory, small blocks": Pixels(np.asarray(x), dtype)}
        designs["memory, small blocks"].pixel_rows = lambda: 10  # many blocks, one odd
        for name, design in designs.items():
            model = _fit(design, y, 150)
            assert rel(model.w_, w_ref) <= tol, name
            assert abs(model.b_ - b_ref) <= tol * abs(b_ref), name


def test_the_memory_engine_holds_the_pixels_as_uint8(monkeypatch):
    """needs() counts the uint8 pixels and vectors only, the planner keeps in memory what
    a float32 X would have streamed, and no float copy of X is made while training."""
    from catlr import engines
    from catlr.learn import design, kernels

    m, n_x = 20000, 12288
    need = engines.needs("primal", m, n_x, 4)
    assert need == m * n_x + 8 * 8 * (m + n_x) + kernels.SCRATCH_BYTES
    assert need <= 1.03 * m * n_x  # a float32 X alone would be 4 m n_x
    assert engines.needs("primal", m, n_x, 8) == need  # the dtype no longer matters
    cfg = {"form": "primal", "engine": "auto", "dtype": "auto", "memory": "300MB"}
    choice = engines.choose(m, n_x, 100, cfg, on_disk=True)
    assert choice.engine == "memory" and "240 MB fits the budget" in choice.why

    x = _pixels(300, 8 * 8 * 3).reshape(300, 8, 8, 3)
    y = (x[:, 0, 0, 0] > 127).astype(float)
    real = design.normalize

    def no_float_x(pixels, *a, **kw):  # X whole would be m n_x floats
        assert np.size(pixels) < x.size, "a float copy of X"
        return real(pixels, *a, **kw)

    monkeypatch.setattr(design, "normalize", no_float_x)
    d = design.Pixels(x, "float32")
    assert d.dense() is d and d.dense().x.dtype == np.uint8
    model = _fit(d, y, 20)
    assert np.isfinite(model.w_).all()


# ---- reading ahead

def _threads():
    from catlr.engines.stream import THREAD_NAME

    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def test_reading_ahead_gives_the_serial_bits(tmp_path):
    from catlr.engines.stream import Stream
    from catlr.files.containers import open_container

    p = _prepared(tmp_path / "p.h5", 515, chunk=8)
    with open_container(p) as c:
        x = c.pixels("train_set_x")
        y = c.labels("train_set_y", x.shape[0]).astype(np.float32)
        w = np.random.default_rng(0).normal(size=192).astype(np.float32) * 0.01
        for block in (2 * 8 * 192, 2 * 40 * 192, 10 ** 6):  # 1 chunk a read, 5, all
            ahead = Stream(x, "float32", block)
            serial = Stream(x, "float32", block, ahead=False)
            assert ahead.read_rows() == serial.read_rows()
            for a, b in zip(ahead.gradient(w, 0.1, y), serial.gradient(w, 0.1, y)):
                assert np.array_equal(a, b)
            assert np.array_equal(ahead.scores(w, 0.1), serial.scores(w, 0.1))
            assert np.array_equal(ahead.times(y), serial.times(y))
            # a pass inside another reads into buffers of its own
            outer = [(s, b.copy()) for s, b in serial.product_blocks()]
            nested = []
            for s, b in ahead.product_blocks():
                nested.append((s, b.copy()))
                inner = [(t, c.copy()) for t, c in ahead.product_blocks()]
                assert all(np.array_equal(c, d) for (_, c), (_, d) in zip(inner, outer, strict=True))
            assert all(np.array_equal(c, d) for (_, c), (_, d) in zip(nested, outer, strict=True))
    assert not _threads()


class _Failing:
    """Pixels on 'disk' whose read of one block fails as the checked reader says so."""

    def __init__(self, x, bad_row, exc=None):
        self.x, self.bad, self.reads = x, bad_row, 0
        self.shape, self.dtype, self.chunks = x.shape, x.dtype, (4, *x.shape[1:])
        self.exc = exc

    def __getitem__(self, sel):
        self.reads += 1
        if sel.start <= self.bad < sel.stop:
            from catlr.errors import CatlrError

            raise self.exc or CatlrError("data.h5: train_set_x cannot be read (corrupt chunk)")
        return self.x[sel]


def test_a_read_error_in_the_read_ahead_thread_is_the_readers_one_line():
    from catlr.engines.stream import Stream
    from catlr.errors import CatlrError

    x = _pixels(64, 48).reshape(64, 4, 4, 3)
    y, w = np.ones(64), np.zeros(48)
    for bad in (0, 30, 63):
        design = Stream(_Failing(x, bad), "float64", block_bytes=2 * 8 * 48)  # 8 rows a read
        with pytest.raises(CatlrError, match="cannot be read"):
            design.gradient(w, 0.0, y)
        assert not _threads()


def test_a_corrupt_chunk_streamed_is_one_line(cli, tmp_path):
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        x = np.random.default_rng(0).integers(0, 256, (256, 8, 8, 3), np.uint8)
        f.create_dataset("train_set_x", data=x, chunks=(16, 8, 8, 3), compression="gzip")
        f["train_set_y"] = np.arange(256) % 2
        f["test_set_x"], f["test_set_y"] = x[:4], np.arange(4) % 2
        offset = f["train_set_x"].id.get_chunk_info(9).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 10:offset + 110] = bytes(100)
    path.write_bytes(bytes(raw))
    code, _, err = cli(["train", path, "--iters", "3", "--engine", "stream", "--memory",
                        "64KB", "--out", tmp_path / "m.npz"])
    assert code == 1 and err.count("\n") == 1, err
    assert f"{path}: train_set_x cannot be read" in err
    assert not _threads()


def test_the_read_ahead_thread_ends_with_the_pass():
    from catlr.engines.stream import Stream

    x = _pixels(200, 48).reshape(200, 4, 4, 3)
    design = Stream(x, "float64", block_bytes=2 * 8 * 48)
    blocks = design.product_blocks()
    next(blocks)
    assert len(_threads()) == 1  # reading the next block
    blocks.close()  # a loop that stops early (a break)
    assert not _threads()

    for _ in design.product_blocks():  # a loop that stops by an exception (Ctrl-C)
        break
    assert not _threads()
    with pytest.raises(KeyboardInterrupt):
        for i, _ in enumerate(design.product_blocks()):
            if i == 3:
                raise KeyboardInterrupt
    assert not _threads()


def test_early_stopping_and_a_halt_leave_no_thread(tmp_path):
    import signal

    from catlr.engines.stream import Stream
    from catlr.events import Step
    from catlr.learn import descent

    x = _pixels(300, 48).reshape(300, 4, 4, 3)
    y = (x[:, 0, 0, 0] > 127).astype(float)
    # the held-out labels flipped: their cost rises as training learns, so it stops early
    held = descent.Held(Stream(x[:60], "float64", block_bytes=2 * 8 * 48), 1 - y[:60],
                        patience=1)
    fit = descent.run(Stream(x[60:], "float64", block_bytes=2 * 8 * 48), y[60:], 0.5, 400,
                      form="primal", print_every=10, held=held)
    assert fit.stopped is not None and fit.stopped < 400
    assert not _threads()
    saved = []
    saver = descent.Saver(saved.append, every=None)

    def signal_at_3(event):  # a SIGINT during iteration 3: the run halts at 4's start
        if isinstance(event, Step) and event.i == 3:
            saver.signum = signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        descent.run(Stream(x, "float64", block_bytes=2 * 8 * 48), y, 0.1, 50, form="primal",
                    saver=saver, print_every=1, on_event=signal_at_3)
    assert saved and saved[-1]["i"] == 4 and not _threads()


# ---- the dual form's K

def test_k_accumulated_in_place_is_x_t_x(monkeypatch):
    from catlr.learn import design

    monkeypatch.setattr(design, "GRAM_SLAB", 7)  # slabs that do not divide m
    monkeypatch.setattr(design, "FEATURE_BLOCK", 50)
    monkeypatch.setattr(design, "FEATURE_BYTES", 0)  # blocks of 50 features, one odd
    x = _pixels(33, 4 * 4 * 9).reshape(33, 4, 4, 9)
    p = design.Pixels(x, "float64")
    X = x.reshape(33, -1).T / 255.0
    K = p.gram()
    assert rel(K, X.T @ X) <= 1e-14 and np.array_equal(K, K.T)
    other = design.Pixels(x[:20], "float64")
    assert rel(other.cross(p), X[:, :20].T @ X) <= 1e-14
    assert rel(p.times(np.arange(33.0)), X @ np.arange(33.0)) <= 1e-14


def test_the_power_iterations_product_is_x_times_x_t_in_one_pass(path, tmp_path):
    """design.normal(w, b) = (X u, sum(u)), u = X.T w + b, on floats, pixels in memory
    (many blocks) and streamed, each block read once; and the final scores of a primal
    run on the kernels its passes ran on give w.T X + b."""
    from catlr.engines.stream import Stream
    from catlr.files.containers import open_container
    from catlr.learn.design import Dense, Pixels

    p = _prepared(tmp_path / "p.h5", 203)
    rng = np.random.default_rng(4)
    with open_container(p) as c:
        x = c.pixels("train_set_x")
        pixels = np.asarray(x)
        X = pixels.reshape(len(pixels), -1).T / 255.0
        w, b = rng.normal(size=X.shape[0]), 0.3
        u = X.T @ w + b
        small = Pixels(pixels, "float32")
        small.pixel_rows = lambda: 10  # many blocks, one odd
        reads = []
        stream = Stream(x, "float32", block_bytes=4 * 16 * 192)
        blocks = stream.product_blocks
        stream.product_blocks = lambda: reads.append(1) or blocks()
        for name, design in {"floats": Dense(X), "pixels": small, "stream": stream}.items():
            v, total = design.normal(w, b)
            assert rel(v, X @ u) <= 1e-12 and abs(total - u.sum()) <= 1e-12 * abs(u.sum()), name
            z = design.scores(w, b, fast=True)
            assert rel(z, u) <= 1e-12, name
        assert reads == [1, 1]  # normal, then scores: one pass each


# ---- the Dask engine

@pytest.mark.slow
def test_dask_runs_the_fused_products_on_uint8_blocks(tmp_path):
    pytest.importorskip("distributed")
    from conftest import dask_cluster

    from catlr.engines.dask import DaskPixels
    from catlr.files.containers import open_container

    p = _prepared(tmp_path / "p.h5", 203)
    w_ref, b_ref = _reference(p, 60)
    with dask_cluster(tmp_path, workers=2) as cluster, open_container(p) as c:
        x = c.pixels("train_set_x")
        y = c.labels("train_set_y", x.shape[0])
        design = DaskPixels(x, "float64", scheduler=cluster.address, block_bytes=40 * 192)
        try:
            kinds = design.client.gather(design.client.map(lambda b: str(b.dtype), design.parts))
            assert set(kinds) == {"uint8"} and len(kinds) == 6
            model = _fit(design, y, 60)
        finally:
            design.close()
    assert rel(model.w_, w_ref) <= 1e-9 and abs(model.b_ - b_ref) <= 1e-9 * abs(b_ref)


def test_numba_is_imported_on_first_use_only():
    """Scoring (predict, serve) and the dual form (one pass for w = X c) never load numba:
    its import costs more than one pass saves; the primal form's passes do."""
    code = ("import sys\n"
            "import catlr.stages.predict, catlr.serve, catlr.learn.model, catlr.learn.design\n"
            "from catlr.learn.model import LogisticRegression\n"
            "assert 'numba' not in sys.modules, 'numba at import'\n"
            "import numpy as np\n"
            "x, y = np.arange(48, dtype=np.uint8).reshape(4, 2, 2, 3), np.array([0, 1, 0, 1])\n"
            "LogisticRegression(iters=2, form='dual').fit_pixels(x, y)\n"
            "print('numba' in sys.modules)\n"
            "LogisticRegression(iters=2, form='primal').fit_pixels(x, y)\n"
            "print('numba' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", str(_has_numba())]


def _has_numba():
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def test_a_signal_during_a_kernels_first_call_waits_for_it_to_end():
    """numba compiles a kernel at its first call; a KeyboardInterrupt raised inside LLVM's
    callbacks hung the process (seen: Ctrl-C a few seconds into a train with a fresh
    cache). The first call holds the signal and delivers it once the kernel is done."""
    import signal

    from catlr.learn import kernels

    done = []

    def kernel(x):  # as a first call that compiles: the signal comes in the middle
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        done.append(x)

    kernel.__name__ = f"fake-{time.monotonic_ns()}"
    with pytest.raises(KeyboardInterrupt):
        kernels.run_kernel(kernel, np.float32, 1)
    assert done == [1]                      # the kernel ran to its end first
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    def quiet(x):
        done.append(x)

    kernels.run_kernel(quiet, np.float64, 2)  # no signal: it just runs
    assert done == [1, 2]


@pytest.mark.slow
def test_ctrl_c_while_numba_compiles_is_one_line(tmp_path, small_folder):
    """Ctrl-C at several moments of a first primal run with an empty numba cache (the
    kernels compile for seconds): exit 130 and one line each time, never a hang."""
    pytest.importorskip("numba")
    import signal
    import subprocess
    import sys

    for delay in (1.5, 2.5, 3.5, 4.5):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / f"cache-{delay}")}
        p = subprocess.Popen([sys.executable, "-m", "catlr", "train", str(small_folder),
                              "--form", "primal", "--iters", "1000000", "--out",
                              str(tmp_path / "m.npz")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        try:
            err = p.communicate(timeout=90)[1]
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            pytest.fail(f"train hung after Ctrl-C at {delay} s")
        assert p.returncode == 130 and err.startswith("Interrupted") and err.count("\n") == 1, \
            (delay, p.returncode, err)

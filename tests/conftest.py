"""Shared fixtures: the course data from ../shared/datasets, a lossless PNG copy of it,
a model trained once on it, and a CLI runner that returns (code, stdout, stderr)."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
COURSE = SHARED / "catvnoncat"
PHOTOS = SHARED / "photos"

HAVE_COURSE = (COURSE / "train_catvnoncat.h5").exists() and (COURSE / "test_catvnoncat.h5").exists()
NO_COURSE = f"course data not found at {COURSE} (a clone without ../shared beside it)"
needs_course = pytest.mark.skipif(not HAVE_COURSE, reason=NO_COURSE)


def require_course():
    """Skip the calling test or fixture, with the reason, when ../shared is absent: every
    fixture built on the course's files calls it, so a test using one cannot miss it."""
    if not HAVE_COURSE:
        pytest.skip(NO_COURSE)


def seed_loop(X, Y, lr, iters, every=100):
    """The course's week-2 loop, written plainly (catlr.learn.descent.reference): the oracle."""
    from catlr.learn.descent import reference

    return reference(X, Y, lr, iters, every)


def rel(a, b):
    """Relative difference of two arrays, by their norms."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="session")
def course():
    """{'train': (x, y), 'test': (x, y)} straight from the course's files."""
    import h5py

    require_course()
    out = {}
    for split in ("train", "test"):
        with h5py.File(COURSE / f"{split}_catvnoncat.h5", "r") as f:
            out[split] = (f[f"{split}_set_x"][()], f[f"{split}_set_y"][()])
    return out


@pytest.fixture(scope="session")
def course_oracle(course, request):
    """The seed loop on the course data, lr 0.005, 2000 iterations: about 3 s on a 2-core
    machine, run once per checkout and kept in pytest's cache (keyed by the data and the
    reference loop's source, so a change to either recomputes it)."""
    import hashlib
    import inspect

    from catlr.learn.descent import reference

    x, y = course["train"]
    key = hashlib.sha256(x.tobytes() + y.tobytes() + inspect.getsource(reference).encode())
    name = f"catlr/course_oracle/{key.hexdigest()[:16]}"
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    cached = cache.get(name, None) if cache is not None else None
    if cached is not None:
        return np.array(cached["w"]).reshape(-1, 1), cached["b"], cached["costs"]
    X = x.reshape(len(x), -1).T / 255.0
    w, b, costs = seed_loop(X, y.reshape(1, -1), 0.005, 2000)
    if cache is not None:
        cache.set(name, {"w": w.ravel().tolist(), "b": b, "costs": costs})
    return w, b, costs


@pytest.fixture(scope="session")
def course_png_copy(course, tmp_path_factory):
    """A lossless image-folder copy: SRC/{train,test}/{cat,non-cat}/NNN.png."""
    from PIL import Image

    root = tmp_path_factory.mktemp("course_png")
    for split, (x, y) in course.items():
        for i, (img, label) in enumerate(zip(x, y)):
            d = root / split / ("cat" if label else "non-cat")
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def course_model(tmp_path_factory):
    """A model trained by the CLI on the course pair with the course's settings."""
    require_course()
    path = tmp_path_factory.mktemp("model") / "m.npz"
    code, out, err = run_cli(["train", str(COURSE), "--lr", "0.005", "--iters", "2000",
                              "--out", str(path)])
    assert code == 0, err
    return path, out


def joined(text: str) -> str:
    """A command's output with each message whole: catlr wraps a line over 80 columns in a
    pipe between words, its continuation lines indented by two spaces."""
    out = []
    for line in text.splitlines():
        if out and line.startswith("  ") and not line.startswith("   ") and out[-1].strip():
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def unwrapped(text: str, width: int = 80) -> str:
    """Output that catlr wrapped at `width` (text.wrap: a pipe's 80 columns) with each line
    whole again: a line is a continuation when it is indented deeper than the line it
    goes on and its first word could not have fitted on the line before (where wrap broke
    it). For reports whose own lines are indented (explain, check), which joined() would
    run together."""
    from catlr.text import _TOKEN

    out, lead = [], 0
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        first = (_TOKEN.findall(stripped) or [""])[0]
        if (out and stripped and len(line) - len(stripped) > lead
                and len(out[-1][1]) + 1 + len(first) > width):
            out[-1] = (out[-1][0] + " " + stripped, line)
            continue
        out.append((line, line))
        lead = len(line) - len(stripped)
    return "\n".join(whole for whole, _ in out) + ("\n" if text.endswith("\n") else "")


def run_cli(args, **kw):
    from typer.testing import CliRunner

    from catlr.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], **kw)
    return result.exit_code, result.stdout, result.stderr


def run_cli_whole(args, **kw):
    """run_cli with a report's lines whole again (explain, check): catlr wraps them at 80
    columns in a pipe (tests/test_fits.py checks the wrapping itself); --json untouched."""
    code, out, err = run_cli(args, **kw)
    return code, (out if "--json" in map(str, args) else unwrapped(out)), err


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def small_folder(tmp_path):
    """A tiny two-class folder of generated images (cat/ and non-cat/, 8 each)."""
    from catlr.stages.demo import make_sample

    return Path(make_sample(tmp_path / "sample", n_per_class=8, unseen=2)["images"])


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch, tmp_path_factory):
    """No CATLR_DEBUG, and each test in a fresh working folder: runs/ and model.npz land there."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    monkeypatch.delenv("CATLR_DEBUG", raising=False)
    os.environ.setdefault("COLUMNS", "120")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskCluster:
    """A real Dask scheduler and workers, each its own process on loopback (as a user
    starts them by hand: `dask scheduler`, `dask worker ADDRESS`)."""

    def __init__(self, cwd):
        self.cwd, self.procs, self.workers = cwd, [], []
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.scheduler = self._spawn([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                      "--host", "127.0.0.1", "--port",
                                      self.address.rsplit(":", 1)[1], "--no-dashboard"])

    def _spawn(self, argv, env=None, prefix=()):
        p = subprocess.Popen([*prefix, *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=self.cwd,
                             env={**os.environ, **(env or {})})
        self.procs.append(p)
        return p

    def worker(self, memory=None, env=None, prefix=()):
        """One more worker: `memory` its --memory-limit, `env` added to its environment,
        `prefix` a command it runs under (unshare, say)."""
        argv = [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                "--death-timeout", "60"] + (["--memory-limit", str(memory)] if memory else [])
        self.workers.append(self._spawn(argv, env, prefix))
        return self.workers[-1]

    def wait(self, n, seconds=60):
        from distributed import Client

        with Client(self.address, timeout=f"{seconds}s") as client:
            client.wait_for_workers(n, timeout=seconds)
        return self

    def stop(self):
        for p in reversed(self.procs):
            p.kill()  # ours alone, on loopback: nothing of theirs needs a clean exit
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


@contextlib.contextmanager
def dask_cluster(cwd, workers=2, **kw):
    """A DaskCluster with `workers` plain workers started and ready; stopped at the end."""
    pytest.importorskip("distributed")
    c = DaskCluster(cwd)
    try:
        for _ in range(workers):
            c.worker(**kw)
        if workers:
            c.wait(workers)
        yield c
    finally:
        c.stop()
def remeta(model, out, **changes):
    """A copy of the model file `model` at `out` with its metadata changed (a hand-edited or
    hostile model); returns out."""
    import json

    with np.load(model) as z:
        entries = {k: z[k] for k in z.files}
    entries["meta"] = np.str_(json.dumps({**json.loads(str(entries["meta"])), **changes}))
    with open(out, "wb") as f:
        np.savez(f, **entries)
    return out

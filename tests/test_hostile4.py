"""Hostile input, round four (issues 27 and 28, section 4): storage and environments.
Every failure of the filesystem layer is one line naming the URL (the one storage
boundary), and catlr runs where its environment is odd: no zarr, catlr installed
read-only under a HOME it cannot write, a terminal of 0 columns, a second catlr in
another PID namespace, a read-only working folder, extreme class weights. Each case
builds its situation itself and checks the exit code, the one line, and that nothing
was read, run, written or lost."""

import contextlib
import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import COURSE, ROOT, free_port, needs_course


def _one_line(err) -> str:
    err = err.decode() if isinstance(err, bytes) else err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "unexpected" not in err and "Traceback" not in err, err
    return lines[0]


def _run(*args, env=None, cwd=None, prefix=(), timeout=240):
    """`python -m catlr ARGS` (under `prefix`, a command such as unshare), its environment
    `env` over this one's, a value None removing a variable."""
    full = {**os.environ, **(env or {})}
    full = {k: v for k, v in full.items() if v is not None}
    r = subprocess.run([*prefix, sys.executable, "-m", "catlr", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout, env=full)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture
def read_only():
    """make(*folders) -> a command prefix under which the folders are read-only (the files
    in them too): chmod for a user who is not root; for root (whom chmod does not stop) a
    mount namespace of the command's own with read-only bind mounts (unshare -m). Skips
    when neither can be had; permissions are put back at the end."""
    changed = []

    def make(*folders):
        if os.geteuid() != 0:
            for folder in folders:
                for here, dirs, files in os.walk(folder):
                    for p in [here, *(os.path.join(here, f) for f in files)]:
                        changed.append((p, os.stat(p).st_mode))
                        os.chmod(p, os.stat(p).st_mode & ~0o222)
            return []
        if shutil.which("unshare") is None or subprocess.run(
                ["unshare", "-m", "--propagation", "private", "true"],
                capture_output=True).returncode != 0:
            pytest.skip("root, and unshare -m is not allowed: no way to make a folder "
                        "read-only for catlr")
        mounts = " && ".join(f"mount --bind {shlex.quote(str(f))} {shlex.quote(str(f))} && "
                             f"mount -o remount,bind,ro {shlex.quote(str(f))}" for f in folders)
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f'{mounts} && cd "$PWD" && exec "$@"', "read-only"]  # cwd: the mount

    yield make
    for path, mode in reversed(changed):
        with contextlib.suppress(OSError):
            os.chmod(path, mode)


@pytest.fixture
def prepared(cli, small_folder, tmp_path):
    path = tmp_path / "p.h5"
    code, _, err = cli(["prepare", small_folder, "--out", path])
    assert code == 0, err
    return path


@pytest.fixture
def model(cli, prepared, tmp_path):
    path = tmp_path / "m.npz"
    code, _, err = cli(["train", prepared, "--iters", "10", "--out", path])
    assert code == 0, err
    return path


# ---------------------------------------------------------------- 1. the storage boundary

def _urls():
    return ["dir://x.zarr", f"ftp://127.0.0.1:{free_port()}/x.zarr"]  # nothing listens there


@pytest.mark.parametrize("url", _urls(), ids=["dir", "ftp-refused"])
def test_a_url_the_filesystem_layer_cannot_reach_is_one_line_naming_it(cli, small_folder,
                                                                       model, tmp_path, url):
    """A filesystem that cannot be made from the URL (dir:// wants options) and one that
    connects when made and is refused (ftp:// with nothing listening): the same one line
    as every failure of the storage layer, for train, prepare and eval; nothing written."""
    pytest.importorskip("fsspec")
    os.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    for args, doing in ((["train", url, "--iters", "2"], "read"),
                        (["prepare", small_folder, "--out", url], "written"),
                        (["eval", url, "--model", model], "read")):
        code, out, err = cli(args)
        line = _one_line(err)
        assert code == 1 and line.startswith(f"Error: {url} cannot be {doing}: "), line
        assert "check the URL" in line and out == ""
    assert sorted(os.listdir(tmp_path)) == before  # no runs/, no model, no prepared file


def test_a_prepare_to_a_url_looks_at_its_output_once(cli, small_folder, monkeypatch):
    """The output guard's look at a store at a URL (round trips: info, zarr.json) is made
    once a command: the CLI's guard, the stage's and the writer's share it. A library
    call to the stage (no CLI) looks once too, and still refuses what is not catlr's."""
    fsspec = pytest.importorskip("fsspec")
    pytest.importorskip("zarr")
    import uuid

    from catlr.config import resolve
    from catlr.errors import UsageError
    from catlr.files import outputs
    from catlr.stages.prepare import prepare

    looks, real = [], outputs._look_at_remote
    monkeypatch.setattr(outputs, "_look_at_remote", lambda *a: looks.append(a[0]) or real(*a))
    base = f"memory://once-{uuid.uuid4().hex[:8]}"
    assert cli(["prepare", small_folder, "--out", f"{base}/x.zarr"])[0] == 0
    assert looks == [f"{base}/x.zarr"]
    looks.clear()
    prepare(small_folder, f"{base}/x.zarr", resolve(None))  # replaces catlr's own store
    assert looks == [f"{base}/x.zarr"]
    fsspec.filesystem("memory").pipe_file(f"{base[len('memory:/'):]}/y.zarr/notes.txt", b"x")
    with pytest.raises(UsageError, match="holds something that is not a Zarr store"):
        prepare(small_folder, f"{base}/y.zarr", resolve(None))


def test_the_zarr_writer_gets_its_filesystem_from_the_storage_boundary():
    """zarr's store for a prepare to s3:// is made by storage.filesystem: its connect
    timeout and retry caps (a dead endpoint is one line in seconds), not s3fs's defaults
    (5 retries of botocore's default timeouts)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("zarr")
    from catlr.files.zarr_store import target

    store = target("s3://bucket/.x.zarr.tmp", {"endpoint_url": "http://127.0.0.1:9",
                                               "key": "k", "secret": "s"}, "s3://bucket/x.zarr")
    assert store.fs.retries <= 2 and store.fs.asynchronous
    assert store.fs.config_kwargs["connect_timeout"] == 10
    assert store.url == "s3://bucket/x.zarr"  # its failures name the store, not the prefix


def test_a_store_write_that_fails_midway_is_one_line_naming_the_store(cli, small_folder,
                                                                      monkeypatch):
    """Any error a filesystem raises while zarr writes (here not an OSError: a library's
    own, as botocore's and aiohttp's are) is one line naming the store's URL; the old
    store stays whole and no temporary prefix is left."""
    fsspec = pytest.importorskip("fsspec")
    pytest.importorskip("zarr")
    import uuid

    from fsspec.implementations.memory import MemoryFileSystem

    url = f"memory://w{uuid.uuid4().hex[:8]}/x.zarr"
    root = url[len("memory:/"):]
    assert cli(["prepare", small_folder, "--out", url])[0] == 0
    fs = fsspec.filesystem("memory")
    before = {p: fs.cat_file(p) for p in fs.find(root)}
    real = MemoryFileSystem.pipe_file

    class StreamClosed(Exception):
        pass

    def failing(self, path, *a, **kw):
        if ".tmp/train_set_x/c" in path:  # zarr writing the pixels' chunks
            raise StreamClosed("the stream was closed by the server")
        return real(self, path, *a, **kw)

    monkeypatch.setattr(MemoryFileSystem, "pipe_file", failing)
    code, _, err = cli(["prepare", small_folder, "--out", url])
    line = _one_line(err)
    assert code == 1 and line.startswith(f"Error: {url} cannot be written: StreamClosed"), line
    assert {p: fs.cat_file(p) for p in fs.find(root)} == before
    assert not [p for p in fs.ls(os.path.dirname(root)) if ".tmp" in p]


@pytest.mark.parametrize("where", ["local", "url"])
def test_prepare_to_a_store_without_zarr_is_one_line(cli, small_folder, tmp_path, monkeypatch,
                                                     where):
    pytest.importorskip("fsspec")
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr fails, as when not installed
    out = tmp_path / "x.zarr" if where == "local" else "memory://nozarr/x.zarr"
    code, _, err = cli(["prepare", small_folder, "--out", out])
    line = _one_line(err)
    assert code == 1 and 'needs zarr, which is not installed: pip install "catlr[dask]"' in line
    assert str(out) in line
    assert not (tmp_path / "x.zarr").exists() and not [p for p in tmp_path.iterdir()
                                                       if p.name.startswith(".")]


# ---------------------------------------------------------------- 2. environments

def _clean_env(home, tmp):
    """A HOME and TMPDIR of the test's; no cache folder chosen by the environment."""
    return {"HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": None,
            "XDG_CONFIG_HOME": None, "NUMBA_CACHE_DIR": None, "MPLCONFIGDIR": None}


def test_catlr_installed_read_only_under_a_read_only_home_trains_with_numba(
        cli, prepared, tmp_path, read_only):
    """numba caches compiled kernels beside their source or in ~/.cache: with neither
    writable it failed ("cannot cache function"). catlr points it at a private folder in
    TMPDIR (and the run's weights are those of a normal install, bit for bit)."""
    pytest.importorskip("numba")
    site = tmp_path / "site"
    shutil.copytree(ROOT / "catlr", site / "catlr", ignore=shutil.ignore_patterns("__pycache__"))
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    args = ["train", prepared, "--engine", "stream", "--form", "primal", "--iters", "20"]
    code, out, err = _run(*args, "--out", tmp_path / "ro.npz", cwd=tmp_path,
                          prefix=read_only(site, home),
                          env={**_clean_env(home, tmp), "PYTHONPATH": str(site)})
    assert code == 0 and err == "", err
    assert "cannot cache" not in out
    assert list((tmp / f"catlr-{os.geteuid()}" / "numba").rglob("*.nbi"))  # cached there
    assert not list(site.rglob("*.nbi")) and not list(home.rglob("*"))
    code, _, err = cli([*args, "--out", tmp_path / "usual.npz"])
    assert code == 0, err
    with np.load(tmp_path / "ro.npz") as a, np.load(tmp_path / "usual.npz") as b:
        assert np.array_equal(a["w"], b["w"]) and a["b"] == b["b"]


def test_a_read_only_home_prints_no_matplotlib_warning(cli, prepared, tmp_path, read_only):
    """matplotlib keeps its settings and font list under HOME: a read-only HOME made it
    warn on stderr (two lines at every start, one more while it built its font list)."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    for run in range(2):  # the first builds the font list, the second reuses it
        code, out, err = _run("train", prepared, "--iters", "20", "--out", tmp_path / "m.npz",
                              "--plot", tmp_path / f"cost{run}.png", cwd=tmp_path,
                              prefix=read_only(home), env=_clean_env(home, tmp))
        assert code == 0 and err == "", err
        assert (tmp_path / f"cost{run}.png").stat().st_size > 1000
    assert list((tmp / f"catlr-{os.geteuid()}" / "matplotlib").glob("fontlist-*.json"))


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("columns", ["0", "abc", "-5"])
def test_a_terminal_of_0_or_garbage_columns_still_shows_eval(prepared, model, tmp_path, columns):
    """rich drew at the width COLUMNS gave it: 0 columns printed nothing. 0 or a value that
    is not a width is an unknown width: the terminal's own."""
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(tmp_path)
        os.environ["COLUMNS"] = columns
        os.execv(sys.executable, [sys.executable, "-m", "catlr", "eval", str(prepared),
                                  "--model", str(model)])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    for shown in ("Model ", "accuracy", "precision", "Confusion matrix"):
        assert shown in text, text


# ---- a prepare's temporary is held by a lock, not told by a pid

WRITER = r"""
import os, sys, time
from pathlib import Path
from catlr.files.outputs import atomic_path
import catlr.runs.modelfile  # registers the output kind "model" (its writer's module)

dest, ready, go = map(Path, sys.argv[1:4])
with atomic_path(dest, "model") as tmp:
    tmp.write_bytes(b"half")
    ready.write_text(str(os.getpid()))
    while not go.exists():
        time.sleep(0.02)
    import numpy as np
    with open(tmp, "wb") as f:
        np.savez(f, w=np.zeros(3), b=np.float64(0), meta=np.str_("{}"))
"""

NAMESPACE = r"""
import os, sys
# a pid that no process of the host has: the writer's pid as the host sees it is another,
# and what catlr of before looked up (os.kill(pid, 0)) found nothing alive
while True:
    pid = os.fork()
    if pid == 0:
        if os.path.exists(f"/proc/{os.getpid()}"):  # /proc is the host's: taken there
            os._exit(99)
        os.execv(sys.executable, [sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 99:
        sys.exit(os.waitstatus_to_exitcode(status))
"""


def _stale_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _wait(path, proc, seconds=60):
    end = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.02)


def test_a_writer_in_another_pid_namespace_keeps_its_temporary(cli, small_folder, tmp_path):
    """A catlr writing in another PID namespace of this host (unshare --pid, a container
    sharing the folder) has a pid that is not alive here: the next write of the same
    output here deleted its temporary as stale. Its lock is held: the temporary stays,
    and both writes end whole."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--pid", "--fork", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --pid is not allowed here (the next test holds a lock with a "
                    "pid of another namespace by hand)")
    dest, ready, go = tmp_path / "m.npz", tmp_path / "ready", tmp_path / "go"
    writer = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", sys.executable,
                               "-c", NAMESPACE,
                               WRITER, str(dest), str(ready), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(ready, writer)
        inner = int(ready.read_text())
        assert not os.path.exists(f"/proc/{inner}")  # its pid is not alive here
        held = [n for n in _stale_files(tmp_path) if f".{inner}-" in n]
        assert len(held) == 2  # its temporary and the lock beside it
        code, _, err = cli(["train", small_folder, "--iters", "3", "--out", dest])
        assert code == 0, err
        assert [n for n in _stale_files(tmp_path) if f".{inner}-" in n] == held  # kept
        go.write_text("")
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err  # its temporary was there to be renamed
    finally:
        writer.kill()
        writer.wait()
    assert _stale_files(tmp_path) == [] and dest.stat().st_size > 100


def test_a_temporary_held_by_a_pid_unknown_here_is_kept_until_its_lock_goes(cli, small_folder,
                                                                           tmp_path):
    """The situation of a writer in another PID namespace, made by hand: a temporary named
    with a pid that is not alive here, its lock held by a live process. The next write
    keeps it; once the lock is let go (the writer killed), the next write removes it."""
    from catlr.files.outputs import _HOST

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    base = f".m.npz.{_HOST}.{dead.pid}-0123456789abcdef"
    (tmp_path / f"{base}.tmp").write_bytes(b"a model being written over there")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(tmp_path / (base + '.lock'))!r}, os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = cli(["train", small_folder, "--iters", "3", "--out", tmp_path / "m.npz"])
        assert code == 0, err
        assert (tmp_path / f"{base}.tmp").read_bytes() == b"a model being written over there"
    finally:
        holder.kill()
        holder.wait()
    code, _, err = cli(["train", small_folder, "--iters", "3", "--out", tmp_path / "m.npz"])
    assert code == 0, err
    assert _stale_files(tmp_path) == []  # the temporary and its lock: gone


def test_a_read_only_working_folder_is_a_file_problem_exit_1(small_folder, tmp_path, read_only):
    """train's runs/ and prepare's data/ go in the working folder: read-only, that is a
    file problem (exit 1, as a full disk), not a flag's (2); nothing is decoded first."""
    work = tmp_path / "work"
    work.mkdir()
    prefix = read_only(work)
    for args, what in ((["train", small_folder, "--iters", "2"], "the run folder "),
                       (["prepare", small_folder], "--out ")):
        code, out, err = _run(*args, cwd=work, prefix=prefix)
        line = _one_line(err)
        assert code == 1 and f"{what}" in line and f"catlr may not write in {work}" in line, err
        assert "Cost after" not in out
    assert list(work.iterdir()) == []


# ---- class weights: bounded where they are parsed; no library warning on the terminal

@pytest.mark.parametrize("weights", ["1e-300:1e300", "1e-7:1", "1:2e6", "1e-6:1e6"])
def test_class_weights_out_of_bounds_are_one_line_naming_the_bounds(cli, small_folder, weights):
    code, out, err = cli(["train", small_folder, "--class-weight", weights, "--iters", "2"])
    line = _one_line(err)
    assert code == 2 and "--class-weight must be" in line and weights in line
    assert "from 1e-06 to 1e+06, at most 1e+06 times the other" in line
    assert not os.path.exists("runs")


def test_the_library_keeps_the_same_bounds():
    from catlr.errors import ParameterError
    from catlr.learn.model import LogisticRegression

    X, Y = np.ones((3, 4)), np.array([[0, 1, 0, 1]])
    for cw in ({0: 1e-300, 1: 1e300}, {1: 1e7}, {0: 1e-6, 1: 1e6}):
        with pytest.raises(ParameterError, match="from 1e-06 to 1e[+]06"):
            LogisticRegression(class_weight=cw).fit(X, Y)
    LogisticRegression(iters=5, class_weight={0: 1e-6, 1: 1.0}).fit(X, Y)


@needs_course
@pytest.mark.parametrize("solver", ["lbfgs", "nesterov"])
def test_extreme_class_weights_raise_no_library_warning(tmp_path, solver):
    """With -W error every warning a library raises is an error ("unexpected ..."): the
    weights at their bounds, in both float types, end in a model or catlr's own lines."""
    if solver == "lbfgs":
        pytest.importorskip("scipy")
    for weights in ("1e-6:1", "1:1e6", "1e6:1e6"):
        for dtype in ("float32", "float64"):
            r = subprocess.run([sys.executable, "-W", "error", "-m", "catlr", "train", COURSE,
                                "--solver", solver, "--class-weight", weights, "--dtype",
                                dtype, "--iters", "60", "--out", tmp_path / "m.npz"],
                               capture_output=True, text=True, timeout=240, cwd=tmp_path)
            assert r.returncode == 0, (weights, dtype, r.stderr)
            assert all(line.startswith("Warning: the cost rose")
                       for line in r.stderr.splitlines()), (weights, dtype, r.stderr)


def test_a_library_warning_never_reaches_the_terminal(small_folder, tmp_path):
    """Whatever a library warns while catlr runs (here NumPy, made to warn at every
    np.stack by a sitecustomize), the CLI shows none of it, unless -W or PYTHONWARNINGS
    asks for warnings."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import warnings\n"
        "import numpy\n"
        "real = numpy.stack\n"
        "def stack(*a, **k):\n"
        "    warnings.warn('overflow in a product', RuntimeWarning)\n"
        "    return real(*a, **k)\n"
        "numpy.stack = stack\n")
    env = {"PYTHONPATH": str(site), "PYTHONWARNINGS": None}
    code, _, err = _run("train", small_folder, "--iters", "5", "--out", tmp_path / "m.npz",
                        cwd=tmp_path, env=env)
    assert code == 0 and err == "", err
    code, _, err = _run("train", small_folder, "--iters", "5", "--out", tmp_path / "m.npz",
                        cwd=tmp_path, env={**env, "PYTHONWARNINGS": "default"})
    assert code == 0 and "overflow in a product" in err  # asked for: shown


# ---- the Dask engine's spill note: predicted from the limits and the blocks

def test_the_spill_note_depends_on_the_limits_and_the_blocks_only():
    """The issue's case, on paper: 2 fresh workers of 1 GiB and 1.2 GB of 64 MB blocks (10
    on one worker: 640 MB, over the 557 MB a worker keeps: min(60%, 70% less its own 160
    MB)). tests/test_cluster.py checks the prediction on a real cluster."""
    pytest.importorskip("distributed")
    from catlr.engines.dask import WORKER_BYTES, spill_notes

    gib, block = 1 << 30, 64 << 20
    keep = min(0.6 * gib, 0.7 * gib - WORKER_BYTES)  # Dask's default target and spill
    assert spill_notes([gib, gib], [block] * 19)  # 10 blocks on one worker: over
    assert not spill_notes([gib, gib], [block] * 16)  # 8 blocks: 512 MB, under
    assert 8 * block <= keep < 10 * block
    assert not spill_notes([0, gib], [block] * 19)  # a worker without a limit: no prediction
    assert not spill_notes([4 * gib] * 4, [block] * 100)  # 25 blocks a worker: 1.6 GB, fits
    note = spill_notes([gib, 2 * gib], [block] * 20)[0]  # the smaller worker: 640 MB
    assert note.startswith("the blocks take 1.3 GB, 671 MB of them on one worker, but a "
                           "worker holds 584 MB before it spills (60% of its 1.1 GB memory "
                           "limit, or 70% of it less the 168 MB the worker itself takes)")

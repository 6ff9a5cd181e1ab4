"""Zarr stores at fsspec URLs (issue 20, part 2): prepare --out URL.zarr, train and eval on
it, the same checks as a local store, the same numbers, and --storage-option reaching the
reader, the writer and the Dask workers, its values never printed nor saved. fsspec's
memory:// and file://, and a local S3 server (moto's, on loopback) when it is installed."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import zipfile

import numpy as np
import pytest
from conftest import dask_cluster, free_port

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("zarr")

SECRET = "hunter2-very-secret-value"
FAST = ["--engine", "stream", "--form", "primal", "--dtype", "float64", "--iters", "30"]


def _one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "unexpected" not in err and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def mem():
    """A fresh memory:// URL for a store, removed (with anything beside it) at the end."""
    fs = fsspec.filesystem("memory")
    name = f"t{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}/x.zarr"
    with contextlib.suppress(FileNotFoundError):
        fs.rm(f"/{name}", recursive=True)


def _weights(path):
    with np.load(path) as z:
        return z["w"], float(z["b"]), z["costs"], json.loads(str(z["meta"]))


def _same_run(cli, a, b, tmp_path, *more):
    """Train on stores a and b with the same settings: the same weights, bit for bit."""
    out = []
    for i, data in enumerate((a, b)):
        model = tmp_path / f"m{i}-{uuid.uuid4().hex[:6]}.npz"
        code, _, err = cli(["train", data, *FAST, *more, "--out", model])
        assert code == 0, err
        out.append(_weights(model))
    (wa, ba, ca, _), (wb, bb, cb, meta) = out
    assert np.array_equal(wa, wb) and ba == bb and np.array_equal(ca, cb)
    return meta


def _eval(cli, model, data=None, *more):
    code, out, err = cli(["eval", *([data] if data else []), "--model", model, "--json", *more])
    assert code == 0, err
    doc = json.loads(out)
    return {k: v for k, v in doc.items() if k not in ("data", "model")}


# ---------------------------------------------------------------- memory:// and file://

def test_a_store_in_memory_trains_and_evaluates_as_the_local_store(cli, small_folder, tmp_path,
                                                                    mem):
    os.chdir(tmp_path)
    local = tmp_path / "local.zarr"
    for out in (local, mem):
        code, _, err = cli(["prepare", small_folder, "--out", out])
        assert code == 0, err
    assert not [p for p in os.listdir(tmp_path) if ":" in p]  # no ./memory:/...
    fs = fsspec.filesystem("memory")
    assert fs.isfile("/" + mem[len("memory://"):] + "/zarr.json")
    assert not [p for p in fs.ls(os.path.dirname("/" + mem[len("memory://"):])) if ".tmp" in p]
    for engine in ("stream", "memory"):
        meta = _same_run(cli, local, mem, tmp_path, "--engine", engine)
        assert meta["data"] == mem and meta["engine"] == engine  # the URL as given
    # eval on the recorded data (the URL) and on the URL given: the local store's figures
    cli(["train", local, *FAST, "--out", tmp_path / "l.npz"])
    cli(["train", mem, *FAST, "--out", tmp_path / "r.npz"])
    assert _eval(cli, tmp_path / "r.npz") == _eval(cli, tmp_path / "l.npz")
    assert _eval(cli, tmp_path / "l.npz", mem) == _eval(cli, tmp_path / "l.npz", local)


def test_a_file_url_is_the_local_path(cli, small_folder, tmp_path):
    os.chdir(tmp_path)
    url = f"file://{tmp_path}/viaurl.zarr"
    code, _, err = cli(["prepare", small_folder, "--out", url])
    assert code == 0, err
    assert (tmp_path / "viaurl.zarr" / "zarr.json").is_file()
    meta = _same_run(cli, tmp_path / "viaurl.zarr", url, tmp_path)
    assert meta["data"] == url
    # it is a path: the output guard sees it as one (an input is not replaced)
    code, _, err = cli(["train", url, *FAST, "--out", f"{tmp_path}/viaurl.zarr/m.npz"])
    assert code == 2 and "lies inside the input folder" in _one_line(err)


def test_replacing_a_store_at_a_url_and_a_failed_prepare_leaves_the_old_one(cli, small_folder,
                                                                             tmp_path, mem):
    fs = fsspec.filesystem("memory")
    root = "/" + mem[len("memory://"):]
    assert cli(["prepare", small_folder, "--out", mem])[0] == 0
    before = {p: fs.cat_file(p) for p in fs.find(root)}
    (small_folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    code, _, err = cli(["prepare", small_folder, "--out", mem, "--strict"])
    assert code == 1 and _one_line(err)
    assert {p: fs.cat_file(p) for p in fs.find(root)} == before
    assert not [p for p in fs.ls(os.path.dirname(root)) if ".tmp" in p]  # its temporary gone
    (small_folder / "cat" / "broken.jpg").unlink()
    code, out, err = cli(["prepare", small_folder, "--out", mem, "--seed", "7"])
    assert code == 0, err
    assert {p: fs.cat_file(p) for p in fs.find(root)} != before  # replaced: catlr's own


def test_a_prepare_killed_at_a_url_leaves_no_store_and_its_temporary_goes(tmp_path, small_folder):
    """What a prepare killed with SIGKILL leaves (a temporary prefix of a dead process, no
    store) is removed by the next write there; a write that fails leaves no store and no
    temporary. memory:// stands in for object storage: the writer of s3:// too
    (files.remote.remote_folder)."""
    from catlr.files import outputs, remote

    fs = fsspec.filesystem("memory")
    base = f"/k{uuid.uuid4().hex[:8]}"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = f"{base}/.x.zarr.{outputs._HOST}.{dead.pid}-{'0' * 16}.tmp"
    fs.pipe_file(f"{stale}/train_set_x/zarr.json", b"{}")
    other = f"{base}/.x.zarr.{outputs._HOST}.{os.getpid()}-{'1' * 16}.tmp"  # alive: kept
    fs.pipe_file(f"{other}/zarr.json", b"{}")
    try:
        with pytest.raises(RuntimeError):
            with remote.remote_folder(f"memory:/{base}/x.zarr", "zarr") as tmp:
                assert not fs.exists(stale) and fs.exists(other)
                fs.pipe_file(tmp[len("memory://"):] + "/zarr.json", b"{}")
                raise RuntimeError("interrupted")
        assert not fs.exists(f"{base}/x.zarr") and fs.ls(base, detail=False) == [other]
    finally:
        fs.rm(base, recursive=True)


def test_a_copy_into_a_url_cut_short_is_no_store_and_is_replaced(cli, small_folder, mem,
                                                                   monkeypatch):
    from fsspec.implementations.memory import MemoryFileSystem

    assert cli(["prepare", small_folder, "--out", mem])[0] == 0
    copy, calls = MemoryFileSystem.cp_file, []

    def failing(self, path1, path2, **kw):  # the connection drops after a few keys
        calls.append(path2)
        if len(calls) > 3:
            raise ConnectionResetError("connection reset by peer")
        return copy(self, path1, path2, **kw)

    monkeypatch.setattr(MemoryFileSystem, "cp_file", failing)
    code, _, err = cli(["prepare", small_folder, "--out", mem])
    assert code == 1 and f"{mem} cannot be written: ConnectionResetError" in _one_line(err)
    monkeypatch.setattr(MemoryFileSystem, "cp_file", copy)
    code, _, err = cli(["train", mem, "--iters", "2"])
    assert code == 1 and "is a store catlr was writing when it stopped" in _one_line(err)
    assert cli(["prepare", small_folder, "--out", mem])[0] == 0  # still catlr's own
    code, _, err = cli(["train", mem, *FAST, "--out", "m.npz"])
    assert code == 0, err
    assert not fsspec.filesystem("memory").exists("/" + mem[len("memory://"):] + "/.catlr-partial")


def test_a_url_holding_something_else_is_not_replaced(cli, small_folder, mem):
    fs = fsspec.filesystem("memory")
    root = "/" + mem[len("memory://"):]
    fs.pipe_file(f"{root}/notes.txt", b"my notes")
    code, _, err = cli(["prepare", small_folder, "--out", mem])
    assert code == 2 and "is not a Zarr store written by catlr" in _one_line(err)
    assert fs.find(root) == [f"{root}/notes.txt"]


def test_memory_with_the_dask_engine_is_one_line(cli, small_folder, mem):
    assert cli(["prepare", small_folder, "--out", mem])[0] == 0
    start = time.monotonic()
    code, _, err = cli(["train", mem, "--engine", "dask", "--iters", "2"])
    line = _one_line(err)
    assert code == 1 and "memory:// lives in this process; the Dask workers cannot see it" in line
    assert "file:// or s3://" in line and time.monotonic() - start < 30  # no cluster started


# ---- a hostile store at a URL: the refusals of a local one (tests/test_hostile3.py)

@pytest.mark.parametrize("case,message", [
    ("malformed-json", "the metadata of train_set_x (train_set_x/zarr.json) is malformed"),
    ("unknown-codec", "has metadata catlr cannot use (codecs ['bytes', 'blosc']"),
    ("missing-chunk", "1 of its 1 chunks are missing: missing data is not zeros"),
    ("corrupt-chunk", "is not a zstd frame with its size"),
    ("chunk-larger-than-its-array", "decompresses to"),
    ("version-2", "is a Zarr version 2 store"),
])
def test_a_damaged_store_at_a_url_is_one_line(cli, small_folder, tmp_path, mem, case, message):
    assert cli(["prepare", small_folder, "--out", mem])[0] == 0
    fs = fsspec.filesystem("memory")
    root = "/" + mem[len("memory://"):]
    meta_key = f"{root}/train_set_x/zarr.json"
    chunk = sorted(p for p in fs.find(f"{root}/train_set_x") if "/c/" in p)[0]
    if case == "malformed-json":
        fs.pipe_file(meta_key, b'{"shape": [1, ')
    elif case == "unknown-codec":
        meta = json.loads(fs.cat_file(meta_key))
        meta["codecs"] = [{"name": "bytes"}, {"name": "blosc", "configuration": {}}]
        fs.pipe_file(meta_key, json.dumps(meta).encode())
    elif case == "missing-chunk":
        fs.rm_file(chunk)
    elif case == "corrupt-chunk":
        fs.pipe_file(chunk, os.urandom(300))
    elif case == "chunk-larger-than-its-array":
        import numcodecs

        fs.pipe_file(chunk, numcodecs.Zstd(level=1).encode(np.zeros(20 << 20, np.uint8)))
    elif case == "version-2":
        fs.rm_file(f"{root}/zarr.json")
        fs.pipe_file(f"{root}/.zgroup", b'{"zarr_format": 2}')
    for engine in ("memory", "stream"):
        code, _, err = cli(["train", mem, "--engine", engine, "--form", "primal", "--iters",
                            "2", "--out", tmp_path / "m.npz"])
        assert code == 1 and message in _one_line(err), err
        assert mem in err
    assert not (tmp_path / "m.npz").exists()


def test_photos_at_a_url_are_one_line(cli, tmp_path):
    code, _, err = cli(["prepare", "s3://bucket/photos", "--out", tmp_path / "x.zarr"])
    assert code == 2 and "s3://bucket/photos is a URL: catlr prepares photos from a local" in \
        _one_line(err)
    code, _, err = cli(["train", "memory://photos", "--iters", "2"])
    assert code == 2 and "memory://photos is a URL: catlr reads only Zarr stores" in \
        _one_line(err)


def test_a_missing_store_at_a_url_is_one_line(cli, tmp_path):
    code, _, err = cli(["train", "memory://nowhere/x.zarr", "--iters", "2"])
    assert code == 1 and "memory://nowhere/x.zarr does not exist" in _one_line(err)


@pytest.mark.parametrize("url,fix", [("nope://b/x.zarr", "knows no filesystem for nope://"),
                                     ("gs://b/x.zarr", "pip install gcsfs")])
def test_a_protocol_catlr_cannot_reach_is_one_line(cli, tmp_path, url, fix):
    pytest.importorskip("fsspec")
    if url.startswith("gs:"):
        try:
            import gcsfs  # noqa: F401
            pytest.skip("gcsfs is installed here")
        except ImportError:
            pass
    code, _, err = cli(["train", url, "--iters", "2"])
    assert code == 1 and fix in _one_line(err), err
    code, _, err = cli(["prepare", tmp_path, "--out", url])
    assert code == 1 and fix in _one_line(err), err


# ---------------------------------------------------------------- --storage-option

def test_storage_options_are_toml_scalars_or_text():
    from catlr.config import parse_storage_options, resolve

    assert parse_storage_options(["endpoint_url=http://127.0.0.1:9000", "anon=true",
                                  "max_concurrency=4", 'key="0123"', "secret=a=b c"]) == {
        "endpoint_url": "http://127.0.0.1:9000", "anon": True, "max_concurrency": 4,
        "key": "0123", "secret": "a=b c"}
    cfg = resolve(storage_options=["region_name=eu-west-1"])
    assert cfg["storage_options"] == {"region_name": "eu-west-1"}


def test_a_storage_option_without_a_value_is_one_line_without_it(cli):
    code, _, err = cli(["train", "memory://x.zarr", "--storage-option", SECRET])
    assert code == 2 and "--storage-option takes KEY=VALUE" in _one_line(err)
    assert SECRET not in err


def test_storage_options_from_a_config_file_never_printed_nor_saved(cli, small_folder, tmp_path,
                                                                    mem):
    os.chdir(tmp_path)
    assert cli(["prepare", small_folder, "--out", mem, "--storage-option",
                f"secret={SECRET}"])[0] == 0
    config = tmp_path / "c.toml"
    config.write_text(f'iters = 5\nstorage_options = {{secret = "{SECRET}", anon = false}}\n')
    code, out, err = cli(["train", mem, "--config", config, "-v", "--name", "exp"])
    assert code == 0, err
    assert SECRET not in out + err
    for path in (tmp_path / "runs" / "exp").iterdir():
        data = path.read_bytes()
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as z:
                data = b"".join(z.read(n) for n in z.namelist())
        assert SECRET.encode() not in data and b"storage_options" not in data, path
    code, _, err = cli(["train", mem, "--config", tmp_path / "runs" / "exp" / "config.toml",
                        "--out", tmp_path / "again.npz"])  # the run's config is a config
    assert code == 0, err
    bad = tmp_path / "bad.toml"
    bad.write_text(f'storage_options = {{secret = ["{SECRET}"]}}\n')
    code, _, err = cli(["train", mem, "--config", bad])
    assert code == 1 and "storage_options option secret must be a string" in _one_line(err)
    assert SECRET not in err


# ---------------------------------------------------------------- S3, on a local server

def _moto():
    try:
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as e:
        pytest.skip(f"moto[server] and s3fs are not installed ({e}): pip install "
                    "\"moto[server]\" s3fs")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server as a subprocess on a free loopback port (ready within 60 s, stopped
    at the end), its request log in a file; yields (endpoint, log path)."""
    _moto()
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "requests.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                 str(port)], stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"moto's server did not start: {log.read_text()[-500:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.kill()
        proc.wait(20)


def _opts(endpoint, secret=SECRET):
    return ["--storage-option", f"endpoint_url={endpoint}", "--storage-option", "key=testing",
            "--storage-option", f"secret={secret}"]


@pytest.fixture
def bucket(s3):
    import s3fs

    endpoint, _ = s3
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret=SECRET,
                           skip_instance_cache=True)
    name = f"b{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    return name


def test_a_store_on_s3_trains_as_the_local_store(cli, small_folder, tmp_path, s3, bucket):
    endpoint, log = s3
    url = f"s3://{bucket}/x.zarr"
    code, out, err = cli(["prepare", small_folder, "--out", url, *_opts(endpoint)])
    assert code == 0, err
    assert SECRET not in out + err
    local = tmp_path / "local.zarr"
    assert cli(["prepare", small_folder, "--out", local])[0] == 0
    model = tmp_path / "m.npz"
    code, out, err = cli(["train", url, *FAST, "-v", "--out", model, *_opts(endpoint)])
    assert code == 0, err
    assert SECRET not in out + err
    code, _, err = cli(["train", local, *FAST, "--out", tmp_path / "l.npz"])
    wa, ba, _, meta = _weights(model)
    wb, bb, _, _ = _weights(tmp_path / "l.npz")
    assert np.array_equal(wa, wb) and ba == bb and meta["data"] == url
    assert SECRET.encode() not in model.read_bytes()
    # eval on the recorded URL needs the options again (they are not saved)
    assert _eval(cli, model, None, *_opts(endpoint)) == _eval(cli, tmp_path / "l.npz")
    code, _, err = cli(["eval", "--model", model])
    assert code == 1 and url in _one_line(err) and SECRET not in err


def test_s3_faults_are_one_line_naming_the_url(cli, small_folder, tmp_path, s3, bucket,
                                               monkeypatch):
    endpoint, _ = s3
    url = f"s3://{bucket}/x.zarr"
    assert cli(["prepare", small_folder, "--out", url, *_opts(endpoint)])[0] == 0
    # nothing listens at the endpoint: seconds, not a minute of retries
    dead = f"http://127.0.0.1:{free_port()}"
    for args in (["train", url, "--iters", "2"], ["prepare", small_folder, "--out", url]):
        start = time.monotonic()
        code, _, err = cli([*args, *_opts(dead)])
        line = _one_line(err)
        assert code == 1 and url in line and "Could not connect" in line, err
        assert SECRET not in err and time.monotonic() - start < 30
    # no such bucket, no such store
    for missing in (f"s3://{bucket}-none/x.zarr", f"s3://{bucket}/other.zarr"):
        code, _, err = cli(["train", missing, "--iters", "2", *_opts(endpoint)])
        assert code == 1 and f"{missing} does not exist" in _one_line(err), err
    # a store somewhere it may not be written: into a bucket that is not there
    code, _, err = cli(["prepare", small_folder, "--out", f"s3://{bucket}-none/y.zarr",
                        *_opts(endpoint)])
    assert code == 1 and f"s3://{bucket}-none/y.zarr cannot be written" in _one_line(err)
    # no credentials at all (none in the environment, no metadata service to ask)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, _, err = cli(["train", url, "--iters", "2", "--storage-option",
                        f"endpoint_url={endpoint}"])
    line = _one_line(err)
    assert code == 1 and url in line and "credentials" in line, err


def test_an_hdf5_file_on_s3_is_refused_before_any_request(cli, small_folder, s3):
    endpoint, _ = s3
    code, _, err = cli(["prepare", small_folder, "--out", "s3://b/x.h5", *_opts(endpoint)])
    assert code == 2 and "HDF5 files must be local" in _one_line(err)


@pytest.mark.slow
def test_dask_workers_read_the_store_on_s3_with_the_options(tmp_path, small_folder, s3, bucket):
    """A real scheduler and workers (separate processes): each opens the s3:// URL itself
    with the client's storage options; the iterates are the stream engine's."""
    endpoint, log = s3
    url = f"s3://{bucket}/x.zarr"

    def catlr(*args):
        r = subprocess.run([sys.executable, "-m", "catlr", *map(str, args)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=240)
        return r.returncode, r.stdout, r.stderr

    code, _, err = catlr("prepare", small_folder, "--out", url, *_opts(endpoint))
    assert code == 0, err
    code, _, err = catlr("train", url, *FAST, "--out", tmp_path / "s.npz", *_opts(endpoint))
    assert code == 0, err
    with dask_cluster(tmp_path, workers=2) as c:
        seen = log.read_text().count("/train_set_x/c/")
        code, out, err = catlr("train", url, *FAST[2:], "--engine", "dask", "--scheduler",
                               c.address, "-v", "--out", tmp_path / "d.npz", *_opts(endpoint))
        assert code == 0, err
        assert SECRET not in out + err
        # the workers read the training pixels from the server (the client reads none)
        assert log.read_text().count("/train_set_x/c/") > seen
    wa, ba, ca, meta = _weights(tmp_path / "d.npz")
    wb, bb, cb, _ = _weights(tmp_path / "s.npz")
    assert meta["engine"] == "dask" and meta["data"] == url
    np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ca, cb, rtol=1e-10)


@pytest.mark.slow
def test_a_worker_that_cannot_reach_the_store_is_named(tmp_path, small_folder, s3, bucket):
    """The store on S3 seen by the client; a worker whose network has no such endpoint (a
    proxy variable pointing at nothing) is named before any work."""
    endpoint, _ = s3
    url = f"s3://{bucket}/x.zarr"
    r = subprocess.run([sys.executable, "-m", "catlr", "prepare", small_folder, "--out", url,
                        *_opts(endpoint)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    dead = f"http://127.0.0.1:{free_port()}"
    with dask_cluster(tmp_path, workers=1, env={"HTTP_PROXY": dead, "http_proxy": dead,
                                                "NO_PROXY": "", "no_proxy": ""}) as c:
        r = subprocess.run([sys.executable, "-m", "catlr", "train", url, *FAST[2:],
                            "--engine", "dask", "--scheduler", c.address, *_opts(endpoint)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=240,
                           env={k: v for k, v in os.environ.items()
                                if k.lower() not in ("http_proxy", "https_proxy")})
    line = _one_line(r.stderr)
    assert r.returncode == 1 and f"cannot open {url}" in line and "worker tcp://" in line, line
    assert "ProxyConnectionError" in line and "opens the URL itself" in line
    assert SECRET not in r.stderr


def test_a_secret_is_blanked_before_a_message_is_cut_and_never_in_a_tasks_repr():
    """A library's error holding the secret near the cut: blanked first, so no half of it
    is left; the options that travel to Dask's workers (who log a failed task's
    arguments by their repr) show no secret either."""
    from catlr.files import storage

    secret = "hunter2-very-secret"
    e = OSError("x" * 150 + f"{secret} did not match")  # the cut at 160 falls inside it
    text = str(storage.failure("s3://b/x.zarr", e, {"secret": secret}))
    assert "hunter" not in text and "***" in text, text
    options = storage.Options({"secret": secret, "endpoint_url": "http://127.0.0.1:9"})
    assert secret not in repr(options) and "endpoint_url=http://127.0.0.1:9" in repr(options)
    assert secret not in repr((["s3://b/x.zarr", 1], options)) and dict(options)["secret"] == secret

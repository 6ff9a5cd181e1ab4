"""The dask engine: blocks of X kept in a cluster's workers, the products run there.

Each block of examples is read by a worker itself from the prepared file (every worker
must reach its path) and kept in that worker's memory as the uint8 pixels it read (a
quarter of float32's bytes, so a cluster holds 4 times more images before it spills).
An iteration is one task per block (design.block_gradient, the same update rule as
every other engine, running the fused products on the pixels: kernels.py, on one core
per worker) and a tree reduction of their (n_x,) gradients; only w (n_x floats) goes
out, folded by 1 / 255 in each task (n_x divisions beside the block's k n_x products),
and one gradient comes back. A block lost with its worker is read
again from the file by Dask, so the result does not change. Needs the optional
extra: pip install "catlr[dask]".
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from importlib import metadata

import numpy as np
from distributed import Client, LocalCluster
from distributed.versions import VersionMismatchWarning

from ..config import parse_address
from ..errors import CatlrError, EngineLost, describe
from ..events import Notice, ignore
from ..files import storage
from ..files.containers import open_container
from ..learn.design import Design, block_gradient, block_scores

BLOCK_BYTES = 64 << 20  # per task: large enough that scheduling stays a small share
PIXEL_BYTES = 1         # a block's bytes per pixel: uint8 (the memory note, the block size)
WORKER_BYTES = 160 << 20  # a worker process's own memory once it has read a block and run
                          # numba's kernels: 150 MB measured (bench/README.md, Cluster)
# Dask's own log lines (tracebacks of a peer it cannot read, a worker lost) are not
# catlr's output: what matters reaches the user as catlr's one line
def _quiet_dask():
    # levels that distributed's config gave its loggers (distributed.client: a traceback at
    # ERROR when the scheduler goes) and the handler they all propagate to
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name == "distributed" or name.startswith("distributed."):
            logger = logging.getLogger(name)
            logger.setLevel(logging.CRITICAL + 1)
            for handler in logger.handlers:
                handler.setLevel(logging.CRITICAL + 1)


_quiet_dask()
# check_workers says which worker has which version, in catlr's one line
warnings.filterwarnings("ignore", category=VersionMismatchWarning)
PROBE_SECONDS = 5       # to connect to a scheduler and hear it speak
MAX_HANDSHAKE = 1 << 20  # bytes a scheduler's first message may take: a few hundred in fact
WORKER_SECONDS = 30     # a scheduler with no worker: how long to wait for the first


def probe(address: str, seconds: float = PROBE_SECONDS) -> None:
    """Check that a Dask scheduler answers at `address` before Dask connects: one line
    when nothing listens, when it does not answer in time, or when what answers does not
    speak Dask's protocol (its first message is read with a bound, never allocated from
    the length the peer claims)."""
    scheme, host, port = parse_address(address)
    where = f"{scheme}://{host}:{port}"
    fix = "start one with 'dask scheduler' (and 'dask worker ADDRESS'), or drop --scheduler"
    try:
        sock = socket.create_connection((host, port), timeout=seconds)
    except ConnectionRefusedError:
        raise CatlrError(f"no Dask scheduler answers at {where} (connection refused), "
                         f"{fix}") from None
    except socket.timeout:
        raise CatlrError(f"{where} did not accept a connection within {seconds:g} s, check "
                         f"the address and the network, or {fix}") from None
    except OSError as e:
        raise CatlrError(f"cannot reach {where} ({e.strerror or e}), check the address, or "
                         f"{fix}") from None
    if scheme == "tls":  # the handshake is encrypted: that it accepts must do here
        sock.close()
        return
    not_dask = (f"{where} answers, but not as a Dask scheduler, check the address (the "
                "scheduler's port is 8786 by default)")
    with sock:
        deadline = time.monotonic() + seconds

        def read(n):
            data = b""
            while len(data) < n:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    part = sock.recv(n - len(data))
                except socket.timeout:
                    raise CatlrError(f"{where} accepted the connection but sent nothing a Dask "
                                     f"scheduler sends within {seconds:g} s, check the "
                                     "address") from None
                except OSError:
                    part = b""
                if not part:
                    raise CatlrError(not_dask)
                data += part
            return data

        (size,) = struct.unpack("<Q", read(8))
        if not 16 <= size <= MAX_HANDSHAKE:
            raise CatlrError(not_dask)
        body = read(size)
        (frames,) = struct.unpack("<Q", body[:8])
        lengths = struct.unpack(f"<{frames}Q", body[8:8 + 8 * frames]) if frames <= 64 else ()
        if not 1 <= frames <= 64 or 8 + 8 * frames + sum(lengths) > size:
            raise CatlrError(not_dask)
        if not _handshake(body[8 + 8 * frames:], lengths):
            raise CatlrError(not_dask)


def _handshake(payload: bytes, lengths) -> bool:
    """Whether one of the frames is a Dask handshake: a msgpack map naming the peer's
    python and compression (read from at most MAX_HANDSHAKE bytes, no objects built from
    anything but msgpack's plain types)."""
    import msgpack

    at = 0
    for n in lengths:
        frame, at = payload[at:at + n], at + n
        try:
            msg = msgpack.unpackb(frame, raw=False, strict_map_key=False, max_bin_len=1 << 16,
                                  max_str_len=1 << 16, max_array_len=1024, max_map_len=1024)
        except Exception:  # not msgpack, or not this frame
            continue
        if isinstance(msg, dict) and {"compression", "python"} <= set(map(str, msg)):
            return True
    return False


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _remote(e: BaseException) -> str:
    """'ModuleNotFoundError: No module named ...' from what client.run hands back for a
    worker's exception (its repr, wrapped in a plain Exception, when it was not sent as
    itself)."""
    import re

    text = str(e).strip()
    found = re.fullmatch(r"(\w+)\((['\"])(.*)\2,?\)", text, re.S)
    if type(e) is Exception and found:
        return f"{found[1]}: {describe(found[3])}"
    return f"{type(e).__name__}: {describe(e)}"


def worker_probe(path, key, storage_options=None):
    """On a worker: the catlr and numpy it imports, and the shape of the pixels it sees at
    `path` (a URL: with `storage_options`) or why it cannot open them. Sent by reference to
    catlr, so a worker that cannot import catlr fails to run it."""
    from ..version import __version__

    seen = {"catlr": __version__, "numpy": np.__version__}
    if "://" not in path and not os.path.exists(path):
        return {**seen, "error": "no such file or folder on that worker"}
    try:
        with open_container(path, storage_options=storage_options) as c:
            return {**seen, "shape": [int(n) for n in c.pixels(key).shape]}
    except Exception as e:  # the reason, for the client's one line (which names the path)
        text = str(e).strip()
        text = text[len(str(path)):].lstrip(" :,") if text.startswith(str(path)) else text
        return {**seen, "error": describe(text or e, 120)}


def check_workers(client, where, path, key, shape, blocks, storage_options=None) -> list[str]:
    """Before the first iteration, small tasks on every worker of `client`: catlr and numpy
    at this client's versions, importable, and the data at `path` seen with the client's
    `shape` (the stored array's). A worker that fails is a CatlrError naming it and each of
    its problems (its tasks would fail, and a run whose every worker fails would hang).
    Returns notices: blocks (`blocks`: each one's bytes) that the workers' memory limits
    cannot hold (every iteration then reads them back from disk; spill_notes).
    """
    try:
        client.wait_for_workers(1, timeout=WORKER_SECONDS)
    except TimeoutError:
        raise CatlrError(f"the Dask scheduler at {where} has no workers (waited "
                         f"{WORKER_SECONDS} s), start some with 'dask worker {where}'") from None
    workers = client.scheduler_info()["workers"]
    facts = _Facts(client, workers, path, key, storage_options)
    for find, fix in ((facts.environment, facts.environment_fix), (facts.blind, facts.blind_fix),
                      (facts.other_data, lambda: "every worker must see the same data at the "
                                                 "client's path")):
        problems = find(shape)
        if problems:
            more = (f" (and {len(problems) - 1} more of {len(workers)} workers)"
                    if len(problems) > 1 else "")
            raise CatlrError(f"{problems[0]}{more}, {fix()}")
    return spill_notes([int(info.get("memory_limit") or 0) for info in workers.values()],
                       blocks)


class _Facts:
    """What check_workers learns from the workers, and the problems each one has: one line
    per worker (naming every problem it has), in the workers' order."""

    def __init__(self, client, workers, path, key, storage_options):
        from ..version import __version__

        self.path = path
        self.here = {"catlr": __version__, "numpy": np.__version__}
        # what is installed, by a function of the standard library that runs on any worker
        # (whatever numpy it has), and what catlr's own probe meets there
        self.installed = {name: client.run(metadata.version, name, on_error="return")
                          for name in self.here}
        self.seen = client.run(worker_probe, path, key, storage_options, on_error="return")
        self.workers = sorted(self.seen) or sorted(workers)

    def _versions(self, w) -> list[str]:
        """'has numpy 9.9.9' for each package at another version than here: as installed,
        or as the probe imported it."""
        probe = self.seen.get(w)
        imported = probe if isinstance(probe, dict) else {}
        found = []
        for name in self.here:
            for v in (self.installed[name].get(w), imported.get(name)):
                if isinstance(v, str) and v != self.here[name] and f"has {name} {v}" not in found:
                    found.append(f"has {name} {v}")
        return found

    def environment(self, shape) -> list[str]:
        """Workers with another catlr or numpy, or that cannot import catlr: both said."""
        out = []
        for w in self.workers:
            said = self._versions(w)
            if isinstance(self.seen.get(w), BaseException):
                said.append(f"cannot import catlr ({_remote(self.seen[w])})")
            if said:
                out.append(f"worker {w} {' and '.join(said)}")
        return out

    def environment_fix(self) -> str:
        want = f"catlr {self.here['catlr']} and numpy {self.here['numpy']}"
        if any(self._versions(w) for w in self.workers):
            return (f"this catlr runs {want}: install them on every worker "
                    f"(pip install catlr=={self.here['catlr']} numpy=={self.here['numpy']})")
        return f"install {want} in the workers' environment"

    def blind(self, shape) -> list[str]:
        return [f"worker {w} cannot open {self.path} ({self.seen[w]['error']})"
                for w in self.workers if "error" in self.seen.get(w, {})]

    def blind_fix(self) -> str:
        if "://" in self.path:
            return ("every worker opens the URL itself with the client's --storage-option "
                    "values: check that the workers reach the endpoint and the bucket")
        return ("every worker reads the data itself at the client's path: put it there on "
                "each worker's machine, or on a filesystem they share")

    def other_data(self, shape) -> list[str]:
        return [f"worker {w} sees another file at {self.path} ({self.seen[w]['shape'][0]} "
                f"images, not {shape[0]})" for w in self.workers
                if self.seen.get(w, {}).get("shape", list(shape)) != list(shape)]


def spill_notes(limits, blocks) -> list[str]:
    """A note when the workers will spill blocks to disk, predicted from their memory
    limits and the blocks' sizes (not from what they happen to use when asked): Dask
    spreads the blocks evenly, and a worker keeps its blocks in memory up to `target` of
    its limit (Dask's config), and its whole process up to `spill` of it; the process
    itself takes about WORKER_BYTES (Python, Dask, NumPy, catlr, numba). A worker without
    a limit holds everything."""
    if not blocks or not limits or min(limits) <= 0:
        return []
    import dask

    target = dask.config.get("distributed.worker.memory.target") or 1.0
    spill = dask.config.get("distributed.worker.memory.spill") or target
    share = sum(sorted(blocks, reverse=True)[:math.ceil(len(blocks) / len(limits))])
    holds = [max(0.0, min(target * n, spill * n - WORKER_BYTES)) for n in limits]
    if share <= min(holds):
        return []
    least = min(range(len(limits)), key=holds.__getitem__)
    return [f"the blocks take {_size(sum(blocks))}, {_size(share)} of them on one worker, but "
            f"a worker holds {_size(holds[least])} before it spills ({target * 100:g}% of its "
            f"{_size(limits[least])} memory limit, or {spill * 100:g}% of it less the "
            f"{_size(WORKER_BYTES)} the worker itself takes): every iteration will read the "
            "rest back from disk; add workers, give them a larger --memory-limit, or use "
            "--engine stream"]


class LocalWorkers:
    """A local cluster: a scheduler in this process and one `dask worker` process per core,
    each in a session of its own. Ctrl-C in a terminal reaches the whole foreground process
    group; the workers are not in it, so only catlr answers (with one line), and catlr stops
    them when it closes. They are real worker processes, as on a hand-started cluster, and
    exit by themselves if catlr is killed (their scheduler gone for DEATH_SECONDS)."""

    DEATH_SECONDS = 20
    START_SECONDS = 120

    def __init__(self, n_workers: int, memory: int):
        import tempfile

        self.procs, self.client = [], None
        self.cluster = LocalCluster(n_workers=0, dashboard_address="127.0.0.1:0",
                                    silence_logs=logging.CRITICAL)
        self.logs = tempfile.mkdtemp(prefix="catlr-dask-")
        try:
            for k in range(n_workers):
                with open(os.path.join(self.logs, f"worker-{k}.log"), "wb") as log:
                    self.procs.append(subprocess.Popen(
                        [sys.executable, "-m", "distributed.cli.dask_worker",
                         self.cluster.scheduler_address, "--nthreads", "1",
                         "--memory-limit", str(memory // n_workers), "--no-dashboard",
                         "--death-timeout", str(self.DEATH_SECONDS), "--name", f"catlr-{k}"],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                        start_new_session=True))
            self.client = Client(self.cluster)
            self.client.wait_for_workers(n_workers, timeout=self.START_SECONDS)
        except (TimeoutError, OSError) as e:
            words = self._last_words()
            self.close()
            raise CatlrError(f"the local Dask workers did not start ({describe(e)}"
                             f"{': ' + words if words else ''}), check that Dask is installed "
                             "with: pip install \"catlr[dask]\"") from None
        except BaseException:
            self.close()
            raise

    def _last_words(self) -> str:
        for name in sorted(os.listdir(self.logs)):
            with open(os.path.join(self.logs, name), "rb") as f:
                lines = f.read()[-4000:].decode("utf-8", "replace").strip().splitlines()
            errors = [line for line in lines if "Error" in line]
            if errors:
                return errors[-1].strip()[:120]
        return ""

    def close(self):
        import shutil

        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        for p in self.procs:
            with contextlib.suppress(OSError):
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with contextlib.suppress(Exception):
            self.cluster.close()
        shutil.rmtree(self.logs, ignore_errors=True)


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


KEEP_OPEN = 4  # containers a worker keeps open: the runs it served last
_open: dict = {}   # (path, options, run) -> the open container, in the worker process
_opening = threading.Lock()


def _container(path, storage_options, run):
    """The container at `path`, opened once per run in this (worker) process: a block task
    does not reopen and relist a store at a URL for every block. `run` (the client's, one
    per run) keeps another run from reading a file replaced since; the oldest of more than
    KEEP_OPEN are dropped (closed once no task reads them)."""
    key = (path, tuple(sorted((storage_options or {}).items())), run)
    with _opening:
        c = _open.pop(key, None)
        if c is None:
            c = open_container(path, storage_options=storage_options)
        _open[key] = c  # the newest last
        while len(_open) > KEEP_OPEN:
            _open.pop(next(iter(_open)))
        return c


def read_block(path, key, start, stop, keep=None, storage_options=None, run=None):
    """The uint8 pixels of X[:, start:stop].T (X = block / 255), read by the worker from
    the HDF5 file or Zarr store (a URL: with `storage_options`) through the same checked
    reader as every other read, opened once per run on each worker (`run`, _container);
    `keep`: the rows of that span that are in (a validation split took the others)."""
    part = np.asarray(_container(path, storage_options, run).pixels(key)[start:stop])
    if keep is not None:
        part = part[keep]
    return np.ascontiguousarray(part.reshape(len(part), -1))


def _add(*parts):
    return tuple(sum(values) for values in zip(*parts))


def _scores(xt, w, b):
    return block_scores(xt, w, b)


class DaskPixels(Design):
    """Images in an HDF5 file (an h5py dataset), as blocks in a Dask cluster's workers."""

    engine = "dask"

    def __init__(self, x, dtype="float32", scheduler=None, n_workers=None, block_bytes=None,
                 memory=None, on_event=ignore):
        index = getattr(x, "index", None)  # datasets.Rows: some rows of a stored array
        base = x.base if index is not None else x
        # an array of an HDF5 file or a Zarr store, from containers.py: where and which
        self.path, self.key = base.path, base.key
        options = getattr(base, "storage_options", None)  # a store at a URL
        self.options = None if options is None else storage.Options(options)
        if "://" not in self.path:
            self.path = os.path.abspath(self.path)
        elif self.path.startswith("memory://"):
            raise CatlrError(f"{self.path}: memory:// lives in this process; the Dask workers "
                             "cannot see it, use file:// or s3:// (or --engine stream)")
        self.m = int(x.shape[0])
        self.n_x = int(np.prod(x.shape[1:], dtype=np.int64))
        self.dtype = np.dtype(dtype)
        if scheduler:
            probe(scheduler)
            try:
                self.cluster, self.client = None, Client(scheduler, timeout=f"{PROBE_SECONDS * 2}s")
            except Exception as e:  # anything a peer that is not quite Dask makes it raise
                raise CatlrError(f"cannot connect to the Dask scheduler at {scheduler} "
                                 f"({type(e).__name__}: {describe(e)}), check that it runs "
                                 "the Dask this catlr has") from None
        else:  # a local cluster of worker processes, the way a user tries it first
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
            self.cluster = LocalWorkers(n_workers or cores, memory or _total_memory())
            self.client = self.cluster.client
        self.on_event = on_event
        k = max(1, (block_bytes or BLOCK_BYTES) // (self.n_x * PIXEL_BYTES))
        self.block_bytes = min(k, self.m) * self.n_x * PIXEL_BYTES
        self.spans = [(s, min(s + k, self.m)) for s in range(0, self.m, k)]
        try:
            # kept: the client lets go of its scheduler (None) once it is lost
            where = self.address = scheduler or self.client.scheduler.address
            for text in check_workers(self.client, where, self.path, self.key, tuple(base.shape),
                                      [(e - s) * self.n_x * PIXEL_BYTES for s, e in self.spans],
                                      self.options):
                on_event(Notice(text))
            self.detail = _dashboard(self.client, local=scheduler is None)
        except BaseException:
            self.close()
            raise
        self.workers = set(self.client.scheduler_info()["workers"])
        self.absent = {}  # workers missing at the last look: address -> iteration
        def span(s, e):  # the stored rows a block reads, and which of them it keeps
            if index is None:
                return s, e, None
            rows = index[s:e]
            return int(rows[0]), int(rows[-1]) + 1, rows - rows[0]

        # the run's own keys: on a cluster shared by runs, another run's blocks (other data
        # under the same dataset name and spans) are never taken for this one's
        run = os.urandom(8).hex()
        self.parts = []
        for s, e in self.spans:
            lo, hi, keep = span(s, e)
            self.parts.append(self.client.submit(
                read_block, self.path, self.key, lo, hi, keep, self.options, run, pure=False,
                key=f"catlr-block-{run}-{self.key}-{s}-{e}"))

    def _reduce(self, futures, fan_in=4):
        """A tree of additions over the workers: no single task sums them all."""
        while len(futures) > 1:
            futures = [self.client.submit(_add, *futures[i:i + fan_in], pure=False)
                       for i in range(0, len(futures), fan_in)]
        return futures[0]

    def gradient(self, w, b, y, s=None):
        # w (n_x floats) and the block's labels travel inside each task: no scatter round
        # trip (cheaper per iteration, bench/scale.py), and nothing a lost worker held that
        # Dask could not compute again
        with self._cluster_faults():
            parts = [self.client.submit(block_gradient, part, y[i:j], w, b,
                                        None if s is None else s[i:j], self.objective,
                                        pure=False)
                     for part, (i, j) in zip(self.parts, self.spans)]
            out = self._reduce(parts).result()
        self._watch_workers()
        return out

    def scores(self, w, b, fast=True):  # the workers run the compiled kernels, always
        with self._cluster_faults():
            return np.concatenate(self.client.gather(
                [self.client.submit(_scores, part, w, b, pure=False) for part in self.parts]))

    def _watch_workers(self):
        """A worker gone since the last look is one line; Dask reads its blocks again
        from the file on the others, so the iterates do not change. A worker is lost
        when it is missing at two looks in a row: one the scheduler lists again at the
        next (it missed its heartbeats on a busy machine, or reconnected) was not lost
        (seen once in CI: a second note, "continuing on 0 workers", in a run that went
        on)."""
        now = set(self.client.scheduler_info()["workers"])
        for gone in sorted(set(self.absent) - now):
            self.on_event(Notice(f"worker {gone} lost at iteration {self.absent[gone]}, "
                                 f"continuing on {len(now)} worker"
                                 f"{'' if len(now) == 1 else 's'}"))
        self.absent = {w: self.iteration for w in self.workers - now}
        self.workers = now

    @contextlib.contextmanager
    def _cluster_faults(self):
        """The scheduler gone (or the connection to it) mid-run: one line (EngineLost),
        not Dask's tracebacks; train says what the last checkpoint holds."""
        from concurrent.futures import CancelledError

        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker

        try:
            yield
        except KilledWorker as e:  # the same block killed worker after worker
            tries = getattr(e, "allowed_failures", None)
            raise CatlrError(f"the Dask workers died running one block"
                             f"{f' ({tries + 1} tried it)' if tries is not None else ''}, "
                             "often a --memory-limit too small for the blocks "
                             f"({_size(self.block_bytes)} each): give the workers more "
                             "memory, add workers, or use --engine stream") from None
        except (CancelledError, CommClosedError, OSError, TimeoutError) as e:
            if not isinstance(e, CancelledError) and self._scheduler_answers():
                raise
            where = getattr(self.client.scheduler, "address", None) or self.address
            raise EngineLost(f"the Dask scheduler at {where} was lost "
                              f"at iteration {self.iteration} ({type(e).__name__})") from None

    def _scheduler_answers(self) -> bool:
        """Whether the scheduler is still there after a connection failed mid-run. The
        client's own status lags behind a scheduler that died (it can still read
        "running" when the gather's stream closes), so ask the scheduler's address."""
        if self.client.status != "running":
            return False
        try:
            probe(getattr(self.client.scheduler, "address", None) or self.address, seconds=2.0)
        except CatlrError:
            return False
        return True

    def worker_pids(self) -> dict:
        return self.client.run(os.getpid)

    def dense(self):
        return self

    def close(self):
        if self.cluster is not None:
            self.cluster.close()
        else:
            self.client.close()


def _dashboard(client, local: bool) -> str:
    """The dashboard's address, only where it works: it needs bokeh where the scheduler
    runs (here for a local cluster)."""
    try:
        if local:
            metadata.version("bokeh")
        else:
            client.run_on_scheduler(metadata.version, "bokeh")
    except Exception:  # no bokeh there: the page would only say so
        return 'Dask dashboard: needs bokeh where the scheduler runs (pip install "bokeh>=3.1")'
    return f"Dask dashboard: {client.dashboard_link}"


def build(x, choice, cfg, on_event=ignore):
    return DaskPixels(x, choice.dtype, scheduler=cfg.get("scheduler") or None,
                      on_event=on_event)

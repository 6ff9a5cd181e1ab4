"""A hand-started cluster: time per iteration of the Dask engine on a scheduler and workers
started as separate processes with memory limits, against the stream engine, side by side
on the same file; each Dask run twice, its blocks kept as uint8 pixels (catlr now) and as
float32 (catlr before issue 22, selected here only: the workers read with a function of
this bench that converts, and blocks take 4 bytes a pixel).

    python bench/cluster.py [--m 20000] [--iters 6] [--limits 2GB 600MB] [--dir DIR]

The file is scale.py's synthetic one (the course's train images flipped, shifted and
noisy). For each --limits value: `dask scheduler` and 2 `dask worker --nthreads 1
--memory-limit LIMIT` processes on loopback, then `catlr train --engine dask --scheduler
ADDRESS` in a fresh process (float32, primal form). Time per iteration is measured
between the Step events of iterations 1 and ITERS - 1 (connecting, the workers' checks
and the first read of the blocks excluded); a worker's memory is its peak RSS (VmHWM)
when training ends. What catlr said of the cluster (its notes: blocks that do not fit)
is printed beside each row.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import compile_catlr, machine
from scale import synthetic_file

CHILD = r"""
import json, sys, time
from catlr import config
from catlr.stages import train
from catlr.events import Notice, Step
path, engine, iters, out, scheduler, blocks = sys.argv[1:7]
iters, marks, notes, result = int(iters), {}, [], {}
def on_event(e):
    if isinstance(e, Step):
        marks[e.i] = time.perf_counter()
    elif isinstance(e, Notice):
        notes.append(e.text)
def peak():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) * 1024
if engine == "dask":
    import catlr.engines.dask as de
    if blocks == "float32":  # before: float32 blocks of the same bytes (64 MB) each
        from catlr.learn.design import normalize
        pixels_of = de.read_block
        def read_float_block(*args, **kw):  # sent by value
            return normalize(pixels_of(*args, **kw), "float32")
        de.read_block, de.PIXEL_BYTES = read_float_block, 4
    real = de.DaskPixels.close
    def close(self):
        result["workers_rss"] = sorted(self.client.run(peak).values())
        real(self)
    de.DaskPixels.close = close
cfg = config.resolve(None, iters=iters, print_every=1, form="primal", dtype="float32",
                     engine=engine, memory="512MB" if engine == "stream" else "64GB",
                     scheduler=scheduler if engine == "dask" else "", checkpoint_every=0)
train.train(path, cfg, out=out, on_event=on_event)
result.update(per_iteration=(marks[iters - 1] - marks[1]) / (iters - 2), notes=notes,
              rss=peak())
print("RESULT", json.dumps(result))
"""


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`dask scheduler` and `dask worker` processes, as a user starts them by hand."""

    def __init__(self, workers: int, limit: str, cwd: Path):
        self.address = f"tcp://127.0.0.1:{_port()}"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": cwd}
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", self.address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)]
        for _ in range(workers):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                 "--nthreads", "1", "--memory-limit", limit, "--no-dashboard",
                 "--host", "127.0.0.1"], **quiet))
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=60)

    def stop(self):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait(30)


def run(path, engine, iters, tmp, scheduler="", blocks="uint8"):
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), engine, str(iters),
                        str(tmp / f"{engine}.npz"), scheduler, blocks], capture_output=True,
                       text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if r.returncode != 0:
        raise SystemExit(f"{engine} failed: {r.stderr[-800:]}")
    return json.loads(r.stdout.rsplit("RESULT ", 1)[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=20000)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limits", nargs="+", default=["2GB", "600MB"])
    ap.add_argument("--dir", type=Path, default=None, help="keep the synthetic file here")
    args = ap.parse_args()
    compile_catlr()
    print(f"Machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = args.dir or tmp
        path = synthetic_file(folder, args.m)
        blocks = args.m * 12288 * 4
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        print(f"m = {args.m} ({args.m * 12288 / 1e9:.2f} GB of uint8, float32 blocks "
              f"{blocks / 1e9:.2f} GB), {args.iters} iterations, {args.workers} workers")
        stream = run(path, "stream", args.iters, tmp)
        print(f"  {'stream (--memory 512MB)':<42} {stream['per_iteration'] * 1000:8.0f} ms per "
              f"iteration   peak RSS {stream['rss'] / 1e6:6,.0f} MB")
        for limit in args.limits:
            for kind in ("float32", "uint8"):  # before, after: each on a fresh cluster
                cluster = Cluster(args.workers, limit, tmp)
                try:
                    t = time.perf_counter()
                    d = run(path, "dask", args.iters, tmp, cluster.address, kind)
                    whole = time.perf_counter() - t
                finally:
                    cluster.stop()
                rss = ", ".join(f"{r / 1e6:,.0f}" for r in d["workers_rss"])
                name = f"dask, {kind} blocks, workers of {limit}"
                print(f"  {name:<42} {d['per_iteration'] * 1000:8.0f} ms per iteration   "
                      f"dask / stream {d['per_iteration'] / stream['per_iteration']:.2f}   "
                      f"workers' peak RSS {rss} MB   whole run {whole:.0f} s")
                for note in d["notes"]:
                    print(f"      catlr: {note}")

if __name__ == "__main__":
    main()

"""Scale: time per iteration and peak memory of each engine, at m = 20,000 and 100,000.

    python bench/scale.py [--sizes 20000 100000] [--iters 5] [--dir DIR]

Writes synthetic prepared files from the course's train images (random horizontal flips,
shifts of up to 4 pixels, noise of up to 8 levels): m = 100,000 is 1.2 GB of uint8. Then,
each in a fresh process, side by side in one run, on the same file:
    memory float64, memory float32   X built in memory once (catlr's in-memory primal form)
    stream                           --engine stream --memory 512MB
    dask                             --engine dask, a local cluster of 2 worker processes
    stream-numpy                     the same without numba's conversion (NumPy's, one core)
    floor                            one pass that reads the uint8 blocks and converts them
                                     to float32 (numba's conversion when installed): what any
                                     engine must at least do per iteration when X does not
                                     stay in memory
Time per iteration is measured between the Step events of iterations 1 and ITERS - 1
(set-up, reading and the cluster's start excluded); peak RSS from /proc/self/status's VmHWM (for
Dask, the client's and the largest worker's). Targets (issue 10): stream <= 1.4 x floor and
peak RSS <= 800 MB at m = 100,000; dask <= 1.5 x stream.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from common import COURSE, compile_catlr, machine

CHILD = r"""
import json, resource, sys, time
import numpy as np
path, engine, dtype, iters = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
out = {}
def peak():  # VmHWM: ru_maxrss would carry over the forking parent's peak on Linux
    try:
        line = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        return int(line.split()[1]) * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if engine == "floor":
    import h5py
    from catlr.engines import stream  # the same conversion the streaming engine uses
    if stream.numba is not None:
        normalize = stream.normalize_into
        out["conversion"] = "numba"
    else:
        from catlr.learn.design import normalize
        out["conversion"] = "numpy"
    with h5py.File(path, "r") as f:
        x = f["train_set_x"]
        k = 64 * 34  # the stream engine's block at --memory 512MB, float32: 2,176 images
        buf = np.empty((k, 12288), np.float32)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            for s in range(0, x.shape[0], k):
                part = x[s:s + k]
                normalize(part.reshape(len(part), -1), buf[:len(part)])
            times.append(time.perf_counter() - t)
    out["per_iteration"] = sorted(times)[1]
else:
    from catlr import config
    from catlr.stages import train
    from catlr.events import Plan, Step
    marks = {}
    def on_event(e):
        if isinstance(e, Step):
            marks[e.i] = time.perf_counter()
        if isinstance(e, Plan):
            out["plan"] = [e.engine, e.dtype, e.why]
    memory = "512MB" if engine == "stream" else "64GB"
    cfg = config.resolve(None, iters=iters, print_every=1, form="primal", dtype=dtype,
                         engine=engine, memory=memory)
    if engine == "stream" and len(sys.argv) > 6 and sys.argv[6] == "numpy":
        sys.modules["numba"] = None  # the streaming engine without numba
    from catlr.engines import stream
    out["conversion"] = "numba" if stream.numba is not None else "numpy"
    if engine == "dask":
        import catlr.engines.dask as de
        real = de.DaskPixels.close
        def close(self):
            out["worker_rss"] = max(self.client.run(peak).values())
            real(self)
        de.DaskPixels.close = close
    train.train(path, cfg, out=sys.argv[5], on_event=on_event)
    out["per_iteration"] = (marks[iters - 1] - marks[1]) / (iters - 2)
out["rss"] = peak()
print("RESULT", json.dumps(out))
"""


def synthetic_file(folder: Path, m: int) -> Path:
    """folder/synthetic-M.h5, made by synthetic() unless a run before kept it (--dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"synthetic-{m}.h5"
    if not path.exists():
        synthetic(path, m)
    return path


def synthetic(path: Path, m: int, seed: int = 0):
    """m images made from the course's: flipped, shifted, noisy; labels kept."""
    with h5py.File(COURSE / "train_catvnoncat.h5", "r") as f:
        base, labels = f["train_set_x"][()], f["train_set_y"][()]
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for split, n in (("train", m), ("test", 1000)):
            x = f.create_dataset(f"{split}_set_x", (n, 64, 64, 3), np.uint8,
                                 chunks=(64, 64, 64, 3))
            y = np.empty(n, np.int64)
            for start in range(0, n, 2000):
                k = min(2000, n - start)
                pick = rng.integers(0, len(base), k)
                imgs = base[pick].copy()
                flip = rng.random(k) < 0.5
                imgs[flip] = imgs[flip][:, :, ::-1]
                dy, dx = rng.integers(-4, 5, 2)
                imgs = np.roll(imgs, (int(dy), int(dx)), axis=(1, 2))
                noise = rng.integers(-8, 9, imgs.shape, dtype=np.int16)
                x[start:start + k] = np.clip(imgs + noise, 0, 255).astype(np.uint8)
                y[start:start + k] = labels[pick]
            f[f"{split}_set_y"] = y


def run(path, engine, dtype, iters, tmp, conversion=""):
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), engine, dtype, str(iters),
                        str(tmp / "m.npz"), conversion], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{engine} {dtype} failed: {r.stderr[-800:]}")
    return json.loads(r.stdout.rsplit("RESULT ", 1)[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="keep the synthetic files here")
    ap.add_argument("--skip", nargs="*", default=[], help="engines to leave out")
    args = ap.parse_args()
    compile_catlr()
    print(f"Machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = args.dir or tmp
        folder.mkdir(parents=True, exist_ok=True)
        for m in args.sizes:
            path = folder / f"synthetic-{m}.h5"
            if not path.exists():
                synthetic(path, m)
            print(f"\nm = {m} ({m * 12288 / 2**30:.2f} GiB of uint8), {args.iters} iterations")
            rows = {}
            for engine, dtype in (("floor", "float32"), ("stream", "float32"),
                                  ("stream-numpy", "float32"), ("memory", "float32"),
                                  ("memory", "float64"), ("dask", "float32")):
                if engine.split("-")[0] in args.skip or engine in args.skip:
                    continue
                r = run(path, engine.split("-")[0], dtype, args.iters, tmp,
                        "numpy" if engine.endswith("numpy") else "")
                rows[(engine, dtype)] = r
                extra = (f", largest worker {r['worker_rss'] / 2**20:,.0f} MB"
                         if "worker_rss" in r else "")
                print(f"  {engine:<13}{dtype:<8} {r['per_iteration'] * 1000:9.1f} ms per "
                      f"iteration   peak RSS {r['rss'] / 2**20:7,.0f} MB{extra}")
            floor = rows.get(("floor", "float32"))
            stream = rows.get(("stream", "float32"))
            plain = rows.get(("stream-numpy", "float32"))
            if stream and plain:
                print(f"  stream with numba / with NumPy's conversion = "
                      f"{stream['per_iteration'] / plain['per_iteration']:.2f}")
            if floor and stream:
                print(f"  stream / floor = {stream['per_iteration'] / floor['per_iteration']:.2f}"
                      f" (target <= 1.4); stream peak RSS {stream['rss'] / 2**20:,.0f} MB "
                      "(target <= 800 MB at m = 100,000)")
            if stream and ("dask", "float32") in rows:
                d = rows[("dask", "float32")]["per_iteration"] / stream["per_iteration"]
                print(f"  dask / stream = {d:.2f} (target <= 1.5)")
            mem32, mem64 = rows.get(("memory", "float32")), rows.get(("memory", "float64"))
            if mem32 and mem64:
                print(f"  memory float32 / float64 = "
                      f"{mem32['per_iteration'] / mem64['per_iteration']:.2f} per iteration, "
                      f"{mem32['rss'] / mem64['rss']:.2f} peak RSS")


if __name__ == "__main__":
    main()

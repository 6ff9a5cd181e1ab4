"""One pass of the primal form (design.gradient: both products over every block), streamed
from the prepared file and in memory, before and after the fused uint8 products (issue 22).

    python bench/stream_pass.py [--m 20000] [--rounds 5] [--dtype float32] [--memory 512MB]
                                [--dir DIR]

The file is scale.py's synthetic one (the course's train images flipped, shifted and
noisy). In one process, the variants alternated round by round (a, b, c, ..., a, b, c,
...), medians:
    stream, converted      the stream engine as it was: each block read, converted to float
                           blocks (numba's division when installed) and multiplied by BLAS
    stream, fused serial   the uint8 blocks read, the products on them (kernels.py), no thread
    stream, fused ahead    the same with the next block read by a second thread (the default)
    read alone             reading the uint8 blocks of one pass, nothing computed
    products alone         the fused products over the same blocks, already in memory
    memory, float32 X      the memory engine as it was: X = pixels / 255 as float32, BLAS
    memory, uint8 fused    the memory engine now: the pixels in memory, the fused products
Blocks as `--engine stream --memory MEMORY` makes them (the budget's block share). Then,
each in a fresh process, the peak RSS (VmHWM) of building each memory engine's X and
running 3 passes. Prints `uptime` first: the machine is shared.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import compile_catlr, machine
from scale import synthetic_file

CHILD = r"""
import sys, numpy as np
from catlr.files.containers import open_container
from catlr.learn.design import Dense, Pixels, normalize
path, which, dtype = sys.argv[1:4]
with open_container(path) as c:
    x = c.pixels("train_set_x")
    m = x.shape[0]
    y = c.labels("train_set_y", m).astype(dtype)
    pixels = np.asarray(x)
design = (Dense(normalize(pixels.reshape(m, -1).T, dtype)) if which == "float" else Pixels(pixels, dtype))
del pixels
w = np.zeros(design.n_x, dtype)
for _ in range(3):
    g, sd, total = design.gradient(w, 0.0, y)
    w -= 1e-6 * g
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print("RSS", int(hwm.split()[1]) * 1024)
"""


def peak_rss(path, which, dtype):
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), which, dtype],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{which} failed: {r.stderr[-800:]}")
    return int(r.stdout.rsplit("RSS ", 1)[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--memory", default="512MB", help="the stream engine's budget")
    ap.add_argument("--dir", type=Path, default=None, help="keep the synthetic file here")
    args = ap.parse_args()
    compile_catlr()
    from catlr.config import parse_memory
    from catlr.engines import BLOCK_SHARE
    from catlr.engines.stream import Stream
    from catlr.files.containers import open_container
    from catlr.learn import kernels
    from catlr.learn.design import Dense, Pixels, normalize

    print(f"Machine: {machine()}; numba: {'yes' if kernels.compiled() else 'no'}")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        path = synthetic_file(folder, args.m)
        dt = np.dtype(args.dtype)
        block_bytes = int(parse_memory(args.memory) * BLOCK_SHARE)
        with open_container(path) as c:
            x = c.pixels("train_set_x")
            m = x.shape[0]
            y = c.labels("train_set_y", m).astype(dt)
            w = (np.random.default_rng(0).normal(size=12288) * 1e-3).astype(dt)

            class Converted(Stream):  # the stream engine before: float blocks, BLAS
                def product_blocks(self):
                    return self.blocks()

            converted = Converted(x, dt, block_bytes)
            serial = Stream(x, dt, block_bytes, ahead=False)
            ahead = Stream(x, dt, block_bytes, ahead=True)
            pixels = np.asarray(x)
            in_memory = Pixels(pixels, dt)
            float_x = Dense(normalize(pixels.reshape(m, -1).T, dt))

            def products_alone():  # the stream's own blocks, already read
                sub = in_memory.pixel_rows()
                k = serial.read_rows()
                flat = pixels.reshape(m, -1)
                for start in range(0, m, k):
                    part = flat[start:start + k]
                    for i in range(0, len(part), sub):
                        in_memory_gradient_block(part[i:i + sub], start + i)

            from catlr.learn.design import SCALE, block_gradient

            def in_memory_gradient_block(xt, start):
                block_gradient(xt, y[start:start + len(xt)], w, 0.1, None, w255=w255)

            w255 = w / SCALE

            def read_alone():
                for _ in serial._serial():
                    pass

            variants = {
                "stream, converted": lambda: converted.gradient(w, 0.1, y),
                "stream, fused serial": lambda: serial.gradient(w, 0.1, y),
                "stream, fused ahead": lambda: ahead.gradient(w, 0.1, y),
                "read alone": read_alone,
                "products alone": products_alone,
                "memory, float32 X" if dt == np.float32 else "memory, float X":
                    lambda: float_x.gradient(w, 0.1, y),
                "memory, uint8 fused": lambda: in_memory.gradient(w, 0.1, y),
            }
            for f in variants.values():  # compile, warm the page cache
                f()
            times = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, f in variants.items():
                    t = time.perf_counter()
                    f()
                    times[name].append(time.perf_counter() - t)
            same = all(np.array_equal(a, b) for a, b in zip(serial.gradient(w, 0.1, y),
                                                             ahead.gradient(w, 0.1, y)))
        med = {name: statistics.median(ts) for name, ts in times.items()}
        print(f"\nm = {m} ({m * 12288 / 2**20:,.0f} MiB of uint8), {args.dtype}, "
              f"stream blocks of {serial.read_rows()} images (--memory {args.memory}), "
              f"products {in_memory.pixel_rows()} images at a time; medians of "
              f"{args.rounds} alternated rounds")
        base = med["stream, converted"]
        for name, t in med.items():
            spread = f"{min(times[name]) * 1000:.0f}-{max(times[name]) * 1000:.0f}"
            print(f"  {name:<24} {t * 1000:8.1f} ms per pass ({spread})   / stream converted "
                  f"{t / base:.2f}")
        floor = max(med["read alone"], med["products alone"])
        print(f"  fused ahead / max(read, products) = {med['stream, fused ahead'] / floor:.2f} "
              "(goal <= 1.2)")
        print(f"  fused serial / fused ahead = "
              f"{med['stream, fused serial'] / med['stream, fused ahead']:.2f}; serial and "
              f"ahead bit for bit the same: {same}")
        mem_names = [n for n in med if n.startswith("memory")]
        print(f"  memory engine, uint8 fused / float X = "
              f"{med[mem_names[1]] / med[mem_names[0]]:.2f} per pass")
        rss = {which: peak_rss(path, which, args.dtype) for which in ("float", "uint8")}
        print(f"  memory engine X: float {m * 12288 * dt.itemsize / 2**20:,.0f} MiB, uint8 "
              f"{m * 12288 / 2**20:,.0f} MiB; peak RSS of building it and 3 passes: float "
              f"{rss['float'] / 2**20:,.0f} MiB, uint8 {rss['uint8'] / 2**20:,.0f} MiB")
        print("RESULT", json.dumps({"median": med, "rss": rss}))


if __name__ == "__main__":
    main()

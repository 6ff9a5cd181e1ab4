"""The dual form's K = X.T X: peak memory and time of catlr's in-place accumulation (slabs of
K's lower triangle, design.add_gram) against the ways it replaced and one it could take.

    python bench/gram_memory.py [--m 5000] [--rounds 3] [--dir DIR] [--in-process]

    whole      `K += block @ block.T` for each block of features (before issue 22): one
               symmetric rank-k update a block, but its temporary is a second K
    rows       slabs of GRAM_SLAB rows of the lower triangle, in place (issue 22 to 32):
               K[i:j, :j] += a[i:j] @ a[:j].T
    columns    slabs of GRAM_SLAB columns, in place (now, design.add_gram):
               K[i:, i:j] += a[i:] @ a[i:j].T, each product tall
    dsyrk      scipy's BLAS dsyrk on K's lower triangle with beta = 1, in place: no
               temporary at all (when scipy is installed; catlr does not use it)
Each way in a fresh process, alternated; peak RSS is VmHWM, less the pixels and K that
all hold. The same blocks of features (design.feature_block) each way. The file is
scale.py's synthetic one. Prints `uptime` first and last: the machine may be shared.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import compile_catlr, machine, uptime
from scale import synthetic_file

CHILD = r"""
import sys, time, numpy as np
from catlr.files.containers import open_container
from catlr.learn import design as d
path, how = sys.argv[1:3]
with open_container(path) as c:
    x = np.asarray(c.pixels("train_set_x"))
p = d.Pixels(x, "float64")
m = p.m
def blocks():
    return p._feature_blocks(d.feature_block(m, p.n_x))
def whole():
    K = np.zeros((m, m))
    for _, block in blocks():
        K += block @ block.T
    return K
def rows():
    K = np.zeros((m, m))
    for _, a in blocks():
        for i in range(0, m, d.GRAM_SLAB):
            j = min(i + d.GRAM_SLAB, m)
            K[i:j, :j] += a[i:j] @ a[:j].T
    d.mirror_lower(K)
    return K
def dsyrk():
    from scipy.linalg.blas import dsyrk as syrk
    K = np.zeros((m, m))
    for _, a in blocks():  # K.T is K's Fortran-ordered view: its upper triangle, our lower
        syrk(1.0, a.T, beta=1.0, c=K.T, trans=1, lower=0, overwrite_c=1)
    d.mirror_lower(K)
    return K
ways = {"whole": whole, "rows": rows, "columns": p.gram, "dsyrk": dsyrk}
if how.startswith("all:"):  # every way in this process, alternated: their times only
    import statistics
    names = [w for w in ways if w != "dsyrk" or "scipy" in sys.argv[4:]]
    seen = {w: [] for w in names}
    for _ in range(int(how[4:])):
        for w in names:
            t = time.perf_counter()
            ways[w]()
            seen[w].append(time.perf_counter() - t)
    print("RESULT", {w: (statistics.median(ts), min(ts), ts) for w, ts in seen.items()})
    sys.exit()
t = time.perf_counter()
K = ways[how]()
seconds = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
np.save(sys.argv[3], K[:50, :50])
print("RESULT", int(hwm.split()[1]) * 1024, seconds)
"""
NAMES = {"whole": "K += block @ block.T (before 22)", "rows": "row slabs in place (22 to 32)",
         "columns": "column slabs in place (now)", "dsyrk": "scipy dsyrk in place (reference)"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--in-process", action="store_true",
                    help="time the ways alternated in one process (no peak RSS): on a shared "
                         "machine, where a fresh process per way varies more than the ways")
    args = ap.parse_args()
    compile_catlr()
    import importlib.util

    import numpy as np

    print(f"Machine: {machine()}")
    print(f"uptime: {uptime()}")
    ways = [w for w in NAMES if w != "dsyrk" or importlib.util.find_spec("scipy")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        path = synthetic_file(folder, args.m)
        if args.in_process:
            import ast

            r = subprocess.run([sys.executable, "-c", CHILD, str(path), f"all:{args.rounds}",
                                str(Path(tmp) / "x.npy"), *(["scipy"] if "dsyrk" in ways else [])],
                               capture_output=True, text=True, check=False)
            if r.returncode:
                raise SystemExit(r.stderr[-800:])
            seen = ast.literal_eval(r.stdout.rsplit("RESULT ", 1)[1])
            print(f"uptime: {uptime()}")
            base = seen["whole"][0]
            print(f"\nm = {args.m}, one process, {args.rounds} alternated rounds (median, min):")
            for how, (med, low, ts) in seen.items():
                print(f"  {NAMES[how]:<34} K in {med:6.2f} s (min {low:.2f}; {med / base:.2f} "
                      f"of whole; rounds {' '.join(f'{t:.2f}' for t in ts)})")
            return
        seen = {how: [] for how in ways}
        for _ in range(args.rounds):
            for how in seen:
                r = subprocess.run([sys.executable, "-c", CHILD, str(path), how,
                                    str(Path(tmp) / f"{how}.npy")], capture_output=True,
                                   text=True, check=False)
                if r.returncode:
                    raise SystemExit(r.stderr[-800:])
                rss, seconds = r.stdout.rsplit("RESULT ", 1)[1].split()
                seen[how].append((int(rss), float(seconds)))
        print(f"uptime: {uptime()}")
        k_bytes = args.m * args.m * 8
        held = args.m * 12288 + k_bytes
        base = statistics.median(s for _, s in seen["whole"])
        print(f"\nm = {args.m}: K is {k_bytes / 2**20:,.0f} MiB, the pixels "
              f"{args.m * 12288 / 2**20:,.0f} MiB; medians of {args.rounds} alternated rounds")
        for how, runs in seen.items():
            rss = statistics.median(r for r, _ in runs)
            seconds = statistics.median(s for _, s in runs)
            print(f"  {NAMES[how]:<34} peak RSS {rss / 2**20:7,.0f} MiB (beyond pixels and K "
                  f"{(rss - held) / 2**20:6,.0f} MiB)   K in {seconds:6.2f} s "
                  f"({seconds / base:.2f} of whole; rounds "
                  f"{' '.join(f'{s:.2f}' for _, s in runs)})")
        ref = np.load(Path(tmp) / "whole.npy")
        for how in ways[1:]:
            other = np.load(Path(tmp) / f"{how}.npy")
            print(f"  {how} agrees with whole to "
                  f"{float(np.max(np.abs(other - ref)) / np.max(np.abs(ref))):.1e}")


if __name__ == "__main__":
    main()

"""The dual form's K = X.T X: peak memory and time of catlr's in-place accumulation (slabs of
K's lower triangle, design.add_gram) against the expression it replaced (issue 22),
`K += block @ block.T` for each block of features, whose temporary is a second K.

    python bench/gram_memory.py [--m 5000] [--rounds 3] [--dir DIR]

Each way in a fresh process, alternated; peak RSS is VmHWM, less the pixels and K that
both hold. The file is scale.py's synthetic one.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import compile_catlr, machine
from scale import synthetic

CHILD = r"""
import sys, time, numpy as np
from catlr.files.containers import open_container
from catlr.learn.design import Pixels
path, how = sys.argv[1:3]
with open_container(path) as c:
    x = np.asarray(c.pixels("train_set_x"))
design = Pixels(x, "float64")
def before():
    K = np.zeros((design.m, design.m))
    for _, block in design._feature_blocks():
        K += block @ block.T
    return K
t = time.perf_counter()
K = design.gram() if how == "slabs" else before()
seconds = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
np.save(sys.argv[3], K[:50, :50])
print("RESULT", int(hwm.split()[1]) * 1024, seconds)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    compile_catlr()
    import numpy as np

    print(f"Machine: {machine()}")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        path = folder / f"synthetic-{args.m}.h5"
        if not path.exists():
            synthetic(path, args.m)
        seen = {"whole": [], "slabs": []}
        for _ in range(args.rounds):
            for how in seen:
                r = subprocess.run([sys.executable, "-c", CHILD, str(path), how,
                                    str(Path(tmp) / f"{how}.npy")], capture_output=True, text=True)
                if r.returncode:
                    raise SystemExit(r.stderr[-800:])
                rss, seconds = r.stdout.rsplit("RESULT ", 1)[1].split()
                seen[how].append((int(rss), float(seconds)))
        k_bytes = args.m * args.m * 8
        held = args.m * 12288 + k_bytes
        print(f"\nm = {args.m}: K is {k_bytes / 2**20:,.0f} MiB, the pixels "
              f"{args.m * 12288 / 2**20:,.0f} MiB; medians of {args.rounds}")
        for how, runs in seen.items():
            rss = statistics.median(r for r, _ in runs)
            seconds = statistics.median(s for _, s in runs)
            name = "K += block @ block.T (before)" if how == "whole" else "slabs in place (now)"
            print(f"  {name:<32} peak RSS {rss / 2**20:7,.0f} MiB (beyond pixels and K "
                  f"{(rss - held) / 2**20:6,.0f} MiB)   K in {seconds:.2f} s")
        a, b = np.load(Path(tmp) / "whole.npy"), np.load(Path(tmp) / "slabs.npy")
        print(f"  the two K agree to {float(np.max(np.abs(a - b)) / np.max(np.abs(a))):.1e}")


if __name__ == "__main__":
    main()

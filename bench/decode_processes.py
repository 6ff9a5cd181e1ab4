"""prepare's decoding: catlr's threads against a pool of processes, side by side in one run.

    python bench/decode_processes.py [--rounds 5] [--size 1600x1200]

The 259 camera-sized JPEGs of prepare_speed.py, decoded to 64 x 64 by ingest.decode_many
(threads, one per core plus one) and by a ProcessPoolExecutor of one process per core
(forkserver, started and stopped each round, as one `catlr prepare` would), alternated;
both must give the same pixels. Issue 22 asked for processes where they beat threads.
"""

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from common import machine
from prepare_speed import build

from catlr.data.ingest import decode_many, load_image


def one(path):
    return load_image(path, 64, "stretch")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", default="1600x1200")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    context = multiprocessing.get_context("forkserver")
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), size)
        paths = sorted(str(p) for p in Path(tmp).rglob("*.jpg"))
        threads, processes = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            a = [x for _, x in decode_many(paths, 64, "stretch", 0)]
            threads.append(time.perf_counter() - t)
            t = time.perf_counter()
            with ProcessPoolExecutor(os.cpu_count(), mp_context=context) as pool:
                b = list(pool.map(one, paths, chunksize=8))
            processes.append(time.perf_counter() - t)
            assert all(np.array_equal(x, y) for x, y in zip(a, b))
    th, pr = statistics.median(threads), statistics.median(processes)
    print(f"{len(paths)} JPEGs of {size[0]} x {size[1]}; {machine()}; {args.rounds} rounds")
    print(f"threads (decode_many):              median {th:.3f} s  {[round(x, 3) for x in threads]}")
    print(f"processes (pool start included):    median {pr:.3f} s  {[round(x, 3) for x in processes]}")
    print(f"processes / threads = {pr / th:.2f} (below 1: processes would pay)")


if __name__ == "__main__":
    main()

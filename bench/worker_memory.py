"""A Dask worker's own memory (its RSS) before it holds any block: what catlr's spill note
counts for the worker itself (engines/dask.WORKER_BYTES), measured at each step a run
takes it through: started, catlr's check (catlr, h5py), a block read from an HDF5 file,
zarr imported (a store's reader), numba's kernels loaded (block_gradient's first call).

    python bench/worker_memory.py [--data DIR]

DIR: the course's folder (default ../shared/datasets/catvnoncat). Prints one line a step.
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) * 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/catvnoncat"))
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    from catlr.engines.dask import read_block, worker_probe

    h5 = str(Path(args.data) / "train_catvnoncat.h5")
    cluster = LocalCluster(n_workers=0, dashboard_address=None)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                               cluster.scheduler_address, "--nthreads", "1",
                               "--memory-limit", "1GB", "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Client(cluster)
    try:
        client.wait_for_workers(1, timeout=60)

        def say(step):
            (value,) = client.run(rss).values()
            print(f"{step:<32} {value / 2**20:6.0f} MB")

        say("started")
        client.run(worker_probe, h5, "train_set_x")
        say("catlr's check (h5py)")
        client.submit(read_block, h5, "train_set_x", 0, 209, pure=False).result()
        say("a block from the HDF5 file")
        client.run(lambda: __import__("zarr") and None)
        say("zarr imported")

        def kernels():
            from catlr.learn import kernels as k

            return k.compiled() is not None

        client.run(kernels)
        say("numba's kernels loaded")
    finally:
        client.close()
        worker.terminate()
        worker.wait()
        cluster.close()


if __name__ == "__main__":
    main()

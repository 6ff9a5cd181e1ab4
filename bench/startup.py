"""Start-up: `catlr predict photo.jpg`, `catlr train DATA` and `catlr --help` against the least
they must import (issue 3, issue 32 §3).

    python bench/startup.py [--runs 21] [--against OLD_TREE]

Whole processes, alternated (a, b, c, ..., a, b, c, ...), medians of the wall time and of
the CPU time (user + system, from wait4: on a shared machine the wall time is mostly
waiting for a core). Targets:
    catlr predict <photo> --model m.npz   <= 1.3 x  python -c "import numpy, PIL.Image"
    catlr train <course pair> --iters 2000 <= 1.5 x  python -c "import numpy, h5py"
    catlr --help                          <= 2.0 x  python -c "import numpy"
The model is trained first on the course pair (../shared/datasets/catvnoncat). With
--against, the same catlr commands of another checkout run in the same alternation
(each tree as `python -m catlr` with PYTHONPATH at it), so before and after are measured
side by side.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    COURSE,
    PHOTOS,
    alternate,
    catlr_cmd,
    compile_catlr,
    machine,
    median,
    uptime,
)

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"predict": ("python -c 'import numpy, PIL.Image'", 1.3),
           "train": ("python -c 'import numpy, h5py'", 1.5),
           "--help": ("python -c 'import numpy'", 2.0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--against", type=Path, default=None,
                    help="another checkout of catlr, timed beside this one")
    args = ap.parse_args()
    compile_catlr()
    trees = {"": None}
    if args.against:
        import compileall

        compileall.compile_dir(str(args.against / "catlr"), quiet=1)
        trees = {"": ROOT, "old ": args.against}
    print(f"Machine: {machine()}; {args.runs} alternated runs")
    print(f"uptime: {uptime()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "m.npz"
        subprocess.run(catlr_cmd("train", COURSE, "--out", model), check=True,
                       stdout=subprocess.DEVNULL)
        photo = PHOTOS / "cat-in-iran.jpg"

        def catlr(tree, *a):
            if tree is None:
                return catlr_cmd(*a)
            return ([sys.executable, "-m", "catlr", *map(str, a)],
                    {**os.environ, "PYTHONPATH": str(tree)})

        commands = {}
        for label, tree in trees.items():
            commands[f"{label}catlr predict <photo>"] = catlr(tree, "predict", photo,
                                                               "--model", model)
        commands[TARGETS["predict"][0]] = [sys.executable, "-c", "import numpy, PIL.Image"]
        for label, tree in trees.items():
            commands[f"{label}catlr train <course> --iters 2000"] = catlr(
                tree, "train", COURSE, "--iters", "2000", "--out", Path(tmp) / f"t{label}.npz")
        commands[TARGETS["train"][0]] = [sys.executable, "-c", "import numpy, h5py"]
        for label, tree in trees.items():
            commands[f"{label}catlr --help"] = catlr(tree, "--help")
        commands[TARGETS["--help"][0]] = [sys.executable, "-c", "import numpy"]
        cpu = {}
        # run from the temporary folder: `python -m` puts the working folder first on the path
        times = alternate(commands, args.runs, cwd=tmp, cpu=cpu)
    print(f"uptime: {uptime()}")
    print(f"\n{'command':<42} {'wall':>9} {'/ floor':>8} {'CPU':>9} {'/ floor':>8}")
    verdict = []
    for what, (floor, goal) in TARGETS.items():
        fw, fc = median(times[floor]), median(cpu[floor])
        for name in times:
            if name == floor or what not in name:
                continue
            w, c = median(times[name]) / fw, median(cpu[name]) / fc
            print(f"{name:<42} {median(times[name]) * 1000:6.0f} ms {w:8.3f} "
                  f"{median(cpu[name]) * 1000:6.0f} ms {c:8.3f}")
            if not name.startswith("old "):
                verdict.append(f"{what} {w:.2f} wall, {c:.2f} CPU "
                               f"({'meets' if max(w, c) <= goal else 'misses'} {goal})")
        print(f"{floor:<42} {fw * 1000:6.0f} ms {1:8.3f} {fc * 1000:6.0f} ms {1:8.3f}")
    print("\n" + "; ".join(verdict))


if __name__ == "__main__":
    main()

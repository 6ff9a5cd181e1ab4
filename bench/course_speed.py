"""The course's functions against the notebook's loop, side by side in one run (issue 32 §2).

    python bench/course_speed.py [--rounds 3] [--iters 2000] [--against OLD_TREE]

On the course pair (lr 0.005), each side in its own process, alternated round by round,
medians of the time each process spends in the call (imports and reading the data left
out):
    notebook loop        the week-2 loop as the notebook writes it (descent.reference)
    catlr.course.model   the notebook's model(): zeros, optimize, predict on both splits
    catlr's fit          LogisticRegression(lr, iters).fit(X, Y), the form the planner picks
    old course.model     with --against: catlr.course.model of another checkout (PYTHONPATH)
Prints each side's ratio to the loop (goal: course.model <= 0.1), the weights' distance
to the loop's (relative, by norms; goal 1e-12) and whether the printed cost lines are the
loop's. Prints `uptime` first and last: the machine may be shared.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import COURSE, compile_catlr, machine, median, uptime

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import contextlib, io, json, sys, time
import h5py, numpy as np
side, folder, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
def read(name, split):
    with h5py.File(f"{folder}/{name}_catvnoncat.h5", "r") as f:
        x, y = f[f"{split}_set_x"][()], f[f"{split}_set_y"][()]
    return x.reshape(len(x), -1).T / 255.0, y.reshape(1, -1)
X, Y = read("train", "train")
Xt, Yt = read("test", "test")
out = io.StringIO()
if side == "loop":
    from catlr.learn.descent import reference
    t = time.perf_counter()
    w, b, costs = reference(X, Y, 0.005, iters)
    took = time.perf_counter() - t
    for i, c in enumerate(costs):
        print("Cost after iteration %i: %f" % (i * 100, c), file=out)
elif side == "fit":
    from catlr.learn.model import LogisticRegression
    t = time.perf_counter()
    fit = LogisticRegression(lr=0.005, iters=iters).fit(X, Y)
    took = time.perf_counter() - t
    w = fit.w_
else:
    from catlr.course import model
    t = time.perf_counter()
    with contextlib.redirect_stdout(out):
        d = model(X, Y, Xt, Yt, num_iterations=iters, learning_rate=0.005, print_cost=True)
    took = time.perf_counter() - t
    w = d["w"]
lines = [l for l in out.getvalue().splitlines() if l.startswith("Cost")]
print("RESULT " + json.dumps({"seconds": took, "w": np.ravel(w).tolist(), "lines": lines}))
"""


def run(side, tree, iters):
    # PYTHONPATH names the tree; the working folder is none of them (python -c puts it first)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    r = subprocess.run([sys.executable, "-c", CHILD, side, str(COURSE), str(iters)], env=env,
                       check=False, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        raise SystemExit(f"{side} ({tree}) failed: {r.stderr[-800:]}")
    return json.loads(r.stdout.rsplit("RESULT ", 1)[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--against", type=Path, default=None,
                    help="another checkout of catlr, timed as 'old course.model'")
    args = ap.parse_args()
    compile_catlr()
    sides = {"notebook loop": ("loop", ROOT), "catlr.course.model": ("model", ROOT),
             "catlr's fit": ("fit", ROOT)}
    if args.against:
        import compileall

        compileall.compile_dir(str(args.against / "catlr"), quiet=1)
        sides["old course.model"] = ("model", args.against)
    print(f"Machine: {machine()}; {args.rounds} alternated rounds, {args.iters} iterations")
    print(f"uptime: {uptime()}")
    times, last = {name: [] for name in sides}, {}
    for _ in range(args.rounds):
        for name, (side, tree) in sides.items():
            last[name] = run(side, tree, args.iters)
            times[name].append(last[name]["seconds"])
    print(f"uptime: {uptime()}")
    loop = median(times["notebook loop"])
    w_loop = np.array(last["notebook loop"]["w"])
    print(f"\n{'side':<22} {'median':>10} {'/ loop':>8}  rounds (s)             weights vs loop")
    for name, ts in times.items():
        w = np.array(last[name]["w"])
        rel = np.linalg.norm(w - w_loop) / np.linalg.norm(w_loop)
        print(f"{name:<22} {median(ts) * 1000:8.1f} ms {median(ts) / loop:8.4f}  "
              f"{' '.join(f'{t:.3f}' for t in ts):<22} {rel:.1e}")
    ratio = median(times["catlr.course.model"]) / loop
    same = last["catlr.course.model"]["lines"] == last["notebook loop"]["lines"]
    print(f"\ncourse.model / loop {ratio:.4f} ({'meets' if ratio <= 0.1 else 'misses'} 0.1); "
          f"printed costs {'the loop' + chr(39) + 's' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()

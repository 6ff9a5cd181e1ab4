"""Helpers for the benchmarks: alternated whole-process timings and medians."""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT.parent / "shared" / "datasets" / "catvnoncat"
PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"


def compile_catlr():
    """Byte-compile catlr as `pip install` does: with PYTHONDONTWRITEBYTECODE set (as on
    some CI machines) an editable checkout would otherwise be recompiled at every start."""
    import compileall

    compileall.compile_dir(str(ROOT / "catlr"), quiet=1)


def catlr_cmd(*args):
    """The installed console script when there is one beside this Python, else python -m catlr."""
    script = Path(sys.executable).with_name("catlr")
    return [str(script), *map(str, args)] if script.exists() else [sys.executable, "-m", "catlr", *map(str, args)]


def alternate(commands: dict, runs: int, cwd=None, env=None):
    """Run each command `runs` times, interleaved (a, b, a, b, ...); return {name: [seconds]}."""
    times = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            t = time.perf_counter()
            r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
            times[name].append(time.perf_counter() - t)
            if r.returncode != 0:
                raise SystemExit(f"{name} failed ({r.returncode}): {r.stderr[-500:]}")
    return times


def median(xs):
    return statistics.median(xs)


def machine():
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(times: dict, base: str, title: str, limit=None):
    """Print medians and each command's ratio to `base`; returns {name: ratio}."""
    print(f"\n{title}")
    b = median(times[base])
    ratios = {}
    for name, ts in times.items():
        ratios[name] = median(ts) / b
        print(f"  {name:<38} median {median(ts) * 1000:8.1f} ms   ratio {ratios[name]:.3f}")
    return ratios

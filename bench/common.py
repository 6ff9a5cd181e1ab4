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


def alternate(commands: dict, runs: int, cwd=None, env=None, cpu=None):
    """Run each command `runs` times, interleaved (a, b, a, b, ...); return {name: [seconds]}.
    A command may be (argv, env) to run it with its own environment. `cpu`: a dict filled
    with {name: [CPU seconds]} (user + system, from wait4): on a machine shared with other
    work the wall time is mostly waiting for a core, the CPU time much less so."""
    times = {name: [] for name in commands}
    if cpu is not None:
        cpu.update({name: [] for name in commands})
    for _ in range(runs):
        for name, cmd in commands.items():
            argv, own = cmd if isinstance(cmd, tuple) else (cmd, env)
            t = time.perf_counter()
            p = subprocess.Popen(argv, cwd=cwd, env=own, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            err = p.stderr.read()
            _, status, usage = os.wait4(p.pid, 0)
            times[name].append(time.perf_counter() - t)
            p.returncode = os.waitstatus_to_exitcode(status)
            p.stderr.close()
            if cpu is not None:
                cpu[name].append(usage.ru_utime + usage.ru_stime)
            if p.returncode != 0:
                raise SystemExit(f"{name} failed ({p.returncode}): {err[-500:]}")
    return times


def uptime():
    """`uptime`'s line: the load averages a figure was measured under."""
    return subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()


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

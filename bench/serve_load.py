"""Load on `catlr serve`: N requests, C at a time, on loopback; prints req/s, p50/p99, errors.

    python bench/serve_load.py                       # 500 requests, 16 at a time
    python bench/serve_load.py --requests 200 --json # what tests/test_serve.py runs

The server runs as a user starts it (`catlr serve MODEL --port 0 --quiet`, its own process
and so its own GIL) on a free loopback port; the clients are threads here, each with one
keep-alive connection, POSTing a photo (../shared/datasets/photos/cat-small.jpg, else a
drawn one) as the request body. A request is an error unless its answer is 200 and the
same bytes as the first one's. Bounded: it stops after --deadline seconds whatever is
left, and the server is stopped in every case. Only 127.0.0.1 is ever addressed.
"""

import argparse
import http.client
import io
import json
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import COURSE, PHOTOS, catlr_cmd, machine


def _model(folder: Path) -> Path:
    """A model trained here on the course pair (else on the demo's drawn sample)."""
    out = folder / "m.npz"
    data = COURSE
    if not (COURSE / "train_catvnoncat.h5").exists():
        from catlr.stages.demo import make_sample

        data = Path(make_sample(folder / "sample", n_per_class=8, unseen=1)["images"])
    subprocess.run(catlr_cmd("train", data, "--iters", "200", "--out", out), check=True,
                   stdout=subprocess.DEVNULL)
    return out


def _photo() -> bytes:
    path = PHOTOS / "cat-small.jpg"
    if path.exists():
        return path.read_bytes()
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (300, 168), (200, 120, 40)).save(buf, format="JPEG")
    return buf.getvalue()


def start(model, *args, wait=60.0):
    """(process, url) of `catlr serve MODEL --port 0 --quiet ARGS`, once it listens."""
    proc = subprocess.Popen(catlr_cmd("serve", model, "--port", "0", "--quiet", *args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=wait)
    except queue.Empty:
        stop(proc)
        raise SystemExit(f"catlr serve did not say where it listens within {wait:.0f} s") \
            from None
    found = re.search(r" at (http://127\.0\.0\.1:\d+/) ", line)
    if not found:
        stop(proc)
        raise SystemExit(f"catlr serve said {line!r}, not where it listens")
    return proc, found.group(1)


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load(url, body, requests, concurrency, deadline):
    """Send `requests` POSTs, `concurrency` at a time; returns (latencies in s, errors, s)."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    headers = {"Content-Type": "image/jpeg"}
    path = "/predict?name=cat-small.jpg"

    def once(conn):
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()

    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    status, expected = once(warm)
    warm.close()
    if status != 200:
        raise SystemExit(f"the first request got {status}: {expected[:200]!r}")
    todo, lock = iter(range(requests)), threading.Lock()
    latencies, errors = [], []
    stop_at = time.monotonic() + deadline

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            with lock:
                if next(todo, None) is None:
                    break
            t = time.perf_counter()
            try:
                status, data = once(conn)
                ok = status == 200 and data == expected
            except (OSError, http.client.HTTPException) as e:
                ok, data = False, repr(e).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                latencies.append(time.perf_counter() - t)
                if not ok:
                    errors.append(data[:200])
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--deadline", type=float, default=120.0, help="seconds at most")
    ap.add_argument("--model", type=Path, help="a model file [default: one trained here]")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or _model(Path(tmp))
        proc, url = start(model)
        try:
            latencies, errors, seconds = load(url, _photo(), args.requests, args.concurrency,
                                              args.deadline)
        finally:
            stop(proc)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 \
        else latencies * 99
    figures = {"requests": len(latencies), "asked": args.requests,
               "concurrency": args.concurrency, "errors": len(errors),
               "seconds": round(seconds, 3), "req_per_s": round(len(latencies) / seconds, 1),
               "p50_ms": round(cuts[49] * 1000, 2), "p99_ms": round(cuts[98] * 1000, 2),
               "max_ms": round(max(latencies) * 1000, 2), "machine": machine(),
               "first_errors": [e.decode("utf-8", "replace") for e in errors[:3]]}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"catlr serve on loopback, {machine()}")
        print(f"  {figures['requests']} of {args.requests} requests, {args.concurrency} at a "
              f"time, in {seconds:.2f} s: {figures['req_per_s']} requests/s")
        print(f"  latency p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, max "
              f"{figures['max_ms']} ms; errors: {len(errors)}")
        for e in figures["first_errors"]:
            print(f"  error: {e}")
    return 1 if errors or len(latencies) < args.requests else 0


if __name__ == "__main__":
    sys.exit(main())

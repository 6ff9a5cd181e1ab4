"""Load on `catlr serve`: N requests, C at a time, on loopback; prints req/s, p50/p99, errors.

    python bench/serve_load.py                       # 500 requests, 16 at a time
    python bench/serve_load.py --requests 200 --json # what tests/test_serve.py runs
    python bench/serve_load.py --peer                # side by side with a FastAPI peer

--peer: catlr serve and bench/serve_peer.py (FastAPI + uvicorn, one worker, onnxruntime on
catlr's own ONNX export of the same model, Pillow decoding) each in its own process, the
same client, at 1, 4 and 16 requests at a time, quiet and with a competing CPU-bound
process this script starts (--burners of them); --rounds alternated rounds (which side
goes first alternates too), and for each the ratio catlr / peer of requests per second
(median of the rounds) and peer / catlr of p50 and p99 (of every request of the rounds):
above 1 is catlr ahead. Needs fastapi and uvicorn (not catlr dependencies).

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
import os
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


def start(model, *args, wait=60.0, cmd=None):
    """(process, url) of `catlr serve MODEL --port 0 --quiet ARGS` (or of `cmd`), once it
    listens."""
    cmd = cmd or catlr_cmd("serve", model, "--port", "0", "--quiet", *args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=wait)
    except queue.Empty:
        stop(proc)
        raise SystemExit(f"{cmd[1:3]} did not say where it listens within {wait:.0f} s") \
            from None
    found = re.search(r" at (http://127\.0\.0\.1:\d+/) ", line)
    if not found:
        stop(proc)
        raise SystemExit(f"{cmd[1:3]} said {line!r}, not where it listens")
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


def figures(latencies, errors, seconds) -> dict:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 \
        else latencies * 99
    return {"requests": len(latencies), "errors": len(errors), "seconds": round(seconds, 3),
            "req_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(cuts[49] * 1000, 2), "p99_ms": round(cuts[98] * 1000, 2),
            "max_ms": round(max(latencies) * 1000, 2),
            "first_errors": [e.decode("utf-8", "replace") for e in errors[:3]]}


def burn():
    """A competing CPU-bound process (a plain Python loop), stopped by stop()."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def side_by_side(args, model, folder: Path) -> int:
    """catlr serve against the FastAPI peer: the table of bench/README.md."""
    onnx = folder / "m.onnx"
    subprocess.run(catlr_cmd("export", model, "--onnx", onnx), check=True,
                   stdout=subprocess.DEVNULL)
    peer_cmd = [sys.executable, str(Path(__file__).with_name("serve_peer.py")), str(onnx)]
    servers = {"catlr": start(model), "peer": start(None, cmd=peer_cmd)}
    body, results, bad = _photo(), [], 0
    try:
        for condition in ("quiet", "loaded"):
            burners = [burn() for _ in range(args.burners)] if condition == "loaded" else []
            try:
                for c in (1, 4, 16):
                    runs = {name: ([], []) for name in servers}  # (req/s of rounds, latencies)
                    load_avg = []
                    for r in range(args.rounds):
                        for name in (list(servers) if r % 2 == 0 else list(servers)[::-1]):
                            lat, errors, seconds = load(servers[name][1], body, args.requests,
                                                        c, args.deadline)
                            bad += len(errors) + (len(lat) < args.requests)
                            runs[name][0].append(len(lat) / seconds)
                            runs[name][1].extend(lat)
                        load_avg.append(os.getloadavg()[0])
                    row = {"condition": condition, "concurrency": c,
                           "load_average": round(statistics.median(load_avg), 1)}
                    for name, (rates, lat) in runs.items():
                        f = figures(lat, [], 1.0)
                        row[name] = {"req_per_s": round(statistics.median(rates), 1),
                                     "p50_ms": f["p50_ms"], "p99_ms": f["p99_ms"]}
                    row["ratio_req_per_s"] = round(row["catlr"]["req_per_s"] /
                                                   row["peer"]["req_per_s"], 2)
                    row["ratio_p50"] = round(row["peer"]["p50_ms"] / row["catlr"]["p50_ms"], 2)
                    row["ratio_p99"] = round(row["peer"]["p99_ms"] / row["catlr"]["p99_ms"], 2)
                    results.append(row)
                    if not args.json:
                        print(f"{condition:6} c={c:<2} load {row['load_average']:4}: catlr "
                              f"{row['catlr']['req_per_s']:7.1f} req/s p50 "
                              f"{row['catlr']['p50_ms']:7.2f} p99 {row['catlr']['p99_ms']:7.2f} "
                              f"ms | peer {row['peer']['req_per_s']:7.1f} req/s p50 "
                              f"{row['peer']['p50_ms']:7.2f} p99 {row['peer']['p99_ms']:7.2f} ms"
                              f" | catlr/peer {row['ratio_req_per_s']:.2f}, p50 "
                              f"{row['ratio_p50']:.2f}, p99 {row['ratio_p99']:.2f}", flush=True)
            finally:
                for proc in burners:
                    stop(proc)
    finally:
        for proc, _ in servers.values():
            stop(proc)
    if args.json:
        print(json.dumps({"machine": machine(), "requests": args.requests,
                          "rounds": args.rounds, "burners": args.burners, "rows": results}))
    else:
        print(f"{machine()}; {args.requests} requests a round, {args.rounds} rounds, "
              f"{args.burners} competing process(es) when loaded; errors: {bad}")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--deadline", type=float, default=120.0, help="seconds at most a run")
    ap.add_argument("--model", type=Path, help="a model file [default: one trained here]")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--peer", action="store_true", help="side by side with the FastAPI peer")
    ap.add_argument("--rounds", type=int, default=3, help="alternated rounds (--peer)")
    ap.add_argument("--burners", type=int, default=1, help="competing processes (--peer)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or _model(Path(tmp))
        if args.peer:
            return side_by_side(args, model, Path(tmp))
        proc, url = start(model)
        try:
            latencies, errors, seconds = load(url, _photo(), args.requests, args.concurrency,
                                              args.deadline)
        finally:
            stop(proc)
    figs = {"asked": args.requests, "concurrency": args.concurrency, "machine": machine(),
            **figures(latencies, errors, seconds)}
    if args.json:
        print(json.dumps(figs))
    else:
        print(f"catlr serve on loopback, {machine()}")
        print(f"  {figs['requests']} of {args.requests} requests, {args.concurrency} at a "
              f"time, in {seconds:.2f} s: {figs['req_per_s']} requests/s")
        print(f"  latency p50 {figs['p50_ms']} ms, p99 {figs['p99_ms']} ms, max "
              f"{figs['max_ms']} ms; errors: {len(errors)}")
        for e in figs["first_errors"]:
            print(f"  error: {e}")
    return 1 if errors or len(latencies) < args.requests else 0


if __name__ == "__main__":
    sys.exit(main())

"""catlr serve (issue 21): a real server on a free loopback port, started by each test and
stopped after it; its answers are `catlr predict --json`'s, byte for byte; every bad upload
is a 4xx with a JSON error and the next request is still answered; a bounded load has no
errors; the page works in a real headless chromium, driven through Playwright."""

import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import PHOTOS, ROOT, remeta, run_cli
from PIL import Image

PHOTO_NAMES = ("cat-small.jpg", "cat-in-iran.jpg")


@contextlib.contextmanager
def running(model, threshold=0.5, **limits):
    """The server of `model` on 127.0.0.1, a free port, in a thread: yields (url, events)."""
    from catlr.serve import Limits, build

    events = []
    server = build(model, port=0, threshold=threshold, limits=Limits(**limits),
                   on_event=events.append)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.url, events
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def ask(url, method="GET", path="/health", body=None, headers=None):
    """(status, headers, body) of one request on a connection of its own (30 s at most)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def raw(url, data: bytes) -> bytes:
    """What the server sends back to bytes written straight to its socket (30 s at most)."""
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def form(*files, field="file"):
    """A multipart/form-data body of (name, bytes) file fields, as a browser sends it."""
    boundary = "----catlr-test-boundary-7MA4YWxkTrZu0gW"
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                     f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _photos():
    if not all((PHOTOS / n).exists() for n in PHOTO_NAMES):
        pytest.skip(f"photos not found at {PHOTOS}")
    return [(n, (PHOTOS / n).read_bytes()) for n in PHOTO_NAMES]


def bomb() -> bytes:
    """A PNG of about 80 KB that inflates to 9000 x 9000 pixels (81 MB): a decompression bomb."""
    side = 9000
    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # a filter byte, then the row
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit gray
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


@pytest.fixture
def model(small_folder, tmp_path):
    path = tmp_path / "m.npz"
    code, _, err = run_cli(["train", small_folder, "--iters", "20", "--out", path])
    assert code == 0, err
    return path


# ---------------------------------------------------------------- the API is predict --json

def test_the_api_answers_exactly_what_predict_json_prints(model, monkeypatch):
    photos = _photos()
    monkeypatch.chdir(PHOTOS)  # predict then prints the names a browser sends
    code, printed, err = run_cli(["predict", *PHOTO_NAMES, "--model", model, "--json"])
    assert code == 0, err
    with running(model) as (url, events):
        status, headers, body = ask(url, "POST", "/predict", *form(*photos))
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert body.decode() == printed  # byte for byte
        # the image as the request's body, named by ?name=
        for name, data in photos:
            status, _, body = ask(url, "POST", f"/predict?name={name}", data,
                                  {"Content-Type": "image/jpeg"})
            code, one, _ = run_cli(["predict", name, "--model", model, "--json"])
            assert status == 200 and body.decode() == one
    assert [(e.method, e.path, e.status, e.images) for e in events] == [
        ("POST", "/predict", 200, 2), ("POST", "/predict", 200, 1), ("POST", "/predict", 200, 1)]


def test_the_threshold_and_the_pixels_the_model_sees(model):
    """?seen=1 adds the pixels the model saw: catlr's decoder's, bit for bit (EXIF
    rotation, the fit rule); the rest of each row is predict's at the same threshold."""
    from catlr import Predictor

    photos = _photos()
    predictor = Predictor.load(model, 0.2)
    with running(model, threshold=0.2) as (url, _):
        status, _, body = ask(url, "POST", "/predict?seen=1", *form(*photos))
    rows = json.loads(body)
    assert status == 200
    for (name, _), row in zip(photos, rows):
        png = base64.b64decode(row.pop("seen").split(",", 1)[1])
        seen = np.asarray(Image.open(io.BytesIO(png)))
        pixels = predictor.decode(PHOTOS / name)
        assert seen.shape == (64, 64, 3) and np.array_equal(seen, pixels)
        assert row == predictor.row(name, predictor.proba(pixels[None])[0])


def test_health_says_the_model_and_the_limits(model):
    with running(model, max_images=3, max_bytes=1 << 20) as (url, _):
        status, _, body = ask(url)
    doc = json.loads(body)
    assert status == 200 and doc["status"] == "ok" and doc["model"] == str(model)
    assert doc["classes"] == ["non-cat", "cat"] and doc["image_size"] == 64
    assert doc["limits"]["max_images"] == 3 and doc["limits"]["max_bytes"] == 1 << 20


# ---------------------------------------------------------------- bad uploads

def encoded(size, fmt) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, format=fmt)
    return buf.getvalue()


def _cases():
    photo = PHOTOS / "cat-in-iran.jpg"
    jpeg = photo.read_bytes() if photo.exists() else encoded((640, 480), "JPEG")
    small = encoded((40, 30), "PNG")
    return {
        "not an image": (422, "not an image", lambda: form(("notes.jpg", b"just some text"))),
        "a decompression bomb": (422, "too large (9000 x 9000",
                                 lambda: form(("bomb.png", bomb()))),
        "a truncated JPEG": (422, "truncated or corrupt",
                             lambda: form(("half.jpg", jpeg[:len(jpeg) // 2]))),
        "one bad among good ones": (422, "truncated or corrupt", lambda: form(
            ("ok.png", small), ("bad.jpg", b"\xff\xd8\xff\xe0 not really"))),
        "an upload over the limit": (413, "over the limit of 1,048,576",
                                     lambda: form(("big.png", small + b"\0" * (2 << 20)))),
        "too many images": (413, "over the limit of 3", lambda: form(*[("a.png", small)] * 4)),
        "a wrong content type": (415, "the body is text/plain",
                                 lambda: (b"hello", {"Content-Type": "text/plain"})),
        "no content type": (415, "no Content-Type", lambda: (small, {})),
        "an empty body": (400, "empty", lambda: (b"", {"Content-Type": "image/png"})),
        "a form without a file field": (400, "no field named file",
                                        lambda: form(("a.png", small), field="photo")),
        "a form cut short": (400, "no closing boundary",
                             lambda: (form(("a.png", small))[0][:-60], form()[1])),
        "a form without a boundary": (400, "no boundary", lambda: (
            small, {"Content-Type": "multipart/form-data"})),
    }


CASES = _cases()


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_upload_is_a_4xx_with_a_json_error_and_the_server_goes_on(model, case):
    status, why, make = CASES[case]
    body, headers = make()
    good = form(("ok.png", encoded((40, 30), "PNG")))
    with running(model, max_bytes=1 << 20, max_images=3) as (url, events):
        got, resp_headers, answer = ask(url, "POST", "/predict", body, headers)
        assert got == status, answer
        assert resp_headers["Content-Type"] == "application/json"
        doc = json.loads(answer)
        if status == 422:  # the rows, as predict --json prints them: the bad one says why
            assert isinstance(doc, list) and all("path" in r for r in doc), doc
            assert any(why in r.get("error", "") for r in doc), doc
            assert all("probability" in r for r in doc if "error" not in r), doc
        else:  # a request with no images to read: one error
            assert why in doc["error"] and "Traceback" not in doc["error"], doc
        # and the next requests are answered
        assert ask(url)[0] == 200
        assert ask(url, "POST", "/predict", *good)[0] == 200
    assert [e.status for e in events][:1] == [status]


@pytest.mark.parametrize("request_bytes,status,why", [
    (b"GARBAGE\r\n\r\n", 400, "Bad request"),
    (b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", 421, "not this server's address"),
    (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411, "Content-Length"),
    (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n\r\n", 411,
     "no Content-Length"),
    (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999\r\n"
     b"Content-Type: image/png\r\n\r\n", 413, "over the limit"),
    (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n", 400,
     "not a number"),
    (b"PUT /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501, "Unsupported method"),
    (b"GET /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405, "POST an image"),
    (b"GET /../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404, "no page"),
])
def test_malformed_requests_get_a_json_error_and_the_server_goes_on(model, request_bytes,
                                                                     status, why):
    with running(model) as (url, _):
        answer = raw(url, request_bytes)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()) or head.startswith(
            f"HTTP/1.0 {status} ".encode()), answer[:300]
        assert b"application/json" in head and why in json.loads(body)["error"], answer[:300]
        assert ask(url)[0] == 200


def test_a_client_that_leaves_mid_upload_costs_nothing(model, monkeypatch):
    """Each client that leaves gives its connection's slot back at once: with 2 slots and 3
    abandoned uploads, a slot held until a silent connection's timeout (here longer than
    the request's 30 s) would leave /health unanswered."""
    import catlr.serve

    monkeypatch.setattr(catlr.serve, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(catlr.serve._Handler, "timeout", 120)
    with running(model) as (url, _):
        u = urlsplit(url)
        for _ in range(3):
            with socket.create_connection((u.hostname, u.port), timeout=30) as s:
                s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png"
                          b"\r\nContent-Length: 100000\r\n\r\n\x89PNG")
        assert ask(url)[0] == 200


def test_the_page_escapes_every_string_from_the_model_and_fetches_nothing_elsewhere(
        model, tmp_path):
    evil = remeta(model, tmp_path / 'a&b"<i>.npz',
                  classes=["<b>dog</b>", "<script>alert(1)</script>"], data='<img src=x>&"',
                  test_accuracy=0.75, m_test=4)
    with running(evil) as (url, _):
        status, headers, body = ask(url, path="/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for text in ("<b>dog", "<script>alert", "<img src=x", '<i>.npz'):
        assert text not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x&gt;&amp;&quot;" in page
    assert "a&amp;b&quot;&lt;i&gt;.npz" in page and "75.00% accuracy on 4 images" in page
    # offline: no address but this server's, and a policy that lets nothing else load
    assert "//" not in page  # no http://, https:// or //host anywhere: nothing to fetch
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


def test_loopback_is_the_default_and_any_other_address_is_warned_of(model):
    from catlr.serve import HOST, is_loopback, warnings_for

    assert HOST == "127.0.0.1"
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com"))
    assert warnings_for("127.0.0.1", model, {}) == []
    said = warnings_for("0.0.0.0", model, {"warnings": ["the cost rose"]})
    assert "not on loopback" in said[0] and said[1] == f"{model}: the cost rose"


# ---------------------------------------------------------------- the command itself

def _serve(*args, cwd=None):
    """`python -m catlr serve ARGS` and the first line it prints (30 s at most)."""
    proc = subprocess.Popen([sys.executable, "-m", "catlr", "serve", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    lines = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    return proc, (lines or [""])[0]


def test_catlr_serve_listens_logs_each_request_and_stops_on_sigterm(model):
    proc, first = _serve(model, "--port", "0")
    try:
        assert first.startswith(f"Serving {model} at http://127.0.0.1:"), first
        url = first.split(" at ")[1].split()[0]
        assert ask(url)[0] == 200
        assert ask(url, "POST", "/predict", b"nope", {"Content-Type": "image/png"})[0] == 422
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err == "Terminated: the server stopped\n"
    health, bad = out.splitlines()
    assert health.startswith("GET /health 200 (") and health.endswith(" ms)")
    assert bad.startswith("POST /predict 422 (") and bad.endswith(" ms, 1 image)")


def test_a_port_in_use_and_bad_limits_are_one_line(model):
    with running(model) as (url, _):
        port = urlsplit(url).port
        code, _, err = run_cli(["serve", model, "--port", port])
        assert code == 1 and err.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
        assert err.count("\n") == 1 and "--port" in err
    for args, why in ((["--port", "70000"], "--port must be"),
                      (["--max-upload", "lots"], "--max-upload must be"),
                      (["--max-images", "0"], "--max-images must be"),
                      (["--threshold", "2"], "--threshold")):
        code, _, err = run_cli(["serve", model, *args])
        assert code == 2 and why in err and err.count("\n") == 1, (args, err)


@pytest.mark.slow
def test_a_bounded_load_gets_no_errors(model):
    """bench/serve_load.py, smaller: 200 requests, 16 at a time, on loopback."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), "--requests",
                        "200", "--concurrency", "16", "--deadline", "240", "--model", model,
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(r.stdout)
    assert figures["errors"] == 0 and figures["requests"] == 200, figures
    print(f"load: {figures}")


# ---------------------------------------------------------------- the page in a real browser

CHROMIUM = Path("/usr/bin/chromium")  # Debian's: .ci/run installs it; nothing is downloaded
# as the probe of this machine runs it: root needs --no-sandbox, and the closed network
# refuses the browser's own background connections
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (catlr[test])")
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not at {CHROMIUM}: apt-get install -y chromium "
                    "(.ci/run does)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                              timeout=60_000)
        try:
            yield b
        finally:
            b.close()


def _drop(page, name, data: bytes, kind="image/jpeg"):
    """Drop a file on the page's drop zone, as a file dragged from a folder is dropped."""
    transfer = page.evaluate_handle(
        """([name, b64, kind]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: kind}));
            return transfer;
        }""", [name, base64.b64encode(data).decode(), kind])
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


@pytest.mark.slow
def test_the_page_in_headless_chromium_shows_what_predict_says(browser, course_model, tmp_path,
                                                               monkeypatch):
    """Drop a photo, pick another, drop a broken one: each card shows predict's label and
    probability and the very pixels catlr's decoder gives; nothing is fetched from elsewhere,
    and the page's policy blocks nothing of its own. CATLR_SCREENSHOT=docs/serve.png saves
    the README's picture."""
    from catlr import Predictor

    photos = _photos()
    model = course_model[0]
    monkeypatch.chdir(PHOTOS)
    code, out, err = run_cli(["predict", *PHOTO_NAMES, "--model", model, "--json"])
    assert code == 0, err
    expected = {r["path"]: r for r in json.loads(out)}
    predictor = Predictor.load(model)
    run = tmp_path / "runs" / "train-1"  # where `catlr train` keeps a model, as a user has it
    run.mkdir(parents=True)
    shutil.copy(model, run / "model.npz")
    monkeypatch.chdir(tmp_path)
    model = Path("runs/train-1/model.npz")
    with running(model) as (url, events):
        page = browser.new_page(viewport={"width": 900, "height": 640})
        asked, problems = [], []
        page.on("request", lambda r: asked.append(r.url))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(url)
        assert page.text_content("#model") == str(model)
        assert page.text_content("#test") == "70.00% accuracy on 50 images"

        _drop(page, *photos[0])
        page.wait_for_selector(".card", timeout=30_000)
        page.set_input_files("#pick", str(PHOTOS / photos[1][0]))
        page.locator(".card").nth(1).wait_for(timeout=30_000)  # no eval: the policy forbids it
        cards = page.query_selector_all(".card")  # in the order they were given
        for card, (name, _) in zip(cards, photos):
            row = expected[name]
            assert card.query_selector(".name").text_content() == name
            assert card.query_selector(".verdict").text_content() == row["label"]
            assert card.query_selector(".probability").text_content() == (
                f"probability {row['probability']:.3f}")
            img = card.query_selector("img")
            assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [64, 64]
            png = base64.b64decode(img.get_attribute("src").split(",", 1)[1])
            seen = np.asarray(Image.open(io.BytesIO(png)))
            assert np.array_equal(seen, predictor.decode(PHOTOS / name))
        shot = os.environ.get("CATLR_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=True)

        _drop(page, "notes.jpg", b"not a photo at all")
        page.wait_for_selector(".card.bad", timeout=30_000)
        assert page.text_content(".card.bad .verdict") == "error: not an image"
        assert page.query_selector_all(".card")[-1].get_attribute("class") == "card bad"
        page.close()
    assert all(u.startswith(url) or u.startswith("data:") for u in asked), asked
    # the one console error is chromium's note of the broken file's 422; a blocked script,
    # style or image (the policy's hashes out of date) would be one more
    assert problems == ["Failed to load resource: the server responded with a status of 422 "
                        "(Unprocessable Entity)"], problems
    assert [e.status for e in events if e.path == "/predict"] == [200, 200, 422]

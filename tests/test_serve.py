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
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import COURSE, PHOTOS, ROOT, needs_course, remeta, run_cli
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


def form(*files, field="file", boundary="----catlr-test-boundary-7MA4YWxkTrZu0gW",
         filename='filename="{}"'):
    """A multipart/form-data body of (name, bytes) file fields, as a browser sends it."""
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                     f'{filename.format(name)}\r\nContent-Type: application/octet-stream'
                     '\r\n\r\n'.encode() + data + b"\r\n")
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
    abandoned uploads, a slot held until the request's deadline (here 120 s) would leave
    /health refused (503) for the whole test's 10 s."""
    import catlr.serve.http

    monkeypatch.setattr(catlr.serve.http, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(catlr.serve.http, "REQUEST_SECONDS", 120)
    with running(model) as (url, _):
        u = urlsplit(url)
        for _ in range(3):
            with socket.create_connection((u.hostname, u.port), timeout=30) as s:
                s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png"
                          b"\r\nContent-Length: 100000\r\n\r\n\x89PNG")
        assert _answered_within(url, 10) == 200


# ---------------------------------------------------------------- hostile clients (issue 28)

def _answered_within(url, seconds, path="/health"):
    """The status of GET `path` once it is not a 503, asked again until `seconds` passed."""
    until = time.monotonic() + seconds
    while True:
        status = ask(url, path=path)[0]
        if status != 503 or time.monotonic() > until:
            return status
        time.sleep(0.1)


RFC_2231 = {  # Content-Type headers that all name the boundary XyZ123
    "utf-8 charset": "multipart/form-data; boundary*=utf-8''XyZ123",
    "charset and language": "multipart/form-data; boundary*=us-ascii'en'XyZ123",
    "percent-encoded": "multipart/form-data; boundary*=utf-8''XyZ%31%323",
    "in two sections": "multipart/form-data; boundary*0=XyZ; boundary*1=123",
    "quoted": 'multipart/form-data; boundary="XyZ123"',
}


@pytest.mark.parametrize("case", list(RFC_2231))
def test_rfc_2231_boundaries_answer_as_a_browser_form(model, case):
    """A boundary however RFC 2231 writes it (boundary*=utf-8''XyZ123 was a 500) is the
    form a browser sends: the same answer, byte for byte; a file name written the same
    way (filename*=) names its row."""
    small = encoded((40, 30), "PNG")
    body, headers = form(("ok.png", small))
    with running(model) as (url, _):
        expected = ask(url, "POST", "/predict", body, headers)
        got = ask(url, "POST", "/predict", form(("ok.png", small), boundary="XyZ123")[0],
                  {"Content-Type": RFC_2231[case]})
        named = ask(url, "POST", "/predict", form(
            ("caf%C3%A9.png", small), boundary="XyZ123", filename="filename*=utf-8''{}")[0],
            {"Content-Type": RFC_2231[case]})
    assert expected[0] == 200 and got[0] == 200 and got[2] == expected[2]
    assert named[0] == 200 and json.loads(named[2])[0]["path"] == "café.png"


@pytest.mark.parametrize("header", [
    "multipart/form-data; boundary*=utf-8''%FF%FE",       # not UTF-8
    "multipart/form-data; boundary*=XyZ123",              # no charset
    "multipart/form-data; boundary*=utf-8''",             # empty
    'multipart/form-data; boundary="a\\"b"',            # a quote inside
    "multipart/form-data; boundary=" + "x" * 71,          # over RFC 2046's 70
    "multipart/form-data; boundary*0*=utf-8''%E2%82; boundary*1*=%AC",  # split in a character
])
def test_a_broken_boundary_is_a_400_never_a_500(model, header):
    small = encoded((40, 30), "PNG")
    with running(model) as (url, events):
        status, _, answer = ask(url, "POST", "/predict", form(("ok.png", small))[0],
                                {"Content-Type": header})
        assert status == 400 and "boundary" in json.loads(answer)["error"], answer
        assert ask(url)[0] == 200


def test_parts_keep_every_byte(model):
    """The email parser hands each part's bytes back exactly: CR, LF, CRLF, a line like a
    boundary and no line ending at all inside a PNG's bytes (its ancillary chunk)."""
    from catlr import Predictor

    image = Image.new("RGB", (40, 30), (10, 200, 30))
    tricky = b"\r\n--XyZ12\r\n\n\r\r\n--\r\n" + bytes(range(256)) * 4
    buf = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add(b"caTl", tricky)  # a private chunk: the bytes must survive, or the CRC fails
    image.save(buf, format="PNG", pnginfo=info)
    data = buf.getvalue()
    with running(model) as (url, _):
        status, _, answer = ask(url, "POST", "/predict?seen=1",
                                *form(("t.png", data), boundary="XyZ123"))
    row = json.loads(answer)[0]
    assert status == 200, answer
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(row.pop("seen").split(",")[1]))))
    assert np.array_equal(seen, Predictor.load(model).decode(data))


def test_dribbling_clients_are_cut_at_the_deadline_and_one_more_gets_a_503_at_once(
        model, monkeypatch):
    """Slow loris: every slot held by a client dribbling its head a byte at a time (each
    read well within any per-read timeout). One more client gets a 503 with Retry-After at
    once (the accepting thread never waits for a slot); the request deadline (here 3 s)
    cuts the dribblers, and /health answers again within a few seconds."""
    import catlr.serve.http

    monkeypatch.setattr(catlr.serve.http, "MAX_CONNECTIONS", 8)
    monkeypatch.setattr(catlr.serve.http, "REQUEST_SECONDS", 3)
    with running(model) as (url, events):
        u = urlsplit(url)
        socks = [socket.create_connection((u.hostname, u.port), timeout=10) for _ in range(8)]
        head, done = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200, \
            threading.Event()

        def dribble():
            for i in range(len(head)):
                if done.wait(0.25):
                    return
                for s in socks:
                    with contextlib.suppress(OSError):
                        s.send(head[i:i + 1])

        dribbler = threading.Thread(target=dribble, daemon=True)
        dribbler.start()
        try:
            time.sleep(0.5)  # every slot is taken
            t0 = time.monotonic()
            status, headers, answer = ask(url)
            assert status == 503 and time.monotonic() - t0 < 2, (status, answer)
            assert headers["Retry-After"] == "2" and headers["Connection"] == "close"
            assert "busy (8 connections at once)" in json.loads(answer)["error"]
            for s in socks:  # each dribbler cut by the server at its deadline
                with contextlib.suppress(ConnectionResetError):
                    while s.recv(4096):
                        pass
            assert time.monotonic() - t0 < 3 + 3
            assert _answered_within(url, 5) == 200
        finally:
            done.set()
            dribbler.join(10)
            for s in socks:
                s.close()
    assert 503 in [e.status for e in events]


@pytest.mark.parametrize("given", ["9999999999G", "2GB", "1025MB"])
def test_max_upload_is_bounded_in_one_line(model, given):
    from catlr.errors import CatlrError
    from catlr.serve import Limits

    code, _, err = run_cli(["serve", model, "--max-upload", given])
    assert code == 2 and err == f"Error: --max-upload must be a size from 1B to 1GB, got {given}\n"
    with pytest.raises(CatlrError, match="--max-upload must be"):
        Limits(max_bytes=10**22)
    assert Limits(max_bytes=1 << 30).max_bytes == 1 << 30


@pytest.mark.parametrize("length", ["9" * 25, str(2**64), str(2**63), str((1 << 30) + 1)])
def test_a_huge_content_length_is_a_413_and_the_server_goes_on(model, length):
    with running(model, max_bytes=1 << 30) as (url, events):
        answer = raw(url, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          b"image/png\r\nContent-Length: " + length.encode() + b"\r\n\r\nab")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 "), answer[:300]
        assert "over the limit of 1,073,741,824" in json.loads(body)["error"]
        assert ask(url)[0] == 200
    assert [e.status for e in events] == [413, 200]


def test_a_body_is_read_as_it_arrives(model):
    """A Content-Length at the limit (1 GB) from a client that sends a few bytes and leaves
    reserves nothing and answers nothing; the server goes on."""
    with running(model, max_bytes=1 << 30) as (url, events):
        answer = raw(url, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          b"image/png\r\nContent-Length: 1073741824\r\n\r\n\x89PNG")
        assert answer == b""
        assert ask(url)[0] == 200
    assert [e.status for e in events] == [200]


# ---------------------------------------------------------------- one product, every path

@needs_course
def test_an_image_gets_the_same_bits_through_predict_serve_eval_and_the_predictor(
        course_model, tmp_path):
    """Three of the course's test images, as lossless PNGs (decoded back to the very
    pixels): their probabilities from `catlr predict --json` (with BLAS on 1 thread or 2:
    its threads once split the product, changing the last bits), from the server (one form,
    each alone, and 8 requests at once), from `catlr eval --predictions` on the whole test
    split, and from Predictor.proba alone and in a batch are the same floats, bit for bit;
    and they agree to 1e-12 with an exact sum (math.fsum) of the products."""
    import csv
    import math

    from catlr import Predictor
    from catlr.learn.loss import sigmoid

    model = course_model[0]
    predictor = Predictor.load(model)
    with __import__("h5py").File(COURSE / "test_catvnoncat.h5", "r") as f:
        x = f["test_set_x"][:]
    picks = [0, 7, 31]
    files = []
    for i in picks:
        Image.fromarray(x[i]).save(tmp_path / f"t{i}.png")
        files.append((f"t{i}.png", (tmp_path / f"t{i}.png").read_bytes()))
    code, out, err = run_cli(["predict", *[tmp_path / n for n, _ in files], "--model", model,
                              "--json"])
    assert code == 0, err
    by_predict = [r["probability"] for r in json.loads(out)]
    for threads in ("1", "2"):  # however many threads BLAS would have: none are used
        env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        r = subprocess.run([sys.executable, "-m", "catlr", "predict",
                            *[tmp_path / n for n, _ in files], "--model", model, "--json"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert [row["probability"] for row in json.loads(r.stdout)] == by_predict, threads
    code, _, err = run_cli(["eval", "--model", model, "--predictions", tmp_path / "p.csv"])
    assert code == 0, err
    with open(tmp_path / "p.csv") as f:
        by_eval = [float(r["probability"]) for r in csv.DictReader(f)]
    by_eval = [by_eval[i] for i in picks]
    with running(model) as (url, _):
        status, _, body = ask(url, "POST", "/predict", *form(*files))
        by_form = [r["probability"] for r in json.loads(body)]
        alone = [json.loads(ask(url, "POST", "/predict", data, {"Content-Type": "image/png"})[2])
                 [0]["probability"] for _, data in files]
        answers = []

        def post(data):
            answers.append(ask(url, "POST", "/predict", data, {"Content-Type": "image/png"})[2])

        threads = [threading.Thread(target=post, args=(data,)) for _, data in files * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert status == 200 and len(answers) == 6
    at_once = sorted(json.loads(a)[0]["probability"] for a in answers)
    by_predictor = [float(predictor.proba(x[i][None])[0]) for i in picks]
    in_batch = [float(p) for p in predictor.proba(x)[picks]]
    assert by_predict == by_eval == by_form == alone == by_predictor == in_batch
    assert at_once == sorted(by_predict * 2)
    w, b = predictor.weights()
    for i, p in zip(picks, by_predict):
        exact = math.fsum((x[i].reshape(-1) / 255.0) * w) + b
        assert abs(p - float(sigmoid(np.array([exact]))[0])) <= 1e-12 * p


@pytest.mark.slow
def test_the_decode_budget_bounds_the_server_under_concurrent_huge_pngs(model):
    """Twice 8 requests at once, each a 7900 x 7900 16-bit gray PNG (which the budget once
    counted at two thirds of what Pillow holds: 2.4 GB resident): `catlr serve`'s peak
    resident memory (VmHWM) stays within the 2 GB shared decode budget plus 256 MB (the
    interpreter, the bodies, the model)."""
    from catlr.data.images import DECODE_BUDGET

    if not Path("/proc/self/status").exists():
        pytest.skip("VmHWM is read from /proc (Linux)")
    buf = io.BytesIO()
    Image.new("I;16", (7900, 7900), 3000).save(buf, format="PNG", compress_level=1)
    body = buf.getvalue()
    sys.path.insert(0, str(ROOT / "bench"))
    from serve_load import start, stop

    proc, url = start(model, "--max-upload", "8MB")
    port = urlsplit(url).port
    try:
        statuses = []

        def one():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=240)
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "image/png"})
            r = conn.getresponse()
            statuses.append(r.status)
            r.read()
            conn.close()

        for _ in range(2):  # two rounds: more chances for the decodes' peaks to meet
            threads = [threading.Thread(target=one) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
        text = Path(f"/proc/{proc.pid}/status").read_text()
    finally:
        stop(proc)
    peak = int(text.split("VmHWM:")[1].split()[0]) * 1024
    assert statuses == [200] * 16
    print(f"peak {peak / 2**20:.0f} MB for a budget of {DECODE_BUDGET / 2**20:.0f} MB")
    assert peak <= DECODE_BUDGET + (256 << 20), peak


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

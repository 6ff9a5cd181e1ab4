"""catlr serve: a page to try photos on a model, and a JSON API, on 127.0.0.1 by default.

    GET  /          the page: drop or pick photos, see for each its probability, its label
                    and the size x size image the model sees; the model's name, data and
                    figures. One self-contained document: nothing is fetched from elsewhere.
    POST /predict   an image as the body (Content-Type image/... or application/octet-stream;
                    ?name=FILE names it), or a multipart/form-data form whose `file` fields
                    are images: 200 and exactly the rows `catlr predict --json` prints for
                    those files (predict.score builds both). ?seen=1 adds to each row "seen",
                    the pixels the model saw as a data: URL of a PNG (the page asks for it);
                    ?explain=1 adds "explanation": the logit, b, the pixels' part and "heat",
                    each pixel's push as a PNG data: URL (catlr explain's map, red towards
                    the positive class, blue towards the negative).
                    A bad upload is a 4xx and {"error": ...}, with "rows" when some images
                    were read; the server goes on serving.
    GET  /health    {"status": "ok", the model, the limits}

Uploads are decoded by catlr's decoder (images.load_image) with predict's limits (pixel
caps read from the header, broken files named); a request's body is bounded (max_bytes)
and so is the number of images it carries (max_images). The standard library's threaded
server is enough here: one thread a connection, at most MAX_CONNECTIONS at once, each
silent one dropped after IDLE_SECONDS; 16 clients at a time on loopback get no errors
(bench/serve_load.py measures it).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import ipaddress
import re
import socket
import sys
import threading
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from ..config import SERVE, parse_memory
from ..data.images import MAX_PIXELS
from ..errors import CatlrError, describe
from ..events import Failed, Served, Serving, ignore
from ..runs.predictor import Predictor
from ..stages.explain import card
from ..stages.predict import score
from ..text import json_text, printable
from ..version import __version__

HOST, PORT, MAX_IMAGES = SERVE["host"], SERVE["port"], SERVE["max_images"]
MAX_UPLOAD = parse_memory(SERVE["max_upload"])  # bytes of one request's body
MAX_CONNECTIONS = 64       # connections served at once; more wait to be accepted
IDLE_SECONDS = 30          # a connection silent this long is closed (slow clients hold a thread)
DRAIN_BYTES = 64 << 20     # an over-limit body up to this much larger is read and dropped, so
                           # that the client reads the 413 instead of a reset connection
MAX_NAME = 1024            # characters of an upload's file name kept in its row
IMAGE_TYPES = ("image/", "application/octet-stream")


class Refused(CatlrError):
    """A request the server answers with `status` (4xx) and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Limits:
    """What one request may carry: `max_bytes` of body, `max_images` images, each at most
    `max_pixels` pixels (read from its header); `workers` decoding threads a request."""

    def __init__(self, max_bytes=MAX_UPLOAD, max_images=MAX_IMAGES, max_pixels=MAX_PIXELS,
                 workers=0):
        self.max_bytes, self.max_images = int(max_bytes), int(max_images)
        self.max_pixels, self.workers = int(max_pixels), int(workers)


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def model_info(predictor: Predictor, name: str) -> dict:
    """The model as the page and /health show it: its file, data, classes, preprocessing
    and the figures train recorded."""
    meta = predictor.meta
    return {"model": name, "data": meta.get("data"), "data_kind": meta.get("data_kind"),
            "classes": list(predictor.classes), "image_size": predictor.size,
            "fit": predictor.fit, "threshold": predictor.threshold,
            **{k: meta.get(k) for k in ("train_accuracy", "test_accuracy", "m_train",
                                        "m_test", "created")}}


def _seen(pixels) -> str:
    """(size, size, 3) uint8 pixels as a data: URL of a PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _explained(predictor: Predictor, pixels) -> dict:
    """explain.card of one image, its heat map as a data: URL of a PNG."""
    found = card(predictor, pixels)
    return dict(found, heat=_seen(found["heat"]))


def _header(name: str, value: str) -> Message:
    """A header parsed as the email package parses one (quoted parameters, RFC 2231)."""
    m = Message()
    m[name] = value
    return m


def _multipart(body: bytes, boundary, max_images: int) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every part named `file` of a multipart/form-data body."""
    if not boundary or len(boundary) > 70 or not boundary.isascii():
        raise Refused(400, "the multipart/form-data body has no boundary (or one over 70 "
                           "characters), send the form as a browser or curl -F file=@PHOTO does")
    parts = (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))
    if len(parts) < 2 or not parts[-1].startswith(b"--"):
        raise Refused(400, "the multipart/form-data body has no closing boundary, it was cut "
                           "short: send the whole form")
    if len(parts) - 2 > max_images + 16:  # a few other fields besides the images
        raise Refused(413, f"the form has {len(parts) - 2} parts, expected at most "
                           f"{max_images} images (--max-images): send fewer in each request")
    files = []
    for part in parts[1:-1]:
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            raise Refused(400, "a part of the multipart/form-data body has no blank line after "
                               "its headers, send the form as a browser or curl -F does")
        disposition = ""
        for line in head.split(b"\r\n")[1:]:  # the first is what ends the boundary's line
            key, _, value = line.decode("utf-8", "replace").partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value.strip()
        field = _header("Content-Disposition", disposition)
        if field.get_param("name", header="content-disposition") != "file":
            continue
        name = field.get_filename() or "upload"
        files.append((str(name)[:MAX_NAME], data))
    return files


class App:
    """What the server answers, apart from HTTP: the page, /health and /predict's rows."""

    def __init__(self, predictor: Predictor, name: str, limits: Limits):
        self.predictor, self.name, self.limits = predictor, name, limits
        self.info = model_info(predictor, name)
        self.page, self.policy = page(self.info, limits)

    def health(self) -> dict:
        return {"status": "ok", **self.info,
                "limits": {"max_bytes": self.limits.max_bytes,
                           "max_images": self.limits.max_images,
                           "max_pixels": self.limits.max_pixels}}

    def uploads(self, content_type: str | None, body: bytes, query: dict) -> list:
        """(name, bytes) of each image a request carries, or Refused."""
        if not content_type:
            raise Refused(415, "the request has no Content-Type, expected an image type "
                               "(image/jpeg, ...) or multipart/form-data: e.g. curl -F "
                               "file=@cat.jpg URL/predict")
        header = _header("Content-Type", content_type)
        kind = header.get_content_type()
        if kind == "multipart/form-data":
            files = _multipart(body, header.get_param("boundary"),
                               self.limits.max_images)
            if not files:
                raise Refused(400, "the form has no field named file, send each image as a "
                                   "file field: curl -F file=@cat.jpg URL/predict")
        elif kind.startswith(IMAGE_TYPES):
            if not body:
                raise Refused(400, "the request's body is empty, send the image's bytes: "
                                   "curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg'")
            files = [(query.get("name", ["upload"])[0][:MAX_NAME], body)]
        else:
            raise Refused(415, f"the body is {printable(kind)[:80]}, expected an image "
                               "(image/jpeg, image/png, ...) or multipart/form-data with file "
                               "fields: e.g. curl -F file=@cat.jpg URL/predict")
        if len(files) > self.limits.max_images:
            raise Refused(413, f"the request carries {len(files)} images, over the limit of "
                               f"{self.limits.max_images} (--max-images): send fewer at a time")
        return files

    def predict(self, files, seen: bool = False, explain: bool = False) -> tuple[int, object]:
        """(status, payload) for the uploads: 200 and predict --json's rows, or 422 and the
        error with the rows when an image cannot be read."""
        pixels = [] if seen or explain else None
        rows = score(files, self.predictor, workers=self.limits.workers,
                     max_pixels=self.limits.max_pixels, seen=pixels)
        if seen:
            rows = [dict(r, seen=_seen(x)) if x is not None else r for r, x in zip(rows, pixels)]
        if explain:
            rows = [dict(r, explanation=_explained(self.predictor, x)) if x is not None else r
                    for r, x in zip(rows, pixels)]
        bad = [r for r in rows if "error" in r]
        if bad:
            return 422, {"error": f"{len(bad)} of {len(rows)} images cannot be read ("
                                  f"{bad[0]['path']}: {bad[0]['error']}), send JPEG, PNG, GIF, "
                                  "BMP, WebP, TIFF or AVIF files", "rows": rows}
        return 200, rows


def _hostname(value: str) -> str:
    """The host of a Host header: '127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1'."""
    if value.startswith("["):
        return value[1:value.find("]")]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _json(payload) -> bytes:
    # as `catlr predict --json` writes it (render.show): the same document, byte for byte
    return json_text(payload).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's requests share one connection
    # an answer is written as headers, then body: without this, Nagle's algorithm holds the
    # body until the client's delayed ACK, 40 ms for every request
    disable_nagle_algorithm = True
    server_version = f"catlr/{__version__}"
    # a request line too broken to name its version is answered as HTTP/1.0, with headers
    # (HTTP/0.9's answers have none, so a client could not read the JSON error's type)
    default_request_version = "HTTP/1.0"
    timeout = IDLE_SECONDS
    app: App = None
    started = 0.0
    images = 0

    # ---- routes
    def do_GET(self):
        self._begin()
        route = urlsplit(self.path).path
        if route == "/":
            self._send(200, self.app.page, "text/html; charset=utf-8",
                       [("Content-Security-Policy", self.app.policy)])
        elif route == "/health":
            self._send(200, _json(self.app.health()), "application/json")
        elif route == "/predict":
            self._error(405, "POST an image to /predict (GET /health tells the server is up)",
                        [("Allow", "POST")])
        else:
            self._error(404, f"no page {printable(route)[:100]}, the server has /, /predict "
                             "and /health")

    def do_POST(self):
        self._begin()
        url = urlsplit(self.path)
        try:
            body = self._body()
            if url.path != "/predict":
                raise Refused(404, f"no page {printable(url.path)[:100]}, POST images to /predict")
            query = parse_qs(url.query)
            files = self.app.uploads(self.headers.get("Content-Type"), body, query)
            self.images = len(files)
            status, payload = self.app.predict(files, seen=query.get("seen") == ["1"],
                                               explain=query.get("explain") == ["1"])
            self._send(status, _json(payload), "application/json")
        except Refused as e:
            self._error(e.status, str(e))
        except OSError:  # the client left, or sent fewer bytes than it said
            self.close_connection = True
        except Exception as e:  # a bug: one line for the client, the server goes on
            self._error(500, f"unexpected {type(e).__name__}: {describe(e)}, report it")

    # ---- HTTP
    def version_string(self):
        return self.server_version  # not Python's version: a client needs only catlr's

    def _begin(self):
        self.started, self.images = time.perf_counter(), 0
        if self.command != "POST" and (self.headers.get("Transfer-Encoding") or
                                       self.headers.get("Content-Length", "0").strip() != "0"):
            # a body no route reads: the next request would be read from inside it
            self.close_connection = True
        host = _hostname(self.headers.get("Host") or "")
        if self.server.local and host and not is_loopback(host):
            # a page elsewhere that renamed itself to 127.0.0.1 (DNS rebinding) reads nothing
            raise Refused(421, f"Host {printable(host)[:80]} is not this server's address")

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except Refused as e:  # refused before its body was read: the connection ends
            self.close_connection = True
            self._error(e.status, str(e))

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise Refused(411, "send the upload with a Content-Length, not "
                               "Transfer-Encoding: chunked")
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise Refused(411, "the request has no Content-Length, send the image's bytes "
                               "with their length (curl and browsers do)")
        if not re.fullmatch(r"[0-9]{1,19}", length.strip()):
            self.close_connection = True
            raise Refused(400, f"Content-Length {printable(length)[:40]!r} is not a number of "
                               "bytes")
        n, limit = int(length), self.app.limits.max_bytes
        if n > limit:
            if n <= limit + DRAIN_BYTES:
                self._drain(n)
            else:
                self.close_connection = True
            raise Refused(413, f"the upload is {n:,} bytes, over the limit of {limit:,} "
                               "(--max-upload): send fewer or smaller images")
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionAbortedError("the client sent fewer bytes than it said")
        return data

    def _drain(self, n: int):
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                self.close_connection = True
                return
            n -= len(chunk)

    def _send(self, status: int, body: bytes, content_type: str, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in headers:
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str, headers=()):
        self._send(status, _json({"error": message}), "application/json", headers)

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (a malformed request line, an unknown method,
        headers too long) as JSON too, never its HTML page."""
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        self._error(code, f"{text}, send an HTTP/1.1 request: GET /, GET /health or "
                          "POST /predict")

    def log_request(self, code="-", size="-"):
        ms = (time.perf_counter() - self.started) * 1000 if self.started else 0.0
        path = urlsplit(getattr(self, "path", "") or "").path  # none when the line was broken
        self.server.report(Served(printable(self.command or "-")[:20], printable(path)[:100],
                                  int(getattr(code, "value", code)), ms, self.images))

    def log_message(self, format, *args):
        """Quiet: timeouts and dropped connections are the clients' business."""


class Server(ThreadingHTTPServer):
    """The HTTP server of an App: threads that end with the process, connections bounded."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, app: App, host: str = HOST, port: int = PORT, on_event=ignore):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.local = is_loopback(host)
        self.app, self.on_event, self.lock = app, on_event, threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        handler = type("Handler", (_Handler,), {"app": app})
        try:
            super().__init__((host.strip("[]"), port), handler)
        except OSError as e:
            raise CatlrError(f"cannot listen on {host}:{port} ({e.strerror or e}), choose "
                             "another --port (0: any free one) or --host") from None
        except (OverflowError, UnicodeError) as e:
            raise CatlrError(f"cannot listen on {host}:{port} ({describe(e)}), give --host an "
                             "address such as 127.0.0.1 and --port from 0 to 65535") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def report(self, event):
        with self.lock:  # one line at a time from the handlers' threads
            self.on_event(event)

    def process_request(self, request, client_address):
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        """A connection that failed (reset, timed out) ends quietly; anything else is said in
        one line, never as a traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.report(Failed(f"{type(error).__name__}: {describe(error)}"))


def build(model_path, *, host: str = HOST, port: int = PORT, threshold: float = 0.5,
          limits: Limits | None = None, on_event=ignore) -> Server:
    """A server for the model at `model_path`, bound (port 0: a free one), not yet serving:
    call serve_forever(), and shutdown() and server_close() when done."""
    predictor = Predictor.load(model_path, threshold)
    return Server(App(predictor, str(model_path), limits or Limits()), host, port, on_event)


def serve(model_path, *, host: str = HOST, port: int = PORT, threshold: float = 0.5,
          limits: Limits | None = None, on_event=ignore) -> None:
    """Serve the model at `model_path` until interrupted (Ctrl-C, SIGTERM)."""
    server = build(model_path, host=host, port=port, threshold=threshold, limits=limits,
                   on_event=on_event)
    warnings = warnings_for(host, model_path, server.app.predictor.meta)
    with server:
        server.report(Serving(server.url, str(model_path), tuple(warnings)))
        server.serve_forever()


def warnings_for(host: str, model_path, meta: dict) -> list[str]:
    """What to mind before serving: an address other machines reach, a flagged model."""
    said = [f"{model_path}: {w}" for w in meta.get("warnings") or []]
    if not is_loopback(host):
        said.insert(0, f"serving on {host}, not on loopback: any machine that reaches this one "
                       "may upload images and read the model's name and figures; leave --host "
                       "out to serve on 127.0.0.1 only")
    return said


# ---------------------------------------------------------------- the page

STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;
color:#1d1d1f;background:#fafafa}
h1{font-size:1.6rem;margin:.2rem 0}
.model{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.8rem 0;
padding:.8rem 1rem;background:#fff;border:1px solid #ddd;border-radius:8px}
.model dt{color:#666}.model dd{margin:0;overflow-wrap:anywhere}
.drop{display:block;border:2px dashed #888;border-radius:10px;padding:2rem;text-align:center;
cursor:pointer;background:#fff}
.drop.over{border-color:#0a6;background:#efe}
.drop input{display:block;margin:.6rem auto 0}
.limits,#status{color:#666;font-size:.9rem}
#results{display:flex;flex-wrap:wrap;gap:1rem;margin-top:1rem}
.card{margin:0;width:12rem;padding:.7rem;background:#fff;border:1px solid #ddd;border-radius:8px}
.card img{display:block;width:128px;height:128px;image-rendering:pixelated;margin:0 auto .4rem;
border:1px solid #ccc}
.card .name{font-size:.85rem;color:#444;overflow-wrap:anywhere}
.card .verdict{font-weight:600;font-size:1.1rem}.card .probability{color:#333}
.card.positive .verdict{color:#07804a}.card.negative .verdict{color:#555}
.card.bad{border-color:#d33}.card.bad .verdict{color:#b00;font-weight:400}
.card .why{font-size:.8rem;color:#444;margin-top:.4rem}.card .why img{margin:.3rem auto}
"""

SCRIPT = """
const body = document.body, zone = document.getElementById("drop");
const input = document.getElementById("pick"), out = document.getElementById("results");
const status = document.getElementById("status");
const maxImages = Number(body.dataset.maxImages), maxBytes = Number(body.dataset.maxBytes);
const positive = body.dataset.positive, negative = body.dataset.negative;
input.addEventListener("change", () => { send(Array.from(input.files)); input.value = ""; });
zone.addEventListener("dragover", e => { e.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", e => {
  e.preventDefault(); zone.classList.remove("over"); send(Array.from(e.dataTransfer.files));
});
async function send(files) {
  let batch = [], bytes = 0;
  for (const f of files) {
    if (batch.length && (batch.length === maxImages || bytes + f.size > maxBytes)) {
      await ask(batch); batch = []; bytes = 0;
    }
    batch.push(f); bytes += f.size;
  }
  if (batch.length) await ask(batch);
}
async function ask(files) {
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  status.textContent = "Scoring " + files.length + (files.length === 1 ? " photo" : " photos");
  let rows;
  try {
    const answer = await (await fetch("predict?seen=1&explain=1",
                                      {method: "POST", body: form})).json();
    rows = Array.isArray(answer) ? answer
      : answer.rows || files.map(f => ({path: f.name, error: answer.error}));
  } catch (e) {
    rows = files.map(f => ({path: f.name, error: "no answer from the server (" + e + ")"}));
  }
  for (const row of rows) show(row);
  status.textContent = "";
}
function show(row) {
  const card = document.createElement("figure");
  card.className = "card " + (row.error ? "bad" : row.label === positive ? "positive" : "negative");
  if (row.seen) {
    const img = new Image(128, 128);
    img.src = row.seen;
    img.alt = "the image the model sees";
    card.append(img);
  }
  const caption = document.createElement("figcaption");
  const name = document.createElement("div"), verdict = document.createElement("div");
  name.className = "name"; verdict.className = "verdict";
  name.textContent = row.path;
  verdict.textContent = row.error ? "error: " + row.error : row.label;
  caption.append(name, verdict);
  if (!row.error) {
    const p = document.createElement("div");
    p.className = "probability";
    p.textContent = "probability " + row.probability.toFixed(3);
    caption.append(p);
  }
  if (row.explanation) explained(caption, row.explanation);
  card.append(caption);
  out.prepend(card);
}
function explained(caption, e) {
  const why = document.createElement("div"), heat = new Image(128, 128);
  const sums = document.createElement("div"), key = document.createElement("div");
  why.className = "why"; sums.className = "sums"; key.className = "key";
  heat.className = "heat"; heat.src = e.heat;
  heat.alt = "each pixel's push: red towards " + positive + ", blue towards " + negative;
  const signed = v => (v < 0 ? "-" : "+") + Math.abs(v).toFixed(2);
  sums.textContent = "logit " + signed(e.logit) + " = pixels " + signed(e.contributions)
    + " + b " + signed(e.b);
  key.textContent = "red: towards " + positive + ", blue: towards " + negative;
  why.append(heat, sums, key);
  caption.append(why);
}
"""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>catlr: {{positive}} or {{negative}}?</title>
<link rel="icon" href="data:,">
<style>{{style}}</style></head>
<body data-max-images="{{max_images}}" data-max-bytes="{{max_bytes}}" data-positive="{{positive}}"
data-negative="{{negative}}">
<h1>{{positive}} or {{negative}}? Try your photos</h1>
<dl class="model">
<dt>Model</dt><dd id="model">{{model}}</dd>
<dt>Trained on</dt><dd id="data">{{data}}</dd>
<dt>Test</dt><dd id="test">{{test}}</dd>
<dt>Train</dt><dd id="train">{{train}}</dd>
<dt>Sees</dt><dd>{{size}} x {{size}} RGB ({{fit}}); {{positive}} when the probability is
over {{threshold}}</dd>
</dl>
<label id="drop" class="drop">Drop photos here, or pick them:
<input id="pick" type="file" accept="image/*" multiple></label>
<p class="limits">Up to {{max_images}} photos and {{max_upload}} a request, decoded as
<code>catlr predict</code> decodes them (EXIF rotation, then {{fit}} to {{size}} x {{size}}).
Nothing leaves this machine.</p>
<div id="status" role="status"></div>
<section id="results"></section>
<script>{{script}}</script>
</body></html>
"""


def _figure(meta: dict, split: str) -> str:
    accuracy, m = meta.get(f"{split}_accuracy"), meta.get(f"m_{split}")
    if accuracy is None:
        return "not measured"
    return f"{accuracy:.2%} accuracy" + (f" on {m} images" if m else "")


def _fill(template: str, fields: dict) -> str:
    """The template with every {{key}} replaced by its field, escaped: the one place a
    string from a file (a class name, a path) enters the page."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: html.escape(printable(fields[m.group(1)])),
                  template)


def page(info: dict, limits: Limits) -> tuple[bytes, str]:
    """(the page's HTML, its Content-Security-Policy): only its own inline style and script
    run, and it fetches only from this server."""
    fields = {"positive": info["classes"][1], "negative": info["classes"][0],
              "model": info["model"], "data": info["data"] or "unknown",
              "test": _figure(info, "test"), "train": _figure(info, "train"),
              "size": info["image_size"], "fit": info["fit"], "threshold": info["threshold"],
              "max_images": limits.max_images, "max_bytes": limits.max_bytes,
              "max_upload": f"{limits.max_bytes / 2**20:g} MB", "style": "", "script": ""}
    text = _fill(TEMPLATE, fields)
    # the style and script are catlr's own, not escaped (quotes and > must stay code)
    text = text.replace("<style></style>", f"<style>{STYLE}</style>").replace(
        "<script></script>", f"<script>{SCRIPT}</script>")

    def digest(code):
        return "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"

    policy = (f"default-src 'none'; script-src {digest(SCRIPT)}; style-src {digest(STYLE)}; "
              "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return text.encode("utf-8"), policy

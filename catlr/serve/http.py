"""catlr serve's HTTP side: the handler (routes, bodies, answers) and the server (threads,
slots, deadlines). What a request is answered comes from app.App.

Bounds, each at one place here:
  - a request's head and body arrive within REQUEST_SECONDS of when the server starts
    waiting for it (`_Deadline`: every read of the connection gets the time left, so a
    client dribbling a byte at a time is cut at the deadline, not every read's timeout);
  - at most MAX_CONNECTIONS connections are served at once; the accepting thread never
    waits for a slot: a connection over the limit is answered 503 with Retry-After at
    once, and closed once its request is read and dropped (`Server.service_actions`);
  - a body is read in pieces as it arrives, at most the App's max_bytes (a larger
    Content-Length is a 413 before anything is read); Transfer-Encoding is refused.
"""

from __future__ import annotations

import io
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ..errors import CatlrError, describe
from ..events import Failed, Served, ignore
from ..text import json_text, printable
from ..version import __version__
from .app import HOST, PORT, App, Refused, is_loopback

MAX_CONNECTIONS = 64       # connections served at once; one more is answered 503 at once
REQUEST_SECONDS = 30       # a request's head and body, whole (a keep-alive wait included)
SEND_SECONDS = 30          # an answer's writing, to a client that reads it slowly
RETRY_AFTER = 2            # seconds a refused client is told to wait
CLOSING_SECONDS = 2        # a refused connection's request is read and dropped this long
MAX_CLOSING = 256          # refused connections kept that long at once; more close at once
DRAIN_BYTES = 64 << 20     # an over-limit body up to this much larger is read and dropped, so
                           # that the client reads the 413 instead of a reset connection
BODY_PIECE = 1 << 20       # a body is read this much at a time: memory grows as data comes


def _json(payload) -> bytes:
    # as `catlr predict --json` writes it (render.show): the same document, byte for byte
    return json_text(payload).encode("utf-8")


def _hostname(value: str) -> str:
    """The host of a Host header: '127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1'."""
    if value.startswith("["):
        return value[1:value.find("]")]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class _Deadline(io.RawIOBase):
    """A connection's reads, each waiting at most until `until` (time.monotonic()): one
    deadline for a whole request, however its bytes are spread out."""

    def __init__(self, sock):
        self.sock, self.until = sock, float("inf")

    def readable(self):
        return True

    def readinto(self, buffer):
        left = self.until - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the request took over {REQUEST_SECONDS} s")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's requests share one connection
    # an answer is written as headers, then body: without this, Nagle's algorithm holds the
    # body until the client's delayed ACK, 40 ms for every request
    disable_nagle_algorithm = True
    server_version = f"catlr/{__version__}"
    # a request line too broken to name its version is answered as HTTP/1.0, with headers
    # (HTTP/0.9's answers have none, so a client could not read the JSON error's type)
    default_request_version = "HTTP/1.0"
    timeout = None  # each read's timeout is the request's time left (_Deadline)
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
        except TimeoutError:
            self.close_connection = True
            self._error(408, f"the request took over {REQUEST_SECONDS} s to arrive, send its "
                             "head and body at once")
        except OSError:  # the client left, or sent fewer bytes than it said
            self.close_connection = True
        except Exception as e:  # a bug: one line for the client, the server goes on
            self._error(500, f"unexpected {type(e).__name__}: {describe(e)}, report it")

    # ---- HTTP
    def version_string(self):
        return self.server_version  # not Python's version: a client needs only catlr's

    def setup(self):
        super().setup()
        self.rfile.close()  # the socket's own reader, replaced by one with a deadline
        self.reads = _Deadline(self.connection)
        self.rfile = io.BufferedReader(self.reads, 1 << 16)

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
        self.reads.until = time.monotonic() + REQUEST_SECONDS
        try:
            super().handle_one_request()
        except Refused as e:  # refused before its body was read: the connection ends
            self.close_connection = True
            self._error(e.status, str(e))

    def _body(self) -> bytearray:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise Refused(411, "send the upload with a Content-Length, not "
                               "Transfer-Encoding: chunked")
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise Refused(411, "the request has no Content-Length, send the image's bytes "
                               "with their length (curl and browsers do)")
        digits = length.strip()
        if not re.fullmatch(r"[0-9]+", digits):
            self.close_connection = True
            raise Refused(400, f"Content-Length {printable(length)[:40]!r} is not a number of "
                               "bytes")
        limit = self.app.limits.max_bytes
        n = int(digits) if len(digits) <= 20 else None  # longer: over any limit, unread
        if n is None or n > limit:
            if n is not None and n <= limit + DRAIN_BYTES:
                self._drain(n)
            else:
                self.close_connection = True
            said = f"{n:,} bytes" if n is not None else f"{digits[:20]}... bytes"
            raise Refused(413, f"the upload is {said}, over the limit of {limit:,} "
                               "(--max-upload): send fewer or smaller images")
        data = bytearray()
        while len(data) < n:  # as it arrives: a Content-Length alone reserves nothing
            piece = self.rfile.read(min(n - len(data), BODY_PIECE))
            if not piece:
                raise ConnectionAbortedError("the client sent fewer bytes than it said")
            data += piece
        return data

    def _drain(self, n: int):
        while n > 0:
            chunk = self.rfile.read(min(n, BODY_PIECE))
            if not chunk:
                self.close_connection = True
                return
            n -= len(chunk)

    def _send(self, status: int, body: bytes, content_type: str, headers=()):
        self.connection.settimeout(SEND_SECONDS)  # not what was left of the request's time
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


def busy_answer(slots: int) -> bytes:
    """The whole 503 a connection over the limit gets, written before its request is read."""
    body = _json({"error": f"the server is busy ({slots} connections at once), try again in "
                           f"{RETRY_AFTER} s"})
    return (f"HTTP/1.1 503 Service Unavailable\r\nServer: catlr/{__version__}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Retry-After: {RETRY_AFTER}\r\nCache-Control: no-store\r\nConnection: close\r\n"
            "\r\n").encode("ascii") + body


class Server(ThreadingHTTPServer):
    """The HTTP server of an App: a thread a connection (they end with the process), at
    most MAX_CONNECTIONS at once, each request within REQUEST_SECONDS."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, app: App, host: str = HOST, port: int = PORT, on_event=ignore):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.local = is_loopback(host)
        self.app, self.on_event, self.lock = app, on_event, threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.busy = busy_answer(MAX_CONNECTIONS)
        self.closing = []  # (socket, when to close it) of refused connections
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
        if not self.slots.acquire(blocking=False):
            self._refuse(request)
            return
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

    def _refuse(self, request):
        """503 at once, without waiting on the client: the answer fits an empty socket's
        buffer. The socket is closed later, its request read first (closing a socket with
        unread bytes resets it, and the client might lose the 503)."""
        try:
            request.setblocking(False)
            request.send(self.busy)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            request.close()
            return
        self.report(Served("-", "-", 503, 0.0))
        if len(self.closing) >= MAX_CLOSING:
            self.closing.pop(0)[0].close()
        self.closing.append((request, time.monotonic() + CLOSING_SECONDS))

    def service_actions(self):
        """Between accepts (serve_forever's loop): refused connections read and closed."""
        now, kept = time.monotonic(), []
        for request, until in self.closing:
            try:
                while request.recv(1 << 16):
                    pass
            except BlockingIOError:  # the client is still there: wait a little for it
                if now < until:
                    kept.append((request, until))
                    continue
            except OSError:
                pass
            request.close()
        self.closing = kept

    def server_close(self):
        super().server_close()
        for request, _ in self.closing:
            request.close()
        self.closing = []

    def handle_error(self, request, client_address):
        """A connection that failed (reset, timed out) ends quietly; anything else is said in
        one line, never as a traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.report(Failed(f"{type(error).__name__}: {describe(error)}"))

"""catlr serve: a page to try photos on a model, and a JSON API, on 127.0.0.1 by default.

    GET  /          the page: drop or pick photos, see for each its probability, its label
                    and the size x size image the model sees; the model's name, data and
                    figures. One self-contained document: nothing is fetched from elsewhere.
    POST /predict   an image as the body (Content-Type image/... or application/octet-stream;
                    ?name=FILE names it), or a multipart/form-data form whose `file` fields
                    are images: 200 and exactly the rows `catlr predict --json` prints for
                    those files (Predictor.score builds both). ?seen=1 adds to each row
                    "seen", the pixels the model saw as a data: URL of a PNG (the page asks
                    for it); ?explain=1 adds "explanation": the logit, b, the pixels' part
                    and "heat", each pixel's push as a PNG data: URL (catlr explain's map,
                    red towards the positive class, blue towards the negative). A bad upload
                    is a 4xx and {"error": ...}, with "rows" when some images were read; the
                    server goes on serving.
    GET  /health    {"status": "ok", the model, the limits}

The package, one owner a module:
    app.py    what the server answers apart from HTTP: App (uploads, rows, health),
              Limits and their bounds, Refused, multipart forms (the email package's parser)
    http.py   the handler and the server: routes, bodies read in pieces, a deadline per
              request, a slot per connection and a 503 at once past them
    page.py   the page: its template, style and script, every field escaped by _fill

Uploads are decoded by catlr's decoder with predict's limits (pixel caps read from the
header, broken files named, a shared decode budget); a request's body is bounded
(max_bytes) and so is the number of images it carries (max_images). The standard
library's threaded server is enough here: one thread a connection, at most
http.MAX_CONNECTIONS at once (bench/serve_load.py measures it against a FastAPI peer).
"""

from __future__ import annotations

from ..events import Serving, ignore
from ..runs.predictor import Predictor
from .app import HOST, PORT, App, Limits, Refused, is_loopback, warnings_for
from .http import Server

__all__ = ["HOST", "PORT", "App", "Limits", "Refused", "Server", "build", "is_loopback",
           "serve", "warnings_for"]


def build(model_path, *, host: str = HOST, port: int = PORT, threshold: float | None = None,
          limits: Limits | None = None, on_event=ignore) -> Server:
    """A server for the model at `model_path`, bound (port 0: a free one), not yet serving:
    call serve_forever(), and shutdown() and server_close() when done."""
    predictor = Predictor.load(model_path, threshold)
    return Server(App(predictor, str(model_path), limits or Limits()), host, port, on_event)


def serve(model_path, *, host: str = HOST, port: int = PORT, threshold: float | None = None,
          limits: Limits | None = None, on_event=ignore) -> None:
    """Serve the model at `model_path` until interrupted (Ctrl-C, SIGTERM)."""
    server = build(model_path, host=host, port=port, threshold=threshold, limits=limits,
                   on_event=on_event)
    warnings = warnings_for(host, model_path, server.app.predictor.meta)
    with server:
        server.report(Serving(server.url, str(model_path), tuple(warnings)))
        server.serve_forever()

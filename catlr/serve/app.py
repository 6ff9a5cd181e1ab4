"""What `catlr serve` answers, apart from HTTP: the limits of a request, its uploads (an
image as the body, or a multipart/form-data form parsed by the standard library's email
parser), the rows of /predict (the Predictor's, as `catlr predict --json` prints them)
and /health. The HTTP side (http.py) hands it a request's Content-Type, body and query.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import re
from email import policy
from email.errors import (
    CloseBoundaryNotFoundDefect,
    MissingHeaderBodySeparatorDefect,
    StartBoundaryNotFoundDefect,
)
from email.message import Message
from email.parser import BytesFeedParser

import numpy as np
from PIL import Image

from ..config import SERVE, parse_memory
from ..data.images import MAX_PIXELS
from ..errors import CatlrError
from ..runs.predictor import Predictor
from ..stages.explain import card
from ..text import printable
from .page import page as draw

HOST, PORT, MAX_IMAGES = SERVE["host"], SERVE["port"], SERVE["max_images"]
MAX_UPLOAD = parse_memory(SERVE["max_upload"])  # bytes of one request's body
# The bounds of --max-upload and --max-images: a body is held in memory whole, and one
# request's images are decoded together
BOUNDS = {"max_bytes": (1, 1 << 30, "--max-upload", "a size from 1B to 1GB"),
          "max_images": (1, 1000, "--max-images", "from 1 to 1000")}
MAX_NAME = 1024            # characters of an upload's file name kept in its row
IMAGE_TYPES = ("image/", "application/octet-stream")
OTHER_PARTS = 16           # form fields besides the images a form may carry


class Refused(CatlrError):
    """A request the server answers with `status` (4xx, 5xx) and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Limits:
    """What one request may carry: `max_bytes` of body, `max_images` images, each at most
    `max_pixels` pixels (read from its header); `workers` decoding threads a request.
    Out of BOUNDS is a CatlrError naming the flag."""

    def __init__(self, max_bytes=MAX_UPLOAD, max_images=MAX_IMAGES, max_pixels=MAX_PIXELS,
                 workers=0):
        self.max_bytes, self.max_images = int(max_bytes), int(max_images)
        self.max_pixels, self.workers = int(max_pixels), int(workers)
        said = problem(self.max_bytes, self.max_images)
        if said:
            raise CatlrError(said)


def problem(max_bytes, max_images, given: str | None = None) -> str | None:
    """What is wrong with these limits (a line naming the flag), or None; `given`: the
    size as the user wrote it (--max-upload 9999999999G)."""
    for value, (low, high, flag, allowed) in zip((max_bytes, max_images), BOUNDS.values()):
        if not low <= value <= high:
            shown = given if given and flag == "--max-upload" else f"{value:,}"
            return f"{flag} must be {allowed}, got {shown}"
    return None


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warnings_for(host: str, model_path, meta: dict) -> list[str]:
    """What to mind before serving: an address other machines reach, a flagged model."""
    said = [f"{model_path}: {w}" for w in meta.get("warnings") or []]
    if not is_loopback(host):
        said.insert(0, f"serving on {host}, not on loopback: any machine that reaches this one "
                       "may upload images and read the model's name and figures; leave --host "
                       "out to serve on 127.0.0.1 only")
    return said


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


def content_type(value: str) -> Message:
    """A Content-Type header parsed as the email package parses one (quoted parameters,
    RFC 2231's boundary*=utf-8''...)."""
    m = Message()
    m["Content-Type"] = value
    return m


FORM = "send the form as a browser or curl -F file=@PHOTO does"
BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")  # RFC 2046


def multipart(header: Message, body, max_images: int) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every part named `file` of a multipart/form-data body, parsed
    by the standard library's email parser (policy HTTP); Refused when it is not a form."""
    boundary = header.get_boundary()  # RFC 2231's boundary*= decoded too
    if not boundary or not BOUNDARY.fullmatch(boundary):
        raise Refused(400, "the multipart/form-data body has no boundary (or one that is not "
                           f"1 to 70 of RFC 2046's characters), {FORM}")
    # counted before parsing: a form of a million empty parts is refused at once
    parts = body.count(b"--" + boundary.encode("ascii")) - 1
    if parts > max_images + OTHER_PARTS:
        raise Refused(413, f"the form has {parts} parts, expected at most {max_images} images "
                           "(--max-images): send fewer in each request")
    parser = BytesFeedParser(policy=policy.HTTP)
    parser.feed(f"Content-Type: multipart/form-data; boundary=\"{boundary}\"\r\n\r\n"
                .encode("ascii"))
    parser.feed(body)
    form = parser.close()
    defects = {type(d) for d in form.defects}
    if StartBoundaryNotFoundDefect in defects or not form.is_multipart():
        raise Refused(400, f"the multipart/form-data body holds no part after its boundary "
                           f"{boundary!r}, {FORM}")
    if CloseBoundaryNotFoundDefect in defects:
        raise Refused(400, "the multipart/form-data body has no closing boundary, it was cut "
                           "short: send the whole form")
    files = []
    for part in form.iter_parts():
        if any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in part.defects):
            raise Refused(400, f"a part of the multipart/form-data body has no blank line "
                               f"after its headers, {FORM}")
        if part.get_param("name", header="content-disposition") != "file":
            continue
        data = part.get_payload(decode=True)
        files.append((str(part.get_filename() or "upload")[:MAX_NAME], data or b""))
    return files


class App:
    """What the server answers, apart from HTTP: the page, /health and /predict's rows."""

    def __init__(self, predictor: Predictor, name: str, limits: Limits):
        self.predictor, self.name, self.limits = predictor, name, limits
        self.info = model_info(predictor, name)
        self.page, self.policy = draw(self.info, limits)

    def health(self) -> dict:
        return {"status": "ok", **self.info,
                "limits": {"max_bytes": self.limits.max_bytes,
                           "max_images": self.limits.max_images,
                           "max_pixels": self.limits.max_pixels}}

    def uploads(self, kind: str | None, body, query: dict) -> list:
        """(name, bytes) of each image a request carries, or Refused. `kind` is the
        request's Content-Type, `body` its bytes, `query` its parsed query string."""
        if not kind:
            raise Refused(415, "the request has no Content-Type, expected an image type "
                               "(image/jpeg, ...) or multipart/form-data: e.g. curl -F "
                               "file=@cat.jpg URL/predict")
        header = content_type(kind)
        kind = header.get_content_type()
        if kind == "multipart/form-data":
            files = multipart(header, body, self.limits.max_images)
            if not files:
                raise Refused(400, "the form has no field named file, send each image as a "
                                   "file field: curl -F file=@cat.jpg URL/predict")
        elif kind.startswith(IMAGE_TYPES):
            if not body:
                raise Refused(400, "the request's body is empty, send the image's bytes: "
                                   "curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg'")
            files = [(query.get("name", ["upload"])[0][:MAX_NAME], bytes(body))]
        else:
            raise Refused(415, f"the body is {printable(kind)[:80]}, expected an image "
                               "(image/jpeg, image/png, ...) or multipart/form-data with file "
                               "fields: e.g. curl -F file=@cat.jpg URL/predict")
        if len(files) > self.limits.max_images:
            raise Refused(413, f"the request carries {len(files)} images, over the limit of "
                               f"{self.limits.max_images} (--max-images): send fewer at a time")
        return files

    def predict(self, files, seen: bool = False, explain: bool = False) -> tuple[int, object]:
        """(status, predict --json's rows): 200, or 422 when an image cannot be read (its row
        says why): one shape, so a client parses one thing."""
        pixels = [] if seen or explain else None
        rows = self.predictor.score(files, workers=self.limits.workers,
                                    max_pixels=self.limits.max_pixels, seen=pixels)
        if seen:
            rows = [dict(r, seen=_seen(x)) if x is not None else r for r, x in zip(rows, pixels)]
        if explain:
            rows = [dict(r, explanation=_explained(self.predictor, x)) if x is not None else r
                    for r, x in zip(rows, pixels)]
        return (422 if any("error" in r for r in rows) else 200), rows

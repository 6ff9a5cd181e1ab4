"""Decode any image a user has into a size x size x 3 uint8 RGB array.

One function, `load_image`, is the only way pixels enter catlr (prepare, train
on a folder, predict, a web upload), so every path sees the same decoding:
EXIF orientation applied, every mode made RGB correctly, JPEGs decoded at a
reduced scale by libjpeg, then resized by the chosen fit policy. And the same limits:
  - only Pillow plugins that decode in-process are tried (FORMATS), whatever the file's
    name says: never EPS or PostScript, which run Ghostscript, nor any other plugin
    that calls a program;
  - an image over MAX_PIXELS, or whose decoding would take over MAX_DECODE_BYTES of
    memory (in Pillow's storage, with its copies and conversions: _peak_bytes), is
    refused from its header;
  - images decoded at once (in threads) share DECODE_BUDGET bytes: a decoder waits for
    room rather than pile up (six large float TIFFs never take gigabytes together).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import CHOICES, one_of
from ..errors import CatlrError, describe
from .names import UNSUPPORTED

# catlr's own limit, checked from the header before decoding: far below Pillow's 179
# megapixels, so a small PNG that declares 12000 x 12000 is refused, not decoded (1.2 GB).
MAX_PIXELS = 64_000_000
# Transparent pixels and padding become white, as image viewers show them.
BACKGROUND = (255, 255, 255)
FORMATS = ("JPEG", "PNG", "GIF", "BMP")   # Pillow's first plugins: most photos
MAX_DECODE_BYTES = 1 << 30                # one image, decoded, with its conversions
MAX_SCANS = 128  # a progressive JPEG has a few dozen; each more is a full pass of decoding
DECODE_BUDGET = 2 << 30                   # every image being decoded at once


class _Budget:
    """Bytes that decoding threads hold at once; a thread waits until its image fits."""

    def __init__(self, total):
        self.total, self.used, self.cond = total, 0, threading.Condition()

    @contextlib.contextmanager
    def hold(self, n):
        n = min(n, self.total)
        with self.cond:
            self.cond.wait_for(lambda: self.used + n <= self.total)
            self.used += n
        try:
            yield
        finally:
            with self.cond:
                self.used -= n
                self.cond.notify_all()


_BUDGET = _Budget(DECODE_BUDGET)
_MORE = []


def _more_formats():
    """The formats past Pillow's first ones, their plugins imported once (not Image.init(),
    which would load every plugin, the ones that call programs too)."""
    if not _MORE:
        import importlib

        for name, module in (("WEBP", "WebPImagePlugin"), ("TIFF", "TiffImagePlugin"),
                             ("AVIF", "AvifImagePlugin")):
            with contextlib.suppress(ImportError):
                importlib.import_module(f"PIL.{module}")
                if name in Image.OPEN:
                    _MORE.append(name)
    return _MORE


def _open(source):
    """Image.open with catlr's formats only: an EPS named holiday.jpg is 'not an image'."""
    Image.preinit()
    try:
        return Image.open(source, formats=FORMATS)
    except UnidentifiedImageError:
        if hasattr(source, "seek"):
            source.seek(0)
        return Image.open(source, formats=_more_formats())


def _scans(source) -> int:
    """How many scans (SOS markers) a JPEG holds: inside its coded data a 0xFF byte is
    always followed by 0x00 or a restart marker, so every FF DA is a real scan."""
    if hasattr(source, "read"):
        at = source.tell()
        source.seek(0)
        data = source.read()
        source.seek(at)
    else:
        with open(source, "rb") as f:
            data = f.read()
    return data.count(b"\xff\xda")


def _stored(mode: str) -> int:
    """Bytes a pixel of `mode` takes in Pillow's memory (Storage.c): 1, L and P one; 16-bit
    grays two; every other mode four (RGB is stored as RGBX, LA as four bytes too)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16") or mode in ("BGR;15", "BGR;16"):
        return 2
    return 3 if mode == "BGR;24" else 4


def _peak_bytes(im, fit: str) -> int:
    """What decoding `im` (opened, not loaded) holds at its most, in Pillow's own storage
    (_stored): the loaded pixels, a rotated copy (counted whether or not the EXIF asks for
    one: a PNG may say so only after its pixels), then what the conversion to RGB holds at
    once beside them (_to_rgb: alpha composited over a canvas, four images of four bytes;
    wide grays copied, scaled to bytes, made L then RGB), then the fit's crop or square
    canvas beside the RGB image."""
    w, h = im.size
    px, own = w * h, _stored(im.mode) * w * h
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            im.mode == "P" and "transparency" in im.info):
        convert = 16 * px + (4 * px if im.mode == "P" else 0)
    elif im.mode.startswith("I") or im.mode == "F":
        convert = own + 6 * px
    else:
        convert = 0 if im.mode == "RGB" else 4 * px
    side = min(w, h) if fit == "crop" else max(w, h)
    fitting = 4 * side ** 2 if fit in ("crop", "pad") and w != h else 0
    return 2 * own + convert + fitting


class ImageError(CatlrError):
    """An image file that cannot be used; `reason` is a short phrase for reports."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {path}: {reason}, remove or replace the file")


def load_image(source, size: int = 64, fit: str = "stretch", max_pixels: int = MAX_PIXELS,
               info: dict | None = None):
    """Decode `source` into a (size, size, 3) uint8 array, or raise ImageError. `source` is a
    path, the file's bytes, or a binary file object (a web upload): every one is decoded
    the same way. Images over `max_pixels` (and pads whose square canvas would be) are
    refused from their header. `info`, a dict, gets "size": the image's own (width, height),
    and "oriented": the same once its EXIF rotation is applied (as a viewer shows it)."""
    info = {} if info is None else info
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageError("<bytes>", "empty file")
        return _decode(io.BytesIO(source), "<bytes>", size, fit, max_pixels, info)
    if hasattr(source, "read"):
        return _decode(source, getattr(source, "name", "<stream>"), size, fit, max_pixels, info)
    path = source
    if not os.path.isfile(path):  # a FIFO or a device would block or never end
        raise ImageError(path, "not a regular file" if os.path.exists(path) else "no such file")
    try:
        empty = os.path.getsize(path) == 0
    except OSError:  # gone since: the decoder says so below
        empty = False
    if empty:
        raise ImageError(path, "empty file")
    return _decode(path, path, size, fit, max_pixels, info)


def load_preview(source, longest: int = 512, max_pixels: int = MAX_PIXELS,
                 info: dict | None = None):
    """The whole picture as a viewer shows it, (h, w, 3) uint8 with its longest side at most
    `longest` and its own proportions: decoded as load_image decodes (the same formats,
    limits, EXIF rotation and colours), for showing a photo beside what a model sees."""
    return load_image(source, longest, None, max_pixels, info)


def _decode(source, path, size, fit, max_pixels, info):
    try:
        with _open(source) as im:
            width, height = im.size
            info["size"] = (width, height)
            if width * height > max_pixels:
                raise ImageError(path, f"too large ({width} x {height} pixels, over the limit "
                                       f"of {max_pixels:,} pixels, --max-pixels)")
            if fit == "pad" and max(width, height) ** 2 > max_pixels:
                raise ImageError(path, f"too long and thin to pad ({width} x {height}: a "
                                       f"{max(width, height)}-pixel square canvas)")
            if im.format in ("JPEG", "MPO"):
                scans = _scans(source)
                if scans > MAX_SCANS:  # decoding time grows with them, unbounded otherwise
                    raise ImageError(path, f"a JPEG of {scans} scans, over the {MAX_SCANS} any "
                                           "camera or encoder writes")
                # libjpeg can decode at 1/2, 1/4 or 1/8 scale for free; ask for
                # twice the final size so the last resize still antialiases.
                im.draft(None, (2 * size, 2 * size))
            need = _peak_bytes(im, fit)
            if need > MAX_DECODE_BYTES:
                raise ImageError(path, f"too large to decode ({im.size[0]} x {im.size[1]} "
                                       f"{im.mode} pixels would take about {need >> 20} MB)")
            with _BUDGET.hold(need):
                im.load()
                drafted = im.size  # a JPEG's draft may have scaled it down, not turned it
                ImageOps.exif_transpose(im, in_place=True)  # no copy when it is upright
                turned = im.size != drafted and im.size == drafted[::-1]
                info["oriented"] = (height, width) if turned else (width, height)
                rgb = _fit(_to_rgb(im), size, fit)
    except ImageError:
        raise
    except UnidentifiedImageError:
        ext = os.path.splitext(os.fspath(path))[1].lower()
        if ext in UNSUPPORTED:
            raise ImageError(path, f"{UNSUPPORTED[ext]} is not readable by Pillow, convert it "
                                   "to JPEG") from None
        raise ImageError(path, "not an image") from None
    except Image.DecompressionBombError:
        raise ImageError(path, "too large (over Pillow's decompression-bomb limit)") from None
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        raise ImageError(path, f"truncated or corrupt ({describe(e)})") from None
    except MemoryError:
        raise ImageError(path, "too large to decode in memory") from None
    except Exception as e:  # a decoder's own failure (a corrupt AVIF, a DDS named .jpg)
        raise ImageError(path, f"cannot be decoded ({type(e).__name__}: {describe(e)})") from None
    return np.asarray(rgb, dtype=np.uint8)


# Pillow warns (but decodes) between 1x and 2x its pixel limit, and on damaged
# TIFF tags or EXIF blocks: an image it can decode is used, one it cannot is
# skipped with a reason, and these warnings would only clutter the output.
# (Set once here: warnings.catch_warnings is not safe across decoding threads.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="PIL")


def _to_rgb(im):
    """Turn a loaded image of any Pillow mode into RGB without clipping or losing alpha."""
    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if im.mode.startswith("I") or im.mode == "F":
        return _scale_wide_gray(im)
    # 1, L, P, CMYK, YCbCr, LAB, HSV: Pillow's own conversions are exact here.
    return im.convert("RGB")


SCALE_BLOCK = 1 << 20  # pixels of a wide gray image scaled at a time: bounded memory


def _scale_wide_gray(im):
    """16-bit, 32-bit integer and float grayscale: scale to 0..255 (convert('L') would clip)."""
    a = np.asarray(im)  # one copy, in the image's own type (2 or 4 bytes a pixel)
    if a.dtype.kind == "f" and not np.isfinite(a).all():  # not a picture catlr can scale
        raise ImageError(getattr(im, "filename", "") or "image", "holds NaN or infinite pixels")
    hi = float(a.max()) if a.size else 0.0
    if im.mode.startswith("I;16"):
        top = 65535.0
    elif im.mode == "F" and a.size and hi <= 1.0:
        top = 1.0
    else:
        # Mode I (int32) often holds 8- or 16-bit data: scale by the smallest
        # of the 8-, 16- and 32-bit ranges that holds its largest value.
        top = next((t for t in (255.0, 65535.0, 2147483647.0) if hi <= t), hi)
    flat, g = a.reshape(-1), np.empty(a.size, np.uint8)
    for start in range(0, a.size, SCALE_BLOCK):
        part = flat[start:start + SCALE_BLOCK].astype(np.float64)
        g[start:start + SCALE_BLOCK] = np.clip(np.rint(part * (255.0 / top)), 0, 255)
    return Image.fromarray(g.reshape(a.shape)).convert("RGB")


def _fit(im, size: int, fit: str | None):
    w, h = im.size
    if fit is None:  # load_preview: the longest side at most `size`, proportions kept
        scale = min(1.0, size / max(w, h))
        return im.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                         Image.Resampling.BILINEAR)
    if fit == "crop" and w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
    elif fit == "pad" and w != h:
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), BACKGROUND)
        canvas.paste(im, ((side - w) // 2, (side - h) // 2))
        im = canvas
    elif fit not in CHOICES["fit"]:
        raise CatlrError(f"unknown fit {fit!r}, use {one_of('fit')}")
    # Pillow returns an exact copy when the size already matches, so a lossless
    # 64 x 64 copy of the course data comes back bit for bit.
    return im.resize((size, size), Image.Resampling.BILINEAR)

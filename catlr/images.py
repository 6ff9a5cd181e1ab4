"""Decode any image a user has into a size x size x 3 uint8 RGB array.

One function, `load_image`, is the only way pixels enter catlr (prepare, train
on a folder, predict), so every path sees the same decoding:
EXIF orientation applied, every mode made RGB correctly, JPEGs decoded at a
reduced scale by libjpeg, then resized by the chosen fit policy.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import CHOICES, one_of
from .errors import CatlrError, describe

EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
     ".avif", ".heic", ".heif"}
)
# iPhone photos: counted as images so that they are reported, not silently ignored
UNSUPPORTED = {".heic": "HEIC", ".heif": "HEIF"}
# catlr's own limit, checked from the header before decoding: far below Pillow's 179
# megapixels, so a small PNG that declares 12000 x 12000 is refused, not decoded (1.2 GB).
MAX_PIXELS = 64_000_000
# Transparent pixels and padding become white, as image viewers show them.
BACKGROUND = (255, 255, 255)


class ImageError(CatlrError):
    """An image file that cannot be used; `reason` is a short phrase for reports."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {path}: {reason}, remove or replace the file")


def is_image_name(name: str) -> bool:
    """True for a visible file whose extension (any case) is an image format catlr reads."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS


def load_image(source, size: int = 64, fit: str = "stretch", max_pixels: int = MAX_PIXELS):
    """Decode `source` into a (size, size, 3) uint8 array, or raise ImageError. `source` is a
    path, the file's bytes, or a binary file object (a web upload): every one is decoded
    the same way. Images over `max_pixels` (and pads whose square canvas would be) are
    refused from their header."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageError("<bytes>", "empty file")
        return _decode(io.BytesIO(source), "<bytes>", size, fit, max_pixels)
    if hasattr(source, "read"):
        return _decode(source, getattr(source, "name", "<stream>"), size, fit, max_pixels)
    path = source
    if not os.path.isfile(path):  # a FIFO or a device would block or never end
        raise ImageError(path, "not a regular file" if os.path.exists(path) else "no such file")
    try:
        empty = os.path.getsize(path) == 0
    except OSError:  # gone since: the decoder says so below
        empty = False
    if empty:
        raise ImageError(path, "empty file")
    return _decode(path, path, size, fit, max_pixels)


def _decode(source, path, size, fit, max_pixels):
    try:
        with Image.open(source) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise ImageError(path, f"too large ({width} x {height} pixels, over the limit "
                                       f"of {max_pixels:,} pixels, --max-pixels)")
            if fit == "pad" and max(width, height) ** 2 > max_pixels:
                raise ImageError(path, f"too long and thin to pad ({width} x {height}: a "
                                       f"{max(width, height)}-pixel square canvas)")
            if im.format == "JPEG":
                # libjpeg can decode at 1/2, 1/4 or 1/8 scale for free; ask for
                # twice the final size so the last resize still antialiases.
                im.draft(None, (2 * size, 2 * size))
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
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
    return np.asarray(_fit(rgb, size, fit), dtype=np.uint8)


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


def _scale_wide_gray(im):
    """16-bit, 32-bit integer and float grayscale: scale to 0..255 (convert('L') would clip)."""
    a = np.asarray(im).astype(np.float64)
    if not np.isfinite(a).all():  # NaN or infinite pixels: not a picture catlr can scale
        raise ImageError(getattr(im, "filename", "") or "image", "holds NaN or infinite pixels")
    if im.mode.startswith("I;16"):
        top = 65535.0
    elif im.mode == "F" and a.size and a.max() <= 1.0:
        top = 1.0
    else:
        # Mode I (int32) often holds 8- or 16-bit data: scale by the smallest
        # of the 8-, 16- and 32-bit ranges that holds its largest value.
        hi = float(a.max()) if a.size else 0.0
        top = next((t for t in (255.0, 65535.0, 2147483647.0) if hi <= t), hi)
    g = np.clip(np.rint(np.nan_to_num(a) * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(g).convert("RGB")


def _fit(im, size: int, fit: str):
    w, h = im.size
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

"""A sample image folder that catlr draws itself, for a machine with no data and no network.

"Cats" are a face with two pointed ears, whiskers and eyes on a plain background;
"non-cats" are balls, boxes, stripes and round faces without ears. Sizes,
colours, positions and file formats vary, as in a real photo folder, so the demo
exercises the same decoding and resizing as real data.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from ..files.outputs import KINDS, Kind, atomic_path, check_output
from ..files.pictures import DEMO, DEMO_COMMENT

MARKER = ".catlr-demo"  # in a demo folder catlr drew: a later demo may replace it
KINDS["demo"] = Kind("catlr's demo folder", True, lambda p: not os.listdir(p) or os.path.isfile(
    os.path.join(p, MARKER)))
KINDS["marker"] = Kind("a demo folder's marker", False, lambda p: False)  # in a new folder


def _background(rng, w, h):
    top = tuple(int(v) for v in rng.integers(90, 256, 3))
    bottom = tuple(int(v) for v in rng.integers(60, 220, 3))
    im = Image.new("RGB", (w, h), top)
    draw = ImageDraw.Draw(im)
    for y in range(h):  # a vertical gradient, like a wall or the sky
        t = y / max(h - 1, 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    return im, draw


def _cat(rng, w, h):
    im, draw = _background(rng, w, h)
    fur = tuple(int(v) for v in rng.integers(20, 140, 3))
    cx, cy = w / 2 + rng.normal(0, w * 0.04), h * 0.58 + rng.normal(0, h * 0.03)
    r = min(w, h) * rng.uniform(0.27, 0.33)
    for side in (-1, 1):  # the ears: what makes it a cat here
        draw.polygon([(cx + side * r * 0.95, cy - r * 0.25), (cx + side * r * 0.25, cy - r * 0.85),
                      (cx + side * r * 0.85, cy - r * 1.6)], fill=fur)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fur)
    eye = tuple(int(v) for v in rng.integers(150, 256, 3))
    for side in (-1, 1):
        ex = cx + side * r * 0.4
        draw.ellipse([ex - r * 0.16, cy - r * 0.3, ex + r * 0.16, cy], fill=eye)
        draw.ellipse([ex - r * 0.05, cy - r * 0.28, ex + r * 0.05, cy - r * 0.02], fill="black")
        for dy in (0.25, 0.4):
            draw.line([(cx + side * r * 0.3, cy + r * dy), (cx + side * r * 1.2, cy + r * dy * 1.4)],
                      fill="white", width=max(1, int(r / 30)))
    draw.polygon([(cx - r * 0.1, cy + r * 0.1), (cx + r * 0.1, cy + r * 0.1), (cx, cy + r * 0.22)],
                 fill="pink")
    return im


def _non_cat(rng, w, h):
    im, draw = _background(rng, w, h)
    kind = int(rng.integers(0, 4))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    if kind == 0:  # a ball somewhere
        r = min(w, h) * rng.uniform(0.15, 0.35)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == 1:  # a box
        x0, y0 = rng.uniform(0, w * 0.5), rng.uniform(0, h * 0.5)
        draw.rectangle([x0, y0, x0 + rng.uniform(w * 0.2, w * 0.5), y0 + rng.uniform(h * 0.2, h * 0.5)],
                       fill=colour)
    elif kind == 2:  # stripes
        step = int(rng.integers(6, 20))
        for x in range(0, w, 2 * step):
            draw.rectangle([x, 0, x + step, h], fill=colour)
    else:  # a round face without ears
        r = min(w, h) * 0.3
        cx, cy = w / 2, h * 0.55
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        draw.arc([cx - r * 0.5, cy, cx + r * 0.5, cy + r * 0.5], 0, 180, fill="black", width=3)
    return im


def _marked():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", DEMO)
    return info


def make_sample(folder, n_per_class: int = 60, seed: int = 0, unseen: int = 4) -> dict:
    """Write FOLDER/images/{cat,non-cat}/ and FOLDER/unseen/ (for predict); returns their paths.

    FOLDER must be new, empty, or a demo folder catlr made (marked by .catlr-demo): never a
    photo album, whose pictures the sample's would replace or mix with."""
    check_output(folder, "demo", "folder")
    os.makedirs(folder, exist_ok=True)
    if not os.path.exists(os.path.join(folder, MARKER)):
        with atomic_path(os.path.join(folder, MARKER), "marker") as tmp:
            tmp.write_text("A sample folder drawn by 'catlr demo'.\n")
    rng = np.random.default_rng(seed)
    images = os.path.join(folder, "images")
    unseen_dir = os.path.join(folder, "unseen")
    for d in (os.path.join(images, "cat"), os.path.join(images, "non-cat"), unseen_dir):
        os.makedirs(d, exist_ok=True)
    jobs = [(os.path.join(images, c), draw_one, k) for c, draw_one in (("cat", _cat),
            ("non-cat", _non_cat)) for k in range(n_per_class)]
    jobs += [(unseen_dir, (_cat, _non_cat)[k % 2], k) for k in range(unseen)]
    for where, draw_one, k in jobs:
        w, h = (int(v) for v in rng.integers(72, 200, 2))
        im = draw_one(rng, w, h)
        name = f"{'cat' if draw_one is _cat else 'thing'}-{k:03d}"
        fmt = "PNG" if k % 3 == 0 else "JPEG"
        with atomic_path(os.path.join(where, f"{name}.{'png' if fmt == 'PNG' else 'jpg'}"),
                         "image") as tmp:
            im.save(tmp, format=fmt, **(  # marked as catlr's: a later demo may replace it
                {"quality": 90, "comment": DEMO_COMMENT} if fmt == "JPEG"
                else {"pnginfo": _marked()}))
    return {"images": images, "unseen": unseen_dir}

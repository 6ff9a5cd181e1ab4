"""Why a model says what it says of a photo: its logit, pixel by pixel (`catlr explain`).

Logistic regression's logit is a sum over pixels, exactly: with x = pixels / 255 the
flattened (size, size, 3) image,

    z = w . x + b = sum_i w_i x_i + b,    p = sigmoid(z)

so each pixel's part in the decision is its term w_i x_i, and nothing is approximated (no
saliency method, no sampling). This module gives those terms as a signed size x size map
(the 3 channels summed), their per-channel sums, the regions that push most towards
each class, the training images the model finds most alike, and in words the one or two
things most worth knowing. Pure numbers: the picture is drawn by plots.explain_picture.

The photo is decoded by the Predictor (predict's decoder, the model's size and fit) and
scored by it, so the probability and label are `catlr predict --json`'s, bit for bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..data.images import MAX_PIXELS, ImageError, load_preview
from ..events import ignore
from ..learn.design import SCALE, Pixels, normalize
from ..runs.predictor import Predictor

GRID = 8          # the map is cut into GRID x GRID regions (8 x 8 pixels each at 64)
REGIONS = 3       # regions named per class
ALIKE = 5         # training images listed per measure
NEAR = 0.1        # a probability this close to the threshold is "close to the threshold"
PREVIEW = 512     # the longest side of the original photo kept for the picture
SQUASHED = 1.15   # a photo whose sides differ by more than this is "squashed" by stretch
# Screen and camera proportions, to name a photo's shape as a person would ("4:3").
RATIOS = ((1, 1), (5, 4), (4, 3), (3, 2), (16, 10), (16, 9), (2, 1), (21, 9), (3, 1))
# The diverging colours of the page's heat map (ColorBrewer's RdBu, as plots' RdBu_r):
# blue towards the negative class, white for nothing, red towards the positive class.
NEGATIVE_RGB, ZERO_RGB, POSITIVE_RGB = (33, 102, 172), (247, 247, 247), (178, 24, 43)


@dataclass
class Explanation:
    """One photo's explanation: `doc` is what --json prints (the probability and label as
    `catlr predict --json` gives them, the logit, b, the per-channel sums, the map, the
    regions, the training images most alike, the notes); the arrays are for the picture."""

    doc: dict
    seen: np.ndarray = None           # (size, size, 3) uint8: what the model sees
    original: np.ndarray = None       # (h, w, 3) uint8: the photo, its longest side <= PREVIEW
    terms: np.ndarray = None          # (size, size, 3) float64: w_i x_i of every input
    alike: dict = field(default_factory=dict)  # {"by_score" | "by_pixels": [(size, size, 3)]}


def terms(predictor: Predictor, pixels) -> np.ndarray:
    """w_i x_i of each input of one image (size, size, 3) uint8: (size, size, 3) float64,
    in the course's flattening order (the image's own, row by row, R G B)."""
    x = normalize(np.asarray(pixels, np.uint8).reshape(-1))
    return (predictor.model.w_.reshape(-1) * x).reshape(pixels.shape)


def logit(predictor: Predictor, pixels) -> float:
    """z = w . x + b of one image, the dot product predict takes (Pixels.scores_each)."""
    return float(Pixels(np.asarray(pixels)[None]).scores_each(predictor.model.w_.reshape(-1),
                                                              predictor.model.b_)[0])


def heat_rgb(contributions, limit: float | None = None) -> np.ndarray:
    """A signed map (h, w) as (h, w, 3) uint8 colours centred on zero: red where it is
    positive, blue where negative, white at zero, full colour at +-limit (default: the
    largest magnitude). The page's heat map; plots.py draws the same with matplotlib."""
    c = np.asarray(contributions, np.float64)
    limit = float(np.abs(c).max()) if limit is None else float(limit)
    t = np.clip(c / limit, -1.0, 1.0)[..., None] if limit > 0 else np.zeros(c.shape + (1,))
    zero, pos, neg = (np.array(v, np.float64) for v in (ZERO_RGB, POSITIVE_RGB, NEGATIVE_RGB))
    rgb = zero + np.where(t > 0, t * (pos - zero), -t * (neg - zero))
    return np.rint(rgb).astype(np.uint8)


def _where(r0, r1, c0, c1, size) -> str:
    """'top left', 'centre', 'bottom right': where a region lies, in thirds of the image."""
    def third(a, b):
        return min(2, int(3 * ((a + b) / 2) / size))

    row = ("top", "middle", "bottom")[third(r0, r1)]
    col = ("left", "centre", "right")[third(c0, c1)]
    if row == "middle":
        return "centre" if col == "centre" else col
    return row if col == "centre" else f"{row} {col}"


def regions(contribution_map, grid: int = GRID, top: int = REGIONS) -> dict:
    """The regions of a (size, size) map that push most each way: the map cut into grid x
    grid blocks, each block's sum; {"positive": the `top` largest sums over 0, "negative":
    the `top` smallest under 0}, each {"rows": [first, last], "columns": [...], "sum",
    "where"}, rows and columns counted from 0 at the top left."""
    size = contribution_map.shape[0]
    edges = [int(e) for e in np.linspace(0, size, grid + 1)]
    blocks = []
    for i in range(grid):
        for j in range(grid):
            r0, r1, c0, c1 = edges[i], edges[i + 1], edges[j], edges[j + 1]
            total = float(contribution_map[r0:r1, c0:c1].sum())
            blocks.append({"rows": [r0, r1 - 1], "columns": [c0, c1 - 1], "sum": total,
                           "where": _where(r0, r1, c0, c1, size)})
    ranked = sorted(blocks, key=lambda b: b["sum"])
    return {"positive": [b for b in ranked[::-1][:top] if b["sum"] > 0],
            "negative": [b for b in ranked[:top] if b["sum"] < 0]}


def ratio_text(width: int, height: int) -> str:
    """A photo's proportions as a person names them: '16:9', '3:4', or '2.3:1'."""
    r = width / height
    best = min(((a, b) if width >= height else (b, a) for a, b in RATIOS),
               key=lambda ab: abs(np.log(r * ab[1] / ab[0])))
    if abs(np.log(r * best[1] / best[0])) < 0.03:
        return f"{best[0]}:{best[1]}"
    return f"{r:.2g}:1" if r >= 1 else f"1:{1 / r:.2g}"


def _notes(doc: dict, predictor: Predictor, training: dict) -> list[str]:
    """The one or two things most worth knowing about this verdict, most useful first."""
    neg, pos = predictor.classes
    p, threshold = doc["probability"], predictor.threshold
    notes = []
    width, height = doc["image"]["original"]
    long_side, short_side = max(width, height), min(width, height)
    if long_side / short_side > SQUASHED:
        shape, size = ratio_text(width, height), predictor.size
        if predictor.fit == "stretch":
            way = "narrower" if width > height else "shorter"
            notes.append(f"the photo was squashed from {shape} to 1:1 ({width} x {height} to "
                         f"{size} x {size}): everything in it looks {long_side / short_side:.1f} "
                         f"times {way} to the model than it is; crop it to a square around "
                         f"the {pos} to avoid that")
        elif predictor.fit == "crop":
            notes.append(f"the model sees only the centre square of this {shape} photo (--fit "
                         f"crop): {1 - short_side / long_side:.0%} of it, at the "
                         f"{'sides' if width > height else 'top and bottom'}, is cut off")
        else:
            notes.append(f"this {shape} photo was padded with white bands to a square (--fit "
                         f"pad): the {pos} fills {short_side / long_side:.0%} of what the "
                         "model sees")
    if abs(p - threshold) < NEAR:
        notes.append(f"this is close to the threshold: p({pos}) = {p:.3f} against "
                     f"{threshold:g}, a small change (another crop, other light) can flip it")
    share, m = training.get("positive_share"), training.get("images")
    label = doc["label"]
    if share is not None and ((share < 0.45 and label == neg) or (share > 0.55 and label == pos)):
        notes.append(f"the training set is {share:.0%} {pos} images ({round(share * m)} of "
                     f"{m}): a model learns to say {label} more often")
    accuracy, m_test = predictor.meta.get("test_accuracy"), predictor.meta.get("m_test")
    if isinstance(accuracy, float) and accuracy < 0.9 and m_test:
        notes.append(f"the model is right on {accuracy:.0%} of its {m_test} test images: "
                     f"about 1 photo in {round(1 / max(1 - accuracy, 1e-9))} is wrong even "
                     "when nothing is odd about it")
    push = doc["regions"]["positive" if label == pos else "negative"]
    if push:
        notes.append(f"the {push[0]['where']} of the image pushes most towards {label} "
                     f"({push[0]['sum']:+.2f} of the logit)")
    return notes[:2]


def _training(predictor: Predictor, model_path, storage_options=None, on_event=ignore):
    """(the model's training split, its summary) read through datasets.load, the checked
    reader, as eval reads it; (None, summary with a note) when the data is gone."""
    from ..config import from_saved
    from ..data import datasets
    from ..errors import CatlrError
    from ..files import storage

    data = predictor.meta.get("data")
    summary = {"data": data if isinstance(data, str) else None, "images": None,
               "positive_share": None, "note": None}
    if not isinstance(data, str) or not data or data == "catlr.course.model":
        summary["note"] = f"{model_path} records no training data it can be read from again"
        return None, summary
    if not storage.remote(data) and not os.path.exists(storage.local(data)):
        summary["note"] = (f"the data the model was trained on, {data}, is gone: no training "
                           "images to compare with")
        return None, summary
    cfg = {**from_saved(predictor.meta.get("config")), "size": predictor.size,
           "storage_options": dict(storage_options or {})}
    try:
        ds = datasets.load(data, cfg, on_event, in_memory=False, split="train")
    except CatlrError as e:
        summary["note"] = f"the training data cannot be read ({e})"
        return None, summary
    if ds.size != predictor.size or not len(ds.y_train):
        ds.close()
        summary["note"] = (f"the data at {data} is no longer what the model was trained on "
                           f"({ds.size} x {ds.size} images)")
        return None, summary
    y = np.asarray(ds.y_train)
    summary.update(images=len(y), positive_share=float(y.mean()))
    return ds, summary


def _alike(predictor: Predictor, ds, seen: list, logits: list) -> list[dict]:
    """For each image seen (size, size, 3), the ALIKE training images nearest by the
    model's score (|z_i - z|) and by pixels (root mean square difference, in pixel levels),
    read a block at a time."""
    x, y = ds.x_train, np.asarray(ds.y_train)
    pixels = Pixels(x)
    w, b = predictor.model.w_.reshape(-1), predictor.model.b_
    z = pixels.scores(w, b)
    targets = np.stack([s.reshape(-1).astype(np.float64) for s in seen])
    squares = np.empty((len(seen), pixels.m))
    for start, block in pixels.product_blocks():
        d = block.astype(np.float64)[None] - targets[:, None]
        squares[:, start:start + len(block)] = np.einsum("pkn,pkn->pk", d, d)
    rms = np.sqrt(squares / pixels.n_x)
    paths = ds.paths_train if len(ds.paths_train) == len(y) else None
    out = []
    for k, zk in enumerate(logits):
        def row(i, **extra):
            return {"index": int(i), "label": predictor.classes[int(y[i])],
                    **({"path": paths[i]} if paths else {}), "logit": float(z[i]), **extra}

        by_score = np.argsort(np.abs(z - zk), kind="stable")[:ALIKE]
        by_pixels = np.argsort(rms[k], kind="stable")[:ALIKE]
        out.append({"by_score": [row(i) for i in by_score],
                    "by_pixels": [row(i, distance=float(rms[k, i])) for i in by_pixels]})
    return out


def _pixels_of(ds, index: int) -> np.ndarray:
    return np.asarray(ds.x_train[index:index + 1])[0]


def explain(inputs, model_path=None, *, predictor=None, threshold=None, alike=True,
            max_pixels=MAX_PIXELS, storage_options=None, on_event=ignore) -> list[Explanation]:
    """One Explanation per image of `inputs` (files, folders, globs, as predict takes them),
    in input order; an image that cannot be read gets doc {path, error}, as in predict.
    alike: compare with the model's training images (read from the data it records)."""
    from .predict import collect

    predictor = predictor or Predictor.load(model_path, threshold)
    paths, order = collect(inputs)
    found = {}
    for path in paths:
        info = {}
        try:
            seen = predictor.decode(path, max_pixels)
            original = load_preview(path, PREVIEW, max_pixels, info)
        except ImageError as e:
            found[path] = Explanation({"path": path, "error": e.reason})
            continue
        found[path] = describe(predictor, path, seen, original, info["oriented"])
    done = [e for e in found.values() if "error" not in e.doc]
    ds = None
    if done and alike:
        ds, training = _training(predictor, model_path or predictor.source, storage_options,
                                 on_event)
    else:
        training = {"data": predictor.meta.get("data"), "images": None,
                    "positive_share": None, "note": None if alike else "not asked for"}
    try:
        if ds is not None:
            near = _alike(predictor, ds, [e.seen for e in done], [e.doc["logit"] for e in done])
            for e, rows in zip(done, near):
                e.doc["alike"] = rows
                e.alike = {k: [_pixels_of(ds, r["index"]) for r in v] for k, v in rows.items()}
    finally:
        if ds is not None:
            ds.close()
    for e in done:
        e.doc["training"] = training
        e.doc["notes"] = _notes(e.doc, predictor, training)
    return [found[entry] if not isinstance(entry, dict) else Explanation(entry)
            for entry in order]


def describe(predictor: Predictor, path, seen, original=None, oriented=None) -> Explanation:
    """The explanation of one decoded image, seen (size, size, 3) uint8, named `path`:
    everything but the training images and the notes (explain adds those)."""
    p = float(predictor.proba(np.asarray(seen)[None])[0])
    z = logit(predictor, seen)
    t = terms(predictor, seen)
    channels = t.sum(axis=(0, 1))
    contribution_map = t.sum(axis=2)
    b = float(predictor.model.b_)
    size = predictor.size
    oriented = oriented or (size, size)
    doc = {**predictor.row(path, p), "logit": z, "b": b, "threshold": predictor.threshold,
           "contributions": float(t.sum()),
           "channels": {"red": float(channels[0]), "green": float(channels[1]),
                        "blue": float(channels[2])},
           "image": {"original": [oriented[0], oriented[1]], "size": size,
                     "fit": predictor.fit, "normalization": f"x / {SCALE:g}"},
           "regions": regions(contribution_map),
           "map": contribution_map.tolist(), "alike": None}
    return Explanation(doc, np.asarray(seen, np.uint8), original, t)


def card(predictor: Predictor, pixels) -> dict:
    """What the page of `catlr serve` shows under a photo's card: the logit, b, the pixels'
    sum, and "heat", the signed map as (size, size, 3) uint8 colours (heat_rgb)."""
    e = describe(predictor, "", pixels)
    return {"logit": e.doc["logit"], "b": e.doc["b"], "contributions": e.doc["contributions"],
            "heat": heat_rgb(e.terms.sum(axis=2))}

"""The predict stage: probabilities for image files, folders and globs, in batched products."""

from __future__ import annotations

import glob
import os

import numpy as np

from . import modelfile
from .events import Decoded, ignore
from .images import ImageError
from .ingest import decode_many, walk_images

SCORE_BYTES = 16 << 20  # uint8 pixels per scoring batch: 1,365 images at 64 x 64, 5 at 1024


def collect(inputs) -> tuple[list[str], list[dict]]:
    """Expand INPUTs (files, folders searched for images, globs) into image paths.

    Returns (paths in input order without repeats, error rows for inputs that match nothing).
    """
    paths, errors, seen = [], [], set()
    for item in map(os.fspath, inputs):
        if os.path.exists(item):
            matches, none = [item], "folder holds no images"
        elif glob.has_magic(item):
            matches, none = sorted(glob.glob(item, recursive=True)), "pattern matches no file"
        else:
            matches, none = [], "no such file or folder"
        found = [p for q in matches for p in
                 ([os.path.join(q, r) for r in walk_images(q)[0]] if os.path.isdir(q) else [q])]
        if not found:
            errors.append({"path": item, "error": none})
        for p in found:
            if p not in seen:
                seen.add(p)
                paths.append(p)
    return paths, errors


def predict(inputs, model_path, *, threshold=0.5, workers=0, on_event=ignore) -> list[dict]:
    """One row per image: {path, probability, label}, or {path, error} when it cannot be read.

    Images go through the preprocessing recorded in the model (size, fit, / 255).
    """
    model, meta = modelfile.load(model_path)
    size, fit = meta["image_size"], meta.get("fit", "stretch")
    negative, positive = meta["classes"]
    paths, rows = collect(inputs)
    batch, kept = [], []
    per_batch = max(1, SCORE_BYTES // (size * size * 3))

    def score():  # one product per batch, sized by bytes: memory stays bounded
        for path, p in zip(kept, model.proba_pixels(np.stack(batch)).tolist()):
            rows.append({"path": path, "probability": p,
                         "label": positive if p > threshold else negative})
        batch.clear(), kept.clear()

    for done, (path, result) in enumerate(decode_many(paths, size, fit, workers), 1):
        if isinstance(result, ImageError):
            rows.append({"path": path, "error": result.reason})
        else:
            batch.append(result)
            kept.append(path)
            if len(batch) == per_batch:
                score()
        on_event(Decoded(done, total=len(paths)))
    if batch:
        score()
    order = {p: i for i, p in enumerate(paths)}
    return sorted(rows, key=lambda r: order.get(r["path"], -1))

"""The predict stage: probabilities for image files, folders and globs, in batched products."""

from __future__ import annotations

import fnmatch
import glob
import os
import re

from ..data.images import MAX_PIXELS
from ..data.ingest import walk, walk_images
from ..events import ignore
from ..files.inputs import reading
from ..runs.predictor import Predictor


def _pattern(pattern: str):
    """A compiled regex for a glob pattern in which '**/' matches any number of folders."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            j = pattern.index("]", i + 2)
            out.append(fnmatch.translate(pattern[i:j + 1])[4:-3])
            i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def expand(pattern: str) -> list[str]:
    """glob.glob(pattern, recursive=True), except that '**' never follows a symbolic link to
    a folder: a link to '..' would send glob round the same files forever."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern))
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = "/".join(parts[:fixed]) or ("/" if pattern.startswith("/") else "")
    if root and not os.path.isdir(root):  # the walk starts only below the fixed prefix
        return []
    regex, found = _pattern(pattern), []
    for here, dirs, files in walk(root or "."):  # iterative, links never followed: no loops
        for name in dirs + files:
            path = os.path.join(here, name) if root else os.path.relpath(os.path.join(here, name))
            if not name.startswith(".") and regex.match(path):
                found.append(path)
    return found


def collect(inputs) -> tuple[list[str], list]:
    """Expand INPUTs (files, folders searched for images, globs) into image paths.

    Returns (paths in input order without repeats, every row in input order: a path, or the
    error row of an input that matches nothing, where that input was).
    """
    paths, order, seen = [], [], set()
    for item in map(os.fspath, inputs):
        reading(item)
        if os.path.exists(item):
            matches, none = [item], "folder holds no images"
        elif glob.has_magic(item):
            matches, none = expand(item), "pattern matches no file"
        else:
            matches, none = [], "no such file or folder"
        found = [p for q in matches for p in
                 ([os.path.join(q, r) for r in walk_images(q)[0]] if os.path.isdir(q) else [q])]
        if not found:
            order.append({"path": item, "error": none})
        for p in found:
            real = os.path.realpath(p)  # each file scored once, however it was reached
            if real not in seen:
                seen.add(real)
                paths.append(p)
                order.append(p)
    return paths, order


def predict(inputs, model_path=None, *, threshold=None, workers=0, max_pixels=MAX_PIXELS,
            on_event=ignore, predictor=None) -> list[dict]:
    """One row per image, in input order: {path, probability, label}, or {path, error}
    when it cannot be read.

    Images go through the preprocessing recorded in the model (size, fit, / 255); pass
    `predictor` (a Predictor already loaded) instead of model_path to reuse one.
    """
    predictor = predictor or Predictor.load(model_path, threshold)
    paths, order = collect(inputs)
    rows = dict(zip(paths, predictor.score([(p, p) for p in paths], workers=workers,
                                           max_pixels=max_pixels, on_event=on_event)))
    return [entry if isinstance(entry, dict) else rows[entry] for entry in order]

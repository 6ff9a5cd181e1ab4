"""Which files are images, by their names, and how folders of them are walked.

No decoding here (images.py decodes), so no Pillow: finding out what DATA is (a prepared
file, the course's pair, an image folder) costs no image library, and `catlr train` on
HDF5 data never imports one.
"""

from __future__ import annotations

import os

EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
     ".avif", ".heic", ".heif"}
)
# iPhone photos: counted as images so that they are reported, not silently ignored
UNSUPPORTED = {".heic": "HEIC", ".heif": "HEIF"}
MAX_DEPTH = 64  # folders below a class folder that are searched: no photo collection is deeper


def is_image_name(name: str) -> bool:
    """True for a visible file whose extension (any case) is an image format catlr reads."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS


def walk(folder, *, max_depth=MAX_DEPTH, skipped=None):
    """os.walk's (here, dirs, files) in sorted order, hidden entries left out, iteratively:
    a tree of any depth never exhausts the stack. Links to folders are listed but never
    followed (no loops); folders that cannot be listed, and those over `max_depth` below
    `folder`, are not entered: (path, reason) goes to `skipped`."""
    todo = [(os.fspath(folder), 0)]
    while todo:
        here, depth = todo.pop()
        try:
            with os.scandir(here) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")),
                                 key=lambda e: e.name)
        except OSError as e:
            if skipped is not None:
                skipped.append((here, "permission denied (a folder catlr cannot list)"
                                if isinstance(e, PermissionError) else
                                f"cannot be listed ({e.strerror or e})"))
            continue
        dirs, files, links = [], [], set()
        for entry in entries:
            try:
                is_dir = entry.is_dir()
                if is_dir and entry.is_symlink():
                    links.add(entry.name)
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
        yield here, dirs, files
        inner = [d for d in dirs if d not in links]
        if inner and depth >= max_depth:
            if skipped is not None:
                skipped.extend((os.path.join(here, d), f"nested over {max_depth} folders "
                                "deep, not searched") for d in inner)
            continue
        todo.extend((os.path.join(here, d), depth + 1) for d in reversed(inner))


def walk_images(folder, root=None, unreadable=None):
    """(sorted relative image paths, sorted relative other files) under `folder`, hidden
    skipped; folders not searched go to `unreadable` as (relative path with /, reason)."""
    root = root or folder
    images, others, skipped = [], [], []
    for here, dirs, files in walk(folder, skipped=skipped):
        for name in files:
            rel = os.path.relpath(os.path.join(here, name), root)
            (images if is_image_name(name) else others).append(rel)
    if unreadable is not None:
        unreadable.extend((os.path.relpath(p, root) + "/", why) for p, why in skipped)
    return images, others


def has_images(folder) -> bool:
    """Whether any visible file below `folder` has an image's name (stops at the first)."""
    return any(any(is_image_name(name) for name in files) for _, _, files in walk(folder))

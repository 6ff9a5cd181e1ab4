"""Ingestion: image folders -> decoded arrays, for prepare, train FOLDER and predict.

discover (class folders, hidden files skipped, a seeded stratified split),
decode in parallel threads (images.load_image), skip broken files with a reason,
hash every result to find duplicates, and hand the arrays to a sink in bounded
chunks. No HDF5 here: prepare.py's sink writes the file, ArraySink keeps memory.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import CatlrError
from ..events import Decoded, ignore
from ..files.inputs import reading
from .fingerprint import Fingerprint, image_digest
from .images import MAX_PIXELS, ImageError, load_image
from .names import (  # noqa: F401  (walk and walk_images: predict imports them from here)
    EXTENSIONS,
    MAX_DEPTH,
    has_images,
    is_image_name,
    walk,
    walk_images,
)

CHUNK = 256  # images decoded and handed over per step: bounds memory, fixed for determinism
SQUARISH = 1.5  # an image at least this much wider than tall (or taller) is far from square


@dataclass
class Layout:
    """What discovery found: (relative path, label) per split, class names by label."""

    root: str
    classes: tuple
    train: list
    test: list
    split: dict | None        # the seeded split, or None when SRC had train/ and test/
    ignored: list = field(default_factory=list)  # files that are not images
    # folders not searched, with why: [("cat/x/", "permission denied ..."), ...]
    unreadable: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # what discovery chose for the user, in words
    val: list = field(default_factory=list)    # a validation split, held out of train

    def splits(self):
        """(name, items) of each split that has items or always exists, in file order."""
        return [("train", self.train), ("test", self.test)] + (
            [("val", self.val)] if self.val else [])

    def items(self):
        return [it for _, items in self.splits() for it in items]


def _match(names, positive: str) -> str | None:
    """The class folder `positive` names: itself, or the one folder that differs only in
    case or a plural (Cat/, cats/, Cats/ for cat)."""
    if positive in names:
        return positive
    p = positive.lower()
    close = [n for n in names if n.lower() in (p, p + "s", p + "es") or n.lower().rstrip("s") == p]
    return close[0] if len(close) == 1 else None


def _readable(folder) -> bool:
    try:
        with os.scandir(folder):
            return True
    except OSError:
        return False


def _class_dirs(folder):
    """The visible subfolders that hold images (a folder of readmes is no class), and those
    catlr may not list: they are reported, not silently left out."""
    return sorted(d for d in os.listdir(folder)
                  if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
                  and (has_images(os.path.join(folder, d))
                       or not _readable(os.path.join(folder, d))))


def _scan(folder, root, positive):
    """({class name: [(path inside the class folder, path relative to root)]}, ignored files,
    folders that could not be listed)."""
    classes = _class_dirs(folder)
    found, ignored, unreadable = {}, [], []
    for c in classes:
        images, others = walk_images(os.path.join(folder, c), root, unreadable)
        inner = [os.path.relpath(os.path.join(root, p), os.path.join(folder, c)) for p in images]
        found[c] = list(zip(inner, images))
        ignored += others
    if positive not in found:
        named = ", ".join(f"{c}/" for c in classes) or "no class folders"
        raise CatlrError(f"{folder} has {named}; expected a class folder named {positive}/ "
                         f"(and one for the rest), or pass --positive NAME")
    if len(classes) < 2:
        raise CatlrError(f"{folder} has only one class folder ({positive}/), add a folder "
                         "of negative examples beside it (e.g. non-cat/)")
    # Files beside the class folders have no class: counted as ignored, never used.
    ignored += [os.path.relpath(os.path.join(folder, n), root) for n in sorted(os.listdir(folder))
                if not n.startswith(".") and os.path.isfile(os.path.join(folder, n))]
    return found, ignored, unreadable


def _ordered(found, positive):
    """(relative path, label) sorted by the path inside the class folder, then the class:
    files numbered across classes (000.png, 001.png, ...) keep their original order."""
    items = sorted((inner, c, rel) for c in found for inner, rel in found[c])
    return [(rel, int(c == positive)) for inner, c, rel in items]


def _split(every, test_fraction, seed):
    """(train, test): each label's items split on its own (stratified), seeded."""
    rng = np.random.default_rng(seed)
    held_out = set()
    for label in (0, 1):
        items = [it for it in every if it[1] == label]
        n_test = min(max(round(len(items) * test_fraction), 1 if len(items) > 1 else 0),
                     max(len(items) - 1, 0))
        held_out.update(items[k] for k in rng.permutation(len(items))[:n_test].tolist())
    return [it for it in every if it not in held_out], [it for it in every if it in held_out]


def discover(src, positive="cat", test_fraction=0.2, seed=1, val_fraction=0.0) -> Layout:
    """Find the classes and the train/test split of an image folder (and, with
    val_fraction, a validation split held out of train, seeded and stratified too)."""
    src = os.path.abspath(os.fspath(src))
    reading(src)
    if not os.path.isdir(src):
        raise CatlrError(f"{src} is not a folder, give a folder with cat/ and non-cat/ "
                         "(or train/ and test/) inside")
    subdirs = _class_dirs(src)
    if not subdirs:
        raise CatlrError(f"{src} has no class folders, put images in {src}/cat/ and "
                         f"{src}/non-cat/ (see 'catlr prepare --help')")
    lower = {d.lower(): d for d in subdirs}
    classes_here = (_class_dirs(os.path.join(src, lower["train"]))
                    if "train" in lower and "test" in lower else subdirs)
    asked, positive = positive, _match(classes_here, positive) or positive
    notes = ([f"using {positive}/ as the positive class (for --positive {asked}); pass "
              "--positive NAME to choose another"] if positive != asked else [])
    if "train" in lower and "test" in lower:
        tr, ign1, unr1 = _scan(os.path.join(src, lower["train"]), src, positive)
        te, ign2, unr2 = _scan(os.path.join(src, lower["test"]), src, positive)
        names = sorted(set(tr) | set(te))
        train, test = _ordered(tr, positive), _ordered(te, positive)
        split, ignored, unreadable = None, ign1 + ign2, unr1 + unr2
    else:
        found, ignored, unreadable = _scan(src, src, positive)
        names = sorted(found)
        train, test = _split(_ordered(found, positive), test_fraction, seed)
        split = {"seed": seed, "test_fraction": test_fraction}
    negatives = [c for c in names if c != positive]
    classes = (negatives[0] if len(negatives) == 1 else f"non-{positive}", positive)
    labels = {lbl for _, lbl in train + test}
    if labels != {0, 1}:
        which = positive if 1 not in labels else "negative"
        cause = (f"; catlr did not search {', '.join(p for p, _ in unreadable[:3])} "
                 f"({unreadable[0][1]})" if unreadable else "")
        raise CatlrError(f"{src} has no {which} images (extensions: "
                         f"{' '.join(sorted(EXTENSIONS))}){cause}, add some")
    val = []
    if val_fraction:
        train, val = _split(train, val_fraction, seed + 1)
        split = {**(split or {}), "val_fraction": val_fraction}
    return Layout(src, classes, train, test, split, ignored, unreadable, notes, val)


def _workers(n: int) -> int:
    """Threads for `--workers n`; 0 means every core plus one, since the GIL-holding
    Python parts of each decode would otherwise leave a core idle (bench/prepare_speed.py)."""
    if n and n > 0:
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(cores, 1) + 1


def decode_many(paths, size=64, fit="stretch", workers=0, max_pixels=MAX_PIXELS, sizes=None):
    """Decode `paths` in parallel threads: an iterator of (path, array or ImageError) in
    input order.

    Pillow releases the GIL while decoding and resizing, so threads scale over cores
    without copying pixels between processes. At most 2 * CHUNK images are in flight
    (bounded memory). The pool lives inside the generator, so that an interrupt at any
    moment (Ctrl-C as the first images are submitted) shuts it down: no thread is left
    for the interpreter to wait on at exit.
    """
    def one(p):
        info = {}
        try:
            image = load_image(p, size, fit, max_pixels, info=info)
        except ImageError as e:
            return e
        if sizes is not None:
            sizes[p] = info["size"]
        return image

    n = _workers(workers)
    if len(paths) <= 1 or n == 1:  # no pool to start for one photo
        yield from ((p, one(p)) for p in paths)
        return
    # here, not at the top: `catlr predict photo.jpg` scores one photo without a pool and
    # starts faster without the import (bench/startup.py)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(n)
    try:
        todo = iter(paths)
        window = deque()
        for p in itertools.islice(todo, 2 * CHUNK):
            window.append((p, pool.submit(one, p)))
        while window:
            p, future = window.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                window.append((nxt, pool.submit(one, nxt)))
            yield p, future.result()
    finally:  # also on Ctrl-C: drop what has not started, wait for what runs
        pool.shutdown(wait=True, cancel_futures=True)


def start_decoding(layout: Layout, cfg: dict, sizes=None):
    """Decode every image of `layout`, train then test, with cfg's size, fit, workers and
    max_pixels (see decode_many; `sizes` gets each file's width and height)."""
    return decode_many([os.path.join(layout.root, p) for p, _ in layout.items()],
                       cfg["size"], cfg["fit"], cfg["workers"], cfg["max_pixels"], sizes)


class ArraySink:
    """Collects each split's images in memory (train and eval on a folder)."""

    def __init__(self, size):
        self.size, self.data = size, {"train": ([], [], []), "test": ([], [], [])}

    def add(self, split, arrays, labels, paths):
        xs, ys, ps = self.data[split]
        xs.extend(arrays), ys.extend(labels), ps.extend(paths)

    def arrays(self, split):
        """(x (m, size, size, 3) uint8, y (m,) int64, paths) of one split."""
        xs, ys, ps = self.data[split]
        x = np.stack(xs) if xs else np.zeros((0, self.size, self.size, 3), np.uint8)
        return x, np.asarray(ys, dtype=np.int64), ps


def ingest(layout: Layout, stream, sink, *, dedupe=False, strict=False, on_event=ignore,
           sizes=None) -> dict:
    """Put the images of `layout`, decoded by `stream` (start_decoding), into `sink`.

    Returns the report: counts per split and class, skipped files with their
    reasons, ignored files, duplicates (a hash of the final pixels), each split's
    fingerprint, how many images were far from square (`sizes`: the dict start_decoding
    filled with each file's width and height), and speed.
    """
    try:
        return _ingest(layout, stream, sink, dedupe=dedupe, strict=strict, on_event=on_event,
                       sizes=sizes)
    finally:  # the decoding threads stop here, also on Ctrl-C, not at the interpreter's exit
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _ingest(layout: Layout, stream, sink, *, dedupe, strict, on_event, sizes) -> dict:
    started = time.perf_counter()
    tally = _Tally(layout, dedupe, strict, {} if sizes is None else sizes)
    for folder, why in layout.unreadable:
        tally.skip(folder, why, "(--strict stops at it), fix it or drop --strict")
    done, total = 0, len(layout.items())
    for split, items in layout.splits():
        batch = ([], [], [])
        for (rel, label), (_, result) in zip(items, stream):
            done += 1
            if isinstance(result, ImageError):
                tally.skip(rel, result.reason, "(--strict stops at the first broken file), "
                                               "fix or remove it, or drop --strict")
            elif tally.keep(split, rel, label, result):
                for part, value in zip(batch, (result, label, rel)):
                    part.append(value)
            if len(batch[0]) >= CHUNK:
                sink.add(split, *batch)
                batch = ([], [], [])
            on_event(Decoded(done, total))
        sink.add(split, *batch)
        if items and not sum(tally.counts[split].values()):
            raise CatlrError(f"no usable images in the {split} split of {layout.root} "
                             f"({len(tally.skipped)} skipped as unreadable, {tally.dropped} "
                             "dropped as duplicates), replace the broken files")
    return tally.report(total, time.perf_counter() - started)


class _Tally:
    """What ingest has seen of the images so far, for its report: counts per split and
    class, the files skipped, the duplicates (a hash of the final pixels: the first image
    of each, by digest), each split's fingerprint, and how many were far from square."""

    def __init__(self, layout: Layout, dedupe: bool, strict: bool, sizes: dict):
        self.layout, self.dedupe, self.strict, self.sizes = layout, dedupe, strict, sizes
        self.seen: dict[bytes, tuple[str, str]] = {}  # digest -> (split, path) of the first
        self.prints = {s: Fingerprint() for s, _ in layout.splits()}
        self.dups = {"train": [], "test": [], "across": []}
        self.counts = {s: {c: 0 for c in layout.classes} for s, _ in layout.splits()}
        self.skipped, self.dropped, self.oblong = [], 0, 0

    def skip(self, path: str, reason: str, stops: str) -> None:
        """A file or folder that is not used, with why (--strict: one line, and stop)."""
        if self.strict:
            raise CatlrError(f"{path}: {reason} {stops}")
        self.skipped.append({"path": path, "reason": reason})

    def keep(self, split: str, rel: str, label: int, image) -> bool:
        """Whether the decoded `image` goes into the sink (not with --dedupe when its
        pixels repeat an earlier image's); counted either way."""
        h = image_digest(image)
        first = self.seen.setdefault(h, (split, rel))
        if first[1] != rel:
            self.dups["across" if first[0] != split else split].append([first[1], rel])
            if self.dedupe:
                self.dropped += 1
                return False
        self.counts[split][self.layout.classes[label]] += 1
        self.prints[split].update(h, label)
        w, hgt = self.sizes.pop(os.path.join(self.layout.root, rel), (1, 1))
        self.oblong += max(w, hgt) >= SQUARISH * min(w, hgt)
        return True

    def report(self, total: int, seconds: float) -> dict:
        layout, counts = self.layout, self.counts
        pos = sum(counts[s][layout.classes[1]] for s in counts)
        kept = sum(sum(c.values()) for c in counts.values())
        return {"source": layout.root, "classes": list(layout.classes), "counts": counts,
                "positive_fraction": pos / kept if kept else None,
                "skipped": self.skipped, "ignored": layout.ignored, "duplicates": self.dups,
                "dropped_duplicates": self.dropped, "split": layout.split,
                "images": total, "used": kept, "oblong": self.oblong, "notes": layout.notes,
                "fingerprint": {s: f.hexdigest() for s, f in self.prints.items()},
                "seconds": seconds,
                "images_per_second": total / seconds if seconds > 0 else None}

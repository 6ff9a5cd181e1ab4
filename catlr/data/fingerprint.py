"""What a split of data is, in 32 hex digits: its images' pixels and labels, in order.

The same images give the same fingerprint however they were stored (a folder of PNGs, a
prepared file, the course's HDF5), so a model can tell whether the data it is evaluated
on is the data it was trained and tested with.
"""

from __future__ import annotations

import os
from collections import deque

import numpy as np

BLOCK = 256  # images read at a time when a stored split is fingerprinted


def _blake2b(*args, **kwargs):
    # hashlib on first use: it loads OpenSSL's library, which `catlr predict` (whose
    # ingest imports this module) never needs (bench/startup.py)
    import hashlib

    return hashlib.blake2b(*args, **kwargs)


def image_digest(pixels) -> bytes:
    """16 bytes naming one image's pixels (also how prepare finds duplicates)."""
    # the array's own buffer, not a bytes copy of it: the same bytes are hashed
    return _blake2b(np.ascontiguousarray(pixels), digest_size=16).digest()


class Fingerprint:
    """Built image by image: update(digest, label) in the split's order."""

    def __init__(self):
        self.h = _blake2b(digest_size=16)

    def update(self, digest: bytes, label: int) -> None:
        self.h.update(digest + bytes([int(label)]))

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def _digests(images) -> list[bytes]:
    return [image_digest(img) for img in images]


def of_split(x, y) -> str:
    """The fingerprint of images x (m, s, s, 3) uint8 (an array, or one left on disk: read a
    block at a time) with labels y (m,).

    The images are hashed in a thread per core (hashlib lets go of the GIL while it hashes
    an image) while this thread reads the next block; the digests are added in the split's
    order, so the fingerprint is the one a single thread makes."""
    from concurrent.futures import ThreadPoolExecutor

    fp = Fingerprint()
    try:
        threads = len(os.sched_getaffinity(0))
    except AttributeError:
        threads = os.cpu_count() or 1
    step = -(-BLOCK // max(threads, 1))
    pending = deque()  # (start, the block's digests to come): this block's and the last's

    def add(start, parts):
        digests = [d for part in parts for d in part.result()]
        for digest, label in zip(digests, y[start:start + len(digests)]):
            fp.update(digest, label)

    with ThreadPoolExecutor(max(threads, 1)) as pool:
        for start in range(0, len(y), BLOCK):
            part = np.asarray(x[start:start + BLOCK])
            pending.append((start, [pool.submit(_digests, part[i:i + step])
                                    for i in range(0, len(part), step)]))
            if len(pending) > 1:
                add(*pending.popleft())
        while pending:
            add(*pending.popleft())
    return fp.hexdigest()

"""What a split of data is, in 32 hex digits: its images' pixels and labels, in order.

The same images give the same fingerprint however they were stored (a folder of PNGs, a
prepared file, the course's HDF5), so a model can tell whether the data it is evaluated
on is the data it was trained and tested with.
"""

from __future__ import annotations

import hashlib

import numpy as np

BLOCK = 256  # images read at a time when a stored split is fingerprinted


def image_digest(pixels) -> bytes:
    """16 bytes naming one image's pixels (also how prepare finds duplicates)."""
    return hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16).digest()


class Fingerprint:
    """Built image by image: update(digest, label) in the split's order."""

    def __init__(self):
        self.h = hashlib.blake2b(digest_size=16)

    def update(self, digest: bytes, label: int) -> None:
        self.h.update(digest + bytes([int(label)]))

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def of_split(x, y) -> str:
    """The fingerprint of images x (m, s, s, 3) uint8 (an array, or one left on disk: read a
    block at a time) with labels y (m,)."""
    fp = Fingerprint()
    for start in range(0, len(y), BLOCK):
        part = np.asarray(x[start:start + BLOCK])
        for img, label in zip(part, y[start:start + BLOCK]):
            fp.update(image_digest(img), label)
    return fp.hexdigest()

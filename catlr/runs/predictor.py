"""A model loaded once, scoring images exactly as `catlr predict` does.

The one path from an image (a file, its bytes, an upload, an array of pixels) to a
probability and a label: predict and eval use it, and so does anything else that serves
a model (a web page, an export check), so none can preprocess differently.
"""

from __future__ import annotations

import threading

import numpy as np

from ..data.images import MAX_PIXELS, load_image
from ..learn.loss import labels
from . import modelfile

# One product at a time in a process: NumPy's BLAS runs each of them on every core already,
# and callers in threads (a server's requests) would otherwise contend for those threads: 4
# to 12 times slower at 16 requests at once on 2 cores (bench/README.md, serve). Their
# number stays as it is: it changes how a dot product is summed, so a served image would
# differ in the last bits from `catlr predict`'s.
_PRODUCTS = threading.Lock()


class Predictor:
    """A fitted model with what it was trained on: the image size, the fit rule, the class
    names, and the threshold above which an image is the positive class."""

    def __init__(self, model, meta: dict, threshold: float = 0.5, source: str = ""):
        self.model, self.meta, self.threshold, self.source = model, meta, threshold, source
        self.size = int(meta["image_size"])
        self.fit = meta.get("fit", "stretch")
        self.classes = tuple(meta["classes"])  # (negative, positive): index = label

    @classmethod
    def load(cls, path, threshold: float = 0.5) -> Predictor:
        """Read and validate a model file (modelfile.load) once."""
        model, meta = modelfile.load(path)
        return cls(model, meta, threshold, str(path))

    def decode(self, source, max_pixels: int = MAX_PIXELS):
        """(size, size, 3) uint8 pixels of an image path, its bytes or a file object, made
        as at training (EXIF rotation, RGB, the model's fit and size); ImageError if not."""
        return load_image(source, self.size, self.fit, max_pixels)

    def proba(self, x):
        """The probability of the positive class (m,) for images x (m, size, size, 3) uint8,
        in memory or on disk (an h5py dataset: read a block at a time), or a list of m
        decoded images (size, size, 3) as decode() gives them."""
        if isinstance(x, (list, tuple)):
            x = (np.stack([np.asarray(i) for i in x]) if len(x) else
                 np.empty((0, self.size, self.size, 3), np.uint8))
        with _PRODUCTS:
            return self.model.proba_pixels(x)

    def labels(self, p):
        """Labels (m,) int64: 1 where p > threshold."""
        return labels(p, self.threshold)

    def names(self, p) -> list[str]:
        """The class name of each probability's label."""
        return [self.classes[int(k)] for k in np.ravel(self.labels(p))]

    def row(self, path, p: float) -> dict:
        """What `catlr predict --json` says of one image."""
        return {"path": path, "probability": float(p), "label": self.names([p])[0]}

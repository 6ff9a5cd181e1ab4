"""A model loaded once, scoring images exactly as `catlr predict` does.

The one path from an image (a file, its bytes, an upload, an array of pixels) to a
probability and a label: `catlr predict` and `catlr serve` answer through `score`, eval
through `proba`, export reads the weights through `weights`, so none can preprocess or
sum differently. Scoring shares nothing between threads (no lock): each image's product
runs on its caller's thread in one fixed summation order (design.Pixels.scores_each), so
a served image gets `catlr predict`'s bits however many requests run at once.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..data.images import MAX_PIXELS, ImageError, load_image
from ..data.ingest import decode_many
from ..events import Decoded, ignore
from ..learn.loss import labels
from . import modelfile

SCORE_BYTES = 16 << 20  # uint8 pixels per scoring batch: 1,365 images at 64 x 64, 5 at 1024


class Predictor:
    """A fitted model with what it was trained on: the image size, the fit rule, the class
    names, and the threshold above which an image is the positive class."""

    def __init__(self, model, meta: dict, threshold: float | None = None, source: str = ""):
        # None: the model's own (train's --threshold, chosen on validation or given; 0.5 in
        # a file that stores none); a number given here overrides it
        self.given = threshold is not None
        self.threshold = float(threshold) if self.given else modelfile.threshold_of(meta)
        self.model, self.meta, self.source = model, meta, source
        self.size = int(meta["image_size"])
        self.fit = meta.get("fit", "stretch")
        self.classes = tuple(meta["classes"])  # (negative, positive): index = label

    @classmethod
    def load(cls, path, threshold: float | None = None) -> Predictor:
        """Read and validate a model file (modelfile.load) once; `threshold` None: the
        model's."""
        model, meta = modelfile.load(path)
        return cls(model, meta, threshold, str(path))

    def decode(self, source, max_pixels: int = MAX_PIXELS):
        """(size, size, 3) uint8 pixels of an image path, its bytes or a file object, made
        as at training (EXIF rotation, RGB, the model's fit and size); ImageError if not."""
        return load_image(source, self.size, self.fit, max_pixels)

    def weights(self) -> tuple[np.ndarray, float]:
        """(w (n_x,) float64, b): what an export writes; X = pixels / 255 (design.SCALE)."""
        return np.asarray(self.model.w_, np.float64).reshape(-1), float(self.model.b_)

    def proba(self, x):
        """The probability of the positive class (m,) for images x (m, size, size, 3) uint8,
        in memory or on disk (an h5py dataset: read a block at a time), or a list of m
        decoded images (size, size, 3) as decode() gives them. Each image's probability is
        its own fixed-order product: the same bits alone or in a batch, in any thread."""
        if isinstance(x, (list, tuple)):
            x = (np.stack([np.asarray(i) for i in x]) if len(x) else
                 np.empty((0, self.size, self.size, 3), np.uint8))
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

    def score(self, named, *, workers=0, max_pixels=MAX_PIXELS, on_event=ignore,
              seen=None) -> list[dict]:
        """The row `catlr predict --json` prints for each (name, source) in `named`, in order:
        {path: name, probability, label}, or {path: name, error}. A source is what `decode`
        takes (a path, an upload's bytes, a file object), decoded as `decode` does (in
        `workers` threads: ingest.decode_many with this model's size and fit); predict and
        serve both answer through here. `seen`, a list, gets each image's (size, size, 3)
        uint8 pixels as the model sees them (None where it could not be decoded)."""
        rows, batch, kept = [None] * len(named), [], []
        per_batch = max(1, SCORE_BYTES // (self.size ** 2 * 3))

        def flush():  # one call per batch, sized by bytes: memory stays bounded
            for i, p in zip(kept, self.proba(np.stack(batch)).tolist()):
                rows[i] = self.row(named[i][0], p)
            batch.clear(), kept.clear()

        sources = [source for _, source in named]
        # closed on leaving, Ctrl-C too: its threads stop here, not at the interpreter's exit
        with contextlib.closing(decode_many(sources, self.size, self.fit, workers,
                                            max_pixels)) as decoded:
            for i, (_, result) in enumerate(decoded):
                if isinstance(result, ImageError):
                    rows[i] = {"path": named[i][0], "error": result.reason}
                else:
                    batch.append(result)
                    kept.append(i)
                    if len(batch) == per_batch:
                        flush()
                if seen is not None:
                    seen.append(None if isinstance(result, ImageError) else result)
                on_event(Decoded(i + 1, total=len(named)))
        if batch:
            flush()
        return rows

"""The eval stage: a model's figures on one split of its data (or of other data)."""

from __future__ import annotations

from dataclasses import dataclass

from . import datasets, metrics, modelfile
from .config import from_saved
from .errors import CatlrError
from .events import ignore


@dataclass
class Evaluation:
    """figures: JSON-ready dict (metrics.report plus split, data, model, classes);
    images (m, s, s, 3) uint8, labels (m,), probabilities (m,), paths: the split itself."""

    figures: dict
    images: object
    labels: object
    probabilities: object
    paths: list


def evaluate(model_path, data=None, *, split="test", threshold=0.5, on_event=ignore) -> Evaluation:
    """Figures (metrics.report) of the model on `split` of DATA.

    DATA defaults to the data recorded in the model file; an image folder is split
    again with the model's recorded seed and fraction, so this is the very test
    split that train held out.
    """
    model, meta = modelfile.load(model_path)
    if split not in ("train", "test"):
        raise CatlrError(f"--split must be train or test, got {split!r}")
    if data is None:
        data = meta.get("data")
        if not data:
            raise CatlrError(f"{model_path} records no training data, pass DATA")
    cfg = {**from_saved(meta.get("config")), "size": meta["image_size"]}
    ds = datasets.load(data, cfg, on_event)
    if ds.size != meta["image_size"]:
        raise CatlrError(f"{data} holds {ds.size} x {ds.size} images but the model was trained "
                         f"on {meta['image_size']} x {meta['image_size']}, prepare it with "
                         f"--size {meta['image_size']}")
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    if len(y) == 0:
        raise CatlrError(f"the {split} split of {data} is empty, choose --split train or other data")
    p = model.proba_pixels(x)
    paths = ds.paths_train if split == "train" else ds.paths_test
    if len(paths) != len(y):
        paths = [f"{split}[{i}]" for i in range(len(y))]
    figures = metrics.report(y, p, threshold)
    figures.update({"split": split, "data": ds.source, "model": str(model_path),
                    "classes": list(ds.classes)})
    return Evaluation(figures, x, y, p, paths)

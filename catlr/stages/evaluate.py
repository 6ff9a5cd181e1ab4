"""The eval stage: a model's figures on one split of its data (or of other data)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from .. import engines
from ..config import from_saved
from ..data import datasets
from ..data.fingerprint import of_split
from ..errors import CatlrError
from ..events import ignore
from ..files import storage
from ..files.outputs import KINDS, Kind, atomic_path
from ..learn import metrics
from ..learn.loss import labels
from ..runs.predictor import Predictor
from ..text import cell

PREDICTIONS_HEADER = "path,split,index,true_label,probability,predicted,correct"
OLD_HEADERS = ("path,split,index,label,probability,predicted,correct",)  # catlr 0.2.0


def _is_predictions(path) -> bool:
    """Whether the file at `path` is a predictions CSV catlr wrote (its header)."""
    with open(path, "rb") as f:
        first = f.read(256).split(b"\n", 1)[0].rstrip(b"\r")
    return first.decode("utf-8", "replace") in (PREDICTIONS_HEADER, *OLD_HEADERS)


KINDS["predictions"] = Kind("a predictions CSV", False, _is_predictions)


@dataclass
class Evaluation:
    """figures: JSON-ready dict (metrics.report plus split, data, model, classes);
    images (m, s, s, 3) uint8, labels (m,), probabilities (m,), paths: the split itself.
    images stay on disk (an h5py dataset) when the split would not fit the memory budget:
    close() the Evaluation after drawing from them."""

    figures: dict
    images: object
    labels: object
    probabilities: object
    paths: list
    split: str = "test"
    threshold: float = 0.5
    dataset: object = None

    def close(self):
        if self.dataset is not None:
            self.dataset.close()

    def rows(self) -> list[dict]:
        """One row per image: path (or '' for the course pair, which stores none), split,
        index in the split, true_label, probability of the positive class, predicted
        label, correct."""
        classes = self.figures["classes"]
        named = not self.paths or not self.paths[0].startswith(f"{self.split}[")
        predicted = labels(self.probabilities, self.threshold)
        return [{"path": path if named else "", "split": self.split, "index": i,
                 "true_label": classes[int(y)], "probability": float(p),
                 "predicted": classes[int(k)], "correct": int(k) == int(y)}
                for i, (path, y, p, k) in enumerate(zip(self.paths, self.labels,
                                                        self.probabilities, predicted))]


def write_predictions(result: Evaluation, path) -> int:
    """Write result.rows() as CSV to `path` (atomically); returns the number of rows."""
    rows = result.rows()
    with atomic_path(path, "predictions") as tmp, open(tmp, "w", newline="", encoding="utf-8",
                                               errors="surrogateescape") as f:
        w = csv.DictWriter(f, PREDICTIONS_HEADER.split(","), lineterminator="\n")
        w.writeheader()
        w.writerows({k: cell(v) for k, v in {**r, "probability": repr(r["probability"])}.items()}
                    for r in rows)
    return len(rows)


def evaluate(model_path, data=None, *, split="test", threshold=None, memory="auto",
             on_event=ignore, storage_options=None) -> Evaluation:
    """Figures (metrics.report, and metrics.calibration) of the model on `split` of DATA,
    labelled at `threshold` (None: the model's own, its metadata's threshold).

    DATA defaults to the data recorded in the model file; an image folder is split
    again with the model's recorded seed and fraction, so this is the very test
    split that train held out. `memory` is the budget (engines.budget) that decides
    whether the split's images are read whole or left on disk.
    """
    predictor = Predictor.load(model_path, threshold)
    meta = predictor.meta
    if split not in ("train", "test"):
        raise CatlrError(f"--split must be train or test, got {split!r}")
    data = data_of(model_path, meta, data)
    cfg = {**from_saved(meta.get("config")), "size": meta["image_size"], "memory": memory,
           "storage_options": dict(storage_options or {})}
    ds = datasets.load(data, cfg, on_event, in_memory=False, split=split)
    try:
        return _evaluate(predictor, model_path, ds, data, split, cfg)
    except BaseException:
        ds.close()
        raise


def data_of(model_path, meta: dict, data=None):
    """DATA as given, else the data the model records it was trained on (one line when it
    records none, or it is gone)."""
    if data is not None:
        return data
    data = meta.get("data")
    if not isinstance(data, str) or not data:
        raise CatlrError(f"{model_path} records no training data, pass DATA: "
                         "catlr eval DATA")
    if not storage.remote(data) and not os.path.exists(storage.local(data)):
        raise CatlrError(f"the data {model_path} was trained on, {data} (the path recorded "
                         "in the model file), is gone, pass the data to evaluate on: "
                         "catlr eval DATA")
    return data


def _evaluate(predictor, model_path, ds, data, split, cfg):
    meta, threshold = predictor.meta, predictor.threshold
    if ds.size != meta["image_size"]:
        raise CatlrError(f"{data} holds {ds.size} x {ds.size} images but the model was trained "
                         f"on {meta['image_size']} x {meta['image_size']}, prepare it with "
                         f"--size {meta['image_size']}")
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    if len(y) == 0:
        raise CatlrError(f"the {split} split of {data} is empty, choose --split train or other data")
    if x.shape[0] * ds.n_x <= engines.budget(cfg)[0] * engines.BLOCK_SHARE:
        x = np.asarray(x)  # small: this split read whole (never the other), the file closed
        if (meta.get("fingerprint") or {}).get(split):
            ds.fingerprints.setdefault(split, of_split(x, y))
        ds.close()
    p = predictor.proba(x)  # a block at a time: the float X is never built whole
    paths = ds.paths_train if split == "train" else ds.paths_test
    if len(paths) != len(y):
        paths = [f"{split}[{i}]" for i in range(len(y))]
    figures = metrics.report(y, p, threshold)
    figures.update({"split": split, "data": ds.source, "model": str(model_path),
                    "classes": list(ds.classes),
                    # whose threshold labels: --threshold's, or the model's (and how train
                    # chose it); then whether the probabilities can be taken at their word
                    "threshold_from": "given" if predictor.given else "model",
                    "threshold_choice": meta.get("threshold_choice"),
                    "calibration": metrics.calibration(y, p)})
    warnings = [f"{model_path}: {w}" for w in meta.get("warnings") or []]
    recorded = (meta.get("fingerprint") or {}).get(split)
    figures["data_changed"] = None if not recorded else ds.fingerprint(split) != recorded
    if figures["data_changed"]:
        warnings.append(f"the {split} split of {ds.source} is not the one {model_path} was "
                        "trained and tested with (the data changed since, prepared again?): "
                        "these figures describe other images")
    base = figures["baseline"]
    if figures["accuracy"] is not None and figures["accuracy"] <= base["accuracy"]:
        warnings.append(f"the model does not beat always answering "
                        f"{ds.classes[base['label']]} ({base['accuracy']:.2%} of this split): "
                        "it has not learned to tell the classes apart")
    figures["warnings"] = warnings
    return Evaluation(figures, x, y, p, paths, split, threshold, ds)

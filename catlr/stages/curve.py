"""Would more data help: the learning curve of a model's training, and the same training
on shuffled labels (catlr eval --learning-curve).

The model's own settings (its config, the rate it trained with, its threshold) are
trained again on 10%, 20%, ... 100% of its training split (stratified and nested: each
class's images in one seeded order, the first tenth, then the first two tenths, ...),
each scored on the images it trained on and on the validation split (the test split
when the model had none, and then said so). The same training on the whole split with
its labels shuffled (a few seeded shuffles: the classes' shares kept) says what chance
gives on this data. In the dual form the kernel K = X.T X of the whole split is computed
once: every subset's is a block of it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import engines
from ..config import from_saved
from ..data.datasets import Rows
from ..events import ignore
from ..learn.metrics import baseline, wilson
from ..runs.modelfile import threshold_of
from ..runs.predictor import Predictor
from . import train
from .evaluate import data_of

FRACTIONS = tuple(k / 10 for k in range(1, 11))
PERMUTATIONS = 5   # shuffles of the labels: a few trainings more, a range to compare with
SEED = 0           # of the subsets' order and of the shuffles
RISE = 0.02        # the held-out accuracy of the last three points over the three before
                   # it, at the least (and at least one held-out point's standard error)
GAP = 0.10         # training accuracy this far above held-out accuracy: overfitting


def settings(meta: dict, storage_options=None, threshold=None) -> dict:
    """The config a model was trained with, to train it again: its rate (what --lr auto
    chose), its threshold as a number (the model's unless given: no choice made again),
    the form left to the planner (gd's iterates are the same in both)."""
    cfg = from_saved(meta.get("config"))
    cfg.update(lr=meta.get("lr") or cfg["lr"],
               threshold=threshold_of(meta) if threshold is None else threshold,
               target="f1", memory="auto", storage_options=dict(storage_options or {}))
    if cfg["lr"] == "auto":  # a model file that lost its rate: the course's
        cfg["lr"] = 0.005
    if cfg["solver"] == "gd":
        cfg["form"] = "auto"
    return cfg


def subsets(y, fractions=FRACTIONS, seed: int = SEED) -> list[np.ndarray]:
    """Sorted indices (k,) into y of each fraction's training images: per class the first
    round(fraction * n_class) (at least 1) of one seeded permutation, so each subset holds
    the one before it and the classes' shares of y."""
    y = np.ravel(y)
    rng = np.random.default_rng(seed)
    orders = [idx[rng.permutation(len(idx))] for idx in (np.flatnonzero(y == c) for c in (0, 1))]
    return [np.sort(np.concatenate([o[:max(1, round(f * len(o)))] for o in orders]))
            for f in fractions]


def learning_curve(model_path, data=None, *, threshold=None, storage_options=None,
                   on_event=ignore, fractions=FRACTIONS, permutations=PERMUTATIONS,
                   seed: int = SEED) -> dict:
    """The model's training again on each fraction of its training split, and on shuffled
    labels. Returns {held ("validation" or "test"), m_held, threshold, settings, points:
    [{fraction, m, train_accuracy, train_ci, held_accuracy, held_ci}], shuffled:
    {accuracies, mean, low, high, above}, real, baseline, verdict: {kind, line}}."""
    predictor = Predictor.load(model_path, threshold)
    cfg = settings(predictor.meta, storage_options, predictor.threshold)
    data = data_of(model_path, predictor.meta, data)
    with train.load(data, cfg, on_event) as ds:
        choice = train.plan(ds, cfg)
        gram = None
        if choice.form == "dual":
            design = engines.design(choice, ds.x_train, cfg, on_event)
            try:
                gram = design.gram()
            finally:
                design.close()
        held = "validation" if ds.has_val else "test"
        y_held = np.asarray(ds.y_val if ds.has_val else ds.y_test)
        y = np.asarray(ds.y_train)

        def fit(index, labels=y):
            part = replace(ds, x_train=_rows(ds.x_train, index), y_train=labels[index],
                           paths_train=[], files=[], fingerprints={},
                           # scored on validation: the test split is not scored at all
                           **({"y_test": np.asarray(ds.y_test)[:0]} if held == "validation"
                              else {}))
            k = gram[np.ix_(index, index)] if gram is not None else None
            _, f = train.fit_dataset(part, cfg, on_event, gram=k, choice=choice)
            return f["train_accuracy"], f["val_accuracy" if held == "validation" else
                                          "test_accuracy"]

        points = []
        for fraction, index in zip(fractions, subsets(y, fractions, seed)):
            fit_acc, held_acc = fit(index)
            points.append({"fraction": fraction, "m": int(len(index)),
                           "train_accuracy": fit_acc,
                           "train_ci": wilson(round(fit_acc * len(index)), len(index)),
                           "held_accuracy": held_acc,
                           "held_ci": wilson(round(held_acc * len(y_held)), len(y_held))})
        everything = np.arange(len(y))
        real = fit(everything)[1] if fractions[-1] != 1.0 else points[-1]["held_accuracy"]
        rng = np.random.default_rng(seed + 1)
        shuffled = [fit(everything, rng.permutation(y))[1] for _ in range(permutations)]
    base = baseline(y_held)["accuracy"]
    return {"held": held, "m_held": int(len(y_held)), "threshold": cfg["threshold"],
            "settings": {k: cfg[k] for k in ("lr", "iters", "l2", "class_weight", "solver")},
            "form": choice.form, "seed": seed, "points": points, "real": real,
            "shuffled": _shuffled(shuffled, real), "baseline": base,
            "verdict": verdict(points, base, held, len(y_held))}


def _rows(x, index):
    """The images at `index` (sorted): taken from an array, or left on disk (datasets.Rows)."""
    return x[index] if isinstance(x, np.ndarray) else Rows(x, index)


def _shuffled(accuracies, real) -> dict | None:
    if not accuracies:
        return None
    a = np.asarray(accuracies)
    return {"accuracies": [float(v) for v in a], "mean": float(a.mean()),
            "low": float(a.min()), "high": float(a.max()),
            "above": bool(real > a.max()),  # the real labels beat every shuffle
            # the permutation test's p-value: (1 + shuffles at least as good) / (1 + shuffles)
            "p_value": float((1 + np.sum(a >= real)) / (1 + len(a)))}


def _pct(x) -> str:
    return f"{x:.1%}"


def verdict(points, base: float, held: str, m_held: int) -> dict:
    """What the curve says, in one line: {kind, line}, kind one of

        low          training accuracy at 100% closes less than half the way from always
                     answering the majority class to 100%: both low, the model cannot fit
        rising       the held-out accuracy of the last three points is above that of the
                     three before them by RISE or more, and by more than one point's
                     standard error sqrt(a (1 - a) / m_held) (less is noise): more images
                     would likely help
        overfitting  flat, and training accuracy GAP or more above held-out: try --l2
        flat         flat and close: more images of the same kind would help little
    and how uncertain each held-out point is (its Wilson interval's half-width)."""
    last = points[-1]
    fit_acc, held_acc = last["train_accuracy"], last["held_accuracy"]
    late = [p["held_accuracy"] for p in points[-3:]]
    early = [p["held_accuracy"] for p in points[-6:-3]] or late
    rise = float(np.mean(late) - np.mean(early))
    se = float(np.sqrt(held_acc * (1 - held_acc) / m_held))
    low, high = last["held_ci"]
    noise = f"each {held} point +- about {(high - low) / 2:.0%} at n = {m_held}"
    both = f"training accuracy {_pct(fit_acc)}, {held} {_pct(held_acc)}"
    if fit_acc <= base + (1 - base) / 2:
        return {"kind": "low", "rise": rise, "line": (
            f"both low ({both}; always answering the majority class scores {_pct(base)}): "
            "the model cannot fit even its own images; more iterations or another --lr may "
            f"help, more images of the same kind will not ({noise})")}
    if rise >= max(RISE, se):
        also = ("; training accuracy is far above it, so it also overfits: try --l2 too"
                if fit_acc - held_acc >= GAP else "")
        return {"kind": "rising", "rise": rise, "line": (
            f"still rising ({held} accuracy {_pct(np.mean(early))} on average at "
            f"{_span(points[-6:-3])} of the images, {_pct(np.mean(late))} at "
            f"{_span(points[-3:])}; {noise}): more images of the same kind would likely "
            f"help{also}")}
    if fit_acc - held_acc >= GAP:
        return {"kind": "overfitting", "rise": rise, "line": (
            f"flat ({noise}), and training accuracy far above {held} ({both}): the model "
            "overfits; try --l2 (catlr sweep DATA --val-fraction 0.2 --l2 0 --l2 1 --l2 10), "
            "more images of the same kind would help little")}
    return {"kind": "flat", "rise": rise, "line": (
        f"flat and close ({both}; {noise}): more images of the same kind would help little")}


def _span(points) -> str:
    """'80-100%': the fractions of a few points."""
    return f"{points[0]['fraction']:.0%}"[:-1] + f"-{points[-1]['fraction']:.0%}"

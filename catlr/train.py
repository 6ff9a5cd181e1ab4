"""The train stage: DATA -> a fitted model and its file; and the learning-rate sweep.

The arithmetic of gradient descent lives in descent.py (through model.py); this
module loads the data, runs it, measures the result and saves it.
"""

from __future__ import annotations

import time

import numpy as np

from . import datasets, descent, engines, modelfile, runs
from .atomic import guard
from .descent import SAMPLE_EVERY
from .config import DEFAULTS
from .errors import CatlrError
from .events import Loaded, ignore
from .loss import labels, sigmoid
from .model import LogisticRegression, check_labels


def plan(ds, cfg: dict) -> engines.Choice:
    """How a Dataset's train split will be trained (engines.choose), its pixels read into
    memory when that is the engine."""
    check_labels(ds.y_train, ds.x_train.shape[0])
    if len(set(ds.y_train.tolist())) < 2:
        only = ds.classes[int(ds.y_train[0])]
        raise CatlrError(f"the train split of {ds.source} holds only {only} images, add images "
                         f"of the other class ({ds.classes[1 - int(ds.y_train[0])]})")
    choice = engines.choose(len(ds.y_train), ds.n_x, cfg["iters"], cfg, on_disk=ds.on_disk)
    if choice.engine == "memory":
        ds.in_memory()
    return choice


def fit_dataset(ds, cfg: dict, on_event=ignore, gram=None, tag=None, choice=None, design=None):
    """Train on a Dataset's train split with a resolved config; returns (model, figures).

    figures: final_cost (after the last update), train_accuracy, test_accuracy
    (None for an empty split), m_train, m_test, warnings, and how it ran: form, engine,
    dtype and engine_reason. `gram`: see LogisticRegression.fit_pixels; `choice` and
    `design` (from plan() and engines.design()) are reused across a sweep.
    """
    choice = choice or plan(ds, cfg)
    own = design is None
    design = design or engines.design(choice, ds.x_train, cfg)
    model = estimator(cfg, choice)
    try:
        model.fit_design(design, ds.y_train, on_event, gram, tag, choice.why, form=choice.form)
        trouble = cost_warnings(model.cost_trace_, cfg["lr"], cfg["iters"],
                                lambda: descent.largest_step(design, model.objective))
    finally:
        if own:
            design.close()
    z = model.train_z_
    test_pred = labels(model.proba_pixels(ds.x_test)) if len(ds.y_test) else None
    figures = {
        "final_cost": final_cost(model, ds.y_train),
        "train_accuracy": _accuracy(labels(sigmoid(z)), ds.y_train),
        "test_accuracy": _accuracy(test_pred, ds.y_test),
        "m_train": int(len(ds.y_train)), "m_test": int(len(ds.y_test)),
        "warnings": trouble,
        "form": model.form_, "engine": choice.engine, "dtype": choice.dtype,
        "engine_reason": choice.why,
    }
    return model, figures


def estimator(cfg: dict, choice=None) -> LogisticRegression:
    """The estimator a resolved config describes (form and dtype as the planner decided)."""
    return LogisticRegression(cfg["lr"], cfg["iters"], cfg["print_every"],
                              choice.form if choice else cfg["form"],
                              choice.dtype if choice else cfg["dtype"])


def final_cost(model, y) -> float:
    """The objective after the last update, on the training data (z = model.train_z_)."""
    objective, y = model.objective, np.asarray(y, np.float64)
    s = objective.weights(y)
    return objective.cost(float(objective.terms(model.train_z_, y, s) / len(y)), len(y),
                          float(np.sum(model.w_ ** 2)) if objective.l2 else 0.0)


RISE = 0.05  # a cost 5% above the sample before it: smaller wobbles are not reported


def rises(trace) -> list[int]:
    """Iterations at which the sampled cost was more than RISE above the sample before.

    On the course data, sampled every 20 iterations: lr 0.005 wobbles by at most 3.8%
    early on, lr 0.0075 rises by up to 54%, lr 0.01 by up to 212% (and still ends low).
    """
    return [i for (_, before), (i, after) in zip(trace, trace[1:]) if after > before * (1 + RISE)]


def cost_warnings(trace, lr, iters, largest=None) -> list[str]:
    """[] for a healthy run; else one sentence: where the cost rose, and a smaller rate.

    A run is flagged when its cost rose (rises()) more than once, or ended above where it
    began: one early wobble that the run recovers from (the demo sample at lr 0.005,
    at iteration 20) is the first steps overshooting, not a rate that is too large.
    `largest()`, when given, is the largest rate at which the cost cannot rise on this
    data (descent.largest_step, or None): the rate suggested is under it.
    """
    up = rises(trace)
    if len(up) < 2 and not (trace and trace[-1][1] > trace[0][1]):
        return []
    shown = ", ".join(map(str, up[:5])) + (f" and {len(up) - 5} more" if len(up) > 5 else "")
    first, last = trace[0][1], trace[-1][1]
    limit = largest() if largest else None
    rate = _round_down(limit * 0.99) if limit and limit < lr else lr / 10
    why = (f"at --lr {rate:g} or less the cost can only fall on this data"
           if limit and limit < lr else "a tenth of it")
    return [f"the cost rose during training (sampled every {SAMPLE_EVERY} iterations, it rose "
            f"at iteration{'s' if len(up) > 1 else ''} {shown} of {iters}; {first:.6f} at "
            f"iteration 0, {last:.6f} at iteration {trace[-1][0]}): lr {lr:g} is too large "
            f"for this data, try --lr {rate:g} ({why})"]


def _round_down(x: float) -> float:
    """The largest of 1, 2 and 5 times a power of ten at or below x."""
    import math

    power = 10 ** math.floor(math.log10(x))
    return next(k * power for k in (5, 2, 1) if k * power <= x)


def _accuracy(pred, y):
    return float((pred == y).mean()) if len(y) else None


def load(data, cfg, on_event=ignore):
    """The dataset a training command uses, checked against cfg's size. Pixels in an
    HDF5 file stay on disk until plan() decides: close the Dataset after use."""
    ds = datasets.load(data, cfg, on_event, in_memory=False)
    if ds.kind != "folder" and cfg["size"] not in (DEFAULTS["size"], ds.size):
        raise CatlrError(f"{ds.source} holds {ds.size} x {ds.size} images; --size {cfg['size']} "
                         "applies to image folders, run 'catlr prepare' on the images at that size")
    on_event(Loaded(ds))
    return ds


def train(data, cfg: dict, *, out=None, name=None, exist_ok=False, plot=None, on_event=ignore):
    """The train stage: load DATA, fit, save; returns (model, meta, runs.Saved).

    With `out`, the model is written to exactly that file; else to a new run folder
    under cfg["runs"] (runs.py), named `name` or train-N. `plot`: a PNG path for the cost
    curve (also kept in the run folder). on_event receives events.Loaded, Decoded (image
    folders), Plan, Step and Wrote.
    """
    guard({"out": (out, "model"), "plot": (plot, "png"),  # before the work
           "run": (None if out else runs.next_folder(cfg["runs"], name), "run")}, [data])
    if out is None:
        runs.check_name(cfg["runs"], name, exist_ok)
    engines.require(cfg["engine"])
    with load(data, cfg, on_event) as ds:
        model, figures = fit_dataset(ds, cfg, on_event)
        prints = {s: ds.fingerprint(s) for s in ("train", "test")}  # what eval compares
    meta = modelfile.metadata(model, ds, cfg, figures, prints)
    meta["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    if out is not None:
        return model, meta, runs.save_file(out, model, meta, plot=plot, on_event=on_event)
    return model, meta, runs.save(cfg, model, meta, name=name, exist_ok=exist_ok, plot=plot,
                                  on_event=on_event)


def sweep(data, cfg: dict, lrs=None, *, on_event=ignore):
    """The course's learning-rate comparison: one model per rate (cfg's sweep_lrs by default).

    Returns a list of dicts {lr, costs, print_every, final_cost, train_accuracy, ...}.
    """
    lrs = cfg["sweep_lrs"] if lrs is None else lrs
    engines.require(cfg["engine"])
    rows = []
    with load(data, cfg, on_event) as ds:
        choice = plan(ds, cfg)
        design = engines.design(choice, ds.x_train, cfg)
        try:
            # K depends on the data alone: computed once, not once per learning rate
            gram = design.gram() if choice.form == "dual" else None
            for lr in lrs:
                model, figures = fit_dataset(ds, {**cfg, "lr": lr}, on_event, gram, lr, choice,
                                             design)
                rows.append({"lr": lr, "costs": model.costs_, "print_every": cfg["print_every"],
                             "cost_rose": bool(figures["warnings"]), **figures})
        finally:
            design.close()
    return rows

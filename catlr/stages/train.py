"""The train stage: DATA -> a fitted model and its file; and the learning-rate sweep.

The arithmetic of gradient descent lives in descent.py (through model.py); this
module loads the data, runs it, measures the result and saves it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from .. import engines, runs, solvers
from ..config import DEFAULTS, from_saved, parse_class_weight, saved
from ..data import datasets
from ..errors import CatlrError, Stopped, UsageError
from ..events import Loaded, ignore
from ..files.outputs import guard
from ..learn import descent, metrics
from ..learn.descent import SAMPLE_EVERY, Held
from ..learn.design import Pixels
from ..learn.loss import cost, labels, sigmoid
from ..learn.metrics import wilson
from ..learn.model import LogisticRegression, check_labels
from ..runs import modelfile
from ..runs import state as statefile

# --lr auto tries these (a geometric grid) on the validation split and keeps the best
AUTO_LRS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


def plan(ds, cfg: dict) -> engines.Choice:
    """How a Dataset's train split will be trained (engines.choose), its pixels read into
    memory when that is the engine."""
    check_labels(ds.y_train, ds.x_train.shape[0])
    if len(set(ds.y_train.tolist())) < 2:
        only = ds.classes[int(ds.y_train[0])]
        raise CatlrError(f"the train split of {ds.source} holds only {only} images, add images "
                         f"of the other class ({ds.classes[1 - int(ds.y_train[0])]})")
    if cfg["form"] == "auto" and solvers.primal_only(cfg.get("solver", "gd")):
        cfg = {**cfg, "form": "primal"}
    choice = engines.choose(len(ds.y_train), ds.n_x, cfg["iters"], cfg, on_disk=ds.on_disk)
    if choice.engine == "memory":
        ds.in_memory()
    return choice


def held_for(ds, cfg: dict, dtype: str) -> Held | None:
    """The examples whose cost training watches: the validation split (early stopping on
    it when asked), else the test split (watched only, named test), else none."""
    if ds.has_val:
        return Held(Pixels(ds.x_val, dtype), np.asarray(ds.y_val), "validation",
                    cfg["early_stop"])
    if len(ds.y_test):
        return Held(Pixels(ds.x_test, dtype), np.asarray(ds.y_test), "test")
    return None


def fit_dataset(ds, cfg: dict, on_event=ignore, gram=None, tag=None, choice=None, design=None,
                held=None, start=None, saver=None):
    """Train on a Dataset's train split with a resolved config; returns (model, figures).

    figures: final_cost (after the last update), train_accuracy, test_accuracy
    (None for an empty split), m_train, m_test, warnings, how it ran (form, engine,
    dtype, engine_reason), and the held-out curve: held ("validation" or "test"),
    held_costs at each recorded iteration, best_iteration and best_cost, stopped_at,
    and with a validation split val_cost, val_accuracy, m_val; threshold, the one the
    accuracies label at (cfg's, or chosen on validation for "auto": threshold_choice says
    how, decide_threshold). `gram`: see
    LogisticRegression.fit_pixels; `choice`, `design` and `held` (from plan(),
    engines.design() and held_for()) are reused across a sweep.
    """
    choice = choice or plan(ds, cfg)
    own = design is None
    design = design or engines.design(choice, ds.x_train, cfg, on_event)
    held = held or held_for(ds, cfg, choice.dtype)
    model = estimator(cfg, choice)
    try:
        model.fit_design(design, ds.y_train, on_event, gram, tag, choice.why, form=choice.form,
                         held=held, start=start, saver=saver)
        trouble = cost_warnings(model.cost_trace_, cfg["lr"], cfg["iters"],
                                lambda: _largest(design, model))
    finally:
        if own:
            design.close()
    z = model.train_z_
    z_val = _logit(model, ds.x_val) if ds.has_val else None  # one pass: the cost's and p's
    p_val = sigmoid(z_val) if ds.has_val else None
    threshold, chosen = decide_threshold(cfg, ds.y_val, p_val)
    test_pred = labels(model.proba_pixels(ds.x_test), threshold) if len(ds.y_test) else None
    test_acc = _accuracy(test_pred, ds.y_test)
    figures = {
        "final_cost": final_cost(model, ds.y_train),
        "train_accuracy": _accuracy(labels(sigmoid(z), threshold), ds.y_train),
        "test_accuracy": test_acc,
        "test_accuracy_ci": wilson(round(test_acc * len(ds.y_test)), len(ds.y_test))
        if test_acc is not None else None,
        "m_train": int(len(ds.y_train)), "m_test": int(len(ds.y_test)),
        "warnings": trouble,
        "form": model.form_, "engine": choice.engine, "dtype": choice.dtype,
        "engine_reason": choice.why,
        "l2": cfg["l2"], "class_weight": cfg["class_weight"], "solver": model.solver,
        "held": held.name if held else None, "held_costs": model.held_costs_,
        "best_iteration": model.best_[0] if model.best_ else None,
        "best_cost": model.best_[1] if model.best_ else None,
        "stopped_at": model.stopped_, "iters_run": model.iters_run_,
        "threshold": threshold, **({"threshold_choice": chosen} if chosen else {}),
    }
    if ds.has_val:
        y = np.asarray(ds.y_val)
        acc = _accuracy(labels(p_val, threshold), y)
        figures.update({"val_cost": cost(z_val, y), "val_accuracy": acc,
                        "val_accuracy_ci": wilson(round(acc * len(y)), len(y)),
                        "m_val": int(len(y))})
    return model, figures


def decide_threshold(cfg: dict, y_val, p_val) -> tuple[float, dict | None]:
    """The threshold a model labels with: cfg's, or with "auto" the one that meets cfg's
    target on the validation split (metrics.choose_threshold). Returns (threshold, how it
    was chosen: {on, target, precision, recall, f1, met, m} at it on validation; None
    when it was given)."""
    if cfg.get("threshold", DEFAULTS["threshold"]) != "auto":
        return float(cfg.get("threshold", DEFAULTS["threshold"])), None
    chosen = metrics.choose_threshold(y_val, p_val, cfg["target"])
    return chosen.pop("threshold"), {"on": "validation", **chosen}


def _largest(design, model):
    """The largest stable step on this data: 2 / L for gd, 1 / L for accelerated descent
    (nesterov); None when it would take too long to find (descent.largest_step)."""
    top = descent.largest_step(design, model.objective)
    return top / 2 if top is not None and model.solver == "nesterov" else top


def _logit(model, x):
    """Z = w.T X + b for images x: the scores the probabilities come from."""
    design = Pixels(x, "float64")
    return design.scores_each(model.w_.ravel(), model.b_)


def estimator(cfg: dict, choice=None) -> LogisticRegression:
    """The estimator a resolved config describes (form and dtype as the planner decided)."""
    return LogisticRegression(cfg["lr"], cfg["iters"], cfg["print_every"],
                              choice.form if choice else cfg["form"],
                              choice.dtype if choice else cfg["dtype"], cfg["l2"],
                              parse_class_weight(cfg["class_weight"]), cfg.get("solver", "gd"))


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


def check_solver(cfg: dict) -> None:
    """Refuse, before any data is read, what the solver cannot do (solvers.SOLVERS): a form
    it does not run in, --lr auto when it takes no rate, a package it needs missing."""
    solver = cfg.get("solver", "gd")
    facts = solvers.facts(solver)
    if cfg["form"] == "dual" and solvers.primal_only(solver):
        raise UsageError(f"--solver {solver} runs in the primal form only, not --form dual: "
                         "use --form primal or auto (or --solver gd for the dual form)")
    if cfg["lr"] == "auto" and not facts.takes_lr:
        raise UsageError(f"--lr auto chooses gradient descent's step, and --solver {solver} "
                         "takes none (its line search finds each step): drop --lr auto")
    solvers.require(solver)


def check_threshold(cfg: dict) -> None:
    """Refuse a --target without --threshold auto, which alone aims for one."""
    if cfg.get("target", "f1") != "f1" and cfg.get("threshold") != "auto":
        raise UsageError(f"--target {cfg['target']} is what --threshold auto aims for: add "
                         "--threshold auto (with a validation split), or drop --target")


def check_validation(cfg: dict) -> None:
    """Refuse, before any data is read, choices that need a validation split and have none
    coming (a stored one is checked once the data is open)."""
    if cfg["val_fraction"] == 0 and (cfg["early_stop"] or cfg["lr"] == "auto"
                                     or cfg.get("threshold") == "auto"):
        what = ("--early-stop" if cfg["early_stop"] else "--lr auto" if cfg["lr"] == "auto"
                else "--threshold auto")
        raise UsageError(f"{what} chooses on a validation split, never on the test split: add "
                         "--val-fraction 0.2 (or prepare the data with --val-fraction)")


def load(data, cfg, on_event=ignore):
    """The dataset a training command uses, checked against cfg's size, with its
    validation split (stored, or held out of the training split by cfg's val_fraction).
    Pixels in an HDF5 file stay on disk until plan() decides: close the Dataset after use."""
    ds = datasets.load(data, cfg, on_event, in_memory=False, prepare=_prepare)
    try:
        if ds.kind != "folder" and cfg["size"] not in (DEFAULTS["size"], ds.size):
            raise CatlrError(f"{ds.source} holds {ds.size} x {ds.size} images; --size "
                             f"{cfg['size']} applies to image folders, run 'catlr prepare' on "
                             "the images at that size")
        if cfg["val_fraction"] and ds.has_val:
            raise UsageError(f"{ds.source} holds its own validation split (prepared with "
                             "--val-fraction): drop --val-fraction to use it")
        if cfg["val_fraction"]:
            ds.hold_out(cfg["val_fraction"], cfg["seed"])
        if not ds.has_val:
            check_validation(cfg)
    except BaseException:
        ds.close()
        raise
    on_event(Loaded(ds))
    return ds


def _prepare(*args, **kwargs):
    """The prepare stage, for an image folder too large for memory (datasets.load hands it
    the folder): imported then, so that training on HDF5 data never imports Pillow."""
    from .prepare import prepare

    return prepare(*args, **kwargs)


def choose_lr(ds, cfg, choice, design, held, on_event=ignore):
    """--lr auto: every rate of AUTO_LRS for cfg's iterations on the same design (K once in
    the dual form), the one whose final validation cost is lowest among those whose cost
    did not rise. Returns (its model and figures, the rates tried with their costs)."""
    gram = design.gram() if choice.form == "dual" else None
    tried, best = [], None
    for lr in AUTO_LRS:
        model, figures = fit_dataset(ds, {**cfg, "lr": lr}, on_event, gram, lr, choice,
                                     design, held)
        tried.append({"lr": lr, "val_cost": figures["val_cost"],
                      "cost_rose": bool(figures["warnings"])})
        if not figures["warnings"] and (best is None or figures["val_cost"] < best[1]["val_cost"]):
            best = (model, figures)
    if best is None:
        raise CatlrError("every rate --lr auto tried made the cost rise on this data, pass "
                         "--lr with a smaller rate")
    return best, tried


# Settings a resume keeps: changing one would make another run, not the same one longer.
PINNED = ("lr", "l2", "class_weight", "val_fraction", "seed", "test_fraction", "size", "fit",
          "positive", "print_every", "form", "dtype", "early_stop", "solver")


@dataclass
class Parent:
    """A run a resume goes on from: its folder, its settings, where it was, and how it
    starts again (descent.Start: its exact state when it kept one, else its weights)."""

    folder: str
    name: str
    cfg: dict
    data: str
    fingerprint: str | None
    start: descent.Start
    at: int
    in_place: bool   # an interrupted run completes in its own folder
    lineage: dict | None = None  # the parent the new state names: this run, or for a run
                                 # completed in place the one it already named (never itself)
    source: str = ""  # the file its state or weights came from

    def check(self, ds) -> None:
        """Refuse, once the data is open and before any work, data this run cannot go on
        with: other data (its fingerprint differs), or a state or weights whose vectors
        do not fit it (runs.state.fits: one line naming the file and the field)."""
        if self.fingerprint and ds.fingerprint("train") != self.fingerprint:
            raise CatlrError(f"the training data of {ds.source} is not what {self.folder} was "
                             "trained on (its fingerprint differs): resume on the same data, "
                             "or train a new run")
        if self.start.state is not None:
            statefile.fits(self.source, self.start.state, ds.n_x, len(ds.y_train))
        elif len(self.start.w) != ds.n_x:
            raise CatlrError(f"{self.source} holds {len(self.start.w)} weights and {ds.source} "
                             f"{ds.n_x} pixel values per image: resume on the data it was "
                             "trained on, or train a new run")


def _read_parent(folder) -> tuple:
    """(state or None, info, the file it came from, its model or None, in place): an
    interrupted run's checkpoint, else a finished run's model and its final state."""
    checkpoint = os.path.join(folder, runs.CHECKPOINT)
    if os.path.isfile(checkpoint):
        state, info = statefile.load(checkpoint, is_input=False)
        return state, info, checkpoint, None, True
    path = os.path.join(folder, runs.MODEL)
    model, info = modelfile.load(path)
    state_file = os.path.join(folder, runs.STATE)
    if os.path.isfile(state_file):
        return statefile.load(state_file)[0], info, state_file, model, False
    return None, info, path, model, False


def _refuse_changes(folder, cfg: dict, given: set, saved: dict) -> None:
    """A resume goes on with the run's settings (PINNED) and a solver that can go on."""
    facts = solvers.facts(saved["solver"])
    if not facts.resumes:
        raise UsageError(f"{folder} was trained with --solver {facts.name}, which cannot go on "
                         f"as the same run ({facts.resume_why}): train a new run with a "
                         "larger --iters")
    for key in PINNED:
        if key in given and cfg[key] != saved[key] and not (key == "form" and cfg[key] == "auto"):
            raise UsageError(f"--{key.replace('_', '-')} {cfg[key]} contradicts {folder} "
                             f"({key} {saved[key]}): a resume goes on with the same settings, "
                             "train a new run to change one")


def _end(folder, cfg: dict, given: set, done: int, asked) -> int:
    """The iteration a resume ends at: --iters N more, else what an interrupted run was
    asked for (`asked`)."""
    if "iters" in given:
        return done + cfg["iters"]
    if isinstance(asked, int) and asked >= done:  # an interrupted run: what it was asked for
        return asked  # (its end reached when it stopped while saving: written from the checkpoint)
    raise UsageError(f"{folder} is complete ({done} iterations): pass --iters N to go N "
                     "iterations further")


def parent_run(run, cfg: dict, given: set) -> Parent:
    """Read the run to resume (runs/NAME: its checkpoint if it was interrupted, else its
    model and final state), refusing settings that contradict it; cfg's iters, when given,
    are the iterations to add."""
    folder = runs.find(run, cfg)
    name = os.path.basename(folder)
    state, info, source, model, in_place = _read_parent(folder)
    saved = from_saved(info.get("config"))
    saved.update(form=info.get("form") or saved["form"], dtype=info.get("dtype") or saved["dtype"])
    _refuse_changes(folder, cfg, given, saved)
    if state is not None and not in_place and (
            state["form"] != saved["form"] or state.get("solver", "gd") != saved["solver"]):
        state, source = None, os.path.join(folder, runs.MODEL)  # another run's state
    done = state["i"] if state is not None else int(info.get("iters_run") or info.get("iters") or 0)
    end = _end(folder, cfg, given, done, info.get("iters") if in_place else None)
    if state is not None:
        start = descent.Start(state=state, at=done, history=state)
    else:  # its weights (the state is gone): the same iterates to rounding, not bit for bit
        start = descent.Start(w=model.w_.ravel(), b=model.b_, at=done,
                              history={"costs": model.costs_})
    # where it runs: as the run ran unless given again (a resume may move to a cluster)
    keep = {k: cfg[k] for k in ("max_pixels", "runs", "model", "storage_options")} | {
        k: cfg[k] if k in given else saved[k]
        for k in ("engine", "memory", "scheduler", "workers", "checkpoint_every")}
    lineage = ((info.get("parent") if isinstance(info.get("parent"), dict) else None)
               if in_place else {"run": name, "at": done})
    return Parent(folder, name, {**saved, **keep, "iters": end}, info.get("data") or "",
                  (info.get("fingerprint") or {}).get("train"), start, done, in_place, lineage,
                  source)


def train(data, cfg: dict, *, out=None, name=None, exist_ok=False, plot=None, on_event=ignore,
          resume=None, given=frozenset()):
    """The train stage: load DATA, fit, save; returns (model, meta, runs.Saved).

    With `out`, the model is written to exactly that file; else to a new run folder
    under cfg["runs"] (runs.py), named `name` or train-N, which keeps a checkpoint every
    cfg["checkpoint_every"] seconds and of the last complete iteration whatever stops the
    run (_kept). `plot`: a PNG path for the cost curve (also kept in the run folder).
    `resume`: a run to go on from (see parent_run; `given` are the settings the user set).
    on_event receives events.Loaded, Decoded (image folders), Plan, Step and Wrote.
    """
    parent = None
    if resume is not None:
        parent = parent_run(resume, cfg, set(given))
        cfg, data = parent.cfg, data or parent.data
        if parent.in_place and out is None and name is None:
            name, exist_ok = parent.name, True
    guard({"out": (out, "model"), "plot": (plot, "png"),  # before the work
           "run": (None if out else runs.next_folder(cfg["runs"], name), "run")}, [data])
    if out is None:
        runs.check_name(cfg["runs"], name, exist_ok)
    engines.require(cfg["engine"])
    check_solver(cfg)
    check_threshold(cfg)
    if not datasets.stored_validation(data, cfg["storage_options"]):
        check_validation(cfg)
    with load(data, cfg, on_event) as ds:
        if parent is not None:
            parent.check(ds)  # the same data, and vectors that fit it: before any work
        folder = created = saver = None
        if out is None:
            folder, created = runs.begin(cfg, name, exist_ok)
            if cfg["lr"] != "auto":
                saver = _saver(folder, ds, cfg, parent, on_event)
        with _kept(folder, created):
            model, figures, cfg = _fit(ds, cfg, on_event, saver, parent)
        with _kept(folder, created, saver, model):  # reading the data for its fingerprints
            prints = {s: ds.fingerprint(s) for s in ("train", "test")}  # what eval compares
        figures["shares"] = ds.shares()
    meta = modelfile.metadata(model, ds, cfg, figures, prints)
    meta["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    if parent is not None and parent.lineage:
        meta["parent"] = parent.lineage
    draw = lambda: cost_picture(model, meta)  # noqa: E731
    if out is not None:
        return model, meta, runs.save_file(out, model, meta, plot=plot, draw=draw,
                                           on_event=on_event)
    with _kept(folder, created, saver, model):  # the folder is whole, or as it was
        return model, meta, runs.save(cfg, model, meta, name=name, exist_ok=exist_ok,
                                      plot=plot, draw=draw, on_event=on_event, folder=folder,
                                      created=False, state=model.state_)


def _fit(ds, cfg, on_event, saver, parent):
    """(model, figures, cfg with the rate --lr auto chose)."""
    if cfg["lr"] != "auto":
        model, figures = fit_dataset(ds, cfg, on_event, saver=saver,
                                     start=parent.start if parent else None)
        return model, figures, cfg
    choice = plan(ds, cfg)
    design = engines.design(choice, ds.x_train, cfg, on_event)
    try:
        held = held_for(ds, cfg, choice.dtype)
        (model, figures), tried = choose_lr(ds, cfg, choice, design, held, on_event)
    finally:
        design.close()
    figures["lr_auto"] = tried
    return model, figures, {**cfg, "lr": model.lr}


@contextlib.contextmanager
def _kept(folder, created, saver=None, model=None):
    """Nothing lost whatever stops a run: its folder's last checkpoint stays (the Saver
    wrote the last complete iteration on the way out), and 'catlr train --resume' goes on
    from it. A stop while the finished run is saved (`model`) checkpoints where it ended
    first (not a run stopped early: its checkpoints resume to the same stop; nor into an
    older run's folder that --exist-ok was replacing, kept as it was). A folder this run
    made that holds no checkpoint, or whose run diverged, is removed."""
    try:
        yield
    except BaseException as e:
        checkpoint = None if folder is None else os.path.join(folder, runs.CHECKPOINT)
        # not into the folder of another run that --exist-ok replaces: it stays as it was
        if saver is not None and model is not None and model.stopped_ is None and (
                created or os.path.isfile(checkpoint)):
            with contextlib.suppress(Exception):  # a full disk: the last one stays whole
                saver.store(model.state_)
        if created and (isinstance(e, descent.Diverged) or not os.path.isfile(checkpoint)):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def cost_picture(model, meta) -> bytes:
    """The cost curve of a trained model as PNG bytes (and the held-out curve, the best
    iteration when chosen on validation)."""
    from .plots import cost_curve_png  # matplotlib only when a plot is asked for

    return cost_curve_png(model.costs_, meta["print_every"],
                          title=f"Cost during training (lr = {meta['lr']:g})",
                          final=(meta.get("stopped_at") or meta["iters"], meta.get("final_cost")),
                          held=(meta.get("held"), meta.get("held_costs") or []),
                          best=meta.get("best_iteration") if meta.get("held") == "validation"
                          else None)


def _saver(folder, ds, cfg, parent, on_event) -> descent.Saver:
    """Checkpoints of this run into its folder: what it is (config, data and its
    fingerprint, the iterations asked) beside the solver's state. A checkpoint that
    cannot be written stops the run (Stopped), the last one written kept whole."""
    info = {}

    def save(snapshot):
        if not info:  # once, at the first checkpoint: the fingerprint reads the data
            info.update(config=saved(cfg), data=ds.source, data_kind=ds.kind, iters=cfg["iters"],
                        lr=cfg["lr"], print_every=cfg["print_every"],
                        fingerprint={"train": ds.fingerprint("train")},
                        n_x=ds.n_x, m=len(ds.y_train),  # the lengths its vectors must have
                        created=time.strftime("%Y-%m-%d %H:%M:%S"),
                        parent=parent.lineage if parent else None)
        try:
            runs.write_checkpoint(folder, snapshot, {**info, "dtype": cfg["dtype"]}, on_event)
        except OSError as e:
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            raise Stopped(f"{e.strerror or e} writing {os.path.join(folder, runs.CHECKPOINT)}, "
                          f"{'free some space on its disk' if full else 'check its folder'}") \
                from None

    every = cfg["checkpoint_every"]
    return descent.Saver(save, every if every > 0 else None)


def sweep(data, cfg: dict, lrs=None, l2s=None, *, on_event=ignore):
    """The course's learning-rate comparison, and penalties: one model per (rate, l2)
    (cfg's sweep_lrs and sweep_l2s by default).

    Returns a list of dicts {lr, l2, costs, print_every, final_cost, train_accuracy, ...};
    with a validation split each has val_cost and val_accuracy, the one with the lowest
    val_cost among those whose cost did not rise is marked best, and only it keeps its
    test_accuracy (the others' is None: a choice made on the test split overfits it).
    """
    lrs = cfg["sweep_lrs"] if lrs is None else lrs
    l2s = cfg["sweep_l2s"] if l2s is None else l2s
    if not solvers.facts(cfg["solver"]).takes_lr:  # no learning rate: one run per penalty
        lrs = lrs[:1]
    engines.require(cfg["engine"])
    check_solver(cfg)
    check_threshold(cfg)
    if not datasets.stored_validation(data, cfg["storage_options"]):
        check_validation(cfg)
    rows = []
    with load(data, cfg, on_event) as ds:
        choice = plan(ds, cfg)
        design = engines.design(choice, ds.x_train, cfg, on_event)
        held = held_for(ds, cfg, choice.dtype)
        try:
            # K depends on the data alone: computed once, not once per learning rate
            gram = design.gram() if choice.form == "dual" else None
            for l2 in l2s:
                for lr in lrs:
                    model, figures = fit_dataset(ds, {**cfg, "lr": lr, "l2": l2}, on_event,
                                                 gram, lr, choice, design, held)
                    rows.append({"lr": lr, "l2": l2, "costs": model.costs_,
                                 "print_every": cfg["print_every"],
                                 "cost_rose": bool(figures["warnings"]), **figures})
        finally:
            design.close()
        on_val = ds.has_val
    if on_val:
        fine = [r for r in rows if not r["cost_rose"]] or rows
        best = min(fine, key=lambda r: r["val_cost"])
        for r in rows:
            r["best"] = r is best
            if not r["best"]:
                r["test_accuracy"] = None  # the test figure, once, for the choice alone
    return rows

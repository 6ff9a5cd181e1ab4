"""Logistic regression, in the course's notation.

Notation (kept from the course's week-2 exercise, used in every module):
    X  (n_x, m)   one example per column, pixels / 255, n_x = size * size * 3
    Y  (1, m)     labels, 1 = the positive class (cat)
    w  (n_x, 1)   weights, b a scalar; both start at zero
    Z = w.T X + b,  A = sigmoid(Z),  prediction: A > threshold (0.5)
"""

from __future__ import annotations

import numpy as np

from .. import solvers
from ..config import DEFAULTS, problem
from ..errors import CatlrError, ParameterError
from ..events import ignore
from . import descent
from .design import Dense, Pixels, dtype_name, to_host
from .forms import choose_form
from .loss import Objective, labels, sigmoid


class LogisticRegression:
    """Binary logistic regression trained by batch gradient descent from w = 0, b = 0.

    Parameters (set at construction, checked at fit, never changed by fitting): lr, iters,
    print_every, form ("auto", "primal" or "dual"), dtype (of X built from pixels; "auto":
    float64 in the dual form, float32 in the primal), l2 (course 2's penalty
    l2 / (2m) |w|^2, 0: none), class_weight (None, "balanced" or {0: w0, 1: w1}) and
    solver ("gd", the course's descent; "nesterov" or "lbfgs", primal form only:
    descent.run).
    Fitted attributes, scikit-learn style: `w_` (n_x, 1), `b_`, `costs_` (the cost
    every `print_every` iterations from iteration 0), `form_` (the form used),
    `train_z_` (Z on the training data after the last update, (m,)), `cost_trace_`
    ((iteration, cost) wherever the cost was looked at: recorded and sampled).
    """

    def __init__(self, lr: float = 0.005, iters: int = 2000, print_every: int = 100,
                 form: str = "auto", dtype: str = "float64", l2: float = 0.0,
                 class_weight=None, solver: str = "gd"):
        self.lr, self.iters, self.print_every = lr, iters, print_every
        self.form, self.dtype = form, dtype
        self.l2, self.class_weight, self.solver = l2, class_weight, solver
        self.w_ = None
        self.b_ = 0.0
        self.costs_: list[float] = []
        self.form_ = None
        self.train_z_ = None
        self.cost_trace_: list[tuple[int, float]] = []
        self.held_costs_: list[float] = []   # the held-out cost at each recorded iteration
        self.best_ = None                    # (iteration, held-out cost) of the lowest
        self.stopped_ = None                 # where early stopping ended, or None
        self.iters_run_ = 0

    @classmethod
    def from_weights(cls, w, b, costs=(), form=None, **params) -> LogisticRegression:
        """A fitted model from stored weights: w (n_x,) or (n_x, 1), b a scalar."""
        model = cls(**params)
        model.w_ = np.asarray(w, dtype=np.float64).reshape(-1, 1)
        model.b_ = float(np.asarray(b, dtype=np.float64).reshape(-1)[0])
        model.costs_ = [float(c) for c in costs]
        model.form_ = form
        return model

    @property
    def objective(self) -> Objective:
        return Objective(self.l2, self.class_weight)

    def check_params(self) -> None:
        """Refuse parameters that cannot work, with what was found, what was expected and
        the fix: a ParameterError, which is a ValueError (scikit-learn's convention)."""
        for key in ("lr", "iters", "print_every", "form", "dtype", "solver"):
            value = getattr(self, key)
            why = problem(key, value)
            if why:
                example = "float64" if key == "dtype" else DEFAULTS[key]
                raise ParameterError(f"LogisticRegression({key}={value!r}) cannot be fitted: "
                                     f"{key} {why}; pass e.g. {key}={example!r}")
        if self.form == "dual" and solvers.primal_only(self.solver):
            raise ParameterError(f"LogisticRegression(solver={self.solver!r}, form='dual') "
                                 f"cannot be fitted: {self.solver} runs in the primal form; "
                                 "pass form='primal' or 'auto'")
        self.objective.check()

    def _plan(self, n_x, m) -> tuple[str, str]:
        """(form, dtype) to fit with: as asked, or chosen by engines' cost model."""
        self.check_params()
        itemsize = 4 if self.dtype in ("auto", "float32") else 8
        form = self.form if self.form != "auto" else "primal" if solvers.primal_only(
            self.solver) else choose_form(n_x, m, self.iters, itemsize)
        dtype = self.dtype if self.dtype != "auto" else ("float64" if form == "dual"
                                                         else "float32")
        return form, dtype

    def fit(self, X, Y, on_event=ignore, w0=None, b0=0.0) -> LogisticRegression:
        """Train on X (n_x, m) floats and Y (1, m), computed in X's dtype and X's array
        library (NumPy, or any Array API library: CuPy, torch, array-api-strict). w0
        ((n_x, 1) or (n_x,)) and b0: where descent starts (a warm start), else w = 0, b = 0."""
        Y = check_xy(X, Y)
        form, _ = self._plan(*X.shape)
        start = None
        if w0 is not None or b0:
            start = descent.Start(w=np.zeros(X.shape[0]) if w0 is None else to_host(w0).ravel(),
                                  b=float(b0))
            if start.w.shape != (X.shape[0],):
                raise ParameterError(f"w0 has {start.w.size} weights, expected {X.shape[0]} "
                                     "(one per row of X): pass w0 of shape (n_x, 1)")
        return self.fit_design(Dense(X), Y, on_event, form=form, start=start)

    def fit_pixels(self, x, y, on_event=ignore, gram=None) -> LogisticRegression:
        """Train on images x (m, size, size, 3) uint8 (in memory or an h5py dataset) and
        labels y (m,), with X = x / 255 in `dtype`. `gram`: Pixels(x).gram() computed earlier."""
        check_labels(y, x.shape[0])
        form, dtype = self._plan(int(np.prod(x.shape[1:])), x.shape[0])
        return self.fit_design(Pixels(x, dtype), y, on_event, gram, form=form)

    def fit_design(self, design, y, on_event=ignore, gram=None, tag=None, why="",
                   form=None, held=None, start=None, saver=None) -> LogisticRegression:
        """Train on any design-matrix source (design.py): the one training path. `form`:
        "primal" or "dual", decided by the caller (else as the parameters ask). `held`:
        descent.Held, examples whose cost is watched (and early stopping on them); `start`
        (descent.Start): a warm start or a resumed state; `saver` (descent.Saver):
        checkpoints. The solver's state at the end is `state_` (for a later resume)."""
        if form is None:
            form = self._plan(design.n_x, design.m)[0]
        else:
            self.check_params()
        fit = descent.run(design, y, self.lr, self.iters, form=form, objective=self.objective,
                          print_every=self.print_every, on_event=on_event, gram=gram,
                          tag=tag, why=why, held=held, start=start, saver=saver,
                          solver=self.solver)
        self.w_ = fit.w.reshape(-1, 1)
        self.b_, self.costs_, self.form_, self.train_z_ = fit.b, fit.costs, fit.form, fit.z
        self.cost_trace_ = fit.trace
        self.held_costs_, self.best_, self.stopped_ = fit.held_costs, fit.best, fit.stopped
        self.iters_run_, self.state_ = fit.iters, fit.state
        return self

    def w_norm(self) -> float:
        """|w|, scaled so that weights near the float limit do not overflow."""
        top = float(np.abs(self.w_).max()) if self.w_ is not None and self.w_.size else 0.0
        return top * float(np.linalg.norm(self.w_ / top)) if top else 0.0

    def _weights(self, n_x):
        if self.w_ is None:
            raise CatlrError("this model has no weights yet, call fit() or load a model file first")
        if n_x != self.w_.shape[0]:
            raise CatlrError(f"X has {n_x} rows, expected ({self.w_.shape[0]}, m): "
                             "one flattened image per column")
        return self.w_

    def decision_function(self, X):
        """Z = w.T X + b, shape (1, m)."""
        if getattr(X, "ndim", 0) != 2:
            raise CatlrError(f"X has shape {getattr(X, 'shape', None)}, expected (n_x, m)")
        return (self._weights(X.shape[0]).T @ X) + self.b_

    def predict_proba(self, X):
        """A = sigmoid(w.T X + b), the probability of the positive class, shape (1, m)."""
        return sigmoid(self.decision_function(X))

    def predict(self, X, threshold: float | None = None):
        """Labels (1, m) as int64: 1 where A > threshold (None: `threshold_`, the one a model
        file stores, which catlr.load sets; else 0.5)."""
        if threshold is None:
            threshold = getattr(self, "threshold_", 0.5)
        return labels(self.predict_proba(X), threshold)

    def proba_pixels(self, x):
        """A (m,) for images x (m, size, size, 3) uint8, a block at a time (bounded memory);
        each image's the same whatever else is in x (Pixels.scores_each)."""
        design = Pixels(x, "float64")
        w = self._weights(design.n_x).ravel()
        return sigmoid(design.scores_each(w, self.b_))


def check_labels(y, m):
    """y as (m,) after checking it holds m labels, all 0 or 1 (and m > 0)."""
    y = to_host(y, None).reshape(-1)
    if len(y) != m:
        raise CatlrError(f"X has {m} examples (columns) but Y has {len(y)} labels, "
                         "they must match")
    if m == 0:
        raise CatlrError("there are no training examples, add images to the training set")
    if not np.isin(y, (0, 1)).all():
        raise CatlrError("labels must be 0 or 1, found "
                         f"{sorted(set(np.unique(y).tolist()) - {0, 1})[:5]}, relabel the data")
    return y


def check_xy(X, Y):
    """Y as (1, m) NumPy floats of X's dtype, after checking X (n_x, m) and Y agree and hold
    0/1 labels."""
    if getattr(X, "ndim", 0) != 2:
        raise CatlrError(f"X must be a 2-D array (n_x, m), got shape {getattr(X, 'shape', None)}")
    return check_labels(Y, X.shape[1]).reshape(1, -1).astype(dtype_name(X.dtype))

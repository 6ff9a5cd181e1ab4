"""Logistic regression, in the course's notation.

Notation (kept from the course's week-2 exercise, used in every module):
    X  (n_x, m)   one example per column, pixels / 255, n_x = size * size * 3
    Y  (1, m)     labels, 1 = the positive class (cat)
    w  (n_x, 1)   weights, b a scalar; both start at zero
    Z = w.T X + b,  A = sigmoid(Z),  prediction: A > threshold (0.5)
"""

from __future__ import annotations

import numpy as np

from . import descent
from .design import Dense, Pixels
from .errors import CatlrError
from .events import ignore
from .loss import sigmoid


class LogisticRegression:
    """Binary logistic regression trained by batch gradient descent from w = 0, b = 0.

    Parameters (set at construction, never changed by fitting): lr, iters,
    print_every, form ("auto", "primal" or "dual"), dtype (of X built from pixels).
    Fitted attributes, scikit-learn style: `w_` (n_x, 1), `b_`, `costs_` (the cost
    every `print_every` iterations from iteration 0), `form_` (the form used),
    `train_z_` (Z on the training data after the last update, (m,)), `cost_trace_`
    ((iteration, cost) wherever the cost was looked at: recorded and sampled).
    """

    def __init__(self, lr: float = 0.005, iters: int = 2000, print_every: int = 100,
                 form: str = "auto", dtype: str = "float64"):
        self.lr, self.iters, self.print_every = lr, iters, print_every
        self.form, self.dtype = form, dtype
        self.w_ = None
        self.b_ = 0.0
        self.costs_: list[float] = []
        self.form_ = None
        self.train_z_ = None
        self.cost_trace_: list[tuple[int, float]] = []

    @classmethod
    def from_weights(cls, w, b, costs=(), form=None, **params) -> LogisticRegression:
        """A fitted model from stored weights: w (n_x,) or (n_x, 1), b a scalar."""
        model = cls(**params)
        model.w_ = np.asarray(w, dtype=np.float64).reshape(-1, 1)
        model.b_ = float(np.asarray(b, dtype=np.float64).reshape(-1)[0])
        model.costs_ = [float(c) for c in costs]
        model.form_ = form
        return model

    def fit(self, X, Y, on_event=ignore) -> LogisticRegression:
        """Train on X (n_x, m) floats and Y (1, m), computed in X's dtype."""
        Y = check_xy(X, Y)
        return self.fit_design(Dense(X), Y, on_event)

    def fit_pixels(self, x, y, on_event=ignore, gram=None) -> LogisticRegression:
        """Train on images x (m, size, size, 3) uint8 (in memory or an h5py dataset) and
        labels y (m,), with X = x / 255 in `dtype`. `gram`: Pixels(x).gram() computed earlier."""
        check_labels(y, x.shape[0])
        return self.fit_design(Pixels(x, self.dtype), y, on_event, gram)

    def fit_design(self, design, y, on_event=ignore, gram=None, tag=None,
                   why="") -> LogisticRegression:
        """Train on any design-matrix source (design.py): the one training path."""
        fit = descent.run(design, y, self.lr, self.iters, print_every=self.print_every,
                          form=self.form, on_event=on_event, gram=gram, tag=tag, why=why)
        self.w_ = fit.w.reshape(-1, 1)
        self.b_, self.costs_, self.form_, self.train_z_ = fit.b, fit.costs, fit.form, fit.z
        self.cost_trace_ = fit.trace
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

    def predict(self, X, threshold: float = 0.5):
        """Labels (1, m) as int64: 1 where A > threshold."""
        return (self.predict_proba(X) > threshold).astype(np.int64)

    def proba_pixels(self, x):
        """A (m,) for images x (m, size, size, 3) uint8, a block at a time (bounded memory)."""
        design = Pixels(x, "float64")
        w = self._weights(design.n_x).ravel()
        return sigmoid(design.scores(w, self.b_))


def check_labels(y, m):
    """y as (m,) after checking it holds m labels, all 0 or 1 (and m > 0)."""
    y = np.asarray(y).reshape(-1)
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
    """Y as (1, m) in X's dtype, after checking X (n_x, m) and Y agree and hold 0/1 labels."""
    if getattr(X, "ndim", 0) != 2:
        raise CatlrError(f"X must be a 2-D array (n_x, m), got shape {getattr(X, 'shape', None)}")
    return check_labels(Y, X.shape[1]).reshape(1, -1).astype(X.dtype)

"""Logistic regression, in the course's notation.

Notation (kept from the course's week-2 exercise, used in every module):
    X  (n_x, m)   one example per column, pixels / 255, n_x = size * size * 3
    Y  (1, m)     labels, 1 = the positive class (cat)
    w  (n_x, 1)   weights, b a scalar; both start at zero
    Z = w.T X + b,  A = sigmoid(Z),  prediction: A > threshold (0.5)
"""

from __future__ import annotations

from .errors import CatlrError


def sigmoid(z):
    """1 / (1 + exp(-z)), without overflow for any finite z (same shape as z)."""
    import numpy as np

    # exp(-log(1 + exp(-z))) never overflows: logaddexp is stable on both sides.
    return np.exp(-np.logaddexp(0.0, -z))


def cost(Z, Y) -> float:
    """Cross-entropy J = -(1/m) sum(Y log A + (1-Y) log(1-A)) computed from Z.

    Z, Y: (1, m) or (m,). Written as mean(log(1 + e^Z) - Y Z), the same value
    without log(0) when A rounds to 0 or 1 (a large learning rate).
    """
    import numpy as np

    return float(np.mean(np.logaddexp(0.0, Z) - Y * Z))


class LogisticRegression:
    """Binary logistic regression trained by batch gradient descent from w = 0, b = 0.

    After `fit`: `w` (n_x, 1), `b` float, `costs` (the cost every `cost_every`
    iterations, from iteration 0), `form` ("primal" or "dual": how it was computed).
    """

    def __init__(self, lr: float = 0.005, iters: int = 2000, cost_every: int = 100,
                 form: str = "auto"):
        self.lr, self.iters, self.cost_every, self.form = lr, iters, cost_every, form
        self.w = None
        self.b = 0.0
        self.costs: list[float] = []

    def fit(self, X, Y, callback=None) -> LogisticRegression:
        """Train on X (n_x, m) and Y (1, m); `callback(i, cost)` every `cost_every` iterations."""
        from .descent import gradient_descent

        Y = check_xy(X, Y)
        self.w, self.b, self.costs, self.form = gradient_descent(
            X, Y, self.lr, self.iters, cost_every=self.cost_every, form=self.form,
            callback=callback)
        return self

    def decision_function(self, X):
        """Z = w.T X + b, shape (1, m)."""
        if self.w is None:
            raise CatlrError("this model has no weights yet, call fit() or load a model file first")
        if X.ndim != 2 or X.shape[0] != self.w.shape[0]:
            raise CatlrError(f"X has shape {X.shape}, expected ({self.w.shape[0]}, m): "
                             "one flattened image per column")
        return (self.w.T @ X) + self.b

    def predict_proba(self, X):
        """A = sigmoid(w.T X + b), the probability of the positive class, shape (1, m)."""
        return sigmoid(self.decision_function(X))

    def predict(self, X, threshold: float = 0.5):
        """Labels (1, m) as int64: 1 where A > threshold."""
        import numpy as np

        return (self.predict_proba(X) > threshold).astype(np.int64)


def check_xy(X, Y):
    import numpy as np

    if getattr(X, "ndim", 0) != 2:
        raise CatlrError(f"X must be a 2-D array (n_x, m), got shape {getattr(X, 'shape', None)}")
    Y = np.asarray(Y).reshape(1, -1)
    if Y.shape[1] != X.shape[1]:
        raise CatlrError(f"X has {X.shape[1]} examples (columns) but Y has {Y.shape[1]} labels, "
                         "they must match")
    if X.shape[1] == 0:
        raise CatlrError("there are no training examples, add images to the training set")
    if not np.isin(Y, (0, 1)).all():
        raise CatlrError("labels must be 0 or 1, found "
                         f"{sorted(set(np.unique(Y).tolist()) - {0, 1})[:5]}, relabel the data")
    return Y.astype(X.dtype)

"""The objective of logistic regression: the sigmoid, the cross-entropy cost, its penalty.

A leaf module (numpy; errors and config's class-weight rule for its one check): the model,
the solvers and the metrics import it, it imports
none of them. Every function takes arrays of any Array API library (NumPy, CuPy, torch,
array-api-strict) and computes in that library; `xp` is the arrays' namespace.

The cost, course 2's form with per-example weights s (all 1 by default):
    J = (1/m) sum_i s_i (log(1 + e^z_i) - y_i z_i) + l2 / (2m) |w|^2,   z = w.T x_i + b
    dJ/dz_i = s_i (sigmoid(z_i) - y_i) / m   (the residual, over m)
    dJ/dw  = X r / m + (l2 / m) w,   dJ/db = sum(r) / m   (the bias is not penalized)
With l2 = 0 and no weights it is the course's week-2 cost, computed as it always was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import WEIGHT_BOUNDS, WEIGHT_RATIO, weights_problem
from ..errors import ParameterError


def _xp(a):
    if isinstance(a, (np.ndarray, np.generic)):
        return np
    import array_api_compat  # only for other array libraries: a NumPy run never loads it

    return array_api_compat.array_namespace(a)


def sigmoid(z):
    """1 / (1 + exp(-z)), without overflow for any finite z (same shape as z)."""
    xp = _xp(z)
    # exp(-log(1 + exp(-z))) never overflows: logaddexp is stable on both sides.
    return xp.exp(-xp.logaddexp(0.0, -z))


def labels(p, threshold: float = 0.5):
    """The predicted labels (int64, p's shape): 1 where the probability p > threshold.
    The one decision rule: train, eval, predict, the figures and the pictures use it."""
    return (np.asarray(p) > threshold).astype(np.int64)


def cost_sum(z, y, s=None):
    """sum(s (log(1 + e^z) - y z)): m times the data cost, a 0-d array (no sync to the host)."""
    xp = _xp(z)
    terms = xp.logaddexp(0.0, z) - y * z
    return xp.sum(terms if s is None else s * terms)


def cost(Z, Y) -> float:
    """Cross-entropy J = -(1/m) sum(Y log A + (1-Y) log(1-A)) computed from Z.

    Z, Y: (1, m) or (m,). Written as mean(log(1 + e^Z) - Y Z), the same value
    without log(0) when A rounds to 0 or 1 (a large learning rate).
    """
    return float(np.mean(np.logaddexp(0.0, Z) - Y * Z))


@dataclass(frozen=True)
class Objective:
    """What gradient descent minimizes: the cross-entropy, per-example weights from
    `class_weight`, and an L2 penalty l2 / (2m) |w|^2 on w (never on b).

    class_weight: None (every example 1), "balanced" (m / (2 n_label), scikit-learn's rule),
    or {0: weight, 1: weight}. Defaults: the course's cost, unchanged.
    """

    l2: float = 0.0
    class_weight: object = None

    @property
    def plain(self) -> bool:
        """The course's own cost: no penalty and every weight 1."""
        return self.l2 == 0 and self.class_weight is None

    def weights(self, y):
        """Per-example weights s (m,) in y's namespace and dtype, or None for all ones."""
        if self.class_weight is None:
            return None
        xp = _xp(y)
        if self.class_weight == "balanced":
            m = y.shape[0]
            n1 = float(xp.sum(y))
            per = {0: m / (2 * (m - n1)) if m > n1 else 0.0, 1: m / (2 * n1) if n1 else 0.0}
        else:
            per = {int(k): float(v) for k, v in dict(self.class_weight).items()}
        return y * per.get(1, 1.0) + (1 - y) * per.get(0, 1.0)

    def terms(self, z, y, s=None):
        """m times the data cost on these examples (0-d): sum(s (log(1 + e^z) - y z))."""
        return cost_sum(z, y, s)

    def residual(self, z, y, s=None):
        """dZ = s (sigmoid(z) - y), the gradient of the summed cost in z."""
        dz = sigmoid(z)
        dz -= y
        if s is not None:
            dz *= s
        return dz

    def penalty(self, w_norm2: float, m: int) -> float:
        """l2 / (2m) |w|^2."""
        return self.l2 / (2 * m) * w_norm2 if self.l2 else 0.0

    def shrink(self, lr: float, m: int) -> float:
        """What one step multiplies w by before the data's step: 1 - lr l2 / m (the
        penalty's gradient, (l2 / m) w, taken as a factor)."""
        return 1.0 - lr * self.l2 / m

    def cost(self, data_cost: float, m: int, w_norm2: float = 0.0) -> float:
        """J: the data cost (terms over all m examples, / m) plus the penalty on |w|^2."""
        return data_cost + self.penalty(w_norm2, m) if self.l2 else data_cost

    def check(self) -> None:
        """Refuse what cannot be a penalty or weights (ValueError, the library's rule)."""
        if isinstance(self.l2, bool) or not isinstance(self.l2, (int, float)) or not (
                math.isfinite(self.l2) and self.l2 >= 0):
            raise ParameterError(f"l2={self.l2!r} cannot be a penalty: expected a finite "
                                 "number >= 0, e.g. l2=0.1 (0, the default, is the course's)")
        cw = self.class_weight
        ok = cw is None or cw == "balanced" or (
            isinstance(cw, dict) and set(cw) <= {0, 1}
            and not weights_problem(*cw.values(), *([1.0] if len(cw) < 2 else [])))
        if not ok:
            low, high = WEIGHT_BOUNDS
            raise ParameterError(f"class_weight={cw!r} cannot weight the classes: expected "
                                 "None, 'balanced' or {0: w0, 1: w1} with positive weights "
                                 f"from {low:g} to {high:g}, at most {WEIGHT_RATIO:g} times "
                                 "each other")

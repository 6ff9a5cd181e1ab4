"""The loss of logistic regression: the sigmoid and the cross-entropy cost.

A leaf module (numpy only): the model, the solvers and the metrics import it,
it imports none of them.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z):
    """1 / (1 + exp(-z)), without overflow for any finite z (same shape as z)."""
    # exp(-log(1 + exp(-z))) never overflows: logaddexp is stable on both sides.
    return np.exp(-np.logaddexp(0.0, -z))


def cost_sum(z, y):
    """sum(log(1 + e^z) - y z): m times the cost, as a 0-d array (no sync to the host)."""
    return (np.logaddexp(0.0, z) - y * z).sum()


def cost(Z, Y) -> float:
    """Cross-entropy J = -(1/m) sum(Y log A + (1-Y) log(1-A)) computed from Z.

    Z, Y: (1, m) or (m,). Written as mean(log(1 + e^Z) - Y Z), the same value
    without log(0) when A rounds to 0 or 1 (a large learning rate).
    """
    return float(np.mean(np.logaddexp(0.0, Z) - Y * Z))

"""Classification figures from labels and probabilities, each written out plainly.

All take y (m,) of 0/1 and p (m,) probabilities of the positive class (any shape
that ravels to (m,)); they agree with scikit-learn's functions of the same names.
"""

from __future__ import annotations

import numpy as np

from .loss import labels


def confusion(y, pred) -> dict:
    """Counts tp, fp, tn, fn of predicted labels against true labels."""
    y, pred = np.ravel(y).astype(bool), np.ravel(pred).astype(bool)
    return {"tp": int((y & pred).sum()), "fp": int((~y & pred).sum()),
            "tn": int((~y & ~pred).sum()), "fn": int((y & ~pred).sum())}


def log_loss(y, p) -> float:
    """Mean cross-entropy; p clipped to [eps, 1 - eps] as scikit-learn does."""
    y, p = np.ravel(y).astype(np.float64), np.ravel(p).astype(np.float64)
    eps = np.finfo(np.float64).eps
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def roc_auc(y, p) -> float | None:
    """Area under the ROC curve: the chance a random positive outranks a random negative
    (ties count half), by the Mann-Whitney rank sum. None with a single class."""
    y, p = np.ravel(y).astype(bool), np.ravel(p).astype(np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # average ranks over ties: each run of equal scores shares its mean rank
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_p)) + 1]
    ends = np.r_[starts[1:], len(p)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def report(y, p, threshold: float = 0.5) -> dict:
    """accuracy, precision, recall, f1, log_loss, roc_auc, tp/fp/tn/fn and class counts."""
    y = np.ravel(y).astype(np.int64)
    p = np.ravel(p).astype(np.float64)
    c = confusion(y, labels(p, threshold))
    m = len(y)
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    f1 = 2 * c["tp"] / (2 * c["tp"] + c["fp"] + c["fn"]) if c["tp"] + c["fp"] + c["fn"] else 0.0
    positives = int(y.sum())
    return {"accuracy": (c["tp"] + c["tn"]) / m if m else None,
            "precision": precision, "recall": recall, "f1": f1,
            "log_loss": log_loss(y, p) if m else None, "roc_auc": roc_auc(y, p), **c,
            "positives": positives, "negatives": int(m - positives), "m": m,
            "threshold": threshold, "baseline": baseline(y),
            # 95% intervals (Wilson for the proportions, DeLong for the AUC), and their n
            "accuracy_ci": wilson(c["tp"] + c["tn"], m),
            "precision_ci": wilson(c["tp"], c["tp"] + c["fp"]),
            "recall_ci": wilson(c["tp"], c["tp"] + c["fn"]),
            "roc_auc_ci": auc_interval(y, p),
            "n": {"accuracy": m, "precision": c["tp"] + c["fp"], "recall": c["tp"] + c["fn"]}}


def baseline(y) -> dict:
    """Always answering the larger class: {label, accuracy} (what a model must beat)."""
    y = np.ravel(y).astype(np.int64)
    m, positives = len(y), int(y.sum())
    label = int(positives > m - positives)
    return {"label": label, "accuracy": (max(positives, m - positives) / m) if m else None}


Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


def wilson(k: int, n: int, z: float = Z95) -> list | None:
    """The Wilson score interval [low, high] of a proportion k / n (95% by default); None
    when n is 0. Unlike k / n +- z sd, it stays inside [0, 1] and is right for small n."""
    if not n:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [float(max(centre - half, 0.0)), float(min(centre + half, 1.0))]


def _midranks(x):
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    s = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], len(x)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auc_interval(y, p, z: float = Z95) -> list | None:
    """A 95% interval [low, high] of the ROC AUC by DeLong's variance (DeLong, DeLong and
    Clarke-Pearson 1988, with midranks: O(m log m)); None with fewer than two of a class."""
    y, p = np.ravel(y).astype(bool), np.ravel(p).astype(np.float64)
    pos, neg = p[y], p[~y]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return None
    tz = _midranks(np.concatenate([pos, neg]))
    tx, ty = _midranks(pos), _midranks(neg)
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:m] - tx) / n            # each positive's share of negatives it outranks
    v01 = 1.0 - (tz[m:] - ty) / m      # each negative's share of positives that outrank it
    sd = float(np.sqrt(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n))
    return [float(max(auc - z * sd, 0.0)), float(min(auc + z * sd, 1.0))]

"""Classification figures from labels and probabilities, each written out plainly.

All take y (m,) of 0/1 and p (m,) probabilities of the positive class (any shape
that ravels to (m,)); they agree with scikit-learn's functions of the same names.
"""

from __future__ import annotations

import numpy as np

from ..config import parse_target
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
    ranks = _midranks(p)  # ties share their mean rank
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
    # the interval holds k / n, exactly 0 or 1 too (rounding put 1 - 1e-16 above n of n)
    return [float(min(max(centre - half, 0.0), p)), float(max(min(centre + half, 1.0), p))]


def _midranks(x):
    """The ranks of x (1 to n), each run of equal values sharing its mean rank."""
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


# ---- the threshold: every way a threshold can label a split, and the one a target picks

def pr_curve(y, p) -> dict:
    """Every distinct labelling a threshold makes of (y, p), highest threshold first.

    Cut j labels positive the j highest distinct probabilities: its threshold lies between
    the j-th and the (j+1)-th, or 0 for the last (their midpoint; labels(p, t) is that cut
    exactly; a cut of every image when one's p is 0.0 cannot be made), tp and fp
    are its counts, precision tp / (tp + fp), recall tp / positives, f1 2 tp / (2 tp + fp +
    fn). Returns arrays (k,): threshold, tp, fp, precision, recall, f1; and positives.
    scikit-learn's precision_recall_curve lists the same cuts by the lowest probability
    in each (its rule is p >= threshold).
    """
    y, p = np.ravel(y).astype(np.int64), np.ravel(p).astype(np.float64)
    order = np.argsort(-p, kind="mergesort")
    sp, sy = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(sp)), len(sp) - 1]  # each distinct value's last index
    tp = np.cumsum(sy)[last].astype(np.int64)
    fp = (last + 1 - tp).astype(np.int64)
    values = sp[last]
    below = np.r_[values[1:], 0.0]  # the next lower distinct value (the last: 0)
    threshold = values + (below - values) / 2
    # adjacent floats: their midpoint may round onto one of them, then the lower one works
    exact = (labels(values, threshold) == 1) & (labels(below, threshold) == 0)
    threshold = np.where(exact, threshold, below)
    if len(values) and not labels(values[-1:], threshold[-1])[0]:  # p = 0.0: no threshold
        values, threshold, tp, fp = values[:-1], threshold[:-1], tp[:-1], fp[:-1]  # takes all
    positives = int(y.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = tp / positives if positives else np.zeros(len(tp))
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + (positives - tp)), 0.0)
    return {"threshold": threshold, "tp": tp, "fp": fp, "precision": precision,
            "recall": recall, "f1": f1, "positives": positives}


def choose_threshold(y, p, target: str = "f1") -> dict:
    """The threshold that meets `target` on (y, p), a held-out split never trained on:

        f1            the cut of the highest F1 (ties: the threshold nearest 0.5)
        precision=X   the cut of the highest recall whose precision is at least X
        recall=X      the cut of the highest precision whose recall is at least X
    A target no cut meets takes the cut nearest it (the highest precision, or recall), and
    says so in `met` False. Returns {threshold, precision, recall, f1, target, met, m}.
    """
    name, goal = parse_target(target)
    c = pr_curve(y, p)
    t, precision, recall, f1 = c["threshold"], c["precision"], c["recall"], c["f1"]
    if not len(t):  # every probability 0.0: no cut to choose, the course's 0.5
        return {"threshold": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                "target": target, "met": False, "m": len(np.ravel(y))}
    near = -np.abs(t - 0.5)
    if name == "f1":
        keys, met = (f1, near), True
    else:
        mine, other = (precision, recall) if name == "precision" else (recall, precision)
        ok = mine >= goal - 1e-12
        met = bool(ok.any())
        keys = (np.where(ok, other, -1.0), mine, near) if met else (mine, other, near)
    j = int(np.lexsort(tuple(reversed(keys)))[-1])  # the largest by the first key, then ...
    return {"threshold": float(t[j]), "precision": float(precision[j]),
            "recall": float(recall[j]), "f1": float(f1[j]), "target": target, "met": met,
            "m": len(np.ravel(y))}


# ---- calibration: whether a probability of 0.8 means 8 in 10

BINS = 10            # equal-width bins of the reliability diagram, as calibration_curve's
BOOTSTRAP = 2000     # resamples of the bootstrap intervals
SEED = 0             # their seed: the same data gives the same interval
RESAMPLE_VALUES = 1 << 21  # values of one batch of resamples (16 MB of float64 a array)


def brier(y, p, z: float = Z95) -> dict:
    """The Brier score mean((p - y)^2), 0 is perfect, and its 95% interval by the normal
    formula for a mean of m independent terms: mean +- z sd / sqrt(m) (sd with ddof 1), cut
    to [0, 1]; `reference` is the score of always answering the split's share of positives,
    share (1 - share). {value, ci, share, reference}."""
    y, p = np.ravel(y).astype(np.float64), np.ravel(p).astype(np.float64)
    terms = (p - y) ** 2
    m = len(terms)
    value = float(terms.mean()) if m else None
    share = float(y.mean()) if m else None
    out = {"value": value, "ci": None, "share": share,
           "reference": share * (1 - share) if m else None}
    if m >= 2:
        half = z * float(terms.std(ddof=1)) / float(np.sqrt(m))
        out["ci"] = [max(value - half, 0.0), min(value + half, 1.0)]
    return out


def reliability(y, p, bins: int = BINS) -> dict:
    """The reliability diagram's numbers: p cut into `bins` equal-width bins as
    scikit-learn's calibration_curve(strategy="uniform") cuts it ([0, 0.1], (0.1, 0.2],
    ...), and for each bin its count, mean predicted probability, observed share of
    positives and that share's Wilson interval (None for an empty bin). Lists (bins,)."""
    y, p = np.ravel(y).astype(np.float64), np.ravel(p).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=bins)
    sums = np.bincount(ids, weights=p, minlength=bins)
    hits = np.bincount(ids, weights=y, minlength=bins)
    full = count > 0
    predicted = np.where(full, sums / np.maximum(count, 1), np.nan)
    observed = np.where(full, hits / np.maximum(count, 1), np.nan)
    return {"edges": edges.tolist(), "count": count.tolist(),
            "predicted": [float(v) if f else None for v, f in zip(predicted, full)],
            "observed": [float(v) if f else None for v, f in zip(observed, full)],
            "observed_ci": [wilson(round(float(k)), int(n)) for k, n in zip(hits, count)]}


def _ece(y, p, ids, bins):
    """sum over bins of (count / m) |observed - predicted| for bin indices `ids` (m,);
    y and p may be (r, m): r resamples at once."""
    y, p, ids = np.atleast_2d(y), np.atleast_2d(p), np.atleast_2d(ids)
    r, m = p.shape
    rows = np.repeat(np.arange(r), m)
    flat = (rows * bins + ids.ravel())
    gap = (np.bincount(flat, weights=p.ravel(), minlength=r * bins)
           - np.bincount(flat, weights=y.ravel(), minlength=r * bins))
    return np.abs(gap).reshape(r, bins).sum(axis=1) / m


def ece(y, p, bins: int = BINS, resamples: int = BOOTSTRAP, seed: int = SEED) -> dict:
    """The expected calibration error, sum over bins of (n_bin / m) |observed - predicted|
    (reliability's bins), with

        ci               its 95% interval by the percentile bootstrap: `resamples`
                         resamples of the m (y, p) pairs with replacement, seeded
        if_calibrated    what a perfectly calibrated model shows on the same p: y drawn
                         from Bernoulli(p) `resamples` times (consistency resampling,
                         Broecker and Smith 2007), its mean and 95th percentile. On a
                         small split it is well above 0: ECE is biased upward.
    """
    y, p = np.ravel(y).astype(np.float64), np.ravel(p).astype(np.float64)
    m = len(y)
    if not m:
        return {"value": None, "ci": None, "if_calibrated": None, "bins": bins}
    ids = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], p)
    value = float(_ece(y, p, ids, bins)[0])
    rng = np.random.default_rng(seed)
    boot, calm = np.empty(resamples), np.empty(resamples)
    rows = max(1, RESAMPLE_VALUES // m)  # resamples at a time: memory stays bounded
    for start in range(0, resamples, rows):
        r = min(rows, resamples - start)
        at = rng.integers(0, m, (r, m))
        boot[start:start + r] = _ece(y[at], p[at], ids[at], bins)
    for start in range(0, resamples, rows):  # after: the bootstrap's draws come first
        r = min(rows, resamples - start)
        drawn = (rng.random((r, m)) < p).astype(np.float64)
        calm[start:start + r] = _ece(drawn, np.broadcast_to(p, drawn.shape),
                                     np.broadcast_to(ids, drawn.shape), bins)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"value": value, "ci": [float(low), float(high)], "bins": bins,
            "if_calibrated": {"mean": float(calm.mean()),
                              "p95": float(np.percentile(calm, 95))},
            "method": f"percentile bootstrap, {resamples} resamples, seed {seed}"}


def calibration(y, p, bins: int = BINS) -> dict:
    """Can the probabilities be trusted: brier, ece and the reliability diagram's bins."""
    return {"brier": brier(y, p), "ece": ece(y, p, bins), "reliability": reliability(y, p, bins)}


# ---- the classes' shares in each split, and whether two differ more than chance allows

SHARE_LEVEL = 0.05  # the family-wise level of the shares' tests (Bonferroni over the pairs)


def shares(counts: dict) -> dict:
    """{split: {positives, m, share, ci, majority}} from {split: (positives, m)} (an empty
    split is left out): share is positives / m, ci its 95% Wilson interval, majority the
    label always answering would give (baseline's rule)."""
    return {name: {"positives": int(k), "m": int(m), "share": k / m, "ci": wilson(int(k), int(m)),
                   "majority": int(k > m - k)}
            for name, (k, m) in counts.items() if m}


def share_report(counts: dict, base: str = "train") -> dict:
    """What prepare and train say of the classes' shares: {shares, differ} (shares() and
    share_differences() of `counts`, {split: (positives, m)})."""
    found = shares(counts)
    return {"shares": found, "differ": share_differences(found, base)}


def two_proportions(k1: int, n1: int, k2: int, n2: int) -> dict:
    """The pooled two-proportion z-test, two-sided, of k1 / n1 against k2 / n2 (Pearson's
    chi-squared test of the 2 x 2 table without Yates' correction is the same test:
    chi2 = z^2): {z, p_value}. The normal approximation wants about 5 of each class in
    each split; p_value 1 when the pooled share is 0 or 1 (nothing to test)."""
    import math

    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var <= 0:
        return {"z": 0.0, "p_value": 1.0}
    z = (k1 / n1 - k2 / n2) / math.sqrt(var)
    return {"z": z, "p_value": math.erfc(abs(z) / math.sqrt(2))}


def share_differences(found: dict, base: str = "train", level: float = SHARE_LEVEL) -> list:
    """The splits whose share of positives differs from `base`'s (the split trained on)
    more than chance allows: each other split tested against it by two_proportions, at
    `level` over all the pairs (Bonferroni: each pair at level / pairs). Returns
    [{split, base, z, p_value, level}] for those that differ."""
    if base not in found:
        return []
    others = [s for s in found if s != base]
    b, out = found[base], []
    for name in others:
        s = found[name]
        test = two_proportions(s["positives"], s["m"], b["positives"], b["m"])
        if test["p_value"] < level / len(others):
            out.append({"split": name, "base": base, **test, "level": level / len(others)})
    return out

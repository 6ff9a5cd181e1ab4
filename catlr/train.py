"""Batch gradient descent for logistic regression, in two exact forms, and the train stage.

Primal form (the course's loop), two passes over X per iteration:
    Z = w.T X + b;  dZ = A - Y;  w -= lr X dZ.T / m;  b -= lr sum(dZ) / m
Dual form: from w = 0 every step adds a combination of X's columns, so
w = X c at every iteration. With K = X.T X (m x m) computed once:
    Z = c.T K + b;  dZ = A - Y;  c -= lr dZ / m;  b -= lr sum(dZ) / m;  w = X c
Same iterates up to rounding, at O(m^2) per iteration instead of O(n_x m).
"""

from __future__ import annotations

import math

from .errors import CatlrError

FORMS = ("auto", "primal", "dual")


def choose_form(n_x: int, m: int, iters: int) -> str:
    """'dual' when m is well below n_x and K pays for itself, else 'primal'.

    Flops: dual m^2 n_x (for K) + iters m^2 + n_x m; primal 2 iters n_x m.
    """
    dual = m * m * n_x + iters * m * m + n_x * m
    primal = 2 * iters * n_x * m
    return "dual" if m < n_x and dual < primal else "primal"


def gradient_descent(X, Y, lr: float, iters: int, *, cost_every: int = 100,
                     form: str = "auto", callback=None):
    """Run `iters` steps from w = 0, b = 0 on X (n_x, m) and Y (1, m), in X's dtype.

    Returns (w (n_x, 1) float64, b float, costs list, form used). The cost is
    recorded before the update at every iteration i with i % cost_every == 0,
    as the course does; `callback(i, cost)` is called at each of those.
    """
    import numpy as np

    from .model import cost, sigmoid

    n_x, m = X.shape
    if form == "auto":
        form = choose_form(n_x, m, iters)
    if form not in ("primal", "dual"):
        raise CatlrError(f"unknown form {form!r}, use one of {', '.join(FORMS)}")
    y = np.ascontiguousarray(Y, dtype=X.dtype).reshape(m)
    step = lr / m
    b = 0.0
    costs: list[float] = []
    if form == "dual":
        K = X.T @ X  # symmetric, so c.T K is K c
        v = np.zeros(m, dtype=X.dtype)  # the dual coefficients c
    else:
        v = np.zeros(n_x, dtype=X.dtype)  # w itself
    # Overflow is caught below, by name and iteration; no RuntimeWarnings.
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(iters):
            z = (K @ v if form == "dual" else v @ X) + b
            if not np.isfinite(z).all():
                _diverged(i, lr)
            if i % cost_every == 0:
                costs.append(cost(z, y))
                if callback is not None:
                    callback(i, costs[-1])
            dz = sigmoid(z) - y
            if form == "dual":
                v -= step * dz
            else:
                v -= step * (X @ dz)
            b -= lr * float(dz.sum()) / m
        w = X @ v if form == "dual" else v
        if not (np.isfinite(w).all() and math.isfinite(b)):
            _diverged(iters, lr)
    return w.astype(np.float64).reshape(n_x, 1), float(b), costs, form


def _diverged(i: int, lr: float):
    raise CatlrError(f"training diverged at iteration {i} (weights are no longer finite "
                     f"with --lr {lr:g}), use a smaller learning rate such as --lr {lr / 10:g}")


def fit_dataset(ds, cfg: dict, callback=None):
    """Train on a Dataset's train split with a resolved config; returns (model, figures)."""
    from . import datasets
    from .model import LogisticRegression, cost

    X = datasets.flatten(ds.x_train, cfg["dtype"])
    model = LogisticRegression(cfg["lr"], cfg["iters"], cfg["print_every"], cfg["form"])
    model.fit(X, ds.y_train, callback=callback)
    final = cost(model.decision_function(X), ds.y_train)  # after the last update
    del X
    figures = {
        "final_cost": final,
        "train_accuracy": accuracy(model, ds.x_train, ds.y_train, cfg["dtype"]),
        "test_accuracy": accuracy(model, ds.x_test, ds.y_test, cfg["dtype"]),
        "m_train": int(len(ds.y_train)), "m_test": int(len(ds.y_test)),
    }
    return model, figures


def accuracy(model, x, y, dtype="float64"):
    """Fraction of images x (m, s, s, 3) whose prediction equals y (m,); None when m = 0."""
    from . import datasets

    if len(y) == 0:
        return None
    pred = model.predict(datasets.flatten(x, dtype)).ravel()
    return float((pred == y).mean())


def train(data, cfg: dict, *, on_event=None):
    """The train stage: load DATA, fit, save the model file; returns (model, meta).

    `on_event(name, info)` reports progress: "data" (the loaded dataset),
    "decode" (images done / total, for image folders), "form", "cost" (i, cost).
    """
    from . import datasets, modelfile

    emit = on_event or (lambda name, info: None)
    ds = datasets.load(data, cfg, on_event=emit)
    emit("data", {"dataset": ds})
    m, n_x = len(ds.y_train), ds.n_x
    form = cfg["form"] if cfg["form"] != "auto" else choose_form(n_x, m, cfg["iters"])
    emit("form", {"form": form, "n_x": n_x, "m": m, "dtype": cfg["dtype"]})
    model, figures = fit_dataset(
        ds, {**cfg, "form": form},
        callback=lambda i, c: emit("cost", {"i": i, "cost": c, "iters": cfg["iters"]}))
    meta = modelfile.metadata(model, ds, cfg, figures)
    modelfile.save(cfg["model"], model, meta)
    return model, meta


def sweep(data, cfg: dict, lrs, *, on_event=None):
    """The course's learning-rate comparison: one model per rate on the same data.

    Returns a list of dicts {lr, costs, cost_every, final_cost, train_accuracy, test_accuracy, ...}.
    """
    from . import datasets

    emit = on_event or (lambda name, info: None)
    ds = datasets.load(data, cfg, on_event=emit)
    emit("data", {"dataset": ds})
    rows = []
    for lr in lrs:
        model, figures = fit_dataset(ds, {**cfg, "lr": lr}, callback=lambda i, c, lr=lr: emit(
            "cost", {"i": i, "cost": c, "iters": cfg["iters"], "lr": lr}))
        rows.append({"lr": lr, "costs": model.costs,
                     "cost_every": cfg["print_every"], **figures})
    return rows

"""The course's week-2 functions, by the notebook's names and signatures, backed by catlr.

For learners who arrive with the notebook: each function below is a thin call into catlr's
library (loss.sigmoid, design.Dense.gradient, LogisticRegression.fit with a warm start,
containers' checked reader), so the numbers are catlr's and there is no second copy of the
math. Shapes are the course's: X (n_x, m), Y (1, m), w (n_x, 1), b a float.

    from catlr.course import load_dataset, model, save_model
    train_x, train_y, test_x, test_y, classes = load_dataset("datasets")
    X = train_x.reshape(train_x.shape[0], -1).T / 255
    d = model(X, train_y, test_x.reshape(test_x.shape[0], -1).T / 255, test_y,
              num_iterations=2000, learning_rate=0.005, print_cost=True)
    save_model(d, "course.npz")      # then: catlr predict photo.jpg --model course.npz
"""

from __future__ import annotations

import math
import os

import numpy as np

from .config import DEFAULTS
from .errors import CatlrError
from .events import Step
from .files.schema import DEFAULT_CLASSES
from .learn import loss
from .learn.descent import Start
from .learn.design import NORMALIZATION, Dense
from .learn.forms import choose_form
from .learn.model import LogisticRegression, check_xy
from .version import __version__

PRINT_EVERY = 100  # the notebook records (and prints) the cost every 100 iterations


def sigmoid(z):
    """1 / (1 + e^-z) of a scalar or an array (same shape), as the notebook's sigmoid."""
    return loss.sigmoid(np.asarray(z, dtype=np.float64))


def initialize_with_zeros(dim):
    """(w of shape (dim, 1) zeros, b = 0.0 a Python float): where the course starts."""
    return np.zeros((dim, 1)), 0.0


def _data(w, b, X, Y):
    """The notebook's arguments as catlr's: X (n_x, m) float64, Y (1, m), w (n_x,)."""
    X = np.asarray(X, dtype=np.float64)
    Y = check_xy(X, np.asarray(Y))
    w = np.asarray(w, dtype=np.float64)
    if w.size != X.shape[0]:
        raise CatlrError(f"w has shape {w.shape}, expected ({X.shape[0]}, 1): one weight per "
                         "row of X (initialize_with_zeros(X.shape[0]) makes one)")
    return w.reshape(-1), float(b), X, Y


def propagate(w, b, X, Y):
    """The gradients and the cost at w (n_x, 1), b for X (n_x, m), Y (1, m).

    Returns (grads, cost): grads["dw"] (n_x, 1) = X (A - Y).T / m, grads["db"] =
    sum(A - Y) / m (a NumPy float), cost the cross-entropy (a NumPy float)."""
    w, b, X, Y = _data(w, b, X, Y)
    m = X.shape[1]
    g, sd, total = Dense(X).gradient(w, b, Y.reshape(-1))
    return {"dw": (g / m).reshape(-1, 1), "db": np.float64(sd / m)}, np.float64(total / m)


def _say(text: str) -> None:
    # The notebook's own lines, on stdout as its print() wrote them; only numbers and fixed
    # words reach here, never a string read from a file.
    print(text)


def _printer(print_cost):
    def on_event(event):
        if print_cost and isinstance(event, Step) and event.cost is not None:
            _say("Cost after iteration %i: %f" % (event.i, event.cost))
    return on_event


def _descend(design, w, b, Y, learning_rate, first, end, on_event, form, gram):
    """catlr's fit from w, b at iteration `first` to `end` (the costs keep the course's grid),
    in the form the planner chose; gram: design.gram(), computed once for both calls."""
    est = LogisticRegression(lr=learning_rate, iters=end, print_every=PRINT_EVERY, form=form,
                             dtype="float64")
    start = Start(w=w, b=b, at=first)
    return est.fit_design(design, Y, on_event, gram, form=form, start=start)


def optimize(w, b, X, Y, num_iterations=100, learning_rate=0.009, print_cost=False):
    """num_iterations steps of gradient descent from the given w (n_x, 1) and b.

    Returns (params {"w": (n_x, 1), "b"}, grads of the last step {"dw", "db"} (taken
    before its update, as the notebook's loop leaves them), costs: the cost before the
    update at every 100th iteration, a list). print_cost prints each as the notebook does.
    The form (primal, or dual with K = X.T X built once) is the planner's, as for catlr's
    own fit: the iterates are the notebook loop's to rounding."""
    w, b, X, Y = _data(w, b, X, Y)
    n = int(num_iterations)
    if n < 0:
        raise CatlrError(f"num_iterations is {num_iterations}, expected 0 or more")
    on_event, costs = _printer(print_cost), []
    design = Dense(X)
    form = choose_form(design.n_x, design.m, n, itemsize=8)
    gram = design.gram() if form == "dual" and n > 0 else None
    if n > 1:  # all but the last step, so the last step's gradient can be returned
        fit = _descend(design, w, b, Y, learning_rate, 0, n - 1, on_event, form, gram)
        w, b, costs = fit.w_.reshape(-1), fit.b_, list(fit.costs_)
    grads, _ = propagate(w, b, X, Y)
    if n > 0:
        fit = _descend(design, w, b, Y, learning_rate, n - 1, n, on_event, form, gram)
        w, b, costs = fit.w_.reshape(-1), fit.b_, costs + list(fit.costs_)
    return {"w": w.reshape(-1, 1), "b": np.float64(b)}, grads, costs


def predict(w, b, X):
    """(1, m) array of 1. where sigmoid(w.T X + b) > 0.5, else 0.: catlr's decision rule."""
    X = np.asarray(X, dtype=np.float64)
    fitted = LogisticRegression.from_weights(np.asarray(w).reshape(-1), b)
    return fitted.predict(X).astype(np.float64)


def model(X_train, Y_train, X_test, Y_test, num_iterations=2000, learning_rate=0.5,
          print_cost=False):
    """The notebook's model(): zeros, optimize, predict on both splits. X (n_x, m), Y (1, m)
    or (m,). Returns the notebook's dict: costs, Y_prediction_test, Y_prediction_train, w,
    b, learning_rate, num_iterations; print_cost prints the costs and both accuracies."""
    w, b = initialize_with_zeros(np.shape(X_train)[0])
    params, _, costs = optimize(w, b, X_train, Y_train, num_iterations, learning_rate,
                                print_cost)
    w, b = params["w"], params["b"]
    Y_prediction_test = predict(w, b, X_test)
    Y_prediction_train = predict(w, b, X_train)
    if print_cost:
        for name, pred, y in (("train", Y_prediction_train, Y_train),
                              ("test", Y_prediction_test, Y_test)):
            _say("{} accuracy: {} %".format(name, 100 - np.mean(np.abs(pred - y)) * 100))
    return {"costs": costs, "Y_prediction_test": Y_prediction_test,
            "Y_prediction_train": Y_prediction_train, "w": w, "b": b,
            "learning_rate": learning_rate, "num_iterations": num_iterations}


def load_dataset(folder="datasets"):
    """The five arrays of the course's lr_utils.load_dataset(): train_set_x_orig (m, 64, 64,
    3) uint8, train_set_y (1, m) int64, test_set_x_orig, test_set_y (1, m_test), classes (2,)
    bytes. `folder`: the course's two .h5 files, or any data catlr trains on (a prepared
    file, a folder of photos), read through the same checked reader as `catlr train`."""
    from .data.datasets import load
    from .stages.prepare import prepare

    with load(folder, dict(DEFAULTS), prepare=prepare) as ds:
        return (np.asarray(ds.x_train), np.asarray(ds.y_train, np.int64).reshape(1, -1),
                np.asarray(ds.x_test), np.asarray(ds.y_test, np.int64).reshape(1, -1),
                np.array([c.encode() for c in ds.classes]))


def save_model(d, path, classes=DEFAULT_CLASSES, train_y=None, test_y=None):
    """Write the dict that model() returned as a catlr model file, for `catlr predict PHOTO
    --model PATH`, `catlr eval` and catlr.load. The image size is read from w: n_x =
    size * size * 3 (the course's flattening); classes: (negative, positive) names.
    train_y, test_y (1, m): the labels, so that the file keeps the accuracies of the dict's
    predictions (`catlr inspect` shows them)."""
    from .runs import modelfile

    w = np.asarray(d["w"], dtype=np.float64).reshape(-1)
    size = math.isqrt(w.size // 3)
    if size * size * 3 != w.size:
        raise CatlrError(f"w has {w.size} weights, not size * size * 3 for square RGB images: "
                         "save_model needs a model trained on the course's flattened images")
    classes = [str(c.decode() if isinstance(c, bytes) else c) for c in classes]
    fitted = LogisticRegression.from_weights(w, d["b"], d.get("costs", ()), form="primal")
    lr, iters = float(d.get("learning_rate", 0.5)), int(d.get("num_iterations", 2000))
    cfg = {**DEFAULTS, "lr": lr, "iters": iters, "print_every": PRINT_EVERY, "form": "primal",
           "dtype": "float64", "size": size}
    meta = {"format": modelfile.FORMAT, "image_size": size, "n_x": w.size, "classes": classes,
            "positive": classes[1], "normalization": NORMALIZATION, "fit": cfg["fit"],
            "lr": lr, "iters": iters, "print_every": PRINT_EVERY, "form": "primal",
            "dtype": "float64", "data": "catlr.course.model", "data_kind": "arrays",
            "catlr_version": __version__, "config": cfg,
            **{f"m_{split}": int(np.shape(d[f"Y_prediction_{split}"])[-1])
               for split in ("train", "test") if f"Y_prediction_{split}" in d}}
    for split, y in (("train", train_y), ("test", test_y)):
        pred = d.get(f"Y_prediction_{split}")
        if y is not None and pred is not None:
            y, pred = np.ravel(y), np.ravel(pred)
            if y.shape != pred.shape:
                raise CatlrError(f"{split}_y holds {y.size} labels but the dict's "
                                 f"Y_prediction_{split} {pred.size} predictions, pass the "
                                 f"labels of the {split} split given to model()")
            meta[f"{split}_accuracy"] = float(np.mean(pred == y))
    modelfile.save(os.fspath(path), fitted, meta)
    return os.fspath(path)

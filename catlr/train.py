"""The train stage: DATA -> a fitted model and its file; and the learning-rate sweep.

The arithmetic of gradient descent lives in descent.py; this module loads the
data, runs it, measures the result and saves it.
"""

from .errors import CatlrError


def fit_dataset(ds, cfg: dict, callback=None, gram=None):
    """Train on a Dataset's train split with a resolved config; returns (model, figures).

    figures: final_cost (after the last update), train_accuracy, test_accuracy
    (None for an empty split), m_train, m_test. `gram`: see descent.fit_pixels.
    """
    from . import datasets
    from .descent import fit_pixels
    from .model import LogisticRegression, check_xy, cost, sigmoid

    model = LogisticRegression(cfg["lr"], cfg["iters"], cfg["print_every"], cfg["form"])
    check_xy(ds.x_train.reshape(len(ds.x_train), -1).T, ds.y_train)
    if len(set(ds.y_train.tolist())) < 2:
        only = ds.classes[int(ds.y_train[0])]
        raise CatlrError(f"the train split of {ds.source} holds only {only} images, add images "
                         f"of the other class ({ds.classes[1 - int(ds.y_train[0])]})")
    model.w, model.b, model.costs, model.form, z = fit_pixels(
        ds.x_train, ds.y_train, cfg["lr"], cfg["iters"], cost_every=cfg["print_every"],
        form=cfg["form"], dtype=cfg["dtype"], callback=callback, gram=gram)
    test_pred = (model.predict(datasets.flatten(ds.x_test, cfg["dtype"])).ravel()
                 if len(ds.y_test) else None)
    figures = {
        "final_cost": cost(z, ds.y_train),
        "train_accuracy": _accuracy(sigmoid(z) > 0.5, ds.y_train),
        "test_accuracy": _accuracy(test_pred, ds.y_test),
        "m_train": int(len(ds.y_train)), "m_test": int(len(ds.y_test)),
    }
    return model, figures


def _load(data, cfg, emit):
    from . import datasets
    from .config import DEFAULTS

    ds = datasets.load(data, cfg, on_event=emit)
    if ds.kind != "folder" and cfg["size"] not in (DEFAULTS["size"], ds.size):
        raise CatlrError(f"{ds.source} holds {ds.size} x {ds.size} images; --size {cfg['size']} "
                         "applies to image folders, run 'catlr prepare' on the images at that size")
    emit("data", {"dataset": ds})
    return ds


def _accuracy(pred, y):
    return float((pred == y).mean()) if len(y) else None


def train(data, cfg: dict, *, on_event=None):
    """The train stage: load DATA, fit, save the model file; returns (model, meta).

    `on_event(name, info)` reports progress: "data" (the loaded dataset),
    "decode" (images done / total, for image folders), "form", "cost" (i, cost).
    """
    from . import modelfile
    from .descent import resolve_form

    emit = on_event or (lambda name, info: None)
    ds = _load(data, cfg, emit)
    m, n_x = len(ds.y_train), ds.n_x
    form = resolve_form(cfg["form"], n_x, m, cfg["iters"])
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
    from .descent import gram_pixels, resolve_form

    emit = on_event or (lambda name, info: None)
    ds = _load(data, cfg, emit)
    form = resolve_form(cfg["form"], ds.n_x, len(ds.y_train), cfg["iters"])
    # K depends on the data alone: computed once, not once per learning rate
    gram = gram_pixels(ds.x_train, cfg["dtype"]) if form == "dual" else None
    rows = []
    for lr in lrs:
        model, figures = fit_dataset(
            ds, {**cfg, "lr": lr, "form": form}, gram=gram, callback=lambda i, c, lr=lr: emit(
                "cost", {"i": i, "cost": c, "iters": cfg["iters"], "lr": lr}))
        rows.append({"lr": lr, "costs": model.costs,
                     "cost_every": cfg["print_every"], **figures})
    return rows

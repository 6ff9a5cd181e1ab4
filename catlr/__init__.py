"""catlr: train the course's cat / non-cat logistic regression on your own images.

Library entry points (the CLI is a thin layer over these):
    catlr.load(path)                        a model file -> a fitted LogisticRegression
    catlr.LogisticRegression                fit / predict_proba / predict on X (n_x, m)
    catlr.Predictor.load(path)              score image files, bytes or pixels as predict does
    catlr.stages.prepare.prepare(src, out, cfg)    image folder -> course-schema .h5
    catlr.stages.train.train(data, cfg)            DATA -> model file
    catlr.stages.evaluate.evaluate(model, data)    figures on a split
    catlr.stages.predict.predict(inputs, model)    probabilities for image files
Nothing heavy is imported here (the names above load on first use), so `import catlr`
and `catlr --help` stay instant.
"""

from .version import __version__  # noqa: F401

_LAZY = {"LogisticRegression": "learn.model", "Predictor": "runs.predictor"}


def load(path):
    """The fitted LogisticRegression in a model file written by catlr (checked as every
    command checks it); its metadata (image size, classes, settings, figures) is `meta_`,
    the threshold its predict() labels at `threshold_` (0.5 unless train chose or was given
    one)."""
    from .runs.modelfile import load as read
    from .runs.modelfile import threshold_of

    model, meta = read(path)
    model.meta_, model.threshold_ = meta, threshold_of(meta)
    return model


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'catlr' has no attribute {name!r}")

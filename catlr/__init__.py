"""catlr: train the course's cat / non-cat logistic regression on your own images.

Library entry points (the CLI is a thin layer over these):
    catlr.prepare.prepare(src, out, cfg)    image folder -> course-schema .h5
    catlr.train.train(data, cfg)            DATA -> model file
    catlr.evaluate.evaluate(model, data)    figures on a split
    catlr.predict.predict(inputs, model)    probabilities for image files
    catlr.model.LogisticRegression          fit / predict_proba / predict on X (n_x, m)
Nothing heavy is imported here, so `import catlr` and `catlr --help` stay instant.
"""

__version__ = "0.2.0"

"""The trainer against the seed's loop: the course's numbers, both forms, the gradient."""

import numpy as np
import pytest
from conftest import needs_course, rel, seed_loop

from catlr.learn.forms import choose_form
from catlr.learn.model import LogisticRegression


def gradient_descent(X, Y, lr, iters, cost_every=100, form="auto"):
    """LogisticRegression.fit, the one training path, as (w, b, costs, form used)."""
    m = LogisticRegression(lr, iters, cost_every, form).fit(X, Y)
    return m.w_, m.b_, m.costs_, m.form_


@needs_course
def test_cli_train_on_course_pair_equals_seed_loop(course_model, course_oracle):
    import catlr.runs.modelfile as mf

    path, out = course_model
    w_ref, b_ref, costs_ref = course_oracle
    model, meta = mf.load(path)
    assert rel(model.w_, w_ref) <= 1e-9
    assert abs(model.b_ - b_ref) <= 1e-9 * abs(b_ref)
    assert len(model.costs_) == 20 and rel(model.costs_, costs_ref) <= 1e-9
    for i, c in enumerate(costs_ref):  # the course prints them to 6 decimals
        assert f"Cost after iteration {i * 100}: {c:f}" in out
    # the course's published figures: 99.04306220095694 % train, 70.0 % test
    assert meta["train_accuracy"] == pytest.approx(207 / 209, abs=1e-12)
    assert meta["test_accuracy"] == pytest.approx(0.70, abs=1e-12)
    assert "train accuracy: 99.04%" in out and "test accuracy: 70.00%" in out
    assert costs_ref[-1] == pytest.approx(0.140872, abs=5e-7)
    assert meta["form"] == "dual"


@needs_course
def test_primal_form_on_course_data(course):
    x, y = course["train"]
    X = x.reshape(len(x), -1).T / 255.0
    Y = y.reshape(1, -1)
    w_ref, b_ref, costs_ref = seed_loop(X, Y, 0.005, 300)
    w, b, costs, form = gradient_descent(X, Y, 0.005, 300, form="primal")
    assert form == "primal"
    assert rel(w, w_ref) <= 1e-9 and abs(b - b_ref) <= 1e-9 * abs(b_ref)
    assert rel(costs, costs_ref) <= 1e-12


@pytest.mark.parametrize("form", ["primal", "dual"])
@pytest.mark.parametrize("n_x,m", [(50, 12), (12, 50), (30, 30)])
def test_forms_equal_seed_loop_on_random_data(form, n_x, m):
    rng = np.random.default_rng(n_x * 100 + m)
    X = rng.random((n_x, m))
    Y = (rng.random((1, m)) > 0.5).astype(float)
    w_ref, b_ref, costs_ref = seed_loop(X, Y, 0.05, 500, every=10)
    w, b, costs, used = gradient_descent(X, Y, 0.05, 500, cost_every=10, form=form)
    assert used == form
    assert rel(w, w_ref) <= 1e-10
    assert abs(b - b_ref) <= 1e-10 * max(abs(b_ref), 1e-12)
    assert rel(costs, costs_ref) <= 1e-12


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_float32_stays_close(form):
    rng = np.random.default_rng(3)
    X = rng.random((40, 20))
    Y = (rng.random((1, 20)) > 0.5).astype(float)
    w_ref, b_ref, _ = seed_loop(X, Y, 0.05, 200)
    w, b, _, _ = gradient_descent(X.astype(np.float32), Y, 0.05, 200, form=form)
    assert w.dtype == np.float64 and rel(w, w_ref) <= 1e-4


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_gradient_matches_finite_differences(form):
    """The step the trainer takes at iteration k is lr times the true gradient at w_k."""
    from catlr.learn.loss import cost

    rng = np.random.default_rng(7)
    X = rng.normal(size=(6, 25))
    Y = (rng.random((1, 25)) > 0.4).astype(float)
    lr, k = 0.1, 30
    w_k, b_k, _, _ = gradient_descent(X, Y, lr, k, form=form)
    w_k1, b_k1, _, _ = gradient_descent(X, Y, lr, k + 1, form=form)
    dw, db = (w_k - w_k1) / lr, (b_k - b_k1) / lr

    def J(w, b):
        return cost(w.T @ X + b, Y)

    h = 1e-6
    num_dw = np.array([(J(w_k + h * e, b_k) - J(w_k - h * e, b_k)) / (2 * h)
                       for e in np.eye(6)[:, :, None]]).reshape(6, 1)
    num_db = (J(w_k, b_k + h) - J(w_k, b_k - h)) / (2 * h)
    assert rel(dw, num_dw) <= 1e-6
    assert db == pytest.approx(num_db, rel=1e-6)


@pytest.mark.parametrize("compiled", [True, False])
def test_form_choice_by_shape(compiled):
    def form(m, iters, n_x=12288, itemsize=4):
        return choose_form(n_x, m, iters, itemsize, compiled)

    assert form(209, 2000) == "dual" and form(2000, 2000) == "dual"
    assert form(20000, 2000) == "primal" and form(5000, 100, n_x=100) == "primal"
    assert form(1000, 500) == "dual" and form(3000, 2000, itemsize=8) == "dual"
    # measured crossovers (bench/train_speed.py --forms, --one-core): on the compiled
    # kernels a float32 primal step costs 0.07 ns a pixel, so that at m = 2000 K pays from
    # about 1,200 iterations, at m = 1000 from about 300; NumPy's path costs 2 ns a pixel
    # on two threads of a shared machine, and K pays wherever it fits
    assert form(2000, 100) == ("primal" if compiled else "dual")
    assert form(3000, 2000) == ("primal" if compiled else "dual")
    assert form(10000, 2000) == ("primal" if compiled else "dual")
    if compiled:
        assert form(10000, 2000, itemsize=8) == "primal" and form(2000, 20) == "primal"


def test_large_learning_rate_gives_finite_costs_without_warnings():
    import warnings

    rng = np.random.default_rng(0)
    X = rng.random((30, 40))
    Y = (rng.random((1, 40)) > 0.5).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w, b, costs, _ = gradient_descent(X, Y, 1000.0, 200, cost_every=10)
    assert np.isfinite(costs).all() and np.isfinite(w).all()


def test_divergence_names_the_iteration():
    from catlr.errors import CatlrError

    rng = np.random.default_rng(0)
    X = rng.random((30, 40))
    Y = (rng.random((1, 40)) > 0.5).astype(float)
    for form in ("primal", "dual"):
        with pytest.raises(CatlrError, match=r"diverged at iteration \d+.*smaller learning rate"):
            gradient_descent(X, Y, 1e308, 50, form=form)


def test_model_object_api():
    from catlr.learn.model import LogisticRegression

    rng = np.random.default_rng(1)
    X = rng.random((20, 30))
    Y = (X[0:1] > 0.5).astype(int)
    model = LogisticRegression(lr=1.0, iters=500).fit(X, Y)
    p = model.predict_proba(X)
    assert p.shape == (1, 30) and ((p > 0) & (p < 1)).all()
    assert model.predict(X).shape == (1, 30)
    assert (model.predict(X) == Y).mean() >= 0.9
    with pytest.raises(Exception, match="expected \\(20, m\\)"):
        model.predict_proba(X[:5])


@needs_course
def test_course_png_copy_trains_to_the_same_weights(course_png_copy, course_oracle, cli, tmp_path):
    import catlr.runs.modelfile as mf

    code, _, err = cli(["train", course_png_copy, "--out", tmp_path / "png.npz"])
    assert code == 0, err
    model, meta = mf.load(tmp_path / "png.npz")
    assert rel(model.w_, course_oracle[0]) <= 1e-9
    assert meta["data_kind"] == "folder" and meta["split"] is None


def test_sweep_computes_k_once_and_matches_single_runs(small_folder, monkeypatch):
    from catlr import config
    from catlr.learn.design import Pixels
    from catlr.stages import train

    calls = []
    real = Pixels.gram
    monkeypatch.setattr(Pixels, "gram", lambda self: calls.append(1) or real(self))
    cfg = config.resolve(None, iters=50)
    rows = train.sweep(small_folder, cfg, [0.1, 0.01, 0.001])
    assert len(calls) == 1
    monkeypatch.setattr(Pixels, "gram", real)
    single, _ = train.fit_dataset(train.load(small_folder, {**cfg, "lr": 0.01}),
                                  {**cfg, "lr": 0.01})
    assert rows[1]["costs"] == pytest.approx(single.costs_, rel=1e-12)

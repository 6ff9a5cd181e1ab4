"""catlr.course: the notebook's functions by its names, checked against the notebook's own
printed examples, the course loop written plainly (conftest.seed_loop), h5py read directly,
and `catlr predict` on a model that catlr.course.model made."""

import ast
import inspect
import json

import numpy as np
import pytest
from conftest import COURSE, needs_course, rel


def test_sigmoid_and_initialize_with_zeros_as_the_notebook():
    from catlr.course import initialize_with_zeros, sigmoid

    out = sigmoid(np.array([0, 2]))
    assert isinstance(out, np.ndarray) and np.allclose(out, [0.5, 0.88079708])
    assert abs(sigmoid(1) - 1 / (1 + np.exp(-1))) <= 1e-15
    assert sigmoid(-800) == 0.0 and sigmoid(800) == 1.0   # no overflow warning either way
    w, b = initialize_with_zeros(3)
    assert type(b) is float and b == 0.0
    assert type(w) is np.ndarray and w.shape == (3, 1) and not w.any()


def test_propagate_gives_the_notebooks_printed_example():
    from catlr.course import propagate

    w, b = np.array([[1.], [2.]]), 2.
    X, Y = np.array([[1., 2., -1.], [3., 4., -3.2]]), np.array([[1, 0, 1]])
    grads, cost = propagate(w, b, X, Y)
    assert type(grads["dw"]) is np.ndarray and grads["dw"].shape == (2, 1)
    assert np.allclose(grads["dw"], [[0.99845601], [2.39507239]], rtol=0, atol=1e-8)
    assert type(grads["db"]) is np.float64
    assert abs(grads["db"] - 0.00145557813678) <= 1e-13
    assert abs(cost - 5.801545319394553) <= 1e-12
    # the formula, written out: mean gradients of the cross-entropy
    A = 1 / (1 + np.exp(-(w.T @ X + b)))
    assert np.allclose(grads["dw"], X @ (A - Y).T / 3, rtol=1e-14)


def test_optimize_starts_from_the_given_w_and_b():
    from catlr.course import optimize

    w, b = np.array([[1.], [2.]]), 2.
    X, Y = np.array([[1., 2., -1.], [3., 4., -3.2]]), np.array([[1, 0, 1]])
    params, grads, costs = optimize(w, b, X, Y, num_iterations=100, learning_rate=0.009)
    # the notebook's printed values
    assert np.allclose(params["w"], [[0.19033591], [0.12259159]], rtol=0, atol=1e-8)
    assert abs(params["b"] - 1.9253598300845747) <= 1e-12
    assert np.allclose(grads["dw"], [[0.67752042], [1.41625495]], rtol=0, atol=1e-8)
    assert abs(grads["db"] - 0.219194504541) <= 1e-11
    assert type(costs) is list and len(costs) == 1 and abs(costs[0] - 5.80154532) <= 1e-8
    assert np.array_equal(w, [[1.], [2.]]) and b == 2.   # the caller's arrays are untouched
    params, grads, costs = optimize(w, b, X, Y, num_iterations=101, learning_rate=0.1)
    assert np.allclose(params["w"], [[-0.70916784], [-0.42390859]], rtol=0, atol=1e-8)
    assert abs(params["b"] - 2.26891346) <= 1e-8
    assert np.allclose(grads["dw"], [[0.06188603], [-0.01407361]], rtol=0, atol=1e-8)
    assert abs(grads["db"] - -0.04709353) <= 1e-8
    assert np.allclose(costs, [5.80154532, 0.31057104], rtol=0, atol=1e-8)


def test_optimize_is_catlrs_fit_with_a_warm_start():
    from catlr import LogisticRegression
    from catlr.course import optimize, propagate

    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(6, 25)), (rng.random((1, 25)) < 0.4).astype(int)
    w0, b0 = rng.normal(size=(6, 1)), 0.3
    params, grads, costs = optimize(w0, b0, X, Y, num_iterations=350, learning_rate=0.05)
    fit = LogisticRegression(lr=0.05, iters=350, form="primal").fit(X, Y, w0=w0, b0=b0)
    assert np.array_equal(params["w"], fit.w_) and params["b"] == fit.b_
    assert costs == fit.costs_ and len(costs) == 4
    before = LogisticRegression(lr=0.05, iters=349, form="primal").fit(X, Y, w0=w0, b0=b0)
    g, _ = propagate(before.w_, before.b_, X, Y)   # the last step's gradient, before its update
    assert np.array_equal(grads["dw"], g["dw"]) and grads["db"] == g["db"]


def test_predict_thresholds_at_a_half_with_the_bias():
    from catlr.course import predict

    w, b = np.array([[0.3], [0.5], [-0.2]]), -0.33333
    X = np.array([[1., -0.3, 1.5], [2, 0, 1], [0, -1.5, 2]])
    pred = predict(w, b, X)
    assert type(pred) is np.ndarray and pred.shape == (1, 3) and pred.dtype == np.float64
    assert pred.tolist() == [[1., 0., 1.]]


def test_model_on_a_small_problem_is_the_plain_loop(capsys):
    from catlr.course import model

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(4, 7)), np.array([[1, 0, 0, 1, 0, 0, 1]])
    Xt, Yt = rng.normal(size=(4, 3)), np.array([0, 1, 0])   # a 1-D Y_test, as the course's test
    d = model(X, Y, Xt, Yt, num_iterations=250, learning_rate=0.01, print_cost=True)
    from conftest import seed_loop

    w, b, costs = seed_loop(X, Y, 0.01, 250)
    assert set(d) == {"costs", "Y_prediction_test", "Y_prediction_train", "w", "b",
                      "learning_rate", "num_iterations"}
    assert rel(d["w"], w) <= 1e-13 and abs(d["b"] - b) <= 1e-13 and rel(d["costs"], costs) <= 1e-13
    assert d["Y_prediction_test"].shape == (1, 3) and d["Y_prediction_train"].shape == (1, 7)
    assert d["learning_rate"] == 0.01 and d["num_iterations"] == 250
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [f"Cost after iteration {i}: {c:f}" for i, c in zip((0, 100, 200), costs)]
    train = 100 - np.mean(np.abs(d["Y_prediction_train"] - Y)) * 100
    assert lines[3:] == [f"train accuracy: {train} %",
                         f"test accuracy: {100 - np.mean(np.abs(d['Y_prediction_test'] - Yt)) * 100} %"]


@needs_course
def test_load_dataset_is_lr_utils(tmp_path):
    import h5py

    from catlr.course import load_dataset

    got = load_dataset(COURSE)
    with h5py.File(COURSE / "train_catvnoncat.h5") as tr, h5py.File(COURSE / "test_catvnoncat.h5") as te:
        want = (tr["train_set_x"][:], tr["train_set_y"][:].reshape(1, -1), te["test_set_x"][:],
                te["test_set_y"][:].reshape(1, -1), te["list_classes"][:])
    for a, b in zip(got, want):
        assert type(a) is np.ndarray and a.shape == b.shape and a.dtype == b.dtype
        assert np.array_equal(a, b)
    assert got[4].tolist() == [b"non-cat", b"cat"]


@needs_course
def test_model_on_the_course_data_gives_the_notebooks_numbers(capsys, course_oracle, tmp_path,
                                                             cli, course):
    from catlr.course import load_dataset, model, save_model

    tx, ty, vx, vy, classes = load_dataset(COURSE)
    X, Xt = tx.reshape(tx.shape[0], -1).T / 255, vx.reshape(vx.shape[0], -1).T / 255
    d = model(X, ty, Xt, vy, num_iterations=2000, learning_rate=0.005, print_cost=True)
    out = capsys.readouterr().out.splitlines()
    assert out[-3] == "Cost after iteration 1900: 0.140872"
    assert out[-2:] == ["train accuracy: 99.04306220095694 %", "test accuracy: 70.0 %"]
    w, b, costs = course_oracle
    assert rel(d["w"], w) <= 1e-12 and abs(d["b"] - b) <= 1e-12 * abs(b)
    assert rel(d["costs"], costs) <= 1e-12

    # saved as a catlr model file, it predicts through the CLI as any catlr model
    from PIL import Image

    path = save_model(d, tmp_path / "course.npz", classes)
    picture = tmp_path / "t7.png"
    Image.fromarray(vx[7]).save(picture)   # lossless: the same pixels as column 7
    code, text, err = cli(["predict", picture, "--model", path, "--json"])
    assert code == 0, err
    row = json.loads(text)[0]
    p = float((1 / (1 + np.exp(-(d["w"].T @ Xt[:, 7:8] + d["b"]))))[0, 0])
    assert abs(row["probability"] - p) <= 1e-12
    assert row["label"] == ("cat" if d["Y_prediction_test"][0, 7] else "non-cat")
    code, text, err = cli(["eval", COURSE, "--model", path, "--json"])
    assert code == 0, err
    assert json.loads(text)["accuracy"] == pytest.approx(0.70)
    code, text, err = cli(["inspect", path])
    assert "the arrays given to catlr.course.model" in text


def test_save_model_refuses_weights_that_are_not_square_images(tmp_path):
    from catlr.course import save_model
    from catlr.errors import CatlrError

    with pytest.raises(CatlrError, match="w has 10 weights, not size \\* size \\* 3"):
        save_model({"w": np.zeros((10, 1)), "b": 0.0}, tmp_path / "m.npz")


def test_the_course_functions_hold_no_math_of_their_own():
    """Each is a thin call into catlr: no exp, log, matrix product or update in course.py."""
    import catlr.course as course

    tree = ast.parse(inspect.getsource(course))
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"exp", "log", "log1p", "logaddexp", "dot", "matmul", "tanh"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.BinOp)
                and isinstance(n.op, ast.MatMult)]
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.AugAssign)]


def _notebook_optimize(w, b, X, Y, lr, n):
    """The notebook's optimize(), as it writes it: from w, b; the cost every 100 steps and
    the last step's gradients, taken before its update."""
    m, costs = X.shape[1], []
    for i in range(n):
        A = 1 / (1 + np.exp(-(w.T @ X + b)))
        cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
        dw, db = X @ (A - Y).T / m, np.sum(A - Y) / m
        w, b = w - lr * dw, b - lr * db
        if i % 100 == 0:
            costs.append(cost)
    return w, b, dw, db, costs


def test_the_course_functions_run_the_planners_form_with_the_notebooks_numbers(monkeypatch,
                                                                              capsys):
    """Where K = X.T X is the cheaper (m < n_x, the course's own shape), optimize and model
    run catlr's dual form, K built once for both of optimize's calls, and still give the
    notebook's loop: weights, gradients and costs to 1e-12, the same printed lines."""
    from catlr import course
    from catlr.learn.design import Dense
    from catlr.learn.forms import choose_form
    from catlr.learn.model import LogisticRegression

    rng = np.random.default_rng(5)
    X = rng.random((2000, 80))
    Y = (X[:7].mean(axis=0) + rng.normal(0, 0.1, 80) > 0.5).astype(int).reshape(1, -1)
    assert choose_form(2000, 80, 301, itemsize=8) == "dual"
    forms, grams = [], []
    fit_design, gram = LogisticRegression.fit_design, Dense.gram
    monkeypatch.setattr(LogisticRegression, "fit_design",
                        lambda self, *a, **k: forms.append(k["form"]) or fit_design(self, *a, **k))
    monkeypatch.setattr(Dense, "gram", lambda self: grams.append(1) or gram(self))
    for w0, b0 in ((np.zeros((2000, 1)), 0.0), (rng.normal(size=(2000, 1)) / 50, 0.3)):
        forms.clear(), grams.clear()
        params, grads, costs = course.optimize(w0, b0, X, Y, num_iterations=301,
                                               learning_rate=0.05)
        assert forms == ["dual", "dual"] and grams == [1]
        w, b, dw, db, want = _notebook_optimize(w0, b0, X, Y, 0.05, 301)
        assert rel(params["w"], w) <= 1e-12 and abs(params["b"] - b) <= 1e-12 * max(abs(b), 1)
        assert rel(grads["dw"], dw) <= 1e-12 and abs(grads["db"] - db) <= 1e-12
        assert len(costs) == 4 and rel(costs, want) <= 1e-12
    d = course.model(X, Y, X[:, :20], Y[:, :20], num_iterations=301, learning_rate=0.05,
                     print_cost=True)
    lines = capsys.readouterr().out.splitlines()
    want = _notebook_optimize(np.zeros((2000, 1)), 0.0, X, Y, 0.05, 301)[4]
    assert lines[:4] == [f"Cost after iteration {i}: {c:f}" for i, c in zip(range(0, 301, 100),
                                                                            want)]
    assert rel(d["costs"], want) <= 1e-12

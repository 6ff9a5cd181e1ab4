"""Honest evaluation (issue 18): a validation split, both curves, early stopping, choices on
validation, intervals, L2 and class weights. Each figure against an oracle: the course's
loop written plainly, scikit-learn, scipy or a plain formula."""

import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import COURSE, joined, needs_course, rel


def _one_line(err):
    return err.startswith("Error: ") and err.count("\n") == 1 and "unexpected" not in err


def _course_X():
    with h5py.File(COURSE / "train_catvnoncat.h5") as f:
        x, y = f["train_set_x"][()], f["train_set_y"][()]
    return x.reshape(len(x), -1).T / 255.0, y.astype(np.float64)


def course_loop_with_history(X, Y, lr, iters, every):
    """The course's loop as the notebook writes it, keeping (w, b) at each recorded
    iteration (before its update): the oracle of the held-out curve."""
    n_x, m = X.shape
    w, b, history = np.zeros((n_x, 1)), 0.0, []
    for i in range(iters):
        if i % every == 0:
            history.append((w.copy(), b))
        A = 1 / (1 + np.exp(-(w.T @ X + b)))
        w = w - lr * (X @ (A - Y).T / m)
        b = b - lr * np.sum(A - Y) / m
    return w, b, history


def cross_entropy(w, b, X, y):
    A = 1 / (1 + np.exp(-(w.T @ X + b)))
    return float(-np.mean(y * np.log(A) + (1 - y) * np.log(1 - A)))


# ---- 1 and 2: the validation split and its curve

@needs_course
@pytest.mark.parametrize("form", ["dual", "primal"])
def test_the_validation_curve_is_the_course_loop_on_the_held_out_columns(cli, tmp_path, form):
    code, out, err = cli(["train", COURSE, "--val-fraction", "0.2", "--iters", "300",
                          "--print-every", "50", "--form", form, "--dtype", "float64",
                          "--out", tmp_path / "m.npz", "--json"])
    assert code == 0, err
    meta = json.loads(out)
    held = np.array(meta["validation"]["indices"])
    assert meta["held"] == "validation" and meta["m_val"] == len(held) == 41
    assert meta["m_train"] == 209 - 41
    X, y = _course_X()
    keep = np.setdiff1d(np.arange(209), held)
    assert np.isin(y[held], (0, 1)).all() and abs(y[held].mean() - y.mean()) < 0.03  # stratified
    w, b, history = course_loop_with_history(X[:, keep], y[keep].reshape(1, -1), 0.005, 300, 50)
    expected = [cross_entropy(hw, hb, X[:, held], y[held]) for hw, hb in history]
    assert np.allclose(meta["held_costs"], expected, rtol=1e-9, atol=0)
    best = int(np.argmin(expected))
    assert meta["best_iteration"] == best * 50 and meta["best_cost"] == pytest.approx(expected[best])
    from catlr.runs.modelfile import load

    model, _ = load(tmp_path / "m.npz")
    assert rel(model.w_, w) <= 1e-9  # trained on the other columns only


def test_the_split_is_seeded_stratified_and_by_file_for_a_folder(cli, small_folder):
    runs = []
    for _ in range(2):
        code, out, err = cli(["train", small_folder, "--val-fraction", "0.25", "--iters", "5",
                              "--json"])
        assert code == 0, err
        runs.append(json.loads(out))
    a, b = (r["validation"] for r in runs)
    assert a == b and a["seed"] == 1 and a["fraction"] == 0.25
    assert len(a["paths"]) == 4 and sum(p.startswith("cat/") for p in a["paths"]) == 2
    assert all(p.startswith(("cat/", "non-cat/")) for p in a["paths"])


def test_validation_images_that_repeat_a_training_image_are_reported(cli, small_folder):
    for p in list((small_folder / "cat").glob("*")):
        shutil.copy(p, p.with_name("copy-" + p.name))
    code, out, err = cli(["train", small_folder, "--val-fraction", "0.5", "--iters", "5"])
    assert code == 0, err
    assert "validation images repeat a training image" in out


def test_both_curves_are_in_costs_csv_metrics_and_the_plot(cli, small_folder):
    code, out, err = cli(["train", small_folder, "--val-fraction", "0.25", "--iters", "200",
                          "--plot", "c.png"])
    assert code == 0, err
    rows = list(csv.reader(open("runs/train-1/costs.csv")))
    assert rows[0] == ["iteration", "cost", "validation_cost"] and len(rows) == 1 + 2 + 1
    assert all(r[2] for r in rows[1:])
    metrics = json.loads(Path("runs/train-1/metrics.json").read_text())
    assert metrics["held"] == "validation" and metrics["best_iteration"] in (0, 100)
    from PIL import Image

    with Image.open("c.png") as im:
        assert im.size[0] > 300
    # without a validation split, the curve is the test split's, and named so
    code, out, err = cli(["train", small_folder, "--iters", "200", "--name", "t"])
    assert code == 0, err
    assert list(csv.reader(open("runs/t/costs.csv")))[0] == ["iteration", "cost", "test_cost"]


def test_early_stopping_keeps_the_best_weights(cli, small_folder, tmp_path):
    code, out, err = cli(["train", small_folder, "--val-fraction", "0.25", "--iters", "4000",
                          "--print-every", "20", "--lr", "0.001", "--early-stop", "5",
                          "--out", tmp_path / "e.npz", "--json"])
    assert code == 0, err
    meta = json.loads(out)
    best, stopped = meta["best_iteration"], meta["stopped_at"]
    assert best > 0 and stopped is not None and stopped == best + 5 * 20
    assert meta["held_costs"][best // 20] == min(meta["held_costs"])
    # the kept weights are those after `best` updates: a run of exactly that many
    code, out, err = cli(["train", small_folder, "--val-fraction", "0.25", "--iters", str(best),
                          "--print-every", "20", "--lr", "0.001", "--out", tmp_path / "b.npz"])
    assert code == 0, err
    from catlr.runs.modelfile import load

    assert np.array_equal(load(tmp_path / "e.npz")[0].w_, load(tmp_path / "b.npz")[0].w_)
    code, out, _ = cli(["inspect", tmp_path / "e.npz", "--json"])
    assert code == 0 and json.loads(out)["stopped_at"] == stopped


def test_choices_on_validation_need_a_validation_split(cli, small_folder):
    for args in (["train", small_folder, "--early-stop", "3"],
                 ["train", small_folder, "--lr", "auto"]):
        code, out, err = cli(args)
        assert code == 2 and _one_line(err) and "--val-fraction 0.2" in err and out == ""


# ---- 3: choices on validation, never on test

def test_a_sweep_on_validation_names_the_best_and_shows_test_once(cli, small_folder):
    code, out, err = cli(["sweep", small_folder, "--val-fraction", "0.25", "--lr", "0.5",
                          "--lr", "0.05", "--lr", "0.005", "--iters", "200", "--json"])
    assert code == 0, err
    rows = json.loads(out)
    best = [r for r in rows if r["best"]]
    assert len(best) == 1
    fine = [r for r in rows if not r["cost_rose"]]
    assert best[0]["val_cost"] == min(r["val_cost"] for r in fine)
    assert best[0]["test_accuracy"] is not None
    assert all(r["test_accuracy"] is None for r in rows if not r["best"])
    code, out, err = cli(["sweep", small_folder, "--val-fraction", "0.25", "--lr", "0.05",
                          "--lr", "0.005", "--iters", "200"])
    out = joined(out)
    assert code == 0 and "Best on validation: lr" in out and "its test accuracy, once" in out
    code, out, err = cli(["sweep", small_folder, "--val-fraction", "0.25", "--lr", "0.05",
                          "--lr", "0.005", "--l2", "0", "--l2", "5", "--iters", "50"])
    table = [x for x in out.splitlines()  # its rows, not a message's wrapped lines
             if x.startswith("learning rate") or x.strip()[:1].isdigit()]
    assert code == 0 and len(table) == 5 and "l2" in table[0] and max(map(len, table)) <= 80, out
    code, out, err = cli(["sweep", small_folder, "--iters", "50"])
    assert code == 0 and "fits the choice to the test set" in out and "--val-fraction" in out


def test_a_sweep_over_penalties_is_the_same_machinery(cli, small_folder):
    code, out, err = cli(["sweep", small_folder, "--val-fraction", "0.25", "--lr", "0.05",
                          "--l2", "0", "--l2", "0.1", "--l2", "1", "--iters", "100", "--json"])
    assert code == 0, err
    rows = json.loads(out)
    assert [r["l2"] for r in rows] == [0.0, 0.1, 1.0] and sum(r["best"] for r in rows) == 1
    code, out, err = cli(["sweep", small_folder, "--val-fraction", "0.25", "--lr", "0.05",
                          "--l2", "0", "--l2", "1", "--iters", "100"])
    assert code == 0 and "l2" in out.splitlines()[1]


def test_lr_auto_picks_the_lowest_validation_cost_among_rates_that_did_not_rise(cli,
                                                                                small_folder):
    code, out, err = cli(["train", small_folder, "--lr", "auto", "--val-fraction", "0.25",
                          "--iters", "150", "--json"])
    assert code == 0, err
    meta = json.loads(out)
    tried = meta["lr_auto"]
    from catlr.stages.train import AUTO_LRS

    assert [t["lr"] for t in tried] == list(AUTO_LRS)
    fine = [t for t in tried if not t["cost_rose"]]
    pick = min(fine, key=lambda t: t["val_cost"])
    assert meta["lr"] == pick["lr"] == meta["config"]["lr"]
    code, out, err = cli(["train", small_folder, "--lr", "auto", "--val-fraction", "0.25",
                          "--iters", "150"])
    assert code == 0 and f"--lr auto chose lr {pick['lr']:g}" in out


# ---- 4: intervals

@pytest.mark.parametrize("k,n", [(35, 50), (0, 10), (10, 10), (207, 209), (1, 3), (50, 1000)])
def test_wilson_intervals_equal_scipys(k, n):
    from scipy.stats import binomtest

    from catlr.learn.metrics import wilson

    low, high = wilson(k, n)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx(ci.low, abs=1e-12) and high == pytest.approx(ci.high, abs=1e-12)


def test_a_wilson_interval_holds_its_proportion_exactly():
    """0 of n and n of n too: rounding put the top of 13 of 13 at 1 - 1e-16, below 13 / 13,
    and the reliability diagram's error bar went negative ('yerr' must not contain
    negative values: eval --plot failed on the demo's sample)."""
    from catlr.learn.metrics import wilson

    for n in range(1, 400):
        for k in range(n + 1):
            low, high = wilson(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0, (k, n, low, high)
        assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_delongs_auc_interval_equals_the_formula_written_out(seed):
    """DeLong's variance from its definition (structural components over every pair): O(mn)."""
    from catlr.learn.metrics import Z95, auc_interval, roc_auc

    rng = np.random.default_rng(seed)
    y = rng.random(60) < 0.4
    p = np.round(rng.random(60) * (1 + y), 1)  # ties on purpose
    pos, neg = p[y], p[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    sd = np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))
    low, high = auc_interval(y, p)
    assert roc_auc(y, p) == pytest.approx(auc, abs=1e-12)
    assert low == pytest.approx(max(auc - Z95 * sd, 0), abs=1e-12)
    assert high == pytest.approx(min(auc + Z95 * sd, 1), abs=1e-12)


@needs_course
def test_every_accuracy_comes_with_its_interval_and_n(cli):
    code, out, err = cli(["train", COURSE])
    assert code == 0, err
    assert "test accuracy: 70.00% (95% CI 56.2%-80.9%, n = 50)" in out
    code, out, err = cli(["eval", "--json"])
    f = json.loads(out)
    assert f["accuracy_ci"] == pytest.approx([0.5625, 0.8090], abs=1e-4)
    assert f["n"] == {"accuracy": 50, "precision": f["tp"] + f["fp"],
                      "recall": f["tp"] + f["fn"]} and len(f["roc_auc_ci"]) == 2
    code, out, _ = cli(["eval"])
    assert "56.25%-80.90%" in out
    code, out, _ = cli(["runs"])
    assert "70.00% (50)" in out  # the n beside the figure


# ---- 5: L2 and class weights against scikit-learn

@pytest.mark.slow
@needs_course
def test_l2_at_convergence_is_scikit_learns_optimum_on_the_course_data(cli, tmp_path):
    """Fixed-step descent converges slowly here: the unpenalized bias and the images' mean
    brightness are nearly the same direction (measured: after 200,000 steps of lr 0.002 the
    weights are within 2.2e-3 of scikit-learn's, the cost within 1.6e-6). The tolerance
    stated is what that many steps reach."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    lam = 100.0
    code, out, err = cli(["train", COURSE, "--l2", str(lam), "--lr", "0.002", "--iters",
                          "200000", "--print-every", "10000", "--out", tmp_path / "m.npz",
                          "--json"])
    assert code == 0, err
    meta = json.loads(out)
    assert meta["l2"] == lam and meta["form"] == "dual"
    X, y = _course_X()
    sk = sklearn.LogisticRegression(C=1 / lam, tol=1e-14, max_iter=100_000).fit(X.T, y)
    from catlr.runs.modelfile import load

    model, _ = load(tmp_path / "m.npz")

    def J(w, b):  # course 2's cost
        z = w @ X + b
        return np.mean(np.logaddexp(0, z) - y * z) + lam / (2 * 209) * w @ w

    assert rel(model.w_.ravel(), sk.coef_.ravel()) <= 3e-3
    assert 0 <= J(model.w_.ravel(), model.b_) - J(sk.coef_.ravel(), sk.intercept_[0]) <= 3e-6
    assert meta["final_cost"] == pytest.approx(J(model.w_.ravel(), model.b_), rel=1e-12)


@needs_course
def test_l2_zero_is_todays_run_bit_for_bit(cli, tmp_path):
    from catlr.runs.modelfile import load

    for args, name in (([], "a"), (["--l2", "0", "--class-weight", "none"], "b")):
        code, _, err = cli(["train", COURSE, *args, "--out", tmp_path / f"{name}.npz"])
        assert code == 0, err
    a, b = load(tmp_path / "a.npz")[0], load(tmp_path / "b.npz")[0]
    assert np.array_equal(a.w_, b.w_) and a.b_ == b.b_ and a.costs_ == b.costs_


@pytest.mark.parametrize("weights", ["balanced", "1:3"])
def test_class_weights_reach_scikit_learns_optimum(cli, tmp_path, weights):
    sklearn = pytest.importorskip("sklearn.linear_model")
    from catlr.stages.demo import make_sample

    folder = make_sample(tmp_path / "s", n_per_class=12, unseen=0)["images"]
    # unbalanced on purpose: drop half the cats
    for p in sorted(Path(folder, "cat").glob("*"))[::2]:
        p.unlink()
    code, out, err = cli(["train", folder, "--size", "8", "--l2", "1", "--class-weight",
                          weights, "--lr", "0.1", "--iters", "150000", "--print-every", "50000",
                          "--out", tmp_path / "m.npz", "--json"])
    assert code == 0, err
    from catlr.data.datasets import load as load_data
    from catlr.runs.modelfile import load

    ds = load_data(folder, {**json.loads(out)["config"], "size": 8})
    X = ds.x_train.reshape(len(ds.y_train), -1) / 255.0
    cw = "balanced" if weights == "balanced" else {0: 1.0, 1: 3.0}
    sk = sklearn.LogisticRegression(C=1.0, class_weight=cw, tol=1e-12, max_iter=100_000).fit(
        X, ds.y_train)
    model, meta = load(tmp_path / "m.npz")
    assert meta["class_weight"] == weights
    assert rel(model.w_.ravel(), sk.coef_.ravel()) <= 1e-6  # scikit-learn's own tolerance
    assert model.b_ == pytest.approx(sk.intercept_[0], abs=3e-6)


def test_penalties_and_weights_are_recorded_and_shown(cli, small_folder):
    code, _, err = cli(["train", small_folder, "--iters", "20", "--l2", "0.5",
                        "--class-weight", "balanced"])
    assert code == 0, err
    code, out, _ = cli(["runs"])
    assert "l2 0.5" in out and "weights balanced" in out
    code, out, _ = cli(["inspect", "--json"])
    meta = json.loads(out)
    assert meta["l2"] == 0.5 and meta["class_weight"] == "balanced"
    code, _, err = cli(["train", small_folder, "--class-weight", "heavy"])
    assert code == 2 and _one_line(err) and "NEG:POS such as 1:3" in err


# ---- prepare --val-fraction: stored, and the course's load_dataset() still reads the file

def test_a_stored_validation_split_leaves_the_course_reader_unchanged(cli, small_folder):
    code, out, err = cli(["prepare", small_folder, "--val-fraction", "0.25", "--json"])
    assert code == 0, err
    counts = json.loads(out)["counts"]
    assert sum(counts["val"].values()) == 4 and sum(counts["train"].values()) == 8

    def load_dataset(path):  # the course's lr_utils.load_dataset, pointed at one file
        with h5py.File(path, "r") as f:
            train_x, train_y = np.array(f["train_set_x"][:]), np.array(f["train_set_y"][:])
            test_x, test_y = np.array(f["test_set_x"][:]), np.array(f["test_set_y"][:])
            classes = np.array(f["list_classes"][:])
        return (train_x, train_y.reshape((1, -1)), test_x, test_y.reshape((1, -1)), classes)

    train_x, train_y, test_x, test_y, classes = load_dataset("data/prepared.h5")
    assert train_x.shape == (8, 64, 64, 3) and test_y.shape == (1, 4) and len(classes) == 2
    code, out, err = cli(["train", "data/prepared.h5", "--iters", "20", "--early-stop", "3"])
    assert code == 0 and "Validation: 4 images (stored in the file)" in out, err
    code, _, err = cli(["train", "data/prepared.h5", "--val-fraction", "0.2"])
    assert code == 2 and "holds its own validation split" in err

"""Beyond one accuracy figure (issue 31): the threshold chosen on validation and used by
every command, calibration, the classes' shares, and whether more data would help. Each
figure against its oracle: scikit-learn's precision_recall_curve, f1_score,
TunedThresholdClassifierCV, brier_score_loss and calibration_curve; scipy's bootstrap and
chi-squared test; the course's own loop for every training of the learning curve."""

import json
import math
import statistics

import numpy as np
import pytest
from conftest import COURSE, needs_course, remeta, run_cli
from PIL import Image

from catlr.learn import metrics


def _ok(args):
    code, out, err = run_cli(args)
    assert code == 0, err
    return out, err


def _json(args):
    return json.loads(_ok([*args, "--json"])[0])


def _scores(seed=3, m=80, digits=3):
    """Labels and probabilities with ties (rounded), drawn so that p means something."""
    rng = np.random.default_rng(seed)
    p = np.round(rng.random(m), digits)
    return (rng.random(m) < p).astype(np.int64), p


# ---------------------------------------------------------------- 1. the threshold

@pytest.mark.parametrize("seed", [0, 3, 7])
def test_every_cut_is_scikit_learns_precision_recall_curve(seed):
    from sklearn.metrics import precision_recall_curve

    from catlr.learn.loss import labels

    y, p = _scores(seed)
    c = metrics.pr_curve(y, p)
    precision, recall, thresholds = precision_recall_curve(y, p)
    # scikit-learn: ascending thresholds, p >= t; catlr: the same cuts from the top
    assert np.allclose(c["precision"], precision[:-1][::-1], rtol=0, atol=1e-15)
    assert np.allclose(c["recall"], recall[:-1][::-1], rtol=0, atol=1e-15)
    for j, t in enumerate(c["threshold"]):  # catlr's rule at each threshold makes that cut
        k = labels(p, t)
        assert (k & y).sum() == c["tp"][j] and (k & (1 - y)).sum() == c["fp"][j]
        assert np.array_equal(k, (p >= thresholds[::-1][j]).astype(int))


def test_the_midpoint_of_adjacent_floats_still_makes_its_cut():
    a = 0.7
    b = np.nextafter(a, 1)
    c = metrics.pr_curve([0, 1, 1], [a, b, 0.2])
    from catlr.learn.loss import labels

    assert labels([b], c["threshold"][0])[0] == 1 and labels([a], c["threshold"][0])[0] == 0
    # the last cut's threshold is half its probability; a cut of all when one is 0.0, none
    assert metrics.pr_curve([1, 0], [0.4, 0.2])["threshold"].tolist() == [0.30000000000000004, 0.1]
    c = metrics.pr_curve([1, 0, 1], [0.0, 0.0, 0.3])
    assert c["threshold"].tolist() == [0.15] and c["tp"].tolist() == [1]
    assert metrics.choose_threshold([1, 0], [0.0, 0.0])["threshold"] == 0.5


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_auto_picks_the_best_f1_as_tuned_threshold_classifier_does(seed):
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.frozen import FrozenEstimator
    from sklearn.metrics import f1_score
    from sklearn.model_selection import TunedThresholdClassifierCV

    from catlr.learn.loss import labels

    class Given(ClassifierMixin, BaseEstimator):  # a classifier whose probabilities are p
        def fit(self, X, y):
            self.classes_ = np.array([0, 1])
            return self

        def predict_proba(self, X):
            return np.c_[1 - X[:, 0], X[:, 0]]

    y, p = _scores(seed)
    chosen = metrics.choose_threshold(y, p)
    assert chosen["f1"] == pytest.approx(f1_score(y, labels(p, chosen["threshold"])), abs=1e-15)
    everywhere = np.arange(len(y))  # tuned and scored on the same examples: a validation split
    tuned = TunedThresholdClassifierCV(FrozenEstimator(Given().fit(p[:, None], y)), scoring="f1",
                                       cv=[(everywhere, everywhere)], refit=False,
                                       thresholds=np.sort(metrics.pr_curve(y, p)["threshold"]))
    tuned.fit(p[:, None], y)
    assert tuned.best_score_ == pytest.approx(chosen["f1"], abs=1e-15)
    assert f1_score(y, labels(p, tuned.best_threshold_)) == pytest.approx(chosen["f1"])
    # scikit-learn's own grid of 100 thresholds can only do as well or worse
    grid = TunedThresholdClassifierCV(FrozenEstimator(Given().fit(p[:, None], y)), scoring="f1",
                                      cv=[(everywhere, everywhere)], refit=False).fit(p[:, None], y)
    assert grid.best_score_ <= chosen["f1"] + 1e-15


@pytest.mark.parametrize("target", ["precision=0.8", "recall=0.9", "precision=1"])
def test_a_target_takes_the_best_cut_that_meets_it(target):
    from sklearn.metrics import precision_recall_curve

    y, p = _scores(5, m=120)
    name, goal = target.split("=")
    goal = float(goal)
    precision, recall, _ = precision_recall_curve(y, p)
    mine, other = (precision, recall) if name == "precision" else (recall, precision)
    ok = mine[:-1] >= goal  # scikit-learn's last point is no threshold
    chosen = metrics.choose_threshold(y, p, target)
    assert chosen["met"] is bool(ok.any())
    if ok.any():
        assert chosen[name] >= goal
        assert chosen["recall" if name == "precision" else "precision"] == pytest.approx(
            other[:-1][ok].max(), abs=1e-15)
    else:
        assert chosen[name] == pytest.approx(mine[:-1].max())


def test_a_target_no_cut_meets_says_so():
    chosen = metrics.choose_threshold([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.2], "precision=0.9")
    assert chosen["met"] is True and chosen["precision"] == 1.0  # the top image alone
    chosen = metrics.choose_threshold([0, 1, 0, 1], [0.9, 0.8, 0.3, 0.2], "precision=0.9")
    assert chosen["met"] is False and chosen["precision"] == pytest.approx(0.5)


@pytest.mark.parametrize("args,says", [
    (["--threshold", "auto"], "--threshold auto chooses on a validation split"),
    (["--target", "precision=0.9"], "--target precision=0.9 is what --threshold auto aims for"),
    (["--threshold", "1.5"], "--threshold must be a probability from 0 to 1"),
    (["--threshold", "abc"], "--threshold must be a number or auto"),
    (["--threshold", "auto", "--val-fraction", "0.2", "--target", "precision=2"],
     "--target must be f1, precision=X or recall=X"),
    (["--threshold", "auto", "--val-fraction", "0.2", "--target", "accuracy"],
     "--target must be f1"),
])
def test_threshold_flags_that_cannot_work_are_one_line(args, says, small_folder):
    code, out, err = run_cli(["train", small_folder, "--iters", "5", *args])
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not out


def test_a_config_file_takes_them_too(small_folder, tmp_path):
    (tmp_path / "c.toml").write_text('threshold = "auto"\nval_fraction = 0.25\n'
                                     'target = "recall=0.5"\n')
    code, _, err = run_cli(["train", small_folder, "--iters", "5", "--config", tmp_path / "c.toml",
                            "--out", tmp_path / "m.npz"])
    assert code == 0, err
    meta = _json(["inspect", tmp_path / "m.npz"])
    assert meta["threshold_choice"]["target"] == "recall=0.5"
    assert meta["config"]["threshold"] == "auto"


@pytest.fixture(scope="session")
def hand_model(course, tmp_path_factory):
    """The course's settings at 300 iterations, and the same run with --threshold X, X
    picked so that some test images' labels differ at X and at 0.5. Returns (path, X, p on
    the test split)."""
    from catlr import Predictor

    folder = tmp_path_factory.mktemp("hand")
    base = folder / "base.npz"
    _ok(["train", COURSE, "--iters", "300", "--out", base])
    p = Predictor.load(base).proba(course["test"][0])
    above = np.sort(p[p > 0.5])
    x = float((above[len(above) // 2 - 1] + above[len(above) // 2]) / 2)
    model = folder / "hand.npz"
    _ok(["train", COURSE, "--iters", "300", "--threshold", repr(x), "--out", model])
    again = Predictor.load(model).proba(course["test"][0])
    assert np.array_equal(again, p)  # the same run: only its threshold differs
    assert ((p > 0.5) != (p > x)).sum() >= 2
    return model, x, p


@needs_course
def test_train_stores_the_threshold_and_its_figures_use_it(hand_model, course):
    model, x, p = hand_model
    meta = _json(["inspect", model])
    y = course["test"][1]
    assert meta["threshold"] == x and "threshold_choice" not in meta
    assert meta["test_accuracy"] == pytest.approx(((p > x) == y).mean(), abs=1e-15)
    out, _ = _ok(["inspect", model])
    assert f"threshold          {x:g}, given to train (--threshold)" in out


@needs_course
def test_eval_labels_at_the_models_threshold_unless_given_one(hand_model, course):
    model, x, p = hand_model
    y = course["test"][1]
    f = _json(["eval", "--model", model])
    assert f["threshold"] == x and f["threshold_from"] == "model"
    assert f["accuracy"] == pytest.approx(((p > x) == y).mean(), abs=1e-15)
    assert f["tp"] == int(((p > x) & (y == 1)).sum())
    g = _json(["eval", "--model", model, "--threshold", "0.5"])
    assert g["threshold"] == 0.5 and g["threshold_from"] == "given"
    assert g["accuracy"] == pytest.approx(((p > 0.5) == y).mean(), abs=1e-15)
    assert f["accuracy"] != g["accuracy"] or f["tp"] != g["tp"]
    out, _ = _ok(["eval", "--model", model])
    assert f"Confusion matrix (threshold {x:g})" in out


@needs_course
def test_predict_serve_and_the_onnx_graph_label_at_the_stored_threshold(hand_model, course,
                                                                        course_png_copy,
                                                                        tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort
    from test_serve import ask, form, running

    from catlr import Predictor

    model, x, _ = hand_model
    rows = _json(["predict", course_png_copy / "test", "--model", model])
    predictor = Predictor.load(model)
    assert predictor.threshold == x and not predictor.given
    p = np.array([r["probability"] for r in rows])
    assert [r["label"] for r in rows] == [("non-cat", "cat")[int(v > x)] for v in p]
    assert any((v > 0.5) != (v > x) for v in p)  # 0.5 would have said otherwise
    # serve: the rows predict prints, at the same threshold, and /health says it
    files = [(r["path"].rsplit("/", 1)[1], open(r["path"], "rb").read()) for r in rows[:12]]
    with running(model, threshold=None) as (url, _):
        status, _, body = ask(url, "POST", "/predict", *form(*files))
        health = json.loads(ask(url)[2])
    assert status == 200 and health["threshold"] == x
    assert json.loads(body) == [{**r, "path": name} for r, (name, _) in zip(rows, files)]
    # the ONNX graph: its Greater compares with the stored threshold
    _ok(["export", model, "--onnx", tmp_path / "cat.onnx"])
    session = ort.InferenceSession(str(tmp_path / "cat.onnx"), providers=["CPUExecutionProvider"])
    images = np.stack([predictor.decode(r["path"]) for r in rows])
    q, label = session.run(None, {"image": images})
    assert np.abs(q - p).max() <= 1e-6
    assert label.tolist() == [int(v > x) for v in p]
    assert float(session.get_modelmeta().custom_metadata_map["threshold"]) == x
    # and export's --threshold still overrides it
    _ok(["export", model, "--onnx", tmp_path / "half.onnx", "--threshold", "0.5"])
    half = ort.InferenceSession(str(tmp_path / "half.onnx"), providers=["CPUExecutionProvider"])
    assert half.run(None, {"image": images})[1].tolist() == [int(v > 0.5) for v in p]


@needs_course
def test_the_library_model_predicts_at_the_stored_threshold(hand_model, course):
    import catlr

    model, x, p = hand_model
    loaded = catlr.load(model)
    X = course["test"][0].reshape(50, -1).T / 255.0
    assert loaded.threshold_ == x
    assert loaded.predict(X).ravel().tolist() == [int(v > x) for v in p]
    assert loaded.predict(X, 0.5).ravel().tolist() == [int(v > 0.5) for v in p]


def _without(model, out, key):
    with np.load(model) as z:
        entries = {k: z[k] for k in z.files}
    meta = json.loads(str(entries["meta"]))
    meta.pop(key)
    entries["meta"] = np.str_(json.dumps(meta))
    with open(out, "wb") as f:
        np.savez(f, **entries)
    return out


@needs_course
def test_a_model_file_from_before_labels_at_a_half(hand_model, tmp_path, course):
    from catlr import Predictor

    old = _without(hand_model[0], tmp_path / "old.npz", "threshold")
    assert Predictor.load(old).threshold == 0.5
    f = _json(["eval", "--model", old])
    assert f["threshold"] == 0.5
    assert f["accuracy"] == pytest.approx(((hand_model[2] > 0.5) == course["test"][1]).mean())


@needs_course
@pytest.mark.parametrize("bad", [1.5, -0.1, "0.7", True, None, float("nan")])
def test_a_stored_threshold_that_is_not_a_probability_is_refused(hand_model, tmp_path, bad):
    path = tmp_path / "bad.npz"
    if isinstance(bad, float) and math.isnan(bad):  # JSON has no NaN: Python writes NaN
        with np.load(hand_model[0]) as z:
            entries = {k: z[k] for k in z.files}
        entries["meta"] = np.str_(str(entries["meta"]).replace(f'"threshold": {hand_model[1]!r}',
                                                               '"threshold": NaN'))
        with open(path, "wb") as f:
            np.savez(f, **entries)
    else:
        remeta(hand_model[0], path, threshold=bad)
    for args in (["inspect", path], ["eval", "--model", path], ["predict", "x.png", "--model", path]):
        code, _, err = run_cli(args)
        assert code == 1 and "threshold" in err and "not a valid catlr model file" in err, err
        assert len(err.strip().splitlines()) == 1


@pytest.fixture(scope="session")
def auto_model(tmp_path_factory):
    """The course data, a validation split of 0.2, 300 iterations, --threshold auto."""
    path = tmp_path_factory.mktemp("auto") / "auto.npz"
    out, _ = _ok(["train", COURSE, "--iters", "300", "--val-fraction", "0.2", "--threshold",
                  "auto", "--out", path])
    return path, out


@needs_course
def test_auto_is_the_best_f1_on_the_validation_split(auto_model, course):
    from sklearn.metrics import f1_score, precision_recall_curve

    from catlr import Predictor

    model, out = auto_model
    predictor = Predictor.load(model)
    meta = predictor.meta
    held = meta["validation"]["indices"]
    x, y = course["train"][0][held], course["train"][1][held]
    p = predictor.proba(x)
    precision, recall, _ = precision_recall_curve(y, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        best = np.nanmax(2 * precision * recall / (precision + recall))
    choice = meta["threshold_choice"]
    assert choice["f1"] == pytest.approx(best, abs=1e-12) and choice["m"] == len(y) == 41
    assert f1_score(y, (p > meta["threshold"]).astype(int)) == pytest.approx(best, abs=1e-12)
    assert meta["val_accuracy"] == pytest.approx(((p > meta["threshold"]) == y).mean())
    assert f"Threshold: {meta['threshold']:g}, chosen on the validation split for the best F1" \
        in out


def test_runs_and_inspect_show_a_chosen_threshold(small_folder):
    _ok(["train", small_folder, "--iters", "30", "--val-fraction", "0.25", "--threshold", "auto"])
    rows = _json(["runs"])
    assert rows[0]["threshold_choice"]["on"] == "validation"
    out, _ = _ok(["runs"])
    assert f"threshold {rows[0]['threshold']:.3g} (auto)" in out
    out, _ = _ok(["inspect"])
    assert "chosen on the validation split for the best F1" in out
    _ok(["train", small_folder, "--iters", "30"])  # the course's 0.5: nothing more said
    out, _ = _ok(["inspect"])
    assert "threshold" not in out


def test_eval_plot_draws_the_curve_and_the_diagram(small_folder, tmp_path):
    from catlr.files.pictures import SOFTWARE

    _ok(["train", small_folder, "--iters", "30", "--val-fraction", "0.25", "--threshold", "auto"])
    out, _ = _ok(["eval", "--plot", tmp_path / "eval.png"])
    assert f"Saved the precision-recall curve and the reliability diagram to {tmp_path}" in out
    with Image.open(tmp_path / "eval.png") as im:
        assert im.format == "PNG" and im.size[0] > 800 and im.info.get("Software") == SOFTWARE


# ---------------------------------------------------------------- 2. calibration

@pytest.mark.parametrize("seed", [0, 1])
def test_brier_and_its_interval(seed):
    from sklearn.metrics import brier_score_loss

    y, p = _scores(seed, m=60, digits=6)
    b = metrics.brier(y, p)
    assert b["value"] == pytest.approx(brier_score_loss(y, p), abs=1e-15)
    terms = [(pi - yi) ** 2 for pi, yi in zip(p.tolist(), y.tolist())]
    half = 1.959963984540054 * statistics.stdev(terms) / math.sqrt(len(terms))
    assert b["ci"] == pytest.approx([statistics.fmean(terms) - half,
                                     statistics.fmean(terms) + half], abs=1e-14)
    share = y.mean()
    assert b["reference"] == pytest.approx(brier_score_loss(y, np.full(len(y), share)))


@pytest.mark.parametrize("seed", [0, 2])
def test_the_reliability_diagram_is_calibration_curves(seed):
    from sklearn.calibration import calibration_curve

    y, p = _scores(seed, m=90, digits=1)  # many probabilities on the bins' edges
    r = metrics.reliability(y, p)
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    full = [i for i, n in enumerate(r["count"]) if n]
    assert np.allclose([r["observed"][i] for i in full], observed, rtol=0, atol=1e-15)
    assert np.allclose([r["predicted"][i] for i in full], predicted, rtol=0, atol=1e-15)
    # the counts, by the edges' rule written out: [0, 0.1], (0.1, 0.2], ..., (0.9, 1]
    edges = np.linspace(0, 1, 11)
    counts = [int(((p >= lo) & (p <= hi)).sum()) if i == 0 else int(((p > lo) & (p <= hi)).sum())
              for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    assert r["count"] == counts and sum(counts) == len(p)
    for i in full:
        k = round(r["observed"][i] * r["count"][i])
        assert r["observed_ci"][i] == metrics.wilson(k, r["count"][i])


@pytest.mark.parametrize("seed", [0, 4])
def test_the_calibration_error_and_its_bootstrap_interval(seed):
    from scipy.stats import bootstrap
    from sklearn.calibration import calibration_curve

    y, p = _scores(seed, m=70, digits=4)
    e = metrics.ece(y, p)
    observed, predicted = calibration_curve(y, p, n_bins=10)
    counts = np.array([n for n in metrics.reliability(y, p)["count"] if n])
    assert e["value"] == pytest.approx(float((counts / len(y) * np.abs(observed - predicted)).sum()),
                                       abs=1e-15)

    def ece_of(yy, pp, axis=-1):  # scikit-learn's bins, one resample a row
        return np.array([metrics.ece(a, b, resamples=1)["value"]
                         for a, b in zip(np.atleast_2d(yy), np.atleast_2d(pp))])

    ref = bootstrap((y.astype(float), p), ece_of, paired=True, vectorized=True,
                    n_resamples=metrics.BOOTSTRAP, method="percentile", confidence_level=0.95,
                    random_state=np.random.default_rng(metrics.SEED))
    assert e["ci"] == pytest.approx([ref.confidence_interval.low, ref.confidence_interval.high],
                                     abs=1e-12)


def test_what_a_calibrated_model_shows_tells_one_apart():
    rng = np.random.default_rng(11)
    p = rng.random(400)
    y = (rng.random(400) < p).astype(int)  # labels drawn from p: calibrated
    fair = metrics.ece(y, p)
    assert fair["value"] <= fair["if_calibrated"]["p95"]
    bold = np.where(p > 0.5, 1 - (1 - p) / 8, p / 8)  # the same ranking, overconfident
    off = metrics.ece(y, bold)
    assert off["value"] > off["if_calibrated"]["p95"]
    # the expected value under calibration, drawn again plainly
    draws = [metrics.ece((rng.random(400) < p).astype(int), p, resamples=1)["value"]
             for _ in range(400)]
    assert fair["if_calibrated"]["mean"] == pytest.approx(np.mean(draws), abs=0.004)


def test_the_bootstrap_is_bounded_in_memory_and_seeded():
    y, p = _scores(2, m=300)
    a = metrics.ece(y, p)
    saved = metrics.RESAMPLE_VALUES
    try:
        metrics.RESAMPLE_VALUES = 1000  # 3 resamples a batch: the same stream, batch by batch
        b = metrics.ece(y, p)
    finally:
        metrics.RESAMPLE_VALUES = saved
    assert a == b


@needs_course
def test_eval_reports_calibration_against_scikit_learn(course_model, course):
    from sklearn.metrics import brier_score_loss

    from catlr import Predictor

    f = _json(["eval", "--model", course_model[0]])
    p = Predictor.load(course_model[0]).proba(course["test"][0])
    cal = f["calibration"]
    assert cal["brier"]["value"] == pytest.approx(brier_score_loss(course["test"][1], p), abs=1e-15)
    assert cal["ece"]["value"] == metrics.ece(course["test"][1], p)["value"]
    out, _ = _ok(["eval", "--model", course_model[0]])
    assert "majority class (always cat)  66.00%" in out
    assert f"brier {cal['brier']['value']:.4f}: the mean of (probability - label)^2" in out
    assert "exact probabilities would show" in out


# ---------------------------------------------------------------- 3. the classes' shares

@pytest.mark.parametrize("table", [(72, 209, 33, 50), (10, 40, 20, 41), (5, 9, 3, 7),
                                   (50, 100, 51, 100)])
def test_the_shares_test_is_pearsons_chi_squared(table):
    from scipy.stats import chi2_contingency

    k1, n1, k2, n2 = table
    t = metrics.two_proportions(k1, n1, k2, n2)
    chi2, p, _, _ = chi2_contingency([[k1, n1 - k1], [k2, n2 - k2]], correction=False)
    assert t["p_value"] == pytest.approx(p, rel=1e-9)
    assert t["z"] ** 2 == pytest.approx(chi2, rel=1e-9)


def test_each_split_against_train_with_bonferroni():
    counts = {"train": (72, 209), "test": (33, 50)}
    found = metrics.share_report(counts)
    assert found["shares"]["train"]["ci"] == metrics.wilson(72, 209)
    assert found["shares"]["test"]["majority"] == 1 and found["shares"]["train"]["majority"] == 0
    (d,) = found["differ"]
    assert d["split"] == "test" and d["level"] == 0.05 and d["p_value"] < 1e-4
    # a pair at p = 0.028 differs alone, not among two pairs (each then at 0.025)
    p = metrics.two_proportions(30, 100, 45, 100)["p_value"]
    assert 0.025 < p < 0.05
    assert metrics.share_report({"train": (30, 100), "test": (45, 100)})["differ"]
    assert not metrics.share_report({"train": (30, 100), "validation": (30, 100),
                                     "test": (45, 100)})["differ"]


@needs_course
def test_train_says_the_shares_and_warns_of_the_courses(tmp_path):
    out, _ = _ok(["train", COURSE, "--iters", "3", "--out", tmp_path / "m.npz"])
    assert ("Share of cat (95% CI): train 34.45% (28.34%-41.12%, n = 209), test 66.00% "
            "(52.15%-77.56%, n = 50)") in out
    assert ("Warning: the test split is 66.00% cat and the train split 34.45%, further apart "
            "than chance allows (two-proportion z-test, p = 4.5e-05 < 0.05)") in out
    assert "always answering cat scores 66.00%" in out
    meta = _json(["inspect", tmp_path / "m.npz"])
    assert meta["shares"]["differ"][0]["split"] == "test"


def _folder(root, counts):
    rng = np.random.default_rng(0)
    for split, per_class in counts.items():
        for name, n in per_class.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(
                    root / split / name / f"{i}.png")
    return root


def test_prepare_says_the_shares_and_warns_when_they_differ(tmp_path):
    apart = _folder(tmp_path / "apart", {"train": {"cat": 6, "non-cat": 24},
                                         "test": {"cat": 20, "non-cat": 6}})
    out, _ = _ok(["prepare", apart, "--out", tmp_path / "a.h5", "--size", "8"])
    assert "95% CI" in out and "20.00%   9.51%-37.31%" in out
    assert "Warning: the test split is 76.92% cat and the train split 20.00%" in out
    alike = _folder(tmp_path / "alike", {"": {"cat": 10, "non-cat": 30}})
    out, _ = _ok(["prepare", alike, "--out", tmp_path / "b.h5", "--size", "8"])
    assert "Warning" not in out  # catlr's own split is stratified
    report = _json(["prepare", alike, "--out", tmp_path / "c.h5", "--size", "8"])
    assert report["shares"]["differ"] == [] and report["shares"]["shares"]["train"]["share"] == 0.25


# ---------------------------------------------------------------- 4. would more data help

def test_the_subsets_are_stratified_nested_and_seeded():
    from catlr.stages.curve import FRACTIONS, subsets

    y = np.r_[np.ones(33), np.zeros(71)].astype(int)
    np.random.default_rng(0).shuffle(y)
    parts = subsets(y)
    assert [len(s) for s in parts][-1] == len(y)
    for f, s in zip(FRACTIONS, parts):
        assert y[s].sum() == max(1, round(f * 33)) and (1 - y[s]).sum() == max(1, round(f * 71))
        assert np.all(np.diff(s) > 0)
    for a, b in zip(parts, parts[1:]):
        assert set(a) <= set(b)
    assert all(np.array_equal(a, b) for a, b in zip(parts, subsets(y)))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, subsets(y, seed=5)))


@pytest.fixture(scope="session")
def curve_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("curve") / "m.npz"
    _ok(["train", COURSE, "--iters", "300", "--val-fraction", "0.2", "--out", path])
    return path


@needs_course
@pytest.mark.slow
def test_every_point_of_the_curve_is_the_course_loop_on_that_subset(curve_model, course):
    from catlr import Predictor
    from catlr.learn.descent import reference
    from catlr.stages.curve import PERMUTATIONS, SEED, learning_curve, subsets

    c = learning_curve(curve_model)
    meta = Predictor.load(curve_model).meta
    held = np.array(meta["validation"]["indices"])
    x, y = course["train"]
    kept = np.setdiff1d(np.arange(len(y)), held)
    X = x[kept].reshape(len(kept), -1).T / 255.0
    Xv, yv = x[held].reshape(len(held), -1).T / 255.0, y[held]

    def course_loop(index, labels):
        w, b, _ = reference(X[:, index], labels[index].reshape(1, -1), 0.005, 300)
        fit = (((w.T @ X[:, index] + b) > 0).ravel() == labels[index]).mean()
        return fit, (((w.T @ Xv + b) > 0).ravel() == yv).mean()  # p > 0.5 <=> z > 0

    assert c["held"] == "validation" and c["m_held"] == 41 and c["form"] == "dual"
    for point, index in zip(c["points"], subsets(y[kept])):
        fit, on_val = course_loop(index, y[kept])
        assert point["train_accuracy"] == fit and point["held_accuracy"] == on_val, point
        assert point["held_ci"] == metrics.wilson(round(on_val * 41), 41)
    assert c["points"][-1]["held_accuracy"] == meta["val_accuracy"] == c["real"]
    rng = np.random.default_rng(SEED + 1)
    every = np.arange(len(kept))
    shuffled = [course_loop(every, rng.permutation(y[kept]))[1] for _ in range(PERMUTATIONS)]
    assert c["shuffled"]["accuracies"] == shuffled
    assert c["shuffled"]["p_value"] == (1 + sum(s >= c["real"] for s in shuffled)) / (1 + 5)
    assert c["baseline"] == metrics.baseline(yv)["accuracy"]


def _points(held, fit=None):
    fit = fit or [1.0] * len(held)
    return [{"fraction": (i + 1) / 10, "m": 10 * (i + 1), "train_accuracy": f,
             "held_accuracy": h, "held_ci": metrics.wilson(round(h * 100), 100)}
            for i, (f, h) in enumerate(zip(fit, held))]


@pytest.mark.parametrize("held,fit,kind", [
    ([.5, .55, .6, .62, .64, .66, .7, .74, .78, .8], [.95] * 10, "rising"),
    ([.6, .62, .63, .64, .64, .65, .64, .65, .64, .65], [1.0] * 10, "overfitting"),
    ([.7, .72, .73, .74, .74, .75, .74, .75, .74, .75], [.82] * 10, "flat"),
    ([.6, .6, .6, .61, .6, .62, .6, .61, .6, .62], [.7] * 10, "low"),
    # a rise of one image in 100 is noise: not "rising"
    ([.6, .62, .63, .64, .64, .65, .64, .66, .66, .67], [1.0] * 10, "overfitting"),
])
def test_what_the_curve_says(held, fit, kind):
    from catlr.stages.curve import verdict

    said = verdict(_points(held, fit), 0.6, "validation", 100)
    assert said["kind"] == kind, said
    assert "each validation point +- about" in said["line"]


@needs_course
def test_eval_learning_curve_in_words_and_json(curve_model, tmp_path):
    f = _json(["eval", "--model", curve_model, "--learning-curve"])
    c = f["learning_curve"]
    assert len(c["points"]) == 10 and c["held"] == "validation"
    out, _ = _ok(["eval", "--model", curve_model, "--learning-curve", "--plot", tmp_path / "e.png"])
    assert "scored on the validation split (n = 41)" in out
    assert f"What it says: {c['verdict']['line']}" in out
    assert "Shuffled labels: validation accuracy" in out
    assert "and the learning curve to" in out and (tmp_path / "e.png").stat().st_size > 10_000


def test_without_a_validation_split_the_curve_is_scored_on_test_and_says_so(small_folder):
    _ok(["train", small_folder, "--iters", "30"])
    out, _ = _ok(["eval", "--learning-curve"])
    assert "scored on the test split" in out and "choose nothing on it" in out
    assert "test accuracy" in out


# ---------------------------------------------------------------- the README says what runs print

def _readme_lines(command: str) -> list[str]:
    """The '# ' lines the README shows under `command`, '...' left out."""
    from conftest import ROOT

    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"    {command}") + 1
    shown = []
    for line in lines[start:]:
        if not line.startswith("    # "):
            break
        shown.append(line[len("    # "):])
    return [s for s in shown if s != "..."]


@needs_course
@pytest.mark.slow
def test_the_readme_shows_what_the_honest_commands_print(tmp_path, monkeypatch):
    import shutil

    (tmp_path / "data").mkdir()
    for name in ("train_catvnoncat.h5", "test_catvnoncat.h5"):
        shutil.copy(COURSE / name, tmp_path / "data" / name)
    monkeypatch.chdir(tmp_path)
    for command in ("catlr train data/ --val-fraction 0.2 --threshold auto",
                    "catlr eval --learning-curve --plot eval.png"):
        out, _ = _ok(command.split()[1:])
        printed = out.splitlines()
        shown = _readme_lines(command)
        assert shown and all(line in printed for line in shown), (shown, printed)
        assert sorted(shown, key=printed.index) == shown  # in the order printed

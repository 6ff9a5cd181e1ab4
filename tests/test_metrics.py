"""eval's figures against scikit-learn's on the same predictions."""

import numpy as np
import pytest

from catlr.learn import metrics

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(6))
def test_report_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(5, 300))
    y = (rng.random(m) > rng.uniform(0.2, 0.8)).astype(int)
    y[0], y[1] = 0, 1
    p = np.clip(rng.random(m) * 0.6 + y * rng.uniform(0, 0.4), 0, 1)
    if seed == 3:
        p = np.round(p, 1)  # many ties, for the AUC's tie handling
    if seed == 4:
        p[:3] = [0.0, 1.0, 1.0]  # certainties, for log loss clipping
    r = metrics.report(y, p)
    pred = (p > 0.5).astype(int)
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(y, pred), abs=1e-12)
    assert r["precision"] == pytest.approx(sk.precision_score(y, pred, zero_division=0), abs=1e-12)
    assert r["recall"] == pytest.approx(sk.recall_score(y, pred, zero_division=0), abs=1e-12)
    assert r["f1"] == pytest.approx(sk.f1_score(y, pred, zero_division=0), abs=1e-12)
    assert r["log_loss"] == pytest.approx(sk.log_loss(y, p, labels=[0, 1]), rel=1e-9)
    assert r["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    (tn, fp), (fn, tp) = sk.confusion_matrix(y, pred, labels=[0, 1])
    assert (r["tn"], r["fp"], r["fn"], r["tp"]) == (tn, fp, fn, tp)


def test_degenerate_cases():
    r = metrics.report([1, 1, 1], [0.2, 0.3, 0.1])
    assert r["precision"] == 0.0 and r["recall"] == 0.0 and r["roc_auc"] is None
    assert r["fn"] == 3 and r["accuracy"] == 0.0


def test_eval_figures_equal_scikit_learn_on_a_real_model(cli, small_folder, tmp_path):
    import json

    from catlr.stages.evaluate import evaluate

    model = tmp_path / "m.npz"
    code, _, err = cli(["train", small_folder, "--iters", "60", "--out", model,
                        "--test-fraction", "0.4"])
    assert code == 0, err
    ev = evaluate(model)
    y, p = ev.labels, ev.probabilities
    code, out, err = cli(["eval", "--model", model, "--json"])
    assert code == 0, err
    f = json.loads(out)
    assert f["accuracy"] == pytest.approx(sk.accuracy_score(y, p > 0.5))
    assert f["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p))
    assert f["log_loss"] == pytest.approx(sk.log_loss(y, p, labels=[0, 1]))
    assert f["m"] == len(y) == 6  # round(0.4 * 8) = 3 of each class

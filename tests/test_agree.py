"""Numbers that agree and names that fit (issue 29): the recording interval of a long run,
the library's objects as the README shows them, inspect's figures, a resumed run's parent,
prepare's answers."""

import json
import os

import numpy as np
import pytest


def _nice_reference(iters):
    """print_every = auto written out: the course's 100, else the smallest of 1, 2, 5 x 10^k
    at or above iters / 20, found by walking the candidates in order."""
    candidates = sorted(k * 10 ** e for e in range(12) for k in (1, 2, 5))
    return next(c for c in candidates if c >= 100 and c * 20 >= iters)


@pytest.mark.parametrize("iters", [1, 99, 1000, 2000, 2001, 2500, 4000, 4001, 10_000, 123_457,
                                   3_000_000, 10**9])
def test_auto_recording_prints_a_screenful(iters):
    from catlr.config import print_every

    every = print_every(iters)
    assert every == _nice_reference(iters)
    lines = -(-iters // every)  # iterations 0, every, 2 every, ... below iters
    assert lines <= 20 and (iters <= 2000 or lines >= 8)
    assert print_every(2000) == 100  # the course's 20 lines, exactly


def test_a_long_run_records_on_the_grid_it_prints_and_a_resume_keeps_it(cli, small_folder):
    code, out, err = cli(["train", small_folder, "--iters", "5000", "--lr", "0.001",
                          "--name", "long"])
    assert code == 0, err
    printed = [int(l.split()[3].rstrip(":")) for l in out.splitlines()
               if l.startswith("Cost after iteration")]
    assert printed == list(range(0, 5000, 500))  # 5000 / 20 = 250, rounded up to 500
    with np.load("runs/long/model.npz") as z:
        meta = json.loads(str(z["meta"]))
        assert len(z["costs"]) == len(printed)
    assert meta["print_every"] == 500 and meta["config"]["print_every"] == 500
    assert "print_every = 500" in open("runs/long/config.toml").read()
    # 3000 more: auto would say 200 for 3000 iterations; the run's own grid is kept
    code, out, err = cli(["train", "--resume", "long", "--iters", "3000", "--name", "longer"])
    assert code == 0, err
    printed = [int(l.split()[3].rstrip(":")) for l in out.splitlines()
               if l.startswith("Cost after iteration")]
    assert printed == list(range(5000, 8000, 500))
    with np.load("runs/longer/model.npz") as z:
        assert len(z["costs"]) == 16


def test_print_every_given_or_in_the_config_is_respected(cli, small_folder, tmp_path):
    code, out, err = cli(["train", small_folder, "--iters", "5000", "--print-every", "1000",
                          "--out", tmp_path / "a.npz"])
    assert code == 0, err
    assert out.count("Cost after iteration") == 5
    config = tmp_path / "c.toml"
    config.write_text("iters = 30\nprint_every = 3\n")
    code, out, err = cli(["train", small_folder, "-c", config, "--out", tmp_path / "b.npz"])
    assert code == 0, err
    assert out.count("Cost after iteration") == 10
    code, _, err = cli(["train", small_folder, "--print-every", "often"])
    assert code == 2 and "--print-every must be an integer" in err, err


def test_the_library_takes_print_every_auto():
    from catlr import LogisticRegression

    rng = np.random.default_rng(0)
    X, Y = rng.random((5, 40)), (rng.random((1, 40)) > 0.5).astype(float)
    model = LogisticRegression(iters=4000, print_every="auto").fit(X, Y)
    assert len(model.costs_) == 20 and model.print_every == "auto"  # 4000 / 20 = 200


def test_the_library_objects_read_as_the_readme_shows(small_folder, tmp_path):
    import catlr

    code_path = tmp_path / "m.npz"
    from conftest import run_cli

    code, _, err = run_cli(["train", small_folder, "--iters", "300", "--out", code_path])
    assert code == 0, err
    model = catlr.load(code_path)
    text = repr(model)
    assert text.startswith("LogisticRegression(lr=0.005, iters=300), fitted: n_x=12288, b=")
    assert f"final cost {model.meta_['final_cost']:.6f}" in text and "non-cat / cat" in text
    assert repr(catlr.LogisticRegression(l2=0.7)) == \
        "LogisticRegression(lr=0.005, iters=2000, l2=0.7), not fitted"
    predictor = catlr.Predictor.load(code_path)
    photos = sorted((small_folder / "cat").iterdir())[:3]
    decoded = [predictor.decode(p) for p in photos]
    listed = predictor.proba(decoded)  # as the README calls it: a list of decoded images
    assert listed.shape == (3,) and np.array_equal(listed, predictor.proba(np.stack(decoded)))
    assert predictor.proba([]).shape == (0,)


def test_inspect_shows_the_final_cost_train_and_runs_show(cli, small_folder):
    code, out, err = cli(["train", small_folder, "--iters", "250", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    final, recorded = doc["final_cost"], doc["costs"]
    assert len(recorded) == 3 and abs(final - recorded[-1]) > 1e-6  # 200 is not 250
    code, out, err = cli(["inspect"])
    assert code == 0, err
    line = next(l for l in out.splitlines() if l.startswith("cost first"))
    assert line.split()[-3:] == [f"{recorded[0]:.6f}", "/", f"{final:.6f}"], line
    code, out, err = cli(["runs", "--json"])
    assert json.loads(out)[0]["final_cost"] == final


def test_inspect_of_a_notebook_model_shows_its_accuracies(cli, tmp_path):
    from catlr.course import model, save_model

    rng = np.random.default_rng(3)
    X, Xt = rng.random((48, 30)), rng.random((48, 10))  # 4 x 4 x 3 images
    Y, Yt = (X[0:1] > 0.5).astype(float), (Xt[0:1] > 0.5).astype(float)
    d = model(X, Y, Xt, Yt, num_iterations=300, learning_rate=0.5)
    reference = {"train": float(np.mean(d["Y_prediction_train"] == Y)),
                 "test": float(np.mean(d["Y_prediction_test"] == Yt))}
    save_model(d, tmp_path / "labelled.npz", ["no", "yes"], Y, Yt)
    save_model(d, tmp_path / "bare.npz", ["no", "yes"])
    code, out, err = cli(["inspect", tmp_path / "labelled.npz", "--json"])
    meta = json.loads(out)
    assert meta["train_accuracy"] == reference["train"] and meta["test_accuracy"] == reference["test"]
    code, out, err = cli(["inspect", tmp_path / "bare.npz"])
    assert code == 0 and "train_accuracy" in out and "not saved: give save_model the labels" in out
    assert "cost first / last recorded" in out and "(iteration 200)" in out  # never "final"
    with pytest.raises(Exception, match="holds 3 labels"):
        save_model(d, tmp_path / "bad.npz", ["no", "yes"], Y[:, :3])


def _interrupt_at(n):
    """An on_event that sends this process SIGINT during iteration n, as Ctrl-C would."""
    import signal

    from catlr.events import Step

    sent = []

    def on_event(event):  # steps are reported now and then: the first at or after n
        if isinstance(event, Step) and event.i >= n and not sent:
            sent.append(event.i)
            os.kill(os.getpid(), signal.SIGINT)
    return on_event


def test_a_run_resumed_in_place_and_stopped_again_is_not_its_own_parent(cli, small_folder):
    from catlr.config import resolve
    from catlr.runs.state import load as load_state
    from catlr.stages.train import train

    cfg = resolve(None, iters=400, checkpoint_every=0.0)  # a checkpoint on the signal only
    with pytest.raises(KeyboardInterrupt):
        train(small_folder, cfg, name="long", on_event=_interrupt_at(100))
    with pytest.raises(KeyboardInterrupt):  # completes in place, and is stopped again
        train(None, resolve(None, checkpoint_every=0.0), resume="long",
              on_event=_interrupt_at(250))
    state, info = load_state("runs/long/checkpoint.npz")
    assert info["parent"] is None and 250 <= state["i"] < 400
    code, out, err = cli(["runs", "--json"])
    row = json.loads(out)[0]
    assert row["parent"] is None and row["interrupted"] == [state["i"], 400]
    assert row["cost_so_far"] == state["trace"][-1][1]
    code, out, err = cli(["runs"])
    assert "from long@" not in out and f"{state['trace'][-1][1]:.6f}" in out and "cost ?" not in out
    # completed, it names no parent; a run that goes further names it
    model, meta, _ = train(None, resolve(None), resume="long")
    assert "parent" not in meta and meta["iters"] == 400
    model, meta, _ = train(None, resolve(None, iters=100), resume="long", name="longer",
                           given={"iters"})
    assert meta["parent"] == {"run": "long", "at": 400}


def test_prepare_says_what_a_user_expects(cli, small_folder):
    import shutil

    os.makedirs("data")
    for name in ("train_catvnoncat.h5", "test_catvnoncat.h5"):  # the pair, by name
        shutil.copy(_tiny_pair_file(name), os.path.join("data", name))
    code, out, err = cli(["prepare", "data/"])  # its default --out lies inside data/
    assert code == 1 and err.count("\n") == 1, err
    assert "needs no preparing: train on it directly with 'catlr train data'" in err
    code, out, err = cli(["prepare", small_folder, "--out", "x.txt"])
    assert code == 2 and err.count("\n") == 1 and not os.path.exists("x.txt")
    assert "name the file with .h5 or .hdf5 (e.g. x.h5), or NAME.zarr for a Zarr store" in err
    code, out, err = cli(["prepare", small_folder, "--out", "x.HDF5"])
    assert code == 0 and os.path.isfile("x.HDF5"), err


def _tiny_pair_file(name):
    """A file in the course's schema (4 images of 4 x 4): what find_course_pair looks for."""
    import h5py

    split = name.split("_")[0]
    path = os.path.abspath(f"_{name}")
    with h5py.File(path, "w") as f:
        f[f"{split}_set_x"] = np.zeros((4, 4, 4, 3), np.uint8)
        f[f"{split}_set_y"] = np.array([0, 1, 0, 1])
        f["list_classes"] = np.array([b"non-cat", b"cat"])
    return path

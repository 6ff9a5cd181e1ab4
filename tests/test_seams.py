"""The seams: one owner of runs, settings declared once, a solver on any array library,
the objective in one place, a library that checks its own inputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import PHOTOS, rel, run_cli, seed_loop

# ---- 1. one owner of where models live ----

def test_a_config_that_moves_the_runs_is_honoured_by_every_command(cli, small_folder, tmp_path):
    config = tmp_path / "elsewhere.toml"
    config.write_text('runs = "elsewhere"\niters = 20\n')
    code, out, err = cli(["train", small_folder, "--config", config])
    assert code == 0, err
    assert os.path.isfile("elsewhere/train-1/model.npz") and not os.path.exists("runs")
    assert "Saved the run in elsewhere/train-1/" in out
    code, out, err = cli(["eval", "--config", config, "--json"])
    assert code == 0, err
    assert json.loads(out)["model"] == "elsewhere/train-1/model.npz"
    photo = next((small_folder / "cat").glob("*"))
    code, out, err = cli(["predict", photo, "--config", config])
    assert code == 0, err
    assert "Model: elsewhere/train-1/model.npz (the newest run)" in out
    code, out, err = cli(["inspect", "--config", config])
    assert code == 0 and "elsewhere/train-1/model.npz (the newest run)" in out, err
    code, out, err = cli(["runs", "--config", config, "--json"])
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)] == ["train-1"]
    # without the config, the default folder holds nothing
    assert cli(["runs", "--json"])[1].strip() == "[]"
    code, _, err = cli(["eval"])
    assert code == 1 and "no model yet" in err


def test_saving_returns_one_value_naming_every_file(small_folder, tmp_path):
    from catlr import config
    from catlr.stages import train

    cfg = config.resolve(None, iters=10, runs=str(tmp_path / "r"))
    _, _, saved = train.train(small_folder, cfg, plot=tmp_path / "c.png")
    assert saved.folder == str(tmp_path / "r" / "train-1") and saved.name == "train-1"
    assert saved.model == os.path.join(saved.folder, "model.npz")
    assert [os.path.basename(f) for f in saved.files] == [
        "model.npz", "config.toml", "costs.csv", "metrics.json", "state.npz", "cost.png",
        "c.png"]
    assert all(os.path.isfile(f) for f in saved.files)
    assert sorted(os.listdir(saved.folder)) == sorted(os.path.basename(f)
                                                      for f in saved.files[:-1])


# ---- 2. settings declared once ----

def test_every_setting_flag_comes_from_the_registry(cli):
    from catlr.config import COMMANDS, DEFAULTS, FLAGS, flag_name, options

    assert set(FLAGS) <= set(DEFAULTS)
    for command in COMMANDS:
        code, out, _ = cli([command, "--help"])
        assert code == 0
        for key in options(command):
            assert flag_name(key) in out, (command, key)
    # train and sweep share every training, data and engine flag
    assert set(options("train")) - {"lr", "l2"} <= set(options("sweep"))
    assert {"sweep_lrs", "sweep_l2s"} <= set(options("sweep"))
    assert not {"lr", "l2"} & set(options("sweep"))  # sweep's --lr and --l2 take several


def test_a_new_setting_is_one_entry(tmp_path):
    """A setting added to DEFAULTS and FLAGS is a flag of train and sweep and a config key."""
    code = r"""
import sys
from catlr import config
config.DEFAULTS["l9"] = 0.0
config.FLAGS["l9"] = config.Flag("training", "A new penalty")
from catlr import cli
sys.argv = ["catlr", *sys.argv[1:]]
cli.main()
"""
    for args in (["train", "--help"], ["sweep", "--help"]):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "80"})
        assert "--l9 <float>" in r.stdout and "A new penalty [default: 0.0]" in r.stdout, args
    toml = tmp_path / "c.toml"
    toml.write_text("l9 = 2\n")
    check = ('import sys\nfrom catlr import config\nconfig.DEFAULTS["l9"] = 0.0\n'
             'print(config.resolve(sys.argv[1])["l9"])')
    r = subprocess.run([sys.executable, "-c", check, str(toml)], capture_output=True, text=True)
    assert r.stdout.strip() == "2.0", r.stderr  # a config key too, widened to a float
    from catlr import config

    assert "l9" not in config.DEFAULTS


def test_help_is_grouped_course_settings_first(cli):
    code, out, _ = cli(["train", "--help"])
    headings = [line[:-1] for line in out.splitlines() if line and not line[0].isspace()
                and line.endswith(":")]
    assert headings == ["Arguments", "Training (the course's settings)", "Options",
                        "Validation (choices made on held-out data, never on test)",
                        "Image folders", "Decoding", "Engines, memory and cluster"]
    engines = out.split("Engines, memory and cluster:")[1]
    assert "--engine" in engines and "--memory" in engines and "--scheduler" in engines
    assert "--lr" in out.split("Training (the course's settings):")[1].split("Options:")[0]


def test_every_help_screen_fits_80_columns():
    from catlr.cli import app

    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    for args in [["--help"]] + [[c, "--help"] for c in commands]:
        r = subprocess.run([sys.executable, "-m", "catlr", *args], capture_output=True,
                           text=True, env=env)
        assert r.returncode == 0, (args, r.stderr)
        wide = [line for line in r.stdout.splitlines() if len(line) > 80]
        assert not wide, (args, wide)


def test_shared_flags_are_checked_as_the_config_checks_them(cli, small_folder):
    for command in ("train", "sweep"):
        code, _, err = cli([command, small_folder, "--iters", "0"])
        assert code == 2 and "--iters must be a positive integer, got 0" in err, err
    code, _, err = cli(["prepare", small_folder, "--fit", "squash"])
    assert code == 2 and "--fit must be one of stretch, crop, pad" in err


# ---- 3. the engines package and its one planner ----

def test_the_planner_decides_once_and_descent_runs_what_it_is_told():
    from catlr import engines
    from catlr.errors import ParameterError
    from catlr.learn import descent
    from catlr.learn.design import Dense

    cfg = {"form": "auto", "engine": "auto", "dtype": "auto", "memory": "4GB"}
    choice = engines.choose(209, 12288, 2000, cfg, on_disk=True)
    assert (choice.form, choice.engine, choice.dtype) == ("dual", "memory", "float64")
    # the memory engine holds the uint8 pixels (246 MB here), not a float32 X (983 MB)
    choice = engines.choose(20000, 12288, 2000, {**cfg, "memory": "256MB"}, on_disk=True)
    assert (choice.form, choice.engine, choice.dtype) == ("primal", "memory", "float32")
    choice = engines.choose(20000, 12288, 2000, {**cfg, "memory": "200MB"}, on_disk=True)
    assert (choice.form, choice.engine, choice.dtype) == ("primal", "stream", "float32")
    with pytest.raises(ParameterError):
        descent.run(Dense(np.ones((3, 4))), np.ones(4), 0.1, 5, form="auto")
    assert set(engines.ENGINES) == {"memory", "stream", "dask"}


# ---- 4. a solver that does not care where the arrays live ----

@pytest.mark.parametrize("form", ["primal", "dual"])
@pytest.mark.parametrize("objective", [{}, {"l2": 0.5, "class_weight": "balanced"}])
def test_both_forms_run_on_another_array_library(form, objective):
    xps = pytest.importorskip("array_api_strict")
    from catlr.learn.model import LogisticRegression

    rng = np.random.default_rng(7)
    X = rng.random((40, 25))
    Y = (rng.random((1, 25)) > 0.5).astype(float)
    ref = LogisticRegression(0.1, 300, 10, form, **objective).fit(X, Y)
    other = LogisticRegression(0.1, 300, 10, form, **objective).fit(xps.asarray(X),
                                                                    xps.asarray(Y))
    assert other.form_ == form and isinstance(other.w_, np.ndarray)
    assert rel(other.w_, ref.w_) <= 1e-12 and abs(other.b_ - ref.b_) <= 1e-12
    assert rel(other.costs_, ref.costs_) <= 1e-12
    if not objective:  # and the course's loop, for the plain cost
        w, b, costs = seed_loop(X, Y, 0.1, 300, every=10)
        assert rel(other.w_, w) <= 1e-10 and rel(other.costs_, costs) <= 1e-12


def test_a_numpy_run_never_loads_array_api_compat(small_folder, tmp_path):
    code = (f"import sys; from catlr import config; from catlr.stages import train\n"
            f"train.train({str(small_folder)!r}, config.resolve(None, iters=5), "
            f"out={str(tmp_path / 'm.npz')!r})\n"
            "print('array_api_compat' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


# ---- 5. the objective in one place ----

@pytest.mark.parametrize("form", ["primal", "dual"])
def test_a_zero_penalty_and_unit_weights_are_the_course_bit_for_bit(form):
    from catlr.learn.model import LogisticRegression

    rng = np.random.default_rng(2)
    X = rng.random((30, 20))
    Y = (rng.random((1, 20)) > 0.5).astype(float)
    plain = LogisticRegression(0.1, 200, 10, form).fit(X, Y)
    zero = LogisticRegression(0.1, 200, 10, form, l2=0.0, class_weight={0: 1.0, 1: 1.0}).fit(X, Y)
    assert np.array_equal(plain.w_, zero.w_) and plain.b_ == zero.b_
    assert plain.costs_ == zero.costs_


@pytest.mark.parametrize("kw", [{"l2": 0.7}, {"l2": 0.7, "class_weight": "balanced"},
                                {"l2": 2.0, "class_weight": {0: 1.0, 1: 3.0}}])
def test_penalty_and_weights_reach_scikit_learns_optimum_in_both_forms(kw):
    sklearn = pytest.importorskip("sklearn.linear_model")
    from catlr.learn.model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 80))
    Y = (X[0] + 0.5 * rng.normal(size=80) > 0.3).astype(float).reshape(1, -1)
    sk = sklearn.LogisticRegression(C=1 / kw["l2"], class_weight=kw.get("class_weight"),
                                    tol=1e-12, max_iter=10000).fit(X.T, Y.ravel())
    fits = [LogisticRegression(0.5, 40000, 1000, form, **kw).fit(X, Y)
            for form in ("primal", "dual")]
    assert rel(fits[0].w_, fits[1].w_) <= 1e-12  # the dual form stays exact
    for f in fits:
        assert rel(f.w_.ravel(), sk.coef_.ravel()) <= 1e-6
        assert f.b_ == pytest.approx(sk.intercept_[0], abs=1e-6)


# ---- 6. the library checks its own inputs and serves more than the CLI ----

@pytest.mark.parametrize("params,found", [
    ({"lr": -1}, "lr=-1"), ({"print_every": 0}, "print_every=0"), ({"iters": 0}, "iters=0"),
    ({"iters": 2.5}, "iters=2.5"), ({"form": "svd"}, "form='svd'"),
    ({"dtype": "int8"}, "dtype='int8'"), ({"l2": -0.1}, "l2=-0.1"),
    ({"class_weight": "even"}, "class_weight='even'")])
def test_estimator_parameters_are_checked_at_fit(params, found):
    from catlr.errors import CatlrError
    from catlr.learn.model import LogisticRegression

    X, Y = np.ones((3, 4)), np.array([[0, 1, 0, 1]])
    model = LogisticRegression(**params)  # constructing never fails, as in scikit-learn
    with pytest.raises(ValueError) as e:
        model.fit(X, Y)
    assert isinstance(e.value, CatlrError)
    assert found in str(e.value) and "expected" in str(e.value) or "must be" in str(e.value)


def test_catlr_load_gives_a_fitted_estimator(course_model, course):
    import catlr

    model = catlr.load(course_model[0])
    x, y = course["test"]
    X = x.reshape(len(x), -1).T / 255.0
    assert isinstance(model, catlr.LogisticRegression)
    assert model.meta_["image_size"] == 64 and model.meta_["classes"] == ["non-cat", "cat"]
    assert (model.predict(X) == y).mean() == pytest.approx(0.70)


def test_the_predictor_decodes_paths_bytes_and_files_alike(course_model):
    import io

    from catlr import Predictor

    predictor = Predictor.load(course_model[0])
    photo = PHOTOS / "cat-in-iran.jpg"
    if not photo.exists():
        pytest.skip("photos not found")
    data = photo.read_bytes()
    pixels = [predictor.decode(photo), predictor.decode(data), predictor.decode(io.BytesIO(data))]
    assert all(np.array_equal(pixels[0], p) for p in pixels[1:])
    p = predictor.proba(np.stack(pixels))
    code, out, err = run_cli(["predict", photo, "--model", course_model[0], "--json"])
    assert code == 0, err
    row = json.loads(out)[0]
    assert row == predictor.row(str(photo), p[0]) and p[0] == p[1] == p[2]
    assert predictor.names([0.2, 0.9]) == ["non-cat", "cat"]


def test_the_decision_rule_is_written_once():
    """`probability > threshold` appears in learn/loss.labels and nowhere else in catlr."""
    import ast
    from pathlib import Path

    def threshold(node):
        return (isinstance(node, ast.Name) and node.id == "threshold"
                or isinstance(node, ast.Attribute) and node.attr == "threshold"
                or isinstance(node, ast.Constant) and node.value == 0.5)

    package = Path(__file__).resolve().parents[1] / "catlr"
    found = [f"{p.relative_to(package)}:{node.lineno}" for p in package.rglob("*.py")
             for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Gt, ast.GtE))
                                                      for op in node.ops)
             and any(threshold(c) for c in node.comparators)]
    assert [f.split(":")[0] for f in found] == ["learn/loss.py"], found

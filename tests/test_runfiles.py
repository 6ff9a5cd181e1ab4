"""A run folder's files, each with one writer and one reader that checks it.

Every field of state.npz and checkpoint.npz (both forms; gd and nesterov; the dual warm-
started from weights, with w0) and of the info saved with them, tampered with (a wrong
type, Infinity, NaN, a wrong length, 2-D where 1-D, a string where a number), is one line
naming the file and the field: `catlr train --resume` exits 1 before any work, with
nothing written or lost, and `catlr runs` shows that run as damaged and every other run as
usual. Every writer's output reads back equal, and the solvers' table is what every
consumer of it says."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SIZE = 16
INF, NAN = float("inf"), float("nan")


# ---- real runs of every kind, trained once on a tiny prepared file

def _cfg(root, **flags):
    from catlr.config import resolve

    return {**resolve(size=SIZE, print_every=5, **flags), "runs": str(root / "runs")}


def _train(data, cfg, name, stop_at=None, resume=None, given=()):
    """A run through the train stage; with `stop_at`, interrupted (Ctrl-C, as from the
    keyboard) at the first reported iteration from there: its checkpoint is left."""
    from catlr.events import Step
    from catlr.stages.train import train

    def on_event(e):
        if stop_at is not None and isinstance(e, Step) and e.i >= stop_at and e.i < e.iters:
            raise KeyboardInterrupt

    call = lambda: train(data, cfg, name=name, on_event=on_event, resume=resume,  # noqa: E731
                         given=set(given))
    if stop_at is None:
        return call()
    with pytest.raises(KeyboardInterrupt):
        call()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """{name: run folder}: finished runs (state.npz) and interrupted ones (checkpoint.npz)
    of gd in the primal form with a validation split watched (best weights kept), nesterov,
    and gd in the dual form warm-started from a run's weights (w0), on one prepared file."""
    from catlr.config import DEFAULTS
    from catlr.stages.demo import make_sample
    from catlr.stages.prepare import prepare

    root = tmp_path_factory.mktemp("runfiles")
    sample = make_sample(root / "sample", n_per_class=8, unseen=0)["images"]
    data = str(root / "data.h5")
    prepare(sample, data, {**DEFAULTS, "size": SIZE})
    watched = dict(val_fraction=0.25, early_stop=1000)
    kinds = {"gd": dict(form="primal", dtype="float64", **watched),
             "nesterov": dict(solver="nesterov"),
             "dual": dict(form="dual", **watched)}
    for kind, flags in kinds.items():
        _train(data, _cfg(root, iters=40, **flags), kind)
        if kind != "dual":
            _train(data, _cfg(root, iters=400, checkpoint_every=1e-9, **flags), f"{kind}-stop",
                   stop_at=20)
    # the dual form from weights (its state gone): w0 and b0 carried in its state
    os.remove(root / "runs/dual/state.npz")
    cfg = _cfg(root, iters=20)
    _train(None, cfg, "dual-warm", resume=str(root / "runs/dual"), given={"iters"})
    _train(None, {**cfg, "iters": 400, "checkpoint_every": 1e-9}, "dual-warm-stop",
           resume=str(root / "runs/dual"), given={"iters", "checkpoint_every"}, stop_at=60)
    runs = {p.name: p for p in (root / "runs").iterdir()}
    for name in ("gd", "nesterov", "dual-warm"):
        assert (runs[name] / "state.npz").is_file(), os.listdir(runs[name])
    for name in ("gd-stop", "nesterov-stop", "dual-warm-stop"):
        assert os.listdir(runs[name]) == ["checkpoint.npz"], os.listdir(runs[name])
    return runs


def _entries(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _save(path, entries: dict):
    with open(path, "wb") as f:
        np.savez(f, **entries)


def test_the_runs_hold_what_each_solver_keeps(base):
    """The tampering below reaches every field: each base run's file holds it."""
    fields = {"gd": {"w", "keep"}, "nesterov": {"w", "wp", "bp"}, "dual-warm": {"u", "w0", "keep"}}
    for name, arrays in fields.items():
        for run in (name, f"{name}-stop"):
            file = "checkpoint.npz" if run.endswith("-stop") else "state.npz"
            entries = _entries(base[run] / file)
            assert arrays | {"b", "costs", "trace", "held_costs", "meta"} <= set(entries), run
            meta = json.loads(str(entries["meta"]))
            assert {"i", "config", "data", "fingerprint", "n_x", "m", "form"} <= set(meta), run
    assert "w0_t" in json.loads(str(_entries(base["dual-warm"] / "state.npz")["meta"]))
    assert json.loads(str(_entries(base["gd"] / "state.npz")["meta"]))["best"] is not None


# ---- the tampering: (run, file, field, how), each a function of the file's entries

def _array(field, how):
    def change(e):
        v = e[field]
        e[field] = {
            "nan": lambda: np.where(np.arange(v.size).reshape(v.shape) == 0, NAN, v),
            "inf": lambda: np.where(np.arange(v.size).reshape(v.shape) == 0, INF, v),
            "short": lambda: v[:min(10, v.size // 2)],  # w of 768 cut to 10
            "long": lambda: np.concatenate([v, v[:7]]),
            "2-D": lambda: v.reshape(-1, 1) if v.ndim == 1 else v.reshape(1, -1, 2),
            "1-D": lambda: v.ravel(),
            "int": lambda: np.ones(v.shape, np.int64),
            "string": lambda: np.str_("abc"),
            "strings": lambda: np.array(["abc"] * max(v.size, 1)),
            "pair": lambda: np.array([0.5, 0.5], v.dtype),
            "3 columns": lambda: np.ones((3, 3)),
            "half iteration": lambda: np.array([[0.5, 0.69]]),
        }[how]()
    return change


def _json(field, value):
    def change(e):
        meta = json.loads(str(e["meta"]))
        if value is DELETE:
            meta.pop(field, None)
        elif isinstance(field, tuple):  # a key inside a table: config.lr
            meta[field[0]] = {**meta[field[0]], field[1]: value}
        else:
            meta[field] = value
        e["meta"] = np.str_(json.dumps(meta))
    return change


DELETE = object()
VECTOR = ("nan", "inf", "short", "long", "2-D", "int", "strings")
SCALAR = ("nan", "inf", "pair", "int", "string")
HISTORY = ("nan", "inf", "2-D", "strings")
TRACE = ("nan", "inf", "1-D", "3 columns", "half iteration", "string")
ARRAYS = {
    "gd": {"w": VECTOR, "keep": VECTOR, "b": SCALAR, "costs": HISTORY, "trace": TRACE,
           "held_costs": HISTORY},
    "nesterov": {"w": VECTOR, "wp": VECTOR, "b": SCALAR, "bp": SCALAR},
    "dual-warm": {"u": VECTOR, "w0": VECTOR, "keep": VECTOR, "b": SCALAR,
                  "held_costs": HISTORY},
}
COUNT = (INF, NAN, "abc", -1, 1.5, [1], None)
NUMBER = (INF, NAN, "abc", [1.0], None)
SCALARS = {  # the solver's scalars in the JSON beside the arrays
    "gd": {"i": COUNT, "since": (INF, NAN, "abc", -1, 1.5),
           "best": ("abc", ["abc", 0.5], [0, INF], [0, NAN], [1], [-1, 0.5]),
           "keep_at": ("abc", [1.0], ["abc", 5], [0.5, INF], [NAN, 5]),
           "form": ("abc", 5, DELETE), "solver": ("nesterov", "adam", 5),
           "b_dtype": ("abc", 5)},
    "nesterov": {"i": COUNT, "t": (INF, NAN, "abc", 0.5, None),
                 "beta": (INF, NAN, "abc", 2.0, None), "solver": ("gd", "lbfgs", DELETE)},
    "dual-warm": {"i": COUNT, "v": NUMBER, "t": (INF, "abc", -1, 1.5, None), "b0": NUMBER,
                  "keep_at": ("abc", [0.5, 3], [0.5, "x", 0], [INF, 3, 0]),
                  "form": ("primal", 7), "w0_t": ("abc", -1, INF)},
}
INFO = {  # the info saved with the state: what a resume checks, what the runs table shows
    "config": ("abc", 5, ["lr"]), ("config", "lr"): ("x", INF, -1.0),
    ("config", "solver"): ("adam",), ("config", "iters"): ("abc", 0),
    "data": (5, ["x"]), "data_kind": (5,), "created": (5, ["2026"]),
    "iters": (INF, NAN, "abc", 0, 1.5), "lr": (INF, NAN, "abc", -1.0),
    "print_every": (0, "abc", INF), "dtype": ("float16", 5), "engine": ("gpu",),
    "fingerprint": ("abc", {"train": 5}), "parent": ("abc", {"run": 5, "at": 1},
                                                     {"run": "x", "at": INF}),
    "n_x": ("abc", 0, INF), "m": ("abc", -3), "since": (INF,),
    "train_accuracy": ("abc", 1.5, NAN), "l2": ("x", INF, -1.0), "final_cost": (NAN, "x"),
}


def _cases():
    for kind in ("gd", "nesterov", "dual-warm"):
        for run, file in ((kind, "state.npz"), (f"{kind}-stop", "checkpoint.npz")):
            for field, hows in ARRAYS[kind].items():
                for how in hows:
                    yield pytest.param(run, file, field, _array(field, how),
                                       id=f"{run}-{field}-{how}")
            for field, values in SCALARS[kind].items():
                for value in values:
                    yield pytest.param(run, file, field, _json(field, value),
                                       id=f"{run}-{field}-{_name(value)}")
    for run, file in (("gd", "state.npz"), ("nesterov-stop", "checkpoint.npz")):
        for field, values in INFO.items():
            for value in values:
                name = ".".join(field) if isinstance(field, tuple) else field
                yield pytest.param(run, file, name, _json(field, value),
                                   id=f"{run}-info-{name}-{_name(value)}")


def _name(value) -> str:
    return "delete" if value is DELETE else json.dumps(value)[:12]


def _tree(folder) -> dict:
    """Every file under `folder` and its bytes."""
    tree = {}
    for d, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(d, f), "rb") as file:
                tree[os.path.relpath(file.name, folder)] = file.read()
    return tree


def _one_line(err: str) -> bool:
    return err.startswith("Error: ") and err.count("\n") == 1


@pytest.mark.parametrize("run, file, field, change", list(_cases()))
def test_a_tampered_state_is_one_line_naming_the_file_and_the_field(cli, base, run, file,
                                                                    field, change):
    shutil.copytree(base[run], f"runs/{run}")
    shutil.copytree(base["gd"], "runs/good")
    path = f"runs/{run}/{file}"
    entries = _entries(path)
    change(entries)
    _save(path, entries)
    before = _tree("runs")
    code, out, err = cli(["train", "--resume", f"runs/{run}", "--iters", "5"])
    assert code == 1 and _one_line(err), err
    # the file, then the field first in the reason: "(since is Infinity, ...", "(config.lr ..."
    assert re.search(rf"runs/{run}/{file} [^(]*\({re.escape(field)}[ :.\[]", err), err
    assert "unexpected" not in err and "--lr" not in err and "learning rate" not in err, err
    assert _tree("runs") == before  # nothing written, nothing lost
    # the runs table: that run damaged (the file and the field), the other as usual
    code, out, err = cli(["runs", "--json"])
    assert code == 0 and err == "", err
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {run, "good"}
    named = rf"{re.escape(file)}: {re.escape(field)}[ :.\[]"  # the file, then the field
    assert re.match(named, rows[run]["damaged"]), rows[run]
    assert "damaged" not in rows["good"] and rows["good"]["train_accuracy"] is not None
    code, out, err = cli(["runs"])
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert any(line.startswith("good ") for line in lines), out
    assert re.search(rf"^{run} is damaged: {named}", out, re.MULTILINE), out
    assert _tree("runs") == before


# ---- `catlr runs` lists the others around a damaged run, whatever is damaged

def _rich(rows, width):
    from rich.console import Console

    from catlr.cli.render import RichConsole, runs_table

    buf = io.StringIO()
    runs_table(RichConsole(rich=Console(file=buf, width=width, force_terminal=False)), rows,
               "runs", False)
    return buf.getvalue()


DAMAGE = {  # (file, what is written into it, the field or words the reason names)
    "metrics-types": ("metrics.json", {"train_accuracy": "abc", "l2": "x"}, "train_accuracy"),
    "metrics-l2": ("metrics.json", {"l2": "x"}, "l2"),
    "metrics-parent": ("metrics.json", {"parent": {"run": 5, "at": "y"}}, "parent.run"),
    "metrics-infinity": ("metrics.json", {"final_cost": INF}, "final_cost"),
    "metrics-interval": ("metrics.json", {"test_accuracy_ci": [0.2, 3]}, "test_accuracy_ci[1]"),
    "metrics-warnings": ("metrics.json", "[1, 2]", "is not a JSON object"),
    "metrics-threshold": ("metrics.json", {"threshold": 1.5}, "threshold"),
    "metrics-threshold-choice": ("metrics.json", {"threshold_choice": {"f1": "x"}},
                                 "threshold_choice.f1"),
    "model": ("model.npz", b"PK not a model", "model.npz"),
    "config": ("config.toml", 'lr = "fast"\n', "lr must be a number"),
    "config-syntax": ("config.toml", "lr = \n", "fix its TOML syntax"),
    "costs-nan": ("costs.csv", "iteration,cost\n0,nan\n", "cost on line 2"),
    "costs-order": ("costs.csv", "iteration,cost\n5,0.6\n0,0.5\n", "iteration on line 3"),
    "costs-header": ("costs.csv", "it,cost\n", "header"),
    "costs-columns": ("costs.csv", "iteration,cost\n0\n", "line 2"),
    "state": ("state.npz", b"not a zip", "state.npz"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_runs_lists_every_other_run_around_a_damaged_one(cli, base, case):
    file, content, named = DAMAGE[case]
    for name in ("older", "bad", "newer"):
        shutil.copytree(base["gd"], f"runs/{name}")
    path = f"runs/bad/{file}"
    if isinstance(content, dict):
        with open(path) as f:
            metrics = json.load(f)
        content = json.dumps({**metrics, **content})
    with open(path, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)
    for age, name in enumerate(("older", "bad", "newer")):  # newest first: newer, bad, older
        os.utime(f"runs/{name}/model.npz", (age + 1, age + 1))
    before = _tree("runs")
    code, out, err = cli(["runs", "--json"])
    assert code == 0 and err == "", err
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["newer", "bad", "older"]
    assert file in rows[1]["damaged"] and named in rows[1]["damaged"], rows[1]["damaged"]
    for r in (rows[0], rows[2]):
        assert "damaged" not in r and r["lr"] == 0.005 and r["train_accuracy"] is not None
    code, out, err = cli(["runs"])  # piped: 80 columns
    assert code == 0 and err == "", err
    assert max(map(len, out.splitlines())) <= 80, out
    for name in ("newer", "bad", "older"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), out
    assert f"bad is damaged: {file}" in out and named in out.replace("\n    ", " ")
    text = _rich(rows, 80)  # a terminal of 80 columns
    assert max(map(len, text.splitlines())) <= 80, text
    assert "newer" in text and "older" in text and "damaged" in text
    assert _tree("runs") == before


# ---- round trips: every writer's output reads back equal

def test_every_file_of_a_run_reads_back_what_was_written(base):
    from catlr.config import from_saved
    from catlr.runs import read_config, read_costs, read_metrics, summary
    from catlr.runs.modelfile import load

    folder = base["gd"]
    model, meta = load(folder / "model.npz")
    # config.toml, re-read as a config file, is the run's settings: every one written
    written = json.loads(str(_entries(folder / "model.npz")["meta"]))["config"]
    assert read_config(folder) == written and from_saved(read_config(folder)) == meta["config"]
    # metrics.json: the same figures (the row `catlr runs` shows)
    assert read_metrics(folder) == json.loads(json.dumps(summary("gd", meta)))
    # costs.csv: the recorded costs (the same floats), then the final cost, and the held-out
    costs = read_costs(folder)
    every = meta["print_every"]
    assert costs["iteration"] == [i * every for i in range(len(model.costs_))] + [meta["iters"]]
    assert costs["cost"] == model.costs_ + [meta["final_cost"]]
    assert costs["validation_cost"] == meta["held_costs"] + [meta["val_cost"]]
    with open(folder / "costs.csv") as f:  # as the csv module reads it: the same text
        rows = list(csv.reader(f))
    assert [float(c) for c in [r[1] for r in rows[1:]]] == costs["cost"]


@pytest.mark.parametrize("run", ["gd", "nesterov", "dual-warm", "gd-stop", "nesterov-stop",
                                 "dual-warm-stop"])
def test_a_state_reads_back_what_was_written(base, run, tmp_path):
    from catlr.runs.state import load, save

    file = "checkpoint.npz" if run.endswith("-stop") else "state.npz"
    state, info = load(base[run] / file)
    again = tmp_path / "again.npz"
    save(again, state, info)
    a, b = _entries(base[run] / file), _entries(again)
    assert set(a) == set(b)
    for key in a:
        if key == "meta":
            assert json.loads(str(a[key])) == json.loads(str(b[key]))
        else:  # the same bits in the same float type
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


# ---- the output guard's kinds are registered by their writers

def test_each_kind_of_output_is_registered_by_the_module_that_writes_it():
    import catlr.runs
    import catlr.stages.evaluate  # noqa: F401
    from catlr.files.outputs import KINDS

    owners = {"model": "catlr.runs.modelfile", "state": "catlr.runs.state", "run": "catlr.runs",
              "text": "catlr.runs", "predictions": "catlr.stages.evaluate"}
    for kind, module in owners.items():
        assert KINDS[kind].own.__module__ == module, kind
    from catlr.files import outputs

    with open(outputs.__file__) as f:
        source = f.read()
    assert "model.npz" not in source and "PREDICTIONS_HEADER" not in source


def test_a_fresh_process_refuses_to_write_a_model_over_another_kind(tmp_path, small_folder):
    """The model's kind is registered before train's output check, also in a new process
    that imports nothing else first."""
    notes = tmp_path / "notes.npz"
    notes.write_bytes(b"PK\x03\x04 my own zip")
    r = subprocess.run([sys.executable, "-m", "catlr", "train", str(small_folder), "--iters",
                        "2", "--out", str(notes)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and _one_line(r.stderr), r.stderr
    assert "was not written by catlr" in r.stderr
    assert notes.read_bytes() == b"PK\x03\x04 my own zip"


# ---- the solvers' table: every consumer says what it says

def test_the_config_the_help_and_the_estimator_read_the_solvers_table():
    from catlr import LogisticRegression
    from catlr.config import CHOICES, FLAGS
    from catlr.errors import ParameterError
    from catlr.solvers import SOLVERS

    assert CHOICES["solver"] == tuple(SOLVERS) and CHOICES["solver"][0] == "gd"
    for name, s in SOLVERS.items():
        assert name in FLAGS["solver"].help
        assert (f"{name} (" in FLAGS["solver"].help)
        if s.extra:
            assert f'pip install "catlr[{s.extra}]"' in FLAGS["solver"].help
        X = np.random.default_rng(0).normal(size=(5, 8))
        Y = (np.arange(8) % 2).reshape(1, -1)
        model = LogisticRegression(iters=3, solver=name, form="dual")
        if "dual" in s.forms:
            assert model.fit(X, Y).form_ == "dual"
        else:
            with pytest.raises(ParameterError, match=f"{name} runs in the primal form"):
                model.fit(X, Y)
            assert LogisticRegression(iters=3, solver=name).fit(X, Y).form_ == "primal"


def test_train_refuses_what_the_table_says_each_solver_cannot_do(cli, small_folder):
    from catlr.solvers import SOLVERS

    for name, s in SOLVERS.items():
        code, out, err = cli(["train", small_folder, "--solver", name, "--form", "dual",
                              "--iters", "2", "--name", f"{name}-dual"])
        if "dual" in s.forms:
            assert code == 0, err
        else:
            assert code == 2 and _one_line(err), err
            assert f"--solver {name} runs in the primal form only" in err
        code, out, err = cli(["train", small_folder, "--solver", name, "--lr", "auto",
                              "--val-fraction", "0.25", "--iters", "2", "--name", f"{name}-auto"])
        if s.takes_lr:
            assert code == 0, err
        else:
            assert code == 2 and _one_line(err) and "--lr auto chooses" in err, err
            assert f"--solver {name} takes none" in err
    for name, s in SOLVERS.items():  # a resume: only a solver that keeps its state
        code, out, err = cli(["train", small_folder, "--solver", name, "--iters", "3",
                              "--name", name])
        assert code == 0, err
        assert os.path.isfile(f"runs/{name}/state.npz") == s.resumes
        code, out, err = cli(["train", "--resume", f"runs/{name}", "--iters", "2"])
        if s.resumes:
            assert code == 0, err
        else:
            assert code == 2 and _one_line(err) and s.resume_why in err, err
    code, out, err = cli(["sweep", small_folder, "--solver", "lbfgs", "--iters", "3",
                          "--lr", "0.1", "--lr", "0.01", "--json"])
    assert code == 0, err
    assert len(json.loads(out)) == (2 if SOLVERS["lbfgs"].takes_lr else 1)


BLOCKED = textwrap.dedent("""
    import sys
    for name in sys.argv[1].split(","):
        sys.modules[name] = None   # as if it were not installed
    from catlr.solvers import SOLVERS, require
    from catlr.errors import CatlrError
    for name in SOLVERS:
        try:
            require(name)
            print(name, "ok")
        except CatlrError as e:
            print(name, e)
""")


def test_a_solvers_package_is_named_with_its_extra_when_it_is_missing():
    from catlr.solvers import SOLVERS

    needed = sorted({m for s in SOLVERS.values() for m in s.needs})
    r = subprocess.run([sys.executable, "-c", BLOCKED, ",".join(needed)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    said = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    for name, s in SOLVERS.items():
        if s.needs:
            assert said[name] == (f"--solver {name} needs {s.needs[0]}, which is not installed: "
                                  f"pip install \"catlr[{s.extra}]\""), said
        else:
            assert said[name] == "ok"


def test_installed_answers_without_importing():
    from catlr.packages import installed

    assert installed("numpy") and installed("json") and not installed("no_such_package_xyz")
    assert not installed("no_such_package_xyz.sub")
    code = ("import sys; from catlr.packages import installed; "
            "print(installed('sklearn'), 'sklearn' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["True", "False"], r.stderr


def test_a_reason_shows_a_value_as_json_writes_it():
    from catlr.runs.checked import shown

    assert shown(INF) == "Infinity" and shown(-INF) == "-Infinity" and shown(NAN) == "NaN"
    assert shown("x" * 100).endswith("...") and len(shown("x" * 100)) == 40
    assert shown(np.zeros((2, 3))) == "an array of shape (2, 3) and dtype float64"

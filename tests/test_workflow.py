"""The first hour with your own photos, through the CLI: DATA as a user means it, runs that
are never lost, mistakes traced to files, progress, warnings, output that reads anywhere.
Every test runs in a fresh working folder (conftest), as a new clone would."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COURSE, PHOTOS, ROOT, joined, needs_course
from terminal import fits


@pytest.fixture
def fresh_data():
    """data/ as a fresh clone has it: README.md and readmes in subfolders, no data."""
    shutil.copytree(ROOT / "data", "data")
    assert not list(Path("data").rglob("*.h5"))
    return Path("data")


# ---- 1. the user's own commands ----

def test_empty_data_folder_says_what_is_missing(cli, fresh_data):
    code, out, err = cli(["train", "data/"])
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("Error: data/ holds no training data yet: copy the course's "
                          "train_catvnoncat.h5 and test_catvnoncat.h5 into it, or run "
                          "'catlr prepare PHOTOS' (it writes data/prepared.h5)")
    assert "--positive" not in err and "README" not in err


@needs_course
def test_course_pair_copied_into_data_then_the_three_commands(cli, fresh_data):
    for f in COURSE.glob("*.h5"):
        shutil.copy(f, fresh_data)
    code, out, err = cli(["train", "data/", "--lr", "0.005", "--iters", "2000"])
    assert code == 0, err
    assert "Cost after iteration 1900: 0.140872" in out and "test accuracy: 70.00%" in out
    assert "Saved the run in runs/train-1/" in out
    code, out, err = cli(["predict", PHOTOS / "cat-small.jpg"])
    assert code == 0, err
    assert "cat-small.jpg" in out and "Model: runs/train-1/model.npz (the newest run)" in out
    code, out, err = cli(["eval"])
    assert code == 0, err
    assert "Model runs/train-1/model.npz (the newest run) on the test split" in out
    assert "70.00%" in out


def test_prepare_then_train_data(cli, fresh_data, small_folder):
    code, out, err = cli(["prepare", small_folder])
    assert code == 0, err
    assert (fresh_data / "prepared.h5").exists()
    code, out, err = cli(["train", "data/", "--iters", "30"])
    assert code == 0, err
    assert f"Data: prepared {Path('data/prepared.h5').resolve()}" in out
    code, out, err = cli(["eval", "--json"])
    assert code == 0, err
    assert json.loads(out)["data"] == str(Path("data/prepared.h5").resolve())


@needs_course
def test_course_pair_one_folder_down_is_found(cli, fresh_data):
    for f in COURSE.glob("*.h5"):
        shutil.copy(f, fresh_data / "catvnoncat")
    code, out, err = cli(["train", "data/", "--iters", "10", "--json"])
    assert code == 0, err
    assert json.loads(out)["data"] == str((fresh_data / "catvnoncat").resolve())


def test_several_prepared_files_are_listed(cli, fresh_data, small_folder):
    for name in ("a.h5", "b.h5"):
        code, _, err = cli(["prepare", small_folder, "--out", fresh_data / name])
        assert code == 0, err
    code, _, err = cli(["train", "data/"])
    assert code == 1 and "holds 2 prepared files (a.h5, b.h5), pass the one to use" in err


@needs_course
def test_prepare_on_a_course_pair_points_to_train(cli):
    code, _, err = cli(["prepare", COURSE])
    assert code == 1 and f"catlr train {COURSE}" in err and "needs no preparing" in err


def test_layouts_are_in_the_help(cli):
    for command in ("train", "prepare"):
        code, out, _ = cli([command, "--help"])
        assert code == 0 and "cat/" in out and "non-cat/" in out and "train/" in out
        assert "{" not in out.splitlines()[0]  # usage: DATA, not {DATA}
    code, out, _ = cli(["train", "--help"])
    assert out.startswith("Usage: catlr train [OPTIONS] [DATA]\n")
    assert "train_catvnoncat.h5" in out and "prepared" in out


def test_command_summaries_are_whole(cli):
    code, out, _ = cli(["--help"])
    commands = out.split("Commands:")[1].strip().splitlines()
    assert len(commands) >= 8 and not any(line.rstrip().endswith("...") for line in commands)


def test_shell_completion_is_offered():
    import shlex
    import shutil

    script = Path(sys.executable).with_name("catlr")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "catlr"]
    # Typer finds the shell among catlr's parent processes: run it from each shell there is
    shells = [s for s in ("bash", "zsh", "fish") if shutil.which(s)]
    assert "bash" in shells
    for shell in shells:
        # "; exit": the shell stays catlr's parent instead of exec-ing it
        r = subprocess.run([shell, "-c", shlex.join([*command, "--show-completion"]) + "; exit"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "complete" in r.stdout and "catlr" in r.stdout, shell


# ---- 2. runs ----

def test_two_runs_in_a_row_keep_both_models(cli, small_folder):
    for lr in ("0.01", "0.02"):
        code, _, err = cli(["train", small_folder, "--iters", "20", "--lr", lr])
        assert code == 0, err
    runs = Path("runs")
    assert sorted(p.name for p in runs.iterdir()) == ["train-1", "train-2"]
    for name, lr in (("train-1", 0.01), ("train-2", 0.02)):
        files = {p.name for p in (runs / name).iterdir()}
        assert files == {"model.npz", "config.toml", "costs.csv", "metrics.json", "state.npz"}
        assert json.loads((runs / name / "metrics.json").read_text())["lr"] == lr
        costs = list(csv.reader((runs / name / "costs.csv").open()))
        # the test split's cost beside the training cost (no validation split: issue 18)
        assert costs[0] == ["iteration", "cost", "test_cost"] and costs[1][0] == "0"
    # the saved config is a valid --config file that gives the same run
    code, _, err = cli(["train", small_folder, "--config", runs / "train-2" / "config.toml",
                        "--out", "again.npz"])
    assert code == 0, err
    from catlr.runs.modelfile import load

    assert (load("again.npz")[0].w_ == load(runs / "train-2" / "model.npz")[0].w_).all()
    code, out, err = cli(["runs", "--json"])
    assert code == 0, err
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["train-2", "train-1"]  # newest first
    assert {"created", "data", "lr", "iters", "dtype", "final_cost", "train_accuracy",
            "test_accuracy", "warnings"} <= set(rows[0])
    code, out, _ = cli(["runs"])
    assert code == 0 and "train-2" in out and "train-1" in out and "0.02" in out


def test_names_exist_ok_and_out(cli, small_folder):
    code, out, err = cli(["train", small_folder, "--iters", "5", "--name", "first"])
    assert code == 0 and "runs/first/" in out, err
    code, _, err = cli(["train", small_folder, "--iters", "5", "--name", "first"])
    assert code == 2 and "run 'first' already exists" in err and "--exist-ok" in err
    code, _, err = cli(["train", small_folder, "--iters", "6", "--name", "first", "--exist-ok"])
    assert code == 0, err
    assert json.loads(Path("runs/first/metrics.json").read_text())["iters"] == 6
    code, out, err = cli(["train", small_folder, "--iters", "5", "--out", "exact.npz"])
    assert code == 0 and "Saved exact.npz" in out and Path("exact.npz").exists()
    assert sorted(p.name for p in Path("runs").iterdir()) == ["first"]  # --out makes no run
    code, _, err = cli(["train", small_folder, "--name", "../escape"])
    assert code == 2 and "cannot name a folder" in err


def test_eval_predict_inspect_use_the_newest_run_then_model_npz(cli, small_folder):
    code, _, err = cli(["eval"])
    assert code == 1 and "no model yet" in err and "catlr train DATA" in err
    code, _, err = cli(["train", small_folder, "--iters", "5", "--out", "model.npz"])
    assert code == 0, err
    code, out, _ = cli(["inspect"])
    assert code == 0 and "model.npz (no runs, the default file)" in out
    code, _, err = cli(["train", small_folder, "--iters", "7"])
    assert code == 0, err
    code, out, _ = cli(["inspect", "--json"])
    assert code == 0 and json.loads(out)["iters"] == 7
    code, out, _ = cli(["inspect"])
    assert "runs/train-1/model.npz (the newest run)" in out
    assert "made by catlr: seed 1, test fraction 0.2, stratified by class" in out


def test_train_does_not_import_matplotlib_unless_asked(small_folder, tmp_path):
    code = ("import sys; from catlr.cli import main\n"
            f"sys.argv = ['catlr', 'train', {str(small_folder)!r}, '--iters', '5']\n"
            "try: main()\nexcept SystemExit as e: assert e.code == 0, e.code\n"
            "print('MPL', 'matplotlib' in sys.modules, 'numba' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert "MPL False False" in r.stdout, r.stderr  # nor numba: in memory, no stream


def test_plot_goes_into_the_run_and_where_asked(cli, small_folder):
    code, out, err = cli(["train", small_folder, "--iters", "20", "--plot", "curve.png"])
    assert code == 0, err
    assert Path("curve.png").read_bytes() == Path("runs/train-1/cost.png").read_bytes()
    assert "cost.png" in out


# ---- 3. mistakes traced to files ----

def test_eval_predictions_csv_names_every_image(cli, small_folder):
    code, _, err = cli(["train", small_folder, "--iters", "40", "--test-fraction", "0.5"])
    assert code == 0, err
    code, out, err = cli(["eval", "--predictions", "p.csv", "--json"])
    assert code == 0, err
    figures = json.loads(out)
    rows = list(csv.DictReader(open("p.csv", encoding="utf-8")))
    assert len(rows) == figures["m"] == 8
    assert set(rows[0]) == {"path", "split", "index", "true_label", "probability", "predicted",
                            "correct"}
    assert all(r["path"].startswith(("cat/", "non-cat/")) for r in rows)
    assert [r["index"] for r in rows] == [str(i) for i in range(8)]
    wrong = sum(r["correct"] == "False" for r in rows)
    assert wrong == figures["fp"] + figures["fn"]
    for r in rows:
        assert (r["predicted"] == "cat") == (float(r["probability"]) > 0.5)
        assert (r["correct"] == "True") == (r["predicted"] == r["true_label"])


@needs_course
def test_predictions_for_the_course_pair_give_split_and_index(cli):
    code, _, err = cli(["train", COURSE, "--iters", "50"])
    assert code == 0, err
    code, _, err = cli(["eval", "--predictions", "p.csv", "--split", "train"])
    assert code == 0, err
    rows = list(csv.DictReader(open("p.csv")))
    assert len(rows) == 209 and rows[5]["path"] == "" and rows[5]["split"] == "train"
    assert rows[5]["index"] == "5"


def test_mistake_tiles_are_captioned_with_their_file(tmp_path):
    import numpy as np
    from PIL import Image

    from catlr.stages.plots import mistakes_sheet

    images = np.zeros((1, 8, 8, 3), np.uint8)
    sheets = []
    for name in ("cat/short.jpg", "cat/a-very-long-file-name-from-a-phone-IMG_20240101.jpg"):
        mistakes_sheet(images, [0], [0.9], [name], ["no", "yes"], tmp_path / "s.png", scale=8)
        sheets.append(np.asarray(Image.open(tmp_path / "s.png").convert("L")))
    caption = slice(34 + 64 + 30, 34 + 64 + 46)  # the third caption line under the tile
    assert not np.array_equal(sheets[0][caption], sheets[1][caption])
    assert (sheets[1][caption, 8 + 64:] == 255).all()  # the long name was cut to the tile


# ---- 4. progress ----

def test_the_bar_moves_when_costs_are_rare(small_folder):
    from catlr import config
    from catlr.events import Step
    from catlr.stages.train import train

    steps = []
    train(small_folder, config.resolve(None, iters=400, print_every=1_000_000), out="m.npz",
          on_event=lambda e: steps.append(e) if isinstance(e, Step) else None)
    assert len(steps) >= 400 // 20 and [s.i for s in steps] == sorted({s.i for s in steps})
    assert [s.cost is not None for s in steps].count(True) == 1  # only iteration 0 printed


def test_bars_show_the_time_left_on_a_terminal(small_folder):
    import io

    from rich.console import Console

    from catlr import config
    from catlr.cli.progress import events
    from catlr.cli.render import RichConsole
    from catlr.stages.train import train

    buf = io.StringIO()
    console = RichConsole(rich=Console(file=buf, force_terminal=True, width=120))
    with events(console) as on_event:
        train(small_folder, config.resolve(None, iters=3000), out="m.npz", on_event=on_event)
    text = buf.getvalue()
    assert "Training" in text and "left" in text and "Decoding images" in text


# ---- 5. a learning rate that is too large ----

def test_a_rising_cost_is_named_recorded_and_marked(cli, tmp_path):
    from catlr.stages.demo import make_sample

    folder = make_sample(tmp_path / "d", n_per_class=30, unseen=0)["images"]
    code, out, err = cli(["train", folder, "--lr", "10", "--iters", "300"])
    assert code == 0, err
    assert err.startswith("Warning: the cost rose during training (sampled every 20 "
                          "iterations, it rose at iterations ")
    assert err.count("\n") == 1
    # the rate it suggests is one at which the cost does not rise (issue 17): try it
    suggested = re.search(r"try --lr (\S+) ", err).group(1)
    assert float(suggested) < 10
    code, out, err2 = cli(["train", folder, "--lr", suggested, "--iters", "300", "--json"])
    assert code == 0 and json.loads(out)["warnings"] == [] and err2 == ""
    meta = json.loads(Path("runs/train-1/metrics.json").read_text())
    assert len(meta["warnings"]) == 1
    from catlr.runs.modelfile import load

    assert load("runs/train-1/model.npz")[1]["warnings"] == meta["warnings"]
    code, out, err = cli(["train", folder, "--lr", "10", "--iters", "300", "--json"])
    assert code == 0 and json.loads(out)["warnings"] == meta["warnings"]
    code, out, _ = cli(["runs"])
    assert out.count("cost rose") >= 2  # the two lr 10 runs, and the legend
    code, out, err = cli(["sweep", folder, "--lr", "10", "--lr", "0.001", "--iters", "200",
                          "--json"])
    assert code == 0, err
    assert [r["cost_rose"] for r in json.loads(out)] == [True, False]


@needs_course
@pytest.mark.parametrize("data", ["course", "demo"])
def test_quick_config_is_a_fair_first_look(cli, data, tmp_path):
    if data == "demo":
        from catlr.stages.demo import make_sample

        src = make_sample(tmp_path / "d")["images"]
    else:
        src = COURSE
    code, out, err = cli(["train", src, "--config", ROOT / "configs" / "quick.toml", "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["warnings"] == [] and result["costs"][-1] < result["costs"][0]
    assert result["test_accuracy"] >= 0.7


# ---- 6. output that reads well anywhere ----

def test_piped_output_fits_80_columns_each_message_whole(small_folder, tmp_path):
    """In a pipe a line over 80 columns is wrapped between words (a long path never cut),
    its continuation indented: a message reads whole, and joined() gives it back."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 4)
    shutil.copytree(small_folder, deep / "photos")
    (deep / "photos" / "cat" / "notes-with-a-long-name.txt").write_text("x")
    env = {**os.environ, "COLUMNS": "80"}
    r = subprocess.run([sys.executable, "-m", "catlr", "prepare", deep / "photos", "--out",
                        tmp_path / "p.h5"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert all(fits(line, 80) for line in r.stdout.splitlines()), r.stdout
    ignored = [line for line in joined(r.stdout).splitlines() if line.startswith("Ignored")]
    assert len(ignored) == 1 and ignored[0].endswith("notes-with-a-long-name.txt).")
    r = subprocess.run([sys.executable, "-m", "catlr", "train", tmp_path / "p.h5", "--iters", "5",
                        "--out", tmp_path / "m.npz"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "catlr", "eval", "--model", tmp_path / "m.npz"],
                       capture_output=True, text=True, env=env)
    first = joined(r.stdout).splitlines()[0]
    assert r.returncode == 0 and first.startswith("Model ") and first.endswith("images)")


def test_a_model_whose_data_is_gone_says_where_the_path_came_from(cli, small_folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_folder, copy)
    code, _, err = cli(["train", copy, "--iters", "5"])
    assert code == 0, err
    shutil.rmtree(copy)
    code, _, err = cli(["eval"])
    assert code == 1 and "the path recorded in the model file" in err
    assert "catlr eval DATA" in err and str(copy) in err


def test_gitignore_covers_what_catlr_writes():
    names = ["runs/train-1/model.npz", "catlr-demo/model.npz", "model.npz", "data/prepared.h5"]
    r = subprocess.run(["git", "check-ignore", *names], cwd=ROOT, capture_output=True, text=True)
    if r.returncode == 128:
        pytest.skip("not a git checkout")
    assert r.stdout.split() == names
    tracked = subprocess.run(["git", "ls-files", "runs", "catlr-demo", "model.npz"], cwd=ROOT,
                             capture_output=True, text=True).stdout
    assert tracked == ""  # nothing catlr writes is committed

"""The first hour, round two (issue 17): the right data, tables that fit, numbers that agree,
errors that guess. Each point through the CLI: exit code, message, files."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COURSE, joined, needs_course
from PIL import Image


def _one_line(err):
    return err.startswith("Error: ") and err.count("\n") == 1 and "unexpected" not in err


def _run(*args, cwd=None, env=None):
    r = subprocess.run([sys.executable, "-m", "catlr", *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)
    return r.returncode, r.stdout, r.stderr


# ---- 1. piped output: whole lines, never padded or filled

def test_every_command_piped_prints_lines_no_longer_than_their_content(small_folder, tmp_path):
    os.chdir(tmp_path)
    photo = next((small_folder / "cat").glob("*.jpg"))
    commands = [
        ["prepare", small_folder, "--out", "p.h5"],
        ["train", "p.h5", "--iters", "30"],
        ["train", "p.h5", "--iters", "30", "--lr", "50"],  # a warning, in inspect's table
        ["eval"], ["predict", photo], ["predict", small_folder, "--csv"],
        ["sweep", "p.h5", "--iters", "20"], ["inspect"], ["runs"], ["runs", "--wide"],
        ["demo", "d"], ["--help"], ["train", "--help"],
    ]
    for args in commands:
        code, out, err = _run(*args, cwd=tmp_path)
        assert code == 0, (args, err)
        for line in (out + err).splitlines():
            assert line == line.rstrip(), (args, line)            # no padding
            assert not re.search(r"(\S)\1{60,}", line), (args, line)  # no rule filling a width
            assert len(line) < 400, (args, line)
    code, out, _ = _run("demo", "d2", cwd=tmp_path)
    assert "$ catlr prepare" in out and len(out) < 20_000  # was 1.2 MB of rules


# ---- 2. the runs table at 80 columns

def _render_runs(width, rows, wide=False):
    from rich.console import Console

    from catlr.cli.render import RichConsole, runs_table

    buf = io.StringIO()
    console = RichConsole(rich=Console(file=buf, width=width, force_terminal=False))
    runs_table(console, rows, "runs", wide)
    return buf.getvalue()


@needs_course
def test_runs_stay_readable_at_80_and_60_columns(cli, small_folder):
    code, _, err = cli(["prepare", small_folder])
    assert code == 0, err
    for args in (["train", COURSE, "--iters", "200"],
                 ["train", "data/prepared.h5", "--iters", "100", "--lr", "0.02"]):
        code, _, err = cli(args)
        assert code == 0, err
    from catlr.runs import table

    rows = table("runs")
    for width in (80, 60):
        text = _render_runs(width, rows)
        assert max(map(len, text.splitlines())) <= width, text
        assert "…" not in text and "train-1" in text and "train-2" in text
        for r in rows:  # every figure whole
            for figure in (f"{r['final_cost']:.6f}", f"{r['train_accuracy']:.2%}",
                           f"{r['test_accuracy']:.2%}", f"{r['lr']:g}"):
                assert figure in text, (width, figure, text)
        # the course pair and the prepared file tell apart
        assert "course" in text and "prepared" in text and "data/prepared.h5" in text
    text = _render_runs(200, rows)
    assert "┃ run" in text and "…" not in text  # a wide terminal: one table


# ---- 3. a folder holding more than one kind of data

@needs_course
def test_a_folder_with_the_pair_and_a_prepared_file_is_refused_until_one_is_picked(
        cli, small_folder):
    os.makedirs("data")
    for f in COURSE.glob("*.h5"):
        shutil.copy(f, "data")
    code, _, err = cli(["prepare", small_folder])  # writes data/prepared.h5 beside the pair
    assert code == 0, err
    code, out, err = cli(["train", "data/", "--iters", "3"])
    assert code == 1 and _one_line(err), err
    assert "holds 2 kinds of data" in err and "the course pair" in err
    assert "data/prepared.h5" in err and "data/train_catvnoncat.h5" in err
    assert not os.path.exists("runs")
    code, out, err = cli(["train", "data/train_catvnoncat.h5", "--iters", "3"])
    assert code == 0 and "Data: course" in out and "the course pair in" in out, err
    code, out, err = cli(["train", "data/prepared.h5", "--iters", "3"])
    assert code == 0 and "Data: prepared" in out, err


# ---- 4. prepare says what it replaces; eval says when the data changed

def test_prepare_again_says_what_it_replaced_and_eval_notices(cli, small_folder, tmp_path):
    from catlr.stages.demo import make_sample

    code, out, err = cli(["prepare", small_folder])
    assert code == 0 and "Replaced" not in out, err
    code, _, err = cli(["train", "data/prepared.h5", "--iters", "20"])
    assert code == 0, err
    code, out, err = cli(["eval"])
    assert code == 0 and "changed since" not in err, err
    other = make_sample(tmp_path / "other", n_per_class=10, seed=5, unseen=0)["images"]
    code, out, err = cli(["prepare", other])
    assert code == 0, err
    assert re.search(r"Replaced \S+prepared.h5, which held 16 images from \S+images "
                     r"\(prepared \d{4}-\d\d-\d\d", joined(out)), out
    code, out, err = cli(["eval", "--json"])
    assert code == 0 and err.count("Warning:") >= 1, err
    assert "is not the one runs/train-1/model.npz was trained and tested with" in err
    assert json.loads(out)["data_changed"] is True


def test_a_splits_fingerprint_is_its_images_hashed_in_order(tmp_path, cli, small_folder):
    """data.fingerprint.of_split (hashed in threads, a block read ahead) against the rule
    written plainly: blake2b-128 of each image's bytes, then of the digests each followed
    by its label; an array, and a dataset on disk read a block at a time; and what
    prepare records for a folder is what of_split computes on the file it wrote."""
    import hashlib

    import h5py

    from catlr.data.fingerprint import BLOCK, of_split

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2 * BLOCK + 37, 4, 4, 3), np.uint8)
    y = rng.integers(0, 2, len(x))
    plain = hashlib.blake2b(digest_size=16)
    for img, label in zip(x, y):
        plain.update(hashlib.blake2b(img.tobytes(), digest_size=16).digest() + bytes([label]))
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(16, 4, 4, 3))
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert of_split(f["x"], y) == of_split(x, y) == plain.hexdigest()
    assert of_split(x[:0], y[:0]) == hashlib.blake2b(digest_size=16).hexdigest()
    assert of_split(x[::-1], y[::-1]) != plain.hexdigest()
    code, _, err = cli(["prepare", small_folder, "--out", tmp_path / "p.h5"])
    assert code == 0, err
    with h5py.File(tmp_path / "p.h5", "r") as f:
        for split in ("train", "test"):
            assert f.attrs[f"fingerprint_{split}"] == of_split(f[f"{split}_set_x"],
                                                               f[f"{split}_set_y"][()])


# ---- 5. numbers too large; a missing engine before any data

def test_absurd_iteration_counts_are_flag_errors(cli, small_folder):
    code, _, err = cli(["train", small_folder, "--iters", "1" + "0" * 400])
    assert code == 2 and _one_line(err) and "--iters must be at most 1000000000" in err


def test_a_missing_engine_is_said_before_the_data_is_read(cli, small_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, out, err = cli(["train", small_folder, "--engine", "dask"])
    assert code == 1 and _one_line(err) and 'pip install "catlr[dask]"' in err
    assert out == ""  # no Data line first


# ---- 6. one final cost everywhere; the warning's iterations explained

@needs_course
def test_the_final_cost_is_printed_and_the_same_everywhere(cli):
    code, out, err = cli(["train", COURSE])
    assert code == 0, err
    assert "Cost after iteration 1900: 0.140872" in out  # the course's 20 printed costs, kept
    assert "Final cost (after iteration 2000, the last): 0.135608" in out
    metrics = json.loads(Path("runs/train-1/metrics.json").read_text())
    assert f"{metrics['final_cost']:f}" == "0.135608"
    rows = list(csv.reader(open("runs/train-1/costs.csv")))
    assert rows[-1][0] == "2000" and f"{float(rows[-1][1]):f}" == "0.135608"
    assert rows[-2][0] == "1900" and len(rows) == 22
    code, out, _ = cli(["runs"])
    assert "0.135608" in out


# ---- 7. progress: labelled times, bars that end at their total, narrow terminals

def test_bars_say_elapsed_and_left_and_end_at_their_total(small_folder):
    from rich.console import Console

    from catlr import config
    from catlr.cli.progress import events
    from catlr.cli.render import RichConsole
    from catlr.stages.train import sweep

    for width in (60, 100):
        buf = io.StringIO()
        console = RichConsole(rich=Console(file=buf, force_terminal=True, width=width))
        with events(console) as on_event:
            sweep(small_folder, config.resolve(None, iters=150), [0.1, 0.01], on_event=on_event)
        frames = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", f) for f in buf.getvalue().split("\r")]
        bars = [f for f in frames if "lr = " in f]
        assert bars and all("elapsed," in f and "left" in f for f in bars), bars[-3:]
        assert any("150/150" in f for f in bars)  # each sweep bar ends at its total
        assert all(len(line) <= width for f in bars for line in f.splitlines())


# ---- 8. photos without class folders; class folders named a little differently

def test_train_on_loose_photos_gives_the_class_folder_advice(cli, small_folder, tmp_path):
    holiday = tmp_path / "holiday"
    holiday.mkdir()
    for p in (small_folder / "cat").glob("*"):
        shutil.copy(p, holiday)
    code, _, err = cli(["train", holiday])
    assert code == 1 and _one_line(err)
    assert "holds 8 images but no class folders" in err and f"{holiday}/cat/" in err
    assert "copy the course's" not in err


@pytest.mark.parametrize("name", ["Cat", "cats", "Cats"])
def test_a_plural_or_capitalised_class_folder_is_used_and_said(cli, small_folder, name):
    os.rename(small_folder / "cat", small_folder / name)
    code, out, err = cli(["prepare", small_folder, "--out", "p.h5", "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["classes"] == ["non-cat", name]
    assert any(f"using {name}/ as the positive class" in n for n in report["notes"])
    code, out, err = cli(["train", small_folder, "--iters", "3", "--out", "m.npz"])
    assert code == 0 and f"Note: using {name}/ as the positive class" in out, err


# ---- 9. the mistakes sheet: what it says matches what it shows

def test_eval_says_how_many_mistakes_the_sheet_shows(cli, monkeypatch):
    from catlr.stages import plots

    rng = np.random.default_rng(0)
    for c in ("cat", "non-cat"):
        os.makedirs(f"noise/{c}")
        for i in range(90):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(f"noise/{c}/{i}.png")
    code, _, err = cli(["train", "noise", "--iters", "5", "--test-fraction", "0.9"])
    assert code == 0, err
    monkeypatch.setattr(plots, "MISTAKES", 10)
    code, out, err = cli(["eval", "--errors", "many.png"])
    assert code == 0, err
    wrong = re.search(r"Saved the first 10 of the (\d+) misclassified images", out)
    assert wrong and int(wrong.group(1)) > 10, out


# ---- 10. the majority-class baseline

def test_a_model_that_does_not_beat_the_larger_class_is_flagged(cli, tmp_path):
    rng = np.random.default_rng(1)
    for c, n in (("cat", 30), ("non-cat", 60)):
        os.makedirs(f"d/{c}")
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(f"d/{c}/{i}.png")
    code, _, err = cli(["train", "d", "--iters", "3", "--lr", "0.0001"])
    assert code == 0, err
    code, out, err = cli(["eval", "--json"])
    f = json.loads(out)
    assert f["baseline"]["label"] == 0 and f["baseline"]["accuracy"] == pytest.approx(12 / 18)
    if f["accuracy"] <= f["baseline"]["accuracy"]:
        assert "does not beat always answering non-cat" in err
    code, out, _ = cli(["eval"])
    assert "always non-cat" in out and "66.67%" in out


# ---- 11. the smaller points

def test_plural_and_used_counts_read_right(cli, small_folder):
    (small_folder / "cat" / "notes.txt").write_text("x")
    (small_folder / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    code, out, err = cli(["prepare", small_folder, "--out", "p.h5"])
    assert code == 0, err
    assert "Ignored 1 file that is not an image or not in a class folder" in out
    assert re.search(r"Decoded 17 files in .*: 16 used\.", out), out


@pytest.mark.parametrize("flag", ["--plot", "--errors"])
def test_a_picture_named_jpg_is_refused(cli, small_folder, flag):
    args = (["train", small_folder, "--iters", "3", "--plot", "curve.jpg"] if flag == "--plot"
            else ["eval", "--errors", "mistakes.jpg"])
    if flag == "--errors":
        assert cli(["train", small_folder, "--iters", "3"])[0] == 0
    code, _, err = cli(args)
    assert code == 2 and _one_line(err) and "name the file with .png" in err
    assert not os.path.exists("curve.jpg") and not os.path.exists("mistakes.jpg")


def test_predict_keeps_the_order_of_its_inputs(cli, small_folder):
    assert cli(["train", small_folder, "--iters", "3"])[0] == 0
    a, b = sorted((small_folder / "cat").glob("*.jpg"))[:2]
    code, out, _ = cli(["predict", a, "nothing-here.jpg", b, "--json"])
    assert code == 1
    assert [r["path"] for r in json.loads(out)] == [str(a), "nothing-here.jpg", str(b)]


def test_a_flagged_model_repeats_its_warning_when_used(cli, tmp_path):
    from catlr.stages.demo import make_sample

    folder = make_sample(tmp_path / "d", n_per_class=30, unseen=0)["images"]
    code, _, err = cli(["train", folder, "--iters", "300", "--lr", "10"])
    assert code == 0 and "cost rose" in err
    photo = next((Path(folder) / "cat").glob("*.jpg"))
    for args in (["predict", photo], ["eval"]):
        code, out, err = cli(args)
        assert code == 0 and "Warning: runs/train-1/model.npz: the cost rose" in err, args


def test_predictions_name_the_true_label_so(cli, small_folder):
    assert cli(["train", small_folder, "--iters", "3"])[0] == 0
    code, _, err = cli(["eval", "--predictions", "p.csv"])
    assert code == 0, err
    assert open("p.csv").readline().strip() == \
        "path,split,index,true_label,probability,predicted,correct"


# ---- 12. what to do next; photos far from square

def test_train_says_what_to_do_next(cli, small_folder):
    code, out, err = cli(["train", small_folder, "--iters", "3"])
    assert code == 0 and "Next: 'catlr eval'" in out and "'catlr predict PHOTO'" in out


def test_prepare_counts_the_photos_far_from_square(cli, tmp_path):
    for c in ("cat", "non-cat"):
        os.makedirs(f"p/{c}")
        Image.new("RGB", (300, 100), "red").save(f"p/{c}/wide.png")
        Image.new("RGB", (100, 100), "blue").save(f"p/{c}/square.png")
        Image.new("RGB", (100, 90), "green").save(f"p/{c}/nearly.png")
    code, out, err = cli(["prepare", "p", "--out", "p.h5"])
    assert code == 0, err
    assert "2 images were far from square" in out and "--fit crop" in out
    code, out, err = cli(["prepare", "p", "--out", "q.h5", "--fit", "crop"])
    assert code == 0 and "far from square" not in out

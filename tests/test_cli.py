"""The commands as a user runs them: exit codes, one-line messages, --json shapes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import PHOTOS, joined, needs_course
from PIL import Image


def test_help_imports_no_heavy_module():
    code = ("import sys; from catlr.cli import main; sys.argv=['catlr','--help']\n"
            "try: main()\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('numpy','h5py','PIL','matplotlib','rich','dask','distributed',"
            "'zarr','numba') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "Usage: catlr" in out and "HEAVY []" in out


def test_usage_error_imports_nothing_heavy():
    code = ("import sys; from catlr.cli import main; sys.argv=['catlr','train','x','--lr','-1']\n"
            "try: main()\nexcept SystemExit as e: print('CODE', e.code)\n"
            "print('HEAVY', [m for m in ('numpy','h5py','PIL','matplotlib') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "CODE 2" in r.stdout and "HEAVY []" in r.stdout
    assert r.stderr.startswith("Error: --lr must be a positive finite number")


@needs_course
def test_train_on_hdf5_imports_no_pillow_and_one_photo_no_openssl(course_model, tmp_path):
    """Start-up (bench/startup.py): `catlr train` on the course's HDF5 pair imports neither
    Pillow nor the folder decoding; `catlr predict PHOTO` neither hashlib (it loads
    OpenSSL's library) nor the progress bars; both still print what they printed."""
    from conftest import COURSE

    code = ("import sys\nsys.argv = ['catlr', *sys.argv[1:]]\nfrom catlr.entry import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print('LOADED', sorted(m for m in ('PIL', 'catlr.data.ingest', 'hashlib', "
            "'catlr.cli.progress') if m in sys.modules), code)")
    model, _ = course_model
    train = subprocess.run([sys.executable, "-c", code, "train", str(COURSE), "--iters", "20",
                            "--out", str(tmp_path / "m.npz")], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
    assert "Saved" in train.stdout and train.stderr == "", train.stderr
    assert train.stdout.splitlines()[-1] == "LOADED ['catlr.cli.progress', 'hashlib'] 0"
    photo = PHOTOS / "cat-small.jpg"
    one = subprocess.run([sys.executable, "-c", code, "predict", str(photo), "--model",
                          str(model)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert one.stdout.splitlines()[-1] == "LOADED ['PIL', 'catlr.data.ingest'] 0", one.stdout
    assert "cat-small.jpg" in one.stdout and one.stderr == "", one.stderr


def test_python_dash_m_works():
    r = subprocess.run([sys.executable, "-m", "catlr", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "prepare" in r.stdout


@pytest.mark.parametrize("args,code,message", [
    (["train"], 2, "Missing argument"),
    (["train", "x", "--lr", "-1"], 2, "--lr must be a positive finite number"),
    (["train", "x", "--lr", "nan"], 2, "--lr must be a positive finite number"),
    (["train", "x", "--lr", "inf"], 2, "--lr must be a positive finite number"),
    (["train", "x", "--iters", "0"], 2, "--iters must be a positive integer"),
    (["train", "x", "--iters", "1.5"], 2, "Invalid value for '--iters'"),
    (["prepare", "x", "--test-fraction", "1"], 2, "--test-fraction must be between 0 and 1"),
    (["prepare", "x", "--size", "0"], 2, "--size must be a positive integer"),
    (["prepare", "x", "--fit", "zoom"], 2, "--fit must be one of stretch, crop, pad"),
    (["bogus"], 2, "No such command"),
    (["train", "/no/such/folder"], 1, "/no/such/folder does not exist"),
    (["eval", "--model", "/no/such.npz"], 1, "model file /no/such.npz not found"),
    (["predict", "x.jpg", "--model", "/no/such.npz"], 1, "model file /no/such.npz not found"),
])
def test_errors_are_one_line(args, code, message, cli):
    got, out, err = cli(args)
    assert got == code
    assert err.startswith("Error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""


@needs_course
def test_eval_finds_data_from_model(course_model, cli):
    path, _ = course_model
    code, out, err = cli(["eval", "--model", path, "--json"])
    assert code == 0, err
    f = json.loads(out)
    assert f["accuracy"] == pytest.approx(0.70) and f["tp"] + f["fp"] + f["tn"] + f["fn"] == 50
    tp, fp, fn = f["tp"], f["fp"], f["fn"]
    assert f["precision"] == pytest.approx(tp / (tp + fp), abs=1e-12)
    assert f["recall"] == pytest.approx(tp / (tp + fn), abs=1e-12)
    assert f["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-12)
    assert 0.5 < f["roc_auc"] <= 1 and f["log_loss"] > 0
    code, out, err = cli(["eval", "--model", path, "--split", "train", "--json"])
    assert code == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(207 / 209)
    code, out, _ = cli(["eval", "--model", path])
    assert code == 0 and "Confusion matrix" in out and "accuracy" in out and "70.00%" in out


@needs_course
def test_predict_real_photos(course_model, cli):
    path, _ = course_model
    code, out, err = cli(["predict", PHOTOS / "cat-small.jpg", PHOTOS / "cat-in-iran.jpg",
                          "--model", path, "--json"])
    assert code == 0, err
    rows = json.loads(out)
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["cat-small.jpg", "cat-in-iran.jpg"]
    for r in rows:
        assert 0 < r["probability"] < 1 and r["label"] in ("cat", "non-cat")
        assert r["label"] == ("cat" if r["probability"] > 0.5 else "non-cat")
    code, out, _ = cli(["predict", PHOTOS, "--model", path])
    assert code == 0 and "cat-in-iran.jpg" in out
    # a table when its rows fit 80 columns, else each image on two lines: which one depends
    # on how long the photos' folder's path is (tests/test_fits.py checks both layouts)
    if len(str(PHOTOS / "cat-in-iran.jpg")) + 2 + 11 + 2 + len("non-cat") <= 80:
        assert out.split()[:3] == ["path", "probability", "label"], out
    else:
        assert out.splitlines()[1].split()[0] == "probability", out


@needs_course
def test_predict_matches_training_preprocessing(course_model, course, cli, tmp_path):
    """An image saved losslessly from the test set gets the probability eval computes for it."""
    import catlr.runs.modelfile as mf

    path, _ = course_model
    x, _ = course["test"]
    Image.fromarray(x[3]).save(tmp_path / "t3.png")
    model, _ = mf.load(path)
    expected = model.predict_proba(x[3].reshape(-1, 1) / 255.0).item()
    code, out, _ = cli(["predict", tmp_path / "t3.png", "--model", path, "--json"])
    assert json.loads(out)[0]["probability"] == pytest.approx(expected, rel=1e-12)


def test_predict_folder_json_has_a_row_per_image_and_errors(tmp_path, cli, small_folder):
    model = tmp_path / "m.npz"
    code, _, err = cli(["train", small_folder, "--iters", "50", "--out", model])
    assert code == 0, err
    n = len(list((small_folder / "cat").iterdir())) + len(list((small_folder / "non-cat").iterdir()))
    code, out, _ = cli(["predict", small_folder, "--model", model, "--json"])
    assert code == 0 and len(json.loads(out)) == n
    (small_folder / "cat" / "broken.png").write_bytes(b"nope")
    code, out, err = cli(["predict", small_folder, small_folder / "missing.jpg",
                          str(small_folder / "non-cat" / "*.png"), "--model", model, "--json"])
    rows = json.loads(out)
    assert code == 1
    errors = {r["path"].rsplit("/", 1)[1]: r["error"] for r in rows if "error" in r}
    assert errors == {"broken.png": "not an image", "missing.jpg": "no such file or folder"}
    assert len(rows) == n + 2  # the glob's files were already found through the folder
    code, out, _ = cli(["predict", small_folder, "--model", model, "--csv"])
    assert code == 1  # broken.png is an error row
    lines = out.strip().splitlines()
    assert lines[0] == "path,probability,label,error" and len(lines) == n + 2


def test_config_file_and_flag_precedence(tmp_path, cli, small_folder):
    import catlr.runs.modelfile as mf

    cfg = tmp_path / "c.toml"
    cfg.write_text("lr = 0.01\niters = 30\nprint_every = 10\n")
    code, out, err = cli(["train", small_folder, "--config", cfg, "--iters", "20",
                          "--out", tmp_path / "m.npz"])
    assert code == 0, err
    _, meta = mf.load(tmp_path / "m.npz")
    assert meta["lr"] == 0.01 and meta["iters"] == 20 and meta["config"]["print_every"] == 10
    assert "Cost after iteration 10:" in out
    cfg.write_text("lr = 0.01\nlearning_rate = 3\n")
    code, _, err = cli(["train", small_folder, "--config", cfg])
    assert code == 1 and "unknown key 'learning_rate'" in err and "valid keys are lr, iters" in err


def test_sweep_reads_iters_and_rates_from_a_config_file(tmp_path, cli, small_folder):
    cfg = tmp_path / "s.toml"
    cfg.write_text("iters = 30\nprint_every = 10\nsweep_lrs = [0.2, 0.02]\n")
    code, out, err = cli(["sweep", small_folder, "--config", cfg, "--json"])
    assert code == 0, err
    rows = json.loads(out)
    assert [r["lr"] for r in rows] == [0.2, 0.02]
    assert all(len(r["costs"]) == 3 and r["print_every"] == 10 for r in rows)  # 0, 10, 20
    code, out, err = cli(["sweep", small_folder, "--config", cfg, "--iters", "20", "--lr", "0.5",
                          "--json"])
    assert code == 0, err
    assert [(r["lr"], len(r["costs"])) for r in json.loads(out)] == [(0.5, 2)]  # flags win


def test_sweep_defaults_come_from_the_defaults_block(tmp_path, cli, small_folder, monkeypatch):
    from catlr import config

    monkeypatch.setitem(config.DEFAULTS, "sweep_lrs", [0.3])
    monkeypatch.setitem(config.DEFAULTS, "iters", 7)
    code, out, err = cli(["sweep", small_folder, "--json", "--print-every", "1"])
    assert code == 0, err
    assert [(r["lr"], len(r["costs"])) for r in json.loads(out)] == [(0.3, 7)]


def test_sweep_takes_the_data_flags_train_takes(tmp_path, cli, small_folder):
    code, out, err = cli(["sweep", small_folder, "--iters", "20", "--lr", "0.1", "--size", "16",
                          "--fit", "pad", "--dtype", "float32", "--form", "primal", "--json"])
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["lr"] == 0.1 and len(row["costs"]) == 1
    code, _, err = cli(["sweep", small_folder, "--fit", "zoom"])
    assert code == 2 and "--fit must be one of stretch, crop, pad" in err


def test_default_config_file_matches_defaults():
    from conftest import ROOT

    from catlr.config import DEFAULTS, read_toml

    assert read_toml(ROOT / "configs" / "default.toml") == DEFAULTS
    for extra in (ROOT / "configs").glob("*.toml"):
        read_toml(extra)  # every shipped config is valid


def test_sweep_inspect_and_plots(tmp_path, cli, small_folder):
    code, out, err = cli(["sweep", small_folder, "--lr", "0.1", "--lr", "0.01", "--iters", "40",
                          "--plot", tmp_path / "sweep.png", "--json"])
    assert code == 0, err
    rows = json.loads(out)
    assert [r["lr"] for r in rows] == [0.1, 0.01] and rows[0]["final_cost"] < rows[1]["final_cost"]
    _assert_picture(tmp_path / "sweep.png", min_size=(300, 200))
    model = tmp_path / "m.npz"
    code, _, err = cli(["train", small_folder, "--iters", "40", "--out", model,
                        "--plot", tmp_path / "cost.png"])
    assert code == 0, err
    _assert_picture(tmp_path / "cost.png", min_size=(300, 200))
    code, out, _ = cli(["inspect", model, "--weights", tmp_path / "w.png"])
    assert code == 0 and "image_size" in out
    _assert_picture(tmp_path / "w.png", min_size=(500, 150))
    code, out, _ = cli(["inspect", model, "--json"])
    assert code == 0 and json.loads(out)["image_size"] == 64
    code, out, _ = cli(["eval", "--model", model, "--errors", tmp_path / "err.png"])
    assert code == 0
    _assert_picture(tmp_path / "err.png", min_size=(300, 30))


def _assert_picture(path, min_size):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        a = np.asarray(im.convert("RGB"))
    assert a.std() > 5 and len(np.unique(a.reshape(-1, 3), axis=0)) > 3  # not blank


def test_demo_runs_offline(tmp_path):
    r = subprocess.run([sys.executable, "-m", "catlr", "demo", str(tmp_path / "d")],
                       capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    code, out, err = r.returncode, r.stdout, r.stderr
    assert code == 0, err
    for step in ("catlr prepare", "catlr train", "catlr eval", "catlr predict", "test accuracy"):
        assert step in out
    for name in ("prepared.h5", "model.npz", "cost.png", "errors.png"):
        assert (tmp_path / "d" / name).exists()


@needs_course
def test_train_on_prepared_file_and_course_pair_agree(tmp_path, cli, course_png_copy, course_model):
    import catlr.runs.modelfile as mf

    code, _, err = cli(["prepare", course_png_copy, "--out", tmp_path / "p.h5"])
    assert code == 0, err
    code, _, err = cli(["train", tmp_path / "p.h5", "--out", tmp_path / "p.npz"])
    assert code == 0, err
    a, _ = mf.load(tmp_path / "p.npz")
    b, _ = mf.load(course_model[0])
    assert np.array_equal(a.w_, b.w_)  # same arrays, same arithmetic: bit for bit


def test_eval_on_a_folder_uses_the_very_split_train_held_out(tmp_path, cli, small_folder):
    import catlr.runs.modelfile as mf

    model = tmp_path / "m.npz"
    code, _, err = cli(["train", small_folder, "--iters", "80", "--test-fraction", "0.25",
                        "--seed", "7", "--out", model])
    assert code == 0, err
    _, meta = mf.load(model)
    assert meta["split"] == {"seed": 7, "test_fraction": 0.25} and meta["m_test"] == 4
    code, out, err = cli(["eval", "--model", model, "--json"])
    assert code == 0, err
    f = json.loads(out)
    assert f["m"] == 4 and f["accuracy"] == pytest.approx(meta["test_accuracy"])
    code, out, err = cli(["eval", "--model", model, "--split", "train", "--json"])
    assert code == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(meta["train_accuracy"])


def test_library_use_from_python(tmp_path, small_folder):
    from catlr import config
    from catlr.stages import evaluate, predict, train

    cfg = config.resolve(None, iters=30)
    model, meta, saved = train.train(small_folder, cfg, out=tmp_path / "m.npz")
    assert saved.model == str(tmp_path / "m.npz") and saved.folder is None
    assert model.w_.shape == (12288, 1) and meta["form"] == "dual"
    assert evaluate.evaluate(tmp_path / "m.npz").figures["m"] == meta["m_test"]
    rows = predict.predict([small_folder / "cat"], tmp_path / "m.npz")
    assert len(rows) == 8 and all(0 <= r["probability"] <= 1 for r in rows)


def test_train_on_a_folder_names_the_files_it_skipped(tmp_path, cli, small_folder):
    (small_folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    code, out, err = cli(["train", small_folder, "--iters", "10", "--out", tmp_path / "m.npz"])
    assert code == 0, err
    line = next(x for x in joined(out).splitlines() if x.startswith("Skipped"))
    assert line.startswith("Skipped 1 unreadable file: cat/broken.jpg: truncated or corrupt (")
    assert line.count("(") == line.count(")") and "))" not in line  # no doubled ")"


def test_mistakes_sheet_is_capped_and_ordered(tmp_path):
    from catlr.stages.plots import mistakes_sheet

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (200, 8, 8, 3), dtype=np.uint8)
    labels = np.zeros(200, int)
    probs = np.linspace(0.51, 0.99, 200)  # every one a mistake, the last the most confident
    n = mistakes_sheet(images, labels, probs, [str(i) for i in range(200)], ["no", "yes"],
                       tmp_path / "s.png", scale=1, columns=10, limit=30)
    assert n == 200
    with Image.open(tmp_path / "s.png") as im:
        sheet = np.asarray(im.convert("RGB"))
    assert sheet.shape[0] < 34 + 3 * (8 + 48 + 8) + 20  # 30 tiles in 3 rows, not 20 rows
    assert np.array_equal(sheet[34:42, 8:16], images[199])  # most confident mistake first


def test_verbose_says_which_form_and_float32_is_recorded(tmp_path, cli, small_folder):
    import catlr.runs.modelfile as mf

    code, out, err = cli(["train", small_folder, "--iters", "20", "-v", "--dtype", "float32",
                          "--out", tmp_path / "m.npz"])
    assert code == 0, err
    assert "Training: dual form (m = 12, n_x = 12288), float32" in out
    _, meta = mf.load(tmp_path / "m.npz")
    assert meta["form"] == "dual" and meta["dtype"] == "float32"
    code, out, _ = cli(["train", small_folder, "--iters", "20", "-v", "--form", "primal",
                        "--out", tmp_path / "p.npz"])
    assert code == 0, err
    assert "Training: primal form" in out and mf.load(tmp_path / "p.npz")[1]["form"] == "primal"


def test_progress_display_on_a_terminal(tmp_path):
    """The rich bars (terminal only) take every event the library sends."""
    import io

    from rich.console import Console

    from catlr.cli.progress import events
    from catlr.cli.render import RichConsole
    from catlr.stages.train import train

    buf = io.StringIO()
    console = RichConsole(rich=Console(file=buf, force_terminal=True, width=100, highlight=False))
    from catlr.config import resolve

    folder = __import__("catlr.stages.demo", fromlist=["x"]).make_sample(tmp_path, 6, unseen=0)["images"]
    with events(console, verbose=True) as on_event:
        train(folder, resolve(None, iters=300), out=tmp_path / "m.npz", on_event=on_event)
    text = buf.getvalue()
    assert "Cost after iteration 200" in text and "Training: dual form" in text
    assert "Decoding images" in text and "Training" in text


def test_bare_catlr_prints_help_and_version_works(cli):
    code, out, err = cli([])
    assert code == 0 and out.startswith("Usage: catlr") and "prepare" in out and err == ""
    code, out, _ = cli(["--version"])
    from catlr import __version__

    assert code == 0 and out.strip() == f"catlr {__version__}"
    code, _, err = cli(["trian"])
    assert code == 2 and err == "Error: No such command 'trian'. Did you mean 'train'? See 'catlr --help'\n"

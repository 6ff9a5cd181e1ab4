"""Bad data gives one clear line naming the file or folder, exit code 1."""

import h5py
import numpy as np
import pytest


def _h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def _one_class(folder):
    from PIL import Image

    (folder / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "cat" / "a.png")
    return folder


GOOD_X = np.zeros((4, 8, 8, 3), np.uint8)
GOOD_Y = np.array([0, 1, 0, 1])


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "nothing", "does not exist"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no training data yet: copy the course's"),
    (lambda d: _one_class(d / "one"), "has only one class folder"),
    (lambda d: _h5(d / "a.h5", foo=GOOD_Y), "has no train_set_x / train_set_y datasets (found: foo)"),
    (lambda d: _h5(d / "a.h5", train_set_x=np.zeros((4, 8, 8)), train_set_y=GOOD_Y,
                   test_set_x=GOOD_X, test_set_y=GOOD_Y), "expected (m, size, size, 3) uint8"),
    (lambda d: _h5(d / "a.h5", train_set_x=GOOD_X.astype(np.float32), train_set_y=GOOD_Y,
                   test_set_x=GOOD_X, test_set_y=GOOD_Y), "dtype float32"),
    (lambda d: _h5(d / "a.h5", train_set_x=GOOD_X, train_set_y=np.array([0, 1, 2, 1]),
                   test_set_x=GOOD_X, test_set_y=GOOD_Y), "labels other than 0 and 1 ([2])"),
    (lambda d: _h5(d / "a.h5", train_set_x=GOOD_X, train_set_y=GOOD_Y[:3],
                   test_set_x=GOOD_X, test_set_y=GOOD_Y), "has shape (3,), expected (4,)"),
    (lambda d: _h5(d / "a.h5", train_set_x=GOOD_X, train_set_y=GOOD_Y,
                   test_set_x=np.zeros((2, 16, 16, 3), np.uint8), test_set_y=GOOD_Y[:2]),
     "train images are (8, 8, 3) but test images are (16, 16, 3)"),
    (lambda d: [(d / "t.h5").write_text("hello"), d / "t.h5"][1], "is not a readable HDF5 file"),
])
def test_bad_data_is_one_clear_line(tmp_path, cli, make, message):
    data = make(tmp_path)
    code, out, err = cli(["train", data, "--iters", "5", "--out", tmp_path / "m.npz"])
    assert code == 1, err
    assert err.startswith("Error: ") and message in err and err.count("\n") == 1
    assert str(data.name) in err
    assert not (tmp_path / "m.npz").exists()


def test_one_file_of_the_course_pair_points_to_its_folder(tmp_path, cli):
    _h5(tmp_path / "train_x.h5", train_set_x=GOOD_X, train_set_y=GOOD_Y)
    code, _, err = cli(["train", tmp_path / "train_x.h5"])
    assert code == 1 and "has no test_set_x / test_set_y" in err
    assert f"pass the folder that holds both files ({tmp_path})" in err


def test_folder_of_only_broken_files(tmp_path, cli):
    for c in ("cat", "non-cat"):
        (tmp_path / "s" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "s" / c / f"{i}.jpg").write_bytes(b"\xff\xd8 not really")
    code, _, err = cli(["train", tmp_path / "s"])
    assert code == 1 and "no usable images in the train split" in err


def test_interrupted_prepare_exits_130_and_writes_nothing(tmp_path, cli, small_folder, monkeypatch):
    import catlr.data.ingest as ingest

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest, "load_image", boom)
    code, _, err = cli(["prepare", small_folder, "--out", tmp_path / "p.h5", "--workers", "1"])
    assert code == 130 and err.startswith("Interrupted:")
    assert list(tmp_path.glob("*.h5")) == [] and list(tmp_path.glob(".p.h5*")) == []


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from catlr.cli import app
    from catlr.errors import CatlrError

    args = ["train", str(tmp_path / "missing")]
    quiet = CliRunner().invoke(app, args)
    assert isinstance(quiet.exception, SystemExit) and quiet.stderr.startswith("Error: ")
    monkeypatch.setenv("CATLR_DEBUG", "1")
    loud = CliRunner().invoke(app, args)
    assert isinstance(loud.exception, CatlrError) and "Error: " not in loud.stderr


def test_train_split_with_one_class_is_refused(tmp_path, cli):
    import numpy as np

    x = np.zeros((4, 8, 8, 3), np.uint8)
    _h5(tmp_path / "one.h5", train_set_x=x, train_set_y=np.ones(4, int), test_set_x=x,
        test_set_y=np.array([0, 1, 0, 1]))
    code, _, err = cli(["train", tmp_path / "one.h5"])
    assert code == 1 and "holds only cat images, add images of the other class (non-cat)" in err


def test_size_flag_on_prepared_data_is_refused(tmp_path, cli):
    _h5(tmp_path / "p.h5", train_set_x=GOOD_X, train_set_y=GOOD_Y, test_set_x=GOOD_X,
        test_set_y=GOOD_Y)
    code, _, err = cli(["train", tmp_path / "p.h5", "--size", "32"])
    assert code == 1 and "holds 8 x 8 images; --size 32 applies to image folders" in err
    code, _, err = cli(["train", tmp_path / "p.h5", "--iters", "5", "--out", tmp_path / "m.npz"])
    assert code == 0, err  # the default size never gets in the way of other data

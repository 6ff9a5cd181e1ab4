"""Hostile input, round two (issue 11): the rows closed so far, each building its own input.
Every case: the exit code, one line, and nothing written or lost."""

import json
import os
import stat
import zipfile

import h5py
import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def model(cli, small_folder, tmp_path):
    path = tmp_path / "m.npz"
    code, _, err = cli(["train", small_folder, "--iters", "10", "--out", path])
    assert code == 0, err
    return path


def _one_line(err):
    return err.startswith("Error: ") and err.count("\n") == 1 and "unexpected" not in err


# row 3: outputs that are devices, FIFOs or links
def test_an_output_that_is_not_a_regular_file_is_refused(cli, small_folder, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (["prepare", small_folder, "--out", fifo],
                 ["train", small_folder, "--out", fifo],
                 ["train", small_folder, "--out", "/dev/null"]):
        code, out, err = cli(args)
        assert code == 2 and _one_line(err) and "is not a regular file" in err, args
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_symlinked_output_is_written_through(cli, small_folder, tmp_path):
    target = tmp_path / "real.npz"
    os.symlink(target, tmp_path / "link.npz")
    code, _, err = cli(["train", small_folder, "--iters", "5", "--out", tmp_path / "link.npz"])
    assert code == 0, err
    assert os.path.islink(tmp_path / "link.npz") and target.stat().st_size > 0


# row 4: an output that is also an input
@pytest.mark.parametrize("case", ["inspect", "eval-errors", "eval-predictions", "train-plot",
                                  "train-data", "prepare-model"])
def test_an_output_that_is_an_input_is_refused(cli, model, small_folder, tmp_path, case):
    h5 = tmp_path / "d.h5"
    code, _, err = cli(["prepare", small_folder, "--out", h5])
    assert code == 0, err
    before = {p: p.read_bytes() for p in (model, h5)}
    args = {
        "inspect": ["inspect", model, "--weights", model],
        "eval-errors": ["eval", "--model", model, "--errors", model],
        "eval-predictions": ["eval", h5, "--model", model, "--predictions", h5],
        "train-plot": ["train", small_folder, "--out", tmp_path / "new.npz", "--plot",
                       tmp_path / "new.npz"],
        "train-data": ["train", h5, "--out", h5],
        "prepare-model": ["prepare", small_folder, "--out", model],
    }[case]
    code, out, err = cli(args)
    assert code == 2 and _one_line(err), err
    assert {p: p.read_bytes() for p in (model, h5)} == before
    assert not (tmp_path / "new.npz").exists()


# row 5: datasets whose data lives elsewhere
@pytest.mark.parametrize("kind", ["external-link", "virtual", "external-storage"])
def test_hdf5_data_from_outside_the_file_is_refused(cli, tmp_path, kind):
    x = np.zeros((4, 8, 8, 3), np.uint8)
    y = np.array([0, 1, 0, 1])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["train_set_x"] = x
    raw = tmp_path / "raw.bin"
    raw.write_bytes(x.tobytes())
    path = tmp_path / "evil.h5"
    with h5py.File(path, "w") as f:
        if kind == "external-link":
            f["train_set_x"] = h5py.ExternalLink(str(other), "train_set_x")
        elif kind == "virtual":
            layout = h5py.VirtualLayout(shape=x.shape, dtype=np.uint8)
            layout[:] = h5py.VirtualSource(str(other), "train_set_x", shape=x.shape)
            f.create_virtual_dataset("train_set_x", layout)
        else:
            f.create_dataset("train_set_x", x.shape, np.uint8, external=[(str(raw), 0, x.nbytes)])
        f["train_set_y"], f["test_set_x"], f["test_set_y"] = y, x, y
    code, _, err = cli(["train", path, "--out", tmp_path / "m.npz"])
    assert code == 1 and _one_line(err) and "train_set_x" in err
    assert "outside the file" in err or "link to another file" in err
    assert not (tmp_path / "m.npz").exists()


# row 2: a tiny file that declares millions of images
def test_declared_images_that_are_not_stored_are_refused(cli, tmp_path):
    path = tmp_path / "liar.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("train_set_x", (2_000_000, 64, 64, 3), np.uint8,
                         chunks=(64, 64, 64, 3))
        f.create_dataset("train_set_y", (2_000_000,), np.int64, chunks=(4096,))
        f["test_set_x"] = np.zeros((2, 64, 64, 3), np.uint8)
        f["test_set_y"] = np.array([0, 1])
    assert path.stat().st_size < 1 << 20
    code, _, err = cli(["train", path])
    assert code == 1 and _one_line(err) and "declares 2000000 images" in err


# row 6: a decompression bomb below Pillow's limit; row 22: a canvas too large to pad
def test_image_bombs_are_skipped_from_their_header(tmp_path):
    from catlr.images import ImageError, load_image

    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 1 << 20
    with pytest.raises(ImageError, match="too large \\(12000 x 12000 pixels"):
        load_image(tmp_path / "bomb.png")
    Image.new("L", (40000, 1)).save(tmp_path / "line.png")
    with pytest.raises(ImageError, match="too long and thin to pad"):
        load_image(tmp_path / "line.png", fit="pad")
    assert load_image(tmp_path / "line.png").shape == (64, 64, 3)  # stretch is fine


# row 21: a decoder failing in its own way
def test_an_image_whose_decoder_fails_oddly_is_skipped(cli, small_folder, monkeypatch, tmp_path):
    import PIL.ImageFile

    real = PIL.ImageFile.ImageFile.load

    def load(self):
        if "cat-001" in str(getattr(self, "filename", "")):
            raise NotImplementedError("this DDS pixel format is not supported")
        return real(self)

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", load)
    code, out, err = cli(["prepare", small_folder, "--out", tmp_path / "p.h5", "--json"])
    assert code == 0, err
    skipped = json.loads(out)["skipped"]
    assert [s["path"] for s in skipped] == ["cat/cat-001.jpg"]
    assert skipped[0]["reason"].startswith("cannot be decoded (NotImplementedError")


# rows 7 and 9: model files that inflate or declare absurd sizes
def test_a_deflated_bomb_in_a_model_is_refused_before_reading(tmp_path, model):
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(bomb, "w") as dst:
        for name in ("w.npy", "b.npy", "meta.npy"):
            dst.writestr(name, src.read(name))
        header = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (30000000,), }"
        header += b" " * (127 - len(header)) + b"\n"
        dst.writestr(zipfile.ZipInfo("costs.npy"), header + bytes(240_000_000),
                     compress_type=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 2 << 20
    from catlr.errors import CatlrError
    from catlr.modelfile import load

    with pytest.raises(CatlrError, match="costs declares 240000128 bytes"):
        load(bomb)


def test_an_absurd_image_size_names_the_range(tmp_path, model):
    from catlr.errors import CatlrError
    from catlr.modelfile import load

    with np.load(model) as z:
        entries = {k: z[k] for k in z.files}
    meta = json.loads(str(entries["meta"]))
    entries["meta"] = np.str_(json.dumps({**meta, "image_size": 10**9}))
    with open(tmp_path / "big.npz", "wb") as f:
        np.savez(f, **entries)
    with pytest.raises(CatlrError, match="image_size 1000000000 is not an integer from 1 to 1024"):
        load(tmp_path / "big.npz")


# rows 11, 12, 13: flags, JSON, exit codes
def test_flags_that_cannot_work_exit_2(cli, model):
    for args in (["eval", "--model", model, "--threshold", "nan"],
                 ["predict", "x.jpg", "--model", model, "--threshold", "nan"],
                 ["predict", "x.jpg", "--model", model, "--json", "--csv"],
                 ["predict", "x.jpg", "--model", model, "--workers", "-5"]):
        code, out, err = cli(args)
        assert code == 2 and _one_line(err) and out == "", args


def test_json_is_valid_even_with_nan_costs(cli, model, tmp_path):
    with np.load(model) as z:
        entries = {k: z[k] for k in z.files}
    entries["costs"] = np.array([0.69, np.nan, np.inf])
    with open(tmp_path / "nan.npz", "wb") as f:
        np.savez(f, **entries)
    code, out, err = cli(["inspect", tmp_path / "nan.npz", "--json"])
    assert code == 0, err
    assert "NaN" not in out and "Infinity" not in out
    assert json.loads(out)["costs"] == [0.69, None, None]


# row 16: an existing file's mode is kept
def test_retraining_keeps_the_model_files_mode(cli, small_folder, model):
    os.chmod(model, 0o600)
    code, _, err = cli(["train", small_folder, "--iters", "5", "--out", model])
    assert code == 0, err
    assert stat.S_IMODE(model.stat().st_mode) == 0o600


# rows 18 and 28: FIFOs and devices as inputs never block
def test_fifos_and_devices_as_inputs_are_refused(cli, tmp_path, small_folder):
    fifo = tmp_path / "m.npz"
    os.mkfifo(fifo)
    code, _, err = cli(["predict", small_folder, "--model", fifo])
    assert code == 1 and _one_line(err) and "is not a regular file" in err
    code, _, err = cli(["train", "/dev/zero"])
    assert code == 1 and _one_line(err) and "is not a regular file or a folder" in err
    pair = tmp_path / "pair"
    pair.mkdir()
    os.mkfifo(pair / "train_x.h5")
    with h5py.File(pair / "test_x.h5", "w") as f:
        f["test_set_x"] = np.zeros((2, 8, 8, 3), np.uint8)
        f["test_set_y"] = np.array([0, 1])
    code, _, err = cli(["train", pair])
    assert code == 1 and _one_line(err) and "train_x.h5 is not a regular file" in err


# row 26: a long output name
def test_an_output_name_that_fits_can_be_written(cli, small_folder, tmp_path):
    name = "m" * 246 + ".npz"  # 250 characters
    code, _, err = cli(["train", small_folder, "--iters", "5", "--out", tmp_path / name])
    assert code == 0, err
    assert (tmp_path / name).exists() and [p.name for p in tmp_path.iterdir()
                                           if p.name.startswith(".")] == []

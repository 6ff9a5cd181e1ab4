"""prepare: discovery, every awkward and broken file, duplicates, determinism, exactness."""

import io
import os

import h5py
import numpy as np
import pytest
from conftest import needs_course
from PIL import Image

from catlr.data.images import load_image


def _read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


@needs_course
def test_lossless_copy_prepares_to_exactly_the_course_arrays(course, course_png_copy, cli, tmp_path):
    out = tmp_path / "prep.h5"
    code, stdout, err = cli(["prepare", course_png_copy, "--out", out])
    assert code == 0, err
    data = _read(out)
    for split in ("train", "test"):
        x, y = course[split]
        assert data[f"{split}_set_x"].dtype == np.uint8
        assert np.array_equal(data[f"{split}_set_x"], x)
        assert np.array_equal(data[f"{split}_set_y"], y) and data[f"{split}_set_y"].dtype == np.int64
    assert list(data["list_classes"]) == [b"non-cat", b"cat"]
    assert data["train_set_paths"][0].decode() == os.path.join("train", "non-cat", "000.png")
    # the course's own loading code reads it unchanged
    with h5py.File(out, "r") as f:
        train_set_x_orig = np.array(f["train_set_x"][:])
        classes = np.array(f["list_classes"][:])
    assert train_set_x_orig.shape == (209, 64, 64, 3) and classes[1] == b"cat"
    # the course data has one image in both train and test: the report says so
    assert "Duplicates across train and test (leakage): 1" in stdout


def _jpeg(path, size=(120, 80), colour=(200, 30, 30), **kw):
    Image.new("RGB", size, colour).save(path, "JPEG", **kw)


def _awkward_folder(root):
    """One file of every awkward and broken kind; returns {name: expected outcome}."""
    cat, non = root / "cat", root / "non-cat"
    cat.mkdir(parents=True)
    non.mkdir()
    (root / ".ipynb_checkpoints").mkdir()
    _jpeg(root / ".ipynb_checkpoints" / "x.jpg")
    (cat / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    # EXIF orientation 6 (rotate 90 clockwise to view): stored 40 wide x 20 high
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)  # left half red, right half blue as stored
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(cat / "rotated.jpg", exif=exif, quality=95)
    Image.new("RGBA", (30, 30), (0, 0, 0, 0)).save(cat / "transparent.png")
    Image.new("LA", (30, 30), (0, 0)).save(cat / "gray_alpha.png")
    p = Image.new("P", (30, 30), 0)
    p.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    p.info["transparency"] = 0
    p.save(cat / "palette.gif", transparency=0)
    g16 = np.full((16, 16), 65535, np.uint16)
    g16[:, :8] = 32768
    Image.fromarray(g16).save(cat / "gray16.png")
    g32 = np.full((16, 16), 2 ** 31 - 1, np.int32)
    g32[:, :8] = 2 ** 30
    Image.fromarray(g32).save(non / "gray32.tif")
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(non / "cmyk.jpg")
    frames = [Image.new("RGB", (20, 20), c) for c in ((0, 255, 0), (255, 0, 0))]
    frames[0].save(non / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.new("RGB", (1, 1), (1, 2, 3)).save(non / "tiny.bmp")
    _jpeg(non / "UPPER.JPG")
    Image.new("RGB", (50, 50), (9, 9, 9)).save(non / "pic.webp")
    (non / "page.jpg").write_text("<!doctype html><html><body>Not found</body></html>")
    (non / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    _jpeg(buf, size=(400, 300))
    (non / "half.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    (non / "notes.txt").write_text("not an image")
    (non / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + bytes(100))
    Image.new("RGB", (30, 30), (5, 6, 7)).save(non / "browser.jfif", "JPEG")
    return {"skipped": {"non-cat/page.jpg": "not an image", "non-cat/empty.png": "empty file",
                        "non-cat/half.jpg": "truncated or corrupt",
                        "non-cat/IMG_0001.HEIC": "HEIC is not readable by Pillow"}}


def test_every_awkward_file(tmp_path, cli):
    expected = _awkward_folder(tmp_path / "src")
    out = tmp_path / "out.h5"
    code, stdout, err = cli(["prepare", tmp_path / "src", "--out", out, "--test-fraction", "0.2",
                             "--json"])
    assert code == 0, err
    assert "Traceback" not in stdout + err
    import json

    report = json.loads(stdout)
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == set(expected["skipped"])
    for path, reason in expected["skipped"].items():
        assert skipped[path].startswith(reason)
    assert report["ignored"] == ["non-cat/notes.txt"]
    data = _read(out)
    paths = [p.decode() for p in np.concatenate([data["train_set_paths"], data["test_set_paths"]])]
    assert not any(".ipynb" in p or "DS_Store" in p for p in paths)
    assert "non-cat/UPPER.JPG" in paths and "non-cat/pic.webp" in paths
    assert "non-cat/browser.jfif" in paths
    assert len(paths) == 12
    assert list(data["list_classes"]) == [b"non-cat", b"cat"]


def test_each_mode_becomes_the_right_rgb(tmp_path):
    _awkward_folder(tmp_path)
    cat, non = tmp_path / "cat", tmp_path / "non-cat"
    # EXIF rotation applied: after turning 90 degrees clockwise, red is on top, blue below
    r = load_image(cat / "rotated.jpg", 64)
    assert r[5, 32, 0] > 200 and r[5, 32, 2] < 60 and r[58, 32, 2] > 200 and r[58, 32, 0] < 60
    # full transparency composites to the white background, not black
    assert (load_image(cat / "transparent.png") == 255).all()
    assert (load_image(cat / "gray_alpha.png") == 255).all()
    assert (load_image(cat / "palette.gif") == 255).all()
    # 16-bit: 65535 -> 255 and 32768 -> 128, scaled, not clipped to 255 everywhere
    g = load_image(cat / "gray16.png", 16)
    assert g[0, 15].tolist() == [255, 255, 255] and g[0, 0].tolist() == [128, 128, 128]
    # 32-bit: 2**30 -> 128 and 2**31 - 1 -> 255 (convert('L') would clip both to 255)
    g32 = load_image(non / "gray32.tif", 16)
    assert g32[0, 0].tolist() == [128] * 3 and g32[0, 15].tolist() == [255] * 3
    # CMYK (0, 255, 255, 0) is red
    c = load_image(non / "cmyk.jpg")
    assert c[32, 32, 0] > 200 and c[32, 32, 1] < 60
    # animated: the first frame (green)
    a = load_image(non / "anim.gif")
    assert a[10, 10, 1] > 200 and a[10, 10, 0] < 60
    # tiny images are upscaled
    t = load_image(non / "tiny.bmp")
    assert t.shape == (64, 64, 3) and t[0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("values,mode,fmt,expected", [
    ([0, 65535, 300], np.int32, "TIFF", [0, 255, 1]),     # 16-bit data in mode I
    ([0, 200, 255], np.int32, "TIFF", [0, 200, 255]),     # 8-bit data in mode I
    ([0.0, 0.5, 1.0], np.float32, "TIFF", [0, 128, 255]),  # floats in 0..1
    ([0, 32768, 65535], np.uint16, "PNG", [0, 128, 255]),  # 16-bit PNG
])
def test_wide_grayscale_scaling_exact(tmp_path, values, mode, fmt, expected):
    """Each value fills a 4 x 4 image, loaded at size 4 (no resize): scaled, not clipped."""
    got = []
    for v in values:
        path = tmp_path / f"g{len(got)}.{fmt.lower()}"
        Image.fromarray(np.full((4, 4), v, mode)).save(path, fmt)
        got.append(int(load_image(path, 4)[0, 0, 0]))
    assert got == expected


@pytest.mark.parametrize("fit", ["stretch", "crop", "pad"])
def test_fit_policies(tmp_path, fit):
    a = np.zeros((40, 120, 3), np.uint8)
    a[:, :40] = 255  # white left third
    Image.fromarray(a).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 30, fit)
    assert out.shape == (30, 30, 3)
    if fit == "crop":  # the center square is all black
        assert out.max() == 0
    if fit == "pad":  # white bands above and below
        assert (out[0] == 255).all() and (out[-1] == 255).all()
    if fit == "stretch":  # the left third stays white
        assert (out[:, :8] == 255).all()


def test_decompression_bomb_is_skipped(tmp_path, monkeypatch):
    _jpeg(tmp_path / "big.jpg", size=(300, 300))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    from catlr.data.images import ImageError

    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "big.jpg")


def test_strict_stops_and_writes_nothing(tmp_path, cli, small_folder):
    (small_folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "x.h5"
    code, stdout, err = cli(["prepare", small_folder, "--out", out, "--strict"])
    assert code == 1
    assert err.startswith("Error: cat/broken.jpg: ") and "--strict" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".x.h5*"))


def test_duplicates_reported_and_dropped(tmp_path, cli):
    import json

    src = tmp_path / "src"
    for split in ("train", "test"):
        for c in ("cat", "non-cat"):
            (src / split / c).mkdir(parents=True)
    for i in range(3):
        _jpeg(src / "train" / "cat" / f"{i}.jpg", colour=(10 * i, 0, 0), quality=100)
        _jpeg(src / "train" / "non-cat" / f"{i}.jpg", colour=(0, 10 * i, 200), quality=100)
    _jpeg(src / "train" / "cat" / "0-again.jpg", colour=(0, 0, 0), quality=100)  # within train
    _jpeg(src / "test" / "cat" / "leak.jpg", colour=(10, 0, 0), quality=100)  # = train/cat/1
    _jpeg(src / "test" / "non-cat" / "new.jpg", colour=(99, 99, 99), quality=100)
    code, stdout, _ = cli(["prepare", src, "--out", tmp_path / "a.h5", "--json"])
    d = json.loads(stdout)["duplicates"]
    assert d["train"] == [["train/cat/0-again.jpg", "train/cat/0.jpg"]] or \
        d["train"] == [["train/cat/0.jpg", "train/cat/0-again.jpg"]]
    assert d["across"] == [["train/cat/1.jpg", "test/cat/leak.jpg"]]
    code, stdout, _ = cli(["prepare", src, "--out", tmp_path / "b.h5", "--json", "--dedupe"])
    report = json.loads(stdout)
    assert report["dropped_duplicates"] == 2
    assert report["counts"] == {"train": {"non-cat": 3, "cat": 3}, "test": {"non-cat": 1, "cat": 0}}


def test_same_bytes_whatever_the_workers(tmp_path, cli, small_folder, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764547200")  # the file records when it was made
    outs = []
    for workers in (1, 2, 5):
        out = tmp_path / f"w{workers}.h5"
        code, _, err = cli(["prepare", small_folder, "--out", out, "--workers", workers])
        assert code == 0, err
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_split_is_seeded_and_stratified(small_folder):
    from catlr.stages.prepare import discover

    a = discover(small_folder, test_fraction=0.25, seed=1)
    b = discover(small_folder, test_fraction=0.25, seed=1)
    c = discover(small_folder, test_fraction=0.25, seed=2)
    assert a.test == b.test and a.test != c.test
    assert sum(lbl for _, lbl in a.test) == 2 and len(a.test) == 4
    assert not set(a.train) & set(a.test)


def test_positive_option_and_classes(tmp_path, cli):
    for c in ("dog", "other"):
        (tmp_path / "s" / c).mkdir(parents=True)
        for i in range(3):
            _jpeg(tmp_path / "s" / c / f"{i}.jpg", colour=(i * 40, 0, 0 if c == "dog" else 200))
    code, _, err = cli(["prepare", tmp_path / "s", "--out", tmp_path / "o.h5"])
    assert code == 1 and "expected a class folder named cat/" in err and "--positive" in err
    code, _, err = cli(["prepare", tmp_path / "s", "--out", tmp_path / "o.h5", "--positive", "dog"])
    assert code == 0, err
    assert list(_read(tmp_path / "o.h5")["list_classes"]) == [b"other", b"dog"]


def test_output_file_permissions_follow_umask(tmp_path, cli, small_folder):
    old = os.umask(0o022)
    try:
        cli(["prepare", small_folder, "--out", tmp_path / "p.h5"])
    finally:
        os.umask(old)
    assert (tmp_path / "p.h5").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_damaged_tiff_tags_print_no_warnings(tmp_path):
    for c in ("cat", "non-cat"):
        (tmp_path / "s" / c).mkdir(parents=True)
        for i in range(4):
            _jpeg(tmp_path / "s" / c / f"ok{i}.jpg", colour=(10 * i, 200 if c == "cat" else 0, 0))
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(buf, "TIFF")
    raw = bytearray(buf.getvalue())
    raw[4] = 0xFF  # the first IFD's offset: Pillow warns "Corrupt EXIF data", then fails
    (tmp_path / "s" / "cat" / "cut.tif").write_bytes(bytes(raw))
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "catlr", "prepare", str(tmp_path / "s"), "--out",
                        str(tmp_path / "o.h5")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # Pillow's warnings about the damaged tags are not shown


def test_odd_file_names(tmp_path, cli):
    src = tmp_path / "s"
    for c in ("cat", "non-cat"):
        (src / c).mkdir(parents=True)
        for i in range(3):
            _jpeg(src / c / f"{i}.jpg", colour=(40 * i, 90 if c == "cat" else 0, 0))
    _jpeg(src / "cat" / "chat noir [1] été.jpg", colour=(1, 2, 3))
    _jpeg(os.path.join(os.fsencode(src / "cat"), b"latin1-\xe9.jpg"), colour=(3, 2, 1))
    code, out, err = cli(["prepare", src, "--out", tmp_path / "p.h5"])
    assert code == 0, err
    paths = [p.decode() for k in ("train_set_paths", "test_set_paths")
             for p in _read(tmp_path / "p.h5")[k]]
    assert "cat/chat noir [1] été.jpg" in paths and "cat/latin1-\ufffd.jpg" in paths

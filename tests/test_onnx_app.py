"""examples/onnx_app.py, the app docs/serve.md explains: Pillow, NumPy and onnxruntime turn
awkward photos into the exported graph's input as catlr's decoder does, so the graph's
probabilities equal `catlr predict --json`'s to 1e-6 (issue 29 §2)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import PHOTOS, ROOT

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

APP = ROOT / "examples" / "onnx_app.py"


def _app():
    spec = importlib.util.spec_from_file_location("onnx_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scene(w, h, seed=0):
    """An RGB picture that is not symmetric (a rotation shows) with detail to resize."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1),
                  (x * y) % 256], axis=-1).astype(np.uint8)
    a[: h // 3, : w // 4] = (250, 30, 30)  # a corner that says which way is up
    return a ^ rng.integers(0, 24, a.shape, dtype=np.uint8)


def awkward_photos(folder):
    """Photos a phone, a scanner or an editor makes: every EXIF orientation, alpha,
    palettes with transparency, CMYK, 16-bit and float grays, a camera-sized JPEG."""
    folder.mkdir()
    out = []
    base = Image.fromarray(_scene(120, 80))
    for k in range(1, 9):  # EXIF orientations: mirrored and rotated
        exif = Image.Exif()
        exif[0x0112] = k
        out.append(folder / f"exif-{k}.jpg")
        base.save(out[-1], quality=92, exif=exif)
    rgba = np.dstack([_scene(90, 60, 1), np.linspace(0, 255, 90 * 60).reshape(60, 90)
                      .astype(np.uint8)])
    out.append(folder / "alpha.png")
    Image.fromarray(rgba, "RGBA").save(out[-1])
    la = Image.fromarray(rgba, "RGBA").convert("LA")
    out.append(folder / "gray-alpha.png")
    la.save(out[-1])
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    out.append(folder / "palette.gif")
    palette.save(out[-1], transparency=3)
    out.append(folder / "cmyk.jpg")
    base.convert("CMYK").save(out[-1], quality=90)
    deep = (np.linspace(0, 65535, 70 * 50).reshape(50, 70)).astype(np.uint16)
    out.append(folder / "gray16.png")
    Image.fromarray(deep).save(out[-1])
    out.append(folder / "float.tif")
    Image.fromarray((deep / 65535.0).astype(np.float32), "F").save(out[-1])
    out.append(folder / "camera.jpg")
    Image.fromarray(_scene(4000, 3000, 2)).save(out[-1], quality=88)
    out.append(folder / "small.webp")
    Image.fromarray(_scene(50, 70, 3)).save(out[-1], quality=90)
    for name in ("cat-in-iran.jpg", "cat-small.jpg"):  # the two real photos, when here
        if (PHOTOS / name).is_file():
            out.append(PHOTOS / name)
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return awkward_photos(tmp_path_factory.mktemp("awkward") / "photos")


@pytest.mark.parametrize("fit", ["stretch", "crop", "pad"])
def test_the_example_app_scores_awkward_photos_as_catlr_predict(cli, small_folder, tmp_path,
                                                                 photos, fit):
    model, graph = tmp_path / "m.npz", tmp_path / "m.onnx"
    code, _, err = cli(["train", small_folder, "--iters", "200", "--lr", "0.01", "--fit", fit,
                        "--out", model])
    assert code == 0, err
    code, _, err = cli(["export", model, "--onnx", graph])
    assert code == 0, err
    code, out, err = cli(["predict", *photos, "--model", model, "--json"])
    assert code == 0, err
    expected = {r["path"]: r for r in json.loads(out)}

    app = _app()
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    probability, label = app.score(session, [str(p) for p in photos])
    for p, q, k in zip(photos, probability, label):
        row = expected[str(p)]
        assert abs(q - row["probability"]) <= 1e-6, (p.name, q, row["probability"])
        assert ["non-cat", "cat"][k] == row["label"], p.name

    # the app as a script: one line per photo, its label and probability
    done = subprocess.run([sys.executable, str(APP), str(graph), *map(str, photos)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(photos)
    for line, p in zip(lines, photos):
        path, shown, name = line.rsplit("  ", 2)
        assert path == str(p) and name == expected[str(p)]["label"]
        assert abs(float(shown) - expected[str(p)]["probability"]) <= 5e-7


def test_pillows_usual_steps_are_not_enough(cli, small_folder, tmp_path, photos):
    """The comparison above can fail: a photo opened, made RGB and resized as Pillow's
    tutorials do is scored away from catlr on the awkward photos (the issue's 0.446 against
    0.302 on a PNG with transparency)."""
    model, graph = tmp_path / "m.npz", tmp_path / "m.onnx"
    assert cli(["train", small_folder, "--iters", "200", "--lr", "0.01", "--out", model])[0] == 0
    assert cli(["export", model, "--onnx", graph])[0] == 0
    app = _app()
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    careful, _ = app.score(session, [str(p) for p in photos])
    naive = np.stack([np.asarray(Image.open(p).convert("RGB").resize((64, 64)))
                      for p in photos])
    rough = session.run(["probability"], {"image": naive})[0]
    off = {p.name for p, a, b in zip(photos, careful, rough) if abs(a - b) > 1e-6}
    assert {"alpha.png", "camera.jpg", "exif-6.jpg", "gray16.png"} <= off, off

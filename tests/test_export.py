"""catlr export --onnx (issue 21): the graph, run by onnxruntime, gives what `catlr predict
--json` gives, on the course's test images and on decoded photos, at any fit and threshold;
what it cannot represent is refused in one line; it is written like every output."""

import json
import os
import sys

import numpy as np
import pytest
from conftest import PHOTOS, needs_course, remeta, run_cli

onnx = pytest.importorskip("onnx", reason="catlr[onnx] is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (catlr[test])")

TOLERANCE = 1e-6  # the bar; the graph computes in float64, as predict does
PHOTO_NAMES = ("cat-small.jpg", "cat-in-iran.jpg")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _export(model, out, *args):
    code, stdout, err = run_cli(["export", model, "--onnx", out, *args])
    assert code == 0, err
    return stdout


def _predict_json(inputs, model, *args):
    code, out, err = run_cli(["predict", *inputs, "--model", model, "--json", *args])
    assert code == 0, err
    return json.loads(out)


def _graph_rows(session, predictor, paths):
    """(probabilities, labels) of the graph for image files, decoded by catlr's decoder."""
    x = np.stack([predictor.decode(p) for p in paths])
    p, label = session.run(None, {"image": x})
    return p, label


@needs_course
def test_the_graph_equals_predict_on_the_course_test_images(course_model, course,
                                                            course_png_copy, tmp_path):
    from catlr import Predictor

    model = course_model[0]
    _export(model, tmp_path / "cat.onnx")
    session = _session(tmp_path / "cat.onnx")
    rows = _predict_json([course_png_copy / "test"], model)
    predictor = Predictor.load(model)
    paths = [r["path"] for r in rows]
    x = np.stack([predictor.decode(p) for p in paths])
    # the lossless copy decodes to the course's own pixels: these are its 50 test images
    order = [int(os.path.basename(p)[:3]) for p in paths]
    assert len(rows) == 50 and np.array_equal(x, course["test"][0][order])
    p, label = session.run(None, {"image": x})
    expected = np.array([r["probability"] for r in rows])
    gap = float(np.abs(p - expected).max())
    print(f"max |p_onnx - p_predict_json| on the course's 50 test images: {gap:.3g}")
    assert gap <= TOLERANCE
    assert [predictor.classes[k] for k in label] == [r["label"] for r in rows]
    assert p.dtype == np.float64 and label.dtype == np.int64 and p.shape == label.shape == (50,)
    # and the course's figure: 70% of the test images right
    assert (label == course["test"][1][order]).mean() == pytest.approx(0.70)


@needs_course
@pytest.mark.parametrize("fit,threshold", [("stretch", "0.5"), ("crop", "0.3"), ("pad", "0.7")])
def test_the_graph_equals_predict_on_photos_at_every_fit_and_threshold(
        course_model, small_folder, tmp_path, fit, threshold):
    from catlr import Predictor

    if not all((PHOTOS / n).exists() for n in PHOTO_NAMES):
        pytest.skip(f"photos not found at {PHOTOS}")
    if fit == "stretch":
        model = course_model[0]
    else:  # a model of another fit rule and size: the metadata must carry both
        model = tmp_path / "m.npz"
        code, _, err = run_cli(["train", small_folder, "--iters", "50", "--fit", fit,
                                "--size", "32", "--out", model])
        assert code == 0, err
    _export(model, tmp_path / "cat.onnx", "--threshold", threshold)
    session = _session(tmp_path / "cat.onnx")
    photos = [PHOTOS / n for n in PHOTO_NAMES]
    rows = _predict_json(photos, model, "--threshold", threshold)
    predictor = Predictor.load(model, float(threshold))
    p, label = _graph_rows(session, predictor, photos)
    gap = float(np.abs(p - [r["probability"] for r in rows]).max())
    print(f"max |p_onnx - p_predict_json| on {len(photos)} photos, fit {fit}: {gap:.3g}")
    assert gap <= TOLERANCE
    assert [predictor.classes[k] for k in label] == [r["label"] for r in rows]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["fit"] == fit and meta["threshold"] == threshold
    assert meta["image_size"] == str(predictor.size)
    assert json.loads(meta["classes"]) == list(predictor.classes)
    assert session.get_inputs()[0].shape[1:] == [predictor.size, predictor.size, 3]


@pytest.mark.parametrize("side", [-1, 1])
def test_labels_agree_a_hair_either_side_of_an_images_probability(small_folder, tmp_path, side):
    """A threshold 1e-9 below or above one image's probability labels it as predict does.
    (At the threshold itself the two may differ: their float64 sums are the same to
    about 1e-15, not bit for bit, as MatMul adds in its own order.)"""
    from catlr import Predictor

    model = tmp_path / "m.npz"
    assert run_cli(["train", small_folder, "--iters", "30", "--out", model])[0] == 0
    images = sorted((small_folder / "cat").glob("*"))[:4]
    predictor = Predictor.load(model)
    x = np.stack([predictor.decode(p) for p in images])
    at = repr(float(predictor.proba(x)[0]) + side * 1e-9)
    _export(model, tmp_path / "cat.onnx", "--threshold", at)
    p, label = _session(tmp_path / "cat.onnx").run(None, {"image": x})
    rows = _predict_json(images, model, "--threshold", at)
    assert [predictor.classes[k] for k in label] == [r["label"] for r in rows]
    assert label[0] == (1 if side < 0 else 0)


def test_the_graph_takes_any_batch_and_holds_the_course_preprocessing(small_folder, tmp_path):
    from catlr import Predictor

    model = tmp_path / "m.npz"
    assert run_cli(["train", small_folder, "--iters", "30", "--out", model])[0] == 0
    _export(model, tmp_path / "cat.onnx")
    proto = onnx.load(str(tmp_path / "cat.onnx"))
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Cast", "Div", "Flatten", "MatMul", "Add", "Sigmoid", "Squeeze", "Greater",
                   "Cast"]
    assert proto.producer_name == "catlr" and proto.opset_import[0].version == 13
    session = _session(tmp_path / "cat.onnx")
    predictor = Predictor.load(model)
    rng = np.random.default_rng(0)
    for n in (0, 1, 7):
        x = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        p, _ = session.run(None, {"image": x})
        assert p.shape == (n,) and np.abs(p - predictor.proba(x)).max(initial=0) <= 1e-12


def test_export_says_what_it_wrote(small_folder, tmp_path):
    model = tmp_path / "m.npz"
    assert run_cli(["train", small_folder, "--iters", "5", "--out", model])[0] == 0
    out = _export(model, tmp_path / "cat.onnx")
    assert "Exported" in out and "uint8 (N, 64, 64, 3)" in out and "probability" in out
    code, out, _ = run_cli(["export", model, "--onnx", tmp_path / "cat.onnx", "--json"])
    doc = json.loads(out)
    assert code == 0 and doc["bytes"] == os.path.getsize(tmp_path / "cat.onnx")
    assert doc["metadata"]["classes"] == '["non-cat", "cat"]'


# ---------------------------------------------------------------- refusals and the output guard

def _one_line(err):
    return err.startswith("Error: ") and err.count("\n") == 1 and "unexpected" not in err


@pytest.fixture
def model(small_folder, tmp_path):
    path = tmp_path / "m.npz"
    assert run_cli(["train", small_folder, "--iters", "5", "--out", path])[0] == 0
    return path


def test_a_class_name_onnx_cannot_hold_is_refused_in_one_line(model, tmp_path):
    odd = remeta(model, tmp_path / "odd.npz", classes=["non-cat", "cat\udcff"],
                 positive="cat\udcff")
    code, _, err = run_cli(["export", odd, "--onnx", tmp_path / "odd.onnx"])
    assert code == 1 and _one_line(err) and "not valid UTF-8" in err and "cat\\xff" in err
    assert not list(tmp_path.glob("*.onnx"))
    assert not list(tmp_path.glob(".*tmp"))


def test_without_onnx_installed_export_is_one_line(model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, _, err = run_cli(["export", model, "--onnx", tmp_path / "cat.onnx"])
    assert code == 1 and _one_line(err) and "pip install 'catlr[onnx]'" in err
    assert not (tmp_path / "cat.onnx").exists()


@pytest.mark.parametrize("case", ["no flag", "not .onnx", "the model itself", "a user's file",
                                  "a folder", "bad threshold"])
def test_outputs_that_must_not_be_written_are_refused_before_work(model, tmp_path, case):
    theirs = tmp_path / "theirs.onnx"
    theirs.write_bytes(b"\x08\x07\x12\x07pytorch")  # another tool's graph
    (tmp_path / "dir.onnx").mkdir()
    args = {"no flag": [], "not .onnx": ["--onnx", tmp_path / "cat.npz"],
            "the model itself": ["--onnx", model], "a user's file": ["--onnx", theirs],
            "a folder": ["--onnx", tmp_path / "dir.onnx"],
            "bad threshold": ["--onnx", tmp_path / "c.onnx", "--threshold", "1.5"]}[case]
    code, _, err = run_cli(["export", model, *args])
    assert code == 2 and err.startswith("Error: ") and err.count("\n") == 1, err
    assert theirs.read_bytes() == b"\x08\x07\x12\x07pytorch"
    assert not (tmp_path / "cat.npz").exists() and not (tmp_path / "c.onnx").exists()


def test_catlrs_own_graph_is_replaced_atomically(model, tmp_path, monkeypatch):
    out = tmp_path / "cat.onnx"
    _export(model, out)
    first = out.read_bytes()
    assert first[:1] == b"\x08" and b"\x12\x05catlr" in first[:12]  # what atomic.KINDS reads
    _export(model, out, "--threshold", "0.25")
    assert out.read_bytes() != first

    # a failure while writing (a full disk) leaves the previous graph whole, no temporary
    import catlr.stages.export as export

    class FullDisk:
        def __init__(self, proto):
            self.metadata_props = proto.metadata_props

        def SerializeToString(self):
            raise OSError(28, "No space left on device")

    real = export.graph
    monkeypatch.setattr(export, "graph", lambda predictor: FullDisk(real(predictor)))
    before = out.read_bytes()
    code, _, err = run_cli(["export", model, "--onnx", out])
    assert code == 1 and _one_line(err) and "No space left" in err and "cat.onnx" in err
    assert out.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

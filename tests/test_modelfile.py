"""Model files: saved whole, loaded without pickles, refused clearly when wrong."""

import io
import json
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catlr.errors import CatlrError
from catlr.learn.model import LogisticRegression
from catlr.runs import modelfile


def _model(n_x=12288, b=0.5):
    return LogisticRegression.from_weights(np.linspace(-1, 1, n_x), b, [0.69, 0.5])


META = {"format": 1, "image_size": 64, "classes": ["non-cat", "cat"], "lr": 0.005}


def _write(path, **entries):
    base = {"w": _model().w_.ravel(), "b": np.float64(0.5), "costs": np.array([0.6]),
            "meta": np.str_(json.dumps(META))}
    base.update(entries)
    base = {k: v for k, v in base.items() if v is not None}
    with open(path, "wb") as f:
        np.savez(f, **base)


def test_round_trip(tmp_path):
    modelfile.save(tmp_path / "m.npz", _model(), META)
    model, meta = modelfile.load(tmp_path / "m.npz")
    assert model.w_.shape == (12288, 1) and model.b_ == 0.5 and meta == META
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert z["w"].dtype == np.float64 and z["w"].shape == (12288,) and z["b"].shape == ()


@pytest.mark.parametrize("case,message", [
    ("pickled", "not a valid catlr model file"),
    ("truncated", "not a valid catlr model file"),
    ("random", "not a valid catlr model file"),
    ("other_zip", "not a valid catlr model file (missing b, costs, meta, w)"),
    ("wrong_size", "w has shape (100,)"),
    ("nan", "the weights are not finite"),
    ("future", "has model format 7, this catlr reads format 1, upgrade catlr"),
    ("no_meta", "missing meta"),
    ("bad_json", "meta is not valid JSON"),
    ("npy", "a single .npy array"),
    ("hdf5", "an HDF5 file: pass data as DATA, not --model"),
    ("int_weights", "dtype int64"),
    ("bad_fit", "fit 'zoom' is not stretch, crop or pad"),
])
def test_bad_model_files_are_refused(tmp_path, case, message, cli):
    p = tmp_path / "bad.npz"
    if case == "pickled":
        with open(p, "wb") as f:
            np.savez(f, w=np.array([object()], dtype=object), b=np.float64(0), costs=np.zeros(1),
                     meta=np.str_(json.dumps(META)))
    elif case == "truncated":
        _write(p)
        p.write_bytes(p.read_bytes()[:5000])
    elif case == "random":
        p.write_bytes(os.urandom(3000))
    elif case == "other_zip":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("hello.txt", "hi")
    elif case == "wrong_size":
        _write(p, w=np.zeros(100))
    elif case == "nan":
        _write(p, w=np.full(12288, np.nan))
    elif case == "future":
        _write(p, meta=np.str_(json.dumps({**META, "format": 7})))
    elif case == "no_meta":
        _write(p, meta=None)
    elif case == "bad_json":
        _write(p, meta=np.str_("{not json"))
    elif case == "npy":
        with open(p, "wb") as f:
            np.save(f, np.zeros(3))
    elif case == "hdf5":
        import h5py

        with h5py.File(p, "w") as f:
            f["train_set_x"] = np.zeros((1, 2, 2, 3), np.uint8)
    elif case == "int_weights":
        _write(p, w=np.zeros(12288, dtype=np.int64))
    elif case == "bad_fit":
        _write(p, meta=np.str_(json.dumps({**META, "fit": "zoom"})))
    with pytest.raises(CatlrError) as e:
        modelfile.load(p)
    assert message in str(e.value)
    code, out, err = cli(["predict", "x.jpg", "--model", p])
    assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1


def test_a_pickle_is_never_executed(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.npz").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CatlrError):
        modelfile.load(tmp_path / "evil.npz")
    assert not marker.exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4000))
def test_arbitrary_bytes_as_model_only_raise_catlr_errors(tmp_path, data):
    p = tmp_path / "fuzz.npz"
    p.write_bytes(data)
    with pytest.raises(CatlrError):
        modelfile.load(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=400), flip=st.integers(min_value=0, max_value=10**6))
def test_damaged_model_files_only_raise_catlr_errors(tmp_path, cut, flip):
    p = tmp_path / "damaged.npz"
    p.unlink(missing_ok=True)  # the last example's damaged file is not catlr's to replace
    modelfile.save(p, _model(n_x=12), {**META, "image_size": 2})
    raw = bytearray(p.read_bytes())
    raw[flip % len(raw)] ^= 0xFF
    p.write_bytes(bytes(raw[: len(raw) - cut]))
    try:
        modelfile.load(p)
    except CatlrError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), ext=st.sampled_from([".jpg", ".png", ".gif", ".tif", ".bmp"]))
def test_arbitrary_bytes_as_image_only_raise_image_errors(tmp_path, data, ext):
    from catlr.data.images import ImageError, load_image

    p = tmp_path / f"fuzz{ext}"
    p.write_bytes(data)
    try:
        a = load_image(p)
        assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    except ImageError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=1, max_value=2000), ext=st.sampled_from(["JPEG", "PNG", "GIF", "WEBP"]))
def test_truncated_real_images_only_raise_image_errors(tmp_path, cut, ext):
    from PIL import Image

    from catlr.data.images import ImageError, load_image

    buf = io.BytesIO()
    Image.effect_noise((80, 60), 40).convert("RGB").save(buf, ext)
    p = tmp_path / f"cut.{ext.lower()}"
    p.write_bytes(buf.getvalue()[:max(len(buf.getvalue()) - cut, 0)])
    try:
        load_image(p)
    except ImageError:
        pass


def test_interrupted_train_leaves_the_old_model_intact(tmp_path, cli, small_folder, monkeypatch):
    out = tmp_path / "m.npz"
    code, _, err = cli(["train", small_folder, "--iters", "20", "--out", out])
    assert code == 0, err
    before = out.read_bytes()

    import catlr.learn.descent as descent

    real = descent.run

    def interrupted(*a, **kw):
        def on_event(e):
            if getattr(e, "i", 0) >= 10:
                raise KeyboardInterrupt
        return real(*a, **{**kw, "on_event": on_event})

    monkeypatch.setattr(descent, "run", interrupted)
    code, out_text, err = cli(["train", small_folder, "--iters", "50", "--print-every", "5",
                               "--out", out])
    assert code == 130
    assert err.strip().startswith("Interrupted:") and err.count("\n") == 1
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "sample"]


def test_failed_write_leaves_no_temporary_file(tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from catlr.files.outputs import atomic_path

    info = PngInfo()
    info.add_text("Software", "catlr")  # a picture catlr drew: it may replace it
    Image.new("RGB", (4, 4)).save(tmp_path / "keep.png", pnginfo=info)
    old = (tmp_path / "keep.png").read_bytes()
    with pytest.raises(OSError):
        with atomic_path(tmp_path / "keep.png", "png") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(28, "No space left on device")
    assert (tmp_path / "keep.png").read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_model_at_another_size_is_used_at_that_size(tmp_path, cli, small_folder):
    model = tmp_path / "m32.npz"
    code, _, err = cli(["train", small_folder, "--size", "32", "--iters", "30", "--out", model])
    assert code == 0, err
    code, out, err = cli(["predict", small_folder / "cat", "--model", model, "--json"])
    assert code == 0 and len(json.loads(out)) == 8
    code, out, err = cli(["eval", "--model", model, "--json"])
    assert code == 0, err
    h5 = tmp_path / "p64.h5"
    code, _, err = cli(["prepare", small_folder, "--out", h5])
    assert code == 0, err
    code, _, err = cli(["eval", h5, "--model", model])
    assert code == 1 and "64 x 64 images but the model was trained on 32 x 32" in err

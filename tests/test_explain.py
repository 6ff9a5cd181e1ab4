"""catlr explain (issue 30): the logit as an exact sum over pixels. The contributions plus b
are the logit (to 1e-9), the logit is w . x + b computed plainly (and with the course
loop's own weights), the probability is `catlr predict --json`'s float, bit for bit; the
picture is a real PNG with its parts; the page of `catlr serve` shows the same map."""

import base64
import io
import json
import shutil

import numpy as np
import pytest
from conftest import COURSE, PHOTOS, needs_course, remeta
from conftest import run_cli as _run_cli
from conftest import run_cli_whole as run_cli
from PIL import Image
from test_serve import browser  # noqa: F401 (the fixture: Debian's chromium, headless)

PHOTO_NAMES = ("cat-small.jpg", "cat-in-iran.jpg")


def _photos():
    if not all((PHOTOS / n).exists() for n in PHOTO_NAMES):
        pytest.skip(f"photos not found at {PHOTOS}")
    return [PHOTOS / n for n in PHOTO_NAMES]


def _json(args):
    code, out, err = run_cli(args)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def course_images(course, tmp_path_factory):
    """Six course test images as lossless PNGs (their pixels exactly the file's), with
    their flattened columns X (n_x, 6) / 255 as the course builds them."""
    x, _ = course["test"]
    folder = tmp_path_factory.mktemp("course_images")
    chosen = [0, 1, 5, 13, 29, 44]
    paths = []
    for i in chosen:
        paths.append(folder / f"test-{i:02d}.png")
        Image.fromarray(x[i]).save(paths[-1])
    return paths, x[chosen].reshape(len(chosen), -1).T / 255.0


@needs_course
def test_the_contributions_sum_to_the_logit_and_the_probability_is_predicts(
        course_model, course_images, course_oracle):
    model = course_model[0]
    paths, X = course_images
    photos = _photos()
    inputs = [*paths, *photos]
    explained = _json(["explain", *inputs, "--model", model, "--json"])
    predicted = _json(["predict", *inputs, "--model", model, "--json"])
    assert [e["path"] for e in explained] == [p["path"] for p in predicted] == [
        str(p) for p in inputs]
    from catlr import Predictor

    predictor = Predictor.load(model)
    w, b = predictor.model.w_.reshape(-1), predictor.model.b_
    w_course, b_course, _ = course_oracle  # the course's own loop: weights computed apart
    for k, (e, p) in enumerate(zip(explained, predicted)):
        assert e["probability"] == p["probability"] and e["label"] == p["label"]  # the same float
        terms = np.asarray(e["map"])
        assert terms.shape == (64, 64)
        assert abs(terms.sum() + e["b"] - e["logit"]) <= 1e-9
        assert abs(sum(e["channels"].values()) - e["contributions"]) <= 1e-9
        assert e["b"] == b
        # the logit computed plainly: w . x + b with x the pixels / 255
        x = X[:, k] if k < len(paths) else predictor.decode(inputs[k]).reshape(-1) / 255.0
        assert abs(float(w @ x + b) - e["logit"]) <= 1e-9
        assert abs(1 / (1 + np.exp(-e["logit"])) - e["probability"]) <= 1e-12
        if k < len(paths):  # and with the course loop's weights, trained apart
            assert abs(float(w_course.ravel() @ x + b_course) - e["logit"]) <= 1e-9
        # each channel's sum is its own part of the map, recomputed
        rgb = (w * x).reshape(64, 64, 3)
        for c, name in enumerate(("red", "green", "blue")):
            assert abs(rgb[..., c].sum() - e["channels"][name]) <= 1e-9
        np.testing.assert_allclose(terms, rgb.sum(axis=2), rtol=0, atol=1e-12)


@needs_course
def test_what_it_says_of_the_two_photos(course_model, monkeypatch):
    """The squashed photo is said to be squashed, the class balance of the training set is
    named for the verdict it favours, the regions and the training images most alike are
    listed, and the human report says it all in lines."""
    photos = _photos()
    monkeypatch.chdir(PHOTOS)
    code, out, err = run_cli(["explain", *PHOTO_NAMES, "--model", course_model[0]])
    assert code == 0, err
    small = _json(["explain", "cat-small.jpg", "--model", course_model[0], "--json"])[0]
    assert small["image"]["original"] == [300, 168] and small["label"] == "non-cat"
    assert small["notes"][0].startswith("the photo was squashed from 16:9 to 1:1 (300 x 168")
    assert "the training set is 34% cat images (72 of 209)" in small["notes"][1]
    assert small["training"] == {"data": str(COURSE), "images": 209,
                                 "positive_share": 72 / 209, "note": None}
    for kind in ("by_score", "by_pixels"):
        assert len(small["alike"][kind]) == 5
    # by the model's score: the nearest logits, nearest first, recomputed from the file
    from catlr import Predictor
    from catlr.course import load_dataset

    x, y, *_ = load_dataset(str(COURSE))
    predictor = Predictor.load(course_model[0])
    z = (x.reshape(len(x), -1) / 255.0) @ predictor.model.w_.reshape(-1) + predictor.model.b_
    assert [r["index"] for r in small["alike"]["by_score"]] == list(
        np.argsort(np.abs(z - small["logit"]), kind="stable")[:5].tolist())
    seen = predictor.decode(photos[0]).reshape(-1).astype(float)
    rms = np.sqrt(((x.reshape(len(x), -1) - seen) ** 2).mean(axis=1))
    assert [r["index"] for r in small["alike"]["by_pixels"]] == np.argsort(rms)[:5].tolist()
    assert small["alike"]["by_pixels"][0]["distance"] == pytest.approx(rms.min(), rel=1e-12)
    assert [r["label"] for r in small["alike"]["by_pixels"]] == [
        ("non-cat", "cat")[int(y[0, i])] for i in np.argsort(rms)[:5]]
    positive = small["regions"]["positive"]
    assert positive and all(r["sum"] > 0 for r in positive)
    assert [r["sum"] for r in positive] == sorted((r["sum"] for r in positive), reverse=True)
    lines = out.splitlines()
    assert lines[0] == "cat-small.jpg: non-cat, probability 0.331 (cat above 0.5)"
    assert lines[1].startswith("  logit -0.704 = pixels -0.688 (red ")
    assert "  Note: the photo was squashed from 16:9 to 1:1" in out
    assert lines[-1] == f"Model: {course_model[0]}"


@needs_course
def test_close_to_the_threshold_is_said(course_model):
    photos = _photos()
    e = _json(["explain", photos[0], "--model", course_model[0], "--threshold", "0.3",
               "--json"])[0]
    assert e["label"] == "cat" and e["threshold"] == 0.3
    assert any(n.startswith("this is close to the threshold: p(cat) = 0.331 against 0.3")
               for n in e["notes"]), e["notes"]


@needs_course
def test_when_the_training_data_is_gone_it_says_so_and_explains_the_rest(course_model,
                                                                          tmp_path):
    photos = _photos()
    model = remeta(course_model[0], tmp_path / "moved.npz", data=str(tmp_path / "gone"))
    out = tmp_path / "explain.png"
    code, text, err = run_cli(["explain", photos[0], "--model", model, "--out", out])
    assert code == 0, err
    assert f"  training images: the data the model was trained on, {tmp_path / 'gone'}, is " \
           "gone: no training images to compare with" in text
    e = _json(["explain", photos[0], "--model", model, "--json"])[0]
    assert e["alike"] is None and e["training"]["images"] is None
    assert Image.open(out).format == "PNG"


def _texts(fig) -> list[str]:
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return [t for t in texts if t]


@needs_course
def test_the_picture_shows_the_photo_what_the_model_sees_and_a_map_centred_on_zero(
        course_model, tmp_path):
    """The PNG is catlr's (a real PNG, its mark), and the figure it is drawn from holds the
    original photo in its own proportions, the 64 x 64 copy, the map on a diverging colour
    map whose limits are opposite (zero in the middle), labelled for each class, the sums
    of the logit, and the training images most alike."""
    from catlr import Predictor
    from catlr.files.pictures import png_is_catlr
    from catlr.stages.explain import explain
    from catlr.stages.plots import explain_figure

    photos = _photos()
    out = tmp_path / "explain.png"
    code, text, err = run_cli(["explain", *photos, "--model", course_model[0], "--out", out])
    assert code == 0, err
    assert f"Saved the picture to {out}" in text
    png = Image.open(out)
    assert png.format == "PNG" and png_is_catlr(out)
    assert png.size[0] >= 1200 and png.size[1] >= 700  # two rows, readable at a glance

    found = explain(photos, course_model[0])
    fig = explain_figure(found, ("non-cat", "cat"))
    assert len(fig.subfigs) == 2
    for sub, e, path in zip(fig.subfigs, found, photos):
        texts = _texts(sub)
        assert f"{path}: {e.doc['label']}, p(cat) = {e.doc['probability']:.3f} (threshold " \
               "0.5)" in texts
        images = [(ax, im) for ax in sub.axes for im in ax.get_images()]
        titles = [ax.get_title() for ax, _ in images]
        width, height = e.doc["image"]["original"]
        assert titles[:3] == [f"the photo ({width} x {height})",
                              "what the model sees\n(64 x 64, stretch)",
                              "each pixel's push on z: w_i x_i\n(boxes: the regions pushing most)"]
        original, seen, heat = (im for _, im in images[:3])
        assert original.get_array().shape == e.original.shape
        assert abs(e.original.shape[1] / e.original.shape[0] - width / height) < 0.01
        assert np.array_equal(seen.get_array(), Predictor.load(course_model[0]).decode(path))
        assert heat.get_cmap().name == "RdBu_r"
        low, high = heat.get_clim()
        assert low == -high and high == pytest.approx(np.abs(e.doc["map"]).max())
        np.testing.assert_array_equal(heat.get_array(), np.asarray(e.doc["map"]))
        assert any(t.startswith("non-cat -") for t in texts)
        assert any(t.startswith("cat +") for t in texts)
        assert any(t.startswith("z = red + green + blue + b") for t in texts)
        assert "training images most alike by pixels" in titles or \
            "training images most alike by pixels" in texts
        assert len(images) == 3 + 6  # and six training images
        for note in e.doc["notes"]:
            assert any(note[:60] in t for t in texts)


def test_an_unreadable_photo_is_a_row_of_its_own(small_folder, tmp_path):
    model = tmp_path / "m.npz"
    assert run_cli(["train", small_folder, "--iters", "20", "--out", model])[0] == 0
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    good = next(small_folder.rglob("*.png"))
    code, out, _ = run_cli(["explain", broken, good, "--model", model, "--json"])
    assert code == 1
    rows = json.loads(out)
    assert rows[0] == {"path": str(broken), "error": "not an image"}
    assert rows[1]["path"] == str(good) and "map" in rows[1]


def test_a_picture_of_many_photos_draws_the_first_eight_and_says_so(small_folder, tmp_path):
    from catlr.stages.plots import EXPLAINED

    model, out = tmp_path / "m.npz", tmp_path / "many.png"
    assert run_cli(["train", small_folder, "--iters", "20", "--out", model])[0] == 0
    code, text, err = run_cli(["explain", small_folder, "--model", model, "--out", out])
    assert code == 0, err
    assert text.splitlines()[-1] == f"Saved the picture to {out} (the first {EXPLAINED} of 16 " \
                                    "photos)"
    assert text.count(": cat, probability") + text.count(": non-cat, probability") == 16
    assert Image.open(out).size[1] > 8 * 300  # a row each


def test_the_helpers_name_what_a_person_sees():
    from catlr.stages.explain import heat_rgb, ratio_text, regions

    assert [ratio_text(*s) for s in ((300, 168), (768, 1024), (1114, 1115), (1000, 400))] == [
        "16:9", "3:4", "1:1", "2.5:1"]
    m = np.zeros((64, 64))
    m[0:8, 56:64] = 1.0      # top right pushes towards the positive class
    m[56:64, 0:8] = -2.0     # bottom left away from it
    m[28:36, 28:36] = 0.001  # the centre, barely
    found = regions(m)
    assert found["positive"][0] == {"rows": [0, 7], "columns": [56, 63], "sum": 64.0,
                                    "where": "top right"}
    assert found["negative"] == [{"rows": [56, 63], "columns": [0, 7], "sum": -128.0,
                                  "where": "bottom left"}]
    rgb = heat_rgb(np.array([[-2.0, 0.0, 2.0, 1.0]]))
    assert rgb[0].tolist() == [[33, 102, 172], [247, 247, 247], [178, 24, 43],
                               [212, 136, 145]]


# ---------------------------------------------------------------- the page of catlr serve

@needs_course
def test_the_api_explains_each_photo_as_catlr_explain_does(course_model, monkeypatch):
    from test_serve import ask, form, running

    from catlr.stages.explain import heat_rgb

    photos = _photos()
    monkeypatch.chdir(PHOTOS)
    expected = {e["path"]: e for e in _json(["explain", *PHOTO_NAMES, "--model",
                                             course_model[0], "--json"])}
    body, headers = form(*[(p.name, p.read_bytes()) for p in photos])
    with running(course_model[0]) as (url, _):
        status, _, answer = ask(url, "POST", "/predict?explain=1", body, headers)
        plain = ask(url, "POST", "/predict", body, headers)[2]
    assert status == 200
    rows = json.loads(answer)
    assert all("explanation" not in r for r in json.loads(plain))  # only when asked
    for row in rows:
        e, why = expected[row["path"]], row["explanation"]
        assert row["probability"] == e["probability"]
        assert (why["logit"], why["b"], why["contributions"]) == (e["logit"], e["b"],
                                                                 e["contributions"])
        png = Image.open(io.BytesIO(base64.b64decode(why["heat"].split(",", 1)[1])))
        assert np.array_equal(np.asarray(png), heat_rgb(np.asarray(e["map"])))


@pytest.mark.slow
@needs_course
def test_the_page_shows_the_heat_map_under_each_card(browser, course_model, tmp_path,  # noqa: F811
                                                     monkeypatch):
    """In headless chromium: each card has the map of `catlr explain` under it (its very
    colours), the sums of the logit and a key that names the classes."""
    from test_serve import _drop, running

    from catlr.stages.explain import heat_rgb

    photos = _photos()
    monkeypatch.chdir(PHOTOS)
    expected = {e["path"]: e for e in _json(["explain", *PHOTO_NAMES, "--model",
                                             course_model[0], "--json"])}
    model = tmp_path / "m.npz"
    shutil.copy(course_model[0], model)
    with running(model) as (url, _):
        page = browser.new_page(viewport={"width": 900, "height": 900})
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(url)
        for i, photo in enumerate(photos):
            _drop(page, photo.name, photo.read_bytes())
            page.locator(".card .heat").nth(i).wait_for(timeout=30_000)
        for card in page.query_selector_all(".card"):
            name = card.query_selector(".name").text_content()
            e = expected[name]
            heat = card.query_selector("img.heat")
            assert heat.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [64, 64]
            assert heat.get_attribute("alt") == ("each pixel's push: red towards cat, blue "
                                                 "towards non-cat")
            png = base64.b64decode(heat.get_attribute("src").split(",", 1)[1])
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))),
                                  heat_rgb(np.asarray(e["map"])))

            def signed(v):
                return ("-" if v < 0 else "+") + f"{abs(v):.2f}"

            assert card.query_selector(".sums").text_content() == (
                f"logit {signed(e['logit'])} = pixels {signed(e['contributions'])} + b "
                f"{signed(e['b'])}")
            assert card.query_selector(".key").text_content() == ("red: towards cat, blue: "
                                                                  "towards non-cat")
        page.close()
    assert problems == []



def test_the_original_is_shown_as_a_viewer_shows_it(tmp_path):
    """A photo stored 300 x 168 with EXIF rotation 6 (a phone held upright) is 168 x 300 to
    its viewer: the preview and the size explain names are those, and its pixels are the
    rotated photo's."""
    from catlr.data.images import load_image, load_preview

    pixels = np.zeros((168, 300, 3), np.uint8)
    pixels[:, :150] = (200, 30, 30)  # red on the left as stored: on top once turned
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6
    path = tmp_path / "upright.jpg"
    im.save(path, exif=exif, quality=95)
    info = {}
    preview = load_preview(path, 512, info=info)
    assert info["size"] == (300, 168) and info["oriented"] == (168, 300)
    assert preview.shape == (300, 168, 3)
    assert preview[:140].mean(axis=(0, 1))[0] > 150 and preview[160:].mean(axis=(0, 1))[0] < 60
    small = load_preview(path, 100)
    assert small.shape == (100, 56, 3)  # the longest side at most 100, proportions kept
    info = {}
    load_image(path, 64, "stretch", info=info)  # predict's decoding says the same
    assert info["oriented"] == (168, 300)


def readme_output(command: str) -> list[str]:
    """The lines the README shows under `command` (its '# ' lines)."""
    from conftest import ROOT

    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"    {command}") + 1
    shown = []
    for line in lines[start:]:
        if not line.startswith("    # "):
            break
        shown.append(line[len("    # "):])
    return shown


@needs_course
def test_the_readme_shows_what_explain_prints(course_model, tmp_path, monkeypatch):
    photos = _photos()
    run = tmp_path / "runs" / "train-1"
    run.mkdir(parents=True)
    shutil.copy(course_model[0], run / "model.npz")  # as `catlr train data/` leaves it
    shutil.copy(photos[0], tmp_path / photos[0].name)
    monkeypatch.chdir(tmp_path)
    command = "catlr explain cat-small.jpg --out explain.png"
    code, out, err = _run_cli(command.split()[1:])  # as a pipe shows it, wrapped
    assert code == 0, err
    assert out.splitlines() == readme_output(command)

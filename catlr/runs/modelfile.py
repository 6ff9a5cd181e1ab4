"""The model file: an uncompressed .npz read with allow_pickle=False, validated before use.

Entries (README, "The model file"):
    w      (n_x,) float64   the weights, n_x = size * size * 3
    b      ()     float64   the bias
    costs  (k,)   float64   the cost at iterations 0, print_every, 2 print_every, ...
    meta   ()     str       JSON: format, image size, classes, training settings, figures
Loading never runs code from the file: no pickles, and every entry is checked
(keys, dtypes, shapes, finite values, a known format) before catlr uses it.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..config import CHOICES, LIMITS, RENAMED, one_of, saved
from ..errors import CatlrError
from ..files.inputs import reading
from ..files.outputs import KINDS, Kind, atomic_path
from ..learn.design import NORMALIZATION
from ..learn.model import LogisticRegression
from ..version import __version__
from .checked import LENIENT, MAX_TEXT, THRESHOLD, Bad, Damaged, lenient, read_npz

FORMAT = 1
MAX_META = 1 << 20   # characters of the metadata JSON
ENTRIES = ("w", "b", "costs", "meta")


def _is_model(path) -> bool:
    """Whether the file at `path` is a model file catlr wrote (the output guard's test
    before replacing it)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return {"w.npy", "b.npy", "meta.npy"} <= set(z.namelist()[:16])
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


KINDS["model"] = Kind("a model file (.npz)", False, _is_model)


def metadata(model, ds, cfg: dict, figures: dict, fingerprint=None) -> dict:
    """The JSON metadata saved with the weights: enough to re-create the data and preprocessing."""
    return {
        "format": FORMAT,
        "catlr_version": __version__,
        "image_size": ds.size,
        "n_x": ds.n_x,
        "classes": list(ds.classes),
        "positive": ds.classes[1],
        "normalization": NORMALIZATION,
        "fit": cfg["fit"],
        "lr": cfg["lr"],
        "iters": cfg["iters"],
        "print_every": cfg["print_every"],
        "form": model.form_,
        "dtype": figures.get("dtype", cfg["dtype"]),
        "data": ds.source,
        "data_kind": ds.kind,
        "split": ds.split,
        "validation": ds.validation,  # which examples were held out: indices or file paths
        "fingerprint": fingerprint or {},
        **figures,
        "config": {**saved(cfg), "form": model.form_},  # no storage options: secrets
    }


def save(path, model, meta: dict) -> None:
    """Write the model atomically: an existing file stays intact until the new one is complete."""
    with atomic_path(path, "model") as tmp, open(tmp, "wb") as f:
        np.savez(f, w=np.asarray(model.w_, dtype=np.float64).ravel(), b=np.float64(model.b_),
                 costs=np.asarray(model.costs_, dtype=np.float64), meta=np.str_(json.dumps(meta)))


def load(path):
    """Read and validate a model file; returns (LogisticRegression, meta dict)."""
    path = os.fspath(path)
    reading(path)
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO would block, a device never end
        raise CatlrError(f"model file {path} is not a regular file, pass a model written by "
                         "'catlr train'")
    if not os.path.isfile(path):
        raise CatlrError(f"model file {path} not found, train one with "
                         f"'catlr train DATA --out {path}' or pass --model")
    with open(path, "rb") as f:
        magic = f.read(8)
    if not magic.startswith(b"PK"):  # an .npz is a zip archive
        raise _invalid(path, "an HDF5 file: pass data as DATA, not --model"
                       if magic.startswith(b"\x89HDF") else "a single .npy array"
                       if magic.startswith(b"\x93NUMPY") else "not an .npz archive")
    entries = read_npz(path, set(ENTRIES), _invalid)
    meta = _check(path, entries)
    model = LogisticRegression.from_weights(
        entries["w"], entries["b"], entries["costs"], form=meta.get("form"),
        lr=meta.get("lr") or 0.005, iters=meta.get("iters") or 0,
        print_every=meta.get("print_every") or 100)
    return model, meta


def _invalid(path, why: str) -> Damaged:
    return Damaged(path, why, "is not a valid catlr model file",
                   "train a new one with 'catlr train'")


def clean(meta: dict) -> dict:
    """Metadata from a model file made safe to use: every field catlr formats or reads
    (checked.FIGURES) that is not of its kind is None, texts are cut to MAX_TEXT, warnings
    to checked.MAX_WARNINGS, the split and config to what they can be; the threshold and
    how it was chosen likewise."""
    meta = lenient(meta, LENIENT)
    return meta


def _meta(path, meta_arr) -> dict:
    """The metadata entry: a JSON object in a string of at most MAX_META characters, its
    old names read as the new ones, its figures clean()."""
    if meta_arr.dtype.kind != "U" or meta_arr.shape != ():
        raise _invalid(path, "meta is not a JSON string")
    if meta_arr.size and len(str(meta_arr)) > MAX_META:
        raise _invalid(path, f"meta is over {MAX_META >> 20} MB of text, more than any model holds")
    try:
        meta = json.loads(str(meta_arr))
    except ValueError:
        raise _invalid(path, "meta is not valid JSON") from None
    except RecursionError:
        raise _invalid(path, "meta is nested too deeply") from None
    if not isinstance(meta, dict):
        raise _invalid(path, "meta is not a JSON object")
    meta = {RENAMED.get(k, k): v for k, v in meta.items()}  # files of earlier versions
    try:  # the threshold labels every image: a wrong one (null too) is refused, not dropped
        if "threshold" in meta:
            THRESHOLD(meta["threshold"])
    except Bad as e:
        raise _invalid(path, f"threshold {e.why}") from None
    # figures and settings that catlr formats or uses: a wrong type is dropped, not trusted
    return clean(meta)


def _size_ok(size) -> bool:
    low, high = LIMITS["size"]
    return isinstance(size, int) and not isinstance(size, bool) and low <= size <= high


def _n_x(meta) -> int:
    return meta["image_size"] ** 2 * 3


# What a model needs to be used, in the order checked: (whether it holds, why not). Each
# gets the metadata and the arrays (w, b, costs); the first that fails is the one line.
REQUIRED = (
    (lambda m, e: _size_ok(m.get("image_size")),
     lambda m, e: f"image_size {m.get('image_size')!r} is not an integer from "
                  f"{LIMITS['size'][0]} to {LIMITS['size'][1]}"),
    (lambda m, e: isinstance(m.get("classes"), list) and len(m["classes"]) == 2 and all(
        isinstance(c, str) and 0 < len(c) <= MAX_TEXT for c in m["classes"]),
     lambda m, e: "classes must be a list of two names"),
    (lambda m, e: m.get("fit", "stretch") in CHOICES["fit"],
     lambda m, e: f"fit {m.get('fit')!r} is not {one_of('fit')}"),
    (lambda m, e: m.get("normalization", NORMALIZATION) == NORMALIZATION,
     lambda m, e: f"normalization {m.get('normalization')!r} is not {NORMALIZATION!r}, the "
                  "only one this catlr applies"),
    (lambda m, e: e["w"].dtype.kind == "f" and e["w"].ndim in (1, 2)
     and e["w"].size == _n_x(m),
     lambda m, e: f"w has shape {e['w'].shape} and dtype {e['w'].dtype}, expected "
                  f"({_n_x(m)},) float for {m['image_size']} x {m['image_size']} images"),
    (lambda m, e: e["b"].dtype.kind == "f" and e["b"].size == 1,
     lambda m, e: f"b has shape {e['b'].shape} and dtype {e['b'].dtype}, expected a float "
                  "scalar"),
    (lambda m, e: e["costs"].dtype.kind == "f" and e["costs"].ndim == 1,
     lambda m, e: "costs is not a 1-D float array"),
    (lambda m, e: bool(np.isfinite(e["w"]).all() and np.isfinite(e["b"]).all()),
     lambda m, e: "the weights are not finite"),
)


def _check(path, entries: dict) -> dict:
    meta = _meta(path, entries["meta"])
    fmt = meta.get("format")
    if fmt != FORMAT or isinstance(fmt, bool):
        hint = "upgrade catlr" if isinstance(fmt, int) and fmt > FORMAT else "retrain it"
        raise CatlrError(f"{path} has model format {fmt!r}, this catlr reads format {FORMAT}, "
                         f"{hint}")
    for holds, why in REQUIRED:
        if not holds(meta, entries):
            raise _invalid(path, why(meta, entries))
    return meta


# ---- the threshold (issue 31): the probability above which the model labels an image
# the positive class, stored by train (given, or chosen on the validation split: then
# threshold_choice says how). A file without one, from before, labels at 0.5.

DEFAULT_THRESHOLD = 0.5


def threshold_of(meta: dict) -> float:
    """The threshold a model's metadata (checked by load) stores, or 0.5."""
    value = meta.get("threshold")
    return DEFAULT_THRESHOLD if value is None else float(value)



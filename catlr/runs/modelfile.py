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
import math
import os

import numpy as np

from ..config import CHOICES, LIMITS, RENAMED, from_saved, one_of, problem, saved
from ..errors import CatlrError, describe
from ..files.inputs import reading
from ..files.outputs import atomic_path
from ..learn.design import NORMALIZATION
from ..learn.lbfgs import HISTORY as LBFGS_HISTORY
from ..learn.model import LogisticRegression
from ..version import __version__

FORMAT = 1
FIGURES = ("final_cost", "train_accuracy", "test_accuracy", "m_train", "m_test", "lr", "iters",
           "print_every")
TEXTS = ("data", "data_kind", "created", "dtype", "form", "engine", "engine_reason", "positive",
         "fit", "normalization", "catlr_version", "solver")
MAX_TEXT = 4096      # characters in one text of the metadata (a path, a reason)
MAX_WARNINGS = 20    # warnings kept from a file (a run has one or two)
MAX_META = 1 << 20   # characters of the metadata JSON
# A model file is small (about 100 KB at 64 x 64, 25 MB at the largest size, 1024): refuse
# to read, or to inflate, anything larger, and any entry compressed more than MAX_RATIO:1.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
MAX_RATIO = 50


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
    entries = read_npz(path, {"w", "b", "costs", "meta"}, _invalid)
    w, b, costs, meta_arr = (entries[k] for k in ("w", "b", "costs", "meta"))
    meta = _check(path, w, b, costs, meta_arr)
    model = LogisticRegression.from_weights(
        w, b, costs, form=meta.get("form"), lr=meta.get("lr") or 0.005,
        iters=meta.get("iters") or 0, print_every=meta.get("print_every") or 100)
    return model, meta


def read_npz(path, needed: set, invalid, optional=frozenset(), max_bytes=MAX_ENTRY_BYTES) -> dict:
    """The entries of an .npz read with allow_pickle=False, each checked before it is
    inflated (its declared size, its compression ratio): the one reader of catlr's own
    files (models, solver states). `invalid(path, why)` makes the one-line error;
    max_bytes: the most the file and any entry may hold."""
    try:
        if os.path.getsize(path) > max_bytes:
            raise ValueError("the file is implausibly large")
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with npz:
            missing = needed - set(npz.files)
            if missing:
                raise ValueError(f"missing {', '.join(sorted(missing))}")
            out = {}
            for name in sorted((needed | set(optional)) & set(npz.files)):
                info = npz.zip.getinfo(f"{name}.npy")
                if info.file_size > max_bytes:
                    raise ValueError(f"entry {name} declares {info.file_size} bytes, more than "
                                     "any model holds")
                if info.file_size > MAX_RATIO * max(info.compress_size, 1) + 4096:
                    raise ValueError(f"entry {name} is compressed {info.file_size} : "
                                     f"{info.compress_size}, a zip bomb")
                out[name] = npz[name]
            return out
    except CatlrError:
        raise
    except Exception as e:  # anything a malformed or hostile file can raise
        raise invalid(path, describe(e, 100)) from None


# ---- the solver's state: what a checkpoint, or a finished run, keeps to go on from

STATE_ARRAYS = ("w", "u", "w0", "wp", "keep", "costs", "trace", "held_costs")
# ---- L-BFGS's own fields (descent.quasi_newton): the gradient at w, b (float64 here), its
# memory of pairs s, y (k, n_x + 1) oldest first with s.y of each, beside its cost and the
# cost before the last iteration (in the JSON: floats are written as their repr, exactly)
LBFGS_ARRAYS = ("lbfgs_g", "lbfgs_s", "lbfgs_y", "lbfgs_sy")
# the most a state file may hold: L-BFGS's 2 LBFGS_HISTORY + 3 vectors (its pairs, w, g, the
# best iterate kept), and room, of n_x + 1 float64 at the largest size (654 MB at 1024)
STATE_MAX_BYTES = (2 * LBFGS_HISTORY + 6) * 8 * (3 * LIMITS["size"][1] ** 2 + 1)


def save_state(path, state: dict, info: dict, kind: str = "state") -> None:
    """Write a solver state (descent's snapshot: the weights w or the dual coefficients u,
    b or v in their own float type, the history) and `info` (JSON: the run's config, data,
    fingerprint, iterations) to `path`, atomically."""
    arrays = {"meta": np.str_(json.dumps({**info, **{
        k: v for k, v in state.items()
        if k not in STATE_ARRAYS + LBFGS_ARRAYS + ("b", "bp", "keep")},
        "keep_at": None if state.get("keep") is None else list(state["keep"][1:]),
        "b_dtype": np.asarray(state.get("b", 0.0)).dtype.name}, default=float))}
    for key in ("w", "u", "w0", "wp", *LBFGS_ARRAYS):
        if state.get(key) is not None:
            arrays[key] = np.asarray(state[key])
    arrays["b"] = np.asarray(state.get("b", 0.0))
    if state.get("bp") is not None:  # nesterov's previous bias, in its own float type too
        arrays["bp"] = np.asarray(state["bp"])
    if state.get("keep") is not None:
        arrays["keep"] = np.asarray(state["keep"][0])
    arrays["costs"] = np.asarray(state.get("costs", []), np.float64)
    arrays["trace"] = np.asarray(state.get("trace", []), np.float64).reshape(-1, 2)
    arrays["held_costs"] = np.asarray(state.get("held_costs", []), np.float64)
    with atomic_path(path, kind) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_state(path, is_input=True) -> tuple[dict, dict]:
    """(the solver state, the info saved with it) from save_state's file, checked. A
    checkpoint a resume completes in place is consumed, not an input (is_input=False): the
    completed run replaces it."""
    path = os.fspath(path)
    if is_input:
        reading(path)

    def invalid(p, why):
        return CatlrError(f"{p} is not a state catlr can resume from ({why}), resume from the "
                          "run's model instead or train anew")

    if not os.path.isfile(path):
        raise invalid(path, "not a regular file")
    e = read_npz(path, {"meta", "b", "costs", "trace", "held_costs"}, invalid,
                 {"w", "u", "w0", "wp", "bp", "keep", *LBFGS_ARRAYS}, STATE_MAX_BYTES)
    try:
        info = json.loads(str(e["meta"]))
        if not isinstance(info, dict) or info.get("form") not in ("primal", "dual"):
            raise ValueError("no form")
        form = info["form"]
        vec = e.get("w" if form == "primal" else "u")
        if vec is None or vec.ndim != 1 or vec.dtype.kind != "f" or not np.isfinite(vec).all():
            raise ValueError("the weights are missing or not finite")
        i = info.get("i")
        if not (isinstance(i, int) and 0 <= i <= 10**9):
            raise ValueError("no iteration")
        b = e["b"]
        if b.shape != () or b.dtype.kind != "f":
            raise ValueError("b is not a float")
        trace = e["trace"]
        state = {"form": form, "i": i, "b": b[()], "costs": e["costs"].tolist(),
                 "trace": trace.reshape(-1, 2).tolist(), "held_costs": e["held_costs"].tolist(),
                 "best": info.get("best"), "since": int(info.get("since") or 0)}
        if state["trace"]:
            state["trace"] = [[int(a), float(c)] for a, c in state["trace"]]
        if form == "primal":
            state["w"] = vec
            solver = info.get("solver", "gd")
            if solver not in ("gd", "nesterov", "lbfgs"):
                raise ValueError(f"solver {solver!r} keeps no state")
            if solver == "lbfgs":
                state.update(solver=solver, **_lbfgs_state(e, info, vec, b))
            if solver == "nesterov":  # its momentum: the previous iterate, t and beta
                wp, bp = e.get("wp"), e.get("bp")
                t, beta = info.get("t"), info.get("beta")
                if wp is None or wp.shape != vec.shape or wp.dtype != vec.dtype or not (
                        np.isfinite(wp).all()):
                    raise ValueError("nesterov's previous weights are missing or not finite")
                if bp is None or bp.shape != () or bp.dtype.kind != "f":
                    raise ValueError("nesterov's previous bias is not a float")
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in (t, beta)) or t < 1:
                    raise ValueError("nesterov's momentum (t, beta) is not a number")
                state.update(solver=solver, wp=wp, bp=bp[()], t=float(t), beta=float(beta))
        else:
            state.update(u=vec, v=float(info.get("v", 0.0)), t=int(info.get("t", 0)),
                         b0=float(info.get("b0", 0.0)), w0=e.get("w0"))
        if e.get("keep") is not None and info.get("keep_at"):
            state["keep"] = (e["keep"], *info["keep_at"])
    except (ValueError, TypeError, KeyError) as err:
        raise invalid(path, describe(err)) from None
    return state, info


def _lbfgs_state(e: dict, info: dict, w, b) -> dict:
    """L-BFGS's fields of a state file, checked: w and b float64, the gradient (n,) with
    n = n_x + 1 and its cost, both absent after an early stop; the pairs s, y (k, n), k up
    to LBFGS_HISTORY, s.y > 0 of each; the cost before the last iteration (or null)."""
    n = w.shape[0] + 1
    if w.dtype != np.float64 or b.dtype != np.float64:
        raise ValueError("L-BFGS's w and b are not float64")
    g, f, f_prev = e.get("lbfgs_g"), info.get("lbfgs_f"), info.get("lbfgs_f_prev")
    if (g is None) != (f is None) or g is not None and not (
            _vectors(g, (n,)) and _number(f)) or f_prev is not None and not _number(f_prev):
        raise ValueError("L-BFGS's gradient or cost is missing or not finite")
    pairs = [e.get(k) for k in ("lbfgs_s", "lbfgs_y", "lbfgs_sy")]
    k = pairs[2].shape[0] if pairs[2] is not None and pairs[2].ndim == 1 else -1
    if not (0 <= k <= LBFGS_HISTORY and _vectors(pairs[0], (k, n))
            and _vectors(pairs[1], (k, n)) and _vectors(pairs[2], (k,))
            and bool(np.all(pairs[2] > 0))):
        raise ValueError(f"L-BFGS's memory is not up to {LBFGS_HISTORY} pairs of {n} finite "
                         "floats")
    keep = e.get("keep")
    if keep is not None and not _vectors(keep, (n,)):
        raise ValueError(f"L-BFGS's best iterate is not {n} finite floats")
    return {"lbfgs_g": g, "lbfgs_f": f, "lbfgs_f_prev": f_prev, "lbfgs_s": pairs[0],
            "lbfgs_y": pairs[1], "lbfgs_sy": pairs[2]}


def _vectors(a, shape) -> bool:
    return (a is not None and a.shape == shape and a.dtype == np.float64
            and bool(np.isfinite(a).all()))


def _number(v) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def _invalid(path, why: str) -> CatlrError:
    return CatlrError(f"{path} is not a valid catlr model file ({why}), "
                      "train a new one with 'catlr train'")


def clean(meta: dict) -> dict:
    """Metadata from a file (a model's, a run's metrics.json) made safe to use: every field
    catlr formats or reads of the wrong type is None, texts are cut to MAX_TEXT, warnings
    to MAX_WARNINGS, the split and config to what they can be. The one check of every
    figure catlr reads back."""
    meta = dict(meta)
    for key in FIGURES:
        if key in meta and (isinstance(meta[key], bool)
                            or not isinstance(meta[key], (int, float, type(None)))
                            or isinstance(meta[key], float) and not math.isfinite(meta[key])):
            meta[key] = None
    for key in ("train_accuracy", "test_accuracy"):
        if meta.get(key) is not None and not 0 <= meta[key] <= 1:
            meta[key] = None
    for key in TEXTS:
        if key in meta:
            meta[key] = meta[key][:MAX_TEXT] if isinstance(meta[key], str) else None
    if "warnings" in meta:
        warnings = meta["warnings"] if isinstance(meta["warnings"], list) else [meta["warnings"]]
        kept = [str(w)[:MAX_TEXT] if isinstance(w, str) else str(w)[:200]
                for w in warnings[:MAX_WARNINGS]]
        if len(warnings) > MAX_WARNINGS:
            kept.append(f"... and {len(warnings) - MAX_WARNINGS} more warnings in the file")
        meta["warnings"] = kept
    split = meta.get("split")
    if split is not None and not (isinstance(split, dict) and
                                  not problem("seed", split.get("seed")) and
                                  not problem("test_fraction", split.get("test_fraction"))):
        meta["split"] = None
    if "config" in meta:
        meta["config"] = from_saved(meta["config"])
    if "validation" in meta:
        v = meta["validation"]
        ok = isinstance(v, dict) and all(
            isinstance(v.get(k), list) and all(isinstance(i, t) and not isinstance(i, bool)
                                               for i in v[k])
            for k, t in (("indices", int), ("paths", str)) if k in v)
        meta["validation"] = v if ok else None
    if "fingerprint" in meta:
        prints = meta["fingerprint"] if isinstance(meta["fingerprint"], dict) else {}
        meta["fingerprint"] = {k: v for k, v in prints.items() if k in ("train", "test")
                               and isinstance(v, str) and len(v) <= 64}
    return meta


def _check(path, w, b, costs, meta_arr) -> dict:
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
    # figures and settings that catlr formats or uses: a wrong type is dropped, not trusted
    meta = clean(meta)
    fmt = meta.get("format")
    if fmt != FORMAT:
        hint = "upgrade catlr" if isinstance(fmt, int) and fmt > FORMAT else "retrain it"
        raise CatlrError(f"{path} has model format {fmt!r}, this catlr reads format {FORMAT}, "
                         f"{hint}")
    size = meta.get("image_size")
    low, high = LIMITS["size"]
    if not isinstance(size, int) or isinstance(size, bool) or not low <= size <= high:
        raise _invalid(path, f"image_size {size!r} is not an integer from {low} to {high}")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and len(classes) == 2
            and all(isinstance(c, str) and 0 < len(c) <= MAX_TEXT for c in classes)):
        raise _invalid(path, "classes must be a list of two names")
    if meta.get("fit", "stretch") not in CHOICES["fit"]:
        raise _invalid(path, f"fit {meta.get('fit')!r} is not {one_of('fit')}")
    if meta.get("normalization", NORMALIZATION) != NORMALIZATION:
        raise _invalid(path, f"normalization {meta.get('normalization')!r} is not "
                             f"{NORMALIZATION!r}, the only one this catlr applies")
    if w.dtype.kind != "f" or w.ndim not in (1, 2) or w.size != size * size * 3:
        raise _invalid(path, f"w has shape {w.shape} and dtype {w.dtype}, expected "
                             f"({size * size * 3},) float for {size} x {size} images")
    if b.dtype.kind != "f" or b.size != 1:
        raise _invalid(path, f"b has shape {b.shape} and dtype {b.dtype}, expected a float scalar")
    if costs.dtype.kind != "f" or costs.ndim != 1:
        raise _invalid(path, "costs is not a 1-D float array")
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise _invalid(path, "the weights are not finite")
    return meta

"""A solver's state on disk: state.npz (a finished run's, for --resume) and checkpoint.npz
(an interrupted run's), written and read back here only.

The file is an uncompressed .npz (read with allow_pickle=False, bounded: checked.read_npz):
the arrays (the weights w, or the dual coefficients u, in their own float type; the bias b
as a float scalar array of its type; the history) are entries, and `meta` is one JSON
string holding the run's info (its config, data, fingerprint, iterations asked) and the
solver's scalars (form, i, t, ...). What a state holds is a table per form and solver
(SCHEMAS): each field's kind (checked.py), whether it is an array, whether it is needed,
and the length it must have against the data it goes on with (LENGTHS: n_x values, or m,
one per training example). load() checks every field before anything uses it, and fits()
checks the lengths once the data is open: a damaged or tampered state is one line naming
the file and the field, before any work.

A new solver that resumes adds its fields as one entry of SCHEMAS (the arrays its loop
keeps, with their lengths, and its scalars), and sets `resumes` in solvers.SOLVERS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..files.inputs import reading
from ..config import LIMITS
from ..files.outputs import KINDS, Kind, atomic_path
from ..learn.lbfgs import HISTORY as LBFGS_HISTORY
from . import checked
from .checked import FIGURES, Bad, Damaged, count, number, optional, row

# ---- the kinds of a state's arrays (the JSON scalars use checked's kinds)

def floats(v, ndim: int = 1):
    """A finite float array of `ndim` dimensions, as it is (its own float type)."""
    if not isinstance(v, np.ndarray) or v.dtype.kind != "f" or v.ndim != ndim:
        raise Bad(f"is {checked.shown(v)}, expected a {ndim}-D float array")
    if not np.isfinite(v).all():
        raise Bad("holds values that are not finite (NaN or infinity)")
    return v


def scalar(v):
    """A finite float of its own type (a NumPy scalar: float32 stays float32)."""
    if not isinstance(v, np.ndarray) or v.dtype.kind != "f" or v.shape != ():
        raise Bad(f"is {checked.shown(v)}, expected a float scalar")
    if not np.isfinite(v):
        raise Bad(f"is {checked.shown(float(v))}, expected a finite number")
    return v[()]


def history(v) -> list:
    """Costs recorded so far: a 1-D float array, as a list."""
    return floats(v).tolist()


def trace(v) -> list:
    """The sampled costs, (k, 2): iteration (a whole number >= 0), cost."""
    rows = floats(v, 2)
    if rows.shape[1] != 2:
        raise Bad(f"has shape {rows.shape}, expected (k, 2): iteration, cost")
    if rows.size and not (np.all(rows[:, 0] >= 0) and np.all(rows[:, 0] == np.round(rows[:, 0]))):
        raise Bad("holds an iteration that is not a whole number >= 0")
    return [[int(a), float(c)] for a, c in rows]


class Field(NamedTuple):
    kind: Callable          # value -> the value to use, or checked.Bad
    array: bool = False     # an entry of the archive (else a key of its JSON meta)
    needed: bool = True     # a state without it is damaged
    length: str = ""        # "n_x" or "m": its length against the data (fits)
    missing: str = ""       # the line when it is absent, if not "FIELD is missing"


# Fields every state has, then each form's and each solver's. A default (since: 0) is
# what a state written before the field existed means.
COMMON = {
    "i": Field(checked.integer()),
    "b": Field(scalar, array=True),
    "costs": Field(history, array=True),
    "trace": Field(trace, array=True),
    "held_costs": Field(history, array=True),
    "best": Field(optional(row(count, number())), needed=False),  # [iteration, cost]
    "since": Field(count, needed=False),
    "b_dtype": Field(checked.choice(("float16", "float32", "float64")), needed=False),
}
PRIMAL = {
    "w": Field(floats, array=True, length="n_x"),
    "keep": Field(floats, array=True, needed=False, length="n_x"),  # the best w, early stopping
    "keep_at": Field(optional(row(number(), count)), needed=False),  # its b, i
}
NESTEROV = {
    "wp": Field(floats, array=True, length="n_x",
                missing="nesterov's previous weights are missing"),
    "bp": Field(scalar, array=True, missing="nesterov's previous bias is missing"),
    "t": Field(number(1, float("inf"), "a finite number >= 1")),
    "beta": Field(number(0, 1, "a number from 0 to 1")),
}
DUAL = {
    "u": Field(floats, array=True, length="m"),
    "keep": Field(floats, array=True, needed=False, length="m"),  # the best u
    "keep_at": Field(optional(row(number(), count, count)), needed=False),  # its v, i, t
    "v": Field(number()),
    "t": Field(checked.integer()),
    "b0": Field(number()),
    "w0": Field(floats, array=True, needed=False, length="n_x"),  # a warm start's weights
    "w0_t": Field(checked.integer(), needed=False),
}
def float64s(v, ndim: int = 1):
    """floats() of float64: L-BFGS keeps its vectors so, whatever X's floats."""
    v = floats(v, ndim)
    if v.dtype != np.float64:
        raise Bad(f"is {v.dtype}, expected float64")
    return v


def pairs(v):
    """L-BFGS's memory of s or y vectors: (k, n_x + 1) float64, oldest first."""
    return float64s(v, 2)


# L-BFGS (descent.quasi_newton, lbfgs.py): x = [w; b] in float64; the gradient g at x and
# its cost f, both absent after an early stop (a resume evaluates x again); the cost before
# the last iteration; the memory's pairs s, y with s.y of each (> 0); the best x kept
LBFGS = {
    "w": Field(float64s, array=True, length="n_x"),
    "keep": Field(float64s, array=True, needed=False, length="n"),  # the best [w; b]
    "keep_at": Field(optional(row(count)), needed=False),  # its i
    "lbfgs_g": Field(float64s, array=True, needed=False, length="n"),
    "lbfgs_f": Field(optional(number()), needed=False),
    "lbfgs_f_prev": Field(optional(number()), needed=False),
    "lbfgs_s": Field(pairs, array=True, length="n", missing="L-BFGS's memory is missing"),
    "lbfgs_y": Field(pairs, array=True, length="n", missing="L-BFGS's memory is missing"),
    "lbfgs_sy": Field(float64s, array=True, missing="L-BFGS's memory is missing"),
}
# (form, solver) -> every field of its state
SCHEMAS = {
    ("primal", "gd"): {**COMMON, **PRIMAL},
    ("primal", "nesterov"): {**COMMON, **PRIMAL, **NESTEROV},
    ("primal", "lbfgs"): {**COMMON, **PRIMAL, **LBFGS},
    ("dual", "gd"): {**COMMON, **DUAL},
}
# the most a state file may hold: L-BFGS's 2 LBFGS_HISTORY + 3 vectors (its pairs, w, g, the
# best iterate kept), and room, of n_x + 1 float64 at the largest size (654 MB at 1024)
MAX_BYTES = (2 * LBFGS_HISTORY + 6) * 8 * (3 * LIMITS["size"][1] ** 2 + 1)
ARRAYS = {name for schema in SCHEMAS.values() for name, f in schema.items() if f.array}
HISTORY = {"costs": (-1,), "trace": (-1, 2), "held_costs": (-1,)}  # written as float64
WHAT = {"n_x": "pixel values per image (n_x)", "m": "training examples (m)",
        "n": "weights and the bias (n_x + 1)"}


def _is_state(path) -> bool:
    """Whether the file at `path` is a state catlr wrote (the output guard's test)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return {"meta.npy", "b.npy", "costs.npy", "trace.npy"} <= set(z.namelist()[:16])
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


KINDS["state"] = Kind("a solver state catlr saved", False, _is_state)


def save(path, state: dict, info: dict) -> None:
    """Write a solver state (descent's snapshot: w or u and b in their own float type, the
    solver's scalars, the history) and `info` (the run's config, data, fingerprint,
    iterations) to `path`, atomically."""
    meta = {**info, **{k: v for k, v in state.items() if k not in ARRAYS}}
    keep = state.get("keep")
    meta["keep_at"] = None if keep is None else list(keep[1:])
    meta["b_dtype"] = np.asarray(state.get("b", 0.0)).dtype.name
    arrays = {"meta": np.str_(json.dumps(meta, default=float)),
              "b": np.asarray(state.get("b", 0.0))}
    for name in sorted(ARRAYS - {"b", "keep"} - set(HISTORY)):
        if state.get(name) is not None:
            arrays[name] = np.asarray(state[name])
    if keep is not None:
        arrays["keep"] = np.asarray(keep[0])
    for name, shape in HISTORY.items():
        arrays[name] = np.asarray(state.get(name, []), np.float64).reshape(shape)
    with atomic_path(path, "state") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _damaged(path, why, field=None) -> Damaged:
    hint = ("train the run anew" if os.path.basename(os.fspath(path)) == "checkpoint.npz" else
            "remove it to go on from the run's weights instead (the same run to rounding), "
            "or train anew")
    return Damaged(path, why, "is not a state catlr can resume from", hint, field)


def load(path, is_input=True) -> tuple[dict, dict]:
    """(the solver state, the info saved with it) from save()'s file, every field checked
    (SCHEMAS; the info's figures as checked.FIGURES): Damaged, naming the file and the
    field, at the first that is wrong. The lengths against the data are fits()'s. A
    checkpoint a resume completes in place is consumed, not an input (is_input=False):
    the completed run replaces it."""
    path = os.fspath(path)
    if is_input:
        reading(path)
    if not os.path.isfile(path):
        raise _damaged(path, "not a regular file")
    entries = checked.read_npz(path, {"meta", "b", "costs", "trace", "held_costs"}, _damaged,
                               ARRAYS, MAX_BYTES)
    try:
        meta = json.loads(str(entries["meta"])) if entries["meta"].dtype.kind == "U" else None
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise _damaged(path, "meta is not a JSON object")
    try:
        info = checked.strict(meta, FIGURES, keep_unknown=True)
    except Bad as bad:
        raise _damaged(path, bad.why, bad.field) from None
    schema = _schema(path, info)
    values = {**{k: v for k, v in meta.items() if k not in ARRAYS}, **entries}
    state = {"form": info["form"]}
    for name, field in schema.items():
        if name in values or field.needed:
            state[name] = _field(path, name, field, values)
    fits(path, state, info.get("n_x"), info.get("m"), "its run")  # the lengths it records
    _agree(path, state)
    state["since"] = state.get("since") or 0
    keep, at = state.pop("keep", None), state.pop("keep_at", None)
    state.pop("b_dtype", None)
    if keep is not None and at:
        state["keep"] = (keep, *at)
    if info.get("solver", "gd") != "gd":
        state["solver"] = info["solver"]
    return state, info


def _schema(path, info: dict) -> dict:
    """The fields of this state: its form's and its solver's (a gd state names none)."""
    form = info.get("form")
    if form is None:
        raise _damaged(path, "is missing", "form")
    solver = info.get("solver") or "gd"
    said = info.get("config") or {}
    if said.get("solver", solver) != solver:
        raise _damaged(path, f"is {solver!r}, but its config's solver is {said['solver']!r}",
                       "solver")
    if said.get("form", "auto") not in ("auto", form):
        raise _damaged(path, f"is {form!r}, but its config's form is {said['form']!r}", "form")
    schema = SCHEMAS.get((form, solver))
    if schema is None:
        raise _damaged(path, f"{solver!r} keeps no state in the {form} form", "solver")
    return schema


def _field(path, name: str, field: Field, values: dict):
    if values.get(name) is None:
        if field.needed:
            raise _damaged(path, field.missing or "is missing", name)
        return None
    try:
        return field.kind(values[name])
    except Bad as bad:
        raise _damaged(path, bad.why, bad.within(name).field) from None


def _agree(path, state: dict) -> None:
    """What one field says of another: nesterov's previous weights are w's, the best
    weights kept have w's (or u's) length, the bias's type is b's."""
    if state.get("lbfgs_sy") is not None:
        _lbfgs_agree(path, state)
        return
    vector = state.get("w") if state["form"] == "primal" else state.get("u")
    for name in ("wp", "keep"):
        other = state.get(name)
        if other is not None and (other.shape != vector.shape or other.dtype != vector.dtype):
            raise _damaged(path, f"has shape {other.shape} and dtype {other.dtype}, expected "
                                 f"{vector.shape} {vector.dtype} as the weights", name)
    if state.get("bp") is not None and np.asarray(state["bp"]).dtype != np.asarray(
            state["b"]).dtype:
        raise _damaged(path, f"is {np.asarray(state['bp']).dtype}, expected b's type", "bp")
    if (state.get("keep") is None) != (not state.get("keep_at")):
        raise _damaged(path, "and keep_at disagree (one is missing)", "keep")


def _lbfgs_agree(path, state: dict) -> None:
    """L-BFGS's fields among themselves: b is float64 as w; g and f come together; the
    memory holds up to lbfgs.HISTORY pairs, s and y of one shape, each s.y > 0."""
    most = LBFGS_HISTORY
    n = state["w"].shape[0] + 1
    if np.asarray(state["b"]).dtype != np.float64:
        raise _damaged(path, f"is {np.asarray(state['b']).dtype}, expected float64", "b")
    for name in ("lbfgs_g", "keep"):
        if state.get(name) is not None and state[name].shape != (n,):
            raise _damaged(path, f"has shape {state[name].shape}, expected ({n},): w's "
                                 f"{n - 1} values and b", name)
    if (state.get("lbfgs_g") is None) != (state.get("lbfgs_f") is None):
        raise _damaged(path, "and lbfgs_f disagree (one is missing)", "lbfgs_g")
    sy = state["lbfgs_sy"]
    k = sy.shape[0]
    for name in ("lbfgs_s", "lbfgs_y"):
        if state[name].shape != (k, n):
            raise _damaged(path, f"has shape {state[name].shape}, expected ({k}, {n}): one "
                                 "pair per lbfgs_sy value", name)
    if k > most or not bool(np.all(sy > 0)):
        raise _damaged(path, f"holds {k} values, expected up to {most}, each > 0", "lbfgs_sy")
    if (state.get("keep") is None) != (not state.get("keep_at")):
        raise _damaged(path, "and keep_at disagree (one is missing)", "keep")


def fits(path, state: dict, n_x: int | None, m: int | None, what: str = "the data") -> None:
    """Refuse a state whose vectors do not fit the data it goes on with: n_x values (w,
    nesterov's wp, a warm start's w0) or m, one per training example (the dual's u), in
    one line naming the file and the field. Before any work: once the data is open (a
    size given as None is not checked). `what` says where the sizes come from."""
    schema = SCHEMAS[(state["form"], state.get("solver", "gd"))]
    sizes = {"n_x": n_x, "m": m, "n": None if n_x is None else n_x + 1}
    for name, field in schema.items():
        value = state.get(name)
        if isinstance(value, tuple):  # keep: the best weights and where
            value = value[0]
        size = sizes.get(field.length)
        if size is not None and value is not None and value.shape[-1] != size:
            raise _damaged(path, f"has {value.shape[-1]} values, expected {size}: {what} has "
                                 f"{size} {WHAT[field.length]}", name)

"""What every reader of a run's files shares: the bounded read of an .npz archive and of a
JSON file, the kinds a field can be (a count, a number in a range, a text, a vector of
floats...), the table of the figures a model's metadata, metrics.json and a state's info
hold (FIGURES), and the one error a damaged file raises (Damaged: the file, the field,
what is wrong with it, in one line).

A kind is a function: value -> the value to use, or Bad saying why not ("is Infinity,
expected ..."). A reader is strict (a state, a checkpoint, metrics.json: the first bad
field raises Damaged naming it, before any work) or lenient (a model's metadata, which
the model predicts without: a figure of the wrong kind reads as None, `lenient`).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ..config import CHOICES, DEFAULTS, LIMITS, RENAMED, from_saved, problem
from ..errors import CatlrError, describe

MAX_TEXT = 4096      # characters in one text of the metadata (a path, a reason)
MAX_WARNINGS = 20    # warnings kept from a file (a run has one or two)
MAX_COUNT = 10**9    # iterations, examples: LIMITS["iters"]'s top
# A model or a state is small (about 100 KB at 64 x 64, 25 MB at the largest size, 1024):
# refuse to read, or to inflate, anything larger, and any entry compressed more than
# MAX_RATIO:1.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
MAX_RATIO = 50


class Damaged(CatlrError):
    """A file of a run that cannot be used as it is. The one line: `{path} {lead} ({field}
    {why}), {hint}`; `short` is the reason the runs table shows: the file's name, the
    field and what is wrong."""

    def __init__(self, path, why: str, lead: str, hint: str, field: str | None = None):
        self.path, self.why, self.field = os.fspath(path), why, field
        super().__init__(f"{self.path} {lead} ({self.detail}), {hint}")

    @property
    def detail(self) -> str:
        """The field and what is wrong with it: 'since is Infinity, expected ...'."""
        if not self.field:
            return self.why
        joined = self.why.startswith(("is ", "has ", "holds ", "and "))
        return f"{self.field} {self.why}" if joined else f"{self.field}: {self.why}"

    @property
    def short(self) -> str:
        name = os.path.basename(self.path)
        if not self.field and self.why.startswith("is "):
            return f"{name} {self.why}"  # metrics.json is not a JSON object
        return f"{name}: {self.detail}"


class Bad(ValueError):
    """Why a value cannot be a field's ("is NaN, expected a finite number"); `field` is
    where inside it ("at", "[3]") when the field is a table or a list."""

    def __init__(self, why: str, field: str = ""):
        super().__init__(why)
        self.why, self.field = why, field

    def within(self, name: str) -> Bad:
        inner = self.field if self.field.startswith("[") or not self.field else f".{self.field}"
        return Bad(self.why, f"{name}{inner}")


def shown(value) -> str:
    """A value as a message shows it: Infinity and NaN by name (as JSON writes them), an
    array by its shape, anything long cut."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---- the kinds of a field: value -> value, or Bad

def integer(low: int = 0, high: int = MAX_COUNT):
    def check(v):
        if not (isinstance(v, int) and not isinstance(v, bool) and low <= v <= high):
            raise Bad(f"is {shown(v)}, expected an integer from {low} to {high}")
        return v
    return check


def number(low: float = -math.inf, high: float = math.inf, what: str = "a finite number"):
    def check(v):
        if not (_real(v) and math.isfinite(v) and low <= v <= high):
            raise Bad(f"is {shown(v)}, expected {what}")
        return float(v)
    return check


def text(limit: int = MAX_TEXT):
    """A string, cut to `limit` characters."""
    def check(v):
        if not isinstance(v, str):
            raise Bad(f"is {shown(v)}, expected a text")
        return v[:limit]
    return check


def choice(values):
    def check(v):
        if v not in values or not isinstance(v, str):
            raise Bad(f"is {shown(v)}, expected one of {', '.join(values)}")
        return v
    return check


def setting(key: str):
    """A value config.problem accepts for `key` (class_weight: 'none', 'balanced', '1:3')."""
    def check(v):
        why = problem(key, v)
        if why:
            raise Bad(why)
        return v
    return check


def optional(kind):
    """None, or what `kind` accepts."""
    return lambda v: None if v is None else kind(v)


def _each(pairs) -> list:
    """[kind(item) for kind, item in pairs], Bad naming the index of the first refused."""
    out = []
    for i, (kind, item) in enumerate(pairs):
        try:
            out.append(kind(item))
        except Bad as bad:
            raise bad.within(f"[{i}]") from None
    return out


def listed(kind, most: int | None = None):
    """A list of what `kind` accepts (at most `most` items kept)."""
    def check(v):
        if not isinstance(v, list):
            raise Bad(f"is {shown(v)}, expected a list")
        return _each((kind, item) for item in v[:most])
    return check


def row(*kinds):
    """A list of one item per kind, in order: [iteration, cost]."""
    def check(v):
        if not isinstance(v, list) or len(v) != len(kinds):
            raise Bad(f"is {shown(v)}, expected a list of {len(kinds)}")
        return _each(zip(kinds, v))
    return check


def table(fields: dict, keep_unknown: bool = False):
    """A JSON object whose keys `fields` lists (each with its kind); other keys dropped."""
    def check(v):
        if not isinstance(v, dict):
            raise Bad(f"is {shown(v)}, expected a table")
        return strict(v, fields, keep_unknown)
    return check


def strict(values: dict, fields: dict, keep_unknown: bool = False) -> dict:
    """`values` with every field `fields` lists checked by its kind: Bad, naming the
    field, at the first that fails. Absent fields stay absent."""
    out = dict(values) if keep_unknown else {}
    for name, kind in fields.items():
        if name in values:
            try:
                out[name] = kind(values[name])
            except Bad as bad:
                raise bad.within(name) from None
    return out


def lenient(values: dict, fields: dict) -> dict:
    """`values` with every field `fields` lists that its kind refuses set to None (the
    others as they are, unknown keys kept): a model's metadata, read to predict."""
    out = dict(values)
    for name, kind in fields.items():
        if name in values:
            try:
                out[name] = kind(values[name])
            except Bad:
                out[name] = None
    return out


def warnings(v) -> list:
    """Warnings: a list of texts, at most MAX_WARNINGS kept (and a line saying how many
    more); anything else is made one."""
    items = v if isinstance(v, list) else [v]
    kept = [w[:MAX_TEXT] if isinstance(w, str) else str(w)[:200] for w in items[:MAX_WARNINGS]]
    if len(items) > MAX_WARNINGS:
        kept.append(f"... and {len(items) - MAX_WARNINGS} more warnings in the file")
    return kept


def config(v) -> dict:
    """A saved config: a table whose known settings each pass config.problem (old names
    read as their new ones; a setting of another version is kept, unused)."""
    if not isinstance(v, dict):
        raise Bad(f"is {shown(v)}, expected a table of settings")
    out = {}
    for key, value in v.items():
        key = RENAMED.get(key, key)
        why = problem(key, value) if key in DEFAULTS else None
        if why:
            raise Bad(why, key)
        out[key] = value
    return out


def lenient_table(kind):
    """A table's kind made lenient: each field it lists that is wrong is dropped, the rest
    kept (a threshold's choice with a damaged figure still says how it was chosen)."""
    def check(v):
        if not isinstance(v, dict):
            raise Bad(f"is {shown(v)}, expected a table")
        kept = dict(v)
        while True:
            try:
                return kind(kept)
            except Bad as e:
                name = e.field.split(".")[0].split("[")[0]
                if name not in kept:
                    raise
                del kept[name]
    return check


def lenient_config(v) -> dict:
    return from_saved(v)


def fingerprint(v) -> dict:
    """{"train": hex, "test": hex}: what eval and a resume compare the data with."""
    if not isinstance(v, dict):
        raise Bad(f"is {shown(v)}, expected a table")
    return {k: x for k, x in strict(v, {k: optional(text(64)) for k in ("train", "test")}).items()
            if x is not None}


def lenient_fingerprint(v) -> dict:
    prints = v if isinstance(v, dict) else {}
    return {k: x for k, x in prints.items() if k in ("train", "test") and isinstance(x, str)
            and len(x) <= 64}


def boolean(v):
    if not isinstance(v, bool):
        raise Bad(f"is {shown(v)}, expected true or false")
    return v


count = integer()
fraction = number(0, 1, "a fraction from 0 to 1")
interval = row(fraction, fraction)
costs = listed(number())

# The figures and settings a model's metadata, a run's metrics.json and the info saved with
# a state may hold, each with its kind: the one list of what catlr reads back from them.
THRESHOLD = number(0, 1, "a probability from 0 to 1")  # a model's: it labels every image
FIGURES = {
    "n_x": integer(1, MAX_COUNT), "m": integer(1, MAX_COUNT),
    "final_cost": number(), "val_cost": number(), "best_cost": number(),
    "train_accuracy": fraction, "test_accuracy": fraction, "val_accuracy": fraction,
    "test_accuracy_ci": interval, "val_accuracy_ci": interval,
    "m_train": count, "m_test": count, "m_val": count,
    "lr": number(0, math.inf, "a positive finite number"),
    "iters": integer(*LIMITS["iters"]), "print_every": integer(*LIMITS["print_every"]),
    "iters_run": count, "best_iteration": count, "stopped_at": count,
    "l2": number(0, math.inf, "a finite number >= 0"),
    "class_weight": setting("class_weight"),
    "solver": choice(CHOICES["solver"]), "form": choice(("primal", "dual")),
    "dtype": choice(CHOICES["dtype"]), "engine": choice(CHOICES["engine"]),
    "fit": choice(CHOICES["fit"]),
    **{k: text() for k in ("name", "data", "data_kind", "created", "engine_reason", "positive",
                           "normalization", "catlr_version")},
    "held": choice(("validation", "test")),
    "held_costs": costs,
    "warnings": warnings,
    "parent": table({"run": text(), "at": count}),
    "split": table({"seed": setting("seed"), "test_fraction": setting("test_fraction")},
                   keep_unknown=True),
    "validation": table({"indices": listed(count), "paths": listed(text())}, keep_unknown=True),
    "fingerprint": fingerprint,
    "config": config,
    "lr_auto": listed(table({"lr": number(), "val_cost": number(), "cost_rose": boolean},
                            keep_unknown=True)),
    "iters_asked": count,
    "threshold": THRESHOLD,
    "threshold_choice": table({"precision": fraction, "recall": fraction, "f1": fraction,
                               "on": text(), "target": text(), "met": boolean, "m": count},
                              keep_unknown=True),
}
FIGURES = {name: optional(kind) for name, kind in FIGURES.items()}  # each may be null
# A model's metadata is read leniently (FIGURES' kinds, but a fingerprint or a config keeps
# what it can): what catlr cannot use is None, and the model still predicts. Its fit and
# normalization are texts here: the model's own checks refuse one it cannot apply.
LENIENT = {**FIGURES, "fingerprint": lenient_fingerprint, "config": lenient_config,
           "fit": optional(text()), "normalization": optional(text()),
           "threshold_choice": optional(lenient_table(FIGURES["threshold_choice"]))}


# ---- bounded reading

def read_npz(path, needed: set, invalid, optional=frozenset(), max_bytes=MAX_ENTRY_BYTES) -> dict:
    """The entries of an .npz read with allow_pickle=False, each checked before it is
    inflated (its declared size, its compression ratio): the one reader of catlr's own
    .npz files (models, solver states). `invalid(path, why)` makes the one-line error;
    `max_bytes`: the most the file, and any entry, may hold."""
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


def read_bytes(path, limit: int) -> bytes:
    """The bytes of file `path`, at most `limit` of them; Bad saying what is wrong with it."""
    if not os.path.isfile(path):
        raise Bad("is missing" if not os.path.exists(path) else "is not a regular file")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Bad(f"is over {limit >> 10} KB")
    return data


def read_json(path, limit: int):
    """The JSON document in file `path`, read to at most `limit` bytes; Bad saying what is
    wrong with the file."""
    data = read_bytes(path, limit)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Bad("is not valid JSON") from None

"""Runs: where models live. Every `catlr train` without --out keeps its model in a folder
of its own, and this module owns those folders: writing one, finding the newest, listing,
and the run's text files (each written and read back here):

    runs/<name>/model.npz       the weights and metadata (modelfile.py)
    runs/<name>/state.npz       the solver's final state, for --resume (state.py)
    runs/<name>/checkpoint.npz  an interrupted run's state, instead of the rest (state.py)
    runs/<name>/config.toml     the resolved config (a valid --config file)
    runs/<name>/costs.csv       iteration, cost (and the held-out cost)
    runs/<name>/metrics.json    the figures: final cost, accuracies, warnings, data, settings
    runs/<name>/cost.png        the cost curve, when train is given --plot
Each file has one writer and one reader that checks it (FILES lists them); the runs table
reads every file a run holds, and shows a run whose file is damaged as damaged.
Names are train-1, train-2, ... unless --name gives one. The folder is cfg["runs"]
(runs/ by default): train, eval, predict, inspect and runs all read it from the config.
eval, predict and inspect use the newest run's model (by the time it was written) when
--model is not given.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field

from ..config import DEFAULTS, read_toml
from ..errors import CatlrError, UsageError
from ..events import Wrote, ignore
from ..files.outputs import KINDS, Kind, atomic_folder, atomic_path
from . import modelfile
from .checked import FIGURES, Bad, Damaged, read_bytes, read_json, strict
from .state import fits as state_fits
from .state import load as load_state
from .state import save as save_state

PREFIX = "train-"
MODEL, STATE, CHECKPOINT = "model.npz", "state.npz", "checkpoint.npz"
CONFIG, COSTS, METRICS, PICTURE = "config.toml", "costs.csv", "metrics.json", "cost.png"
SUMMARY = ("name", "created", "data", "data_kind", "lr", "iters", "dtype", "form", "engine",
           "final_cost", "train_accuracy", "test_accuracy", "m_train", "m_test", "warnings",
           "l2", "class_weight", "held", "best_iteration", "best_cost", "stopped_at",
           "val_accuracy", "val_cost", "m_val", "test_accuracy_ci", "parent", "solver",
           "threshold", "threshold_choice")


def _is_run(path) -> bool:
    """A run folder catlr wrote (its model and only its files, temporaries and their locks
    aside), or an empty folder (nothing to lose): a folder with a .git, notes or a
    config.toml alone is not."""
    try:
        names = set(os.listdir(path))
    except OSError:
        return False
    hidden = {n for n in names if n.startswith(".")}
    return not names or (bool({MODEL, CHECKPOINT} & names) and names - hidden <= set(FILES)
                         and all(n.endswith((".tmp", ".lock")) for n in hidden))


KINDS["run"] = Kind("a run folder", True, _is_run)
KINDS["text"] = Kind("a run's text file", False, lambda p: False)  # written in a new folder


@dataclass
class Saved:
    """Where train put a model: the model file, the run folder (None with --out), and every
    file written (the run's own files, then a --plot copy outside it)."""

    model: str
    folder: str | None = None
    files: list = field(default_factory=list)

    @property
    def name(self) -> str | None:
        return os.path.basename(self.folder) if self.folder else None


def check_name(root, name: str | None, exist_ok: bool) -> None:
    """Refuse a --name that cannot be a run folder, or one taken (unless exist_ok): before training."""
    if name is None:
        return
    if not name or name.startswith(".") or "/" in name or os.sep in name or name in ("..",):
        raise UsageError(f"--name {name!r} cannot name a folder, use letters, digits, - and _")
    if os.path.exists(os.path.join(root, name)) and not exist_ok:
        raise UsageError(f"run {name!r} already exists in {root}/, pick another --name or pass "
                         "--exist-ok to replace it")


def next_folder(root, name: str | None) -> str:
    """The folder a new run would take (its name, or the next train-N): what the output
    guard checks before training."""
    if name is not None:
        return os.path.join(root, name)
    taken = [int(m.group(1)) for d in (os.listdir(root) if os.path.isdir(root) else ())
             if (m := re.fullmatch(r"train-(\d+)", d))]
    return os.path.join(root, f"{PREFIX}{max(taken, default=0) + 1}")


def _reserve(root, name, exist_ok) -> tuple[str, bool]:
    """(the run folder, whether this call created it). Auto names never collide: mkdir decides."""
    os.makedirs(root, exist_ok=True)
    if name is not None:
        folder = os.path.join(root, name)
        try:
            os.mkdir(folder)
            return folder, True
        except FileExistsError:
            if not exist_ok:
                check_name(root, name, exist_ok)
            return folder, False
    taken = [int(m.group(1)) for d in os.listdir(root) if (m := re.fullmatch(r"train-(\d+)", d))]
    n = max(taken, default=0) + 1
    while True:
        folder = os.path.join(root, f"{PREFIX}{n}")
        try:
            os.mkdir(folder)
            return folder, True
        except FileExistsError:
            n += 1


def config_text(cfg: dict) -> str:
    """config.toml: a flat config as TOML (strings, numbers and lists of numbers: all a
    config holds). read_config reads it back."""
    lines = ["# The resolved config of this run: catlr train DATA --config config.toml"]
    for key, value in cfg.items():
        if key in DEFAULTS:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _write(path, data: bytes | str, kind: str, on_event) -> str:
    with atomic_path(path, kind) as tmp:
        (tmp.write_text if isinstance(data, str) else tmp.write_bytes)(data)
    on_event(Wrote(os.fspath(path)))
    return os.fspath(path)



def begin(cfg: dict, name=None, exist_ok=False) -> tuple[str, bool]:
    """Take the folder of a new run (its name, or the next train-N) before training, so
    that its checkpoints have a place: (folder, whether this call made it)."""
    return _reserve(cfg["runs"], name, exist_ok)


def write_checkpoint(folder, snapshot: dict, info: dict, on_event=ignore) -> str:
    """Save the solver's state mid-run into the run folder (atomically: a kill during the
    write leaves the last checkpoint whole)."""
    path = os.path.join(folder, CHECKPOINT)
    save_state(path, snapshot, info)
    on_event(Wrote(path, snapshot["i"]))
    return path


def find(run, cfg: dict) -> str:
    """The folder of a run given as a path (runs/train-3) or a name (train-3)."""
    for path in (os.fspath(run), os.path.join(cfg["runs"], os.fspath(run))):
        if os.path.isdir(path) and ({MODEL, CHECKPOINT} & set(os.listdir(path))):
            return path.rstrip(os.sep)
    raise CatlrError(f"{run} is not a run folder (no {MODEL} or {CHECKPOINT} in it), give one "
                     "'catlr runs' lists, e.g. runs/train-1")


def save(cfg: dict, model, meta: dict, *, name=None, exist_ok=False, plot=None, draw=None,
         on_event=ignore, folder=None, created=False, state=None) -> Saved:
    """Write a new run folder under cfg["runs"] (model, config, costs, figures, the solver's
    final state for a resume, and the cost curve as cost.png when `plot` is given: draw()
    returns its PNG bytes, also copied to `plot` when that names a path; plot=True: only
    the run's own cost.png). `folder`: one begin() took already.

    The folder appears whole or not at all: it is written beside its place and renamed
    into it, so a run replaced with exist_ok never mixes old and new files (nor keeps a
    checkpoint once it is complete).
    """
    root = cfg["runs"]
    if folder is None:
        folder, created = _reserve(root, name, exist_ok)
    picture = draw() if plot else None
    try:
        with atomic_folder(folder, "run") as tmp:
            files = {CONFIG: config_text(meta["config"]), COSTS: costs_text(model.costs_, meta),
                     METRICS: metrics_text(os.path.basename(folder), meta)}
            for file, text in files.items():
                _write(os.path.join(tmp, file), text, "text", ignore)
            modelfile.save(os.path.join(tmp, MODEL), model, meta)
            if state is not None:
                save_state(os.path.join(tmp, STATE), state, _state_info(meta))
            if picture is not None:
                _write(os.path.join(tmp, PICTURE), picture, "png", ignore)
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    names = [MODEL, *files] + ([STATE] if state is not None else []) + (
        [PICTURE] if picture is not None else [])
    saved = Saved(os.path.join(folder, MODEL), folder, [os.path.join(folder, n) for n in names])
    on_event(Wrote(folder))
    if picture is not None and plot is not True:
        saved.files.append(_write(plot, picture, "png", on_event))
    return saved


def _state_info(meta: dict) -> dict:
    """What a state file records of its run, to check a resume against (and the lengths
    its vectors must have: n_x, and m training examples)."""
    return {**{k: meta.get(k) for k in ("config", "data", "data_kind", "fingerprint", "form",
                                          "dtype", "engine", "iters", "lr", "print_every",
                                          "created", "parent", "iters_asked", "n_x")},
            "m": meta.get("m_train")}


def save_file(out, model, meta: dict, *, plot=None, draw=None, on_event=ignore) -> Saved:
    """Write the model to exactly `out` (and the cost curve to `plot`: draw() returns its
    PNG bytes, drawn once the model is saved): train --out."""
    modelfile.save(out, model, meta)
    on_event(Wrote(os.fspath(out)))
    saved = Saved(os.fspath(out), None, [os.fspath(out)])
    if plot:
        saved.files.append(_write(plot, draw(), "png", on_event))
    return saved


def costs_text(costs, meta: dict) -> str:
    """costs.csv: iteration, cost (and the held-out cost, validation_cost or test_cost, at
    the same iterations): the recorded costs, then the final one (after the last update).
    read_costs reads it back."""
    every, held, name = meta["print_every"], meta.get("held_costs") or [], meta.get("held")
    final = (meta.get("stopped_at") or meta["iters"], meta.get("final_cost"))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["iteration", "cost"] + ([f"{name}_cost"] if held else []))
    for i, c in enumerate(costs):
        w.writerow([i * every, repr(c)] + ([repr(held[i]) if i < len(held) else ""] if held else []))
    if final[1] is not None and final[0] != (len(costs) - 1) * every:
        last = meta.get("val_cost") if name == "validation" else None
        w.writerow([final[0], repr(final[1])] + ([repr(last) if last is not None else ""]
                                                  if held else []))
    return buf.getvalue()


def metrics_text(name, meta: dict) -> str:
    """metrics.json: the run's row of the runs table (summary). read_metrics reads it back."""
    return json.dumps(summary(name, meta), indent=2) + "\n"


def summary(name, meta: dict) -> dict:
    """One row of the runs table, from a model's metadata."""
    return {"name": name, **{k: meta.get(k) for k in SUMMARY if k != "name"},
            "warnings": meta.get("warnings") or []}


def _models(root, checkpoints=False):
    """[(mtime, name, model path)] of the runs under root that hold a model (and, with
    checkpoints=True, of interrupted runs: their checkpoint's path)."""
    found = []
    if os.path.isdir(root):
        for name in os.listdir(root):
            path = os.path.join(root, name, MODEL)
            if name.startswith("."):
                continue
            if os.path.isfile(path):
                found.append((os.path.getmtime(path), name, path))
            elif checkpoints and os.path.isfile(os.path.join(root, name, CHECKPOINT)):
                path = os.path.join(root, name, CHECKPOINT)
                found.append((os.path.getmtime(path), name, path))
    return sorted(found, reverse=True)


def newest_model(root=DEFAULTS["runs"]) -> str | None:
    """The model file of the newest run under root, or None when there is none."""
    runs = _models(root)
    return runs[0][2] if runs else None


def resolve_model(model, cfg: dict | None = None) -> tuple[str, str]:
    """(model path, how it was chosen) for eval, predict and inspect.

    An explicit --model is used as given; else the newest run under cfg["runs"]; else
    cfg["model"] (model.npz) if it exists; else one line saying how to get a model.
    """
    cfg = cfg or DEFAULTS
    root, fallback = cfg["runs"], cfg["model"]
    if model is not None:
        return os.fspath(model), "given"
    newest = newest_model(root)
    if newest:
        return newest, "the newest run"
    if os.path.isfile(fallback):
        return fallback, "no runs, the default file"
    raise CatlrError(f"no model yet: {root}/ holds no runs and {fallback} does not exist, "
                     "train one with 'catlr train DATA' or pass --model FILE")


MAX_METRICS = 64 << 10  # bytes of a run's metrics.json: a few figures
MAX_COSTS = 64 << 20    # bytes of a run's costs.csv: a line per recorded cost


def _damaged(path, why: str, field: str | None = None) -> Damaged:
    return Damaged(path, why, "is damaged", "train the run again", field)


def read_metrics(folder) -> dict:
    """A run's metrics.json (metrics_text's), bounded, every figure checked
    (checked.FIGURES): Damaged naming the file and the field."""
    path = os.path.join(folder, METRICS)
    try:
        row = read_json(path, MAX_METRICS)
        if not isinstance(row, dict):
            raise Bad("is not a JSON object")
        return strict(row, FIGURES, keep_unknown=True)
    except Bad as bad:
        raise _damaged(path, bad.why, bad.field or None) from None


def read_config(folder) -> dict:
    """A run's config.toml (config_text's) as the settings it holds, each checked
    (config.read_toml: the one reader of config files); Damaged saying what it found."""
    path = os.path.join(folder, CONFIG)
    try:
        return read_toml(path)
    except CatlrError as e:  # "config file PATH: KEY must be ...": the file named once
        raise _damaged(path, str(e).removeprefix(f"config file {path}").lstrip(": ")) from None


def read_costs(folder) -> dict:
    """A run's costs.csv (costs_text's) as its columns: {"iteration": [int], "cost":
    [float], and "validation_cost" or "test_cost": [float or None]}, bounded; Damaged
    naming the line and the column that is wrong."""
    path = os.path.join(folder, COSTS)
    try:
        data = read_bytes(path, MAX_COSTS)
        try:
            lines = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        except (UnicodeDecodeError, csv.Error):
            raise Bad("is not a CSV file in UTF-8") from None
        return _costs(lines)
    except Bad as bad:
        raise _damaged(path, bad.why, bad.field or None) from None


HELD_COLUMNS = ("validation_cost", "test_cost")


def _costs(lines: list) -> dict:
    header = lines[0] if lines else []
    if header[:2] != ["iteration", "cost"] or len(header) > 3 or header[2:] and (
            header[2] not in HELD_COLUMNS):
        raise Bad(f"is {','.join(header)[:60]!r}, expected iteration,cost (and "
                  f"{' or '.join(HELD_COLUMNS)})", "the header")
    columns = {name: [] for name in header}
    for n, line in enumerate(lines[1:], 2):
        if len(line) != len(header):
            raise Bad(f"has {len(line)} values, expected {len(header)}", f"line {n}")
        for name, value in zip(header, line):
            try:
                columns[name].append(_cell(name, value, columns["iteration"]))
            except Bad as bad:
                raise Bad(bad.why, f"{name} on line {n}") from None
    return columns


def _cell(column: str, value: str, before: list):
    """One value of costs.csv: an iteration after the one before, or a finite cost (the
    held-out cost may be empty: not recorded there)."""
    if column == "iteration":
        if not (value.isdigit() and value.isascii()) or before and int(value) <= before[-1]:
            raise Bad(f"is {value[:20]!r}, expected a whole number above the line before's")
        return int(value)
    if column != "cost" and value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise Bad(f"is {value[:20]!r}, expected a finite number")
    return number


def _read_state(folder, meta) -> tuple:
    """A finished run's state.npz, its vectors' lengths checked against the model's
    (n_x from its image size, m its training examples)."""
    path = os.path.join(folder, STATE)
    st, info = load_state(path)
    size, m = (meta or {}).get("image_size"), (meta or {}).get("m_train")
    state_fits(path, st, size * size * 3 if isinstance(size, int) else None, m)
    return st, info


# Every file a run folder may hold, with its reader: reader(folder, the model's metadata)
# returns what it holds, checked, or raises a CatlrError naming the file and the field.
# save() writes them (write_checkpoint the checkpoint); the runs table reads each one a
# run holds. A new file: its name here with its reader, and its writer in save().
FILES = {
    MODEL: lambda folder, meta: modelfile.load(os.path.join(folder, MODEL)),
    METRICS: lambda folder, meta: read_metrics(folder),
    STATE: _read_state,
    CHECKPOINT: lambda folder, meta: load_state(os.path.join(folder, CHECKPOINT)),
    CONFIG: lambda folder, meta: read_config(folder),
    COSTS: lambda folder, meta: read_costs(folder),
    PICTURE: None,  # a picture: catlr's mark tells it (files.pictures)
}


def _short(e: CatlrError) -> str:
    return e.short if isinstance(e, Damaged) else str(e)


def _read(folder, name, meta, problems: list):
    """What file `name` of the run holds (FILES' reader), or None with why in `problems`."""
    try:
        return FILES[name](folder, meta)
    except CatlrError as e:
        problems.append(_short(e))
        return None


def _row(name: str, folder: str) -> dict:
    """A run's row of the runs table: its figures (metrics.json, else its model; an
    interrupted run's checkpoint), and `damaged`: what is wrong with any file it holds."""
    present = set(os.listdir(folder))
    problems, row, meta = [], {}, None
    if MODEL in present:
        loaded = _read(folder, MODEL, None, problems)
        meta = loaded[1] if loaded else None
        row = (_read(folder, METRICS, meta, problems) if METRICS in present else None) or (
            summary(name, meta) if meta else {})
        row["model"], done = os.path.join(folder, MODEL), {MODEL, METRICS}
    else:  # a run stopped by a signal, a crash or a kill: its checkpoint
        loaded = _read(folder, CHECKPOINT, None, problems)
        if loaded:
            st, info = loaded
            row = {**{k: info.get(k) for k in SUMMARY},
                   "interrupted": [st["i"], info.get("iters")]}
            # the cost when it stopped: the last one sampled (within 20 iterations)
            seen = list(st["trace"]) or [[0, c] for c in list(st["costs"])[-1:]]
            if seen:
                row["cost_so_far"] = float(seen[-1][1])
        row["model"], done = None, {CHECKPOINT}
    for file in sorted(present & set(FILES) - done):
        if FILES[file] is not None:
            _read(folder, file, meta, problems)
    if problems:
        row["damaged"] = "; ".join(problems)[:200]
    return row


def table(root=DEFAULTS["runs"]) -> list[dict]:
    """Every run under root, newest first: summary() rows (the runs command's table). A run
    any of whose files is damaged is a row with `damaged` saying which file and field (and
    whatever figures could be read); the others show as usual."""
    rows = []
    for _, name, path in _models(root, checkpoints=True):
        row = _row(name, os.path.dirname(path))
        rows.append({**{k: row.get(k) for k in SUMMARY}, "name": name, "model": row["model"],
                     **{k: row[k] for k in ("interrupted", "damaged", "cost_so_far") if k in row}})
    return rows

"""Runs: where models live. Every `catlr train` without --out keeps its model in a folder
of its own, and this module owns those folders: writing one, finding the newest, listing.

    runs/<name>/model.npz     the weights and metadata (modelfile.py)
    runs/<name>/config.toml   the resolved config (a valid --config file)
    runs/<name>/costs.csv     iteration, cost
    runs/<name>/metrics.json  the figures: final cost, accuracies, warnings, data, settings
    runs/<name>/cost.png      the cost curve, when train is given --plot
Names are train-1, train-2, ... unless --name gives one. The folder is cfg["runs"]
(runs/ by default): train, eval, predict, inspect and runs all read it from the config.
eval, predict and inspect use the newest run's model (by the time it was written) when
--model is not given.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field

from ..config import DEFAULTS
from ..errors import CatlrError, UsageError
from ..events import Wrote, ignore
from ..files.outputs import atomic_folder, atomic_path
from . import modelfile

PREFIX = "train-"
MODEL = "model.npz"
SUMMARY = ("name", "created", "data", "data_kind", "lr", "iters", "dtype", "form", "engine",
           "final_cost", "train_accuracy", "test_accuracy", "m_train", "m_test", "warnings",
           "l2", "class_weight", "held", "best_iteration", "best_cost", "stopped_at",
           "val_accuracy", "val_cost", "m_val", "test_accuracy_ci", "parent", "solver")


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


def toml_text(cfg: dict) -> str:
    """A flat config as TOML (strings, numbers and lists of numbers: all a config holds)."""
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


CHECKPOINT, STATE = "checkpoint.npz", "state.npz"


def begin(cfg: dict, name=None, exist_ok=False) -> tuple[str, bool]:
    """Take the folder of a new run (its name, or the next train-N) before training, so
    that its checkpoints have a place: (folder, whether this call made it)."""
    return _reserve(cfg["runs"], name, exist_ok)


def write_checkpoint(folder, snapshot: dict, info: dict, on_event=ignore) -> str:
    """Save the solver's state mid-run into the run folder (atomically: a kill during the
    write leaves the last checkpoint whole)."""
    path = os.path.join(folder, CHECKPOINT)
    modelfile.save_state(path, snapshot, info, "state")
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
            files = {"config.toml": toml_text(meta["config"]),
                     "costs.csv": _costs_csv(model.costs_, meta["print_every"],
                                             (meta.get("stopped_at") or meta["iters"],
                                              meta.get("final_cost")), meta),
                     "metrics.json": json.dumps(summary(os.path.basename(folder), meta),
                                                indent=2) + "\n"}
            for file, text in files.items():
                _write(os.path.join(tmp, file), text, "text", ignore)
            modelfile.save(os.path.join(tmp, MODEL), model, meta)
            if state is not None:
                modelfile.save_state(os.path.join(tmp, STATE), state, _state_info(meta))
            if picture is not None:
                _write(os.path.join(tmp, "cost.png"), picture, "png", ignore)
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    names = [MODEL, *files] + ([STATE] if state is not None else []) + (
        ["cost.png"] if picture is not None else [])
    saved = Saved(os.path.join(folder, MODEL), folder, [os.path.join(folder, n) for n in names])
    on_event(Wrote(folder))
    if picture is not None and plot is not True:
        saved.files.append(_write(plot, picture, "png", on_event))
    return saved


def _state_info(meta: dict) -> dict:
    """What a state file records of its run, to check a resume against."""
    return {k: meta.get(k) for k in ("config", "data", "data_kind", "fingerprint", "form",
                                       "dtype", "engine", "iters", "lr", "print_every",
                                       "created", "parent", "iters_asked")}


def save_file(out, model, meta: dict, *, plot=None, draw=None, on_event=ignore) -> Saved:
    """Write the model to exactly `out` (and the cost curve to `plot`: draw() returns its
    PNG bytes, drawn once the model is saved): train --out."""
    modelfile.save(out, model, meta)
    on_event(Wrote(os.fspath(out)))
    saved = Saved(os.fspath(out), None, [os.fspath(out)])
    if plot:
        saved.files.append(_write(plot, draw(), "png", on_event))
    return saved


def _costs_csv(costs, every, final=None, meta=None) -> str:
    """iteration, cost (and the held-out cost, validation_cost or test_cost, at the same
    iterations): the recorded costs, then the final one (after the last update)."""
    meta = meta or {}
    held = meta.get("held_costs") or []
    name = meta.get("held")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["iteration", "cost"] + ([f"{name}_cost"] if held else []))
    for i, c in enumerate(costs):
        w.writerow([i * every, repr(c)] + ([repr(held[i]) if i < len(held) else ""] if held else []))
    if final and final[1] is not None and final[0] != (len(costs) - 1) * every:
        last = meta.get("val_cost") if name == "validation" else None
        w.writerow([final[0], repr(final[1])] + ([repr(last) if last is not None else ""]
                                                  if held else []))
    return buf.getvalue()


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


def _metrics(folder) -> dict:
    """A run's metrics.json, bounded and validated as a model's metadata is (modelfile.clean);
    ValueError saying what is wrong with it."""
    path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(path):
        raise ValueError("metrics.json is missing" if not os.path.exists(path)
                         else "metrics.json is not a regular file")
    with open(path, "rb") as f:
        data = f.read(MAX_METRICS + 1)
    if len(data) > MAX_METRICS:
        raise ValueError(f"metrics.json is over {MAX_METRICS >> 10} KB")
    try:
        row = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("metrics.json is not valid JSON") from None
    if not isinstance(row, dict):
        raise ValueError("metrics.json is not a JSON object")
    return modelfile.clean(row)


def table(root=DEFAULTS["runs"]) -> list[dict]:
    """Every run under root, newest first: summary() rows (the runs command's table). A run
    whose figures cannot be read is a row with `damaged` saying why; the others show."""
    rows = []
    for _, name, path in _models(root, checkpoints=True):
        if path.endswith(CHECKPOINT):  # a run stopped by a signal, a crash or a kill
            try:
                state, info = modelfile.load_state(path)
                row = {**{k: info.get(k) for k in SUMMARY}, "created": info.get("created"),
                       "interrupted": [state["i"], info.get("iters")]}
                row["config"] = None
            except CatlrError as e:
                row = {"damaged": str(e)[:200]}
            rows.append({**{k: row.get(k) for k in SUMMARY}, "name": name, "model": None,
                         **{k: row[k] for k in ("interrupted", "damaged") if k in row}})
            continue
        damaged = None
        try:
            row = _metrics(os.path.dirname(path))
        except (OSError, ValueError) as e:
            try:  # no readable metrics.json (a run copied by hand?): read the model
                row = summary(name, modelfile.load(path)[1])
            except CatlrError:
                row, damaged = {}, f"{e} and the model cannot be read"
        rows.append({**{k: row.get(k) for k in SUMMARY}, "name": name, "model": path,
                     **({"damaged": damaged} if damaged else {})})
    return rows

"""Rendering for the CLI: the one output path (table, --json, --csv), the one printer, and
the human reports.

Every character catlr prints goes through here, and every string is escaped on its way
out (text.printable: control characters, escape sequences and undecodable bytes are
written as Python writes them), whatever file or model it came from: a class name that
holds a terminal's escape sequence prints as text. Off a terminal, output is plain lines,
each as long as its content (no rich, no padding, no rules); on a terminal, rich draws
tables and bars. Only cli.py and progress.py import this module.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import NamedTuple

from .. import solvers
from ..text import cell, columns, json_text, printable, wrap


def show(data, fmt: str = "table", *, human=None, columns=None) -> None:
    """Write a command's result to stdout: the one place output formats live.

    fmt "json": one JSON document (always valid: NaN and infinities become null; every
    string escaped, as JSON does); "csv": `data` is a list of dicts, one row each, in
    `columns`, strings escaped; "table": human(data).
    """
    if fmt == "json":
        sys.stdout.write(json_text(data))
    elif fmt == "csv":
        import csv  # only here: a table or JSON never needs it (start-up: bench/startup.py)

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(columns)
        for row in data:
            w.writerow(["" if row.get(c) is None else cell(row[c]) for c in columns])
    else:
        human(data)


def line(text="", stream=None) -> None:
    """Print one line, escaped, on stdout (or `stream`): for the few lines printed before
    or without a console (usage errors, warnings, the version)."""
    stream = stream or sys.stdout
    try:
        print(printable(text), file=stream)
    except BrokenPipeError:
        silence(stream)


def said(text, indent="    ") -> None:
    """A line of a plain report (explain, check) in lines that fit the terminal (80 columns
    in a pipe), broken between words, continuation lines indented."""
    for part in wrap(printable(text), columns(sys.stdout) or 80, indent):
        line(part)


def console(json_mode=False, plain=None):
    """Human output on stdout, or stderr when stdout is reserved for --json: rich on a
    terminal, plain lines otherwise (then rich is never imported)."""
    stream = sys.stderr if json_mode else sys.stdout
    if not stream.isatty():
        return PlainConsole(stream)
    return RichConsole(stream)


PIPE_WIDTH = 80  # what a line in a pipe or a file fits, unless it holds a long path


class PlainConsole:
    """Lines for a pipe or a file: a line over 80 columns wrapped between words (a long path
    is never cut), a table as columns when it fits, else as lines (Table.lines)."""

    is_terminal = False
    width = None  # no terminal: runs_table lays out for PIPE_WIDTH

    def __init__(self, stream):
        self.stream = stream

    def print(self, *objects, whole=False, **_):
        text = " ".join(o.fitted(PIPE_WIDTH) if isinstance(o, Table)
                        else printable(o) if whole else piped(printable(o)) for o in objects)
        try:
            # flushed a line at a time: a reader waiting for a line (a server's address,
            # a cost) gets it when it is printed, not when a buffer fills
            print(text, file=self.stream, flush=True)
        except BrokenPipeError:
            # `catlr train ... | head`: the reader left; training goes on and saves its model
            silence(self.stream)

    def rule(self, title="", **_):
        self.print(title)


def piped(text: str) -> str:
    """A line as a pipe gets it: wrapped between words past 80 columns (a path longer than
    a line is a line of its own, whole)."""
    return "\n".join(wrap(text, PIPE_WIDTH, "  "))


class RichConsole:
    """rich's Console for a terminal, every string escaped before rich sees it."""

    is_terminal = True

    def __init__(self, stream=None, rich=None):
        from rich.console import Console

        # markup off: paths such as "cat[1].jpg" are printed as they are
        self.rich = rich or Console(file=stream, highlight=False, markup=False,
                                    width=_columns(stream))

    def print(self, *objects, style=None, whole=False, **_):
        # a table drawn when it fits, else as lines; text wrapped between words, a word
        # longer than the line (a path) left whole: never folded nor cropped. `whole`: a
        # line a program reads (where a server listens), never wrapped by catlr
        width = 10**6 if whole else self.width
        for o in objects:
            shown = (o.fitted(width, self.drawn) if isinstance(o, Table)
                     else "\n".join(wrap(printable(o), width, "  ")))
            if isinstance(shown, str):
                self.rich.print(shown, style=style, no_wrap=True, overflow="ignore", crop=False)
            else:  # rich's table, as drawn() found it fits: with rich's own wrapping
                self.rich.print(shown, style=style)

    def rule(self, title="", **kw):
        self.rich.rule(printable(title), **kw)

    @staticmethod
    def drawn(table, width):
        """rich's drawing of `table` (a Table) when it takes at most `width` columns and cuts
        no cell (no '…' of rich's own, every word whole: a path folded is cut), else None: rich is asked, off screen, rather than
        its layout foretold (it may keep a header whole and cut a cell instead)."""
        import io

        from rich.console import Console

        probe = Console(file=io.StringIO(), width=width, highlight=False, markup=False,
                        color_system=None)
        drawing = table.rich()
        probe.print(drawing, crop=False)  # uncropped: a border past the width shows
        text = probe.file.getvalue()
        cut = text.count("…") > sum(c.count("…") for r in table.rows for c in r) or not all(
            w in text for r in [table.columns, *table.rows] for c in r for w in c.split())
        return None if cut or max(map(len, text.splitlines()), default=0) > width else drawing

    @property
    def width(self) -> int:
        return self.rich.size.width


def _columns(stream) -> int | None:
    """The width to draw at: None (rich reads COLUMNS, else asks the terminal) unless
    COLUMNS is 0 or not a width (rich would draw at 0 columns, which prints nothing): then
    the terminal's own width, or 80."""
    text = os.environ.get("COLUMNS")
    if text is None or (text.strip().isdigit() and int(text) > 0):
        return None
    try:
        return os.get_terminal_size((stream or sys.stdout).fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80


class Table:
    """A table whose every cell is escaped: rich's on a terminal, plain columns in a pipe."""

    LEFT = ("", "split", "class", "file", "reason", "key", "value", "run", "data", "when",
            "metric")

    def __init__(self, *columns, title=None):
        self.columns, self.title = [printable(c) for c in columns], title and printable(title)
        self.rows = []

    def add_row(self, *cells):
        self.rows.append([printable(c) for c in cells])

    def _right(self, i) -> bool:
        return self.columns[i] not in self.LEFT

    def plain(self) -> str:
        """Columns two spaces apart, each as wide as its widest cell, no trailing spaces."""
        rows = [self.columns] + self.rows
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        lines = [self.title] if self.title else []
        for r in rows:
            cells = [c.rjust(w) if self._right(i) else c.ljust(w)
                     for i, (c, w) in enumerate(zip(r, widths))]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def fitted(self, width, drawn=None):
        """The table as plain columns when they fit `width`, else as lines; with `drawn`,
        rich's table when drawn(table, width) draws it in that width."""
        if drawn is not None:
            return drawn(self, width) or "\n".join(self.lines(width))
        if max(map(len, self.plain().splitlines())) <= width:
            return self.plain()
        return "\n".join(self.lines(width))

    def lines(self, width) -> list[str]:
        """The table for a narrow terminal: a row a paragraph, each cell after its column's
        name, the first alone when it names the row (a metric, a split); lines wrapped
        between cells, a cell between words."""
        out = [self.title] if self.title else []
        named = self.columns[0] in self.LEFT
        for r in self.rows:
            if self.columns[:2] == ["key", "value"]:
                out += wrap(f"{r[0]}  {r[1]}", width, "    ")
                continue
            pairs = [f"{c} {v}".strip() for c, v in zip(self.columns, r) if v]
            if named:
                out.append(r[0])
                out += pack(pairs[1:], width, "    ", "    ")
            else:
                out += pack(pairs, width, "", "    ")
        return out

    def rich(self):
        from rich.table import Table as RichTable

        t = RichTable(title=self.title, title_justify="left", title_style="bold")
        rows = [self.columns] + self.rows
        for i, c in enumerate(self.columns):
            # as narrow as its longest word, never narrower: rich wraps a header between
            # words, where it would cut a cell ('33.63%-66.3…') to squeeze the table in
            longest = max((len(w) for r in rows for w in r[i].split()), default=0)
            t.add_column(c, justify="right" if self._right(i) else "left", min_width=longest)
        for r in self.rows:
            t.add_row(*r)
        return t


def pack(parts, width, first="", rest="") -> list[str]:
    """Parts two spaces apart, as many a line as fit `width`; a part longer than a line is
    wrapped between its words."""
    lines, line = [], first
    for part in parts:
        if line.strip() and len(line) + 2 + len(part) > width:
            lines.append(line)
            line = rest
        if len(line) + len(part) > width:  # longer than a line: between its words
            pieces = wrap(part, width - len(line), "  ")
            lines += [line + pieces[0]] + [rest + p for p in pieces[1:-1]]
            line = rest + pieces[-1] if len(pieces) > 1 else lines.pop()
            if len(pieces) == 1:  # one word too long for any line: a line of its own
                lines.append(line)
                line = rest
            continue
        line += ("  " if line.strip() else "") + part
    if line.strip():
        lines.append(line)
    return lines


def silence(stream):
    """Point a stream whose reader has gone at /dev/null, so that later writes and the
    interpreter's last flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def pct(x):
    return "n/a" if x is None else f"{x:.2%}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def data_lines(ds):
    """What train and sweep say about the data they loaded."""
    yield (f"Data: {ds.kind} {ds.source}: {len(ds.y_train)} train and {len(ds.y_test)} "
           f"test images of {ds.size} x {ds.size} ({ds.classes[1]}: "
           f"{int(ds.y_train.sum())} train, {int(ds.y_test.sum())} test)"
           + (f", {ds.note}" if ds.note else ""))
    report = ds.report or {}
    for note in report.get("notes", []):
        yield f"Note: {note}"
    yield from share_lines(ds.shares(), ds.classes)
    if ds.has_val:
        how = ("stored in the file" if (ds.validation or {}).get("stored") else
               f"{ds.validation['fraction']:g} of the training split, seed "
               f"{ds.validation['seed']}, stratified" if ds.validation else "")
        yield (f"Validation: {len(ds.y_val)} images ({how}), {int(ds.y_val.sum())} "
               f"{ds.classes[1]}; training on the other {len(ds.y_train)}")
    if ds.val_repeats:
        a, b = ds.val_repeats[0]
        yield (f"{len(ds.val_repeats)} validation images repeat a training image (e.g. {b} = "
               f"{a}): the validation cost flatters the model; 'catlr prepare --dedupe' drops "
               "repeats")
    skipped = report.get("skipped", [])
    if skipped:
        shown = "; ".join(f"{printable(s['path'])}: {s['reason']}" for s in skipped[:3])
        yield (f"Skipped {plural(len(skipped), 'unreadable file')}: {shown}"
               f"{'; ...' if len(skipped) > 3 else ''}")
    leaks = report.get("duplicates", {}).get("across", [])
    if leaks:
        yield (f"{len(leaks)} test images repeat a train image (e.g. {leaks[0][1]} = "
               f"{leaks[0][0]}); 'catlr prepare --dedupe' drops them")


def share_lines(report, classes):
    """The positive class's share in each split with its interval, and a warning for each
    split whose share differs from the training split's more than chance allows (prepare
    and train): report is metrics.share_report's."""
    found = report["shares"]
    if len(found) < 2:
        return
    pos = classes[1]
    yield (f"Share of {pos} (95% CI): " + ", ".join(
        f"{name} {pct(s['share'])} ({pct(s['ci'][0])}-{pct(s['ci'][1])}, n = {s['m']})"
        for name, s in found.items()))
    for d in report["differ"]:
        split, base = found[d["split"]], found[d["base"]]
        yield (f"Warning: the {d['split']} split is {pct(split['share'])} {pos} and the "
               f"{d['base']} split {pct(base['share'])}, further apart than chance allows "
               f"(two-proportion z-test, p = {d['p_value']:.2g} < {d['level']:.2g}): a model "
               f"learns the {d['base']} split's share, and on the {d['split']} split always "
               f"answering {classes[split['majority']]} scores "
               f"{pct(max(split['share'], 1 - split['share']))}")


def _table(*columns, title=None):
    return Table(*columns, title=title)


def prepare_report(console, r):
    """What `catlr prepare` wrote, then what a user should know about the data, each part
    said by one of PREPARE_PARTS when it applies."""
    for part in PREPARE_PARTS:
        part(console, r)


def _prep_written(console, r):
    old = r.get("replaced")
    if old:
        held = (f", which held {old['images']} images" if old.get("images") is not None else "")
        came = f" from {old['source']}" if old.get("source") else ""
        when = f" (prepared {old['created']})" if old.get("created") else ""
        console.print(f"Replaced {r['out']}{held}{came}{when}")
    console.print(f"Wrote {r['out']}")


def _prep_counts(console, r):
    neg, pos = r["classes"]
    table = _table("split", neg, pos, "total", f"{pos} share", "95% CI")
    found = r["shares"]["shares"]
    for split, c in r["counts"].items():
        n = sum(c.values())
        low_high = found[split]["ci"] if split in found else None
        table.add_row(split, str(c[neg]), str(c[pos]), str(n), pct(c[pos] / n if n else None),
                      f"{pct(low_high[0])}-{pct(low_high[1])}" if low_high else "")
    console.print(table)
    for line in list(share_lines(r["shares"], r["classes"]))[1:]:  # the warnings: the
        console.print(line, style="yellow")                       # table shows the shares
    for split, c in r["counts"].items():
        missing = [name for name, n in c.items() if n == 0]
        if sum(c.values()) and missing:
            console.print(f"The {split} split has no {' or '.join(missing)} images.", style="yellow")
    for note in r.get("notes", []):
        console.print(f"Note: {note}")


def _prep_split(console, r):
    split = r["split"]
    made = split is not None and "test_fraction" in split
    console.print("Split: " + (f"seed {split['seed']}, test fraction {split['test_fraction']:g}, "
                               "stratified by class" if made else
                               "kept the folder's train/ and test/")
                  + (f"; a validation split of {split['val_fraction']:g} of train, stored as "
                     "val_set_* (the course's load_dataset() reads the rest unchanged)"
                     if split and "val_fraction" in split else ""))


def _prep_imbalance(console, r):
    share = r["positive_fraction"]
    if share is not None and not 0.3 <= share <= 0.7:
        console.print(f"Class imbalance: {pct(share)} of images are {r['classes'][1]}; accuracy "
                      "alone will flatter the model, look at precision and recall.",
                      style="yellow")


def _prep_skipped(console, r):
    if not r["skipped"]:
        return
    t = _table("file", "reason", title=f"Skipped {plural(len(r['skipped']), 'unreadable file')}")
    for s in r["skipped"][:20]:
        t.add_row(printable(s["path"]), printable(s["reason"]))
    if len(r["skipped"]) > 20:
        t.add_row(f"... and {len(r['skipped']) - 20} more", "")
    console.print(t)


def _prep_ignored(console, r):
    if r["ignored"]:
        n = len(r["ignored"])
        console.print(f"Ignored {plural(n, 'file')} that {'is' if n == 1 else 'are'} not "
                      f"{'an image' if n == 1 else 'images'} or not in a class folder (e.g. "
                      f"{r['ignored'][0]}).")


def _prep_oblong(console, r):
    if r.get("oblong") and r.get("fit", "stretch") == "stretch":
        n = r["oblong"]
        was = "was" if n == 1 else "were"
        console.print(f"{plural(n, 'image')} {was} far from square (over 3:2) and {was} "
                      "squashed to fit (--fit stretch, as the course); --fit crop keeps the "
                      "centre square, --fit pad keeps the whole picture with white bands.")


def _prep_duplicates(console, r):
    d = r["duplicates"]
    for key, what in (("train", "within train"), ("test", "within test"),
                      ("across", "across train and test (leakage)")):
        if d[key]:
            a, b = d[key][0]
            console.print(f"Duplicates {what}: {len(d[key])} (e.g. {printable(a)} = "
                          f"{printable(b)})", style="yellow")
    if r["dropped_duplicates"]:
        console.print(f"Dropped {r['dropped_duplicates']} duplicates (--dedupe).")
    elif any(d.values()):
        console.print("Pass --dedupe to drop them.")


def _prep_speed(console, r):
    if r["images_per_second"]:
        used = r.get("used", r["images"])
        console.print(f"Decoded {r['images']} files in {r['seconds']:.2f} s "
                      f"({r['images_per_second']:,.0f} images/s)"
                      + (f": {used} used." if used != r["images"] else "."))


# prepare_report's parts, in the order they are said
PREPARE_PARTS = (_prep_written, _prep_counts, _prep_split, _prep_imbalance, _prep_skipped,
                 _prep_ignored, _prep_oblong, _prep_duplicates, _prep_speed)


def ci(interval, n=None) -> str:
    """' (95% CI 56.2-80.9%, n = 50)': an interval as a reader takes it in."""
    if not interval:
        return "" if n is None else f" (n = {n})"
    low, high = interval
    return f" (95% CI {low:.1%}-{high:.1%}" + (f", n = {n})" if n is not None else ")")


def train_summary(console, meta, saved):
    """The figures, and what was written where (saved: runs.Saved)."""
    _train_lr_auto(console, meta)
    _train_final_cost(console, meta)
    said = threshold_text(meta.get("threshold"), meta.get("threshold_choice"))
    if said:
        console.print(f"Threshold: {said}")
    console.print(f"train accuracy: {pct(meta['train_accuracy'])}" + ci(None, meta["m_train"]))
    if meta.get("val_accuracy") is not None:
        console.print(f"validation accuracy: {pct(meta['val_accuracy'])}"
                      + ci(meta.get("val_accuracy_ci"), meta.get("m_val")))
    console.print(f"test accuracy: {pct(meta['test_accuracy'])}"
                  + ci(meta.get("test_accuracy_ci"), meta.get("m_test")))
    _train_saved(console, saved)


def _target_text(target) -> str:
    """'f1' -> 'the best F1'; 'precision=0.9' -> 'precision 0.9 or more' (recall alike)."""
    name, _, goal = str(target or "f1").partition("=")
    return "the best F1" if name == "f1" else f"{name} {goal} or more"


def threshold_text(threshold, choice, given=False) -> str:
    """How a model labels, when it is not the course's plain 0.5: '0.62, chosen on the
    validation split for the best F1 (there: precision 80.0%, recall 75.0%, F1 77.4%, n
    = 41)', '0.7, given to train', '0.3, given (--threshold)'; '' for 0.5 unchosen."""
    if threshold is None:
        return ""
    if given:
        return f"{threshold:g}, given (--threshold), not the model's"
    if choice:
        there = ", ".join(f"{k if k != 'f1' else 'F1'} {pct(choice[k])}"
                          for k in ("precision", "recall", "f1") if choice.get(k) is not None)
        n = f", n = {choice['m']}" if choice.get("m") is not None else ""
        missed = ("; no threshold reaches it there, this one comes nearest"
                  if choice.get("met") is False else "")
        return (f"{threshold:g}, chosen on the {choice.get('on') or 'validation'} split for "
                f"{_target_text(choice.get('target'))} (there: {there}{n}){missed}")
    return "" if threshold == 0.5 else f"{threshold:g}, given to train (--threshold)"


def _train_lr_auto(console, meta):
    for row in meta.get("lr_auto") or []:
        console.print(f"--lr auto: lr {row['lr']:g}, validation cost {row['val_cost']:.6f}"
                      + (" (cost rose)" if row["cost_rose"] else ""))
    if meta.get("lr_auto"):
        console.print(f"--lr auto chose lr {meta['lr']:g}: the lowest validation cost of the "
                      "rates whose cost did not rise")


def _train_final_cost(console, meta):
    """The last cost, and where a validation split stopped the run or would have."""
    ran = meta.get("stopped_at")
    last = meta.get("iters_run") if meta.get("solver") == "lbfgs" else None  # may end sooner
    after = ran if ran is not None else last if last is not None else meta["iters"]
    console.print(f"Final cost (after iteration {after}, the last): {meta['final_cost']:f}")
    if ran is not None:
        console.print(f"Stopped early at iteration {ran}: the validation cost had not improved "
                      f"for {meta['config']['early_stop']} recorded costs; kept the weights of "
                      f"iteration {meta['best_iteration']} (validation cost "
                      f"{meta['best_cost']:.6f})")
    elif meta.get("held") == "validation" and meta.get("best_iteration") is not None:
        console.print(f"Lowest validation cost: {meta['best_cost']:f} at iteration "
                      f"{meta['best_iteration']} (--early-stop N stops there and keeps it)")


def _train_saved(console, saved):
    inside = [f for f in saved.files if saved.folder and os.path.dirname(f) == saved.folder]
    outside = [f for f in saved.files if f not in inside and f != saved.model]
    also = f" and the cost curve {', '.join(outside)}" if outside else ""
    if saved.folder:
        names = ", ".join(os.path.basename(f) for f in inside)
        console.print(f"Saved the run in {saved.folder}/ ({names}){also}")
        console.print("Next: 'catlr eval' (its figures in full), 'catlr predict PHOTO', "
                      "'catlr runs' (every run side by side)")
    else:
        console.print(f"Saved {saved.model}{also}")
        console.print(f"Next: 'catlr eval --model {saved.model}', 'catlr predict PHOTO "
                      f"--model {saved.model}'")


def _model_line(path, chosen):
    return f"{path}" + ("" if chosen == "given" else f" ({chosen})")


def interval_of(low_high, digits=4) -> str:
    return "" if not low_high else f"{low_high[0]:.{digits}f}-{low_high[1]:.{digits}f}"


def calibration_lines(cal, m, positive="cat"):
    """What the Brier score and the calibration error say, in words (eval)."""
    b, e = cal.get("brier") or {}, cal.get("ece") or {}
    if b.get("value") is not None and b.get("reference") is not None:
        yield (f"brier {b['value']:.4f}: the mean of (probability - label)^2, 0 is perfect; "
               f"always answering this split's share of {positive}, {b['share']:.2f}, scores "
               f"{b['reference']:.4f} (its CI by the normal formula)")
    calm = e.get("if_calibrated")
    if e.get("value") is not None and calm:
        verdict = ("these are off by more than chance" if e["value"] > calm["p95"] else
                   "no sign these are off")
        yield (f"ece {e['value']:.4f}: the mean gap between probability and share of "
               f"{positive} over {e['bins']} bins (its CI by bootstrap); exact probabilities "
               f"would show {calm['mean']:.4f} on {m} images, at most {calm['p95']:.4f} in 95% "
               f"of draws: {verdict} (--plot draws them)")


def eval_report(console, f, errors, chosen="given", predictions=None, plot=None):
    neg, pos = f["classes"]
    console.print(f"Model {_model_line(f['model'], chosen)} on the {f['split']} split of "
                  f"{f['data']} ({f['m']} images)")
    t = _table("metric", "value", "95% CI", "n")

    def interval(key, fmt):
        low_high = f.get(f"{key}_ci")
        return "" if not low_high else f"{fmt(low_high[0])}-{fmt(low_high[1])}"

    for key in ("accuracy", "precision", "recall"):
        t.add_row(key, pct(f[key]), interval(key, pct), str(f["n"][key]))
    t.add_row("f1", pct(f["f1"]), "", "")
    t.add_row("log_loss", "n/a" if f["log_loss"] is None else f"{f['log_loss']:.4f}", "", "")
    t.add_row("roc_auc", "n/a" if f["roc_auc"] is None else f"{f['roc_auc']:.4f}",
              interval("roc_auc", lambda v: f"{v:.4f}"), str(f["m"]))
    cal = f.get("calibration") or {}
    for key, name in (("brier", "brier"), ("ece", "ece")):
        if (cal.get(key) or {}).get("value") is not None:
            t.add_row(name, f"{cal[key]['value']:.4f}", interval_of(cal[key].get("ci")),
                      str(f["m"]))
    base = f["baseline"]
    t.add_row(f"majority class (always {f['classes'][base['label']]})", pct(base["accuracy"]),
              "", str(f["m"]))
    console.print(t)
    said = threshold_text(f["threshold"], f.get("threshold_choice"),
                          f.get("threshold_from") == "given")
    if said:
        console.print(f"Threshold: {said}")
    for sentence in calibration_lines(cal, f["m"], pos):
        console.print(sentence)
    cm = _table("true \\ predicted", neg, pos, "total",
                title=f"Confusion matrix (threshold {f['threshold']:g})")
    cm.add_row(neg, f"{f['tn']} (tn)", f"{f['fp']} (fp)", str(f["negatives"]))
    cm.add_row(pos, f"{f['fn']} (fn)", f"{f['tp']} (tp)", str(f["positives"]))
    console.print(cm)
    if errors:
        wrong, shown = f["fp"] + f["fn"], f.get("errors_shown", f["fp"] + f["fn"])
        console.print(f"Saved the {wrong} misclassified images to {errors}" if shown == wrong
                      else f"Saved the first {shown} of the {wrong} misclassified images "
                           f"(the most confident) to {errors}")
    if predictions:
        console.print(f"Saved one row per image ({f['m']}) to {predictions}")
    if f.get("learning_curve"):
        curve_report(console, f["learning_curve"])
    if plot:
        console.print("Saved the precision-recall curve and the reliability diagram"
                      + (" and the learning curve" if f.get("learning_curve") else "")
                      + f" to {plot}")


def curve_report(console, c):
    """The learning curve as a table, the shuffled labels, and what it says."""
    held, points = c["held"], c["points"]
    s = c["settings"]
    console.print(f"Learning curve: the model's settings (lr {s['lr']:g}, {s['iters']} "
                  f"iterations{', l2 ' + format(s['l2'], 'g') if s['l2'] else ''}) trained "
                  f"again on part of its {points[-1]['m']} training images, stratified, seed "
                  f"{c['seed']}; scored on the {held} split (n = {c['m_held']})"
                  + ("" if held == "validation" else ", which the model had no validation "
                     "split to spare: look at it, choose nothing on it"))
    t = _table("images", "part", "train accuracy", f"{held} accuracy", "95% CI")
    for p in points:
        low, high = p["held_ci"]
        t.add_row(str(p["m"]), f"{p['fraction']:.0%}", pct(p["train_accuracy"]),
                  pct(p["held_accuracy"]), f"{pct(low)}-{pct(high)}")
    console.print(t)
    sh = c.get("shuffled")
    if sh:
        n = len(sh["accuracies"])
        console.print(
            f"Shuffled labels: {held} accuracy {pct(sh['mean'])} on average ({pct(sh['low'])}-"
            f"{pct(sh['high'])} over {n} shuffles) against {pct(c['real'])} with the real "
            "labels: " + ("above every shuffle, the model learned more than the classes' "
                          "shares" if sh["above"] else
                          f"not above them, on {c['m_held']} images this accuracy may be "
                          "chance"))
    console.print(f"What it says: {c['verdict']['line']}")


def predict_table(rows, model, chosen="given"):
    """Plain text, not rich: predict in a loop is mostly start-up (bench/startup.py). A
    table when every row fits the terminal (80 columns in a pipe), an error wrapped under
    its label column; else each image on two lines, its path, then its figures."""
    width = columns(sys.stdout) or 80
    paths = [printable(r["path"]) for r in rows]
    names = [printable(r.get("label", "")) for r in rows]
    col = max(map(len, paths), default=4)
    errors = any("error" in r for r in rows)  # room for an error's first words, if any
    tail = max([len(n) for n in names] + [len("label")] + ([len("error: ") + 12] if errors
                                                            else []))
    if col + 2 + 11 + 2 + tail <= width:
        line(f"{'path':<{col}}  probability  label")
        for path, name, r in zip(paths, names, rows):
            if "error" not in r:
                line(f"{path:<{col}}  {r['probability']:11.3f}  {name}")
                continue
            lead = f"{path:<{col}}  {'-':>11}  "
            for i, part in enumerate(wrap(f"error: {printable(r['error'])}", width - len(lead),
                                          "  ")):
                line((lead if i == 0 else " " * len(lead)) + part)
    else:  # a narrow terminal, or a long path: nothing is cut
        for path, name, r in zip(paths, names, rows):
            line(path)
            note = (f"probability {r['probability']:.3f}  {name}" if "error" not in r
                    else f"error: {printable(r['error'])}")
            for part in wrap(note, width - 4, "  "):
                line("    " + part)
    said(f"Model: {_model_line(model, chosen)}", "  ")


def _region(r) -> str:
    """'+1.92 bottom left (y 40-47, x 16-23)': a region's push, where it is, its pixels."""
    return (f"{r['sum']:+.2f} {r['where']} (y {r['rows'][0]}-{r['rows'][1]}, x "
            f"{r['columns'][0]}-{r['columns'][1]})")


def _alike(rows) -> str:
    return ", ".join(f"#{r['index']} {r['label']}" + (f" ({os.path.basename(r['path'])})"
                                                      if r.get("path") else "") for r in rows)


def explain_report(docs, model, chosen="given", out=None, drawn=0):
    """What `catlr explain` says of each photo, in plain lines (as predict's table); `drawn`
    photos of them are in the picture `out`."""
    for d in docs:
        if "error" in d:
            said(f"{d['path']}: error: {d['error']}")
            continue
        neg, pos = d["classes"]
        c = d["channels"]
        said(f"{d['path']}: {d['label']}, probability {d['probability']:.3f} ({pos} above "
             f"{d['threshold']:g})")
        said(f"  logit {d['logit']:+.3f} = pixels {d['contributions']:+.3f} (red {c['red']:+.3f}, "
             f"green {c['green']:+.3f}, blue {c['blue']:+.3f}) + b {d['b']:+.3f}")
        for key, name in (("positive", pos), ("negative", neg)):
            regions = d["regions"][key]
            said(f"  pushing towards {name}: " + (", ".join(map(_region, regions)) or "nothing"))
        if d["alike"]:
            said(f"  training images most alike by pixels: {_alike(d['alike']['by_pixels'])}")
            said(f"  ... and by the model's score: {_alike(d['alike']['by_score'])}")
        elif d["training"].get("note"):
            said(f"  training images: {d['training']['note']}")
        for note in d["notes"]:
            said(f"  Note: {note}")
    said(f"Model: {_model_line(model, chosen)}")
    explained = sum("error" not in d for d in docs)
    if out and drawn:
        said(f"Saved the picture to {out}" + ("" if drawn == explained else
                                               f" (the first {drawn} of {explained} photos)"))


def check_report(result):
    """What `catlr check` found: each function passed or failed, and why, in plain lines."""
    width = max(len(f["name"]) for f in result["functions"])
    for f in result["functions"]:
        said(f"{f['name']:<{width}}  {'passed' if f['passed'] else 'FAILED'}")
        if not f["passed"]:  # the finding's parts, a line each
            said(f"    {f.get('divergence') or f['finding']}")
            if f.get("known_mistake"):
                said(f"    Known mistake: {f['known_mistake']}")
            if f.get("line"):
                said(f"    {f['line']['where']}: {f['line']['code']}")
    for note in result.get("notes") or []:
        said(f"Note: {note}")
    failed = [f["name"] for f in result["functions"] if not f["passed"]]
    if failed:
        said(f"{len(failed)} of {len(result['functions'])} failed. Each was run with catlr's "
             "versions of the others, so each failure is in that function's own code.")
    else:
        said(f"All {len(result['functions'])} passed.")


def export_report(console, s, chosen="given"):
    """What `catlr export` wrote, and how to call it."""
    meta = s["metadata"]
    console.print(f"Exported {_model_line(s['model'], chosen)} to {s['onnx']} "
                  f"({s['bytes']:,} bytes, ONNX opset {s['opset']})")
    (name, shape), = s["input"].items()
    console.print(f"Input: {name}, {shape}: {meta['layout']} ({meta['fit']}, "
                  f"{meta['image_size']} x {meta['image_size']})")
    console.print("Outputs: " + ", ".join(f"{k}, {v}" for k, v in s["outputs"].items())
                  + f"; label 1 ({meta['positive']}) where probability > {meta['threshold']}")
    console.print(f"Metadata: {', '.join(meta)}")


def sweep_table(console, rows, plot):
    """Validation figures per setting when there is a validation split, the best named and
    only its test figure shown; else the course's table, with what it costs to choose on
    test said once."""
    penalties = len({r["l2"] for r in rows}) > 1 or any(r["l2"] for r in rows)
    on_val = "val_cost" in rows[0]
    head = ["learning rate"] + (["l2"] if penalties else []) + ["final cost", "train accuracy"]
    # "val", not "validation": with l2 and a mark the row still fits 80 columns
    head += ["val cost", "val accuracy"] if on_val else ["test accuracy"]
    t = _table(*head, "", title="Sweep" if penalties else "Learning-rate sweep")
    for r in rows:
        cells = [f"{r['lr']:g}"] + ([f"{r['l2']:g}"] if penalties else [])
        cells += [f"{r['final_cost']:.6f}", pct(r["train_accuracy"])]
        cells += ([f"{r['val_cost']:.6f}", pct(r["val_accuracy"])] if on_val
                  else [pct(r["test_accuracy"])])
        marks = (["best"] if r.get("best") else []) + (["cost rose"] if r["cost_rose"] else [])
        t.add_row(*cells, ", ".join(marks))
    console.print(t)
    if any(r["cost_rose"] for r in rows):
        console.print("'cost rose': the cost went up during training more than once, that rate "
                      "is too large for this data.")
    if on_val:
        best = next(r for r in rows if r.get("best"))
        what = f"lr {best['lr']:g}" + (f", l2 {best['l2']:g}" if penalties else "")
        console.print(f"Best on validation: {what} (validation cost {best['val_cost']:.6f}); "
                      f"its test accuracy, once: {pct(best['test_accuracy'])}"
                      + ci(best.get("test_accuracy_ci"), best.get("m_test")))
    else:
        console.print("Choosing a rate by its test accuracy fits the choice to the test set: "
                      "add --val-fraction 0.2 to compare on a validation split instead.")
    if plot:
        console.print(f"Saved the cost curves to {plot}")


def split_text(meta) -> str:
    """How the model's data was split into train and test, in words."""
    split = meta.get("split")
    if isinstance(split, dict) and {"seed", "test_fraction"} <= set(split):
        return (f"made by catlr: seed {split['seed']}, test fraction {split['test_fraction']:g}, "
                "stratified by class")
    return {"folder": "the folder's own train/ and test/",
            "course": "the course's train and test files",
            "arrays": "the arrays given to catlr.course.model"}.get(meta.get("data_kind"),
                                                               "the prepared file's train and test sets")


def inspect_table(console, path, chosen, meta, model, weights):
    t = _table("key", "value", title=_model_line(path, chosen))
    for key in ("format", "catlr_version", "created", "image_size", "classes", "fit",
                "normalization", "solver", "lr", "iters", "print_every", "form", "dtype", "data",
                "data_kind", "m_train", "m_test"):
        if key in meta:
            t.add_row(key, str(meta[key]))
    t.add_row("split", split_text(meta))
    for w in meta.get("warnings") or []:
        t.add_row("warning", str(w))
    said = threshold_text(meta.get("threshold"), meta.get("threshold_choice"))
    if said:
        t.add_row("threshold", said)
    for split in ("train", "test"):
        unsaved = ("not saved: give save_model the labels" if meta.get("data_kind") == "arrays"
                   else "n/a")
        key = f"{split}_accuracy"
        t.add_row(key, unsaved if meta.get(key) is None else pct(meta[key]))
    t.add_row("b", f"{model.b_:.6g}")
    t.add_row("|w|", f"{model.w_norm():.6g}")
    final = meta.get("final_cost")
    if model.costs_ and isinstance(final, float):  # after the last update, as train says
        t.add_row("cost first / final", f"{model.costs_[0]:.6f} / {final:.6f}")
    elif model.costs_:  # catlr.course.save_model's: the recorded costs alone
        at = (len(model.costs_) - 1) * int(meta.get("print_every") or 100)
        t.add_row("cost first / last recorded",
                  f"{model.costs_[0]:.6f} / {model.costs_[-1]:.6f} (iteration {at})")
    console.print(t)
    if weights:
        console.print(f"Saved the weights picture to {weights}")


def _when(created) -> str:
    """'2026-11-28 10:41:36' -> '11-28 10:41' this year, '2025-11-28' before."""
    import time

    text = str(created or "?")
    if len(text) >= 16 and text[4] == "-":
        return text[5:16] if text[:4] == time.strftime("%Y") else text[:10]
    return text


def _where(path) -> str:
    """A data path as a user reads it: relative under the working folder, ~ under home."""
    if not isinstance(path, str) or not path:
        return "?"
    here, home = os.getcwd(), os.path.expanduser("~")
    if path == here or path.startswith(here + os.sep):
        return os.path.relpath(path, here) + ("/" if os.path.isdir(path) else "")
    if home not in ("/", "") and path.startswith(home + os.sep):
        return "~" + path[len(home):]
    return path


def _num(x, f):
    return f(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else "?"


def _rate(r):
    """A run's learning rate; a dash for a solver that takes none (its line search finds
    each step), not the default it never used."""
    takes = solvers.SOLVERS.get(r.get("solver") or "gd", solvers.SOLVERS["gd"]).takes_lr
    return _num(r.get("lr"), lambda v: f"{v:g}") if takes else "-"


def _cost(r):
    """The final cost; an interrupted run's where it stopped."""
    final = r.get("final_cost")
    return _num(r.get("cost_so_far") if final is None else final, lambda v: f"{v:.6f}")


def _mark(r):
    if r.get("interrupted"):
        at, of = r["interrupted"]
        return f"interrupted at {at} of {of}"
    return "damaged" if r.get("damaged") else "cost rose" if r.get("warnings") else ""


def _test(r):  # with its n: 70.00% of 50 images is not 70.00% of 5,000
    n = r.get("m_test")
    return pct(r.get("test_accuracy")) + (f" ({n})" if isinstance(n, int) else "")


def _val(r):
    return pct(r.get("val_accuracy")) if r.get("val_accuracy") is not None else ""


def _extra(r):
    """What a run changed of the course's objective, or how it stopped."""
    bits = ([str(r["solver"])] if r.get("solver") not in (None, "gd") else []) + (
        [f"l2 {r['l2']:g}"] if r.get("l2") else []) + (
        [f"weights {r['class_weight']}"] if r.get("class_weight") not in (None, "none") else [])
    parent = r.get("parent") if isinstance(r.get("parent"), dict) else None
    bits += [f"from {parent.get('run')}@{parent.get('at')}"] if parent else []
    t = r.get("threshold")
    bits += [f"threshold {t:.3g}" + (" (auto)" if r.get("threshold_choice") else "")] if (
        isinstance(t, float) and (t != 0.5 or r.get("threshold_choice"))) else []
    return " ".join(bits + ([f"stopped at {r['stopped_at']}"] if r.get("stopped_at") else []))


class Column(NamedTuple):
    """A column of the runs table: its header, its cell cell(run, wide), whether it is shown
    shown(rows, wide), and in the few lines a run a narrow terminal gets: "label value"
    (label), the value alone (""), or not at all (None). A narrow line shows a part only
    when its value is not empty."""

    header: str
    cell: Callable
    shown: Callable = lambda rows, wide: True
    narrow: str | None = None


RUN_COLUMNS = (  # fits 80 columns, unless wide
    Column("run", lambda r, wide: r["name"]),
    Column("when", lambda r, wide: str(r.get("created") or "?") if wide
           else _when(r.get("created"))),
    Column("data", lambda r, wide: f"{r.get('data_kind') or '?'} "
                                   f"{r.get('data') if wide else _where(r.get('data'))}"),
    Column("lr", lambda r, wide: _rate(r), narrow="lr"),
    Column("iters", lambda r, wide: _num(r.get("iters"), str), narrow="iters"),
    *(Column(key, lambda r, wide, key=key: str(r.get(key) or "?"), lambda rows, wide: wide)
      for key in ("dtype", "form", "engine")),
    Column("cost", lambda r, wide: _cost(r), narrow="cost"),
    Column("train", lambda r, wide: pct(r.get("train_accuracy")), narrow="train"),
    Column("validation", lambda r, wide: _val(r), lambda rows, wide: any(map(_val, rows)),
           "validation"),
    Column("test (n)", lambda r, wide: _test(r), narrow="test"),
    Column("settings", lambda r, wide: _extra(r), lambda rows, wide: any(map(_extra, rows)), ""),
    Column("", lambda r, wide: _mark(r), narrow=""),
)


def runs_table(console, rows, root, wide=False):
    """Every run: a table when it fits the terminal (80 columns in a pipe), else a few
    lines a run; names and figures are never cut. `wide` adds the
    dtype, form, engine and the full date and path."""
    if not rows:
        console.print(f"No runs in {root}/ yet: 'catlr train DATA' writes the first one.")
        return
    title = f"Runs in {root}/, newest first"
    columns = [c for c in RUN_COLUMNS if c.shown(rows, wide)]
    t = _table(*(c.header for c in columns), title=title)
    for r in rows:
        t.add_row(*(c.cell(r, wide) for c in columns))
    # in a pipe too, a table only when it fits 80 columns (--json is for scripts)
    width = getattr(console, "width", None) or 80
    # rich draws a box: 3 characters a column and 1 more, where plain text puts 2 between
    plain = getattr(console, "width", None) is None
    if max(map(len, t.plain().splitlines())) + (0 if plain else len(columns) + 3) <= width:
        console.print(t)
    else:
        console.print(title)
        for r in rows:
            _run_lines(console, r, width)
    _runs_notes(console, rows, root)


def _run_lines(console, r, width):
    """A run on a narrow terminal: its name, date and data, then as many figures a line as
    fit, each whole (nothing cut but a long path's middle)."""
    head = f"{r['name']}  {_when(r.get('created'))}  {r.get('data_kind') or '?'}  "
    console.print(head + _short(_where(r.get("data")), max(width - len(head), 12)))
    parts = [f"{c.narrow} {value}" if c.narrow else value for c in RUN_COLUMNS
             if c.narrow is not None and (value := c.cell(r, False))]
    for line in pack(parts, width, "    ", "    "):
        console.print(line)


def _runs_notes(console, rows, root):
    """Below the runs: why a run is damaged, what 'cost rose' means, how to go on."""
    for r in rows:
        if r.get("damaged"):
            _wrapped(console, f"{r['name']} is damaged: {r['damaged']}.")
    if any(r.get("warnings") for r in rows):  # one sentence, wrapped as the console wraps
        console.print("'cost rose': the cost went up during training more than once, the "
                      "learning rate was too large ('catlr inspect runs/NAME/model.npz' says "
                      "where).")
    for r in rows:
        if r.get("interrupted"):
            console.print(f"{r['name']} was interrupted: go on with 'catlr train --resume "
                          f"{os.path.join(root, r['name'])}'")


def _wrapped(console, text: str):
    """A note in lines that fit the width (80 columns in a pipe), words whole, the lines
    after the first indented under it."""
    for line in wrap(text, (getattr(console, "width", None) or PIPE_WIDTH) - 4, "    "):
        console.print(line)


def _short(text: str, width: int) -> str:
    """text cut in the middle to `width` characters: both ends of a path stay readable."""
    if len(text) <= width:
        return text
    keep = width - 3
    return text[:keep // 2] + "..." + text[-(keep - keep // 2):]


def step(console, command):
    """A heading for each step the demo runs, the whole command as the user would type it,
    wrapped between words with a shell's backslash (a rule above it on a terminal)."""
    console.print("")
    width = (console.width if console.is_terminal else PIPE_WIDTH) - 2
    if console.is_terminal:
        console.rule(style="bold")
    parts = []  # an option stays with its value
    for word in f"$ {command}".split():
        if parts and parts[-1].split()[-1].startswith("--") and not word.startswith("-"):
            parts[-1] += " " + word
        else:
            parts.append(word)
    lines, line = [], ""
    for part in parts:
        if line.strip() and len(line) + 1 + len(part) > width:
            lines.append(line)
            line = "    " + part
        else:
            line += (" " if line.strip() else "") + part
    lines.append(line)
    for i, part in enumerate(lines):
        console.print(part + (" \\" if i < len(lines) - 1 else ""), style="bold")

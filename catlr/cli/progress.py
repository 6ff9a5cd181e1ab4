"""Progress for the CLI: the library's events (events.py) as lines, and bars on a terminal."""

from __future__ import annotations

import contextlib

from ..events import Decoded, Failed, Loaded, Notice, Plan, Preparing, Served, Serving, Step, Wrote
from . import render


def _clock(seconds) -> str:
    """4 s -> '0:04', 65 s -> '1:05', 3723 s -> '1:02:03'; None -> '?'."""
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _times(column):
    """A bar's clock, labelled so it cannot be misread: '0:04 elapsed, 0:10 left'."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Times(ProgressColumn):
        def render(self, task):
            left = 0 if task.finished else task.time_remaining
            return Text(f"{_clock(task.elapsed)} elapsed, {_clock(left)} left", no_wrap=True)

    return Times(table_column=column)


@contextlib.contextmanager
def events(console, *, verbose=False, quiet=False, wrote=None, checkpoints=None):
    """Yield an on_event that draws the library's events on `console` (render's: every
    line escaped).

    Lines: the data loaded and each recorded cost (unless quiet), the plan (verbose).
    Bars, on a terminal only. `wrote`, a list, collects the paths of Wrote events (what
    an interrupted command says it saved); `checkpoints`, a dict, a checkpoint's path and
    the iteration it holds.
    """
    progress, tasks = None, {}
    if console.is_terminal:  # off a terminal there is nothing to animate: skip rich.progress
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.table import Column

        # the bar takes what the numbers leave: on a narrow terminal it shrinks, they stay;
        # the decoding rate is shown when there is room for it
        rate = [TextColumn("{task.fields[rate]}")] if console.width >= 80 else []
        whole = {"no_wrap": True, "overflow": "ignore"}
        progress = Progress(TextColumn("{task.description}", table_column=Column(**whole)),
                            BarColumn(bar_width=None, table_column=Column(ratio=1)),
                            MofNCompleteColumn(table_column=Column(**whole)), *rate,
                            _times(Column(min_width=24, **whole)),
                            console=console.rich, transient=True, refresh_per_second=8,
                            expand=True)
    say = console.print  # the same rich Console as the bars', so lines print above them

    def bar(key, label, total, done, with_rate=False):
        if progress is None:
            return
        if key not in tasks:
            tasks[key] = progress.add_task(label, total=total, rate="")
        speed = progress.tasks[tasks[key]].speed if with_rate else None
        progress.update(tasks[key], completed=done, rate=f"{speed:,.0f}/s" if speed else "")

    def wrote_(event):  # a checkpoint is not what a stopped command saved: it may be gone
        if checkpoints is not None and event.iteration is not None:
            checkpoints[event.path] = event.iteration
        elif wrote is not None:
            wrote.append(event.path)

    def serving(event):
        for warning in event.warnings:
            say(f"Warning: {warning}")
        say(f"Serving {event.model} at {event.url} (Ctrl-C stops it)", whole=True)

    def served(event):
        images = f", {render.plural(event.images, 'image')}" if event.images else ""
        say(f"{event.method} {event.path} {event.status} ({event.ms:.0f} ms{images})")

    def loaded(event):
        for line in render.data_lines(event.dataset):
            say(line)

    def plan(event):
        say(f"Training: {event.form} form (m = {event.m}, n_x = {event.n_x}), {event.dtype}, "
            f"{event.engine} engine" + (f" ({event.why})" if event.why else ""))
        if event.detail:
            say(event.detail)

    def step(event):
        lr = event.lr
        bar(("train", lr), "Training" if lr is None else f"lr = {lr:g}", event.iters, event.i)
        # the course's lines; a sweep's runs (tagged with their rate) draw bars only
        if event.cost is not None and not quiet and lr is None:
            val = (f" ({event.held_name}: {event.held:f})"
                   if event.held is not None and event.held_name == "validation" else "")
            say(f"Cost after iteration {event.i}: {event.cost:f}{val}")

    # each kind of event and what it draws; None: not drawn (quiet, or not verbose)
    drawn = {
        Wrote: wrote_,
        Decoded: lambda e: bar("decode", "Decoding images", e.total, e.done, with_rate=True),
        Notice: lambda e: say(f"Note: {e.text}"),
        Serving: serving,
        Served: None if quiet else served,
        Failed: lambda e: say(f"A request failed: {e.text}; the server goes on (please "
                              "report it)"),
        Preparing: lambda e: say(f"Preparing {e.source} into {e.out} first: {e.why}"),
        Loaded: None if quiet else loaded,
        Plan: plan if verbose else None,
        Step: step,
    }

    def on_event(event):
        draw = next((drawn[k] for k in type(event).__mro__ if k in drawn), None)
        if draw is not None:
            draw(event)

    if progress is None:
        yield on_event
        return
    with progress:
        yield on_event

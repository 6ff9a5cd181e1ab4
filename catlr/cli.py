"""catlr's command line: each command parses, calls one library function, renders.

The only module that imports typer or rich; it holds no math. numpy, h5py,
Pillow and matplotlib are imported by the library functions a command calls,
so `catlr --help` and argument errors import none of them.
"""

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from typer.core import TyperGroup

from .config import DEFAULTS, resolve
from .errors import CatlrError, UsageError

# typer < 0.28 uses click, 0.28 vendors it: find its exception classes either way.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _Group(TyperGroup):
    """Typer's group with every usage error as one line: `Error: ..., see '... --help'`."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except _UsageError as e:
            message = e.format_message()
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `catlr`: the help is the answer
                print(message)
                code = 0
            else:
                message = message.rstrip(".")
                hint = f"see '{e.ctx.command_path if e.ctx else 'catlr'} --help'"
                tail = f" {hint[0].upper()}{hint[1:]}" if message.endswith("?") else f", {hint}"
                print(f"Error: {message}{tail}", file=sys.stderr)
                code = 2
        except _ClickException as e:
            print(f"Error: {e.format_message()}", file=sys.stderr)
            code = e.exit_code
        except typer.Abort:
            print("Interrupted", file=sys.stderr)
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(name="catlr", cls=_Group, rich_markup_mode=None, pretty_exceptions_enable=False,
                  add_completion=False, no_args_is_help=True)


def _version(value: bool):
    if value:
        from . import __version__

        print(f"catlr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="Print catlr's version and exit.")] = False,
):
    """Train the course's cat / non-cat logistic regression on your images."""


def main():
    # Typer turns every registered command into a click command at each start;
    # build only the one being run (help and typos still see all of them).
    name = sys.argv[1] if len(sys.argv) > 1 else None
    chosen = [c for c in app.registered_commands
              if (c.name or c.callback.__name__) == name]
    if chosen:
        app.registered_commands[:] = chosen
    app()


@contextlib.contextmanager
def _guard(interrupted="stopped, nothing was written"):
    """Known errors become one line and exit 1 (2 for bad flags); Ctrl-C exits 130."""
    debug = os.environ.get("CATLR_DEBUG") == "1"
    try:
        yield
    except typer.Exit:
        raise
    except CatlrError as e:
        if debug:
            raise
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        print(f"Interrupted: {interrupted}", file=sys.stderr)
        raise typer.Exit(130) from None
    except OSError as e:  # a full disk, a read-only folder: not a bug, say which file
        if debug:
            raise
        _fail(f"{e.strerror or e} ({e.filename or 'file'}), check the path, its permissions "
              "and free space", 1)
    except Exception as e:
        if debug:
            raise
        _fail(f"unexpected {type(e).__name__}: {e}, rerun with CATLR_DEBUG=1 to see the "
              "traceback and report it", 1)


def _fail(message: str, code: int):
    print(f"Error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _console(json_mode=False, plain=False):
    """Human output: stdout, or stderr when stdout is reserved for --json.

    With plain=True (commands that print lines, no tables) and no terminal to
    draw on, rich is not imported at all: a script's `catlr train` starts faster.
    """
    stream = sys.stderr if json_mode else sys.stdout
    if plain and not stream.isatty():
        return _PlainConsole(stream)
    from rich.console import Console

    # markup off: paths such as "cat[1].jpg" are printed as they are
    return Console(stderr=json_mode, highlight=False, markup=False)


class _PlainConsole:
    """The part of rich's Console that line-printing commands use, without rich."""

    is_terminal = False

    def __init__(self, stream):
        self.stream = stream

    def print(self, *objects, **_):
        print(*objects, file=self.stream)


def _print_json(data):
    sys.stdout.write(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def _pct(x):
    return "n/a" if x is None else f"{x:.2%}"


# Options shared by several commands.
D = DEFAULTS
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML file of settings (see configs/default.toml); flags override it.")]
SizeOpt = Annotated[Optional[int], typer.Option(help=f"Images become SIZE x SIZE x 3 [default: {D['size']}].")]
FitOpt = Annotated[Optional[str], typer.Option(help="Resize policy: stretch (as the course), crop (center square) or pad [default: stretch].")]
FracOpt = Annotated[Optional[float], typer.Option("--test-fraction", help=f"Held-out fraction when SRC has no train/ and test/ [default: {D['test_fraction']}].")]
SeedOpt = Annotated[Optional[int], typer.Option(help=f"Seed of the split [default: {D['seed']}].")]
PosOpt = Annotated[Optional[str], typer.Option(help="Name of the positive class folder [default: cat].")]
WorkersOpt = Annotated[Optional[int], typer.Option(help="Decoding threads, 0 = one per core plus one [default: 0].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Model file written by 'catlr train'.")]
ThresholdOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="Probability above which an image is positive.")]


@app.command()
def prepare(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="Image folder: SRC/cat/ + SRC/non-cat/, or SRC/train/<class>/ + SRC/test/<class>/.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HDF5 file to write, in the course's schema.")] = Path("data/prepared.h5"),
    size: SizeOpt = None, test_fraction: FracOpt = None, seed: SeedOpt = None,
    positive: PosOpt = None, fit: FitOpt = None, workers: WorkersOpt = None,
    strict: Annotated[bool, typer.Option(help="Fail on the first broken file, writing nothing.")] = False,
    dedupe: Annotated[bool, typer.Option(help="Drop images whose 64 x 64 pixels repeat an earlier one (and test images equal to a train image).")] = False,
    config: ConfigOpt = None, json_out: JsonOpt = False,
):
    """Turn an image folder into one HDF5 file in the course's schema."""
    with _guard("stopped, the output file was not written"):
        cfg = resolve(config, size=size, test_fraction=test_fraction, seed=seed,
                        positive=positive, fit=fit, workers=workers)
        from .prepare import prepare as run

        # Off a terminal nothing is drawn while images decode, so rich (for the final
        # tables) is imported then, on the main thread, while the workers decode.
        with _events(_console(json_out, plain=True), quiet=True,
                     warm=lambda: __import__("rich.table")) as on_event:
            report = run(src, out, cfg, dedupe=dedupe, strict=strict, on_event=on_event)
        if json_out:
            _print_json(report)
        else:
            _prepare_report(_console(), report)


@app.command()
def train(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Image folder, prepared .h5, or folder with train_*.h5 + test_*.h5.")],
    lr: Annotated[Optional[float], typer.Option("--lr", help=f"Learning rate [default: {D['lr']}].")] = None,
    iters: Annotated[Optional[int], typer.Option("--iters", help=f"Gradient-descent iterations [default: {D['iters']}].")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Model file to write [default: model.npz].")] = None,
    config: ConfigOpt = None,
    print_every: Annotated[Optional[int], typer.Option("--print-every", help="Print the cost every N iterations [default: 100].")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float64 (default, the course's numbers) or float32 (half the memory).")] = None,
    form: Annotated[Optional[str], typer.Option(help="auto (default), primal or dual: how gradient descent is computed.")] = None,
    size: SizeOpt = None, test_fraction: FracOpt = None, seed: SeedOpt = None,
    positive: PosOpt = None, fit: FitOpt = None, workers: WorkersOpt = None,
    plot: Annotated[Optional[Path], typer.Option(help="Save the cost curve as a PNG.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say how training is computed.")] = False,
    json_out: JsonOpt = False,
):
    """Train by batch gradient descent from w = 0, b = 0 and save the model."""
    with _guard("stopped, no model was written (an existing one is unchanged)"):
        cfg = resolve(config, lr=lr, iters=iters, model=None if out is None else str(out),
                        print_every=print_every, dtype=dtype, form=form, size=size,
                        test_fraction=test_fraction, seed=seed, positive=positive, fit=fit,
                        workers=workers)
        from .train import train as run

        console = _console(json_out, plain=True)
        with _events(console, verbose=verbose, quiet=json_out) as on_event:
            model, meta = run(data, cfg, on_event=on_event)
        if plot is not None:
            from .plots import cost_curve

            cost_curve(model.costs, cfg["print_every"], plot,
                       title=f"Cost during training (lr = {cfg['lr']:g})")
        if json_out:
            _print_json({"model": cfg["model"], **meta, "costs": model.costs})
        else:
            _train_summary(console, meta, cfg["model"], plot)


@app.command("eval")
def evaluate(
    data: Annotated[Optional[Path], typer.Argument(metavar="[DATA]", help="Data to evaluate on [default: the data the model was trained on].")] = None,
    model: ModelOpt = Path(DEFAULTS["model"]),
    split: Annotated[str, typer.Option(help="test or train.")] = "test",
    threshold: ThresholdOpt = 0.5,
    errors: Annotated[Optional[Path], typer.Option("--errors", help="Save a sheet of the misclassified images as a PNG.")] = None,
    json_out: JsonOpt = False,
):
    """Accuracy, precision, recall, F1, log loss, ROC AUC and the confusion matrix."""
    with _guard():
        if split not in ("train", "test"):
            raise UsageError(f"--split must be train or test, got {split!r}")
        from .evaluate import evaluate as run

        with _events(_console(json_out, plain=True), quiet=True) as on_event:  # a bar for folders
            result = run(model, data, split=split, threshold=threshold, on_event=on_event)
        if errors is not None:
            from .plots import mistakes_sheet

            mistakes_sheet(result.images, result.labels, result.probabilities, result.paths,
                           result.figures["classes"], errors, threshold=threshold,
                           title=f"Misclassified ({split} split)")
        if json_out:
            _print_json(result.figures)
        else:
            _eval_report(_console(), result.figures, errors)


@app.command()
def predict(
    inputs: Annotated[List[str], typer.Argument(metavar="INPUT...", help="Image files, folders (searched for images) and globs.")],
    model: ModelOpt = Path(DEFAULTS["model"]),
    threshold: ThresholdOpt = 0.5,
    json_out: JsonOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV: path, probability, label, error.")] = False,
    workers: WorkersOpt = None,
):
    """The probability that each image is a cat, and its label."""
    with _guard():
        if json_out and csv_out:
            raise CatlrError("--json and --csv both asked for, choose one")
        from .predict import predict as run

        rows = run(inputs, model, threshold=threshold, workers=workers or 0)
        # Plain text, not rich: predict in a loop is mostly start-up (README, Performance).
        if json_out:
            _print_json(rows)
        elif csv_out:
            import csv

            w = csv.writer(sys.stdout, lineterminator="\n")
            w.writerow(["path", "probability", "label", "error"])
            for r in rows:
                w.writerow([r["path"], r.get("probability", ""), r.get("label", ""),
                            r.get("error", "")])
        else:
            width = max(len(r["path"]) for r in rows) if rows else 4
            print(f"{'path':<{width}}  probability  label")
            for r in rows:
                tail = (f"{r['probability']:11.3f}  {r['label']}" if "error" not in r
                        else f"{'-':>11}  error: {r['error']}")
                print(f"{r['path']:<{width}}  {tail}")
        if any("error" in r for r in rows):
            raise typer.Exit(1)


@app.command()
def sweep(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Image folder, prepared .h5, or folder with train_*.h5 + test_*.h5.")],
    lr: Annotated[Optional[List[float]], typer.Option("--lr", help="A learning rate; repeat the flag [default: 0.01, 0.001, 0.0001].")] = None,
    iters: Annotated[int, typer.Option("--iters", help="Iterations for each model.")] = 1500,
    config: ConfigOpt = None,
    plot: Annotated[Optional[Path], typer.Option(help="Save every cost curve in one PNG.")] = None,
    json_out: JsonOpt = False,
):
    """The course's learning-rate comparison: one model per --lr, one table, one plot."""
    with _guard():
        rates = lr or [0.01, 0.001, 0.0001]
        cfg = resolve(config, iters=iters)
        for rate in rates:
            resolve(None, lr=rate)  # each rate checked before any work
        from .train import sweep as run

        console = _console(json_out)
        with _events(console, quiet=True) as on_event:
            rows = run(data, cfg, rates, on_event=on_event)
        if plot is not None:
            from .plots import sweep_curves

            sweep_curves(rows, plot, title=f"Cost per learning rate ({cfg['iters']} iterations)")
        if json_out:
            _print_json(rows)
        else:
            _sweep_table(console, rows, plot)


@app.command()
def inspect(
    model: Annotated[Path, typer.Argument(metavar="[MODEL]", help="Model file.")] = Path(DEFAULTS["model"]),
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Render w as a size x size x 3 picture (PNG).")] = None,
    json_out: JsonOpt = False,
):
    """What a model file holds: its metadata and training figures."""
    with _guard():
        from .modelfile import load

        m, meta = load(model)
        if weights is not None:
            from .plots import weights_picture

            weights_picture(m.w, meta["image_size"], weights, classes=meta["classes"],
                            title=f"Weights of {model.name} ({meta['classes'][1]} vs "
                                  f"{meta['classes'][0]})")
        if json_out:
            _print_json({**meta, "b": m.b, "w_norm": float((m.w ** 2).sum() ** 0.5),
                         "costs": m.costs})
        else:
            _inspect_table(_console(), str(model), meta, m, weights)


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(metavar="[DIR]", help="Where to write the sample and its outputs.")] = Path("catlr-demo"),
):
    """Make a sample image folder and run prepare, train, eval and predict on it."""
    with _guard():
        from .demo import make_sample

        console = _console()
        paths = make_sample(folder)
        console.print(f"catlr demo: drew a sample folder in {paths['images']} "
                      "(cat/ and non-cat/) and a few new images in "
                      f"{paths['unseen']}\n")
        h5, model = folder / "prepared.h5", folder / "model.npz"
        images, unseen = Path(paths["images"]), Path(paths["unseen"])
        steps = [  # each step as a user would type it, then the command itself
            (f"prepare {images} --out {h5}", lambda: prepare(images, out=h5)),
            (f"train {h5} --iters 1000 --out {model} --plot {folder / 'cost.png'}",
             lambda: train(h5, iters=1000, out=model, plot=folder / "cost.png")),
            (f"eval --model {model} --errors {folder / 'errors.png'}",
             lambda: evaluate(model=model, errors=folder / "errors.png")),
            (f"predict {unseen} --model {model}", lambda: predict([str(unseen)], model=model)),
        ]
        for command, run in steps:
            _step(console, "catlr " + command)
            run()
        console.print(f"\nDone. Pictures: {folder / 'cost.png'}, {folder / 'errors.png'}. "
                      "Next: point 'catlr train' at your own folder with cat/ and non-cat/.")


# ---- rendering: everything below only draws what the library returned ----

@contextlib.contextmanager
def _events(console, *, verbose=False, quiet=False, warm=None):
    """Draw the library's on_event(name, info) reports: lines, and bars on a terminal.

    `warm`, if given, is called once at the first event (work is under way by then).
    """
    progress, tasks = None, {}
    pending = [warm] if warm else []
    if console.is_terminal:  # off a terminal there is nothing to animate: skip rich.progress
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                            console=console, transient=True)
    say = progress.console.print if progress else console.print

    def bar(key, label, total, done, with_rate=False):
        if progress is None:
            return
        if key not in tasks:
            tasks[key] = progress.add_task(label, total=total, rate="")
        speed = progress.tasks[tasks[key]].speed if with_rate else None
        progress.update(tasks[key], completed=done, rate=f"{speed:,.0f} images/s" if speed else "")

    def on_event(name, info):
        while pending:
            pending.pop()()
        if name == "decode":
            bar("decode", "Decoding images", info["total"], info["done"], with_rate=True)
        elif name == "data" and not quiet:
            for line in _data_lines(info["dataset"]):
                say(line)
        elif name == "form" and verbose:
            say(f"Training: {info['form']} form (m = {info['m']}, n_x = {info['n_x']}), "
                f"{info['dtype']}")
        elif name == "cost":
            lr = info.get("lr")
            bar(("train", lr), "Training" if lr is None else f"lr = {lr:g}", info["iters"],
                info["i"])
            if not quiet:
                say(f"Cost after iteration {info['i']}: {info['cost']:f}")

    if progress is None:
        yield on_event
        return
    with progress:
        yield on_event


def _data_lines(ds):
    yield (f"Data: {ds.kind} {ds.source}: {len(ds.y_train)} train and {len(ds.y_test)} "
           f"test images of {ds.size} x {ds.size} ({ds.classes[1]}: "
           f"{int(ds.y_train.sum())} train, {int(ds.y_test.sum())} test)")
    report = ds.report or {}
    skipped = report.get("skipped", [])
    if skipped:
        shown = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:3])
        yield f"Skipped {len(skipped)} unreadable files: {shown}{'; ...' if len(skipped) > 3 else ''}"
    leaks = report.get("duplicates", {}).get("across", [])
    if leaks:
        yield (f"{len(leaks)} test images repeat a train image (e.g. {leaks[0][1]} = "
               f"{leaks[0][0]}); 'catlr prepare --dedupe' drops them")


def _table(*columns, title=None):
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold")
    for c in columns:
        table.add_column(c, justify="right" if c not in ("", "split", "class", "file",
                                                         "reason", "key", "value") else "left")
    return table


def _prepare_report(console, r):
    neg, pos = r["classes"]
    console.print(f"Wrote {r['out']}")
    table = _table("split", neg, pos, "total", f"{pos} share")
    for split in ("train", "test"):
        c = r["counts"][split]
        n = sum(c.values())
        table.add_row(split, str(c[neg]), str(c[pos]), str(n), _pct(c[pos] / n if n else None))
    console.print(table)
    for split, c in r["counts"].items():
        missing = [name for name, n in c.items() if n == 0]
        if sum(c.values()) and missing:
            console.print(f"The {split} split has no {' or '.join(missing)} images.", style="yellow")
    split = r["split"]
    console.print("Split: " + ("kept the folder's train/ and test/" if split is None else
                               f"seed {split['seed']}, test fraction {split['test_fraction']:g}, "
                               "stratified by class"))
    share = r["positive_fraction"]
    if share is not None and not 0.3 <= share <= 0.7:
        console.print(f"Class imbalance: {_pct(share)} of images are {pos}; accuracy alone "
                      "will flatter the model, look at precision and recall.", style="yellow")
    if r["skipped"]:
        t = _table("file", "reason", title=f"Skipped {len(r['skipped'])} unreadable files")
        for s in r["skipped"][:20]:
            t.add_row(s["path"], s["reason"])
        if len(r["skipped"]) > 20:
            t.add_row(f"... and {len(r['skipped']) - 20} more", "")
        console.print(t)
    if r["ignored"]:
        console.print(f"Ignored {len(r['ignored'])} files that are not images or not in a class "
                      f"folder (e.g. {r['ignored'][0]}).")
    d = r["duplicates"]
    for key, what in (("train", "within train"), ("test", "within test"),
                      ("across", "across train and test (leakage)")):
        if d[key]:
            a, b = d[key][0]
            console.print(f"Duplicates {what}: {len(d[key])} (e.g. {a} = {b})", style="yellow")
    if r["dropped_duplicates"]:
        console.print(f"Dropped {r['dropped_duplicates']} duplicates (--dedupe).")
    elif any(d.values()):
        console.print("Pass --dedupe to drop them.")
    if r["images_per_second"]:
        console.print(f"Decoded {r['images']} files in {r['seconds']:.2f} s "
                      f"({r['images_per_second']:,.0f} images/s).")


def _train_summary(console, meta, model_path, plot):
    console.print(f"train accuracy: {_pct(meta['train_accuracy'])}")
    console.print(f"test accuracy: {_pct(meta['test_accuracy'])}")
    console.print(f"Saved {model_path}" + (f" and the cost curve {plot}" if plot else ""))


def _eval_report(console, f, errors):
    neg, pos = f["classes"]
    console.print(f"Model {f['model']} on the {f['split']} split of {f['data']} ({f['m']} images)")
    t = _table("metric", "value")
    for key in ("accuracy", "precision", "recall", "f1"):
        t.add_row(key, _pct(f[key]))
    t.add_row("log_loss", "n/a" if f["log_loss"] is None else f"{f['log_loss']:.4f}")
    t.add_row("roc_auc", "n/a" if f["roc_auc"] is None else f"{f['roc_auc']:.4f}")
    console.print(t)
    cm = _table("true \\ predicted", neg, pos, "total", title=f"Confusion matrix (threshold {f['threshold']:g})")
    cm.add_row(neg, f"{f['tn']} (tn)", f"{f['fp']} (fp)", str(f["negatives"]))
    cm.add_row(pos, f"{f['fn']} (fn)", f"{f['tp']} (tp)", str(f["positives"]))
    console.print(cm)
    if errors:
        console.print(f"Saved the {f['fp'] + f['fn']} misclassified images to {errors}")


def _sweep_table(console, rows, plot):
    t = _table("learning rate", "final cost", "train accuracy", "test accuracy",
               title="Learning-rate sweep")
    for r in rows:
        t.add_row(f"{r['lr']:g}", f"{r['final_cost']:.6f}", _pct(r["train_accuracy"]),
                  _pct(r["test_accuracy"]))
    console.print(t)
    if plot:
        console.print(f"Saved the cost curves to {plot}")


def _inspect_table(console, path, meta, model, weights):
    t = _table("key", "value", title=path)
    for key in ("format", "catlr_version", "image_size", "classes", "fit", "normalization", "lr",
                "iters", "cost_every", "form", "dtype", "data", "data_kind", "split",
                "m_train", "m_test"):
        if key in meta:
            t.add_row(key, str(meta[key]))
    t.add_row("train_accuracy", _pct(meta.get("train_accuracy")))
    t.add_row("test_accuracy", _pct(meta.get("test_accuracy")))
    t.add_row("b", f"{model.b:.6g}")
    t.add_row("|w|", f"{float((model.w ** 2).sum()) ** 0.5:.6g}")
    if model.costs:
        t.add_row("cost first / last", f"{model.costs[0]:.6f} / {model.costs[-1]:.6f}")
    console.print(t)
    if weights:
        console.print(f"Saved the weights picture to {weights}")


def _step(console, command):
    console.print()
    console.rule(f"$ {command}", align="left", style="bold")

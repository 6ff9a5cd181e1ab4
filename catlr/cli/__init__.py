"""catlr's command line: each command parses, calls one library function, renders.

With render.py (tables, output formats) and progress.py (bars), the only code
that imports typer or rich; it holds no math. Library modules are imported
inside the command that needs them, the one lazy boundary: `catlr --help` and
argument errors import none of numpy, h5py, Pillow, matplotlib or rich.
"""

import contextlib
import glob
import os
import sys
from inspect import Parameter, signature
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from ..config import (
    AUTO,
    DEFAULT_PREPARED,
    DEFAULTS,
    FLAGS,
    HEADINGS,
    SERVE,
    flag_help,
    flag_name,
    options,
    parse_memory,
    resolve,
)
from ..config import read_toml as resolve_file_keys
from ..errors import CatlrError, Stopped, Terminated, UsageError, came_from_interrupt
from ..text import columns, printable, wrap

# typer < 0.28 uses click, 0.28 vendors it: find its exception classes either way.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


_SAID = []  # a command's guard said why it stopped (its exit code alone does not tell)


class _Group(TyperGroup):
    """Typer's group with every usage error as one line: `Error: ..., see '... --help'`,
    and each command's first sentence whole in --help's list, wrapped (click cuts it to
    what fits one line: 'Train by batch gradient descent from w =...' at 60 columns)."""

    def format_commands(self, ctx, formatter):
        rows = [(name, cmd.get_short_help_str(limit=10**4)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _SAID.clear()
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
            if code == 130 and not _SAID:
                # Ctrl-C while typer parses, before a command's guard: typer turns it into
                # exit 130 and says nothing
                _say("Interrupted")
        except Terminated as e:  # SIGTERM or SIGHUP there: the same, with its own code
            _say("Terminated")
            code = 128 + e.signum
        except _UsageError as e:
            message = e.format_message()
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `catlr`: the help is the answer
                print(message)  # catlr's own help text, many lines
                code = 0
            else:
                message = message.rstrip(".")
                hint = f"see '{e.ctx.command_path if e.ctx else 'catlr'} --help'"
                tail = f" {hint[0].upper()}{hint[1:]}" if message.endswith("?") else f", {hint}"
                _say(f"Error: {message}{tail}")
                code = 2
        except _ClickException as e:
            _say(f"Error: {e.format_message()}")
            code = e.exit_code
        except typer.Abort:
            _say("Interrupted")
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code


class _Command(TyperCommand):
    """Typer's command with usage lines that read `catlr train [OPTIONS] DATA`, not `{DATA}`,
    and options listed under their headings (config.HEADINGS): the course's settings first,
    then the command's own options, then image folders, decoding, engines. Plain text, so
    --help imports no rich."""

    def collect_usage_pieces(self, ctx):
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p
                for p in super().collect_usage_pieces(ctx)]

    def format_options(self, ctx, formatter):
        args, sections = [], {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append(record)
            else:
                sections.setdefault(getattr(param, "rich_help_panel", None) or "Options",
                                    []).append(record)
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        first = [HEADINGS["sweep"], HEADINGS["training"]]
        for title in first + ["Options"] + [h for h in HEADINGS.values() if h not in first]:
            if title in sections:
                with formatter.section(title):
                    formatter.write_dl(sections[title])


app = typer.Typer(name="catlr", cls=_Group, rich_markup_mode=None, pretty_exceptions_enable=False,
                  add_completion=True, no_args_is_help=True)


def _say(text: str, stream=None):
    """One line on stderr, escaped as render's printer escapes; on a terminal, wrapped at
    its width between words (a 'quoted command' kept whole) with the lines after the first
    indented, where the terminal would cut a word. Nothing imported here, so it works at
    any moment of an interrupt (a module half imported, say)."""
    stream = stream or sys.stderr
    try:
        text = printable(text)
        width = columns(stream)
        if width:
            text = "\n".join(wrap(text, width, "  "))
        print(text, file=stream)
    except BrokenPipeError:
        pass


def _version(value: bool):
    if value:
        from ..version import __version__

        _say(f"catlr {__version__}", sys.stdout)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="Print catlr's version and exit.")] = False,
):
    """Train the course's cat / non-cat logistic regression on your images."""


def _terminate(signum, frame):
    raise Terminated(signum)


def main():
    import signal

    # An output encoding that cannot represent a name (PYTHONIOENCODING=ascii, a latin-1
    # terminal) prints it escaped: at the streams themselves, so no writer can miss it.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")

    # A library's warning (NumPy's overflow, a deprecation) is not catlr's output: what
    # matters reaches the user as catlr's one line. -W or PYTHONWARNINGS still choose.
    if not sys.warnoptions:
        import warnings

        warnings.simplefilter("ignore")
    # SIGTERM and SIGHUP unwind like Ctrl-C: temporary files go, outputs stay whole
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        # an ignored signal stays ignored: 'nohup catlr train ...' outlives its terminal
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _terminate)
    # Typer turns every registered command into a click command at each start;
    # build only the one being run (help and typos still see all of them).
    name = sys.argv[1] if len(sys.argv) > 1 else None
    chosen = [c for c in app.registered_commands
              if (c.name or c.callback.__name__) == name]
    if chosen:
        app.registered_commands[:] = chosen
    app()


@contextlib.contextmanager
def _guard(interrupted="stopped, nothing was written", kept=None):
    """Known errors become one line and exit 1 (2 for bad flags); Ctrl-C exits 130, SIGTERM
    143, SIGHUP 129; a closed pipe ends quietly. `interrupted` may be a callable that says
    what was written by then; kept(), where and how a stopped run goes on (or None), ends
    an error's line."""
    from ..files.inputs import scope

    debug = os.environ.get("CATLR_DEBUG") == "1"
    said = interrupted if callable(interrupted) else lambda: interrupted

    def line(message):
        note = kept() if kept else None
        return f"{message}; {note}" if note else message

    try:
        with scope():  # the command's inputs, which no output may overwrite
            yield
    except typer.Exit:
        raise
    except BrokenPipeError:  # `catlr predict DIR --csv | head -1`: the reader has what it wanted
        from .render import silence

        silence(sys.stdout)
        raise typer.Exit(141) from None
    except Terminated as e:
        _say(f"Terminated: {said()}")
        _SAID.append(e)
        raise typer.Exit(128 + e.signum) from None
    except Stopped as e:  # what the last checkpoint kept, and how to go on
        if debug:
            raise
        _fail(f"{e}: {said()}", e.exit_code)
    except CatlrError as e:
        if debug:
            raise
        _fail(line(str(e)), e.exit_code)
    except KeyboardInterrupt as e:
        _say(f"Interrupted: {said()}")
        _SAID.append(e)
        raise typer.Exit(130) from None
    except Exception as e:
        if came_from_interrupt(e):  # Ctrl-C that the standard library turned into another
            _say(f"Interrupted: {said()}")
            _SAID.append(e)
            raise typer.Exit(130) from None
        if debug:
            raise
        _fail(line(_unexpected(e)), 1)


def _unexpected(e: Exception) -> str:
    """The line of an error catlr did not expect: an OSError (a full disk, a read-only
    folder) says which file; anything else asks for the traceback."""
    if isinstance(e, OSError):
        return (f"{e.strerror or e} ({e.filename or 'file'}), check the path, its "
                "permissions and free space")
    return (f"unexpected {type(e).__name__}: {e}, rerun with CATLR_DEBUG=1 to see the "
            "traceback and report it")


def _resolve(config, **settings) -> dict:
    """The command's settings (config.resolve); the config file is one of its inputs, which
    no output may replace."""
    from ..files.inputs import reading

    if config is not None:
        reading(config)
    return resolve(config, **settings)


def _fail(message: str, code: int):
    _say(f"Error: {message}")
    raise typer.Exit(code)



def _outputs(inputs=(), storage_options=None, **outputs):
    """Refuse, before any work, an output that must not be written (files.outputs.guard, the one
    output guard every write goes through again): one line, exit 2.
    outputs: {flag: (path or None, kind)}."""
    from ..files.outputs import guard

    guard(outputs, inputs, storage_options)


def _threshold(value: float | None) -> float | None:
    # click's min/max let NaN through (every comparison with NaN is false); None: the model's
    if value is not None and not 0.0 <= value <= 1.0:
        raise UsageError(f"--threshold must be a probability from 0 to 1, got {value}")
    return value


def _fmt(json_out: bool) -> str:
    return "json" if json_out else "table"


_KINDS = {float: Optional[float], int: Optional[int], str: Optional[str],
          list: Optional[List[float]], dict: Optional[List[str]]}


def _setting(key: str):
    """The flag of one setting, from the registry (config.FLAGS): type, help, heading."""
    return Annotated[Optional[str] if key in AUTO else _KINDS[type(DEFAULTS[key])],
                     typer.Option(flag_name(key), help=flag_help(key), show_default=False,
                                  rich_help_panel=HEADINGS[FLAGS[key].heading])]


def settings(command: str):
    """Give the decorated command a flag for each setting it takes (config.options), and
    call it with their values as one dict, `settings` (None where a flag is not given):
    the options are declared once, in config.py, for every command that shares them."""
    keys = options(command)

    def decorate(fn):
        sig = signature(fn)
        own = [p for name, p in sig.parameters.items() if name != "settings"]
        full = sig.replace(parameters=own + [
            Parameter(k, Parameter.KEYWORD_ONLY, default=None, annotation=_setting(k))
            for k in keys])

        def command(*args, **kwargs):
            bound = full.bind(*args, **kwargs)
            bound.apply_defaults()
            given = dict(bound.arguments)
            chosen = {}
            for k in keys:
                value = given.pop(k)
                chosen[k] = None if value == [] else value  # a repeatable flag not given
            return fn(**given, settings=chosen)

        for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(command, attr, getattr(fn, attr))
        command.__signature__ = full
        command.__annotations__ = {p.name: p.annotation for p in full.parameters.values()}
        return command
    return decorate


# Options of several commands that are not settings.
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML file of settings (see configs/default.toml); flags override it.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help=f"Model file written by 'catlr train' [default: the newest run in {DEFAULTS['runs']}/, else {DEFAULTS['model']}: the config's runs and model keys].")]
ThresholdOpt = Annotated[Optional[float], typer.Option(min=0.0, max=1.0, show_default=False, help="Probability above which an image is positive [default: the model's: what train chose on validation or was given, else 0.5].")]
ModelArg = Annotated[Optional[Path], typer.Argument(metavar="[MODEL]", help=f"Model file [default: the newest run in {DEFAULTS['runs']}/, else {DEFAULTS['model']}].")]
DataArg = Annotated[Path, typer.Argument(metavar="DATA", help="Image folder, prepared .h5, or folder with train_*.h5 + test_*.h5.")]


@app.command(cls=_Command)
@settings("prepare")
def prepare(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="Image folder: SRC/cat/ + SRC/non-cat/, or SRC/train/<class>/ + SRC/test/<class>/.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HDF5 file to write, in the course's schema (NAME.zarr: a Zarr store; URL.zarr: one at an fsspec URL, e.g. s3://bucket/NAME.zarr with --storage-option).")] = Path(DEFAULT_PREPARED),
    strict: Annotated[bool, typer.Option(help="Fail on the first broken file, writing nothing (without it: skip and list them).", show_default=False)] = False,
    dedupe: Annotated[bool, typer.Option(help="Drop images whose pixels repeat an earlier one (and test images equal to a train image).")] = False,
    config: ConfigOpt = None, json_out: JsonOpt = False, settings: dict = None,
):
    """Turn an image folder into one HDF5 file in the course's schema.

    SRC is a folder of photos in class folders, which catlr splits (--test-fraction,
    --seed), cat/ the positive class (--positive); or one split already, kept as it is:

    \b
      SRC/cat/        IMG_0001.jpg, ...
      SRC/non-cat/    anything else
    \b
      SRC/train/cat/  SRC/train/non-cat/
      SRC/test/cat/   SRC/test/non-cat/

    Any image format Pillow reads (JPEG, PNG, GIF, WebP, TIFF, BMP, AVIF), any size:
    EXIF rotation applied, resized by --fit. Broken files are skipped and listed.
    The output holds train_set_x/_y, test_set_x/_y and list_classes, as the course's
    files do: 'catlr train data/' then trains on it.
    """
    with _guard("stopped, the output file was not written"):
        cfg = _resolve(config, **settings)
        from ..stages.prepare import prepare as run
        from ..stages.prepare import refuse_course_pair
        from . import render
        from .progress import events

        refuse_course_pair(src)
        store = os.fspath(out).rstrip(os.sep).endswith(".zarr")
        _outputs([src, config], cfg["storage_options"], out=(out, "zarr" if store else "hdf5"))

        # Off a terminal nothing is drawn while images decode, so rich (for the final
        # tables) is imported then, on the main thread, while the workers decode.
        with events(render.console(json_out), quiet=True) as on_event:
            report = run(src, out, cfg, dedupe=dedupe, strict=strict, on_event=on_event)
        render.show(report, _fmt(json_out),
                    human=lambda r: render.prepare_report(render.console(), r))


@app.command(cls=_Command)
@settings("train")
def train(
    data: Annotated[Optional[Path], typer.Argument(metavar="DATA", help="Image folder, prepared .h5, or folder with train_*.h5 + test_*.h5 (with --resume: the run's own data by default).")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Go on from a run (runs/train-3, or its name): an interrupted one completes, a finished one goes --iters further into a new run.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help=f"Write the model to exactly this file, not to a new run folder in {DEFAULTS['runs']}/.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Name of the run folder [default: train-1, train-2, ...].")] = None,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Let --name replace an existing run folder.")] = False,
    config: ConfigOpt = None,
    plot: Annotated[Optional[Path], typer.Option(help="Save the cost curve as a PNG (also kept in the run folder).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say how training is computed.")] = False,
    json_out: JsonOpt = False, settings: dict = None,
):
    """Train by batch gradient descent from w = 0, b = 0.

    \b
    DATA is any of:
      a folder holding the course's two files
          train_catvnoncat.h5 + test_catvnoncat.h5
      a prepared file, or a folder holding one
          what 'catlr prepare PHOTOS' writes
      an image folder
          DATA/cat/ + DATA/non-cat/, or
          DATA/train/<class>/ + DATA/test/<class>/

    Without --out the model goes to a new run folder, runs/train-1/, runs/train-2/, ...,
    with its config, costs and figures; 'catlr runs' compares them, and eval, predict
    and inspect use the newest.
    """
    written, held = [], {}   # what was written; a checkpoint's path: the iteration it holds

    def kept():  # gone once the run's folder is written whole
        path, at = next(reversed(held.items()), (None, None))
        if path is None or not os.path.isfile(path):
            return None
        return (f"its checkpoint (iteration {at}) is in {os.path.dirname(path)}/, go on with "
                f"'catlr train --resume {os.path.dirname(path)}'")

    def stopped():
        note = kept()
        if note:
            return f"stopped; {note}"
        if not written:
            return "stopped, no model was written (an existing one is unchanged)"
        unplotted = "; the cost curve was not written" if plot and str(plot) not in written else ""
        return f"stopped after saving {', '.join(written)}{unplotted}"

    with _guard(stopped, kept):
        if data is None and resume is None:
            raise UsageError("Missing argument 'DATA', see 'catlr train --help'")
        cfg = _resolve(config, **settings)
        from ..stages.train import train as run  # (registers the model file's output kind)
        from . import render

        _outputs([data, config], out=(out, "model"), plot=(plot, "png"))
        from .progress import events

        console = render.console(json_out, plain=True)
        given = {k for k, v in settings.items() if v is not None} | (
            set(resolve_file_keys(config)) if config else set())
        with events(console, verbose=verbose, quiet=json_out, wrote=written,
                    checkpoints=held) as on_event:
            model, meta, saved = run(data, cfg, out=out, name=name, exist_ok=exist_ok,
                                     plot=plot, on_event=on_event, resume=resume, given=given)
        for warning in meta["warnings"]:
            _say(f"Warning: {warning}")
        render.show({"model": saved.model, "run": saved.folder, **meta, "costs": model.costs_},
                    _fmt(json_out), human=lambda m: render.train_summary(console, m, saved))


@app.command("eval", cls=_Command)
@settings("eval")
def evaluate(
    data: Annotated[Optional[Path], typer.Argument(metavar="[DATA]", help="Data to evaluate on [default: the data the model was trained on].")] = None,
    model: ModelOpt = None,
    split: Annotated[str, typer.Option(help="test or train.")] = "test",
    threshold: ThresholdOpt = None,
    errors: Annotated[Optional[Path], typer.Option("--errors", help="Save a sheet of the misclassified images, each captioned with its file, as a PNG.")] = None,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", help="Save one CSV row per image: path (or split and index), true label, probability, predicted label, correct.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Save a PNG: precision against recall with the threshold's point, the reliability diagram (predicted against observed, the count per bin) and, with --learning-curve, the learning curve.")] = None,
    learning_curve: Annotated[bool, typer.Option("--learning-curve", help="Train the model's settings again on 10%, 20%, ... 100% of its training split and on shuffled labels, each scored on the validation split (else the test split, said): would more images help?")] = False,
    config: ConfigOpt = None, json_out: JsonOpt = False, settings: dict = None,
):
    """A model's accuracy, precision, recall, F1 and confusion matrix.

    Also log loss, ROC AUC, the Brier score and the calibration error, each with its
    interval. DATA defaults to the data the model was trained on, and for an image folder
    to the very test split that train held out.
    """
    with _guard():
        if split not in ("train", "test"):
            raise UsageError(f"--split must be train or test, got {split!r}")
        _threshold(threshold)
        cfg = _resolve(config, **settings)
        from ..runs import resolve_model
        from ..stages.evaluate import evaluate as run
        from . import render
        from .progress import events

        model, chosen = resolve_model(model, cfg)
        _outputs([model, data], errors=(errors, "png"), predictions=(predictions, "predictions"),
                 plot=(plot, "png"))

        with events(render.console(json_out, plain=True), quiet=True) as on_event:  # folders: a bar
            result = run(model, data, split=split, threshold=threshold, on_event=on_event,
                         storage_options=cfg["storage_options"])
        with contextlib.closing(result):  # the mistakes' images may be read from the file
            if errors is not None:
                from ..stages.plots import MISTAKES, mistakes_sheet

                wrong = mistakes_sheet(result.images, result.labels, result.probabilities,
                                       result.paths, result.figures["classes"], errors,
                                       threshold=result.threshold,
                                       title=f"Misclassified ({split} split)")
                result.figures["errors_shown"] = min(wrong, MISTAKES)
            if predictions is not None:
                from ..stages.evaluate import write_predictions

                write_predictions(result, predictions)
            if learning_curve:
                from ..stages.curve import learning_curve as curve

                with events(render.console(json_out, plain=True), quiet=True) as on_event:
                    result.figures["learning_curve"] = curve(
                        model, data, threshold=threshold, on_event=on_event,
                        storage_options=cfg["storage_options"])
            if plot is not None:
                from ..stages.plots import eval_picture

                eval_picture(result, plot)
        for warning in result.figures["warnings"]:
            _say(f"Warning: {warning}")
        render.show(result.figures, _fmt(json_out),
                    human=lambda f: render.eval_report(render.console(), f, errors, chosen,
                                                       predictions, plot))


@app.command(cls=_Command)
@settings("predict")
def predict(
    inputs: Annotated[List[str], typer.Argument(metavar="INPUT...", help="Image files, folders (searched for images) and globs.")],
    model: ModelOpt = None,
    threshold: ThresholdOpt = None,
    json_out: JsonOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV: path, probability, label, error.")] = False,
    config: ConfigOpt = None, settings: dict = None,
):
    """The probability that each image is a cat, and its label."""
    with _guard():
        if json_out and csv_out:
            raise UsageError("--json and --csv both asked for, choose one")
        _threshold(threshold)
        cfg = _resolve(config, **settings)
        from ..events import ignore
        from ..runs import resolve_model
        from ..runs.predictor import Predictor
        from ..stages.predict import predict as run
        from . import render

        model, chosen = resolve_model(model, cfg)
        predictor = Predictor.load(model, threshold)
        for warning in predictor.meta.get("warnings") or []:  # a flagged model says so
            _say(f"Warning: {model}: {warning}")
        many = len(inputs) > 1 or any(os.path.isdir(i) or glob.has_magic(i) for i in inputs)
        if many:  # the progress module (and its bars) only where there is a bar to draw
            from .progress import events
        with (events(render.console(json_out or csv_out, plain=True), quiet=True) if many
              else contextlib.nullcontext(ignore)) as on_event:  # a bar for many images
            rows = run(inputs, threshold=threshold, workers=cfg["workers"],
                       max_pixels=cfg["max_pixels"], on_event=on_event, predictor=predictor)
        render.show(rows, "json" if json_out else "csv" if csv_out else "table",
                    human=lambda r: render.predict_table(r, model, chosen),
                    columns=["path", "probability", "label", "error"])
        if any("error" in r for r in rows):
            raise typer.Exit(1)


@app.command(cls=_Command)
@settings("explain")
def explain(
    inputs: Annotated[List[str], typer.Argument(metavar="PHOTO...", help="Image files, folders (searched for images) and globs.")],
    model: ModelOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Save the explanation as a PNG: the photo, what the model sees, each pixel's push, the sums and the training images most alike.")] = None,
    threshold: ThresholdOpt = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None, settings: dict = None,
):
    """Why the model says cat or non-cat of each photo, pixel by pixel.

    The logit is a sum over pixels, z = w . x + b, so catlr shows exactly
    where the decision comes from: what the model sees (the photo squashed to
    its size), each pixel's w_i x_i as a signed map, the regions that push
    most towards each class, the training images the model finds most alike,
    and the one or two things most worth knowing. The probability and label
    are those of 'catlr predict'.
    """
    with _guard():
        _threshold(threshold)
        cfg = _resolve(config, **settings)
        from ..runs import resolve_model
        from ..runs.predictor import Predictor
        from ..stages.explain import explain as run
        from . import render
        from .progress import events

        model, chosen = resolve_model(model, cfg)
        _outputs([model, config, *inputs], out=(out, "png"))
        predictor = Predictor.load(model, threshold)
        with events(render.console(True, plain=True), quiet=True) as on_event:
            found = run(inputs, predictor=predictor, max_pixels=cfg["max_pixels"],
                        storage_options=cfg["storage_options"], on_event=on_event)
        drawn = 0
        if out is not None:
            from ..stages.plots import explain_picture

            drawn = explain_picture(found, out, predictor.classes)
        docs = [dict(e.doc, classes=list(predictor.classes)) if "error" not in e.doc else e.doc
                for e in found]
        render.show(docs, _fmt(json_out),
                    human=lambda d: render.explain_report(d, model, chosen, out, drawn))
        if any("error" in d for d in docs):
            raise typer.Exit(1)


@app.command("check", cls=_Command)
def check_notebook(
    notebook: Annotated[Path, typer.Argument(metavar="NOTEBOOK", help="Your week-2 notebook (.ipynb) or a .py file with its functions.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds the whole check may take; the notebook's code is stopped after that.")] = 120.0,
    json_out: JsonOpt = False,
):
    """Each graded function of your notebook, checked alone.

    sigmoid, initialize_with_zeros, propagate, optimize, predict, model and the
    flattening are taken out of the notebook and each is run against catlr.course
    on the course's test inputs and on random ones, the others replaced by
    catlr.course's, so one wrong function is named once. Also checked: no function
    changes its arguments, model uses its arguments and scores the right split,
    the types and shapes of what each returns. The notebook's code runs in a
    separate process, limited in time and memory; the notebook is never written.
    Exit code 0 when everything passed, 1 when something did not.
    """
    with _guard():
        if not timeout > 0:
            raise UsageError(f"--timeout must be a number of seconds over 0, got {timeout}")
        from ..stages.check import check as run
        from . import render

        result = run(notebook, timeout=timeout)
        render.show(result, _fmt(json_out), human=render.check_report)
        if not result["passed"]:
            raise typer.Exit(1)


@app.command(cls=_Command)
@settings("sweep")
def sweep(
    data: DataArg,
    config: ConfigOpt = None,
    plot: Annotated[Optional[Path], typer.Option(help="Save every cost curve in one PNG.")] = None,
    json_out: JsonOpt = False, settings: dict = None,
):
    """The course's learning-rate comparison, in one table.

    One model per --lr (default: the config's sweep_lrs), one table, one plot; rates
    whose cost rose during training are marked.
    """
    with _guard():
        cfg = _resolve(config, **settings)
        from ..stages.train import sweep as run
        from . import render
        from .progress import events

        _outputs([data, config], plot=(plot, "png"))
        console = render.console(json_out)
        with events(console, quiet=True) as on_event:
            rows = run(data, cfg, on_event=on_event)
        if plot is not None:
            from ..stages.plots import sweep_curves

            sweep_curves(rows, plot, title=f"Cost per learning rate ({cfg['iters']} iterations)")
        render.show(rows, _fmt(json_out), human=lambda r: render.sweep_table(console, r, plot))


@app.command(cls=_Command)
def inspect(
    model: ModelArg = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Render w as a size x size x 3 picture (PNG).")] = None,
    config: ConfigOpt = None, json_out: JsonOpt = False,
):
    """What a model file holds: its metadata and training figures."""
    with _guard():
        cfg = _resolve(config)
        from ..runs import resolve_model
        from ..runs.modelfile import load
        from . import render

        model, chosen = resolve_model(model, cfg)
        _outputs([model], weights=(weights, "png"))
        m, meta = load(model)
        if weights is not None:
            from ..stages.plots import weights_picture

            weights_picture(m.w_, meta["image_size"], weights, classes=meta["classes"],
                            title=f"Weights of {model} ({meta['classes'][1]} vs "
                                  f"{meta['classes'][0]})")
        doc = {**meta, "b": m.b_, "w_norm": m.w_norm(), "costs": m.costs_}
        render.show(doc, _fmt(json_out),
                    human=lambda _: render.inspect_table(render.console(), model, chosen, meta,
                                                         m, weights))


@app.command("runs", cls=_Command)
def list_runs(
    config: ConfigOpt = None,
    wide: Annotated[bool, typer.Option("--wide", help="Add the dtype, form, engine, and the full date and data path.")] = False,
    json_out: JsonOpt = False,
):
    """Every run train wrote, newest first, compared.

    Settings and figures side by side; runs whose cost rose are marked. The runs are
    in runs/, or where the config's runs key says.
    """
    with _guard():
        cfg = _resolve(config)
        from ..runs import table
        from . import render

        rows = table(cfg["runs"])
        render.show(rows, _fmt(json_out),
                    human=lambda r: render.runs_table(render.console(), r, cfg["runs"], wide))


@app.command(cls=_Command)
def demo(
    folder: Annotated[Path, typer.Argument(metavar="[DIR]", help="Where to write the sample and its outputs.")] = Path("catlr-demo"),
):
    """Draw a sample photo folder and run every step on it.

    prepare, train, eval and predict, each shown as you would type it; no data and no
    network needed.
    """
    with _guard():
        from ..stages.demo import make_sample
        from . import render

        console = render.console()
        paths = make_sample(folder)
        console.print(f"catlr demo: drew a sample folder in {paths['images']} "
                      "(cat/ and non-cat/) and a few new images in "
                      f"{paths['unseen']}")
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
            render.step(console, "catlr " + command)
            run()
        console.print("")
        console.print(f"Done. Pictures: {folder / 'cost.png'}, {folder / 'errors.png'}. "
                      "Next: point 'catlr train' at your own folder with cat/ and non-cat/.")



@app.command(cls=_Command)
def export(
    model: ModelArg = None,
    onnx: Annotated[Optional[Path], typer.Option("--onnx", help="Write the model as an ONNX graph to this .onnx file (needs catlr[onnx]).")] = None,
    threshold: ThresholdOpt = None,
    config: ConfigOpt = None, json_out: JsonOpt = False,
):
    """A model as an ONNX graph, its preprocessing inside.

    The graph takes uint8 RGB images (N, size, size, 3), as catlr decodes them (EXIF
    rotation, the model's fit and size: examples/onnx_app.py does the same), and gives
    the probability of the positive class and the label at --threshold; / 255, the
    flattening in the course's order, w, b and the sigmoid are in the graph, the class
    names, size, fit rule and threshold in its metadata.
    """
    with _guard():
        if onnx is None:
            raise UsageError("say what to write: --onnx FILE.onnx, see 'catlr export --help'")
        _threshold(threshold)
        cfg = _resolve(config)
        from ..runs import resolve_model
        from ..stages.export import export as run
        from . import render

        model, chosen = resolve_model(model, cfg)
        _outputs([model, config], onnx=(onnx, "onnx"))
        summary = run(model, onnx, threshold=threshold)
        render.show(summary, _fmt(json_out),
                    human=lambda s: render.export_report(render.console(), s, chosen))


@app.command(cls=_Command)
@settings("serve")
def serve(
    model: ModelArg = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; another than 127.0.0.1 lets other machines in (with a warning).")] = SERVE["host"],
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0: any free one).")] = SERVE["port"],
    threshold: ThresholdOpt = None,
    max_upload: Annotated[str, typer.Option("--max-upload", help="Largest request body, e.g. 20MB.")] = SERVE["max_upload"],
    max_images: Annotated[int, typer.Option("--max-images", help="Most images one request may carry.")] = SERVE["max_images"],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print no line per request.")] = False,
    config: ConfigOpt = None, settings: dict = None,
):
    """A local web page to try photos on a model, and a JSON API.

    The page (http://127.0.0.1:8000/ by default) takes photos dropped on it and shows
    each one's probability, label and the image the model sees. The API:

    \b
      POST /predict  an image as the body, or form
                     fields named file: the rows
                     'catlr predict --json' prints
      GET  /health   the model and the limits
    """
    with _guard("the server stopped"):
        _threshold(threshold)
        if not 0 <= port <= 65535:
            raise UsageError(f"--port must be from 0 (any free port) to 65535, got {port}")
        from ..serve.app import problem

        max_bytes = parse_memory(max_upload)
        if max_bytes is None:
            raise UsageError(f"--max-upload must be a size such as 512KB or 20MB (1GB at "
                             f"most), got {max_upload!r}")
        said = problem(max_bytes, max_images, max_upload)  # the bounds' one home: serve.app.BOUNDS
        if said:
            raise UsageError(said)
        cfg = _resolve(config, **settings)
        from ..runs import resolve_model
        from ..serve import Limits
        from ..serve import serve as run
        from . import render
        from .progress import events

        model, _ = resolve_model(model, cfg)
        limits = Limits(max_bytes, max_images, cfg["max_pixels"], cfg["workers"])
        with events(render.console(), quiet=quiet) as on_event:
            run(model, host=host, port=port, threshold=threshold, limits=limits,
                on_event=on_event)

"""Settings: one commented block of defaults, a TOML file that overrides a few, flags over both.

This module is also the one registry of every choice (CHOICES) and limit (LIMITS):
the checks of config files and flags, the CLI's help and the model file's checks
all read them here. configs/default.toml repeats the block; the resolved config
is stored in the model file's metadata.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

from . import solvers
from .errors import CatlrError, UsageError

DEFAULTS = {
    # training: the course's week-2 settings
    "lr": 0.005,            # learning rate of batch gradient descent ("auto": chosen on
                            # the validation split from a short sweep)
    "iters": 2000,          # gradient-descent iterations (lbfgs: at most this many)
    "print_every": "auto",  # record (and print) the cost every this many iterations; auto:
                            # 100 (the course's), more for long runs: about 20 lines
    "l2": 0.0,              # course 2's penalty lambda / (2m) |w|^2 (the bias is not penalized)
    "class_weight": "none", # none | balanced (m / (2 n_class), as scikit-learn) | NEG:POS, e.g. 1:3
    "solver": "gd",         # gd (the course's fixed-step descent) | nesterov (accelerated,
                            # the same step) | lbfgs (L-BFGS, its line search: no lr)
    # validation: choices made on held-out data, never on the test split
    "val_fraction": 0.0,    # of the training split held out (seeded, stratified); 0: none
    "early_stop": 0,        # stop after this many recorded costs without a better validation
                            # cost, keeping the best weights; 0: never
    "threshold": 0.5,       # the label: a probability above it is the positive class;
                            # "auto": chosen on the validation split for the target
    "target": "f1",         # what --threshold auto aims for: f1 (the best F1) |
                            # precision=0.9 (the most recall at that precision) | recall=0.9
    "dtype": "auto",        # auto: float64 in the dual form (the course's numbers), float32
                            # in the primal form (half the memory, twice the speed)
    "form": "auto",         # primal | dual | auto (dual when m is well below n_x)
    "engine": "auto",       # memory | stream (from the file, a block at a time) | dask | auto
    "memory": "auto",       # memory budget, e.g. 512MB or 4GB; auto: half of what is free
    "scheduler": "",        # a Dask scheduler's address for --engine dask; "": a local cluster
    "checkpoint_every": 60.0,  # seconds between a run's checkpoints (and one on Ctrl-C or
                               # SIGTERM); 0: only those
    "storage_options": {},  # fsspec options of a Zarr store at a URL (s3://...), also passed
                            # to the Dask workers: {endpoint_url = "http://...", key = "..."}
    # data: how image folders become arrays
    "size": 64,             # images become size x size x 3
    "fit": "stretch",       # stretch (as the course) | crop (center square) | pad
    "test_fraction": 0.2,   # held out when a folder has no train/ and test/
    "seed": 1,              # seeds that split
    "positive": "cat",      # the class folder whose images are label 1
    "workers": 0,           # decoding threads, 0 = one per core
    "max_pixels": 64_000_000,  # larger images are skipped, read from the header: no bombs
    # sweep: the course's learning-rate comparison (and penalties)
    "sweep_lrs": [0.01, 0.001, 0.0001],
    "sweep_l2s": [0.0],
    # output
    "runs": "runs",         # train writes runs/train-1/, runs/train-2/, ... (unless --out)
    "model": "model.npz",   # eval, predict and inspect read it when runs/ holds no run
}

DEFAULT_PREPARED = "data/prepared.h5"  # where `catlr prepare` writes, and train looks
# catlr serve's defaults: loopback only; a request of a few phone photos at most
SERVE = {"host": "127.0.0.1", "port": 8000, "max_upload": "20MB", "max_images": 16}

# Every setting with a fixed set of values: index 0 is never special, DEFAULTS says the default.
CHOICES = {
    "solver": solvers.NAMES,  # the solvers' table (solvers.py)
    "dtype": ("auto", "float64", "float32"),
    "engine": ("auto", "memory", "stream", "dask"),
    "form": ("auto", "primal", "dual"),
    "fit": ("stretch", "crop", "pad"),
}
# Inclusive bounds of the integer settings (None: no upper bound).
LIMITS = {
    "iters": (1, 10**9),
    "print_every": (1, 10**9),
    "size": (1, 1024),      # 1024 x 1024 x 3 = 3.1 M weights: 25 MB of float64
    "seed": (0, 2**32 - 1),
    "workers": (0, 1024),
    "max_pixels": (1, 10**10),
    "early_stop": (0, 10**6),
}
AUTO = ("lr", "threshold", "print_every")  # number settings that may also be "auto"
KINDS = {"print_every": int}  # the kind of a setting whose default is "auto"
LISTS = {"sweep_lrs": "lr", "sweep_l2s": "l2"}  # list settings: what each item must be
# Every setting that is also a flag: the heading of --help it is listed under, and its help
# (the default is added from DEFAULTS unless the help says it). A command takes the flags of
# its headings (COMMANDS), so a new setting is one line in DEFAULTS and one here: it is then a
# flag of train and sweep and a key of config files, checked by problem().
class Flag(NamedTuple):
    heading: str
    help: str
    name: str = ""  # the flag, when it is not --key-with-dashes


FLAGS = {
    "solver": Flag("training", solvers.help_text()),
    "lr": Flag("training", "Learning rate of gradient descent, or auto: the best of a short "
                           "sweep on the validation split"),
    "iters": Flag("training", "Gradient-descent iterations (lbfgs: the most it runs)"),
    "print_every": Flag("training", "Record and print the cost every N iterations [default: "
                                    "auto: 100, or for a long run iters / 20 rounded up to "
                                    "1, 2 or 5 x 10^k: about 20 lines]"),
    "l2": Flag("training", "L2 penalty lambda: J + lambda / (2m) |w|^2, as course 2"),
    "class_weight": Flag("training", "Weigh each class's examples: none, balanced, or NEG:POS "
                                     "such as 1:3"),
    "val_fraction": Flag("validation", "Hold out this fraction of the training split for "
                                       "validation (seeded, stratified)"),
    "early_stop": Flag("validation", "Stop when the validation cost has not improved for N "
                                     "recorded costs, keeping the best weights (0: never)"),
    "threshold": Flag("validation", "Label an image positive when its probability is above this, "
                                   "stored in the model (eval, predict, serve and export use "
                                   "it), or auto: chosen on the validation split for --target"),
    "target": Flag("validation", "What --threshold auto aims for: f1 (the best F1), "
                                "precision=0.9 (the most recall at that precision) or "
                                "recall=0.9 (the most precision at that recall)"),
    "sweep_lrs": Flag("sweep", "A learning rate to compare; repeat the flag", "--lr"),
    "sweep_l2s": Flag("sweep", "An L2 penalty to compare; repeat the flag", "--l2"),
    "size": Flag("data", "Images become SIZE x SIZE x 3"),
    "fit": Flag("data", f"Resize policy: {', '.join(CHOICES['fit'])}"),
    "test_fraction": Flag("data", "Held out for testing when the folder has no train/ and test/"),
    "seed": Flag("data", "Seed of that split"),
    "positive": Flag("data", "Name of the positive class folder"),
    "workers": Flag("decode", "Decoding threads, 0 = one per core plus one"),
    "max_pixels": Flag("decode", "Skip images larger than this many pixels, read from their "
                                 "header"),
    "dtype": Flag("engine", f"Floats of X: {', '.join(CHOICES['dtype'])} [default: auto: "
                            "float64 in the dual form (the course's numbers), float32 in the "
                            "primal form]"),
    "form": Flag("engine", f"How descent is computed: {', '.join(CHOICES['form'])} [default: "
                           "auto: the cheaper on this machine]"),
    "engine": Flag("engine", f"Where training runs: {', '.join(CHOICES['engine'])} [default: "
                             "auto: in memory when it fits --memory, else streamed from the "
                             "prepared file]"),
    "memory": Flag("engine", "Memory budget, e.g. 512MB or 4GB [default: auto: half of the "
                             "memory free]"),
    "scheduler": Flag("engine", "A Dask scheduler's address for --engine dask, e.g. "
                                "tcp://10.0.0.5:8786 [default: a local cluster]"),
    "checkpoint_every": Flag("engine", "Save a checkpoint in the run folder every N seconds "
                                       "(and on Ctrl-C or SIGTERM); 0: only then"),
    "storage_options": Flag("engine", "KEY=VALUE for a Zarr store at a URL (s3://b/x.zarr): an "
                                      "fsspec option, e.g. endpoint_url=http://h:9000; "
                                      "repeat the flag. VALUE is read as a TOML number or "
                                      "boolean, else as text; values are never printed nor "
                                      "saved [default: none]", "--storage-option"),
}
HEADINGS = {  # in the order --help lists them
    "sweep": "Sweep",
    "training": "Training (the course's settings)",
    "validation": "Validation (choices made on held-out data, never on test)",
    "data": "Image folders",
    "decode": "Decoding",
    "engine": "Engines, memory and cluster",
}
COMMANDS = {  # the headings (or single settings) whose flags each command takes; the
    # first to claim a flag has it
    "train": ("training", "validation", "data", "decode", "engine"),
    "sweep": ("sweep", "training", "validation", "data", "decode", "engine"),
    "prepare": ("data", "val_fraction", "decode", "storage_options"),
    "eval": ("storage_options",),
    "predict": ("decode",),
    "explain": ("max_pixels", "storage_options"),
    "serve": ("decode",),
}


def flag_name(key: str) -> str:
    return FLAGS[key].name or "--" + key.replace("_", "-")


def options(command: str) -> list[str]:
    """The settings `command` takes as flags, heading by heading (COMMANDS)."""
    keys, names = [], set()
    for heading in COMMANDS[command]:
        for key, flag in FLAGS.items():
            if (flag.heading == heading or key == heading) and flag_name(key) not in names:
                keys.append(key)
                names.add(flag_name(key))
    return keys


def flag_help(key: str) -> str:
    """A flag's help with its default, as --help shows it."""
    text = FLAGS[key].help
    if "[default:" in text:
        return text + "."
    value = DEFAULTS[key]
    shown = (", ".join(map(str, value)) if isinstance(value, list) else
             f"{value:,}" if isinstance(value, int) and value >= 10_000 else value)
    return f"{text} [default: {shown}]."


MAX_CONFIG_BYTES = 64 * 1024  # a config holds a few settings: more is not a config
# Names a setting had in earlier versions (model files keep them): old -> current.
RENAMED = {"cost_every": "print_every"}


def one_of(key: str) -> str:
    """'stretch, crop or pad': a choice's values, for messages and help."""
    values = CHOICES[key]
    return f"{', '.join(values[:-1])} or {values[-1]}"


# The checks of number and text settings: key -> (whether a value may be used, why not,
# with {!r} for the value). problem() applies the one of a key after its type's check.
NUMBER_RULES = {
    "lr": (lambda v: math.isfinite(v) and v > 0,
           "must be a positive finite number, got {!r} (the course uses 0.005)"),
    "test_fraction": (lambda v: 0 < v < 1,
                      "must be between 0 and 1 (exclusive), got {!r}, e.g. 0.2"),
    "val_fraction": (lambda v: 0 <= v < 1, "must be from 0 (none) to below 1, got {!r}, e.g. 0.2"),
    "checkpoint_every": (lambda v: math.isfinite(v) and v >= 0,
                         "must be a number of seconds >= 0, got {!r} (0: only on a signal)"),
    "l2": (lambda v: math.isfinite(v) and v >= 0,
           "must be a finite number >= 0, got {!r}, e.g. 0.1 (0: no penalty)"),
    "threshold": (lambda v: 0 <= v <= 1,
                  "must be a probability from 0 to 1, or auto, got {!r}, e.g. 0.7"),
}
TEXT_RULES = {
    "memory": (lambda v: v == "auto" or parse_memory(v) is not None,
               "must be auto or a size such as 512MB or 4GB, got {!r}"),
    "scheduler": (lambda v: not v or parse_address(v) is not None,
                  ("must be a Dask scheduler's address such as tcp://10.0.0.5:8786 (tcp:// or "
                   "tls://, a host and a port), got {!r}")),
    "target": (lambda v: parse_target(v) is not None,
               ("must be f1, precision=X or recall=X with X from 0 (exclusive) to 1, got {!r}, "
                "e.g. precision=0.9")),
    "class_weight": (lambda v: parse_class_weight(v) is not False,
                     ("must be none, balanced, or two positive weights NEG:POS such as 1:3 "
                      "(each from {low} to {high}, at most {ratio} times the other), got {!r}")),
}
# Class weights (--class-weight NEG:POS, and the library's {0: w0, 1: w1}): each in these
# bounds and at most RATIO times the other, so that no product of a weight overflows
# (float32's too): 1e-300:1e300 was NumPy's warnings on stderr and a diverged run.
WEIGHT_BOUNDS, WEIGHT_RATIO = (1e-6, 1e6), 1e6


def problem(key: str, value) -> str | None:
    """Why `value` cannot be used for `key`, or None when it can."""
    if key in AUTO and value == "auto":
        return None
    return _CHECKS[KINDS.get(key, type(DEFAULTS[key]))](key, value)


def _list_problem(key: str, value) -> str | None:
    if not isinstance(value, list) or not value or len(value) > 100:
        return f"must be a non-empty list of at most 100 numbers, got {value!r}"[:200]
    return next((problem(LISTS[key], v) for v in value if problem(LISTS[key], v)), None)


def _number_problem(key: str, value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number{' or auto' if key in AUTO else ''}, got {value!r}"
    return _rule(NUMBER_RULES, key, value)


def _integer_problem(key: str, value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer, got {value!r}"
    low, high = LIMITS[key]
    if value < low:
        return f"must be {'at least 0' if low == 0 else 'a positive integer'}, got {value}"
    if high is not None and value > high:
        return f"must be at most {high}, got {value}"
    return None


def _text_problem(key: str, value) -> str | None:
    if not isinstance(value, str) or (not value and key != "scheduler"):
        return f"must be a non-empty string, got {value!r}"
    if key in CHOICES and value not in CHOICES[key]:
        return f"must be one of {', '.join(CHOICES[key])}, got {value!r}"
    return _rule(TEXT_RULES, key, value)


def _rule(rules: dict, key: str, value) -> str | None:
    """The message of `key`'s rule when `value` breaks it (None: no rule, or kept)."""
    if key not in rules or rules[key][0](value):
        return None
    low, high = WEIGHT_BOUNDS
    return rules[key][1].format(value, low=f"{low:g}", high=f"{high:g}",
                                ratio=f"{WEIGHT_RATIO:g}")


def storage_problem(value) -> str | None:
    """Why `value` is not a table of storage options (names, and scalar values)."""
    if not isinstance(value, dict) or len(value) > 64:
        return f"must be a table of at most 64 fsspec options, got {type(value).__name__}"
    for name, v in value.items():
        if not (isinstance(name, str) and name.isidentifier()):
            return f"has an option named {str(name)[:40]!r}, not a name such as endpoint_url"
        if not isinstance(v, (str, int, float, bool)):
            return f"option {name} must be a string, number or boolean (a TOML scalar)"
    return None


_CHECKS = {dict: lambda key, value: storage_problem(value), list: _list_problem,
           float: _number_problem, int: _integer_problem, str: _text_problem}


def parse_storage_options(pairs) -> dict:
    """['endpoint_url=http://h:9000', 'anon=true'] -> {'endpoint_url': 'http://h:9000',
    'anon': True}: each VALUE a TOML scalar (number, boolean, "quoted string") when it reads
    as one, else the text itself. A pair without '=' is one line (its value not shown)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    out = {}
    for pair in pairs:
        name, sep, text = str(pair).partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"--storage-option takes KEY=VALUE (e.g. endpoint_url=http://"
                             f"host:9000), got {name[:40] if sep else 'no KEY=VALUE'!r}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except (tomllib.TOMLDecodeError, RecursionError):
            value = text
        out[name] = value if isinstance(value, (str, int, float, bool)) else text
    return out


def saved(cfg: dict) -> dict:
    """The config a model file and a run folder keep: storage options dropped (values may be
    keys and secrets; eval and --resume take them again from the flags or the config)."""
    return {k: v for k, v in cfg.items() if k != "storage_options"}


def parse_class_weight(text: str):
    """'none' -> None; 'balanced' -> 'balanced'; '1:3' -> {0: 1.0, 1: 3.0}; False when it is
    none of those."""
    text = str(text).strip().lower()
    if text in ("none", ""):
        return None
    if text == "balanced":
        return "balanced"
    try:
        neg, pos = (float(v) for v in text.split(":"))
    except ValueError:
        return False
    return False if weights_problem(neg, pos) else {0: neg, 1: pos}


def parse_target(text: str):
    """What --threshold auto aims for: 'f1' -> ('f1', None); 'precision=0.9' ->
    ('precision', 0.9), 'recall=0.9' likewise; None when it is none of those (X from 0,
    exclusive, to 1)."""
    name, sep, value = str(text).strip().lower().partition("=")
    if name == "f1" and not sep:
        return "f1", None
    if name not in ("precision", "recall") or not sep:
        return None
    try:
        goal = float(value)
    except ValueError:
        return None
    return (name, goal) if 0 < goal <= 1 else None


def weights_problem(*weights) -> str | None:
    """Why these class weights cannot be used (not finite, outside WEIGHT_BOUNDS, or one
    over WEIGHT_RATIO times another), or None: the one rule of the CLI and the library."""
    low, high = WEIGHT_BOUNDS
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
               and low <= w <= high for w in weights):
        return f"each weight must be from {low:g} to {high:g}"
    if max(weights) > WEIGHT_RATIO * min(weights):
        return f"a weight may be at most {WEIGHT_RATIO:g} times another"
    return None


def parse_address(text: str) -> tuple[str, str, int] | None:
    """'tcp://10.0.0.5:8786' (or '10.0.0.5:8786', tls://, [IPv6]) -> (scheme, host, port);
    None when it is not a Dask scheduler's address."""
    import re

    match = re.fullmatch(r"(?:(tcp|tls)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]{1,253}):(\d{1,5})",
                         str(text).strip())
    if not match or not 0 < int(match.group(3)) < 65536:
        return None
    return match.group(1) or "tcp", match.group(2).strip("[]"), int(match.group(3))


def parse_memory(text: str) -> int | None:
    """'512MB' -> bytes (MB and GB are 2**20 and 2**30; KB too); None when not a size."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG])i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        return None
    size = float(match.group(1)) * {"K": 2**10, "M": 2**20, "G": 2**30}[match.group(2).upper()]
    return int(size) if size >= 1 else None


def read_toml(path) -> dict:
    """The settings in a TOML file (flat keys, or under a [catlr] table), checked."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):
        raise CatlrError(f"config file {path} is not a regular file, give a .toml file")
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_CONFIG_BYTES + 1)
        if len(text) > MAX_CONFIG_BYTES:
            raise CatlrError(f"config file {path} is over {MAX_CONFIG_BYTES // 1024} KB, a "
                             "config holds a few settings (configs/default.toml shows them)")
        data = tomllib.loads(text.decode("utf-8"))
    except FileNotFoundError:
        raise CatlrError(f"config file {path} not found, check the path "
                         "(configs/default.toml shows every key)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:
        raise CatlrError(f"config file {path} cannot be read ({type(e).__name__}: "
                         f"{str(e)[:80]}), fix its TOML syntax") from None
    data = data.get("catlr", data)
    if not isinstance(data, dict):
        raise CatlrError(f"config file {path}: [catlr] must be a table of settings, got "
                         f"{type(data).__name__}, see configs/default.toml")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise CatlrError(f"config file {path} has unknown key {', '.join(map(repr, unknown))}, "
                         f"valid keys are {', '.join(DEFAULTS)}")
    for key, value in data.items():
        data[key] = value = _widen(key, value)
        why = problem(key, value)
        if why:
            raise CatlrError(f"config file {path}: {key} {why}, fix it in the file")
    return data


def _widen(key, value):
    """TOML's 1 where a float is expected is 1.0 (also inside a list of rates)."""
    if KINDS.get(key, type(DEFAULTS[key])) is float and isinstance(value, int) and \
            not isinstance(value, bool):
        return float(value)
    if isinstance(DEFAULTS[key], list) and isinstance(value, list):
        return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


def resolve(config_file=None, **flags) -> dict:
    """Defaults, then the config file, then every flag that is not None."""
    cfg = dict(DEFAULTS)
    if config_file is not None:
        cfg.update(read_toml(config_file))
    for key, value in flags.items():
        if value is None:
            continue
        if key not in DEFAULTS:
            raise UsageError(f"unknown setting {key!r}, valid ones are {', '.join(DEFAULTS)}")
        if key in AUTO and isinstance(value, str) and value != "auto":
            try:  # the flag takes "auto" or a number
                value = KINDS.get(key, float)(value)
            except ValueError:
                pass
        if isinstance(DEFAULTS[key], dict) and isinstance(value, (list, tuple)):
            value = {**cfg[key], **parse_storage_options(value)}  # over the config file's
        value = _widen(key, value)
        why = problem(key, value)
        if why:
            raise UsageError(f"{flag_name(key) if key in FLAGS else '--' + key} {why}")
        cfg[key] = value
    return recording(cfg)


def print_every(iters: int) -> int:
    """The recording interval of print_every = auto: the course's 100 up to 2000 iterations
    (its 20 lines), else iters / 20 rounded up to 1, 2 or 5 times a power of ten, so a long
    run prints about 20 cost lines, never more (3,000,000 iterations: every 200,000)."""
    if iters <= 2000:
        return 100
    power = 10 ** (len(str(-(-iters // 20))) - 1)
    return next(k * power for k in (1, 2, 5, 10) if k * power * 20 >= iters)


def recording(cfg: dict) -> dict:
    """cfg with print_every = auto made a number for its iters: the one place it is decided,
    so the run folder, the model file and a resume keep the grid that was printed."""
    if cfg.get("print_every") == "auto":
        cfg = {**cfg, "print_every": print_every(int(cfg["iters"]))}
    return cfg


def from_saved(saved) -> dict:
    """A config saved in a model file, as a resolved config: old names read, bad values
    and unknown keys dropped (a file from another version or a hostile one)."""
    saved = saved if isinstance(saved, dict) else {}
    saved = {RENAMED.get(k, k): v for k, v in saved.items()}
    return recording({**DEFAULTS, **{k: v for k, v in saved.items()
                                     if k in DEFAULTS and not problem(k, v)}})

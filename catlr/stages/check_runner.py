"""The child process of `catlr check`: runs a learner's functions, one at a time, in isolation.

Run as its own `python -I` process (check._run starts it), never imported by catlr's: the
code it runs is the learner's. It reads one JSON document on stdin (the notebook's cells,
which top-level statements to run, the limits; check.py writes it), and writes one JSON
document on stdout: for the flattening and each graded function, passed or the first
divergence from catlr.course (which output, expected and found, on which input) and the
known mistake it matches. Before any of the learner's code runs:
  - its memory is limited (RLIMIT_AS) and its CPU time (RLIMIT_CPU); every call (and the
    flattening's statements) is stopped after `call_seconds` by a timer;
  - modules it imports that are not installed (lr_utils, public_tests, ...) are stubs, so
    the course's imports succeed without its files; lr_utils.load_dataset gives random
    images of the course's shapes;
  - its prints go nowhere (the answer has stdout to itself) and stdin is empty.
Only imports, function and class definitions, and the flattening and normalising
assignments of the notebook run: not its data, training or plotting cells.

Isolation: while one graded function is checked, every other graded name is catlr.course's
(wrapped to record how it was called), so a wrong propagate fails propagate alone, not
optimize and model with it.
"""

from __future__ import annotations

import ast
import copy
import importlib.abc
import importlib.machinery
import io
import json
import os
import resource
import signal
import sys
import traceback
import warnings

import numpy as np

from catlr import course

GRADED = ("sigmoid", "initialize_with_zeros", "propagate", "optimize", "predict", "model")
# the notebook's data, as its data cells name it: decoys of the course's shapes while a
# function is checked (a function that reads them instead of its arguments gets them)
DATA = ("train_set_x_orig", "train_set_y", "test_set_x_orig", "test_set_y", "classes")
SHAPES = {"train": 209, "test": 50, "px": 64}  # the course's files
RTOL, ATOL = 1e-6, 1e-9


class Overtime(BaseException):
    """A call ran past its time (BaseException: `except Exception` in their code lets it by)."""


def _overtime(signum, frame):
    raise Overtime()


# ---------------------------------------------------------------- stubs for missing modules

class _Missing:
    """What a stub module hands out for any name: calling it says the module is absent."""

    def __init__(self, name):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise ModuleNotFoundError(f"{self._name} is a stand-in: its module is not installed "
                                  "here (catlr check runs the notebook's functions only)")

    def __getattr__(self, name):
        return _Missing(f"{self._name}.{name}")


def _load_dataset(*args, **kwargs):
    """lr_utils.load_dataset's five arrays, random, of the course's shapes and types."""
    rng = np.random.default_rng(0)
    px, m, t = SHAPES["px"], SHAPES["train"], SHAPES["test"]
    return (rng.integers(0, 256, (m, px, px, 3), dtype=np.uint8),
            rng.integers(0, 2, (1, m)), rng.integers(0, 256, (t, px, px, 3), dtype=np.uint8),
            rng.integers(0, 2, (1, t)), np.array([b"non-cat", b"cat"]))


class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: a module the notebook imports (`names`, top-level packages)
    that no other finder has becomes a stub. Only those: a library's own optional imports
    still fail as it expects."""

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__all__ = []  # `from public_tests import *` imports nothing
        module.__path__ = []
        module.__getattr__ = lambda name: _Missing(f"{module.__name__}.{name}")
        if module.__name__ == "lr_utils":
            module.load_dataset = _load_dataset


# ---------------------------------------------------------------- running their code

def _where(tb) -> list | None:
    """[cell, line] of the innermost frame of the learner's code in a traceback."""
    found = None
    for frame in traceback.extract_tb(tb):
        if frame.filename.startswith("<cell "):
            found = [int(frame.filename[6:-1]), frame.lineno]
    return found


def _failure(kind, **info) -> dict:
    return {"kind": kind, **info}


class Runner:
    def __init__(self, job):
        self.seconds = float(job["call_seconds"])
        self.trees = {c["number"]: ast.parse(c["code"]) for c in job["cells"] if c["parses"]}
        self.ns = {"__name__": "__main__", "__builtins__": __builtins__}

    def code(self, picks, filename_cell=None):
        """The chosen top-level statements [(cell, index)], compiled per cell with their lines."""
        out = []
        for cell, index in picks:
            body = [self.trees[cell].body[i] for i in ([index] if isinstance(index, int)
                                                         else index)]
            out.append(compile(ast.Module(body=body, type_ignores=[]), f"<cell {cell}>", "exec"))
        return out

    def timed(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) within the time limit: (result, None) or (None, failure)."""
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            return fn(*args, **kwargs), None
        except Overtime as e:
            return None, _failure("timeout", seconds=self.seconds, where=_where(e.__traceback__))
        except MemoryError as e:
            return None, _failure("memory", where=_where(e.__traceback__))
        except RecursionError as e:
            return None, _failure("error", error=f"RecursionError: {_text(e)}",
                                  where=_where(e.__traceback__))
        except BaseException as e:  # noqa: BLE001 (SystemExit, KeyboardInterrupt: their code's)
            return None, _failure("error", error=f"{type(e).__name__}: {_text(e)}",
                                  where=_where(e.__traceback__))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def define(self, picks) -> list:
        """Run the imports and definitions; a failure of each is kept (not fatal)."""
        problems = []
        for (cell, index), code in zip(picks, self.code(picks)):
            _, failure = self.timed(exec, code, self.ns)
            if failure:
                problems.append(dict(failure, cell=cell))
        return problems


def _text(e) -> str:
    return str(e).splitlines()[0][:300] if str(e) else ""


def short(a) -> str:
    """A value as a learner reads it: an array's numbers (cut), a number to 6 places."""
    if isinstance(a, np.ndarray):
        if a.ndim == 0:
            return f"array({short(a[()])})"
        text = np.array2string(a, precision=6, threshold=8, edgeitems=2, separator=", ",
                               max_line_width=10_000)
        return " ".join(text.split()) + (f" (shape {a.shape})" if a.size > 8 else "")
    if isinstance(a, (bool, np.bool_)):
        return str(bool(a))
    if isinstance(a, (float, np.floating)):
        return f"{float(a):.6g}"
    if isinstance(a, (list, tuple)) and len(a) > 4:
        return "[" + ", ".join(short(x) for x in a[:3]) + f", ... ({len(a)} items)]"
    if isinstance(a, (list, tuple)):
        return ("[" if isinstance(a, list) else "(") + ", ".join(short(x) for x in a) + (
            "]" if isinstance(a, list) else ")")
    return repr(a)[:200]


def kind(a) -> str:
    """A value's type as the course names it: 'a numpy array of shape (2, 1)', 'the int 0'."""
    if isinstance(a, np.ndarray):
        return f"a numpy array of shape {a.shape}"
    if isinstance(a, bool):
        return f"the bool {a}"
    if isinstance(a, int):
        return f"the int {a}"
    if isinstance(a, np.generic):
        return f"a numpy {type(a).__name__}"
    if isinstance(a, float):
        return "a Python float"
    return f"a {type(a).__name__}"


# ---------------------------------------------------------------- comparing outputs

def _close(found, expected) -> bool:
    try:
        f = np.asarray(found, dtype=np.float64)
        e = np.asarray(expected, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return f.shape == e.shape and bool(np.allclose(f, e, rtol=RTOL, atol=ATOL, equal_nan=True))


def _number(a, zero_d=True) -> bool:
    if isinstance(a, (bool, np.bool_)):
        return False
    if isinstance(a, (int, float, np.integer, np.floating)):
        return True
    return zero_d and isinstance(a, np.ndarray) and a.ndim == 0 and a.dtype.kind in "iuf"


def _as_array(found, expected, spec):
    if not isinstance(found, np.ndarray):
        return f"it is {kind(found)}, expected {kind(expected)}"
    if found.shape != expected.shape:
        return f"its shape is {found.shape}, expected {expected.shape}"
    if spec == "array" and found.dtype.kind not in "fc":
        return f"it holds {found.dtype} numbers, expected floats"
    return None if _close(found, expected) else "value"


def _like_input(found, expected, spec):  # sigmoid: an array for an array, a number for a number
    if isinstance(expected, np.ndarray) and expected.ndim > 0:
        return compare(found, expected, "array")
    if not _number(found):
        return f"it is {kind(found)}, expected a number"
    return None if _close(found, expected) else "value"


def _scalar(found, expected, spec):  # scalar0: a 0-d array is fine too (the course's cost)
    if not _number(found, zero_d=spec == "scalar0"):
        return f"it is {kind(found)}, expected a number ({kind(expected)})"
    return None if _close(found, expected) else "value"


def _python_float(found, expected, spec):  # the course's test: type(b) == float
    if type(found) is not float:
        return f"it is {kind(found)}, expected a Python float"
    return None if found == expected else "value"


def _list(found, expected, spec):
    if not isinstance(found, list):
        return f"it is {kind(found)}, expected a list"
    if len(found) != len(expected):
        return f"it has {len(found)} items, expected {len(expected)}"
    odd = [item for item in found if not _number(item)]
    if odd:
        return f"an item is {kind(odd[0])}, expected numbers"
    return None if _close(found, expected) else "value"


COMPARE = {"array": _as_array, "labels": _as_array, "like_input": _like_input,
           "scalar": _scalar, "scalar0": _scalar, "float": _python_float, "list": _list,
           "same": lambda found, expected, spec: None if (found == expected) is True
           else "value"}


def compare(found, expected, spec):
    """None when found is what the course gives, else (what is wrong, in words); `spec`
    names the check (COMPARE)."""
    return COMPARE[spec](found, expected, spec)


# ---------------------------------------------------------------- the cases

def _f(a):
    return np.array(a, dtype=np.float64)


def _random(seed, n, m, b=None):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.5, (n, 1)), float(rng.normal(0, 1) if b is None else b),
            rng.normal(0, 1, (n, m)), rng.integers(0, 2, (1, m)))


def _describe(**named) -> str:
    return ", ".join(f"{k} = {short(v)}" if not (isinstance(v, np.ndarray) and v.size > 6)
                     else f"{k} of shape {v.shape}" for k, v in named.items())


def cases(name):
    """[(words, args, kwargs)] for a function: the notebook's and the public tests' inputs
    first, then random shapes and values."""
    if name == "sigmoid":
        return [("the notebook's example", (_f([0, 2]),), {}),
                ("the public tests' input", (_f([0.5, 0, 2.0]),), {}),
                ("a single number", (1.0,), {}),
                ("random values", (np.random.default_rng(1).normal(0, 4, (3, 5)),), {})]
    if name == "initialize_with_zeros":
        return [("the notebook's example", (2,), {}), ("the public tests' input", (3,), {}),
                ("the public tests' input", (4,), {}), ("another size", (7,), {})]
    if name == "propagate":
        return [("the notebook's example", (_f([[1.], [2.]]), 1.5, _f([[1., -2., -1.],
                 [3., 0.5, -3.2]]), np.array([[1, 1, 0]])), {}),
                ("the public tests' input", (_f([[1.], [2.], [-1]]), 2.5,
                 _f([[1., 2., -1., 0], [3., 4., -3.2, 1], [3., 4., -3.2, -3.5]]),
                 np.array([[1, 1, 0, 0]])), {}),
                ("random values", _random(2, 5, 9), {})]
    if name == "optimize":
        return [("the notebook's example", (_f([[1.], [2.]]), 1.5, _f([[1., -2., -1.],
                 [3., 0.5, -3.2]]), np.array([[1, 1, 0]])),
                 {"num_iterations": 100, "learning_rate": 0.009, "print_cost": False}),
                ("the public tests' input", (_f([[1.], [2.]]), 2., _f([[1., 2., -1.],
                 [3., 4., -3.2]]), np.array([[1, 0, 1]])),
                 {"num_iterations": 101, "learning_rate": 0.1, "print_cost": False}),
                ("random values", _random(3, 4, 6),
                 {"num_iterations": 250, "learning_rate": 0.05, "print_cost": False})]
    if name == "predict":
        w, b, X, _ = _random(4, 3, 40, b=1.7)
        return [("the notebook's example", (_f([[0.1124579], [0.23106775]]), -0.3,
                 _f([[1., -1.1, -3.2], [1.2, 2., 0.1]])), {}),
                ("the public tests' input", (_f([[0.3], [0.5], [-0.2]]), -0.33333,
                 _f([[1., -0.3, 1.5], [2, 0, 1], [0, -1.5, 2]])), {}),
                ("random values with a large b", (w, b, X), {}),
                ("w = 0 and b = 0 (every probability exactly 0.5)",
                 (np.zeros((3, 1)), 0.0, X[:, :4]), {})]
    if name == "model":
        rng = np.random.default_rng(5)
        return [("the public tests' input", (rng.normal(0, 1, (4, 7)),
                 np.array([[1, 0, 0, 1, 0, 1, 0]]), rng.normal(0, 1, (4, 3)),
                 np.array([[0, 1, 0]])), {"num_iterations": 50, "learning_rate": 0.01}),
                ("random values, as many test as training examples",
                 (rng.normal(0, 1, (5, 6)), np.array([[1, 0, 1, 1, 0, 0]]),
                  rng.normal(0, 1, (5, 6)), np.array([[0, 0, 1, 1, 1, 0]])),
                 {"num_iterations": 120, "learning_rate": 0.05})]
    raise ValueError(name)


ARGS = {"sigmoid": ("z",), "initialize_with_zeros": ("dim",),
        "propagate": ("w", "b", "X", "Y"), "optimize": ("w", "b", "X", "Y"),
        "predict": ("w", "b", "X"), "model": ("X_train", "Y_train", "X_test", "Y_test")}


def _case_text(name, words, args, kwargs) -> str:
    given = dict(zip(ARGS[name], args))
    given.update({k: v for k, v in kwargs.items() if k != "print_cost"})
    return f"{words} ({_describe(**given)})"


# the outputs of each function, in the order they are compared: (label, how to get it, spec)
OUTPUTS = {
    "sigmoid": [("sigmoid(z)", lambda o: o, "like_input")],
    "initialize_with_zeros": [("w", lambda o: o[0], "array"), ("b", lambda o: o[1], "float")],
    "propagate": [('grads["dw"]', lambda o: o[0]["dw"], "array"),
                  ('grads["db"]', lambda o: o[0]["db"], "scalar"),
                  ("cost", lambda o: o[1], "scalar0")],
    "optimize": [('params["w"]', lambda o: o[0]["w"], "array"),
                 ('params["b"]', lambda o: o[0]["b"], "scalar0"),
                 ('grads["dw"]', lambda o: o[1]["dw"], "array"),
                 ('grads["db"]', lambda o: o[1]["db"], "scalar0"),
                 ("costs", lambda o: o[2], "list")],
    "predict": [("Y_prediction", lambda o: o, "labels")],
    "model": [('d["Y_prediction_test"]', lambda o: o["Y_prediction_test"], "labels"),
              ('d["Y_prediction_train"]', lambda o: o["Y_prediction_train"], "labels"),
              ('d["w"]', lambda o: o["w"], "array"), ('d["b"]', lambda o: o["b"], "scalar0"),
              ('d["costs"]', lambda o: o["costs"], "list"),
              ('d["learning_rate"]', lambda o: o["learning_rate"], "same"),
              ('d["num_iterations"]', lambda o: o["num_iterations"], "same")],
}
SHAPE_OF = {"initialize_with_zeros": (tuple, 2), "propagate": (tuple, 2),
            "optimize": (tuple, 3), "model": (dict, None)}


def _unchanged(before, after) -> bool:
    if isinstance(before, np.ndarray):
        return (isinstance(after, np.ndarray) and after.shape == before.shape
                and after.dtype == before.dtype and np.array_equal(after, before, equal_nan=True))
    return type(before) is type(after) and before == after


# ---------------------------------------------------------------- the known mistakes

def _sig(z):
    return 1 / (1 + np.exp(-z))


def _propagate_mistake(args, label, found):
    """Which known mistake of propagate gives `found` for `label`, if one does."""
    w, b, X, Y = args
    m = X.shape[1]
    A = _sig(w.T @ X + b)
    cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    dw, db = X @ (A - Y).T / m, np.sum(A - Y) / m
    if label == "cost":
        if _close(found, -cost):
            return "cost_sign"
        la, lb = np.log(A), np.log(1 - A)
        for ta, tb in ((True, True), (True, False), (False, True)):
            for sign in (-1, 1):
                mxm = sign * np.sum(Y * (la.T if ta else la) + (1 - Y) * (lb.T if tb else lb)) / m
                if _close(found, mxm):
                    return "broadcast"
        if _close(found, cost * m):
            return "cost_no_m"
    if label == 'grads["dw"]':
        if _close(found, dw.T):
            return "dw_T"
        if _close(found, dw * m) or _close(found, dw.T * m):
            return "dw_no_m"
    if label == 'grads["db"]' and _close(found, db * m):
        return "db_no_m"
    return None


def _descend(args, kwargs, sign_w, sign_b):
    """The course's loop with each update's sign given: (w, b) after it."""
    w, b, X, Y = (np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a
                  for a in args)
    m = X.shape[1]
    for _ in range(kwargs["num_iterations"]):
        A = _sig(w.T @ X + b)
        w = w + sign_w * kwargs["learning_rate"] * (X @ (A - Y).T / m)
        b = b + sign_b * kwargs["learning_rate"] * np.sum(A - Y) / m
    return w, b


def _optimize_mistake(args, kwargs, label, found):
    if label in ('params["w"]', 'params["b"]'):
        for sw, sb in ((1, 1), (1, -1), (-1, 1)):
            w, b = _descend(args, kwargs, sw, sb)
            if _close(found, w if label == 'params["w"]' else b):
                return "w_plus"
    return None


def _predict_mistake(args, found):
    w, b, X = args
    if not isinstance(found, np.ndarray) or found.shape != (1, X.shape[1]):
        return None
    A = _sig(w.T @ X + b)
    got = np.asarray(found, np.float64)
    if np.array_equal(got, course.predict(w, 0.0, X)):  # the course's rule, without b
        return "no_b"
    ones, zeros = A[got == 1], A[got == 0]
    if ones.size + zeros.size != A.size:
        return None
    if not ones.size or not zeros.size or zeros.max() < ones.min():
        return "threshold"  # a threshold all the same, not at 0.5 (or >= where > was meant)
    if ones.max() < zeros.min():
        return "threshold_swapped"
    return None


class Calls:
    """catlr.course's functions, recording how each was called (model's isolation)."""

    def __init__(self):
        self.log = []

    def wrap(self, name):
        real = getattr(course, name)

        def recorded(*args, **kwargs):
            self.log.append((name, args, kwargs))
            return real(*args, **kwargs)

        recorded.__name__ = name
        return recorded


def _model_mistake(args, kwargs, label, found, calls, decoys):
    """Why model's output differs: it ignored its arguments (the notebook's data, fixed
    settings), or scored the wrong split."""
    X_train, Y_train, X_test, _ = args
    for name, cargs, ckwargs in calls.log:
        if name != "optimize":
            continue
        given = dict(zip(("w", "b", "X", "Y", "num_iterations", "learning_rate"), cargs))
        given.update(ckwargs)
        for arg, mine in (("X", X_train), ("Y", Y_train)):
            if arg in given and not _same(given[arg], mine):
                used = next((k for k, v in decoys.items() if _same(given[arg], v)), None)
                return "globals", {"argument": arg, "global": used}
        for key in ("num_iterations", "learning_rate"):
            if key in given and given[key] != kwargs[key]:
                return "fixed", {"argument": key, "given": given[key], "passed": kwargs[key]}
    if label in ('d["Y_prediction_test"]', 'd["Y_prediction_train"]'):
        other = X_train if label == 'd["Y_prediction_test"]' else X_test
        for name, cargs, _ in calls.log:
            if name == "predict" and len(cargs) == 3 and _same(cargs[2], other) and (
                    _close(found, course.predict(cargs[0], cargs[1], other))):
                return "wrong_split", {}
    return None, {}


def _same(a, b) -> bool:
    return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
            and np.array_equal(a, b))


# ---------------------------------------------------------------- checking

def check_function(runner, name, decoys):
    """{passed, failure} for the learner's function `name`, with every other graded name
    catlr.course's."""
    ns = runner.ns
    fn = ns.get(name)
    if not callable(fn):
        return {"passed": False, "failure": _failure("missing")}
    calls = Calls()
    saved = {k: ns[k] for k in GRADED + tuple(decoys) if k in ns}
    ns.update({k: calls.wrap(k) for k in GRADED if k != name})
    ns.update({k: copy.deepcopy(v) for k, v in decoys.items()})
    try:
        for words, args, kwargs in cases(name):
            calls.log.clear()
            case = _case_text(name, words, args, kwargs)
            mine = copy.deepcopy(args), copy.deepcopy(kwargs)
            found, failure = runner.timed(fn, *mine[0], **mine[1])
            if failure and name == "model":  # from the notebook's data, say so first
                mistake, extra = _model_mistake(args, kwargs, None, None, calls, decoys)
                if mistake:
                    failure = _failure("value", output="how model calls optimize",
                                       mistake=mistake, **extra)
            if failure:
                return {"passed": False, "failure": dict(failure, case=case)}
            expected = getattr(course, name)(*copy.deepcopy(args), **copy.deepcopy(kwargs))
            failure = _compare_outputs(name, found, expected, args, kwargs, calls, decoys)
            if failure:
                return {"passed": False, "failure": dict(failure, case=case)}
            for argument, before, after in zip(ARGS[name], args, mine[0]):
                if not _unchanged(before, after):
                    return {"passed": False, "failure": _failure(
                        "changed", argument=argument, case=case,
                        mistake="in_place" if name == "optimize" else None)}
    finally:
        for k in GRADED + tuple(decoys):
            ns.pop(k, None)
        ns.update(saved)
    return {"passed": True}


def _compare_outputs(name, found, expected, args, kwargs, calls, decoys):
    shape = SHAPE_OF.get(name)
    if shape:
        kind_, n = shape
        if not isinstance(found, kind_) or (n and len(found) != n):
            what = {tuple: f"a tuple of {n}", dict: "a dict"}[kind_]
            return _failure("returns", found=kind(found), expected=what)
    for label, get, spec in OUTPUTS[name]:
        try:
            value = get(found)
        except (KeyError, IndexError, TypeError) as e:
            return _failure("returns", output=label, found=f"no {label} ({type(e).__name__}: "
                                                          f"{_text(e)})")
        wrong = compare(value, get(expected), spec)
        if wrong is None:
            continue
        mistake, extra = None, {}
        if name == "propagate":
            mistake = _propagate_mistake(args, label, value)
        elif name == "optimize":
            mistake = _optimize_mistake(args, kwargs, label, value)
        elif name == "predict":
            mistake = _predict_mistake(args, value)
        elif name == "initialize_with_zeros" and label == "b" and type(value) is int:
            mistake = "b_int"
        elif name == "model":
            mistake, extra = _model_mistake(args, kwargs, label, value, calls, decoys)
        return _failure("value" if wrong == "value" else "type", output=label,
                        expected=short(get(expected)), found=short(value),
                        problem=None if wrong == "value" else wrong, mistake=mistake, **extra)
    if name == "model":  # right outputs, but from the notebook's data or fixed settings?
        mistake, extra = _model_mistake(args, kwargs, None, None, calls, decoys)
        if mistake:
            return _failure("value", output="how model calls optimize", mistake=mistake, **extra)
    return None


def _course_data(rng, m_train, m_test, px):
    x = rng.integers(0, 256, (m_train, px, px, 3), dtype=np.uint8)
    t = rng.integers(0, 256, (m_test, px, px, 3), dtype=np.uint8)
    return {"train_set_x_orig": x, "train_set_y": rng.integers(0, 2, (1, m_train)),
            "test_set_x_orig": t, "test_set_y": rng.integers(0, 2, (1, m_test)),
            "classes": np.array([b"non-cat", b"cat"])}


def _flat(x):
    return x.reshape(x.shape[0], -1).T


def _run_all(codes, ns):
    for code in codes:
        exec(code, ns)  # noqa: S102 (the learner's statements: running them is the point)


def check_flattening(runner, job):
    """The flattening and normalising statements on random images of the course's shapes,
    then of other shapes: each against reshape(m, -1).T and / 255."""
    setup = runner.code(job["setup"])
    flatten, normalise = runner.code(job["flatten"]), runner.code(job["normalise"])
    rng = np.random.default_rng(7)
    shapes = (("images of the course's shapes (209 and 50 of 64 x 64 x 3)", (209, 50, 64)),
              ("random images of another size (13 and 5 of 7 x 7 x 3)", (13, 5, 7)))
    for words, (m_train, m_test, px) in shapes:
        data = _course_data(rng, m_train, m_test, px)
        ns = dict(runner.ns, **copy.deepcopy(data))
        _, failure = runner.timed(_run_all, setup + flatten, ns)
        if failure:
            return {"passed": False, "failure": dict(failure, case=words)}
        wrong = _flattened(ns, data, words)
        if wrong:
            return wrong
        # the normalising on the course's flattening, whatever theirs gave
        ns.update({f"{s}_set_x_flatten": _flat(data[f"{s}_set_x_orig"]) for s in ("train", "test")})
        _, failure = runner.timed(_run_all, normalise, ns)
        if failure:
            return {"passed": False, "failure": dict(failure, case=words)}
        wrong = _normalised(ns, data, words) if job["normalise"] else None
        if wrong:
            return wrong
    return {"passed": True}


def _flattened(ns, data, words):
    """The first split whose {split}_set_x_flatten is not the course's, as a failed check."""
    for split in ("train", "test"):
        x = data[f"{split}_set_x_orig"]
        name = f"{split}_set_x_flatten"
        if name not in ns:
            continue
        found, expected = ns[name], _flat(x)
        wrong = compare(found, expected.astype(np.float64), "labels")
        if not wrong:
            continue
        mistake, label = None, name
        if isinstance(found, np.ndarray) and (
                found.shape == (x.shape[0], expected.shape[0]) or (
                found.shape == expected.shape and np.array_equal(
                    found, x.reshape(-1, x.shape[0])))):
            mistake = "flatten_no_T"
        if wrong == "value":  # as the notebook's own check: the second image's pixels
            label = f"{name}[0:5, 1] (the first pixels of the second image)"
            expected, found = expected[0:5, 1], found[0:5, 1]
        return {"passed": False, "failure": _failure(
            "value" if wrong == "value" else "type", output=label, case=words,
            expected=short(expected), found=short(found), problem=None if
            wrong == "value" else wrong, mistake=mistake, variable=name)}
    return None


def _normalised(ns, data, words):
    """The first split whose {split}_set_x is not the course's flattening / 255."""
    for split in ("train", "test"):
        name = f"{split}_set_x"
        if name not in ns:
            continue
        expected = _flat(data[f"{split}_set_x_orig"]) / 255.
        wrong = compare(ns[name], expected, "array")
        if wrong:
            return {"passed": False, "failure": _failure(
                "value" if wrong == "value" else "type", output=name, case=words,
                expected=short(expected), found=short(ns[name]),
                problem=None if wrong == "value" else wrong, mistake=None)}
    return None


def _decoys() -> dict:
    """The notebook's data variables, of the course's shapes, as its cells would make them."""
    data = _course_data(np.random.default_rng(11), SHAPES["train"], SHAPES["test"], SHAPES["px"])
    for split in ("train", "test"):
        data[f"{split}_set_x_flatten"] = _flat(data[f"{split}_set_x_orig"])
        data[f"{split}_set_x"] = data[f"{split}_set_x_flatten"] / 255.
    data.update(m_train=SHAPES["train"], m_test=SHAPES["test"], num_px=SHAPES["px"])
    return data


def main():
    job = json.loads(sys.stdin.read())
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # their prints, Python's and C's, go nowhere
    sys.stdin, sys.stdout = io.StringIO(), io.StringIO()
    warnings.simplefilter("ignore")  # overflow in exp and the like: numbers are compared
    np.seterr(all="ignore")
    sys.meta_path.append(_Stubs(job["imports"]))
    memory = int(job["memory"])
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ValueError, OSError):  # macOS has no limit on address space: on data, then
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    cpu = int(job["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    signal.signal(signal.SIGALRM, _overtime)
    sys.setrecursionlimit(3000)

    runner = Runner(job)
    result = {"definitions": runner.define([tuple(p) for p in job["define"]])}
    if job["flatten"]:
        result["flattening"] = check_flattening(runner, {k: [tuple(p) for p in job[k]]
                                                        for k in ("setup", "flatten",
                                                                  "normalise")})
    decoys = _decoys()
    result["functions"] = {name: check_function(runner, name, decoys) for name in job["graded"]}
    answer.write(json.dumps(result))
    answer.flush()


if __name__ == "__main__":
    main()

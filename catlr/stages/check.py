"""`catlr check`: why doesn't my notebook match? Each graded function, checked alone.

The learner's notebook (as the course ships it: lr_utils and public_tests imports, IPython
magics, data, test and plotting cells) or a .py file is read, never written. Its graded
functions (sigmoid, initialize_with_zeros, propagate, optimize, predict, model) and its
flattening and normalising assignments are taken out and run in a separate process
(check_runner.py, limited in time and memory: it is the learner's code, so it runs, but
never in catlr's process), each against catlr.course on the notebook's and the public
tests' inputs and on random shapes and values, with the other graded functions replaced
by catlr.course's: one wrong function is named once, not with everything that calls it.
Beyond what the course's grader checks: that no function changes its arguments, that
model uses its arguments (not the notebook's variables) and scores the right split, and
the types and shapes of everything returned.

For each: passed, or the first divergence (which output, expected and found, on which
input), the known mistake it matches in words, and the line of the learner's code.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from ..errors import CatlrError
from ..files.inputs import reading

GRADED = ("sigmoid", "initialize_with_zeros", "propagate", "optimize", "predict", "model")
SETUP = ("m_train", "m_test", "num_px")          # the notebook's exercise 1
FLATTEN = ("train_set_x_flatten", "test_set_x_flatten")
NORMALISE = ("train_set_x", "test_set_x")
TIMEOUT = 120          # seconds the whole check may take (the child is killed after)
CALL_SECONDS = 10      # one call of a learner's function, stopped after this
MEMORY = 2 << 30       # bytes of address space the child may map (RLIMIT_AS)
MAX_BYTES = 64 << 20   # a notebook larger than this is not the course's
# Cell magics whose body is not Python: the cell is skipped whole.
OTHER_LANGUAGES = ("%%bash", "%%sh", "%%html", "%%javascript", "%%js", "%%latex", "%%markdown",
                   "%%writefile", "%%script", "%%svg", "%%perl", "%%ruby", "%%file")

# The known mistakes, as a learner reads them.
MISTAKES = {
    "flatten_no_T": "the flattening is missing .T: X.reshape(m, -1) puts one image per row "
                    "(and X.reshape(-1, m) mixes the pixels of several images in a column); "
                    "the course wants one image per column: X.reshape(X.shape[0], -1).T",
    "b_int": "b = 0 makes b the int 0: write b = 0.0, a float (the course's test checks "
             "type(b) == float)",
    "cost_sign": "the cost has the wrong sign: it is -1/m times the sum of Y log(A) + (1 - Y) "
                 "log(1 - A), a positive number",
    "cost_no_m": "the cost is not divided by m: it is the mean over the m examples",
    "broadcast": "a (1, m) row times a (m, 1) column with * broadcasts to an m x m matrix, "
                 "and np.sum adds all m x m products: multiply element by element without the "
                 ".T (Y * np.log(A)), or use np.dot(Y, np.log(A).T)",
    "dw_T": "dw is transposed: it must have w's shape (n_x, 1), dw = np.dot(X, (A - Y).T) / m",
    "dw_no_m": "dw is not divided by m: dw = np.dot(X, (A - Y).T) / m",
    "db_no_m": "db is not divided by m: db = np.sum(A - Y) / m",
    "w_plus": "the update adds the gradient: w = w - learning_rate * dw and b = b - "
              "learning_rate * db go down the cost, + goes up it",
    "in_place": "w -= learning_rate * dw changes the array the caller passed in (in place): "
                "the course's grader does not notice, but after optimize(w, ...) the caller's "
                "w is the trained one. Keep w = copy.deepcopy(w) at the top of optimize, or "
                "write w = w - learning_rate * dw",
    "no_b": "predict leaves out b: A = sigmoid(np.dot(w.T, X) + b)",
    "threshold": "the wrong threshold: the course predicts 1 when the probability is above 0.5 "
                 "(A[0, i] > 0.5), else 0",
    "threshold_swapped": "1 and 0 are swapped: the course predicts 1 when the probability is "
                         "above 0.5, else 0",
    "wrong_split": "model scores the wrong split: Y_prediction_test = predict(w, b, X_test) and "
                   "Y_prediction_train = predict(w, b, X_train)",
    "globals": "model uses {global} from the notebook instead of its argument {argument}: "
               "called with other data (as the grader calls it), it still trains and scores "
               "the notebook's",
    "fixed": "model gives optimize {argument}={given} whatever it is given ({passed} here): "
             "pass its own num_iterations and learning_rate on",
}


@dataclass
class Cell:
    """One cell of the notebook (a .py file is one cell): `number` counts every cell from 1,
    as a reader counts them; `code` is the source with IPython's magics blanked."""

    number: int
    source: str
    code: str
    tree: ast.Module | None = None
    error: tuple | None = None  # (line, message) when the code is not Python


def _blank_magics(source: str) -> str:
    """The cell with IPython's lines (%magic, !shell, name?) emptied, lines kept in place;
    '' for a cell in another language (%%bash, %%writefile, ...)."""
    lines = source.split("\n")
    first = lines[0].strip() if lines else ""
    if first.startswith(OTHER_LANGUAGES):
        return ""
    out = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(("%", "!")) or (stripped.endswith("?") and
                                               re.fullmatch(r"[\w.]+\?\??", stripped)):
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def read_cells(path) -> list[Cell]:
    """The code cells of a notebook (.ipynb) or a script (any other file: one cell)."""
    path = os.fspath(path)
    reading(path)
    if not os.path.isfile(path):
        raise CatlrError(f"{path} is not a file, give the notebook (.ipynb) or a .py file")
    if os.path.getsize(path) > MAX_BYTES:
        raise CatlrError(f"{path} is over {MAX_BYTES >> 20} MB, not the course's notebook: "
                         "give the notebook (.ipynb) or a .py file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CatlrError(f"{path} is not UTF-8 text, give the notebook (.ipynb) or a .py "
                         "file") from None
    if path.endswith(".ipynb"):
        try:
            doc = json.loads(text)
            raw = [c for c in doc["cells"] if isinstance(c, dict)]
        except (ValueError, KeyError, TypeError):
            raise CatlrError(f"{path} is not a Jupyter notebook (no cells in its JSON), save "
                             "it from Jupyter again or give a .py file") from None
        sources = [(i, c.get("source", "")) for i, c in enumerate(raw, 1)
                   if c.get("cell_type") == "code"]
    else:
        sources = [(1, text)]
    cells = []
    for number, source in sources:
        source = "".join(source) if isinstance(source, list) else str(source)
        cell = Cell(number, source, _blank_magics(source))
        try:
            cell.tree = ast.parse(cell.code)
        except SyntaxError as e:
            cell.error = (e.lineno or 1, e.msg)
        cells.append(cell)
    return cells


# ---------------------------------------------------------------- what runs

def _targets(stmt) -> set:
    """The names a top-level assignment binds."""
    found = set()
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    for t in targets:
        for node in ast.walk(t) if t is not None else ():
            if isinstance(node, ast.Name):
                found.add(node.id)
    return found


@dataclass
class Plan:
    """Which top-level statements the child runs: [(cell, index)] each."""

    define: list
    setup: list
    flatten: list
    normalise: list
    graded: dict        # name -> (cell, def node): the definition that counts (the last)
    broken: dict        # name -> cell whose code does not parse but holds its def
    variables: set      # names the notebook's own top-level code assigns


def plan(cells: list[Cell]) -> Plan:
    p = Plan([], [], [], [], {}, {}, set())
    for cell in cells:
        if cell.tree is None:
            for name in GRADED:
                if re.search(rf"^\s*def\s+{name}\s*\(|GRADED FUNCTION:\s*{name}\b", cell.code,
                             re.MULTILINE):
                    p.broken[name] = cell
            continue
        for i, stmt in enumerate(cell.tree.body):
            if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef,
                                 ast.AsyncFunctionDef, ast.ClassDef)):
                p.define.append((cell.number, i))
                if isinstance(stmt, ast.FunctionDef) and stmt.name in GRADED:
                    p.graded[stmt.name] = (cell, stmt)
                    p.broken.pop(stmt.name, None)
                continue
            names = _targets(stmt) if isinstance(stmt, (ast.Assign, ast.AnnAssign,
                                                        ast.AugAssign)) else set()
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    p.variables.add(node.id)
            if names & set(FLATTEN):
                p.flatten.append((cell.number, i))
            elif names & set(NORMALISE):
                p.normalise.append((cell.number, i))
            elif names and names <= set(SETUP):
                p.setup.append((cell.number, i))
    return p


# ---------------------------------------------------------------- where in their code

def _in_loop(fn, target) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, (ast.For, ast.While)) and any(n is target for n in ast.walk(node)):
            return True
    return False


def _assignments(fn, name: str) -> list:
    """Statements of fn that bind or change `name` (x = ..., x[...] = ..., x += ..., x.append)."""
    found = []
    for node in ast.walk(fn):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                base = t.value if isinstance(t, ast.Subscript) else t
                if isinstance(base, ast.Name) and base.id == name or (
                        isinstance(t, ast.Tuple) and any(isinstance(e, ast.Name) and
                                                         e.id == name for e in t.elts)):
                    found.append(node)
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
              and isinstance(node.value.func, ast.Attribute)
              and isinstance(node.value.func.value, ast.Name)
              and node.value.func.value.id == name and node.value.func.attr == "append"):
            found.append(node)
    return sorted(found, key=lambda n: n.lineno)


def _best(fn, name: str):
    """The assignment of `name` that computes it (in the loop, with arithmetic), not one
    that copies or reshapes it (copy.deepcopy(w), np.squeeze(cost))."""
    def score(node):
        value = getattr(node, "value", None)
        s = 2 if _in_loop(fn, node) else 0
        if value is not None and any(isinstance(n, (ast.BinOp, ast.Compare))
                                     for n in ast.walk(value)):
            s += 1
        if (isinstance(value, ast.Call) and len(value.args) == 1
                and any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(value))
                and not any(isinstance(n, ast.BinOp) for n in ast.walk(value))):
            s -= 3
        return s

    found = _assignments(fn, name)
    return max(found, key=score) if found else None   # max keeps the first of equals


def _output_line(fn, path) -> int | None:
    """The line where an output is computed: follow the return value through the names and
    dicts it is built from (grads -> {"dw": dw} -> dw = ...)."""
    returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]
    if not returns:
        return None
    node = max(returns, key=lambda n: n.lineno)
    expr, line = node.value, node.lineno
    for step in list(path) + [None]:
        expr, line, lost = _follow(fn, expr, line)
        if lost or step is None:
            return line
        expr = _part(expr, step)
        if expr is None:
            return line
    return line


def _follow(fn, expr, line):
    """(expression, line, lost): from a name to the value its best assignment gives, a few
    names deep; lost when a name has no assignment (its line is then where it was read)."""
    for _ in range(4):  # names that name names
        if not isinstance(expr, ast.Name):
            break
        stmt = _best(fn, expr.id)
        if stmt is None:
            return expr, line, True
        line = stmt.lineno
        expr = getattr(stmt, "value", None)
        if isinstance(stmt, ast.Assign) and not isinstance(stmt.targets[0], ast.Name):
            break  # x[...] = value: the value is not x
    return expr, line, False


def _part(expr, step):
    """The element `step` (a tuple's index, a dict literal's key) of an expression, or None."""
    if isinstance(step, int) and isinstance(expr, ast.Tuple) and step < len(expr.elts):
        return expr.elts[step]
    if isinstance(step, str) and isinstance(expr, ast.Dict):
        return next((v for k, v in zip(expr.keys, expr.values)
                     if isinstance(k, ast.Constant) and k.value == step), None)
    return None


PATHS = {  # (function, output) -> where in the return value it is
    ("sigmoid", "sigmoid(z)"): (), ("initialize_with_zeros", "w"): (0,),
    ("initialize_with_zeros", "b"): (1,), ("propagate", 'grads["dw"]'): (0, "dw"),
    ("propagate", 'grads["db"]'): (0, "db"), ("propagate", "cost"): (1,),
    ("optimize", 'params["w"]'): (0, "w"), ("optimize", 'params["b"]'): (0, "b"),
    ("optimize", 'grads["dw"]'): (1, "dw"), ("optimize", 'grads["db"]'): (1, "db"),
    ("optimize", "costs"): (2,), ("predict", "Y_prediction"): (),
}


def _first(fn, test):
    nodes = sorted((n for n in ast.walk(fn) if hasattr(n, "lineno") and test(n)),
                   key=lambda n: (n.lineno, n.col_offset))
    return nodes[0].lineno if nodes else None


def _reads(fn, names) -> list:
    """(name, line) of each read in fn of a name the notebook's top-level code assigns and
    fn neither takes nor binds itself."""
    own = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    own |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and
            isinstance(n.ctx, (ast.Store, ast.Del))}
    return sorted(((n.id, n.lineno) for n in ast.walk(fn) if isinstance(n, ast.Name)
                   and isinstance(n.ctx, ast.Load) and n.id in names and n.id not in own),
                  key=lambda r: r[1])


def _product_with_transpose(fn):
    return _first(fn, lambda n: isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult)
                  and any(isinstance(s, ast.Attribute) and s.attr == "T"
                          for s in (n.left, n.right)))


def _compared_with_a_number(fn):
    return _first(fn, lambda n: isinstance(n, ast.Compare) and any(
        isinstance(c, ast.Constant) and isinstance(c.value, (int, float))
        for c in [n.left, *n.comparators]))


def _a_assigned(fn):
    stmt = _best(fn, "A")
    return stmt.lineno if stmt is not None else None


def _optimize_called(fn):
    return _first(fn, lambda n: isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                  and n.func.id == "optimize")


def _changed_in_place(fn, argument):
    """The first line that changes an argument's array in place (x -= ..., x[...] = ...)."""
    changes = [n for n in _assignments(fn, argument)
               if isinstance(n, ast.AugAssign) or (isinstance(n, ast.Assign) and
                                                  isinstance(n.targets[0], ast.Subscript))]
    return changes[0].lineno if changes else None


# where a known mistake shows in the code, when it can be seen there; else the output's line
SHOWN_AT = {"broadcast": _product_with_transpose, "threshold": _compared_with_a_number,
            "threshold_swapped": _compared_with_a_number, "no_b": _a_assigned}


def _mistake_line(fn, name, failure, variables) -> int | None:
    mistake, output = failure.get("mistake"), failure.get("output")
    if failure.get("where"):
        return None  # the traceback's line is the one
    line = SHOWN_AT[mistake](fn) if mistake in SHOWN_AT else None
    if line:
        return line
    if failure["kind"] == "changed":
        return _changed_in_place(fn, failure["argument"])
    if mistake in ("globals", "fixed"):
        reads = _reads(fn, variables) if mistake == "globals" else []
        used = [line for n, line in reads if n == failure.get("global")] or [r[1] for r in reads]
        return used[0] if used else _optimize_called(fn)
    if name == "model" and output and output.startswith('d["'):
        return _output_line(fn, (output[3:-2],))
    if (name, output) in PATHS:
        return _output_line(fn, PATHS[(name, output)])
    return None


# ---------------------------------------------------------------- the findings

def _line_info(cells_by_number, cell_number, line, script: bool) -> dict | None:
    cell = cells_by_number.get(cell_number)
    if cell is None or line is None:
        return None
    lines = cell.source.split("\n")
    code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    where = f"line {line}" if script else f"cell {cell_number}, line {line}"
    return {"cell": None if script else cell_number, "line": line, "code": code, "where": where}


def _words(name: str, f: dict) -> str:
    """The divergence of a failure, in a sentence (without the mistake and the line)."""
    case = f.get("case")
    on = f", on {case}" if case else ""
    kind = f["kind"]
    if kind == "missing":
        return f"not found: the notebook has no def {name}(...)"
    if kind == "syntax":
        return f"its cell is not Python: {f['error']}"
    if kind == "returns":
        what = f.get("output")
        if what:
            return f"{name} returned no {what} ({f['found']}){on}"
        return f"{name} returned {f['found']}, expected {f['expected']}{on}"
    if kind == "timeout":
        return (f"{name} did not return within {f['seconds']:g} s{on}, and was stopped (a loop "
                "that never ends?)")
    if kind == "memory":
        return (f"{name} ran out of memory (over {MEMORY >> 30} GB){on}, and was stopped (an "
                "array or a list that grows without end?)")
    if kind == "error":
        return f"{name} raised {f['error']}{on}"
    if kind == "changed":
        return (f"{name} changed its argument {f['argument']}{on}: the caller's array is not "
                "what it was")
    if kind == "type":
        return f"{f['output']} is wrong: {f['problem']}{on}"
    if f.get("mistake") in ("globals", "fixed"):
        return f"model calls optimize with other arguments than its own{on}"
    return f"{f['output']}: expected {f['expected']}, found {f['found']}{on}"


def _finding(name, failure, fn, cell, cells_by_number, variables, script) -> dict:
    """The entry's finding, one sentence (the divergence, the known mistake it matches, the
    line of the learner's code), with its parts: "divergence", "known_mistake", "line"."""
    divergence = _words(name, failure)
    mistake, known = failure.get("mistake"), None
    if mistake:
        known = MISTAKES[mistake]
        if mistake in ("globals", "fixed"):
            known = known.format(**{"global": failure.get("global") or "a variable",
                                    "argument": {"X": "X_train", "Y": "Y_train"}.get(
                                        failure.get("argument"), failure.get("argument")),
                                    "given": failure.get("given"),
                                    "passed": failure.get("passed")})
    where = failure.get("where")
    if where:
        line = _line_info(cells_by_number, where[0], where[1], script)
    elif failure.get("line"):
        line = _line_info(cells_by_number, cell.number, failure["line"], script)
    elif fn is not None:
        line = _line_info(cells_by_number, cell.number, _mistake_line(fn, name, failure,
                                                                      variables), script)
    else:
        line = None
    finding = divergence + (f". Known mistake: {known}" if known else "") + (
        f" ({line['where']}: {line['code']})" if line else "")
    return {"finding": finding, "divergence": divergence, "known_mistake": known,
            "line": line}


def _imported(cells, picks) -> set:
    """The top-level packages the notebook's import statements name (lr_utils, numpy, ...)."""
    trees = {c.number: c.tree for c in cells}
    names = set()
    for cell, i in picks:
        stmt = trees[cell].body[i]
        if isinstance(stmt, ast.Import):
            names |= {a.name.split(".")[0] for a in stmt.names}
        elif isinstance(stmt, ast.ImportFrom) and not stmt.level and stmt.module:
            names.add(stmt.module.split(".")[0])
    return names


def _run(cells, p: Plan, timeout: float, memory: int, call_seconds: float) -> dict:
    """The child's answer (check_runner.py), run in a fresh folder with a clean environment,
    killed with its whole process group past `timeout`."""
    job = {"cells": [{"number": c.number, "code": c.code, "parses": c.tree is not None}
                     for c in cells],
           "define": p.define, "imports": sorted(_imported(cells, p.define)),
           "setup": p.setup, "flatten": p.flatten, "normalise": p.normalise,
           "graded": [n for n in GRADED if n in p.graded], "call_seconds": call_seconds,
           "memory": memory, "cpu_seconds": int(timeout) + 5}
    here = tempfile.mkdtemp(prefix="catlr-check-")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": here, "MPLBACKEND": "Agg",
           "MPLCONFIGDIR": here, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
           "LANG": "C.UTF-8"}  # none of the user's secrets reach their code
    # -I: none of the user's PYTHON* variables, nor the working folder on the path; catlr
    # itself is found where this process found it (a checkout works as an install does)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    start = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "from catlr.stages.check_runner import main; main()")
    proc = subprocess.Popen([sys.executable, "-I", "-c", start, root],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=here, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps(job).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CatlrError(f"the notebook's code ran over {timeout:g} s and was stopped (a loop "
                         "that never ends, catching every exception?), fix it or give "
                         "--timeout more seconds") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started
            proc.communicate()
        shutil.rmtree(here, ignore_errors=True)
    try:
        return json.loads(out.decode("utf-8"))
    except ValueError:
        pass
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise CatlrError(f"the notebook's code used over {timeout:g} s of CPU and was stopped, "
                         "fix the loop that never ends or give --timeout more seconds")
    last = (err.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
    raise CatlrError(f"the notebook's code ended the check before it answered (exit code "
                     f"{proc.returncode}: {last[:200]}), look for exit() or os._exit() in it")


def check(path, *, timeout: float = TIMEOUT, memory: int = MEMORY,
          call_seconds: float = CALL_SECONDS) -> dict:
    """{"file", "passed": all passed, "functions": [{"name", "passed", "finding", ...}]}: the
    flattening (when the notebook has it) and the graded functions, in the notebook's
    order, then the graded functions it lacks."""
    cells = read_cells(path)
    script = not os.fspath(path).endswith(".ipynb")
    p = plan(cells)
    if not p.graded and not p.flatten and not p.broken:
        raise CatlrError(f"{path} defines none of the course's functions ({', '.join(GRADED)}), "
                         "give the week-2 notebook or a .py file with them")
    answer = _run(cells, p, timeout, memory, min(call_seconds, timeout / 4))
    by_number = {c.number: c for c in cells}
    entries = []  # (position in the notebook, entry)
    if p.flatten:
        first = min(p.setup[:1] + p.flatten)
        f = answer["flattening"]
        entry = {"name": "flattening", "passed": f["passed"], "finding": None}
        if not f["passed"]:
            failure = f["failure"]
            name = failure.get("variable", failure.get("output"))
            stmt_cell, index = next(((c, i) for c, i in p.flatten + p.normalise
                                     if name in _targets(by_number[c].tree.body[i])),
                                    p.flatten[0])
            if not failure.get("where"):
                failure["where"] = [stmt_cell, by_number[stmt_cell].tree.body[index].lineno]
            entry.update(_finding("the flattening", failure, None, by_number[stmt_cell],
                                  by_number, p.variables, script))
            entry.update(_details(failure))
        entries.append(((first[0], by_number[first[0]].tree.body[first[1]].lineno), entry))
    for name in GRADED:
        if name in p.broken:
            cell = p.broken[name]
            failure = {"kind": "syntax", "error": f"{cell.error[1]}", "line": cell.error[0]}
            entry = {"name": name, "passed": False}
            entry.update(_finding(name, failure, None, cell, by_number, p.variables, script))
            entries.append(((cell.number, cell.error[0]), entry))
            continue
        if name not in p.graded:
            entries.append(((1 << 30, 0), {"name": name, "passed": False,
                                           "finding": _words(name, {"kind": "missing"})}))
            continue
        cell, fn = p.graded[name]
        result = answer["functions"][name]
        entry = {"name": name, "passed": result["passed"], "finding": None}
        if not result["passed"]:
            failure = result["failure"]
            entry.update(_finding(name, failure, fn, cell, by_number, p.variables, script))
            entry.update(_details(failure))
        entries.append(((cell.number, fn.lineno), entry))
    functions = [e for _, e in sorted(entries, key=lambda pe: pe[0])]
    problems = answer.get("definitions", [])
    return {"file": os.fspath(path), "passed": all(e["passed"] for e in functions),
            "functions": functions,
            "notes": [_words("a definition or import", dict(d, case=None)) for d in problems]}


def _details(failure: dict) -> dict:
    """The divergence's parts for --json: which output, expected, found, on which input."""
    return {k: failure[k] for k in ("output", "expected", "found", "case", "mistake")
            if failure.get(k) is not None}

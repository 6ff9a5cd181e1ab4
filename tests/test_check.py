"""catlr check (issue 30): a learner's notebook, each graded function checked alone.

tests/data/week2_solution.ipynb is the course's assignment solved (markdown and code
cells, `# GRADED FUNCTION:` comments, `### START CODE HERE ###` markers, the lr_utils and
public_tests imports, magics, data, test and plotting cells); week2_solution.py is the
same as Jupyter's "Download as Python" writes it. Each mutant below makes one of the
known mistakes in one function: check must name that function, and only it, with a
finding that names the mistake and the learner's line. Expected values come from
catlr.course; the mistakes are recognised by recomputing them plainly (check_runner.py).
"""

import copy
import json
import os
import time
from pathlib import Path

import pytest
from conftest import run_cli as _run_cli
from conftest import run_cli_whole as run_cli

DATA = Path(__file__).resolve().parent / "data"
SOLUTION = DATA / "week2_solution.ipynb"
NAMES = ["flattening", "sigmoid", "initialize_with_zeros", "propagate", "optimize", "predict",
         "model"]

# mistake: (the function whose cell changes, [(its text, the mistaken text)], words the
# finding must hold, the learner's line the finding must quote)
MUTANTS = {
    "flattening without .T": (
        "flattening", [("train_set_x_orig.reshape(train_set_x_orig.shape[0], -1).T",
                        "train_set_x_orig.reshape(-1, train_set_x_orig.shape[0])")],
        "the flattening is missing .T",
        "train_set_x_flatten = train_set_x_orig.reshape(-1, train_set_x_orig.shape[0])"),
    "b = 0 an int": (
        "initialize_with_zeros", [("    b = 0.0\n", "    b = 0\n")],
        "b = 0 makes b the int 0", "b = 0"),
    "a cost with the wrong sign": (
        "propagate", [("cost = -1 / m * np.sum(", "cost = 1 / m * np.sum(")],
        "the cost has the wrong sign",
        "cost = 1 / m * np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A))"),
    "* with a transpose broadcasting to m x m": (
        "propagate", [("np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A))",
                       "np.sum(Y * np.log(A).T + (1 - Y) * np.log(1 - A).T)")],
        "broadcasts to an m x m matrix",
        "cost = -1 / m * np.sum(Y * np.log(A).T + (1 - Y) * np.log(1 - A).T)"),
    "dw transposed": (
        "propagate", [("dw = 1 / m * np.dot(X, (A - Y).T)", "dw = 1 / m * np.dot(A - Y, X.T)")],
        "dw is transposed", "dw = 1 / m * np.dot(A - Y, X.T)"),
    "db not divided by m": (
        "propagate", [("db = 1 / m * np.sum(A - Y)", "db = np.sum(A - Y)")],
        "db is not divided by m", "db = np.sum(A - Y)"),
    "w += lr * dw": (
        "optimize", [("w = w - learning_rate * dw", "w = w + learning_rate * dw")],
        "the update adds the gradient", "w = w + learning_rate * dw"),
    "w -= ... changing the caller's arrays": (
        "optimize", [("    w = copy.deepcopy(w)\n", ""),
                     ("w = w - learning_rate * dw", "w -= learning_rate * dw")],
        "changes the array the caller passed in", "w -= learning_rate * dw"),
    "b forgotten in predict": (
        "predict", [("A = sigmoid(np.dot(w.T, X) + b)", "A = sigmoid(np.dot(w.T, X))")],
        "predict leaves out b", "A = sigmoid(np.dot(w.T, X))"),
    "the wrong threshold": (
        "predict", [("if A[0, i] > 0.5:", "if A[0, i] >= 0.5:")],
        "the wrong threshold", "if A[0, i] >= 0.5:"),
    "model scoring the wrong split": (
        "model", [("Y_prediction_test = predict(w, b, X_test)",
                   "Y_prediction_test = predict(w, b, X_train)")],
        "model scores the wrong split", "Y_prediction_test = predict(w, b, X_train)"),
    "model ignoring its arguments": (
        "model", [("optimize(w, b, X_train, Y_train, num_iterations",
                   "optimize(w, b, train_set_x, train_set_y, num_iterations")],
        "model uses train_set_x from the notebook instead of its argument X_train",
        ("params, grads, costs = optimize(w, b, train_set_x, train_set_y, num_iterations, "
         "learning_rate, print_cost)")),
}


def notebook(edits=(), function=None) -> dict:
    """The solution notebook, with `edits` [(text, replacement)] made in the cell of
    `function` (the one marked '# GRADED FUNCTION: name'; 'flattening': the flattening's)."""
    nb = json.loads(SOLUTION.read_text())
    if not edits:
        return nb
    mark = "train_set_x_flatten =" if function == "flattening" else \
        f"# GRADED FUNCTION: {function}\n"
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and mark in "".join(c["source"]))
    source = "".join(cell["source"])
    for old, new in edits:
        assert source.count(old) == 1, old  # the fixture has the line once in that cell
        source = source.replace(old, new)
    cell["source"] = source.splitlines(True)
    return nb


def write(nb, path) -> Path:
    path.write_text(json.dumps(nb, indent=1))
    return path


def checked(path, *more):
    code, out, err = run_cli(["check", path, "--json", *more])
    return code, (json.loads(out) if out else None), err


@pytest.mark.parametrize("path", [SOLUTION, DATA / "week2_solution.py"], ids=["ipynb", "py"])
def test_the_solution_passes_every_function(path, tmp_path):
    """Without lr_utils, public_tests or the course's data beside it (there are none in
    tests/data), with the course's magics: everything passes, in the notebook's order."""
    assert not (DATA / "lr_utils.py").exists() and not (DATA / "datasets").exists()
    code, result, err = checked(path)
    assert code == 0, err
    assert [f["name"] for f in result["functions"]] == NAMES
    assert all(f["passed"] and f["finding"] is None for f in result["functions"])
    assert result["passed"] is True and result["notes"] == []
    code, out, _ = run_cli(["check", path])
    assert code == 0
    assert out.splitlines() == [f"{n:<21}  passed" for n in NAMES] + ["All 7 passed."]


@pytest.mark.parametrize("mistake", list(MUTANTS))
def test_each_known_mistake_is_named_in_its_function_alone(mistake, tmp_path):
    function, edits, words, line = MUTANTS[mistake]
    path = write(notebook(edits, function), tmp_path / "mine.ipynb")
    code, result, err = checked(path)
    assert code == 1, err
    failed = [f for f in result["functions"] if not f["passed"]]
    assert [f["name"] for f in failed] == [function], failed  # the root, and only it
    assert [f["name"] for f in result["functions"]] == NAMES
    finding = failed[0]["finding"]
    assert words in finding, finding
    assert failed[0]["line"]["code"] == line, failed[0]["line"]
    assert finding.endswith(f"{failed[0]['line']['where']}: {line})")
    assert failed[0]["line"]["where"].startswith("cell ")


def test_a_finding_says_which_output_expected_and_found_on_which_input(tmp_path):
    """The first divergence, in full: the output, the course's value, the learner's, the
    input; the human report says the same under the function's name."""
    function, edits, _, _ = MUTANTS["db not divided by m"]
    path = write(notebook(edits, function), tmp_path / "mine.ipynb")
    code, result, _ = checked(path)
    entry = next(f for f in result["functions"] if f["name"] == "propagate")
    m = 3  # the notebook's example: db = sum(A - Y) / m, computed plainly
    import numpy as np

    w, b = np.array([[1.], [2.]]), 1.5
    X, Y = np.array([[1., -2., -1.], [3., 0.5, -3.2]]), np.array([[1, 1, 0]])
    db = float(np.sum(1 / (1 + np.exp(-(w.T @ X + b))) - Y) / m)
    assert entry["output"] == 'grads["db"]' and entry["mistake"] == "db_no_m"
    assert entry["expected"] == f"{db:.6g}" and entry["found"] == f"{db * m:.6g}"
    assert entry["case"].startswith("the notebook's example (w = [[1.], [2.]], b = 1.5")
    assert entry["finding"].startswith(f'grads["db"]: expected {db:.6g}, found {db * m:.6g}, '
                                       "on the notebook's example")
    code, out, _ = run_cli(["check", path])
    assert code == 1
    lines = out.splitlines()
    assert lines[3] == "propagate              FAILED"
    assert lines[4:7] == [f"    {entry['divergence']}",
                          "    Known mistake: db is not divided by m: db = np.sum(A - Y) / m",
                          "    cell 22, line 34: db = np.sum(A - Y)"]
    assert entry["finding"] == (f"{entry['divergence']}. Known mistake: db is not divided by "
                                "m: db = np.sum(A - Y) / m (cell 22, line 34: db = np.sum(A - Y))")
    assert lines[-1].startswith("1 of 7 failed.")


def test_the_py_file_is_checked_as_the_notebook(tmp_path):
    text = (DATA / "week2_solution.py").read_text().replace(
        "cost = -1 / m * np.sum(", "cost = 1 / m * np.sum(")
    path = tmp_path / "mine.py"
    path.write_text(text)
    code, result, _ = checked(path)
    assert code == 1
    failed = [f for f in result["functions"] if not f["passed"]]
    assert [f["name"] for f in failed] == ["propagate"]
    number = text.splitlines().index("    cost = 1 / m * np.sum(Y * np.log(A) + (1 - Y) * "
                                     "np.log(1 - A))") + 1
    assert failed[0]["line"] == {"cell": None, "line": number, "where": f"line {number}",
                                 "code": "cost = 1 / m * np.sum(Y * np.log(A) + (1 - Y) * "
                                         "np.log(1 - A))"}


def test_a_broken_cell_and_a_missing_function_fail_alone(tmp_path):
    """A cell that is not Python fails its function only (the others run with catlr's in
    its place); a function the notebook lacks is named; magics and shell lines are not
    Python and are skipped."""
    nb = notebook([("    A = sigmoid(np.dot(w.T, X) + b)\n    cost =",
                    "    A = sigmoid(np.dot(w.T, X) + b\n    cost =")], "propagate")
    nb["cells"] = [c for c in nb["cells"]
                   if "# GRADED FUNCTION: model\n" not in "".join(c["source"])]
    nb["cells"].insert(2, {"cell_type": "code", "metadata": {}, "outputs": [],
                           "execution_count": None,
                           "source": ["!pip install h5py\n", "np.dot?\n"]})
    nb["cells"].insert(3, {"cell_type": "code", "metadata": {}, "outputs": [],
                           "execution_count": None,
                           "source": ["%%bash\n", "echo this is not python {\n"]})
    code, result, _ = checked(write(nb, tmp_path / "mine.ipynb"))
    assert code == 1
    by_name = {f["name"]: f for f in result["functions"]}
    assert [n for n, f in by_name.items() if not f["passed"]] == ["propagate", "model"]
    assert by_name["propagate"]["finding"].startswith("its cell is not Python: '(' was never "
                                                      "closed")
    assert by_name["propagate"]["line"]["code"] == "A = sigmoid(np.dot(w.T, X) + b"
    assert by_name["model"]["finding"] == "not found: the notebook has no def model(...)"
    assert [f["name"] for f in result["functions"]][-1] == "model"


def _ran_where(tmp_path, monkeypatch):
    """A sigmoid that raises what it sees: its process, its memory limit, a secret of the
    caller's environment, its working folder, and a file it tried to write."""
    monkeypatch.setenv("CATLR_TEST_SECRET", "hunter2")
    nb = notebook([("    s = 1 / (1 + np.exp(-z))\n",
                    ("    import os, resource\n"
                     "    open('written-by-the-notebook.txt', 'w').write('x')\n"
                     "    raise RuntimeError(f'pid {os.getpid()} as '\n"
                     "        f'{resource.getrlimit(resource.RLIMIT_AS)[0]} secret '\n"
                     "        f'{os.environ.get(\"CATLR_TEST_SECRET\")} cwd {os.getcwd()} end')\n"))],
                     "sigmoid")
    return write(nb, tmp_path / "mine.ipynb")


def test_the_learners_code_runs_in_a_limited_process_and_writes_nothing_here(tmp_path,
                                                                             monkeypatch):
    path = _ran_where(tmp_path, monkeypatch)
    before = path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(tmp_path))
    code, result, err = checked(path)
    assert code == 1, err
    finding = next(f for f in result["functions"] if f["name"] == "sigmoid")["finding"]
    pid, limit, secret, cwd = (finding.split(key, 1)[1].split(" ", 1)[0]
                               for key in ("pid ", " as ", " secret ", " cwd "))
    assert int(pid) != os.getpid()
    from catlr.stages.check import MEMORY

    assert int(limit) == MEMORY
    assert secret == "None"  # the caller's environment stays with the caller
    assert not cwd.startswith(str(tmp_path)) and not os.path.exists(cwd)  # removed after
    after = path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(tmp_path))
    assert after == before  # the notebook untouched, nothing written beside it
    assert not Path("written-by-the-notebook.txt").exists()  # nor where check was run
    assert finding.startswith("sigmoid raised RuntimeError: pid ")
    assert "(cell 15, line " in finding


LOOPS = {
    "forever": ("sigmoid", [("    s = 1 / (1 + np.exp(-z))\n", "    while True:\n        pass\n")],
                ("sigmoid did not return within 3 s, on the notebook's example (z = [0., 2.]), "
                 "and was stopped (a loop that never ends?)")),
    # np.zeros maps pages without writing them: the limit (on address space) is reached
    # without 2 GB of writes on a shared machine
    "memory": ("propagate", [("    m = X.shape[1]\n", ("    m = X.shape[1]\n    junk = []\n"
               "    while True:\n        junk.append(np.zeros(10 ** 7))\n"))],
               "propagate ran out of memory (over 2 GB), on the notebook's example"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(LOOPS))
def test_a_loop_that_never_ends_or_memory_without_end_is_stopped(kind, tmp_path):
    """Stopped with one line of finding; the other functions are still checked."""
    function, edits, words = LOOPS[kind]
    path = write(notebook(edits, function), tmp_path / "mine.ipynb")
    started = time.monotonic()
    code, result, err = checked(path, "--timeout", "12")
    assert code == 1, err
    assert time.monotonic() - started < 60  # a bound, not a timing: it stopped at all
    failed = [f for f in result["functions"] if not f["passed"]]
    assert [f["name"] for f in failed] == [function]
    assert failed[0]["finding"].startswith(words), failed[0]["finding"]
    assert "\n" not in failed[0]["finding"]


@pytest.mark.slow
def test_code_that_swallows_the_stop_is_killed_with_one_line(tmp_path):
    nb = notebook([("    costs = []\n", ("    costs = []\n    while True:\n        try:\n"
                    "            while True:\n                pass\n"
                    "        except BaseException:\n            pass\n"))], "optimize")
    path = write(nb, tmp_path / "mine.ipynb")
    code, out, err = run_cli(["check", path, "--timeout", "8"])
    assert code == 1 and out == ""
    assert err.splitlines() == [("Error: the notebook's code ran over 8 s and was stopped (a loop "
                                 "that never ends, catching every exception?), fix it or give "
                                 "--timeout more seconds")]


def test_what_is_not_a_notebook_is_one_line(tmp_path):
    bad = tmp_path / "notes.ipynb"
    bad.write_text("{not json")
    for args, code, line in (
            ([bad], 1, (f"Error: {bad} is not a Jupyter notebook (no cells in its JSON), save it "
                       "from Jupyter again or give a .py file")),
            ([tmp_path / "none.ipynb"], 1, (f"Error: {tmp_path / 'none.ipynb'} is not a file, "
                                           "give the notebook (.ipynb) or a .py file")),
            ([SOLUTION, "--timeout", "0"], 2, ("Error: --timeout must be a number of seconds "
                                               "over 0, got 0.0"))):
        got, out, err = run_cli(["check", *args])
        assert (got, out, err.splitlines()) == (code, "", [line])
    empty = tmp_path / "empty.py"
    empty.write_text("import numpy as np\nprint('hello')\n")
    got, _, err = run_cli(["check", empty])
    assert got == 1 and err.startswith(f"Error: {empty} defines none of the course's functions")


def test_the_mutants_differ_from_the_solution_only_where_they_say():
    """The table's edits change one cell each: the tests above test what they claim."""
    solution = notebook()
    for mistake, (function, edits, _, _) in MUTANTS.items():
        mutant = notebook(edits, function)
        changed = [i for i, (a, b) in enumerate(zip(solution["cells"], mutant["cells"]))
                   if a != b]
        assert len(changed) == 1, mistake
        assert copy.deepcopy(mutant) != solution


def test_the_readme_shows_what_check_prints(tmp_path, monkeypatch):
    from test_explain import readme_output

    function, edits, _, _ = MUTANTS["* with a transpose broadcasting to m x m"]
    name = "Logistic_Regression_with_a_Neural_Network_mindset.ipynb"
    write(notebook(edits, function), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run_cli(["check", name])  # as a pipe shows it, wrapped
    assert code == 1
    assert out.splitlines() == readme_output(f"catlr check {name}")

"""The shape of the code: imports point down the layers, no import circles, heavy modules
kept off the start-up path."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "catlr"


def _name(path: Path) -> str:
    """catlr/engines/stream.py -> 'engines.stream'; catlr/engines/__init__.py -> 'engines'."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set:
    """catlr modules a file imports, counting imports anywhere in it (functions too), by
    their dotted names inside catlr ('engines.stream')."""
    names = {_name(p) for p in _modules()}
    here = _name(path)
    package = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
    if here == "__init__":
        package = []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                module = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "catlr":
                module = node.module[len("catlr."):] if node.module != "catlr" else ""
            else:
                continue
            subs = {f"{module}.{a.name}" if module else a.name for a in node.names}
            hits = {m for m in subs if m in names}
            found |= hits or ({module} if module in names else {"__init__"} if not module
                              else {module.rsplit(".", 1)[0]})
        elif isinstance(node, ast.Import):
            found |= {a.name[len("catlr."):] for a in node.names if a.name.startswith("catlr.")}
    return {f for f in found if f in names} - {here}


def _graph():
    return {_name(p): _imports(p) for p in _modules()}


def _cycle(graph):
    """One import circle as a list of module names, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle_among_catlr_modules():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_circle_finder_finds_circles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _third_party(path: Path) -> set:
    """Top-level names of the modules outside catlr that a file imports (anywhere in it)."""
    tree = ast.parse(path.read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    return roots | {(n.module or "").split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.level == 0}


def test_the_graph_sees_the_packages():
    graph = _graph()
    assert {"engines", "engines.stream", "engines.dask", "engines.memory"} <= set(graph)
    assert "learn.design" in graph["engines.stream"] and "engines" in graph["engines.stream"]
    assert "learn.descent" in graph["learn.model"] and "runs" in graph["cli"]


# The layers, top to bottom (CONTRIBUTING.md lists the same): a module imports modules of
# its own layer or of a layer below, never above. Each entry: the layer's name and the
# packages or modules in it (by their dotted names inside catlr).
LAYERS = [
    ("entry", ("__init__", "__main__", "entry")),
    ("cli", ("cli",)),
    ("serve", ("serve",)),
    ("stages", ("stages", "course")),
    ("runs", ("runs",)),
    ("data", ("data",)),
    ("engines", ("engines",)),
    ("learn", ("learn",)),
    ("files", ("files",)),
    ("leaves", ("config", "errors", "events", "packages", "solvers", "text", "version")),
]


def _layer(module: str) -> int:
    """The index in LAYERS of a module's layer (0 is the top)."""
    for i, (_, members) in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return i
    raise AssertionError(f"catlr.{module} is in no layer: add it to LAYERS (and to "
                         "CONTRIBUTING.md's map)")


def _upward(graph) -> list[str]:
    """Every import of a module from a layer above its own, as 'a -> b (layer above)'."""
    return [f"{a} -> {b} ({LAYERS[_layer(b)][0]} is above {LAYERS[_layer(a)][0]})"
            for a, targets in sorted(graph.items()) for b in sorted(targets)
            if _layer(b) < _layer(a)]


def test_imports_point_down_the_layers():
    graph = _graph()
    for module in graph:
        _layer(module)  # every module has a layer
    assert _upward(graph) == []


def test_the_layer_check_finds_an_upward_import():
    graph = {"learn.model": {"engines"}, "engines": {"learn.design"}, "cli": {"runs"}}
    assert _upward(graph) == ["learn.model -> engines (engines is above learn)"]


def test_only_the_cli_layer_imports_typer_or_rich():
    for path in _modules():
        if _layer(_name(path)) != 1:
            assert not _third_party(path) & {"typer", "rich", "click"}, path.name


def test_ingestion_does_not_need_h5py():
    graph = _graph()
    seen, todo = set(), ["data.ingest", "stages.predict"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
    assert "files.schema" not in seen and "data.datasets" not in seen
    paths = {_name(p): p for p in _modules()}
    for module in seen:
        assert "h5py" not in _third_party(paths[module]), module


def _conflict_lines(text: str) -> list[int]:
    """Line numbers of a merge's markers left in a text (git's <<<<<<< / ======= / >>>>>>>)."""
    marks = ("<<<<<<< ", ">>>>>>> ")
    return [n for n, line in enumerate(text.splitlines(), 1)
            if line.startswith(marks) or line.rstrip() in ("<<<<<<<", ">>>>>>>")]


def test_no_merge_conflict_markers_in_tracked_text():
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    try:
        files = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True,
                               timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        import pytest

        pytest.skip("not a git checkout")
    left = {}
    for name in files:
        path = repo / name
        if path.suffix in (".png", ".npz", ".h5", ".jpg") or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if lines := _conflict_lines(text):
            left[name] = lines
    assert not left, f"merge markers left in: {left}"


def test_the_marker_finder_finds_markers():
    text = "a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> issue-21\nd\n"
    assert _conflict_lines(text) == [2, 6]
    assert _conflict_lines("a <<<<<<< b\n=======\n") == []


def test_no_function_is_above_20_in_cyclomatic_complexity():
    """radon's rank D and worse (above 20): what `radon cc -n D catlr` would list. A long
    list of cases belongs in a table (config's rules, runs' columns, state's schemas)."""
    import pytest

    complexity = pytest.importorskip("radon.complexity", reason="radon is in the test extra")
    package = Path(__file__).resolve().parent.parent / "catlr"
    def blocks(items):  # functions, classes' methods, and the closures inside either
        for item in items:
            yield item
            yield from blocks([*getattr(item, "methods", []), *getattr(item, "closures", [])])

    found = []
    for path in sorted(package.rglob("*.py")):
        for item in blocks(complexity.cc_visit(path.read_text(encoding="utf-8"))):
            if item.complexity > 20:
                found.append(f"{path.relative_to(package.parent)}:{item.lineno} "
                             f"{item.name} {item.complexity}")
    assert found == [], "\n".join(found)


def test_the_complexity_check_sees_a_complex_function():
    import pytest

    complexity = pytest.importorskip("radon.complexity", reason="radon is in the test extra")
    cases = "\n".join(f"    if x == {i}:\n        return {i}" for i in range(25))
    (block,) = complexity.cc_visit(f"def f(x):\n{cases}\n    return -1\n")
    assert block.complexity > 20

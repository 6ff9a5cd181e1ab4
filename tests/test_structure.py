"""The shape of the code: no import circles, heavy modules kept off the start-up path."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "catlr"


def _imports(path: Path) -> set:
    """catlr modules a file imports, counting imports anywhere in it (functions too)."""
    names = {p.stem for p in PACKAGE.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or node.module == "catlr" or
                                                 (node.module or "").startswith("catlr.")):
            module = node.module or ""
            if module.startswith("catlr"):
                module = module[len("catlr."):] if module != "catlr" else ""
            if module:
                found.add(module.split(".")[0])
            else:  # from . import render, __version__
                found |= {a.name for a in node.names if a.name in names} or {"__init__"}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("catlr.")}
    return found - {path.stem}


def _graph():
    return {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}


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


def test_only_the_cli_layer_imports_typer_or_rich():
    cli_layer = {"cli", "render", "progress"}
    for path in PACKAGE.glob("*.py"):
        if path.stem not in cli_layer:
            assert not _third_party(path) & {"typer", "rich", "click"}, path.name


def test_ingestion_does_not_need_h5py():
    graph = _graph()
    seen, todo = set(), ["ingest", "predict"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
    assert "hdf5" not in seen and "datasets" not in seen
    for module in seen:
        assert "h5py" not in _third_party(PACKAGE / f"{module}.py"), module

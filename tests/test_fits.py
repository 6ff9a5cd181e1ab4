"""Output that fits (issue 29 §3): predict, eval, runs, sweep, train, prepare, inspect,
export, explain, check, the demo and every --help, on a pseudo-terminal 60 and 80 columns
wide (rich draws there) and piped: no word cut, no line over the width but one holding a lone long
path; stderr is one line in a pipe, wrapped between words on a terminal."""

import shutil
from pathlib import Path

import pytest

from terminal import on_terminal, piped, problems_on_terminal, problems_piped, screen

COMMANDS = ["prepare", "train", "eval", "predict", "sweep", "inspect", "runs", "serve",
            "export", "demo", "explain", "check"]
CASES = {
    "predict": (["predict", "photos"], 1),  # one photo is broken: its error has a long reason
    "predict-long-path": (["predict", "photos/a-folder-whose-name-goes-on-and-on-and-on-and-"
                                      "on-for-a-while/cat.png", "photos/cat.png"], 0),
    "eval": (["eval", "--errors", "e.png"], 0),
    "runs": (["runs"], 0),
    "sweep": (["sweep", "sample/images", "--iters", "300"], 0),
    "sweep-validation": (["sweep", "sample/images", "--iters", "300", "--val-fraction", "0.2",
                          "--lr", "0.005", "--lr", "0.001", "--l2", "0", "--l2", "5"], 0),
    "train": (["train", "sample/images", "--iters", "300"], 0),
    "prepare": (["prepare", "sample/images", "--out", "p.h5"], 0),
    "inspect": (["inspect", "runs/rose/model.npz"], 0),
    "export": (["export", "--onnx", "m.onnx"], 0),
    "explain": (["explain", "photos/cat.png"], 0),
    "check": (["check", "notebook.ipynb"], 1),  # a known mistake: its finding's long lines
    "help": (["--help"], 0),
    **{f"{c}-help": ([c, "--help"], 0) for c in COMMANDS},
    "demo": (["demo", "d"], 0),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A folder as a user's after a few commands: a sample photo folder, two runs (one whose
    cost rose: warnings), photos to score, one broken under a long name."""
    from PIL import Image

    from catlr.stages.demo import make_sample
    from conftest import run_cli

    root = tmp_path_factory.mktemp("fits") / "w"
    root.mkdir()
    paths = make_sample(root / "sample", n_per_class=20, unseen=4)
    photos = root / "photos"
    shutil.copytree(paths["unseen"], photos)
    first = sorted(photos.iterdir())[0]
    shutil.copy(first, photos / "cat.png")
    deep = photos / "a-folder-whose-name-goes-on-and-on-and-on-and-on-for-a-while"
    deep.mkdir()
    Image.open(first).save(deep / "cat.png")
    data = first.read_bytes()
    solution = (Path(__file__).parent / "data" / "week2_solution.ipynb").read_text("utf-8")
    (root / "notebook.ipynb").write_text(solution.replace(  # propagate's cost broadcast
        "np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A))",
        "np.sum(Y * np.log(A).T + (1 - Y) * np.log(1 - A).T)"), "utf-8")
    (photos / "a-photo-of-the-cat-cut-short-when-it-was-copied.png").write_bytes(data[:300])
    import os

    here = os.getcwd()
    os.chdir(root)
    try:
        for args in (["train", "sample/images", "--iters", "300", "--name", "course"],
                     ["train", "sample/images", "--iters", "200", "--lr", "0.05", "--name",
                      "rose"]):
            code, _, err = run_cli(args)
            assert code == 0, err
    finally:
        os.chdir(here)
    return root


def _copy(base, tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(base, folder)
    return folder


def _params():
    out = []
    for case in CASES:
        marks = [pytest.mark.slow] if case == "demo" else []
        out.append(pytest.param(case, marks=marks, id=case))
    return out


@pytest.mark.parametrize("case", _params())
def test_output_fits_60_and_80_columns_and_a_pipe(base, tmp_path, case):
    args, code = CASES[case]
    env = {"CATLR_DEBUG": ""}
    # copies at paths of one length, told apart by digits alone (words() makes them 0)
    got, out, err = piped(args, _copy(base, tmp_path / "c00"), env)
    assert got == code, out + err
    assert problems_piped(out) == [], out
    assert all(len(line) for line in err.splitlines())
    if case.startswith("predict") and code:  # stderr in a pipe: one line a message
        assert err.count("\n") == len([l for l in err.splitlines() if l.startswith(
            ("Warning", "Error"))]), err
    for width in (60, 80):
        got, data = on_terminal(args, width, _copy(base, tmp_path / f"c{width}"), env)
        assert got == code, data
        problems = problems_on_terminal(data, width, out + err)
        shown = "\n".join(text for text, _ in screen(data, width))
        assert problems == [], f"{width} columns:\n{shown}\n" + "\n".join(problems)
        if case == "help":  # click cut a command's summary to its line with '...'
            listed = shown.split("Commands:", 1)[1]
            cut = [t for t in listed.splitlines() if t.rstrip().endswith("...")]
            assert cut == [], f"{width} columns:\n{shown}"


def test_the_checks_see_a_cut_word_and_a_long_line():
    """What the test above looks for, shown on text with each fault."""
    cut = "error: trunc\r\nated or corrupt\r\n"  # a line broken inside a word
    assert problems_on_terminal(cut, 60, "error: truncated or corrupt")
    long = "x" * 70 + "\r\n"  # the terminal wraps it: over 60 columns, no path
    assert problems_on_terminal(long, 60, "x" * 70)
    path = "see /" + "a" * 70 + "\r\n"  # over the width only to hold a path: fine
    assert problems_on_terminal(path, 60, "see /" + "a" * 70) == []
    table = "┃ proba… ┃\r\n"  # a header rich cut short
    assert problems_on_terminal(table, 60, "probability")
    cropped = "│ train │ 40.19%-59.81%\r\n"  # the box's right edge past the width, cropped
    assert problems_on_terminal(cropped, 60, "train 40.19%-59.81%")
    assert problems_on_terminal("│ train │ 40.19%-59.81% │\r\n", 60, "train 40.19%-59.81%") == []
    assert problems_piped("y" * 81) and problems_piped("y " * 30 + "/" + "z" * 70) == []


def test_a_message_wraps_between_words_and_keeps_a_quoted_command_whole():
    from catlr.text import wrap

    said = ("Interrupted: stopped; its checkpoint is in runs/long2/, go on with 'catlr train "
            "--resume runs/long2'")
    for width in (40, 60, 80):
        lines = wrap(said, width, "  ")
        assert " ".join(l.strip() for l in lines) == said
        assert all(len(l) <= width for l in lines)
        assert any("'catlr train --resume runs/long2'" in l for l in lines)
    assert wrap("short  as  it is", 80) == ["short  as  it is"]  # a line that fits: untouched
    shares = "Share of cat (95% CI): train 34.45% (28.34%-41.12%, n = 209), test 66.00%"
    for width in range(30, 80):  # a name stays with its value
        lines = wrap(shares, width, "  ")
        assert any("n = 209)" in l for l in lines) and all(len(l) <= width for l in lines)
    assert wrap("see /" + "a" * 90 + " then", 40) == ["see", "/" + "a" * 90, "then"]

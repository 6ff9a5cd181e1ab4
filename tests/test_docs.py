"""Docs that run (issue 29 §1): every command and Python block of README.md and docs/*.md
runs, and the outputs the docs show are what the commands print (tools/docs.py --check);
with no ../shared beside the repository, every block still runs, on a pair drawn from the
demo's sample."""

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, needs_course


def _tool():
    spec = importlib.util.spec_from_file_location("docs_tool", ROOT / "tools" / "docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@needs_course
def test_the_docs_show_what_their_commands_print():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "docs.py"), "--check"],
                          capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "each doc shows its output as it is" in done.stdout


@pytest.mark.slow
def test_every_block_runs_without_the_course_data(monkeypatch, tmp_path, capsys):
    tool = _tool()
    monkeypatch.setattr(tool, "COURSE", tmp_path / "absent")
    monkeypatch.setattr(tool, "PHOTOS", tmp_path / "absent")
    assert tool.main(["--check"]) == 0, capsys.readouterr().out[-6000:]
    assert "its outputs are not compared" in capsys.readouterr().out


def _doc(tmp_path, text):
    path = tmp_path / "doc.md"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_doc_that_drifts_fails_the_check_and_is_rewritten(tmp_path):
    tool = _tool()
    doc = _doc(tmp_path, """\
        A version:
        <!-- docs: run -->

            catlr --version
            # catlr 0.0.0
            echo one; echo two; echo three; echo four
            # one
            # ...
            # four
            python3 -c 'print(0.1 + 0.2)'
            # 0.3000000000000001
        """)
    before = doc.read_text()
    problems = tool.process(str(doc), check=True, compare=True, work=tmp_path / "w1")
    assert len(problems) == 1 and "catlr 0.0.0" in problems[0], problems
    assert doc.read_text() == before  # --check changes nothing
    assert tool.process(str(doc), check=False, compare=True, work=tmp_path / "w2") == []
    from catlr.version import __version__

    after = doc.read_text()
    assert f"    # catlr {__version__}\n" in after and "    # one\n    # ...\n    # four\n" in after
    assert "0.3000000000000001" in after  # numbers within 1e-9 are the same number
    assert tool.process(str(doc), check=True, compare=True, work=tmp_path / "w3") == []


def test_a_block_with_no_directive_or_no_reason_is_a_problem(tmp_path):
    tool = _tool()
    doc = _doc(tmp_path, """\
        Unmarked:

            catlr --version

        <!-- docs: not run -->

            pip install catlr
        """)
    problems = tool.process(str(doc), check=True, compare=True, work=tmp_path / "w")
    assert len(problems) == 2
    assert "no '<!-- docs: ... -->'" in problems[0] and "says no reason" in problems[1]


def test_a_failing_command_stops_the_run(tmp_path):
    tool = _tool()
    doc = _doc(tmp_path, """\
        <!-- docs: run -->

            catlr predict no-such-photo.jpg
        """)
    with pytest.raises(SystemExit, match="exited 1"):
        tool.process(str(doc), check=True, compare=True, work=tmp_path / "w")


def test_shown_lines_and_normalisation():
    tool = _tool()
    actual = ["Data: x", "Cost after iteration 0: 0.69", "Cost after iteration 100: 0.5",
              "Cost after iteration 200: 0.4", "Final cost: 0.3", "train accuracy: 99%", "Next"]
    shape = ["# Data:", "# ...", "# Cost after iteration 200:", "# Final", "# ...", "# Next"]
    assert tool.shown_lines(shape, actual) == [
        "# Data: x", "# ...", "# Cost after iteration 200: 0.4", "# Final cost: 0.3", "# ...",
        "# Next"]
    gone = ["# Data:", "# ...", "# Best lr: 0.005 (no longer printed)", "# ...", "# Next"]
    assert tool.shown_lines(gone, actual) == ["# Data: x", "# ...", "# Next"]
    assert tool.shown_lines([], actual) is None
    assert tool.shown_lines(["# (output)"], actual[:2]) == ["# Data: x",
                                                            "# Cost after iteration 0: 0.69"]
    from pathlib import Path

    text = tool.normalise("/tmp/x/data 2025-01-02 03:04:05 12-31 23:59 in 1.23 s (45 images/s)",
                          Path("/tmp/x"))
    assert text == ("/home/you/cats/data 2026-11-28 10:41:36 11-28 10:41 in 0.10 s "
                    "(1,000 images/s)")
    assert tool.same("p 0.69527294478331", "p 0.6952729447833098")
    assert not tool.same("p 0.6952", "p 0.6953") and not tool.same("cat 1", "dog 1")

"""Docs that run: every command and Python block of README.md and docs/*.md, run as a user
would, its output shown as it is.

    python tools/docs.py            run every block, rewrite the outputs shown in place
    python tools/docs.py --check    run every block, exit 1 where a doc differs from the run
    python tools/docs.py FILE...    only these docs

The markup: an HTML comment (invisible on GitHub) just before each code block says what it
is; a code block without one is an error, so no new block can go unchecked.

    <!-- docs: run -->                 shell commands, run in order in the doc's folder
    <!-- docs: run; fresh -->          ... in a new folder (the blocks after it share it)
    <!-- docs: run; data none -->      ... a new folder with no data/ (see below)
    <!-- docs: run; fresh; setup catlr train data/ -->
                                       ... after a command whose output is not shown
    <!-- docs: run; exits 1 -->         ... its last command must exit 1 (the others 0): a
                                       command whose exit code says what it found
    <!-- docs: run; ctrl-c after "Cost after iteration 5000" -->
                                       the block's first command gets SIGINT, as Ctrl-C,
                                       once it has printed that text
    <!-- docs: python -->              Python, run statement group by statement group
    <!-- docs: not run: WHY -->        shown, never run; WHY says why (a pip install needs
                                       the network, a folder's layout is not a command)

A doc's folder is new, outside the repository, and holds what the docs name: data/ with
the course's pair (../shared/datasets/catvnoncat; without it, a pair in the course's
schema drawn from `catlr demo`'s sample, and then outputs are run but not compared), the
pair itself beside it, my-photos/ (the demo's sample folder: cat/ and non-cat/),
holiday/ (new sample images), photo.jpg, cat-in-iran.jpg and cat-small.jpg (the two
real photos of ../shared/datasets/photos, else sample images), configs/ and examples/, and
a learner's notebook, Logistic_Regression_with_a_Neural_Network_mindset.ipynb: the
course's solution (tests/data/week2_solution.ipynb) with one known mistake in
propagate's cost (NOTEBOOK_MISTAKE), for `catlr check` to find.

In a shell block a line that starts with `#` is output: the lines of the command above it,
stdout and stderr as a terminal shows them, in a pipe (80 columns, no colour). A command
with no output lines under it shows none (it still runs, and must exit 0). Under a
command, `# ...` stands for lines left out: the lines before it are the output's first
ones, the lines after the last `# ...` its last ones, and lines between two of them are
found by their first line's words (its text up to its first decimal number, which the
output's line starts with). `catlr serve` runs in
the background on a free port (shown as 8000) until its block ends. In a Python block the
`#` lines after a group of statements (so a full-line comment is output there) are what it
printed and, as in the interpreter, the value of its last line when that is an expression.

What differs from one machine or moment to the next is normalised, never skipped: the
doc's folder reads /home/you/cats, times and dates are fixed (2026-11-28 10:41:36),
durations and rates read 0.10 s and 1,000 images/s, a request's time 5 ms. --check
compares numbers to 1e-9 relative (the last digits of a float may differ between BLAS
libraries), the words exactly.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
COURSE = SHARED / "catvnoncat"
PHOTOS = SHARED / "photos"
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
HOME = "/home/you/cats"
DIRECTIVE = re.compile(r"^<!-- docs: (.*?) -->\s*$")
TIMEOUT = 300  # seconds one command may take


def have_course() -> bool:
    return all((COURSE / f"{s}_catvnoncat.h5").is_file() for s in ("train", "test"))


# ---------------------------------------------------------------- parsing

class Block:
    """A code block of a doc: its lines (without their indent), where they are, what to do."""

    def __init__(self, doc, start, lines, indent, directive, fence=None):
        self.doc, self.start, self.lines, self.indent = doc, start, lines, indent
        self.directive, self.fence = directive, fence
        self.options = [o.strip() for o in (directive or "").split(";") if o.strip()]

    @property
    def kind(self) -> str:
        first = self.options[0] if self.options else ""
        return "skip" if first.startswith("not run") else first

    def option(self, name):
        for o in self.options[1:]:
            if o == name or o.startswith(name + " "):
                return o[len(name):].strip() or True
        return None

    def where(self) -> str:
        return f"{self.doc}:{self.start + 1}"


def blocks(doc: str, text: str):
    """The code blocks of a Markdown text: indented ones (4 spaces after a blank line) and
    fenced ones, each with the directive just before it (None if it has none)."""
    lines = text.split("\n")
    out, i, directive, last_text = [], 0, None, ""
    while i < len(lines):
        line = lines[i]
        m = DIRECTIVE.match(line)
        if m:
            directive = m.group(1)
            i += 1
            continue
        fence = re.match(r"^(```+|~~~+)", line)
        if fence:
            j = i + 1
            while j < len(lines) and not lines[j].startswith(fence.group(1)):
                j += 1
            out.append(Block(doc, i + 1, lines[i + 1:j], "", directive, fence.group(1)))
            directive, i = None, j + 1
            continue
        if line.startswith("    ") and last_text == "":
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or (
                    lines[j] == "" and j + 1 < len(lines) and lines[j + 1].startswith("    "))):
                j += 1
            out.append(Block(doc, i, [l[4:] for l in lines[i:j]], "    ", directive))
            directive, i, last_text = None, j, "x"
            continue
        last_text = line if line.strip() else ""
        i += 1
    return out


class Command:
    """A command of a shell block: its text (continuation lines joined), the lines it
    spans in the block, and the output lines the doc shows under it."""

    def __init__(self, text, first, last):
        self.text, self.first, self.last = text, first, last
        self.shown: list[str] = []
        self.output_at = last + 1  # where its output lines start in the block


def commands(block: Block) -> list[Command]:
    out, i, lines = [], 0, block.lines
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("#"):
            if not out:
                raise SystemExit(f"{block.where()}: output line {line!r} under no command")
            out[-1].shown.append(line)
            i += 1
            continue
        first, text = i, line
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i].strip()
        out.append(Command(text, first, i))
        i += 1
    return out


def groups(block: Block):
    """A Python block as [(code lines, shown output lines)]: statements up to the next
    run of `#` lines."""
    out, code, shown = [], [], []
    for line in block.lines:
        if line.startswith("# ") or line == "#":
            shown.append(line)
        else:
            if shown:
                out.append((code, shown))
                code, shown = [], []
            code.append(line)
    if code or shown:
        out.append((code, shown))
    return out


# ---------------------------------------------------------------- the folder a doc runs in

NOTEBOOK = "Logistic_Regression_with_a_Neural_Network_mindset.ipynb"
NOTEBOOK_MISTAKE = ("np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A))",
                    "np.sum(Y * np.log(A).T + (1 - Y) * np.log(1 - A).T)")


def make_world(folder: Path) -> None:
    """What a doc's commands find in their folder (the module's docstring)."""
    import numpy as np
    from PIL import Image

    from catlr.stages.demo import make_sample

    folder.mkdir(parents=True)
    scratch = Path(tempfile.mkdtemp(prefix="catlr-docs-sample-"))
    try:
        sample = make_sample(scratch / "s", n_per_class=30, unseen=6)
        shutil.copytree(sample["images"], folder / "my-photos")
        unseen = sorted(Path(sample["unseen"]).iterdir())
        (folder / "holiday").mkdir()
        for p in unseen:
            shutil.copy(p, folder / "holiday" / p.name)
        for name, fallback in (("cat-in-iran.jpg", 0), ("cat-small.jpg", 2), ("photo.jpg", 4)):
            real = PHOTOS / ("cat-small.jpg" if name == "photo.jpg" else name)
            if real.is_file():
                shutil.copy(real, folder / name)
            else:  # a sample image, as a JPEG
                Image.open(unseen[fallback]).convert("RGB").save(folder / name, quality=90)
        if have_course():
            for s in ("train", "test"):
                shutil.copy(COURSE / f"{s}_catvnoncat.h5", folder / f"{s}_catvnoncat.h5")
        else:  # the course's schema, from a sample drawn at 64 x 64
            import h5py

            from catlr.data.images import load_image

            more = make_sample(scratch / "pair", n_per_class=40, unseen=0)["images"]
            items = [(p, int(c == "cat")) for c in ("cat", "non-cat")
                     for p in sorted(Path(more, c).iterdir())]
            rng = np.random.default_rng(0)
            rng.shuffle(items)
            x = np.stack([load_image(p) for p, _ in items])
            y = np.array([label for _, label in items], np.int64)
            cut = len(items) * 4 // 5
            for s, part in (("train", slice(None, cut)), ("test", slice(cut, None))):
                with h5py.File(folder / f"{s}_catvnoncat.h5", "w") as f:
                    f[f"{s}_set_x"] = x[part]
                    f[f"{s}_set_y"] = y[part]
                    f["list_classes"] = np.array([b"non-cat", b"cat"])
        shutil.copytree(ROOT / "configs", folder / "configs")
        shutil.copytree(ROOT / "examples", folder / "examples")
        solution = (ROOT / "tests" / "data" / "week2_solution.ipynb").read_text("utf-8")
        assert NOTEBOOK_MISTAKE[0] in solution, "the solution's cost line moved"
        (folder / NOTEBOOK).write_text(solution.replace(*NOTEBOOK_MISTAKE), "utf-8")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def with_data(folder: Path) -> None:
    (folder / "data").mkdir()
    for s in ("train", "test"):
        shutil.copy(folder / f"{s}_catvnoncat.h5", folder / "data")


# ---------------------------------------------------------------- running

def environment(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATLR_")}
    bin_dir = os.path.dirname(sys.executable)
    env.update(PATH=bin_dir + os.pathsep + env.get("PATH", ""), COLUMNS="80", LINES="40",
               PYTHONUNBUFFERED="1", TERM="dumb", NO_COLOR="1", PWD=str(folder))
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def normalise(text: str, folder: Path, port: int | None = None) -> str:
    """A run's output with what differs between machines and moments fixed (see above)."""
    real = os.path.realpath(folder)
    for f in {str(folder), real}:
        text = text.replace(f, HOME)
    if port:
        text = text.replace(f":{port}", ":8000")
    text = re.sub(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b", "2026-11-28 10:41:36", text)
    text = re.sub(r"(?<![\d-])\d\d-\d\d \d\d:\d\d\b", "11-28 10:41", text)
    text = re.sub(r"\b\d+\.\d+ s \([\d,]+ images/s\)", "0.10 s (1,000 images/s)", text)
    text = re.sub(r"\(\d+ ms\b", "(5 ms", text)
    # where a Ctrl-C lands: the iterations run before the signal arrived vary by a few
    text = re.sub(r"its checkpoint \(iteration \d+\)", "its checkpoint (iteration 5001)", text)
    return text


def run_shell(block: Block, folder: Path, env: dict, servers: list):
    """Run each command of a shell block; returns [(command, output lines)]."""
    results = []
    stop_after = block.option("ctrl-c after")
    cmds = commands(block)
    for n, cmd in enumerate(cmds):
        text = cmd.text
        if re.match(r"^catlr serve\b", text):
            port = free_port()
            p = subprocess.Popen(f"{text.split('#')[0].strip()} --port {port}", shell=True,
                                 cwd=folder, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
            line = p.stdout.readline()
            if "Serving" not in line:
                p.kill()
                raise SystemExit(f"{block.where()}: catlr serve did not start: {line}")
            servers.append((p, port))
            results.append((cmd, []))
            continue
        for _, port in servers:
            text = text.replace(":8000", f":{port}")
        if stop_after and n == 0:
            out, code = _interrupted(text, folder, env, stop_after.strip('"'))
        else:
            done = subprocess.run(text, shell=True, cwd=folder, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=TIMEOUT, executable="/bin/bash")
            out, code = done.stdout, done.returncode
            expected = int(block.option("exits") or 0) if n == len(cmds) - 1 else 0
            if code != expected:
                raise SystemExit(f"{block.where()}: '{cmd.text}' exited {code}, expected "
                                 f"{expected}:\n{out}")
        port = servers[-1][1] if servers else None
        results.append((cmd, normalise(out, folder, port).splitlines()))
    return results


def _interrupted(text, folder, env, after):
    """Run a command, SIGINT it once it has printed `after` (as Ctrl-C would), and return
    its output; it must stop as catlr says an interrupted command does (exit 130)."""
    p = subprocess.Popen(["/bin/bash", "-c", f"exec {text}"], cwd=folder, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines, deadline, sent = [], time.monotonic() + TIMEOUT, False
    for line in p.stdout:
        lines.append(line)
        if not sent and after in line:
            p.send_signal(signal.SIGINT)
            sent = True
        if time.monotonic() > deadline:
            p.kill()
            break
    code = p.wait(60)
    if code != 130 or not sent:
        raise SystemExit(f"'{text}' was to stop on Ctrl-C after {after!r} (exit 130), "
                         f"exited {code}:\n{''.join(lines)}")
    return "".join(lines), code


DRIVER = r"""
import ast, contextlib, io, json, sys
groups, out, space = json.load(sys.stdin), [], {"__name__": "__main__"}
for code in groups:
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(tree, "<doc>", "exec"), space)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<doc>", "eval"), space)
            if value is not None:
                print(repr(value))
    out.append(buf.getvalue())
sys.__stdout__.write("\0DOCS\0" + json.dumps(out))
"""


def run_python(block: Block, folder: Path, env: dict):
    parts = groups(block)
    code = ["\n".join(c) for c, _ in parts]
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(code), cwd=folder,
                          env=env, text=True, capture_output=True, timeout=TIMEOUT)
    if done.returncode != 0 or "\0DOCS\0" not in done.stdout:
        raise SystemExit(f"{block.where()}: the Python block failed:\n{done.stderr[-3000:]}")
    printed = json.loads(done.stdout.split("\0DOCS\0", 1)[1])
    return [(part, normalise(text, folder).splitlines()) for part, text in zip(parts, printed)]


# ---------------------------------------------------------------- showing

def shown_lines(shown: list[str], actual: list[str]) -> list[str] | None:
    """The output lines the doc should show: `shown`'s shape (first lines, `# ...`, lines
    found by their words, last lines) filled from `actual`. None: show nothing."""
    if not shown:
        return None
    plain = [s[2:] if s.startswith("# ") else s[1:] for s in shown]
    if "..." not in plain:
        return ["# " + a if a else "#" for a in actual]
    segments, current = [], []
    for s in plain:
        if s == "...":
            segments.append(current)
            current = []
        else:
            current.append(s)
    segments.append(current)
    head, middle, tail = segments[0], segments[1:-1], segments[-1]
    out, at = list(actual[:len(head)]), len(head)
    end = len(actual) - len(tail)
    for seg in middle:
        out.append("...")
        if not seg:
            continue
        key = words(seg[0])
        found = next((j for j in range(at, end) if actual[j].startswith(key)), None)
        if found is None:  # the command no longer prints these lines: the run drops
            out.pop()      # them, so --check fails and a rewrite removes them
            continue
        out += actual[found:found + len(seg)]
        at = found + len(seg)
    out.append("...")
    out += actual[max(end, at):] if tail else []
    return ["# " + a if a else "#" for a in out]


def words(line: str) -> str:
    """What finds a line: its text up to its first decimal number ('Cost after iteration
    1900:' of 'Cost after iteration 1900: 0.140872'), which an output line starts with."""
    return re.split(r"-?\d+\.\d+", line, maxsplit=1)[0].rstrip()


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def same(a: str, b: str) -> bool:
    """Lines equal in their words and within 1e-9 relative in their numbers."""
    if a == b:
        return True
    if NUMBER.sub("0", a) != NUMBER.sub("0", b):
        return False
    for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)):
        fx, fy = float(x), float(y)
        if abs(fx - fy) > 1e-9 * max(abs(fx), abs(fy)) + 1e-15:
            return False
    return True


def rewrite(block: Block, results, python=False) -> list[str]:
    """The block's lines with every command's (or group's) output replaced by the run's."""
    lines = list(block.lines)
    if python:
        out = []
        for (code, shown), actual in results:
            out += code
            new = shown_lines(shown, actual)
            out += new if new is not None else []
        return out
    # replace from the last command up, so indexes stay valid
    for cmd, actual in reversed(results):
        new = shown_lines(cmd.shown, actual)
        if new is None:
            continue
        at = cmd.output_at
        end = at
        while end < len(lines) and lines[end].startswith("#"):
            end += 1
        lines[at:end] = new
    return lines


# ---------------------------------------------------------------- a doc

def unfit(block: Block) -> str | None:
    """Why a block cannot be run as marked, or None."""
    if block.directive is None:
        return (f"{block.where()}: a code block with no '<!-- docs: ... -->' before it: say "
                "how it runs (run, python) or why it does not (not run: WHY)")
    if block.kind == "skip" and not block.directive.partition(":")[2].strip():
        return f"{block.where()}: 'not run' says no reason"
    if block.kind not in ("run", "python", "skip"):
        return f"{block.where()}: unknown directive {block.directive!r}"
    return None


def run_block(block: Block, folder: Path, servers: list) -> list[str]:
    """The block's lines with the outputs of its run (a line the same to 1e-9 as the doc's
    stays as it is, so a doc does not flip with a machine's last digits)."""
    env = environment(folder)
    setup = block.option("setup")
    if setup:
        done = subprocess.run(setup, shell=True, cwd=folder, env=env, text=True,
                              capture_output=True, timeout=TIMEOUT)
        if done.returncode:
            raise SystemExit(f"{block.where()}: setup '{setup}' exited {done.returncode}:\n"
                             f"{done.stdout}{done.stderr}")
    if block.kind == "python":
        new = rewrite(block, run_python(block, folder, env), python=True)
    else:
        try:
            new = rewrite(block, run_shell(block, folder, env, servers))
        finally:
            _stop(servers)
    if len(new) == len(block.lines):
        new = [a if same(a, b) else b for a, b in zip(block.lines, new)]
    return new


def process(doc: str, check: bool, compare: bool, work: Path) -> list[str]:
    """Run every block of `doc`; returns the problems found (with --check) and rewrites
    the doc otherwise (only where the outputs are compared: the course's data is here)."""
    path = ROOT / doc
    text = path.read_text()
    problems, replacements, folder, n = [], [], None, 0
    for block in blocks(doc, text):
        why = unfit(block)
        if why or block.kind == "skip":
            problems += [why] if why else []
            continue
        if folder is None or block.option("fresh") or block.option("data"):
            n += 1
            # one length for every folder: a path a file records (the ONNX metadata's data)
            # then takes the same bytes whichever folder a block runs in
            folder = work / f"{Path(doc).stem}-{n:03d}"
            make_world(folder)
            if block.option("data") != "none":
                with_data(folder)
        new = run_block(block, folder, [])
        replacements.append((block, new))
        if compare and check and (len(new) != len(block.lines) or
                                  not all(map(same, block.lines, new))):
            diff = "\n".join(difflib.unified_diff(block.lines, new, "the doc", "the run",
                                                  lineterm="", n=1))
            problems.append(f"{block.where()}: the doc differs from the run:\n{diff}")
    if not check and compare:
        lines = text.split("\n")
        for block, new in reversed(replacements):
            lines[block.start:block.start + len(block.lines)] = [
                block.indent + line if line else "" for line in new]
        path.write_text("\n".join(lines))
    return problems


def _stop(servers):
    while servers:
        p, _ = servers.pop()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("docs", nargs="*", help="docs to run [default: README.md, docs/*.md]")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 where a doc differs from its run")
    args = parser.parse_args(argv)
    compare = have_course()
    if not compare:
        print(f"{COURSE} not found: every block runs on a pair drawn from the demo's sample, "
              "its outputs are not compared" + ("" if args.check else " nor rewritten"))
    problems = []
    work = Path(tempfile.mkdtemp(prefix="catlr-docs-"))
    try:
        for doc in args.docs or DOCS:
            problems += process(doc, args.check, compare, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) > 1 else ''}: run "
              "'python tools/docs.py' to show the outputs as they are" if args.check else "")
        return 1
    print("Every block ran" + (", and each doc shows its output as it is" if compare else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

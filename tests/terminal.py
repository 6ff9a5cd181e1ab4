"""A command's output as a person sees it: run on a pseudo-terminal of a given width (rich
draws there), the bytes played on a small screen that wraps as a terminal does; or piped.
And the checks of issue 29 §3: no word cut, no line over the width but one holding a lone
long path."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time

CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
OSC = re.compile(r"\x1b\][^\x07\x1b]*(\x07|\x1b\\)")
BOX = re.compile(r"[\u2500-\u257f\u2580-\u259f]")  # rich's box drawing and bar blocks


def on_terminal(args, columns: int, cwd, env=None, timeout=180) -> tuple[int, str]:
    """(exit code, the bytes written) of `catlr ARGS` on a pty `columns` wide, stdout and
    stderr both on it, as in a terminal."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, **(env or {}), "COLUMNS": str(columns), "LINES": "50",
           "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    p = subprocess.Popen([sys.executable, "-m", "catlr", *map(str, args)], cwd=cwd, env=env,
                         stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif p.poll() is not None:
                break
            if time.monotonic() > deadline:
                p.kill()
                raise TimeoutError(f"catlr {' '.join(map(str, args))} took over {timeout} s")
        code = p.wait(30)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait(10)
    return code, b"".join(chunks).decode("utf-8", "replace")


def piped(args, cwd, env=None, timeout=180) -> tuple[int, str, str]:
    env = {**os.environ, **(env or {})}
    env.pop("COLUMNS", None)
    done = subprocess.run([sys.executable, "-m", "catlr", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def screen(data: str, width: int) -> list[tuple[str, bool]]:
    """The rows a terminal `width` wide shows for `data`: (text, whether the terminal
    wrapped it onto the next row, because it ran past the last column)."""
    rows, wrapped = [[]], [False]
    r = c = 0
    i = 0

    def row(n):
        while len(rows) <= n:
            rows.append([])
            wrapped.append(False)
        return rows[n]

    while i < len(data):
        ch = data[i]
        if ch == "\x1b":
            m = CSI.match(data, i) or OSC.match(data, i)
            if m is None:
                i += 1
                continue
            if m.re is CSI:
                args, cmd = m.group(1), m.group(2)
                n = int(args) if args.isdigit() else (1 if cmd in "ABCDG" else 0)
                if cmd == "A":
                    r = max(0, r - n)
                elif cmd == "B":
                    r += n
                elif cmd == "C":
                    c += n
                elif cmd == "D":
                    c = max(0, c - n)
                elif cmd == "G":
                    c = n - 1
                elif cmd == "K":
                    cur = row(r)
                    if n == 2:
                        cur.clear()
                    elif n == 0:
                        del cur[c:]
                        wrapped[r] = False
            i = m.end()
            continue
        if ch == "\r":
            c = 0
        elif ch == "\n":
            r, c = r + 1, 0
        elif ch == "\b":
            c = max(0, c - 1)
        elif ch >= " ":
            if c >= width:  # the terminal's own wrap
                wrapped[r] = True
                r, c = r + 1, 0
            cur = row(r)
            while len(cur) < c:
                cur.append(" ")
            if c < len(cur):
                cur[c] = ch
            else:
                cur.append(ch)
            c += 1
        i += 1
    row(r)
    return [("".join(x) if w else "".join(x).rstrip(), w) for x, w in zip(rows, wrapped)]


def _longest_path(line: str) -> str:
    paths = [t for t in line.split() if "/" in t or "\\" in t]
    return max(paths, key=len, default="")


def fits(line: str, width: int) -> bool:
    """A line fits `width`, or runs over it only to hold one long path whole."""
    if len(line) <= width:
        return True
    path = _longest_path(line)
    return bool(path) and len(line) - len(path) <= width


def words(text: str) -> set:
    """The words of some output, box drawing taken out and every number made 0 (a timing
    differs between two runs)."""
    return {re.sub(r"\d+", "0", t) for t in BOX.sub(" ", text).split()}


def problems_on_terminal(data: str, width: int, truth: str) -> list[str]:
    """What a person at a terminal `width` wide would see wrong: a line the terminal had to
    wrap (unless a lone long path made it long), a word that rich cut (a piece that is no
    word of `truth`, the same output in a pipe), a table whose right border rich cropped."""
    out, lines, logical = [], [], ""
    for text, wrapped in screen(data, width):
        logical += text  # a row the terminal wrapped goes on in the next
        if wrapped:
            continue
        if len(logical) > width and not fits(logical, width):
            out.append(f"over {width} columns: {logical!r}")
        lines.append(logical)
        logical = ""
    known = words(truth)
    for text in lines:
        if text.strip()[:1] in "┏┃┡│└╭╰" and text.strip() and text.rstrip()[-1] not in \
                "┓┃┩│┘╮╯":  # a box whose right edge is gone: rich cropped it
            out.append(f"a table cut at the right: {text!r}")
        for w in words(text) - known:
            if w.endswith("…") or any(w in k for k in known if len(k) > len(w)):
                out.append(f"a word cut: {w!r} in {text!r}")
    return out


def problems_piped(text: str, width: int = 80) -> list[str]:
    return [f"over {width} columns in a pipe: {line!r}" for line in text.splitlines()
            if not fits(line, width)]

"""Text that leaves catlr: escaped for a terminal, a spreadsheet cell, a JSON document.

A leaf: the printer (cli/render.py), the server, the pictures and the CSV writers all
escape strings that came from a file through these, so no such string can carry a
terminal's escape sequence, a newline, undecodable bytes or a spreadsheet formula out.
"""

import json
import math
import os
import re


def printable(text: str) -> str:
    """text on one line, printable with any output encoding: control characters (a newline
    in a file name) and undecodable bytes (surrogates) escaped as Python writes them."""
    out = []
    for ch in str(text):
        if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii")
                       if not 0xD800 <= ord(ch) <= 0xDFFF else f"\\x{ord(ch) - 0xDC00:02x}")
    return "".join(out)


FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell that starts so


def cell(value):
    """A CSV cell: a string escaped as printable() escapes it, and quoted so a spreadsheet
    never takes it for a formula (OWASP's rule: a leading ')."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    return "'" + text if text.startswith(FORMULA) else text


def json_text(data) -> str:
    """One JSON document as catlr writes it everywhere (--json, catlr serve): always valid,
    numpy values as Python ones, NaN and infinities as null, every string escaped."""
    return json.dumps(_plain(data), indent=2, allow_nan=False) + "\n"


def _plain(x):
    """x with numpy values as Python ones and non-finite floats as None (JSON has neither)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "tolist"):
        return _plain(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


# one token each: a 'quoted command', a name and its value ('n = 209)'), a word
_TOKEN = re.compile(r"'[^'\s][^']*'[^\s]*|[^\s=]+ = [^\s=]+|\S+")


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """text as lines of at most `width` characters, broken at spaces only: a 'quoted
    command' stays whole on a line when it fits one, and a word longer than a line (a
    long path) is a line of its own, never cut. Lines after the first start with the
    text's own indent and `indent`. A line that fits is left as it is."""
    if "\n" in text:
        return [part for one in text.split("\n") for part in wrap(one, width, indent)]
    if len(text) <= width:
        return [text]
    lead = text[:len(text) - len(text.lstrip(" "))]  # an indent of its own is kept
    lines, line = [], lead
    tokens = []
    for token in _TOKEN.findall(text):
        if " " in token and len(token) > width - len(indent):
            tokens += token.split()  # a quoted command longer than a line: its words
        else:
            tokens.append(token)
    for token in tokens:
        if line.strip() and len(line) + 1 + len(token) > width:
            lines.append(line)
            line = lead + indent + token
        else:
            line = f"{line} {token}" if line.strip() else line + token
    lines.append(line)
    return lines


def columns(stream) -> int | None:
    """The width of the terminal `stream` writes to (COLUMNS first, as rich and click read
    it); None off a terminal."""
    try:
        if not stream.isatty():
            return None
        size = os.environ.get("COLUMNS", "")
        return int(size) if size.isdigit() and int(size) > 0 else \
            os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return None

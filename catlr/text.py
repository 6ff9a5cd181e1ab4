"""Text that leaves catlr: escaped for a terminal, a spreadsheet cell, a JSON document.

A leaf: the printer (cli/render.py), the server, the pictures and the CSV writers all
escape strings that came from a file through these, so no such string can carry a
terminal's escape sequence, a newline, undecodable bytes or a spreadsheet formula out.
"""

import json
import math


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

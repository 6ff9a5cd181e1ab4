"""The one exception type that catlr raises for problems a user can fix."""

import json
import math


class CatlrError(Exception):
    """A problem with the user's data, files or flags, explained in one line.

    The message reads "<what was wrong>, <what to do>"; the CLI prints it after
    "Error: " on stderr and exits with `exit_code` (1: bad data or files).
    """

    exit_code = 1


class UsageError(CatlrError):
    """A flag with a value that cannot work (exit code 2, like Typer's own usage errors)."""

    exit_code = 2


class EngineLost(CatlrError):
    """Where training ran went away mid-run (a Dask scheduler, the connection to it): the
    run's last checkpoint stays, and the CLI says how to go on from it."""


class ParameterError(UsageError, ValueError):
    """A library parameter that cannot work, e.g. LogisticRegression(lr=-1).fit(X, Y).

    A ValueError, as scikit-learn raises for bad parameters, and a CatlrError, so the CLI
    prints it as one line; the message says what was found, what was expected and the fix.
    """


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (temporary files removed, outputs
    intact), and the CLI exits 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


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


def describe(e: BaseException, limit: int = 80) -> str:
    """The first line of an exception's text (its type when it has none), cut to `limit`:
    what catlr quotes from a library's error inside its own one-line message."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


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

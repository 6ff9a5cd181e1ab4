"""The one exception type that catlr raises for problems a user can fix."""


class CatlrError(Exception):
    """A problem with the user's data, files or flags, explained in one line.

    The message reads "<what was wrong>, <what to do>"; the CLI prints it after
    "Error: " on stderr and exits with `exit_code` (1: bad data or files).
    """

    exit_code = 1


class UsageError(CatlrError):
    """A flag with a value that cannot work (exit code 2, like Typer's own usage errors)."""

    exit_code = 2


class Stopped(CatlrError):
    """A run stopped by what it can go on from once that is mended (where it ran went away,
    a checkpoint could not be written): the run's last checkpoint stays, and the CLI says
    which iteration it holds and how to go on from it."""


class EngineLost(Stopped):
    """Where training ran went away mid-run (a Dask scheduler, the connection to it)."""


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


def came_from_interrupt(e: BaseException) -> bool:
    """Whether `e` is Ctrl-C or came from one: a KeyboardInterrupt among its causes and
    contexts. Parts of Python turn an interrupt into another error on its way out:
    threading's Condition, interrupted inside Future.result(), raises RuntimeError("cannot
    release un-acquired lock"); a class being created, RuntimeError("Error calling
    __set_name__"). The console script (entry.py) and the CLI's guard both ask here."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, KeyboardInterrupt):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def describe(e: BaseException, limit: int = 80) -> str:
    """The first line of an exception's text (its type when it has none), cut to `limit`:
    what catlr quotes from a library's error inside its own one-line message."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]

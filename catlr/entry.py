"""The `catlr` console script: Ctrl-C at any moment, even while the CLI's modules are still
importing, ends with one line and exit code 130, never a traceback."""

import gc
import sys


def _handled():
    # A KeyboardInterrupt that passed out of code CPython ran from a string (the methods
    # a dataclass or namedtuple generates while a module imports) leaves the interpreter
    # marked to kill itself with SIGINT at exit under `python -m`, even once caught: the
    # exit status would read -2, not 130. Running a string again clears that mark.
    exec("")


def main():
    clean = False
    try:
        from .cli import main as run

        run()
        clean = True
    except SystemExit as e:
        clean = e.code in (0, None)
        if e.code == 130:  # Ctrl-C, said in one line by the CLI
            _handled()
        raise
    except (KeyboardInterrupt, RuntimeError, ImportError) as e:
        # imported here, once it is needed: an interrupt that lands inside a class being
        # created arrives wrapped ("RuntimeError: Error calling __set_name__")
        from .errors import came_from_interrupt

        if not came_from_interrupt(e):
            raise
        print("Interrupted", file=sys.stderr)
        _handled()
        sys.exit(130)
    finally:
        if clean:
            # The interpreter's teardown collects every object the imports made, numpy's
            # and typer's included, only for the process to give the memory back anyway:
            # frozen, they are skipped (bench/startup.py). Files, atexit handlers and
            # finalizers are unaffected: catlr closes what it writes, and atexit runs
            # before that collection. A stopped run is collected as usual, so whatever it
            # left suspended is finalized before the modules are torn down.
            gc.freeze()

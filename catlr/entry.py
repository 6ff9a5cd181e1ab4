"""The `catlr` console script: Ctrl-C at any moment, even while the CLI's modules are still
importing, ends with one line and exit code 130, never a traceback."""

import sys


def main():
    try:
        from .cli import main as run

        run()
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        sys.exit(130)

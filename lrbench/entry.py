"""The ``lrbench`` console script's first lines: signals before the heavy imports.

Importing the command line pulls in torch and Optuna (seconds). A Ctrl-C or SIGTERM in
that time must end the command with 130 or 143, like at any other moment, not with an
import traceback.
"""

from __future__ import annotations

import signal
import sys

from lrbench.errors import Terminated, signal_of


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process ended by it."""
    return 128 + signal_of(interrupt)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        from lrbench.cli import main as cli_main
    except KeyboardInterrupt as interrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(exit_code(interrupt))
    try:
        cli_main()
    finally:
        # The command is done and only exiting is left (loky joins its threads at exit): a
        # late Ctrl-C there would print an "ignored exception" traceback and change nothing.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

"""The ``lrbench`` console script's first lines: signals before the heavy imports.

Importing the command line pulls in Optuna, and a command that trains (``sweep``,
``confirm``) the sweep machinery too (a second). A Ctrl-C or SIGTERM in that time must
end the command with 130 or 143, like at any other moment, not with an import traceback.
So the imports run with both signals held, and one that came in ends the command as soon
as they are done. torch is not among them: only a slot's process trains, and a sweep's
parent imports torch only for a GPU or a user's model (``lrbench.torch_import``, which
holds the signals the same way).
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import sys

from lrbench.errors import Terminated, exit_code
from lrbench.report import GC_THRESHOLD


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def _no_fork_server() -> None:
    """Nothing to end: no workers' fork server was started."""


class _HeldSignals:
    """Record SIGINT and SIGTERM instead of raising them, until ``release``."""

    def __init__(self) -> None:
        self.received: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._hold)

    def _hold(self, signum: int, frame: object) -> None:
        self.received.append(signum)

    def release(self) -> int | None:
        """Back to raising; the first signal held, if any."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _terminated)
        return self.received[0] if self.received else None


# The commands that train, and the module that imports what they run with.
TRAINING_COMMANDS = ("sweep", "confirm")
TRAINING_MODULE = "lrbench.sweep.run"


def trains(args: list[str]) -> bool:
    """Whether these arguments train: a sweep or confirm that is not a request for help."""
    return (bool(args) and args[0] in TRAINING_COMMANDS
            and not any(a in ("-h", "--help") for a in args))


def asks_for_sequential(args: list[str]) -> bool:
    """Whether the command line names the sequential engine (its slots import more)."""
    return "--engine=sequential" in args or any(
        flag == "--engine" and value == "sequential" for flag, value in zip(args, args[1:]))


def starts_local_slots(args: list[str]) -> bool:
    """Whether these arguments run slots on this machine: a command that trains, not on
    a cluster. (A wrong guess only costs a process.)"""
    return (trains(args) and not any(a.startswith("--cluster") for a in args)
            and not os.environ.get("LRBENCH_CLUSTER"))


def main() -> None:
    if sys.argv[1:2] == [REPORT_COMMAND]:
        gc.set_threshold(*GC_THRESHOLD)
    held = _HeldSignals()
    end_fork_server = _no_fork_server
    try:
        if starts_local_slots(sys.argv[1:]):
            # The workers' fork server imports torch while this one imports the rest
            # (processes.workers).
            from lrbench.sweep.processes import workers
            workers.start_fork_server(sequential=asks_for_sequential(sys.argv[1:]))
            end_fork_server = workers.end_fork_server
        from lrbench.cli import main as cli_main
        if trains(sys.argv[1:]):  # here while the signals are held (the CLI would import
            importlib.import_module(TRAINING_MODULE)  # it later, when it trains)
    except BaseException:  # (a bad LRBENCH_* wait exits while these modules load)
        end_fork_server()
        raise
    finally:
        signum = held.release()
    if signum is not None:
        end_fork_server()
        print("interrupted", file=sys.stderr)
        sys.exit(exit_code(signum))
    try:
        cli_main()
    finally:
        end_fork_server()  # done with it (it may still be importing, after a user error)
        # The command is done and only exiting is left (loky joins its threads at exit): a
        # late Ctrl-C there would print an "ignored exception" traceback and change nothing.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.argv[1:2] == [REPORT_COMMAND]:
        quick_exit()


# The command that allocates millions of objects and frees few, and so collects garbage
# less often (lrbench.report.GC_THRESHOLD); whose process holds nothing to clean up once
# it is done (its drawing processes joined, its files closed); and whose Python teardown,
# freeing every object of pandas, matplotlib, scipy and the studies read, took 0.4 s of
# its ~12: it exits without one (``quick_exit``).
REPORT_COMMAND = "report"


def quick_exit() -> None:
    """Exit with 0 now, without freeing anything (as mypy's ``util.hard_exit`` does):
    what is buffered for stdout, stderr or a log is written first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

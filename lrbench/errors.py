"""Errors that are the user's to fix, and the interrupts that stop a command.

The CLI turns every ``UserError`` into one clear message and exit code 2, with
no traceback; anything else is a bug in lrbench and exits 1. Ctrl-C and SIGTERM
exit 130 and 143.
"""

from __future__ import annotations

import signal


class UserError(Exception):
    """Bad input from the user (a sweep file, a flag, a missing data set)."""


class ConfigError(UserError):
    """A sweep file that cannot be used: names the file, the key and the bad value."""

    def __init__(self, path: object, key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        super().__init__(f"{self.path}: {key}: {message}")


class DataNotFoundError(UserError):
    """A data set that is neither on disk nor downloadable from here."""


class StorageError(UserError):
    """A storage that cannot be used as it is: damaged, full, or locked by a hung process.

    Nothing was lost: the message says what was found and what to do.
    """


class StorageOutage(StorageError):
    """A server storage that stayed unreachable for longer than the sweep waits."""


class LockTimeout(StorageError):
    """A lock on the storage that another process held for longer than the wait allowed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm and ``kill`` send), handled exactly like Ctrl-C; exit code 143."""


def signal_of(interrupt: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: SIGTERM for ``Terminated``, else SIGINT (Ctrl-C)."""
    return signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT


def exit_code(signum: int) -> int:
    """128 + the signal's number, as a shell reports a process ended by it."""
    return 128 + signum

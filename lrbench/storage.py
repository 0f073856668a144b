"""Where studies live: an embedded journal file under results/, or any Optuna URL.

The default is Optuna's ``JournalStorage`` on a ``JournalFileBackend``: one append-only
file that many processes can write at once (SQLite is ruled out for parallel
writers by Optuna's FAQ), and that ``optuna-dashboard results/lrbench.journal`` opens.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

from lrbench.errors import UserError

DEFAULT_JOURNAL = "lrbench.journal"


def storage_location(storage: str | None, results_dir: str | Path) -> str:
    """The storage as a string a worker process can reopen: a URL or a file path."""
    if storage:
        return storage
    return str(Path(results_dir) / DEFAULT_JOURNAL)


def is_url(location: str) -> bool:
    return "://" in location


def open_storage(location: str, *, create: bool = True) -> BaseStorage:
    """Open a storage URL (``postgresql://``, ``sqlite:///``, ``redis://``) or journal file."""
    if location.startswith("redis://"):
        try:
            return JournalStorage(JournalRedisBackend(location))
        except ImportError as err:  # the redis package is optional
            raise UserError(f"--storage {location}: {err}") from None
        except Exception as err:  # redis.ConnectionError and kin
            raise UserError(f"--storage {location}: cannot connect: {err}") from None
    if is_url(location):
        try:
            return optuna.storages.RDBStorage(location)
        except (ImportError, ValueError) as err:  # unknown dialect, missing driver
            raise UserError(f"--storage {location}: cannot open it: {err}") from None
        except Exception as err:  # sqlalchemy's OperationalError: server down, bad credentials
            if type(err).__module__.startswith("sqlalchemy"):
                raise UserError(f"--storage {location}: cannot connect: {err}") from None
            raise
    path = Path(location)
    if not path.exists():
        if not create:
            raise UserError(f"no lrbench storage at {path} (run `lrbench sweep` first, or pass "
                            f"--results DIR / --storage URL)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the results folder {path.parent}: {err}") from None
    if path.is_dir():
        raise UserError(f"--storage {path} is a folder; give a journal file or a URL")
    try:
        return JournalStorage(JournalFileBackend(str(path)))  # replays the journal: reads it all
    except (ValueError, UnicodeDecodeError) as err:  # json.JSONDecodeError is a ValueError
        raise UserError(f"{path} is not an Optuna journal file ({err})") from None


@contextlib.contextmanager
def claim_lock(location: str, study: str) -> Iterator[None]:
    """Serialise "count the trials, then ask for one" between processes on this machine.

    Without it two slots can both see 9 of 10 trials and both start a tenth. A file
    lock beside a journal file covers every process on this machine; for a database
    URL (several machines) there is no shared folder, and a sweep may overshoot its
    trial count by at most one trial per extra worker.
    """
    if is_url(location):
        yield
        return
    lock_path = Path(location).with_name(f".{Path(location).name}.{study}.claim")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]

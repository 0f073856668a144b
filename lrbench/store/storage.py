"""Where studies live: an embedded journal file under results/, Optuna's journal on a
Redis server (``redis://``, ``lrbench.store.redis_journal``: the cluster storage), or any
Optuna RDB URL.

The default is Optuna's ``JournalStorage`` on a journal file: one append-only file
that many processes can write at once (SQLite is ruled out for parallel writers by
Optuna's FAQ), and that ``optuna-dashboard results/lrbench.journal`` opens. lrbench
writes it through ``lrbench.store.journal``, which keeps it readable after crashes.
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage

from lrbench.errors import StorageError, UserError
from lrbench.store import journal, outage, redis_journal

log = logging.getLogger(__name__)

DEFAULT_JOURNAL = "lrbench.journal"


def storage_location(storage: str | None, results_dir: str | Path) -> str:
    """The storage as a string a worker process can reopen: a URL or a file path."""
    if storage:
        return storage
    return str(Path(results_dir) / DEFAULT_JOURNAL)


def is_url(location: str) -> bool:
    return "://" in location


def shown(location: str) -> str:
    """The storage as lrbench prints it: a URL's password masked (``user:***@host``).

    Every message, page and command line shows this; only worker processes get the
    real URL. libpq reads a password left out from PGPASSWORD or ~/.pgpass.
    """
    if not is_url(location):
        return location
    parts = urllib.parse.urlsplit(location)
    if parts.password is None:
        return location
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _scrubbed(location: str, err: BaseException) -> str:
    """An error's text with the URL's password masked, wherever the driver echoed it."""
    text = str(err)
    password = urllib.parse.urlsplit(location).password if is_url(location) else None
    return text.replace(location, shown(location)).replace(password, "***") if password \
        else text


def open_storage(location: str, *, create: bool = True, warn: bool = True,
                 waits: bool = False) -> BaseStorage:
    """Open a storage URL (``postgresql://``, ``sqlite:///``, ``redis://``) or journal file.

    A server that cannot be reached is the user's error at once (a wrong host or port),
    unless ``waits``: a worker opening the sweep's storage, which the parent has reached,
    waits out an outage (``lrbench.store.outage``) like every later call.
    """
    if not is_url(location):
        return open_journal(Path(location), create=create, warn=warn)
    if waits:
        return outage.retrying(_open_server, shown(location))(location)
    try:
        if create and redis_journal.is_redis(location):
            problem = redis_journal.persistence_problem(location)
            if problem:
                raise UserError(f"--storage {shown(location)}: {problem}")
        return _open_server(location)
    except (ImportError, ValueError) as err:  # unknown dialect, missing driver or package
        raise UserError(f"--storage {shown(location)}: cannot open it: "
                        f"{_scrubbed(location, err)}{_driver_hint(location)}") from None
    except Exception as err:  # server down, bad credentials (sqlalchemy's, redis's errors)
        if type(err).__module__.startswith(("sqlalchemy", "redis")):
            raise UserError(f"--storage {shown(location)}: cannot connect: "
                            f"{_scrubbed(location, err)}") from None
        raise


# The extra that installs each server storage's driver (pyproject.toml).
DRIVER_EXTRAS = {"redis": "redis", "rediss": "redis", "postgresql": "postgres"}


def _driver_hint(location: str) -> str:
    scheme = location.split("://", 1)[0].split("+", 1)[0]
    extra = DRIVER_EXTRAS.get(scheme)
    return f" (pip install 'lrbench-sweeps[{extra}]' installs its driver)" if extra else ""


def _open_server(location: str) -> BaseStorage:
    """A server storage whose every call waits out an outage (``lrbench.store.outage``)."""
    if redis_journal.is_redis(location):
        backend = redis_journal.RedisJournal(location, shown(location))
        return JournalStorage(outage.wait_out_outages(backend, shown(location)))
    storage = optuna.storages.RDBStorage(location)
    if location.startswith("sqlite"):  # a local file: no connection to lose
        return storage
    return outage.wait_out_outages(storage, shown(location))


def open_journal(path: Path, *, create: bool = True, warn: bool = True) -> JournalStorage:
    """Open a journal file: refuse anything else, repair a torn tail, name damage exactly.

    A writer (``create=True``: sweep, confirm) moves a torn tail to a side file under
    the journal's lock before Optuna reads it; a reader (report, list) leaves the file
    alone and only warns (unless ``warn`` is off: the report says it on its page), as
    Optuna skips the torn bytes anyway.
    """
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
    # Refuses a file that is no journal, before anything (even a lock file) is written.
    health = journal.inspect(path) if path.exists() else None
    try:
        backend = journal.SafeJournalBackend(str(path))
        if create and health and health.torn_bytes:
            with backend.lock:  # look again under the lock: another writer may have moved it
                journal.move_torn_tail(journal.inspect(path))
    except OSError as err:  # a read-only folder, say
        raise UserError(f"cannot open {path} for writing: {err.strerror}") from None
    if warn and not create and health and health.torn_bytes:
        log.warning("%s ends in %d torn bytes (an interrupted write); they are skipped, "
                    "and the next sweep moves them to a side file", path, health.torn_bytes)
    try:
        return JournalStorage(backend)  # replays the journal: reads it all
    except (ValueError, UnicodeDecodeError):  # json.JSONDecodeError is a ValueError
        raise StorageError(journal.locate_damage(path)) from None


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]

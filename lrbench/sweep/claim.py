"""The claim lock: "count the study's trials, then start more" as one step, across processes.

Without it two slots can both see 9 of 10 trials and both start a tenth. The lock lives
where every claimant can reach it:

- a journal file, or a ``sqlite:///`` file: an ``flock`` on a file beside it (every
  claimant is on this machine, or shares its file system);
- ``postgresql://``: a session advisory lock in the server itself, so slots on many
  machines exclude each other; the server drops it when a claimant's connection dies;
- any other URL (MySQL, Redis): no shared lock exists, and a sweep may overshoot its
  trial count by at most one trial per extra slot (the README says so).

Every wait has a timeout and names what it waited for.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lrbench.errors import LockTimeout
from lrbench.sweep import outage
from lrbench.sweep.journal import FlockLock
from lrbench.sweep.storage import shown

log = logging.getLogger(__name__)

# A claim takes milliseconds; minutes mean a hung claimant. As long as the journal's
# lock wait (lrbench.sweep.journal.LOCK_TIMEOUT_SECONDS), for the same reason.
CLAIM_TIMEOUT_SECONDS = 600.0
_engines: dict[str, Any] = {}  # one SQLAlchemy engine per URL and process
_warned: set[str] = set()


def exact_claims(location: str) -> bool:
    """Whether claims on this storage are exclusive (else the count may overshoot)."""
    return "://" not in location or location.startswith(("sqlite:///", "postgresql"))


@contextlib.contextmanager
def claim_lock(location: str, study: str,
               timeout: float = CLAIM_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the study's claim lock on the storage at ``location`` (a URL or journal path)."""
    if location.startswith("postgresql"):
        with _advisory_lock(location, study, timeout):
            yield
        return
    if location.startswith("sqlite:///") and location != "sqlite:///:memory:":
        location = location.removeprefix("sqlite:///")
    elif "://" in location:
        if location not in _warned:
            _warned.add(location)
            log.warning("%s has no shared lock: with several slots, the study may end with up "
                        "to one extra trial per slot", location.split("://")[0])
        yield
        return
    path = Path(location)
    with FlockLock(path.with_name(f".{path.name}.{study}.claim"), timeout):
        yield


def _advisory_key(study: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock``, the same in every process."""
    digest = hashlib.sha256(f"lrbench claim {study}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory_lock(url: str, study: str, timeout: float) -> Iterator[None]:
    import sqlalchemy

    if url not in _engines:
        _engines[url] = sqlalchemy.create_engine(url, pool_size=1, pool_pre_ping=True)
    key = {"key": _advisory_key(study)}
    # A server restart while it is taken is waited out (lrbench.sweep.outage).
    connection = outage.retrying(_locked_connection, shown(url))(
        _engines[url], key, study, timeout)
    try:
        yield
    finally:
        try:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), key)
            connection.commit()
        except Exception as err:  # the server went while it was held: so did the lock
            if not outage.is_transient(err):
                raise
        finally:
            connection.close()


def _locked_connection(engine: Any, key: dict[str, int], study: str, timeout: float) -> Any:
    """A connection whose session holds the study's advisory lock."""
    import sqlalchemy

    connection = engine.connect()
    try:
        deadline = time.monotonic() + timeout
        try_lock = sqlalchemy.text("SELECT pg_try_advisory_lock(:key)")
        while not connection.execute(try_lock, key).scalar():
            if time.monotonic() > deadline:
                raise LockTimeout(f"waited {timeout:.0f} s for study {study!r}'s claim lock "
                                  f"(a PostgreSQL advisory lock); is another lrbench hung?")
            time.sleep(0.02)
    except BaseException:
        connection.close()
        raise
    return connection

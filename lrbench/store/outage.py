"""Storage outages waited out: a PostgreSQL restart or a network blip is not a failed sweep.

Every call lrbench or Optuna makes on a server storage (PostgreSQL, MySQL, Redis) goes
through ``retrying``: a call that fails because the connection failed (the server is
restarting, unreachable, or dropped the connection) is made again, after 0.5 s, then
1, 2, 4 and 8 s apart, for up to ``wait_seconds()`` (``--storage-wait``, default
``DEFAULT_WAIT_SECONDS``). The first failure is said on the terminal, and so is the
return. Past the bound, ``StorageOutage`` says how long it waited: the sweep stops in
one line, and a rerun resumes it (its RUNNING trials' workers are gone by then, so they
are recovered at once).

Each storage method is one transaction (Optuna's RDB storage commits per call), so a
call retried after a failed connection was not half done. The one ambiguity, a commit
whose answer was lost with the connection, can at worst leave one extra trial, unclaimed:
it is failed and re-queued like a dead worker's, and never counts.

A worker waiting here marks progress (``set_wait_seconds``' ``on_wait``, the slot's
``lifeline.progressed``): it is not stuck.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from lrbench.errors import StorageOutage

log = logging.getLogger(__name__)

DEFAULT_WAIT_SECONDS = 300.0
FIRST_DELAY_SECONDS = 0.5
LONGEST_DELAY_SECONDS = 8.0
_wait = DEFAULT_WAIT_SECONDS  # process-wide: the parent's flag, and each worker's job


def _nothing() -> None:
    """Where no one watches this process for progress (the parent)."""


_on_wait: Callable[[], None] = _nothing  # called at each retry: a slot marks progress

# What a lost or refused connection raises, by exception class name, wherever it sits
# in the chain (Optuna wraps SQLAlchemy's errors in StorageInternalError; SQLAlchemy
# wraps the driver's): the drivers are optional, so their classes are not imported.
_TRANSIENT = {
    "OperationalError",  # psycopg2, SQLAlchemy, MySQLdb: server down, connection dropped
    "InterfaceError",  # psycopg2: the connection is already closed
    "ConnectionError",  # redis, and the built-in one
    "TimeoutError",  # redis, and the built-in one
    "BusyLoadingError",  # redis, restarted and still reading its data from disk
    "ConnectionRefusedError",
    "ConnectionResetError",
    "BrokenPipeError",
}

T = TypeVar("T")


class _OptunaFallbackNoise(logging.Filter):
    """Optuna's RDB storage logs a whole failed SQL statement (a dozen lines) when a read
    fails and it tries a slower one. When the connection is what failed, the slower one
    fails too, and ``retrying`` says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Caught an error from sqlalchemy")
                    and "connection" in message.lower())


logging.getLogger("optuna.storages._rdb.storage").addFilter(_OptunaFallbackNoise())


def set_wait_seconds(seconds: float, on_wait: Callable[[], None] = _nothing) -> None:
    """How long to wait an outage out, and what to call at each retry (a slot's mark of
    progress: waiting is not being stuck)."""
    global _wait, _on_wait
    _wait, _on_wait = seconds, on_wait


def wait_seconds() -> float:
    return _wait


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a connection failure, not a bad request."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _TRANSIENT or getattr(current, "connection_invalidated",
                                                            False):
            return True
        current = current.__cause__ or current.__context__
    return False


def _brief(err: BaseException) -> str:
    """The root cause's first line: the driver's words, not the wrappers'."""
    while err.__cause__ is not None:
        err = err.__cause__
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:200]}"


def retrying(call: Callable[..., T], shown: str) -> Callable[..., T]:
    """``call``, made again while it fails for a lost connection, up to ``wait_seconds``.

    ``shown``: the storage as it may be printed (its password masked)."""

    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        failing_since = None
        delay = FIRST_DELAY_SECONDS
        while True:
            try:
                result = call(*args, **kwargs)
            except Exception as err:
                if not is_transient(err):
                    raise
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    log.warning("storage %s unreachable (%s); retrying for up to %.0f s",
                                shown, _brief(err), _wait)
                if now - failing_since >= _wait:
                    raise StorageOutage(
                        f"storage {shown} unreachable for {now - failing_since:.0f} s "
                        f"(--storage-wait {_wait:g}; last: {_brief(err)}); finished trials "
                        f"are kept: run the same command to resume") from None
                _on_wait()  # waiting, not stuck
                time.sleep(min(delay, max(0.0, failing_since + _wait - now)))
                delay = min(delay * 2, LONGEST_DELAY_SECONDS)
                continue
            if failing_since is not None:
                log.warning("storage %s is back after %.0f s", shown,
                            time.monotonic() - failing_since)
            return result

    return wrapper


# The methods through which Optuna (and its cache, ``_CachedStorage``) reaches a storage.
_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
    "set_trial_param", "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial", "get_all_trials", "get_n_trials", "get_best_trial", "record_heartbeat",
    "_get_stale_trial_ids", "_create_new_trial", "_get_trials", "_set_trial_param",
    "_get_best_trial_id", "read_logs", "append_logs", "load_snapshot", "save_snapshot",
)


def wait_out_outages(target: T, shown: str) -> T:
    """``target`` (an RDB storage, or a journal's Redis backend) with each of its storage
    methods ``retrying``: on this object, so Optuna's own wrappers keep working."""
    for name in _METHODS:
        method = getattr(target, name, None)
        if callable(method):
            setattr(target, name, retrying(method, shown))
    return target

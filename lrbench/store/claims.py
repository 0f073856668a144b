"""Claims: the claim lock, who is running which trial, and recovering dead workers' trials.

The claim lock makes "count the study's trials, then start more" one step, across
processes. Without it two slots can both see 9 of 10 trials and both start a tenth. The lock lives
where every claimant can reach it:

- a journal file, or a ``sqlite:///`` file: an ``flock`` on a file beside it (every
  claimant is on this machine, or shares its file system);
- ``postgresql://``: a session advisory lock in the server itself, so slots on many
  machines exclude each other; the server drops it when a claimant's connection dies;
- ``redis://``: redis-py's lock in the server, its value naming the holder. A holder
  on this machine that died is seen dead and its lock broken at once; one elsewhere
  frees it when it expires (``REDIS_LOCK_EXPIRES_SECONDS``);
- any other URL (MySQL): no shared lock exists, and a sweep may overshoot its trial
  count by at most one trial per extra slot (the README says so).

Every wait has a timeout and names what it waited for.

Each trial a slot trains carries its claim (``lrbench.store.record.Claim``: host, pid,
heartbeat). A RUNNING trial whose process is gone (on this machine) or whose heartbeat is
stale (elsewhere) is failed and its configuration re-queued (``recover_stale_trials``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import logging
import re
import socket
import time
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

from lrbench.errors import LockTimeout
from lrbench.store import outage, redis_journal
from lrbench.store.journal import FlockLock
from lrbench.store.record import (
    Claim,
    claim_of,
    failed_record,
    plan_attrs,
    plan_of,
    record_of,
    trained_seeds,
    write_record,
)
from lrbench.store.storage import is_url, shown
from lrbench.train.trial import TrialSpec

log = logging.getLogger(__name__)

# A claim takes milliseconds; minutes mean a hung claimant. As long as the journal's
# lock wait (lrbench.store.journal.LOCK_TIMEOUT_SECONDS), for the same reason.
CLAIM_TIMEOUT_SECONDS = 600.0
_engines: dict[str, Any] = {}  # one SQLAlchemy engine per URL and process
_warned: set[str] = set()


def exact_claims(location: str) -> bool:
    """Whether claims on this storage are exclusive (else the count may overshoot)."""
    return (not is_url(location) or location.startswith(("sqlite:///", "postgresql"))
            or redis_journal.is_redis(location))


@contextlib.contextmanager
def claim_lock(location: str, study: str,
               timeout: float = CLAIM_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the study's claim lock on the storage at ``location`` (a URL or journal path)."""
    if location.startswith("postgresql"):
        with _advisory_lock(location, study, timeout):
            yield
        return
    if redis_journal.is_redis(location):
        with _redis_lock(location, study, timeout):
            yield
        return
    if location.startswith("sqlite:///") and location != "sqlite:///:memory:":
        location = location.removeprefix("sqlite:///")
    elif is_url(location):
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
    # A server restart while it is taken is waited out (lrbench.store.outage).
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


# A claim takes milliseconds. A Redis lock whose holder died on another machine frees
# itself after this; a holder paused for longer (SIGSTOP) may see another slot claim too.
REDIS_LOCK_EXPIRES_SECONDS = 60.0
_redis_clients: dict[str, Any] = {}  # one connection pool per URL and process
# A Redis lock's value: who holds it, so a waiter can name it, or find it dead.
_HOLDER = re.compile(r"^(?P<host>\S+) pid (?P<pid>\d+) started (?P<started>[\d.]+) \w+$")
# Delete the lock only if it still holds the value seen: atomically, in the server.
_BREAK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


@contextlib.contextmanager
def _redis_lock(url: str, study: str, timeout: float) -> Iterator[None]:
    import redis

    client = _redis_clients.get(url) or _redis_clients.setdefault(url, redis.Redis.from_url(url))
    name = f"lrbench:claim:{study}"
    lock = client.lock(name, timeout=REDIS_LOCK_EXPIRES_SECONDS, sleep=0.01)
    me = psutil.Process()
    token = f"{socket.gethostname()} pid {me.pid} started {me.create_time():.3f} " \
            f"{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    acquire, get, run = (outage.retrying(call, shown(url))
                         for call in (lock.acquire, client.get, client.eval))
    while not acquire(token=token, blocking_timeout=max(0.0, min(
            0.5, deadline - time.monotonic()))):
        holder = (get(name) or b"").decode(errors="replace")
        if holder and _dead_here(holder):
            run(_BREAK, 1, name, holder)  # as the kernel drops a dead process's flock
            continue
        if time.monotonic() >= deadline:
            raise LockTimeout(f"waited {timeout:.0f} s for study {study!r}'s claim lock (the "
                              f"Redis key {name!r} on {shown(url)}, held by "
                              f"{holder or 'nobody any more'}); is that lrbench hung?")
    try:
        yield
    finally:
        with contextlib.suppress(redis.exceptions.LockNotOwnedError):
            # (expired while held: a paused holder; another slot may have claimed meanwhile)
            outage.retrying(lock.release, shown(url))()


def _dead_here(holder: str) -> bool:
    """Whether a Redis lock's holder is a process of this machine that has died."""
    found = _HOLDER.match(holder)
    return (found is not None and found["host"] == socket.gethostname()
            and not process_alive(int(found["pid"]), float(found["started"])))


# --- who is running what: liveness, so a dead worker's trial can be recovered ---

# A RUNNING trial from another machine whose heartbeat (written at most once a minute:
# lrbench.sweep.slot.HEARTBEAT_SECONDS) is older than this is taken as dead. On this
# machine the worker's process is checked directly.
STALE_AFTER_SECONDS = 30 * 60
# A RUNNING trial not yet marked with its owner, older than this, seen by a process that
# holds the claim lock, was asked by a process that died before it could mark it: askers
# mark their trials before they release the lock. (Only storages without a shared claim
# lock need the seconds: see the top of this module.)
UNMARKED_AFTER_SECONDS = 2.0


def new_claim(trial: optuna.Trial, spec: TrialSpec, slot_index: int, device: str,
              sampler_seed: int | None = None, worker: str = "") -> Claim:
    """This process's claim on a trial it is about to train (write it with record.write_claim)."""
    me = psutil.Process()
    return Claim(host=socket.gethostname(), pid=me.pid, pid_started=me.create_time(),
                 slot=slot_index, device=device, seed=spec.seed,
                 data_seed=spec.data_seed if spec.data_seed is not None else spec.seed,
                 sampler_seed=sampler_seed, heartbeat=time.time(), worker=worker)


def worker_alive(trial: FrozenTrial, dead: Collection[tuple[str, int]] = ()) -> bool:
    """Whether a RUNNING trial's worker still lives (its process here, its heartbeat
    elsewhere); ``dead``: (host, pid) of processes known dead (a lost Dask worker)."""
    claim = claim_of(trial)
    if claim is None:  # asked but not yet claimed: alive only while still claiming
        started = trial.datetime_start or datetime.datetime.now()
        return (datetime.datetime.now() - started).total_seconds() < UNMARKED_AFTER_SECONDS
    if (claim.host, claim.pid) in dead:
        return False
    if claim.host != socket.gethostname():
        return time.time() - claim.heartbeat < STALE_AFTER_SECONDS
    return process_alive(claim.pid, claim.pid_started)


def process_alive(pid: int, started: float) -> bool:
    """Whether the process ``pid``, started at ``started`` (epoch seconds), runs on this
    machine. The same pid with another start time is a new process that reused the
    number; a zombie (killed, not yet reaped by its parent) is dead."""
    try:
        process = psutil.Process(pid)
        return (abs(process.create_time() - started) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


DIED_REASON = "its worker process died or was interrupted; re-queued"


def recover_stale_trials(study: optuna.Study,
                         dead: Collection[tuple[str, int]] = ()) -> list[int]:
    """Fail trials left RUNNING by dead workers and queue their configs again.

    Hold the study's claim lock (``claim_lock``): then no live asker is between
    asking a trial and marking it as its own.
    """
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker_alive(trial, dead):
            continue
        try:
            # Optuna has no public setter for another process's trial attributes.
            write_record(study, trial._trial_id, failed_record(
                trial, DIED_REASON))
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another sweep recovered it first
            continue
        requeue(study, trial)
        recovered.append(trial.number)
    return recovered


def requeued_trials_of(study: optuna.Study, host: str, pid: int) -> list[int]:
    """The trials the process ``pid`` on ``host`` held when it died, now re-queued by
    whoever recovered them first (the parent, or another slot as it asked)."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if (claim := claim_of(t)) is not None and (claim.host, claim.pid) == (host, pid)
            and (record := record_of(t)) is not None and record.reason == DIED_REASON]


def requeue(study: optuna.Study, trial: FrozenTrial | optuna.Trial) -> None:
    """Queue the trial's configuration again, with the seeds it trained with."""
    plan = dataclasses.replace(plan_of(trial), requeued_from=trial.number)
    trained = trained_seeds(trial)
    if trained is not None:
        plan = dataclasses.replace(plan, seed=trained[0], data_seed=trained[1])
    study.enqueue_trial(trial.params, user_attrs=plan_attrs(plan))

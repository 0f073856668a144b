"""Optuna's journal on a Redis server: the cluster storage as cheap as the local file.

Optuna writes its journal to Redis as one key per log entry (``:log:N``) and a counter
(``:log_number``); ``JournalRedisBackend`` is its own backend for that format, and
lrbench keeps the format exactly, so Optuna and optuna-dashboard read what lrbench wrote.
``RedisJournal`` adds what the file journal has:

- **lost data is refused.** A Redis that keeps nothing on disk and restarts comes back
  empty, and Optuna would go on appending entries from number 0, under a study it no
  longer has. Each process remembers how many entries it has read and the journal's
  identity (a random id its first lrbench writer stores beside it), and every read and
  append checks that the counter has not gone back and the identity is the same (inside
  the server-side script that appends). A writer also refuses, at the start, a server
  configured to keep nothing on disk (``persistence_problem``).
- **damage is named**: a missing or unparsable entry names its key. (Optuna's reader
  waits forever for a missing entry.)
- **reads and writes are batched**: a thousand entries per read, and a slot's writes
  of one step (``record.batched_writes``) in one server-side script, not one each.

The study's claim lock on Redis is in ``lrbench.store.claims``.
"""

from __future__ import annotations

import json
import uuid
import warnings
from typing import Any

import optuna
from optuna.storages.journal import JournalRedisBackend

from lrbench.errors import StorageError
from lrbench.store.journal import BatchedAppends

READ_BATCH = 1000  # entries per MGET: one round trip each
LOST = "LRBENCH_LOST"  # the append script's refusal, recognised by its text

# Append entries in one round trip, unless the server lost what this process read: its
# counter went back, or its journal is another (its identity, set by the first lrbench
# writer, changed). KEYS: the counter, the identity; ARGV: the key prefix, the entries
# this process has read, the identity it knows ('' if none yet), a new identity (set if
# the journal has none), then the entries. Returns the counter and the identity.
_APPEND = """
local last = redis.call('get', KEYS[1])
local identity = redis.call('get', KEYS[2])
local seen = tonumber(ARGV[2])
if (ARGV[3] ~= '' and identity ~= ARGV[3]) or (last == false and seen > 0)
    or (last ~= false and tonumber(last) + 1 < seen) then
  return redis.error_reply('LRBENCH_LOST ' .. (last or '-1'))
end
if identity == false then
  identity = ARGV[4]
  redis.call('set', KEYS[2], identity)
end
if last == false then redis.call('set', KEYS[1], -1) end
for i = 5, #ARGV do
  local n = redis.call('incr', KEYS[1])
  redis.call('set', ARGV[1] .. ':log:' .. n, ARGV[i])
end
return {redis.call('get', KEYS[1]), identity}
"""


def is_redis(location: str) -> bool:
    return location.startswith(("redis://", "rediss://"))


class RedisJournal(BatchedAppends, JournalRedisBackend):
    """Optuna's Redis journal backend with lrbench's integrity checks (see the module)."""

    def __init__(self, url: str, shown: str) -> None:
        with warnings.catch_warnings():  # a supported storage here: no "experimental" line
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(url)
        self._shown = shown
        self._seen = 0  # entries this process has read: the counter may never go below
        self._identity = b""  # the journal's identity, once this process has seen one

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:  # type: ignore[override]
        """Every entry from ``log_number_from`` on, read in batches; a list, not a
        generator, so a read cut by an outage is retried whole (``outage.retrying``)."""
        last, identity = self._redis.mget([self._counter, self._identity_key])
        total = -1 if last is None else int(last)
        if total + 1 < self._seen or (self._identity and identity != self._identity):
            raise self._lost(total + 1)
        entries = []
        for start in range(log_number_from, total + 1, READ_BATCH):
            numbers = range(start, min(start + READ_BATCH, total + 1))
            for number, raw in zip(numbers, self._redis.mget(
                    [self._key_log_id(n) for n in numbers])):
                entries.append(self._parsed(number, raw))
        self._seen = max(self._seen, total + 1)
        self._identity = identity or b""
        return entries

    def _write_logs(self, logs: list[dict[str, Any]]) -> None:
        from redis.exceptions import ResponseError

        try:
            last, identity = self._redis.eval(
                _APPEND, 2, self._counter, self._identity_key, self._prefix, self._seen,
                self._identity, uuid.uuid4().hex, *(json.dumps(log) for log in logs))
        except ResponseError as err:
            if LOST not in str(err):
                raise
            raise self._lost(int(str(err).split()[-1]) + 1) from None
        self._seen = max(self._seen, int(last) + 1)
        self._identity = identity

    @property
    def _counter(self) -> str:
        return f"{self._prefix}:log_number"

    @property
    def _identity_key(self) -> str:
        return f"{self._prefix}:lrbench_journal_id"

    def _lost(self, count: int) -> StorageError:
        return StorageError(
            f"storage {self._shown} lost its data: this process read {self._seen} journal "
            f"entries, and the server now holds {count}"
            f"{' of another journal' if count >= self._seen else ''}. The server restarted "
            f"without what it held (no persistence configured, or an older snapshot). lrbench "
            f"stops rather than write a study over the lost one: restore the server's data "
            f"(appendonly yes keeps every write) and run the command again.")

    def _parsed(self, number: int, raw: bytes | None) -> dict[str, Any]:
        key = self._key_log_id(number)
        if raw is None:
            raise StorageError(f"storage {self._shown}: journal entry {number} (key {key!r}) "
                               f"is missing, though later entries exist: the server's data "
                               f"is damaged. Restore it from a backup.")
        try:
            return json.loads(raw)
        except ValueError:
            raise StorageError(f"storage {self._shown}: journal entry {number} (key {key!r}) "
                               f"is not JSON ({raw[:60]!r}...): the server's data is damaged. "
                               f"Restore it from a backup.") from None


def persistence_problem(url: str) -> str | None:
    """Why a Redis server would lose the studies on a restart, or None: it writes an
    append-only file or snapshots (or will not say: ``CONFIG`` may be disabled)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        appendonly = client.config_get("appendonly").get("appendonly")
        save = client.config_get("save").get("save")
    except redis.exceptions.ResponseError:  # CONFIG renamed or refused (managed servers)
        return None
    finally:
        client.close()
    if appendonly == "yes" or save:
        return None
    return ("it keeps nothing on disk (appendonly no, save \"\"), so a restart would lose "
            "every study. Start it with `redis-server --appendonly yes` (every write kept) "
            "or set `save` snapshots")

"""The journal file: Optuna's append-only log, made safe against crashes and full disks.

Optuna's ``JournalFileBackend`` skips a torn last line when it reads, but appends the
next record right after it: the torn bytes and the new record become one bad line in
the middle of the file, and from then on every read of the journal fails. This module
keeps that from happening:

- every append checks that the file ends in a newline; a torn tail (a crash or a full
  disk mid-write) is first moved to a side file, so no record is ever glued onto it;
- an append that fails (a full disk, Ctrl-C mid-write) is rolled back, so the file
  never ends torn because of us;
- the write lock is ``flock``: the kernel releases it when its holder dies, so a
  kill -9 never leaves a stale lock behind, and every wait for it has a timeout;
- ``inspect`` tells a journal from any other file before anything is written, finds a
  torn tail, and names the exact line where a damaged journal stops being readable.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock  # the lock_obj interface

from lrbench.errors import LockTimeout, StorageError, UserError

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".flock"  # not Optuna's ".lock": that name is its symlink lock's
# An append takes milliseconds; minutes mean a hung holder. Longer than a stuck slot
# usually lives (lrbench.sweep.processes.stuck kills it, and the kernel then drops its lock), so
# the slots waiting behind it go on instead of failing.
LOCK_TIMEOUT_SECONDS = 600.0
TORN_SUFFIX = ".torn-"
_RECORD_START = b'{"op_code":'  # how Optuna writes every journal record
_CHUNK = 1 << 16
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class FlockLock(BaseJournalFileLock):
    """An exclusive ``flock`` on the file ``path``, waited for at most ``timeout`` seconds.

    Each acquire opens its own file description, so threads exclude each other too. The
    lock file stays empty: the kernel knows the holder (/proc/locks), and writing its PID
    on every acquire doubled the cost of a journal append.
    """

    def __init__(self, path: str | Path, timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # its folder or file system made read-only
            raise StorageError(f"cannot write to {self.path}: {err.strerror}; finished trials "
                               f"are kept: make it writable, then run the same command to "
                               f"resume") from None
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = _flock_holder(fd)
                    os.close(fd)
                    raise LockTimeout(f"waited {self.timeout:.0f} s for the lock {self.path} "
                                       f"(held by {holder}); is another lrbench process "
                                       f"hung?") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except BaseException:
                os.close(fd)
                raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the description drops the flock

    def __enter__(self) -> FlockLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock_holder(fd: int) -> str:
    """Who holds the flock on ``fd``'s file, from /proc/locks (Linux), for a message."""
    inode = os.fstat(fd).st_ino
    try:
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()  # id: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[4].isdigit() \
                        and fields[5].rsplit(":", 1)[-1] == str(inode):
                    return f"pid {fields[4]}"
    except OSError:
        pass
    return "an unknown process"


@dataclass(frozen=True)
class JournalHealth:
    """What ``inspect`` found: where the complete records end, and what follows them."""

    path: Path
    size: int
    intact_bytes: int  # the file up to and including the last complete record

    @property
    def torn_bytes(self) -> int:
        return self.size - self.intact_bytes


def _is_record(line: bytes) -> bool:
    if not (line.startswith(_RECORD_START) and line.endswith(b"\n")):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # json.JSONDecodeError, UnicodeDecodeError
        return False


def inspect(path: str | Path) -> JournalHealth:
    """Check that ``path`` is a journal and find its torn tail, if any.

    Reads the first line, then backwards from the end to the last complete record: the
    cost does not grow with the journal. A file whose first line is no journal record
    is refused (``UserError``) unless it is all torn tail (NUL padding, or a first
    record cut short): lrbench must never append to a user's text file.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return JournalHealth(path, 0, 0)
    with open(path, "rb") as handle:
        first = handle.readline(_CHUNK)
        intact = _last_record_end(handle, size)
    whole_line = first.endswith(b"\n")
    torn_start = not first.strip(b"\0") or first.startswith(_RECORD_START[:2])
    if (whole_line and not _is_record(first)) or (intact == 0 and not torn_start):
        raise UserError(f"{path} is not an Optuna journal file (it starts {first[:60]!r}); "
                        f"pass a new file name or a journal to --storage")
    return JournalHealth(path, size, intact)


def _lines(block: bytes) -> list[bytes]:
    """``block`` cut after each newline (a last piece without one is kept as it is)."""
    parts = block.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _last_record_end(handle: Any, size: int) -> int:
    """The offset just after the last line that is a complete record (0: none)."""
    window = _CHUNK
    while True:
        start = max(0, size - window)
        handle.seek(start)
        lines = _lines(handle.read(size - start))
        if start > 0:
            lines = lines[1:]  # the window may cut the first line short
        end = size
        for line in reversed(lines):
            if _is_record(line):
                return end
            end -= len(line)
        if start == 0:
            return 0
        window *= 4


def _torn_side_file(path: Path) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S.%f")
    return path.with_name(f"{path.name}{TORN_SUFFIX}{stamp}-{os.getpid()}")


def move_torn_tail(health: JournalHealth) -> Path | None:
    """Move the bytes after the last complete record to a side file; truncate to it.

    Call with the journal's lock held. The side file is written and synced before the
    journal is cut, so a crash in between loses nothing.
    """
    if health.torn_bytes == 0:
        return None
    side = _torn_side_file(health.path)
    with open(health.path, "r+b") as journal:
        journal.seek(health.intact_bytes)
        torn = journal.read()
        try:
            with open(side, "xb") as out:
                out.write(torn)
                out.flush()
                os.fsync(out.fileno())
        except OSError as err:
            side.unlink(missing_ok=True)
            raise StorageError(f"{health.path} ends in {len(torn)} torn bytes, and they cannot "
                               f"be saved to {side} ({err.strerror}); the journal was left "
                               f"as it is") from None
        journal.truncate(health.intact_bytes)
        journal.flush()
        os.fsync(journal.fileno())
    log.warning("%s ended in %d torn bytes (an interrupted write); moved them to %s and kept "
                "every complete record", health.path, len(torn), side)
    return side


def locate_damage(path: str | Path) -> str:
    """The first line that stops a journal from being read, as a message for the user."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not _is_record(line):
                return (f"{path}: line {number} is not a complete journal record "
                        f"({line[:80]!r}); the {number - 1} records before it are intact")
    return f"{path}: the journal could not be read"


class BatchedAppends:
    """A journal backend whose appends inside ``batch()`` are written as one: one locked
    write to a file, one round trip to a server (see record.batched_writes). Its class
    writes in ``_write_logs``."""

    _buffer: list[dict[str, Any]] | None = None  # the open batch's records

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Appends inside this block are held and written as one.

        A slot writes from one thread. Nested blocks join the outer one. If the block
        raises, its records are dropped.
        """
        if self._buffer is not None:
            yield
            return
        self._buffer = []
        try:
            yield
            logs = self._buffer
        finally:
            self._buffer = None
        if logs:
            self.append_logs(logs)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if self._buffer is not None:
            self._buffer.extend(logs)
            return
        self._write_logs(logs)

    def _write_logs(self, logs: list[dict[str, Any]]) -> None:
        raise NotImplementedError


def gone_mid_sweep(path: Path, replaced: bool = False) -> str:
    return (f"journal {path} was {'replaced' if replaced else 'deleted or moved'} mid-sweep: "
            f"nothing more can be written to it; put it back, then run the same command to "
            f"resume")


class SafeJournalBackend(BatchedAppends, JournalFileBackend):
    """``JournalFileBackend`` whose appends never follow a torn tail and never leave one."""

    def __init__(self, path: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        super().__init__(path, lock_obj=FlockLock(f"{path}{LOCK_SUFFIX}", timeout))
        self.path = Path(path)
        self.lock = self._lock
        self._inode = os.stat(path).st_ino  # (Optuna's constructor made the file)

    def _same_file(self) -> None:
        """The journal is still the file this process opened: not deleted, moved, or
        replaced by another (whose records the cached offsets would misread)."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if inode != self._inode:
            raise StorageError(gone_mid_sweep(self.path, replaced=inode is not None))

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        self._same_file()
        yield from super().read_logs(log_number_from)

    def _write_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in logs).encode()
        try:
            with self.lock:
                self._same_file()
                self._append(data)
        except OSError as err:  # the file, its lock or its file system made read-only
            raise StorageError(f"cannot write to {self.path}: {err.strerror}; finished trials "
                               f"are kept: make it writable, then run the same command to "
                               f"resume") from None

    def _append(self, data: bytes) -> None:
        """Append whole records after a whole record, or roll back; hold the lock."""
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # Someone died mid-write: set the torn bytes aside, then append.
                move_torn_tail(inspect(self.path))
                size = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):  # a short write is how a nearly full disk says so
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                os.fsync(fd)
            except BaseException as err:
                os.ftruncate(fd, size)  # roll back: the file ends on a whole record
                if isinstance(err, OSError) and err.errno in _DISK_FULL:
                    raise StorageError(f"cannot write to {self.path}: {err.strerror}; the "
                                       f"journal was rolled back to its last complete "
                                       f"record, and finished trials are kept: free space, "
                                       f"then run the same command to resume") from None
                raise
        finally:
            os.close(fd)

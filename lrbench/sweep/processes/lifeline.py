"""A worker process's ties to the sweep that started it.

Three things ask a worker to stop at its next safe point (between trials, or after an
epoch), where it fails and re-queues its trials so nothing is lost:

- the parent sets the shared stop event (Ctrl-C or SIGTERM reached the parent);
- SIGTERM reaches the worker itself (Slurm signals every process of a job);
- the parent is gone, whatever killed it: a watchdog thread sees the worker re-parented.
  The worker leaves once its slot has stopped, or at once if its slot had ended
  (``run_as_slot``: nobody is left to take a result). If it has not ``GRACE_SECONDS``
  later (a long epoch), it exits hard; its trials stay RUNNING under a dead PID, and the
  next sweep recovers them.

Ctrl-C is ignored here: a terminal sends it to the whole process group, and it is the
parent's to turn into the stop event.

The other way round, the parent watches the worker: ``progressed`` marks each step of
real work (an epoch, an ask) on the worker's progress file, and a worker that marks
nothing for too long is stuck (``lrbench.sweep.processes.stuck``).

This module imports nothing heavy: it runs as the worker's initializer, before the
worker runs its job (and imports torch).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from lrbench.logs import show_warnings
from lrbench.sweep.processes.stuck import READY

GRACE_SECONDS = 5.0  # parent gone -> hard exit after this; a slot ends within ~10 s
POLL_SECONDS = 0.5

_stop_event: Any = None  # the parent's multiprocessing Event, shared with every slot
_stopping = threading.Event()  # this process's own reasons: SIGTERM, parent gone
_parent_gone = threading.Event()  # the watchdog saw the sweep's process gone
_in_slot = threading.Event()  # the worker runs its slot now (``run_as_slot``)
# Cluster slots' (threads of a Dask worker, one per GPU it declares): the parent's control.
_stop_sources: list[Callable[[], bool]] = []
_progress_file: str | None = None  # this worker's, where the parent reads its progress


def init_worker(stop_event: Any, parent_pid: int, progress_file: str | None = None) -> None:
    """The worker's initializer: signals, the shared stop event, the parent watchdog, and
    its progress file (which holds its pid, for the parent to end it by if it is stuck)."""
    global _stop_event, _progress_file
    _stop_event = stop_event
    if progress_file is not None:
        with open(progress_file, "w") as mark:
            mark.write(str(os.getpid()))
        _progress_file = progress_file
    show_warnings()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: _stopping.set())
    # born with both blocked (workers.born_ignoring_signals): from here they are handled
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    _let_the_fork_server_end()
    threading.Thread(target=_watch_parent, args=(parent_pid, os.getppid()),
                     name="lrbench-lifeline", daemon=True).start()


def _let_the_fork_server_end() -> None:
    """A worker forked by the fork server (``workers``) holds, as every child of it does,
    the write end of the pipe by which the server learns that the sweep is gone: closed
    here, the server ends with the sweep, and this worker is re-parented."""
    from multiprocessing import forkserver
    server = forkserver._forkserver
    if server._forkserver_pid is None and server._forkserver_alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None


def _watch_parent(parent_pid: int, starter: int) -> None:
    """Stop when the sweep's process is gone. ``starter`` started this process: the sweep
    itself, or the fork server, which ends with it; either way a dead one's children are
    re-parented. The sweep's pid is checked too: it may have died before this started."""
    global _progress_file
    while os.getppid() == starter and _alive(parent_pid):
        time.sleep(POLL_SECONDS)
    _parent_gone.set()
    _stopping.set()
    progress_file, _progress_file = _progress_file, None  # no one is left to read it,
    if progress_file is not None:                          # or to remove it
        with contextlib.suppress(OSError):
            os.unlink(progress_file)
    if not _in_slot.is_set():  # its slot had ended: it waited for the next one
        os._exit(70)
    time.sleep(GRACE_SECONDS)
    os._exit(70)  # still here: abandon the epoch rather than outlive the sweep


def run_as_slot(job: Callable[..., Any], *args: Any) -> Any:
    """``job(*args)``, the slot this worker runs. If the sweep died meanwhile, the slot has
    stopped (failing and re-queueing its trials) and nobody waits for its result: the
    worker leaves at once, instead of idling until the watchdog's hard exit."""
    _in_slot.set()
    try:
        return job(*args)
    finally:
        _in_slot.clear()
        if _parent_gone.is_set():
            os._exit(70)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's: not the sweep (its pid was reused)
        return False
    return True


def watch(source: Callable[[], bool]) -> None:
    """A slot in a Dask worker (a thread there, not a process of its own): no signals,
    no parent to watch; ``source`` says when the parent wants it to stop."""
    _stop_sources.append(source)


def unwatch(source: Callable[[], bool]) -> None:
    """The slot that watched ``source`` has ended (others in the process may go on)."""
    if source in _stop_sources:
        _stop_sources.remove(source)


def progressed() -> None:
    """Mark a step of work done (the file's time is the mark): called from the thread
    that does the work, so a worker that is stopped or hangs in a driver or on a file
    system marks nothing, whatever its other threads do."""
    if _progress_file is not None:
        try:
            os.utime(_progress_file)
        except OSError:  # the parent removed it (it is ending this worker), or /tmp broke
            pass


def ready() -> None:
    """This worker has started (imports done, data on its device): its marks from now on
    are steps of work, whose pace says how long a silence means it is stuck."""
    if _progress_file is not None:
        try:
            with open(_progress_file, "a") as marks:
                marks.write(f" {READY}")
        except OSError:
            pass


def stop_requested() -> bool:
    return (_stopping.is_set() or (_stop_event is not None and _stop_event.is_set())
            or any(source() for source in list(_stop_sources)))


def request_stop() -> None:
    """Stop this process's slot at its next safe point (tests; SIGTERM does the same)."""
    _stopping.set()


def reset() -> None:
    """Forget a stop request (for slots run in-process, one after another, by tests)."""
    global _stop_event, _progress_file
    _stop_event = None
    _progress_file = None
    _stop_sources.clear()
    _stopping.clear()

"""Local worker processes: forked from one process that imported the slot's modules.

A slot's worker needs torch and the slot's modules before it trains (~1.5 s of imports
each). Instead of every worker importing them, one **fork server** (multiprocessing's
"forkserver" start method, with the slot's modules preloaded) imports them once, and each
worker is forked from it: the first slots, and a replacement for a killed one, at the
cost of a fork. ``start_fork_server`` (called by the console script, before its own imports)
starts the server, so that it imports while the parent imports Optuna and reads the data.
`sweep smoke --workers 2` on 2 cores: 4.1-4.5 s -> 2.5-3.0 s (batched), 5.8-6.4 s ->
3.5-3.9 s (sequential; benchmarks/README.md).

The server ends with this process: it waits on a pipe from it, whose other copies each
worker closes (``lifeline``). ``end_fork_server`` ends it at once when the command is done
(a user error may end the command while the server is still importing).

Each worker is a one-process loky executor on that context. Workers, and the server, are
born with Ctrl-C and SIGTERM ignored and blocked (both survive exec and fork), so a signal
that lands while one is still starting cannot kill it with a traceback. A worker's
initializer (``lifeline.init_worker``) then routes SIGTERM to a graceful stop, unblocks
both, and watches the parent. Where the parent starts a process itself (the server, or a
worker without one), it holds both blocked meanwhile, so a signal sent to it then is
handled just after, not lost. Where there is no fork server (Windows), each worker is
spawned by loky and imports for itself.

This module imports nothing heavy: the console script uses it before torch is loaded.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import forkserver
from typing import Any

from joblib.externals.loky import ProcessPoolExecutor
from joblib.externals.loky.backend.context import get_context

from lrbench.sweep.processes import lifeline

# What a slot imports to train (torch among it): the fork server imports it once.
SLOT_MODULE = "lrbench.sweep.slot"
# What a sequential slot imports before its first trial (``prepare_optimizers``: torch's
# optimizers import it, ~1 s of CPU). The server imports it too when the command line asks
# for that engine; the batched engine never needs it.
SEQUENTIAL_MODULE = "torch._dynamo"


@dataclass
class Worker:
    """A worker process (a one-process executor), the stop event it shares, and the file
    where it marks its progress (``lifeline.progressed``)."""

    executor: ProcessPoolExecutor
    stop_event: Any  # the parent's loky Event: set, every slot stops at its next epoch
    progress_file: str

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """``fn(*args)`` in the worker, whose process starts inside the first call."""
        if _context() is not None:  # forked by the server: born with its dispositions
            # (Not ignoring signals here: this may wait for the server's imports, and a
            # Ctrl-C then must still count.)
            return self.executor.submit(fn, *args)
        with born_ignoring_signals():  # spawned by loky, from this process
            return self.executor.submit(fn, *args)


def new_stop_event() -> Any:
    return get_context("loky").Event()


def spawn(stop_event: Any) -> Worker:
    """A new worker process tied to ``stop_event`` and to this process."""
    descriptor, progress_file = tempfile.mkstemp(prefix="lrbench-worker-", suffix=".progress")
    os.close(descriptor)
    start_fork_server()  # (if not started yet: born ignoring signals, as its children are)
    executor = ProcessPoolExecutor(max_workers=1, initializer=lifeline.init_worker,
                                   initargs=(stop_event, os.getpid(), progress_file),
                                   context=_context())
    return Worker(executor, stop_event, progress_file)


def _context() -> Any:
    """The fork server's context, the slot's modules preloaded; loky's without one."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None  # (loky's own)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_preloaded)
    return context


_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def born_ignoring_signals() -> Iterator[None]:
    """Processes started in this block ignore SIGINT and SIGTERM, and hold them blocked
    until ``lifeline.init_worker`` handles them. Here, one that arrives meanwhile waits:
    blocked, it is neither lost to the "ignore" nor handled before the block ends."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in _SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


_server_started = False  # by this process, and not ended since (end_fork_server)
_preloaded = [SLOT_MODULE]  # what the server imports before it forks


def start_fork_server(sequential: bool = False) -> None:
    """Start the fork server now, if this process has not: it imports the slot's modules
    (see the docstring), and SEQUENTIAL_MODULE too for a ``sequential`` engine's slots.
    Once: each call ignores signals for a moment."""
    global _server_started, _preloaded
    if _server_started:
        return
    _preloaded = [SLOT_MODULE, *([SEQUENTIAL_MODULE] if sequential else [])]
    if _context() is not None:
        _socket_folder_within_reach()
        with born_ignoring_signals():
            forkserver.ensure_running()
        _server_started = True


# A Unix socket's path holds at most 107 bytes. multiprocessing binds the fork server's
# at $TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX, so a TMPDIR of more than 75 characters (a
# cluster job's scratch folder, a test's tmp_path) ended every sweep with "OSError: AF_UNIX
# path too long". Newer Pythons fall back to /tmp themselves (CPython gh-132124); so does
# this, on any.
SOCKET_PATH_MAX = 107
SOCKET_IN_TEMP = len("/pymp-XXXXXXXX/listener-XXXXXXXX")
SHORT_TEMP = "/tmp"


def _socket_folder_within_reach() -> None:
    """Make multiprocessing's temporary folder (where the server's socket goes) under /tmp
    when the one under TMPDIR would make the socket's path too long. It is made once per
    process and kept: this runs before the server's socket is bound."""
    from multiprocessing import util

    if len(os.fsencode(tempfile.gettempdir())) + SOCKET_IN_TEMP <= SOCKET_PATH_MAX:
        return
    long_temp, tempfile.tempdir = tempfile.tempdir, SHORT_TEMP
    try:
        util.get_temp_dir()  # made now, under /tmp (removed at exit, as multiprocessing does)
    finally:
        tempfile.tempdir = long_temp


def end_fork_server() -> None:
    """End the fork server, if this process started one: the command is done. (What
    multiprocessing does on finding its server dead; it keeps no public handle on it.)"""
    global _server_started
    _server_started = False
    server = forkserver._forkserver
    pid = server._forkserver_pid
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    with contextlib.suppress(OSError, TypeError):
        os.close(server._forkserver_alive_fd)
    server._forkserver_address = server._forkserver_alive_fd = server._forkserver_pid = None

"""Local worker processes: how one is born, and the first one born early.

A slot's worker imports torch and Optuna before it trains its first trial (~2 s), while
the parent imports Optuna and reads the data. ``start_early`` (called by the console
script, before its own imports) starts the first worker at once, so the two import side
by side; the first slot to start takes it (``take_early``), and ``discard_early`` ends it
if no slot does (a user error, nothing to train).

Each worker is a one-process loky executor. Workers are born with Ctrl-C and SIGTERM
ignored (signal dispositions set to "ignore" survive exec, and Python keeps an
inherited "ignore" for SIGINT), so a signal that lands while a worker is still starting
cannot kill it with a traceback. Their initializer (``lifeline.init_worker``) then routes
SIGTERM to a graceful stop and watches the parent. The price: a signal sent to the
parent in the milliseconds of a spawn is ignored by it too (a blocked mask would keep it
pending, but loky's spawn does not pass the mask on).

This module imports nothing heavy: the console script uses it before torch is loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from joblib.externals.loky import ProcessPoolExecutor
from joblib.externals.loky.backend.context import get_context

from lrbench.sweep.processes import lifeline, stuck

# What a slot imports to train (torch among it), while the parent reads the data.
SLOT_MODULE = "lrbench.sweep.slot"


@dataclass
class Worker:
    """A worker process (a one-process executor), the stop event it shares, and the file
    where it marks its progress (``lifeline.progressed``)."""

    executor: ProcessPoolExecutor
    stop_event: Any  # the parent's loky Event: set, every slot stops at its next epoch
    progress_file: str

    def end_unused(self) -> None:
        """End a worker no slot took: it holds no trial, so nothing is lost."""
        self.executor.shutdown(wait=False, kill_workers=True)
        stuck.forget(self.progress_file)


def new_stop_event() -> Any:
    return get_context("loky").Event()


def spawn(stop_event: Any, warm_up: bool = False) -> Worker:
    """A new worker process tied to ``stop_event`` and to this process.

    ``warm_up``: have it import the slot's modules now, while the caller goes on.
    """
    descriptor, progress_file = tempfile.mkstemp(prefix="lrbench-worker-", suffix=".progress")
    os.close(descriptor)
    executor = ProcessPoolExecutor(max_workers=1, initializer=lifeline.init_worker,
                                   initargs=(stop_event, os.getpid(), progress_file))
    if warm_up:
        with born_ignoring_signals():  # loky spawns the process inside submit
            executor.submit(warm_up_slot)
    return Worker(executor, stop_event, progress_file)


def warm_up_slot() -> None:
    """Import what a slot trains with, returning nothing: the module itself would travel
    back to the parent, which would import it too (torch with it)."""
    importlib.import_module(SLOT_MODULE)


@contextlib.contextmanager
def born_ignoring_signals() -> Iterator[None]:
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_early: Worker | None = None


def start_early() -> None:
    """Start the first worker now, importing the slot's modules (see the docstring)."""
    global _early
    if _early is None:
        _early = spawn(new_stop_event(), warm_up=True)


def take_early() -> Worker | None:
    """The early worker, once: for the first slot pool of this process."""
    global _early
    worker, _early = _early, None
    return worker


def discard_early() -> None:
    """End the early worker if no slot took it."""
    worker = take_early()
    if worker is not None:
        worker.end_unused()

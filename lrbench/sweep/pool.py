"""Run a sweep's slots as worker processes, and keep them running.

Each slot gets its own one-process loky executor, not a place in one shared pool: loky
breaks a whole pool when one of its processes dies, and the healthy slots' trials died
with it. Here a dead process costs only its own trials; the caller recovers them and
starts a replacement.

Workers are born with Ctrl-C and SIGTERM ignored (signal dispositions set to "ignore"
survive exec, and Python keeps an inherited "ignore" for SIGINT), so a signal that
lands while a worker is still starting cannot kill it with a traceback. Their
initializer (``lifeline.init_worker``) then routes SIGTERM to a graceful stop. The price:
a signal sent to the parent in the milliseconds of a spawn is ignored by it too (a
blocked mask would keep it pending, but loky's spawn does not pass the mask on).
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from joblib.externals.loky import ProcessPoolExecutor
from joblib.externals.loky.backend.context import get_context

from lrbench.sweep import lifeline
from lrbench.sweep.slot import SlotJob, SlotReport, run_slot


@dataclass
class SlotProcess:
    """One slot's executor and the run it is doing."""

    job: SlotJob
    executor: ProcessPoolExecutor | None  # None on a cluster (lrbench.sweep.cluster)
    future: Any  # concurrent.futures.Future, or a Dask future on a cluster
    restarts: int = 0


@dataclass(frozen=True)
class SlotEnd:
    """A slot that ended: its report, or the error it raised, or how its process died."""

    process: SlotProcess
    report: SlotReport | None = None
    error: BaseException | None = None
    died: bool = False


@contextlib.contextmanager
def _born_ignoring_signals() -> Iterator[None]:
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class SlotPool:
    """The slots' processes; ``stop`` asks every one to stop at its next safe point."""

    def __init__(self) -> None:
        self._stop_event = get_context("loky").Event()
        self.running: list[SlotProcess] = []
        # Processes known dead, as (host, pid), for recovering their trials: empty here,
        # where a dead slot's trials are found by its pid (a cluster's pool fills it).
        self.dead: set[tuple[str, int]] = set()

    def start(self, job: SlotJob, restarts: int = 0) -> SlotProcess:
        executor = ProcessPoolExecutor(max_workers=1, initializer=lifeline.init_worker,
                                       initargs=(self._stop_event, os.getpid()))
        with _born_ignoring_signals():  # the worker is spawned inside submit
            future = executor.submit(run_slot, job)
        process = SlotProcess(job, executor, future, restarts)
        self.running.append(process)
        return process

    def wait(self, timeout: float) -> list[SlotEnd]:
        """The slots that ended within ``timeout`` seconds."""
        futures = {p.future: p for p in self.running}
        done, _ = concurrent.futures.wait(futures, timeout=timeout,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        return [self._ended(futures[f]) for f in done]

    def _ended(self, process: SlotProcess) -> SlotEnd:
        self.running.remove(process)
        error = process.future.exception()
        died = isinstance(error, concurrent.futures.process.BrokenProcessPool)
        process.executor.shutdown(wait=not died, kill_workers=died)
        if error is None:
            return SlotEnd(process, report=process.future.result())
        return SlotEnd(process, error=error, died=died)

    def restartable(self, process: SlotProcess) -> bool:
        """A dead slot's replacement can start here (always: a new local process)."""
        return True

    def close(self) -> None:
        """Nothing to release: each slot's executor was shut down as it ended."""

    def stop(self) -> None:
        self._stop_event.set()

    @property
    def stopping(self) -> bool:
        return bool(self._stop_event.is_set())

    def abandon(self) -> None:
        """Leave now (a second Ctrl-C): the workers stop by themselves, via their lifeline."""
        self.stop()
        for process in self.running:
            process.executor.shutdown(wait=False)

"""Run a sweep's slots as worker processes, and keep them running.

Each slot gets its own one-process loky executor, not a place in one shared pool: loky
breaks a whole pool when one of its processes dies, and the healthy slots' trials died
with it. Here a dead process costs only its own trials; the caller recovers them and
starts a replacement. How a worker is born (signals, its lifeline) is
``lrbench.sweep.processes.workers``: each is forked from a server that imported what a
slot trains with.

A worker that makes no progress for too long (``lrbench.sweep.processes.stuck``) is killed: its
trials are then recovered like any dead worker's, and a replacement starts. So is every
worker still running when the sweep leaves: the parent never waits on one.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from joblib.externals.loky import ProcessPoolExecutor

from lrbench.sweep.processes import lifeline, stuck, workers
from lrbench.sweep.processes.stuck import DEFAULT_FLOOR_SECONDS, Pace
from lrbench.sweep.slot_job import SlotJob, SlotReport, run_in_worker


@dataclass
class SlotProcess:
    """One slot's executor and the run it is doing."""

    job: SlotJob
    executor: ProcessPoolExecutor | None  # None on a cluster (lrbench.sweep.processes.cluster)
    future: Any  # concurrent.futures.Future, or a Dask future on a cluster
    restarts: int = 0
    pace: Pace | None = None  # a local worker's progress, as seen here
    killed: str = ""  # why this parent killed its worker, if it did
    killed_pid: int | None = None  # the worker it killed (its progress file is gone by the end)


@dataclass(frozen=True)
class SlotEnd:
    """A slot that ended: its report, or the error it raised, or how its process died."""

    process: SlotProcess
    report: SlotReport | None = None
    error: BaseException | None = None
    died: bool = False


class SlotPool:
    """The slots' processes; ``stop`` asks every one to stop at its next safe point."""

    def __init__(self, stuck_after: float = DEFAULT_FLOOR_SECONDS) -> None:
        self.stuck_after = stuck_after
        self._stop_event = workers.new_stop_event()
        self.running: list[SlotProcess] = []
        # Processes known dead, as (host, pid), for recovering their trials: empty here,
        # where a dead slot's trials are found by its pid (a cluster's pool fills it).
        self.dead: set[tuple[str, int]] = set()

    def start(self, job: SlotJob, restarts: int = 0) -> SlotProcess:
        worker = workers.spawn(self._stop_event)
        future = worker.submit(lifeline.run_as_slot, run_in_worker, job)
        process = SlotProcess(job, worker.executor, future, restarts,
                              Pace(worker.progress_file, self.stuck_after))
        self.running.append(process)
        return process

    def wait(self, timeout: float) -> list[SlotEnd]:
        """The slots that ended within ``timeout`` seconds; a stuck one is killed (it ends
        as dead at a later call)."""
        futures = {p.future: p for p in self.running}
        done, _ = concurrent.futures.wait(futures, timeout=timeout,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        ended = [self._ended(futures[f]) for f in done]
        now = time.time()
        for process in self.running:
            why = None if process.killed or process.pace is None else process.pace.stuck(now)
            if why is not None:
                self.kill(process, why)
        return ended

    def kill(self, process: SlotProcess, why: str) -> None:
        """End a slot's worker now (SIGKILL: a stopped process takes no other signal);
        its trials are recovered once it ends as dead."""
        pid = process.pace.pid() if process.pace is not None else None
        process.killed, process.killed_pid = why, pid
        if pid is not None:
            self.dead.add((socket.gethostname(), pid))  # (a zombie until loky reaps it)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        else:  # it never started: no trial to lose
            process.executor.shutdown(wait=False, kill_workers=True)

    def kill_all(self, why: str) -> None:
        for process in self.running:
            if not process.killed:
                self.kill(process, why)

    def _ended(self, process: SlotProcess) -> SlotEnd:
        self.running.remove(process)
        if process.pace is not None:
            stuck.forget(process.pace.progress_file)
        if process.future.cancelled():  # killed before its worker began (SlotPool.kill)
            process.executor.shutdown(wait=False, kill_workers=True)
            return SlotEnd(process, died=True)
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
        """Nothing is left to end: each slot's executor was shut down as it ended."""

    def stop(self) -> None:
        self._stop_event.set()

    @property
    def stopping(self) -> bool:
        return bool(self._stop_event.is_set())

    def abandon(self) -> None:
        """Leave now (a second Ctrl-C): kill every worker, waiting on none (one may be
        stuck); the caller recovers their trials."""
        self.stop()
        self.kill_all("still running when the sweep was left")
        for process in self.running:
            process.executor.shutdown(wait=False, kill_workers=True)

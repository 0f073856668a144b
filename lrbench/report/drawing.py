"""Drawing the report's figures on every CPU: matplotlib draws on one core.

Two kinds of process draw, both forked:

- **The replayer**, forked before the storage is read (``Drawing``). The LR figures replay
  each best trial's schedule on torch's schedulers, and importing torch takes ~1.4 s: the
  replayer does it while the parent reads and ranks, when the second core is idle
  otherwise. It then draws every LR figure, one task per study: the study's frames
  arrive pickled once (~1 ms), and replay once for both of its LR figures.
- **The drawers**, forked once the frames are ranked (``Drawing.draw``), one per CPU.
  They inherit the figures to draw, frames included, without pickling anything, and
  draw all the others.

Where processes cannot fork (Windows, macOS's default) or there is one CPU, the figures
are drawn one after the other in the parent.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.pool import Pool
from typing import Any, TypeVar

from lrbench.report import GC_THRESHOLD, plots

T = TypeVar("T")
Job = Callable[[], plots.Figure]

# Figures waiting to be drawn by forked drawers: set just before forking, so the
# children inherit them (and the frames they hold) without pickling anything.
_PENDING: list[Job] = []


def can_fork() -> bool:
    return (os.cpu_count() or 1) > 1 and "fork" in multiprocessing.get_all_start_methods()


class Drawing:
    """The report's drawing processes. Start it before reading the storage; ``draw`` the
    figures; ``close`` (or leave the ``with`` block) to end the processes."""

    def __init__(self) -> None:
        self.replayer: Pool | None = None
        if can_fork():
            self.replayer = _pool(1, _start_replayer)

    def __enter__(self) -> Drawing:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        self.close(failed=error is not None)

    def close(self, failed: bool = False) -> None:
        if self.replayer is None:
            return
        if failed:  # Ctrl-C, or a figure that failed: stop it now
            self.replayer.terminate()
        else:
            self.replayer.close()  # an idle child exits by itself: no signal, nothing printed
        self.replayer.join()
        self.replayer = None

    def draw(self, jobs: list[Job], meanwhile: Callable[[], T] = lambda: None
             ) -> tuple[list[plots.Figure], T]:
        """The figures of ``jobs``, in order, and what ``meanwhile()`` returned: the
        parent runs it while its children draw."""
        global _PENDING
        if self.replayer is None:
            return [job() for job in jobs], meanwhile()
        by_frames: dict[int, list[int]] = {}  # the LR figures, per study
        for i, job in enumerate(jobs):
            if replays(job):
                by_frames.setdefault(id(_frames_of(job)), []).append(i)
        replay_tasks = list(by_frames.values())
        rest = drawing_order(jobs)  # every other figure
        _PENDING = jobs
        drawers = _pool(min(max(len(rest), 1), os.cpu_count() or 1), _quiet_child)
        try:
            replayed = self.replayer.map_async(
                _call_all, [[jobs[i] for i in task] for task in replay_tasks], chunksize=1)
            drawn = drawers.map_async(_draw_pending, rest, chunksize=1)
            parents = meanwhile()
            figures = dict(zip(rest, drawn.get()))
            for task, task_figures in zip(replay_tasks, replayed.get()):
                figures.update(zip(task, task_figures))
        except BaseException:
            drawers.terminate()
            raise
        else:
            drawers.close()
        finally:
            drawers.join()
            _PENDING = []
        return [figures[i] for i in range(len(jobs))], parents


# The signals a drawing child handles its own way (``_quiet_child``).
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _pool(processes: int, initializer: Callable[[], None]) -> Pool:
    """Forked processes that start with SIGINT and SIGTERM held: until their initializer
    runs, they have lrbench's handlers, which turn either into an exception with a
    traceback (a report stopped at once, by an error or Ctrl-C, printed one)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        return multiprocessing.get_context("fork").Pool(processes, initializer=initializer)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def replays(job: Job) -> bool:
    """Whether drawing ``job`` replays schedules (and so imports torch)."""
    return getattr(job, "func", None) in plots.LR_FIGURES


def drawing_order(jobs: list[Job]) -> list[int]:
    """The indices of the figures the drawers draw (all but the LR figures), in the order
    they are handed out: the slowest first, as started last, one would leave the other
    drawers idle while it finished (0.3 s of the benchmark page's wall time)."""
    slowest = {func: rank for rank, func in enumerate(plots.SLOWEST_FIGURES)}
    rest = [i for i, job in enumerate(jobs) if not replays(job)]
    return sorted(rest, key=lambda i: slowest.get(getattr(jobs[i], "func", None),
                                                  len(slowest)))


def _frames_of(job: Job) -> Any:
    """What a figure job draws from: its first argument (a study's frames)."""
    args = getattr(job, "args", ())
    return args[0] if args else job


def _call_all(jobs: list[Job]) -> list[plots.Figure]:
    return [job() for job in jobs]


def _draw_pending(index: int) -> plots.Figure:
    return _PENDING[index]()


def _start_replayer() -> None:
    _quiet_child()
    import lrbench.train.lr_schedule  # noqa: F401  (torch, while the parent reads)


def _quiet_child() -> None:
    """A drawing child leaves Ctrl-C to its parent, and dies silently when terminated: it
    inherits lrbench's handlers, which turn SIGTERM into an interrupt with a traceback.
    It collects garbage less often (``lrbench.report.GC_THRESHOLD``), and never scans
    what it inherited (frozen: its pages stay shared with the parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)  # held since the fork (_pool)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)

"""A slot that makes no progress: found from its own pace, so it can be ended and replaced.

A worker marks each step of work it finishes (an epoch of a trial or a stack, an ask)
by touching its progress file (``lrbench.sweep.processes.lifeline.progressed``). A process that is
stopped (``kill -STOP``), or hangs in a GPU driver or on a stalled network file system,
marks nothing, whatever its other threads do, and a slot whose marks stop has trials
that will never finish: the sweep would wait for them forever.

The parent reads the file's time at each poll. How long a silence it accepts follows the
slot's own pace: ``PACE_FACTOR`` times the longest gap it has seen between two marks,
but never under the floor (``--stuck-after``, default ``DEFAULT_FLOOR_SECONDS``). Until
the worker is ready and has taken one step there is no pace yet (imports, data to the
device, compiling, a first epoch): then ``START_FACTOR`` times the floor.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

DEFAULT_FLOOR_SECONDS = 120.0
PACE_FACTOR = 5.0
START_FACTOR = 3.0


def forget(progress_file: str) -> None:
    """Remove a worker's progress file once it has ended (or was never used)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(progress_file)


READY = "ready"  # what a worker adds to its progress file once it is ready to train


@dataclass
class Pace:
    """One worker's marks, as its parent has seen them."""

    progress_file: str
    floor: float  # seconds; 0 or less: never call it stuck
    ready: bool = False  # past its start: the marks since are steps of work
    last_mark: float = field(default=-1.0)  # the file's time at the latest mark seen
    slowest: float = 0.0  # the longest gap seen between two marks since it was ready

    def limit(self) -> float:
        if self.slowest > 0:
            return max(self.floor, PACE_FACTOR * self.slowest)
        return START_FACTOR * self.floor

    def stuck(self, now: float) -> str | None:
        """Why the worker counts as stuck at ``now`` (time.time()), or None."""
        if self.floor <= 0:
            return None
        try:
            mark = os.stat(self.progress_file).st_mtime
            if not self.ready:
                with open(self.progress_file) as marks:
                    self.ready = marks.read().split()[-1:] == [READY]
                if self.ready:
                    self.last_mark = mark
        except OSError:  # already ended
            return None
        if self.ready and mark != self.last_mark:
            self.slowest = max(self.slowest, mark - self.last_mark)
            self.last_mark = mark
        silent, limit = now - mark, self.limit()
        if silent <= limit:
            return None
        if self.slowest > 0 and PACE_FACTOR * self.slowest > self.floor:
            basis = f"{PACE_FACTOR:g}x its slowest step so far, {self.slowest:.1f} s"
        elif self.slowest > 0:
            basis = f"--stuck-after {self.floor:g}"
        else:
            basis = f"{START_FACTOR:g}x --stuck-after {self.floor:g}, while starting"
        return f"made no progress for {silent:.0f} s (limit {limit:.0f} s: {basis})"

    def pid(self) -> int | None:
        """The worker's process, as it wrote it; None if it has not yet."""
        try:
            with open(self.progress_file) as marks:
                return int(marks.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

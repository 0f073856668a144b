"""The stuck-slot rule (lrbench.sweep.processes.stuck), on progress files with set times."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lrbench.sweep.processes import lifeline
from lrbench.sweep.processes.stuck import PACE_FACTOR, START_FACTOR, Pace


def marked(path: Path, at: float) -> None:
    os.utime(path, (at, at))


def test_a_starting_worker_gets_three_floors(tmp_path: Path) -> None:
    progress = tmp_path / "w.progress"
    progress.write_text("4242")
    marked(progress, 1000.0)
    pace = Pace(str(progress), floor=10.0)
    assert pace.stuck(1000.0 + START_FACTOR * 10.0) is None
    why = pace.stuck(1000.0 + START_FACTOR * 10.0 + 1)
    assert why == "made no progress for 31 s (limit 30 s: 3x --stuck-after 10, while starting)"
    assert pace.pid() == 4242


def test_the_limit_follows_the_slowest_step_once_ready(tmp_path: Path) -> None:
    progress = tmp_path / "w.progress"
    progress.write_text("7 ready")
    pace = Pace(str(progress), floor=2.0)
    for at in (100.0, 101.0, 104.0, 105.0):  # steps of 1, 3 and 1 s
        marked(progress, at)
        assert pace.stuck(at) is None
    assert pace.slowest == 3.0 and pace.limit() == PACE_FACTOR * 3.0
    assert pace.stuck(105.0 + 15.0) is None
    assert pace.stuck(105.0 + 15.5) == ("made no progress for 16 s (limit 15 s: 5x its "
                                        "slowest step so far, 3.0 s)")


def test_the_floor_wins_over_fast_steps(tmp_path: Path) -> None:
    progress = tmp_path / "w.progress"
    progress.write_text("7 ready")
    pace = Pace(str(progress), floor=60.0)
    for at in (0.0, 0.3, 0.6):
        marked(progress, at)
        pace.stuck(at)
    assert pace.limit() == 60.0
    assert pace.stuck(59.0) is None
    assert "(limit 60 s: --stuck-after 60)" in pace.stuck(61.0)


def test_the_start_is_not_a_step(tmp_path: Path) -> None:
    """Imports and loading data take far longer than an epoch: not part of the pace."""
    progress = tmp_path / "w.progress"
    progress.write_text("7")
    pace = Pace(str(progress), floor=1.0)
    marked(progress, 0.0)
    assert pace.stuck(0.0) is None
    progress.write_text("7 ready")
    marked(progress, 20.0)  # ready after 20 s of start-up
    assert pace.stuck(20.0) is None and pace.slowest == 0.0
    marked(progress, 20.5)
    assert pace.stuck(20.5) is None and pace.slowest == 0.5


def test_floor_zero_never_calls_it_stuck_and_a_gone_file_is_not_stuck(tmp_path: Path) -> None:
    progress = tmp_path / "w.progress"
    progress.write_text("7 ready")
    marked(progress, 0.0)
    assert Pace(str(progress), floor=0.0).stuck(1e9) is None
    assert Pace(str(tmp_path / "ended.progress"), floor=1.0).stuck(1e9) is None


def test_the_worker_side_writes_what_the_parent_reads(tmp_path: Path) -> None:
    progress = tmp_path / "w.progress"
    progress.touch()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    lifeline.init_worker(None, os.getppid(), str(progress))  # (its watchdog idles)
    try:
        pace = Pace(str(progress), floor=1.0)
        assert pace.pid() == os.getpid()
        marked(progress, 0.0)
        lifeline.ready()
        lifeline.progressed()
        assert pace.stuck(os.stat(progress).st_mtime) is None
        assert pace.ready and pace.last_mark > 0.0
    finally:
        lifeline.reset()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

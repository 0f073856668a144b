"""report/drawing.py: figures drawn by forked processes, in order, the LR figures by the
replayer, and nothing printed or left behind."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from conftest import REPO

from lrbench.report import drawing, plots

FORKS = drawing.can_fork()


def figure(index: int) -> plots.Figure:
    """A figure that says which process drew it."""
    return plots.Figure(None, f"figure {index}", str(os.getpid()))


def replayed(index: int) -> plots.Figure:
    """Stands in for an LR figure (module level: it is pickled to the replayer)."""
    return plots.Figure(None, f"replayed {index}", str(os.getpid()))


def test_figures_come_back_in_order_drawn_by_children_while_the_parent_works() -> None:
    with drawing.Drawing() as drawer:
        drawn, parent = drawer.draw([partial(figure, i) for i in range(6)],
                                    meanwhile=os.getpid)
    assert [f.title for f in drawn] == [f"figure {i}" for i in range(6)]
    assert parent == os.getpid()  # `meanwhile` ran here, in the parent
    if FORKS:  # drawn by forked children, not by this process
        assert str(os.getpid()) not in {f.caption for f in drawn}
    assert drawing._PENDING == []  # nothing left behind for a later fork


def test_the_lr_figures_are_drawn_by_the_replayer_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaying schedules imports torch (~1.4 s): one process, started before the
    storage is read, draws every LR figure; the drawers draw the rest."""
    assert drawing.replays(partial(plots.learning_rates, None, Path("a")))
    assert drawing.replays(partial(plots.learning_rates_overlaid, None, Path("b")))
    assert not drawing.replays(partial(plots.sensitivity, None, Path("c")))
    monkeypatch.setattr(plots, "LR_FIGURES", (replayed,))
    jobs = [partial(figure, 0), partial(replayed, 1), partial(figure, 2), partial(replayed, 3)]
    with drawing.Drawing() as drawer:
        replayer = drawer.replayer
        drawn, _ = drawer.draw(jobs)
    assert [f.title for f in drawn] == ["figure 0", "replayed 1", "figure 2", "replayed 3"]
    if not FORKS:
        assert replayer is None
        return
    replayer_pids = {drawn[1].caption, drawn[3].caption}
    assert len(replayer_pids) == 1  # one process drew both
    assert replayer_pids.isdisjoint({drawn[0].caption, drawn[2].caption, str(os.getpid())})


def test_the_slowest_figures_are_handed_out_first_and_come_back_in_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Started last, a slow figure leaves the other drawers idle while it finishes."""
    assert plots.SLOWEST_FIGURES[0] == plots.sensitivity
    monkeypatch.setattr(plots, "LR_FIGURES", (replayed,))
    monkeypatch.setattr(plots, "SLOWEST_FIGURES", (slowest, slow))
    jobs = [partial(figure, 0), partial(replayed, 1), partial(slow, 2), partial(slowest, 3),
            partial(figure, 4), partial(slowest, 5)]
    # no LR figure (the replayer's); the slowest, the slow, then the others, each in order
    assert drawing.drawing_order(jobs) == [3, 5, 2, 0, 4]
    with drawing.Drawing() as drawer:
        drawn, _ = drawer.draw(jobs)
    assert [f.title for f in drawn] == ["figure 0", "replayed 1", "slow 2", "slowest 3",
                                        "figure 4", "slowest 5"]


def slowest(index: int) -> plots.Figure:
    """Stands in for the slowest kind of figure."""
    return plots.Figure(None, f"slowest {index}", str(os.getpid()))


def slow(index: int) -> plots.Figure:
    """Stands in for the second slowest kind."""
    return plots.Figure(None, f"slow {index}", str(os.getpid()))


def broken(index: int) -> plots.Figure:
    raise ValueError(f"figure {index} broke")


@pytest.mark.parametrize("replayed_too", [False, True], ids=["drawer", "replayer"])
def test_a_figure_that_fails_raises_here_and_leaves_no_process(
        monkeypatch: pytest.MonkeyPatch, replayed_too: bool) -> None:
    if replayed_too:  # the broken figure is an LR figure: the replayer draws it
        monkeypatch.setattr(plots, "LR_FIGURES", (broken,))
    before = set(multiprocessing.active_children())  # (other tests' pools, if any)
    with pytest.raises(ValueError, match="figure 1 broke"):
        with drawing.Drawing() as drawer:
            drawer.draw([partial(figure, 0), partial(broken, 1), partial(figure, 2)])
    assert set(multiprocessing.active_children()) <= before
    assert drawing._PENDING == []


@pytest.mark.slow
def test_drawing_prints_nothing_under_lrbenchs_signal_handlers() -> None:
    """The children inherit lrbench's SIGTERM handler (SIGTERM -> interrupt): a pool that
    terminated its idle children printed their tracebacks on the terminal. Every other
    round fails, which terminates the drawers and the replayer. (The replayer starts as
    every drawing child does, without importing torch: 1.4 s a round, beside the point.)"""
    script = (
        "import signal, functools\n"
        "from lrbench import entry\n"
        "from lrbench.report import drawing, plots\n"
        "drawing._start_replayer = drawing._quiet_child\n"
        "signal.signal(signal.SIGTERM, entry._terminated)\n"
        "job = functools.partial(plots.Figure, None, 't', 'c')\n"
        "def broken():\n"
        "    raise ValueError('broken')\n"
        "for round in range(20):\n"
        "    try:\n"
        "        with drawing.Drawing() as drawer:\n"
        "            jobs = [job] * 5 + ([broken] if round % 2 else [])\n"
        "            assert len(drawer.draw(jobs)[0]) == 5\n"
        "    except ValueError:\n"
        "        assert round % 2\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.slow
def test_the_report_process_never_imports_torch(results: Path, tmp_path: Path) -> None:
    """What makes `lrbench report` start fast: only its replayer imports torch."""
    script = (
        "import sys\n"
        "from lrbench.report.build import build_report\n"
        f"report = build_report({str(results / 'lrbench.journal')!r}, "
        f"__import__('pathlib').Path({str(tmp_path)!r}))\n"
        "assert any('learning-rates' in p.name for p in report.figures), report.figures\n"
        "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"

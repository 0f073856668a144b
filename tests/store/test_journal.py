"""Tests for lrbench.store.journal: a journal file stays readable after crashes and full disks.

Each test damages a real journal the way a crash, a full disk or a user would, then
opens it as a sweep (a writer) or a report (a reader) does.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lrbench.errors import StorageError, UserError
from lrbench.store import journal
from lrbench.store.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_journal(path: Path, trials: int = 3) -> bytes:
    study = optuna.create_study(study_name="s", storage=open_storage(str(path)),
                                direction="maximize")
    for value in range(trials):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, float(value))
    return path.read_bytes()


def values(path: Path, create: bool = True) -> list[float]:
    study = optuna.load_study(study_name="s", storage=open_storage(str(path), create=create))
    return [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))]


def side_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}{journal.TORN_SUFFIX}*"))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "lrbench.journal"


TORN_TAILS = {
    "cut mid-record": b'{"op_code":6,"worker_id":"x","trial_id":3,"sta',
    "NUL padding": b"\0" * 4096,
    "a garbage line": b"not json at all\n",
    "a cut record, then NULs": b'{"op_code":4,"wor' + b"\0" * 100,
}


@pytest.mark.parametrize("tail", TORN_TAILS.values(), ids=TORN_TAILS.keys())
def test_writer_moves_a_torn_tail_aside_and_keeps_every_record(path: Path, tail: bytes,
                                                               caplog):
    intact = make_journal(path)
    path.write_bytes(intact + tail)
    with caplog.at_level(logging.WARNING, logger="lrbench"):
        assert values(path) == [0.0, 1.0, 2.0]
    assert path.read_bytes() == intact
    [side] = side_files(path)
    assert side.read_bytes() == tail
    assert str(side) in caplog.text and f"{len(tail)} torn bytes" in caplog.text


def test_the_next_append_after_a_torn_tail_does_not_glue_onto_it(path: Path):
    """The failure seen: resume, append, and the whole storage became unreadable."""
    make_journal(path)
    path.write_bytes(path.read_bytes() + TORN_TAILS["cut mid-record"])
    study = optuna.load_study(study_name="s", storage=open_storage(str(path)))
    study.tell(study.ask(), 3.0)
    # A second writer tears the tail while this one is open: its next append repairs too.
    with open(path, "ab") as handle:
        handle.write(TORN_TAILS["cut mid-record"])
    study.tell(study.ask(), 4.0)
    assert values(path) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(side_files(path)) == 2
    assert journal.inspect(path).torn_bytes == 0


def test_reader_leaves_a_torn_tail_alone_and_says_so(path: Path, caplog):
    damaged = make_journal(path) + TORN_TAILS["NUL padding"]
    path.write_bytes(damaged)
    with caplog.at_level(logging.WARNING, logger="lrbench"):
        assert values(path, create=False) == [0.0, 1.0, 2.0]
    assert path.read_bytes() == damaged and side_files(path) == []
    assert "4096 torn bytes" in caplog.text and "next sweep" in caplog.text


def test_damage_mid_file_is_refused_with_its_exact_line(path: Path):
    lines = make_journal(path).splitlines(keepends=True)
    lines.insert(5, b"garbage glued here" + lines[5])
    damaged = b"".join(lines)
    path.write_bytes(damaged)
    with pytest.raises(StorageError, match=r"line 6 is not a complete journal record .*"
                                           r"the 5 records before it are intact"):
        open_storage(str(path))
    assert path.read_bytes() == damaged  # refused, not "repaired" by dropping records


@pytest.mark.parametrize("text", ["name = 'a sweep file'\n", "just words, no newline",
                                  '{"a": "json line, not a journal"}\n'])
def test_a_file_that_is_not_a_journal_is_refused_before_anything_is_written(
        tmp_path: Path, text: str):
    user_file = tmp_path / "notes.txt"
    user_file.write_text(text)
    with pytest.raises(UserError, match="is not an Optuna journal file"):
        open_storage(str(user_file))
    assert user_file.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no lock file either


def test_an_empty_journal_opens(path: Path):
    path.write_bytes(b"")
    assert open_storage(str(path)).get_all_studies() == []
    assert journal.inspect(path).torn_bytes == 0


def test_a_failed_append_is_rolled_back(path: Path, monkeypatch):
    """A full disk mid-write must not leave a torn tail for the next writer to glue onto."""
    intact = make_journal(path)
    study = optuna.load_study(study_name="s", storage=open_storage(str(path)))
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(journal.os, "write", half_then_full)
    with pytest.raises(StorageError, match="No space left on device.*rolled back.*free space, "
                                           "then run the same command to resume"):
        study.tell(study.ask(), 9.0)
    monkeypatch.undo()
    assert path.read_bytes() == intact
    assert values(path) == [0.0, 1.0, 2.0]


def test_a_stale_optuna_lock_file_does_not_stall_writes(path: Path):
    """Optuna's own lock, left by a kill -9, made every restart wait 30 s."""
    make_journal(path)
    os.symlink(path, f"{path}.lock")  # what JournalFileSymlinkLock leaves behind
    started = time.monotonic()
    study = optuna.load_study(study_name="s", storage=open_storage(str(path)))
    study.tell(study.ask(), 5.0)
    assert time.monotonic() - started < 5


def test_the_journal_lock_times_out_with_its_holder_named(path: Path):
    make_journal(path)
    holder = journal.FlockLock(f"{path}{journal.LOCK_SUFFIX}")
    with holder, pytest.raises(StorageError, match=f"held by pid {os.getpid()}"):
        journal.FlockLock(f"{path}{journal.LOCK_SUFFIX}", timeout=0.2).acquire()

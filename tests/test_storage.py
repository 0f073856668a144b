"""Tests for lrbench.storage: opening journals and URLs, and the cross-process claim lock.

Every storage lives in tmp_path; nothing here needs a database server or the network.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage

from lrbench.errors import UserError
from lrbench.storage import claim_lock, open_storage, storage_location, study_names

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_storage_location_defaults_to_a_journal_in_results(tmp_path: Path):
    assert storage_location(None, tmp_path) == str(tmp_path / "lrbench.journal")
    assert storage_location("sqlite:///x.db", tmp_path) == "sqlite:///x.db"


def test_new_journal_creates_its_folders(tmp_path: Path):
    path = tmp_path / "a" / "b" / "lrbench.journal"
    storage = open_storage(str(path))
    assert isinstance(storage, JournalStorage)
    assert path.parent.is_dir()
    optuna.create_study(study_name="s", storage=storage)
    assert study_names(open_storage(str(path), create=False)) == ["s"]


def test_missing_journal_without_create_is_a_user_error(tmp_path: Path):
    """`lrbench report` on a typo'd --results must say so, not create an empty journal."""
    path = tmp_path / "nowhere" / "lrbench.journal"
    with pytest.raises(UserError, match="no lrbench storage at") as err:
        open_storage(str(path), create=False)
    assert str(path) in str(err.value)
    assert not path.parent.exists()


def test_folder_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="is a folder"):
        open_storage(str(tmp_path))


def test_uncreatable_folder_is_a_user_error(tmp_path: Path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match="cannot create the results folder"):
        open_storage(str(tmp_path / "file" / "lrbench.journal"))


def test_sqlite_url_works(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    storage = open_storage(url)
    assert isinstance(storage, RDBStorage)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.tell(study.ask(), 0.5)
    reopened = optuna.load_study(study_name="s", storage=open_storage(url))
    assert [t.value for t in reopened.trials] == [0.5]


@pytest.mark.parametrize("url", [
    "nosuchdb://x",  # unknown dialect
    "sqlite:////nonexistent-lrbench-dir/x.db",  # cannot be opened
    "postgresql://user@127.0.0.1:1/db",  # driver not installed (or server down)
    "://",
])
def test_bad_url_is_a_user_error(url: str):
    """A typo in --storage must be one clear line naming the URL, not a traceback."""
    with pytest.raises(UserError) as err:
        open_storage(url)
    assert str(err.value).startswith(f"--storage {url}: ")


def test_unreachable_redis_url_is_a_user_error():
    with pytest.raises(UserError):
        open_storage("redis://127.0.0.1:1")


def test_file_that_is_not_a_journal_is_a_user_error(tmp_path: Path):
    path = tmp_path / "sweep.toml"
    path.write_text('[study]\nname = "x"\n')
    with pytest.raises(UserError):
        open_storage(str(path)).get_all_studies()


# --- claim_lock --------------------------------------------------------------------------

CLAIMER = textwrap.dedent("""
    import sys, time
    from lrbench.storage import claim_lock
    journal, log, tag = sys.argv[1:]

    def mark(event):
        with open(log, "a") as f:
            f.write(f"{event} {tag}\\n")

    mark("ready")
    with claim_lock(journal, "s"):
        mark("start")
        time.sleep(0.3)
        mark("end")
""")


def events(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_claim_lock_serialises_processes(tmp_path: Path):
    """Two slots must never both count 9 of 10 trials and both start a tenth.

    This process holds the lock while two others start and block on it; once released,
    each child's start/end pair must finish before the other's start.
    """
    journal, log = str(tmp_path / "lrbench.journal"), tmp_path / "events.log"
    with claim_lock(journal, "s"):
        children = [subprocess.Popen([sys.executable, "-c", CLAIMER, journal, str(log), tag])
                    for tag in ("a", "b")]
        deadline = time.monotonic() + 60
        while sum(e.startswith("ready") for e in events(log)) < 2:
            assert time.monotonic() < deadline, f"children never got ready: {events(log)}"
            assert all(c.poll() is None for c in children), "a child exited early"
            time.sleep(0.05)
        time.sleep(0.3)  # both are now blocked on the lock (or would have marked "start")
        assert not any(e.startswith("start") for e in events(log)), events(log)
    for child in children:
        assert child.wait(timeout=60) == 0
    claimed = [e for e in events(log) if not e.startswith("ready")]
    first, second = claimed[0].split()[1], claimed[2].split()[1]
    assert {first, second} == {"a", "b"}
    assert claimed == [f"start {first}", f"end {first}", f"start {second}", f"end {second}"]
    # the lock file sits beside the journal, per study; the journal itself is not created
    assert (tmp_path / ".lrbench.journal.s.claim").is_file()
    assert not (tmp_path / "lrbench.journal").exists()


def test_claim_lock_is_per_study(tmp_path: Path):
    """Different studies in one journal do not wait on each other (a second open of the
    same lock file in this process would block here)."""
    journal = str(tmp_path / "lrbench.journal")
    with claim_lock(journal, "a"), claim_lock(journal, "b"):
        pass
    assert {p.name for p in tmp_path.iterdir()} == {".lrbench.journal.a.claim",
                                                     ".lrbench.journal.b.claim"}


def test_claim_lock_for_a_url_is_a_no_op(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    with claim_lock(url, "s"):
        pass
    assert list(tmp_path.iterdir()) == []

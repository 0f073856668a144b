"""Tests for lrbench.sweep.claim: the lock around "count the trials, then start more".

Real processes contend for it; the PostgreSQL advisory lock runs where CI starts a server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lrbench.errors import StorageError
from lrbench.sweep.claim import claim_lock, exact_claims

# --- claim_lock --------------------------------------------------------------------------

CLAIMER = textwrap.dedent("""
    import sys, time
    from lrbench.sweep.claim import claim_lock
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


def test_claim_lock_for_a_sqlite_url_locks_a_file_beside_the_database(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert exact_claims(url)
    with claim_lock(url, "s"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == [".studies.db.s.claim"]


def test_claim_lock_without_a_shared_lock_is_a_no_op_and_says_so(tmp_path: Path, caplog):
    url = "mysql://user@127.0.0.1:1/db"  # nothing is contacted
    assert not exact_claims(url)
    with claim_lock(url, "s"):
        pass
    assert "no shared lock" in caplog.text


def test_claim_lock_wait_times_out_with_a_message(tmp_path: Path):
    """A hung holder must not stall every other slot forever, silently."""
    journal = str(tmp_path / "lrbench.journal")
    holder = subprocess.Popen([sys.executable, "-c", CLAIMER.replace("0.3", "30"), journal,
                               str(tmp_path / "events.log"), "holder"])
    try:
        deadline = time.monotonic() + 60
        while "start holder" not in events(tmp_path / "events.log"):
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(StorageError, match=f"waited 1 s .*held by pid {holder.pid}"):
            with claim_lock(journal, "s", timeout=1.0):
                pass
        assert 1.0 <= time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()


def test_claim_lock_of_a_killed_holder_is_free_at_once(tmp_path: Path):
    """kill -9 mid-claim: the kernel drops an flock with its process; no 30 s stall."""
    journal = str(tmp_path / "lrbench.journal")
    holder = subprocess.Popen([sys.executable, "-c", CLAIMER.replace("0.3", "30"), journal,
                               str(tmp_path / "events.log"), "holder"])
    deadline = time.monotonic() + 60
    while "start holder" not in events(tmp_path / "events.log"):
        assert time.monotonic() < deadline and holder.poll() is None
        time.sleep(0.05)
    os.kill(holder.pid, 9)
    holder.wait()
    started = time.monotonic()
    with claim_lock(journal, "s", timeout=5.0):
        pass
    assert time.monotonic() - started < 1.0


POSTGRES_URL = os.environ.get("LRBENCH_TEST_POSTGRES")


@pytest.mark.skipif(not POSTGRES_URL, reason="set LRBENCH_TEST_POSTGRES=postgresql://… to run "
                                             "(.ci/run starts a PostgreSQL server and sets it)")
def test_postgresql_claim_lock_excludes_other_processes():
    """The advisory lock lives in the server: a second process waits, then times out."""
    script = textwrap.dedent("""
        import sys
        from lrbench.sweep.claim import claim_lock
        from lrbench.errors import StorageError
        try:
            with claim_lock(sys.argv[1], "pg-claim-test", timeout=1.0):
                print("got it")
        except StorageError as err:
            print("refused:", err)
    """)
    with claim_lock(POSTGRES_URL, "pg-claim-test"):
        held = subprocess.run([sys.executable, "-c", script, POSTGRES_URL], capture_output=True,
                              text=True, timeout=60)
    assert held.stdout.startswith("refused:") and "advisory lock" in held.stdout, held.stderr
    free = subprocess.run([sys.executable, "-c", script, POSTGRES_URL], capture_output=True,
                          text=True, timeout=60)
    assert free.stdout.strip() == "got it", free.stderr

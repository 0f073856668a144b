"""Damaged storage is reported, never silently dropped: a torn journal tail and the trial
it left RUNNING show on the terminal and on the page; damage mid-file names its line."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
from conftest import NEEDS_MNIST, run_lrbench

pytestmark = [pytest.mark.slow, NEEDS_MNIST]


def report(results: Path) -> subprocess.CompletedProcess:
    return run_lrbench("report", results=results, timeout=300)


def torn_at_last_completion(journal: bytes) -> bytes:
    """The journal as a crash would leave it halfway through writing the last record that
    completes a trial: everything after that record never got written."""
    lines = journal.splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines)
               if line.startswith(b'{"op_code":6,') and b'"state":1,' in line)
    return b"".join(lines[:last]) + lines[last][: len(lines[last]) // 2]


def test_a_torn_tail_and_its_orphaned_trial_are_reported(results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "results"
    copy.mkdir()
    journal = copy / "lrbench.journal"
    torn = torn_at_last_completion((results / "lrbench.journal").read_bytes())
    journal.write_bytes(torn)
    done = report(copy)
    assert done.returncode == 0, done.stderr
    err = " ".join(done.stderr.split())
    assert "torn bytes" in err and "RUNNING with no live worker process" in err
    assert "Traceback" not in done.stderr
    page = (copy / "report" / "index.html").read_text(encoding="utf-8")
    assert page.count("Storage warning:") == 2
    assert "1 trial(s) are RUNNING with no live worker process" in page
    assert "1 trial(s) running (not finished" in page
    with open(copy / "report" / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["state"] for row in rows].count("running") == 1  # counted, not dropped
    assert journal.read_bytes() == torn  # a reader changes nothing


def test_damage_mid_file_exits_2_naming_its_line(results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "results"
    copy.mkdir()
    lines = (results / "lrbench.journal").read_bytes().splitlines(keepends=True)
    lines[41] = lines[41][: len(lines[41]) // 2] + b"\n"
    (copy / "lrbench.journal").write_bytes(b"".join(lines))
    done = report(copy)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "line 42 is not a complete journal record" in " ".join(done.stderr.split())
    assert "the 41 records before it are intact" in " ".join(done.stderr.split())

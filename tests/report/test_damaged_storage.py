"""Damaged storage is reported, never silently dropped: a torn journal tail and the trial
it left RUNNING show on the terminal and on the page; damage mid-file names its line."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NEEDS_MNIST, REPO

pytestmark = [pytest.mark.slow, NEEDS_MNIST]


def report(results: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrbench", "report", "--results",
                           str(results)], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_torn_tail_and_its_orphaned_trial_are_reported(results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "results"
    copy.mkdir()
    shutil.copy(results / "lrbench.journal", copy / "lrbench.journal")
    journal = copy / "lrbench.journal"
    intact = journal.read_bytes()
    journal.write_bytes(intact[:-100])  # cuts the last record: a trial's end
    done = report(copy)
    assert done.returncode == 0, done.stderr
    err = " ".join(done.stderr.split())
    assert "torn bytes" in err and "RUNNING with no live worker" in err
    assert "Traceback" not in done.stderr
    page = (copy / "report" / "index.html").read_text(encoding="utf-8")
    assert page.count("Storage warning:") == 2
    assert "study dlwizard: 1 trial(s) are RUNNING with no live worker" in page  # swept last
    assert "1 trial(s) running (not finished" in page
    with open(copy / "report" / "trials.csv") as handle:
        states = [row["state"] for row in csv.DictReader(handle) if row["study"] == "dlwizard"]
    assert states.count("running") == 1 and len(states) == 5  # counted, not dropped
    assert journal.read_bytes() == intact[:-100]  # a reader changes nothing


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

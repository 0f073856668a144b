"""A storage server that goes away mid-sweep: a private PostgreSQL, stopped and started.

Each test runs its own server (tests/private_postgres.py: initdb + pg_ctl on a free
port), so it can be stopped without touching the one other tests share. Before lrbench
waited outages out, a restart under a sweep ended it with a ~45-line traceback
("exceeding max length"), exit 1, and RUNNING trials left for the next run.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import private_postgres
import pytest
from conftest import NEEDS_MNIST, assert_waited_out, restart_under_a_sweep
from optuna.trial import TrialState
from private_postgres import Server
from test_sweep_cli import lrbench

pytestmark = [pytest.mark.slow, NEEDS_MNIST]


@pytest.fixture
def server() -> Iterator[Server]:
    if not private_postgres.available():
        pytest.skip("no PostgreSQL server binaries here (apt-get install postgresql)")
    with private_postgres.private_server() as running:
        yield running


def study_states(url: str) -> Counter:
    study = optuna.load_study(study_name="smoke", storage=url)
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def sweep(server: Server, results: Path, *extra: str, **popen: object) -> subprocess.Popen:
    return lrbench("sweep", "smoke", "--trials", "30", "--epochs", "4", "--workers", "2",
                   "--storage", server.url, *extra, results=results, **popen)


def wait_for_completed(server: Server, proc: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if study_states(server.url)[TrialState.COMPLETE] >= count:
                return
        except KeyError:  # no study yet
            pass
        time.sleep(0.2)
    raise AssertionError("the sweep never completed its first trials")


def test_a_restart_inside_the_wait_costs_nothing(server: Server, tmp_path: Path) -> None:
    proc, out, err = restart_under_a_sweep(
        server, lambda stderr: sweep(server, tmp_path, stderr=stderr),
        lambda proc: wait_for_completed(server, proc, 3), tmp_path / "stderr.txt")
    assert_waited_out(proc, out, err, trials=30)
    count = study_states(server.url)
    assert count[TrialState.COMPLETE] + count[TrialState.PRUNED] == 30
    assert count[TrialState.RUNNING] == count[TrialState.WAITING] == 0


def test_an_outage_past_the_wait_stops_in_one_line_and_a_rerun_finishes(
        server: Server, tmp_path: Path) -> None:
    proc = sweep(server, tmp_path, "--storage-wait", "5")
    wait_for_completed(server, proc, 3)
    server.stop()
    stopped = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert time.monotonic() - stopped < 40
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"lrbench: error: storage {server.url} unreachable for "), err
    assert last.endswith("run the same command to resume"), err
    server.start()
    rerun = sweep(server, tmp_path)
    out, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err
    count = study_states(server.url)
    assert count[TrialState.COMPLETE] + count[TrialState.PRUNED] == 30
    assert count[TrialState.RUNNING] == count[TrialState.WAITING] == 0

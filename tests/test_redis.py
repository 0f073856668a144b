"""`--storage redis://…` end to end: sweeps on a private Redis server that is killed,
restarted, and restarted without its data (tests/private_redis.py: a real
``redis-server`` on a free port, with an append-only file synced at every write).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import private_redis
import pytest
import redis
from conftest import NEEDS_MNIST, assert_waited_out, restart_under_a_sweep, run_lrbench
from optuna.trial import TrialState
from private_redis import Server
from test_sweep_cli import dashboard_studies, lrbench, run

from lrbench.store import record
from lrbench.store.storage import open_storage

pytestmark = [pytest.mark.slow, NEEDS_MNIST,
              pytest.mark.skipif(not private_redis.available(),
                                 reason="no redis-server here (apt-get install redis-server)")]


@pytest.fixture
def server() -> Iterator[Server]:
    with private_redis.private_server() as running:
        yield running


def trials(server: Server, name: str = "smoke") -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(server.url, create=False)
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def states(server: Server) -> Counter:
    return Counter(t.state for t in trials(server))


def wait_for(server: Server, proc, done) -> list[optuna.trial.FrozenTrial]:
    """Poll the study while ``proc`` runs until ``done(trials)`` is truthy."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            found = trials(server)
        except KeyError:  # no study yet
            found = []
        if done(found):
            return found
        time.sleep(0.1)
    raise AssertionError("the sweep ended, or never got there")


def test_two_slots_of_four_stacked_trials_end_at_exactly_the_count(server: Server,
                                                                    tmp_path: Path) -> None:
    """13 is no multiple of 2 slots x K=4: the claim lock must stop the last stacks."""
    done = run("sweep", "smoke", "--trials", "13", "--epochs", "8", "--workers", "2",
               "--engine", "batched", "--batch-trials", "4", "--storage", server.url,
               results=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""  # no warning for a supported storage
    assert "13/13 trials finished" in " ".join(done.stdout.split())
    found = trials(server)
    assert len(found) == 13
    assert Counter(t.state for t in found) == {TrialState.COMPLETE: 13}
    assert {record.claim_of(t).slot for t in found} == {0, 1}
    assert not (tmp_path / "lrbench.journal").exists()  # everything went to the server


def test_a_killed_worker_process_is_recovered_and_the_count_finishes(server: Server,
                                                                     tmp_path: Path) -> None:
    proc = lrbench("sweep", "smoke", "--trials", "8", "--epochs", "12", "--engine",
                   "sequential", "--storage", server.url, results=tmp_path)
    running = wait_for(server, proc, lambda found: [
        t for t in found if t.state == TrialState.RUNNING and record.claim_of(t)])
    victim = next(t for t in running if record.claim_of(t))
    os.kill(record.claim_of(victim).pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    found = trials(server)
    assert found[victim.number].state == TrialState.FAIL
    assert "re-queued" in record.record_of(found[victim.number]).reason
    rerun = [t for t in found if record.plan_of(t).requeued_from == victim.number]
    assert len(rerun) == 1 and rerun[0].params == victim.params
    assert Counter(t.state for t in found)[TrialState.COMPLETE] == 8


def test_a_restart_mid_sweep_is_waited_out_and_the_count_is_exact(server: Server,
                                                                  tmp_path: Path) -> None:
    # stop() is SIGKILL: no final save; the append-only file has every write
    proc, out, err = restart_under_a_sweep(
        server, lambda stderr: lrbench("sweep", "smoke", "--trials", "30", "--epochs", "4",
                                       "--workers", "2", "--storage", server.url,
                                       results=tmp_path, stderr=stderr),
        lambda proc: wait_for(server, proc, lambda found: sum(
            t.state == TrialState.COMPLETE for t in found) >= 3), tmp_path / "stderr.txt")
    assert_waited_out(proc, out, err, trials=30)
    count = states(server)
    assert count[TrialState.COMPLETE] + count[TrialState.PRUNED] == 30
    assert count[TrialState.RUNNING] == count[TrialState.WAITING] == 0


def test_a_restart_that_lost_the_data_stops_the_sweep_and_writes_nothing_over_it(
        server: Server, tmp_path: Path) -> None:
    proc = lrbench("sweep", "smoke", "--trials", "30", "--epochs", "4", "--workers", "2",
                   "--storage", server.url, results=tmp_path)
    wait_for(server, proc, lambda found: sum(t.state == TrialState.COMPLETE
                                             for t in found) >= 3)
    server.restart_empty()
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err
    assert "lost its data" in err and "Traceback" not in err, err
    with redis.Redis.from_url(server.url) as client:
        # no study written from scratch: at most a claim lock, which expires
        assert not [k for k in client.keys() if not k.startswith(b"lrbench:claim:")]


def test_confirm_report_list_and_optuna_dashboard_read_it(server: Server,
                                                          tmp_path: Path) -> None:
    assert run("sweep", "smoke", "--trials", "6", "--epochs", "2", "--storage", server.url,
               results=tmp_path).returncode == 0
    confirm = run("confirm", "smoke", "--seeds", "2", "--storage",
                  server.url, results=tmp_path)
    assert confirm.returncode == 0, confirm.stderr
    listed = run_lrbench("list", "--storage", server.url)
    assert listed.returncode == 0 and "smoke" in listed.stdout
    report = run_lrbench("report", "--storage", server.url, "--out", str(tmp_path / "page"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "page" / "index.html").read_text(encoding="utf-8")
    assert server.url in page and "confirm" in page
    assert dashboard_studies(server.url) == ["smoke", "smoke:confirm"]

"""End to end through the ``lrbench`` command: real processes, real storage, real data.

Each test runs the console script in a subprocess (as a user would), on the 5,000-image
MNIST sample in ../shared/data, and then reads the journal storage back with Optuna.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import psutil
import pytest
from conftest import DATA, NEEDS_MNIST, REPO, run_lrbench, start_lrbench
from optuna.trial import TrialState

from lrbench.errors import UserError
from lrbench.store import record
from lrbench.store.storage import open_storage
from lrbench.sweep import seeds

pytestmark = [pytest.mark.slow, NEEDS_MNIST]


def lrbench(*args: str, results: Path, **popen: object) -> subprocess.Popen:
    """A sweep command on the MNIST sample into ``results``, started."""
    return start_lrbench(*args, results=results, data_dir=DATA, **popen)


def run(*args: str, results: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """... and run to its end."""
    return run_lrbench(*args, results=results, data_dir=DATA, timeout=timeout)


def load(results: Path, name: str = "smoke") -> optuna.Study:
    storage = open_storage(str(results / "lrbench.journal"), create=False)
    return optuna.load_study(study_name=name, storage=storage)


def states(study: optuna.Study) -> Counter:
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def wait_for_running_trial(results: Path, name: str, timeout: float = 120,
                           started_within: float | None = None) -> optuna.trial.FrozenTrial:
    """A RUNNING trial already marked with its worker; with ``started_within``, one that is
    training (its parameters drawn and its engine recorded, the last step before training)
    and was asked at most that many seconds ago, so it is surely still training a moment
    later: a signal or a kill sent then lands inside it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (results / "lrbench.journal").exists():
            try:
                study = load(results, name)
            except KeyError:  # the journal file exists a moment before the study does
                time.sleep(0.2)
                continue
            running = study.get_trials(states=(TrialState.RUNNING,))
            running = [t for t in running if record.claim_of(t) is not None and (
                started_within is None or t.datetime_start is not None and
                (datetime.datetime.now() - t.datetime_start).total_seconds() < started_within)]
            if running:
                return running[0]
        time.sleep(0.2 if started_within is None else 0.02)
    raise AssertionError("no trial started running")


def wait_for_slots_at_work(results: Path, name: str, slots: int = 2,
                           timeout: float = 120) -> None:
    """Until trials of ``slots`` different worker processes run at once: every slot has
    started (a signal sent earlier would land in a start-up, which other tests cover)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(KeyError, UserError):  # no journal, or no study, yet
            running = load(results, name).get_trials(states=(TrialState.RUNNING,))
            if len({c.pid for t in running if (c := record.claim_of(t))}) >= slots:
                return
        time.sleep(0.05)
    raise AssertionError(f"{slots} slots never trained at once")


ENGINES = pytest.mark.parametrize("engine", ["sequential", "batched"])


@ENGINES
def test_smoke_sweep_with_two_workers_stores_every_trial_with_curves(tmp_path: Path,
                                                                     engine: str) -> None:
    done = run("sweep", "smoke", "--workers", "2", "--engine", engine, "--batch-trials", "2",
               results=tmp_path)
    assert done.returncode == 0, done.stderr

    study = load(tmp_path)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert {record.claim_of(t).slot for t in trials} <= {0, 1}  # (a fast slot may take all 4)
    for trial in trials:
        rec = record.record_of(trial)
        # base seed 0 and the configuration, whatever the trial's number; one batch order
        assert rec.seed == seeds.trial_seed(0, {**trial.params, "epochs": 2})
        assert rec.data_seed == 0
        assert len(rec.curves["val_accuracy"]) == 2 == len(rec.curves["lr"])
        assert rec.curves["val_accuracy"][-1] == trial.value
        assert 0.5 < rec.test_accuracy <= 1.0  # 2 epochs on 4,000 images: ~0.88
        assert trial.params["schedule"] in ("step", "cosine", "onecycle")
        assert rec.family == trial.params["schedule"]
        assert rec.engine == engine
    if engine == "batched":  # two batches of two, on the sweep's one batch order
        assert all(record.record_of(t).batch_trials == 2 for t in trials)
        assert sorted(Counter(record.claim_of(t).pid for t in trials).values()) in ([2, 2], [4])
    assert "study smoke: families ranked by" in done.stdout  # the terminal's table
    for family in {t.params["schedule"] for t in trials}:
        assert f"  {family}: " in done.stdout  # its best parameters, on a line of its own

    again = run("sweep", "smoke", results=tmp_path)  # resuming a finished sweep adds nothing
    assert again.returncode == 0, again.stderr
    assert len(load(tmp_path).trials) == 4


@ENGINES
def test_ctrl_c_keeps_finished_trials_and_resume_completes_the_sweep(tmp_path: Path,
                                                                     engine: str) -> None:
    # Ctrl-C lands inside a trial that has just begun training (its slot fails and
    # re-queues it); with a fixed delay, both slots were once between trials together.
    # 12 trials of 8 epochs: the Ctrl-C lands long before the end, and the resume trains
    # what is left (30 trials cost ~10 CPU-seconds more).
    proc = lrbench("sweep", "smoke", "--trials", "12", "--epochs", "8", "--engine", engine,
                   "--batch-trials", "4", results=tmp_path, start_new_session=True)
    wait_for_slots_at_work(tmp_path, "smoke")
    wait_for_running_trial(tmp_path, "smoke", started_within=0.15)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    proc.communicate(timeout=60)
    assert proc.returncode == 130

    count = states(load(tmp_path))
    assert count[TrialState.RUNNING] == 0
    assert count[TrialState.FAIL] == count[TrialState.WAITING] >= 1  # interrupted -> re-queued
    finished_before = count[TrialState.COMPLETE]
    assert finished_before < 12

    resumed = run("sweep", "smoke", "--trials", "12", "--epochs", "8", results=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    count = states(load(tmp_path))
    assert count[TrialState.COMPLETE] == 12
    assert count[TrialState.WAITING] == count[TrialState.RUNNING] == 0


def killed_trials(trials: list[optuna.trial.FrozenTrial],
                  victim: optuna.trial.FrozenTrial) -> list[optuna.trial.FrozenTrial]:
    """The trials that died with the victim's process: the one seen running, or (if it
    finished between the look and the kill) the ones its process had started since."""
    pid = record.claim_of(victim).pid
    dead = [t for t in trials if t.state == TrialState.FAIL]
    assert dead and all(record.claim_of(t).pid == pid for t in dead), dead
    return dead


@ENGINES
def test_killed_worker_trial_is_failed_and_requeued_in_the_same_sweep(tmp_path: Path,
                                                                      engine: str) -> None:
    proc = lrbench("sweep", "smoke", "--trials", "8", "--epochs", "12", "--engine", engine,
                   results=tmp_path)
    victim = wait_for_running_trial(tmp_path, "smoke", started_within=0.4)
    os.kill(record.claim_of(victim).pid, signal.SIGKILL)  # a worker dies (OOM killer, say)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err  # recovered at once; a replacement slot trained it

    trials = load(tmp_path).get_trials()
    for dead in killed_trials(trials, victim):
        assert "re-queued" in record.record_of(dead).reason
        reruns = [t for t in trials if record.plan_of(t).requeued_from == dead.number]
        assert len(reruns) == 1 and reruns[0].params == dead.params
        assert reruns[0].state == TrialState.COMPLETE
    assert states(load(tmp_path))[TrialState.COMPLETE] == 8

    resumed = run("sweep", "smoke", "--trials", "8", "--epochs", "12", results=tmp_path)
    assert resumed.returncode == 0, resumed.stderr  # nothing left to do
    assert load(tmp_path).get_trials() == trials


def test_two_concurrent_sweeps_share_one_study_without_losing_trials(tmp_path: Path) -> None:
    # One trial per ask (sequential): a batched slot could claim all 20 before the second
    # sweep has started its worker.
    args = ("sweep", "smoke", "--trials", "20", "--epochs", "3", "--workers", "1",
            "--engine", "sequential")
    first = lrbench(*args, results=tmp_path)
    # The second joins a study already at work. The first's worker waits, stopped in its
    # trial, until the second's trains too: its 20 short trials (~3 s) were once all done
    # before the second had started its worker.
    held = psutil.Process(record.claim_of(wait_for_running_trial(tmp_path, "smoke")).pid)
    held.suspend()
    second = lrbench(*args, results=tmp_path)
    try:
        wait_for_slots_at_work(tmp_path, "smoke", slots=2)
    finally:
        held.resume()
    for proc in (first, second):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err

    trials = load(tmp_path).get_trials()
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 20}  # not 19, not 21
    assert sorted(t.number for t in trials) == list(range(20))
    assert len({record.claim_of(t).pid for t in trials}) == 2  # both sweeps did work


def test_dlwizard_sweep_runs_the_tutorials_five_configurations(tmp_path: Path) -> None:
    done = run("sweep", "dlwizard", "--epochs", "2", results=tmp_path)
    assert done.returncode == 0, done.stderr
    trials = load(tmp_path, "dlwizard").get_trials()
    configs = sorted((t.params["schedule"], *(v for k, v in sorted(t.params.items())
                                              if k != "schedule")) for t in trials)
    assert configs == sorted([("step", 0.1, 1), ("step", 0.1, 2), ("step", 0.96, 2),
                              ("plateau", 0.1, 0), ("plateau", 0.5, 0)])
    assert all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.parametrize("sweep_text, expected", [
    ("[study]\nname = 'x'\ntrials = 2\n[train]\nepochs = 0\n[schedules]\nfamilies = ['step']\n",
     ["train.epochs", "0"]),
    ("[study\nname = 1", ["(syntax)", "not valid TOML"]),
    ("[study]\nname = 'x'\ntrials = 2\n[train]\nepochs = 2\n[schedules]\nfamilies = ['stepp']\n",
     ["schedules.families", "stepp"]),
])
def test_bad_sweep_file_exits_2_with_file_key_value_and_writes_nothing(
        tmp_path: Path, sweep_text: str, expected: list[str]) -> None:
    sweep_file = tmp_path / "bad.toml"
    sweep_file.write_text(sweep_text)
    results = tmp_path / "results"
    done = run("sweep", str(sweep_file), results=results)
    assert done.returncode == 2
    assert str(sweep_file) in done.stderr
    for fragment in expected:
        assert fragment in done.stderr
    assert "Traceback" not in done.stderr
    assert not results.exists()


def test_missing_data_exits_2_and_says_where_to_put_it(tmp_path: Path) -> None:
    proc = run_lrbench("sweep", "smoke", results=tmp_path / "r", data_dir=tmp_path / "empty",
                       timeout=120)
    assert proc.returncode == 2
    assert "MNIST/raw" in proc.stderr and "Traceback" not in proc.stderr


def test_changed_setup_for_an_existing_study_exits_2(tmp_path: Path) -> None:
    assert run("sweep", "smoke", "--trials", "1", results=tmp_path).returncode == 0
    changed = run("sweep", "smoke", "--trials", "1", "--epochs", "1", results=tmp_path)
    assert changed.returncode == 2
    assert "epochs" in changed.stderr and "--study" in changed.stderr


def test_list_shows_sweep_files_and_studies(tmp_path: Path) -> None:
    assert run("sweep", "smoke", "--trials", "1", results=tmp_path).returncode == 0
    listed = run_lrbench("list", results=tmp_path, timeout=60)
    assert listed.returncode == 0
    for name in ("smoke", "step", "plateau", "all", "dlwizard"):
        assert name in listed.stdout
    # the studies table: smoke with its one complete trial, nothing pruned, failed or running
    studies_table = listed.stdout.split("studies in", 1)[1]
    [row] = [line for line in studies_table.splitlines() if line.startswith("│ smoke")]
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    assert cells[:5] == ["smoke", "1", "0", "0", "0"]
    assert 0.5 < float(cells[5]) <= 1.0  # best validation accuracy


def test_optuna_dashboard_opens_the_default_storage(tmp_path: Path) -> None:
    """`optuna-dashboard results/lrbench.journal` (the README's line) serves the studies."""
    assert run("sweep", "smoke", "--trials", "1", results=tmp_path).returncode == 0
    assert dashboard_studies(str(tmp_path / "lrbench.journal")) == ["smoke"]


def dashboard_studies(storage: str) -> list[str]:
    """The studies `optuna-dashboard STORAGE` serves, asked over HTTP."""
    import json
    import shutil
    import socket
    import urllib.request

    dashboard = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    if dashboard is None:
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[test]' brings it)")
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([dashboard, storage, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies") as answer:
                    studies = json.load(answer)["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline, "optuna-dashboard did not answer"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return [s["study_name"] for s in studies]


POSTGRES_URL = os.environ.get("LRBENCH_TEST_POSTGRES")


@pytest.mark.skipif(not POSTGRES_URL, reason="set LRBENCH_TEST_POSTGRES=postgresql://… to run "
                                             "(.ci/run starts a PostgreSQL server and sets it)")
def test_sweep_on_a_postgresql_storage_url(tmp_path: Path) -> None:
    """The multi-machine path: --storage URL, no shared folder; claims lock in the server."""
    import uuid

    study = f"smoke-{uuid.uuid4().hex[:8]}"
    done = run("sweep", "smoke", "--storage", POSTGRES_URL, "--study", study, results=tmp_path)
    assert done.returncode == 0, done.stderr
    storage = open_storage(POSTGRES_URL)
    trials = optuna.load_study(study_name=study, storage=storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # The claim lock is an advisory lock in the server: the count is exact.
    assert len(complete) == 4 == len(trials)
    assert all(len(record.record_of(t).curves["val_accuracy"]) == 2 for t in complete)
    assert not (tmp_path / "lrbench.journal").exists()  # nothing went to the default storage

    listed = run_lrbench("list", "--storage", POSTGRES_URL, timeout=60)
    assert listed.returncode == 0 and study in listed.stdout


def test_a_hold_out_that_leaves_no_batch_is_a_user_error_naming_file_and_key(
        tmp_path: Path) -> None:
    """validation_size = 5000 on the 5,000-image sample was refused by a message that named
    neither the file nor the key; 4999 trained on one image without a word."""
    text = (REPO / "sweeps" / "smoke.toml").read_text(encoding="utf-8")
    for size in ("5000", "4999"):
        sweep = tmp_path / f"holdout-{size}.toml"
        sweep.write_text(text.replace("validation_size = 0.2", f"validation_size = {size}"),
                         encoding="utf-8")
        done = run("sweep", str(sweep), results=tmp_path / size)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        message = " ".join(done.stderr.split())
        assert str(sweep) in message and "data.validation_size" in message and size in message
        assert not (tmp_path / size / "lrbench.journal").exists()  # nothing written

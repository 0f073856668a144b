"""Tests for lrbench.store.claims: the claim lock, liveness, and recovering dead workers' trials.

Real processes contend for it; the PostgreSQL advisory lock runs where CI starts a server,
the Redis lock on a private redis-server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import private_redis
import psutil
import pytest
from optuna.trial import TrialState

from lrbench.errors import StorageError
from lrbench.store import claims, record
from lrbench.store.claims import claim_lock, exact_claims
from lrbench.store.record import Claim, Plan
from lrbench.store.storage import open_storage
from lrbench.sweep.config import OptimizerConfig
from lrbench.train.schedules import ScheduleSpec
from lrbench.train.trial import TrialSpec

# --- claim_lock --------------------------------------------------------------------------

CLAIMER = textwrap.dedent("""
    import sys, time
    from lrbench.errors import LockTimeout
    from lrbench.store.claims import claim_lock
    journal, log, tag = sys.argv[1:]

    def mark(event):
        with open(log, "a") as f:
            f.write(f"{event} {tag}\\n")

    try:  # a look first, without waiting: is it held?
        with claim_lock(journal, "s", timeout=0):
            mark("free")
    except LockTimeout:
        mark("held")
    with claim_lock(journal, "s"):
        mark("start")
        time.sleep(0.3)
        mark("end")
""")


def events(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.slow
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
        while sum(e.startswith("held") for e in events(log)) < 2:  # both found it held
            assert time.monotonic() < deadline, f"children never tried it: {events(log)}"
            assert all(c.poll() is None for c in children), "a child exited early"
            assert not any(e.startswith(("free", "start")) for e in events(log)), events(log)
            time.sleep(0.05)
    for child in children:
        assert child.wait(timeout=60) == 0
    claimed = [e for e in events(log) if not e.startswith("held")]
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


def hold_claim_lock(location: str, tmp_path: Path) -> subprocess.Popen:
    """A process holding study "s"'s claim lock on ``location`` for 30 s, once it says so."""
    holder = subprocess.Popen([sys.executable, "-c", CLAIMER.replace("0.3", "30"), location,
                               str(tmp_path / "events.log"), "holder"])
    deadline = time.monotonic() + 60
    while "start holder" not in events(tmp_path / "events.log"):
        assert time.monotonic() < deadline and holder.poll() is None
        time.sleep(0.05)
    return holder


@pytest.mark.slow
def test_claim_lock_wait_times_out_with_a_message(tmp_path: Path):
    """A hung holder must not stall every other slot forever, silently."""
    journal = str(tmp_path / "lrbench.journal")
    holder = hold_claim_lock(journal, tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match=f"waited 1 s .*held by pid {holder.pid}"):
            with claim_lock(journal, "s", timeout=1.0):
                pass
        assert 1.0 <= time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_claim_lock_of_a_killed_holder_is_free_at_once(tmp_path: Path):
    """kill -9 mid-claim: the kernel drops an flock with its process; no 30 s stall."""
    journal = str(tmp_path / "lrbench.journal")
    holder = hold_claim_lock(journal, tmp_path)
    os.kill(holder.pid, 9)
    holder.wait()
    started = time.monotonic()
    with claim_lock(journal, "s", timeout=5.0):
        pass
    assert time.monotonic() - started < 1.0


# --- the claim lock on Redis: a private server (tests/private_redis.py) ---

@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if not private_redis.available():
        pytest.skip("no redis-server here (apt-get install redis-server)")
    with private_redis.private_server() as server:
        yield server.url


@pytest.mark.slow
def test_redis_claim_lock_serialises_processes_and_names_the_holder_on_timeout(
        redis_url: str, tmp_path: Path):
    assert exact_claims(redis_url)
    holder = hold_claim_lock(redis_url, tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match=f"waited 1 s .*'lrbench:claim:s' on "
                                               f"{redis_url}, held by \\S+ pid {holder.pid} "):
            with claim_lock(redis_url, "s", timeout=1.0):
                pass
        assert 1.0 <= time.monotonic() - started < 5
        with claim_lock(redis_url, "another study", timeout=1.0):
            pass  # per study
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_redis_claim_lock_of_a_killed_holder_here_is_free_at_once(redis_url: str,
                                                                  tmp_path: Path):
    """kill -9 mid-claim: the lock's value names a dead process of this machine, and a
    waiter breaks it, as the kernel drops a dead process's flock. Not yet reaped (a
    zombie, as a killed Dask worker stays until its parent waits) counts as dead."""
    holder = hold_claim_lock(redis_url, tmp_path)
    os.kill(holder.pid, 9)
    try:
        started = time.monotonic()
        with claim_lock(redis_url, "s", timeout=5.0):
            pass
        assert time.monotonic() - started < 1.0
    finally:
        holder.wait()


def test_redis_claim_lock_of_a_holder_elsewhere_frees_when_it_expires(redis_url: str):
    import redis

    with redis.Redis.from_url(redis_url) as client:  # a holder on another machine
        client.set("lrbench:claim:far", "node7 pid 4242 started 1.000 abcd1234", px=1500)
    started = time.monotonic()
    with pytest.raises(StorageError, match="held by node7 pid 4242"):
        with claim_lock(redis_url, "far", timeout=0.5):
            pass
    with claim_lock(redis_url, "far", timeout=10):
        waited = time.monotonic() - started
    assert 1.0 <= waited < 3


POSTGRES_URL = os.environ.get("LRBENCH_TEST_POSTGRES")


@pytest.mark.skipif(not POSTGRES_URL, reason="set LRBENCH_TEST_POSTGRES=postgresql://… to run "
                                             "(.ci/run starts a PostgreSQL server and sets it)")
def test_postgresql_claim_lock_excludes_other_processes():
    """The advisory lock lives in the server: a second process waits, then times out."""
    script = textwrap.dedent("""
        import sys
        from lrbench.store.claims import claim_lock
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


# --- recovering trials left RUNNING by dead workers --------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> str:
    path = str(tmp_path / "lrbench.journal")
    optuna.create_study(study_name="s", storage=open_storage(path), direction="maximize")
    return path


def reopen(journal: str) -> optuna.Study:
    """The study as a new sweep process sees it: its own connection to the journal."""
    return optuna.load_study(study_name="s", storage=open_storage(journal))


def running_trial(study: optuna.Study, **claim: object) -> int:
    """Ask a trial with params, as a worker does, and claim it with `claim`'s fields."""
    trial = study.ask()
    trial.suggest_categorical("schedule", ["step"])
    trial.suggest_float("step.gamma", 0.05, 0.99, log=True)
    record.write_claim(trial, Claim(**{"slot": 0, "device": "cpu", "seed": 5, "data_seed": 0,
                                       **claim}))
    return trial.number


def waiting(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def constant_spec(number: int) -> TrialSpec:
    return TrialSpec(number, 5, "fnn", 1, 100, OptimizerConfig(), ScheduleSpec("constant", {}))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not psutil.pid_exists(process.pid)
    return process.pid


def test_dead_local_worker_trial_is_failed_and_requeued(journal: str):
    number = running_trial(reopen(journal), host=socket.gethostname(), pid=dead_pid(),
                           pid_started=1_000_000.0, heartbeat=time.time())
    study = reopen(journal)
    assert claims.recover_stale_trials(study) == [number]
    old = study.trials[number]
    assert old.state == TrialState.FAIL
    assert "died" in record.record_of(old).reason
    assert record.record_of(old).status == "failed"
    [queued] = waiting(study)
    assert queued.system_attrs["fixed_params"] == old.params
    # with the seeds it trained with (its claim's)
    assert record.plan_of(queued) == Plan(seed=5, data_seed=0, requeued_from=number)
    # nothing is left to recover: a second sweep starting now must not queue it twice
    assert claims.recover_stale_trials(reopen(journal)) == []
    assert len(waiting(reopen(journal))) == 1
    # the next trial asked runs the same configuration again
    number_asked = study.ask().number
    asked = study.trials[number_asked]
    assert asked.state == TrialState.RUNNING
    assert record.plan_of(asked).requeued_from == number
    assert asked.system_attrs["fixed_params"] == old.params


def test_a_dead_workers_trials_are_found_whoever_re_queued_them(journal: str):
    """The parent names a killed slot's trials even when another slot's ask re-queued
    them first (it once said "it held no trial"); a trial of the same process that failed
    on its own, and another process's, are not among them."""
    host, pid = socket.gethostname(), dead_pid()
    study = reopen(journal)
    own_failure = running_trial(study, host=host, pid=pid, pid_started=1_000_000.0)
    record.write_record(study, study.trials[own_failure]._trial_id,
                        record.failed_record(study.trials[own_failure], "a NaN loss"))
    study.tell(own_failure, state=TrialState.FAIL)
    held = running_trial(study, host=host, pid=pid, pid_started=1_000_000.0)
    other = running_trial(study, host=host, pid=dead_pid(), pid_started=1_000_000.0)
    assert claims.requeued_trials_of(reopen(journal), host, pid) == []  # none re-queued yet
    assert sorted(claims.recover_stale_trials(reopen(journal))) == [held, other]  # "another slot"
    assert claims.requeued_trials_of(reopen(journal), host, pid) == [held]


def test_live_local_worker_trial_is_left_running(journal: str):
    study = reopen(journal)
    trial = study.ask()
    spec = constant_spec(trial.number)
    claim = claims.new_claim(trial, spec, slot_index=0, device="cpu")  # this very process: alive
    record.write_claim(trial, claim)
    assert claim.pid == psutil.Process().pid and record.claim_of(trial) == claim
    assert claims.recover_stale_trials(reopen(journal)) == []
    assert reopen(journal).trials[trial.number].state == TrialState.RUNNING


def test_reused_pid_counts_as_dead(journal: str):
    """Same pid, other start time: the worker died and a new process took its number."""
    me = psutil.Process()
    number = running_trial(reopen(journal), host=socket.gethostname(), pid=me.pid,
                           pid_started=me.create_time() - 100, heartbeat=time.time())
    assert claims.recover_stale_trials(reopen(journal)) == [number]


def test_a_killed_worker_not_yet_reaped_counts_as_dead(journal: str):
    """A zombie (killed; its parent, a Dask worker's launcher say, has not waited for it
    yet) still has its pid and start time: its trial must be recovered all the same."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = psutil.Process(child.pid).create_time()
    number = running_trial(reopen(journal), host=socket.gethostname(), pid=child.pid,
                           pid_started=started, heartbeat=time.time())
    assert claims.recover_stale_trials(reopen(journal)) == []  # alive
    child.kill()
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert claims.recover_stale_trials(reopen(journal)) == [number]
    finally:
        child.wait()


@pytest.mark.parametrize("age, recovered", [(60, False), (claims.STALE_AFTER_SECONDS + 60, True)])
def test_other_hosts_trials_go_by_heartbeat(journal: str, age: float, recovered: bool):
    """Another machine's pid means nothing here; only its heartbeat's age does."""
    number = running_trial(reopen(journal), host="some-other-host", pid=psutil.Process().pid,
                           pid_started=psutil.Process().create_time(),
                           heartbeat=time.time() - age)
    assert claims.recover_stale_trials(reopen(journal)) == ([number] if recovered else [])
    state = reopen(journal).trials[number].state
    assert state == (TrialState.FAIL if recovered else TrialState.RUNNING)


def test_trial_asked_but_not_yet_marked_is_not_taken_for_dead(journal: str):
    """A slot of another sweep between ask() and its claim is alive, not stale."""
    slot_study = reopen(journal)
    trial = slot_study.ask()  # no claim yet
    assert claims.recover_stale_trials(reopen(journal)) == []
    spec = constant_spec(trial.number)
    record.write_claim(trial, claims.new_claim(trial, spec, slot_index=0, device="cpu"))
    assert reopen(journal).trials[trial.number].state == TrialState.RUNNING


def test_unmarked_trial_older_than_a_claim_is_recovered(journal: str, monkeypatch):
    """Askers mark their trials before releasing the claim lock, so an unmarked trial
    older than that, seen under the lock, was asked by a process that died (a kill in
    the ask-to-mark window once left such a trial RUNNING for 30 minutes)."""
    number = reopen(journal).ask().number
    monkeypatch.setattr(claims, "UNMARKED_AFTER_SECONDS", 0.0)
    time.sleep(0.01)
    study = reopen(journal)
    assert claims.recover_stale_trials(study) == [number]
    assert study.trials[number].state == TrialState.FAIL
    assert [record.plan_of(t).requeued_from for t in waiting(study)] == [number]

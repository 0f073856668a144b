"""Tests for lrbench.sweep.processes.cluster: sweeps whose slots run on a real Dask cluster.

The cluster tests start a real ``dask scheduler`` and two ``dask worker`` processes (one
thread each, no nanny, each in its own process group) on 127.0.0.1: a test that kills
one of them starts its own, the others share one. They store the study in the
PostgreSQL server that .ci/run starts (LRBENCH_TEST_POSTGRES), and skip without one; the
tests of counting and of a killed worker run on a private Redis too
(tests/private_redis.py). The processes are killed when their tests are done.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import private_redis
import pytest
from conftest import DATA, NEEDS_MNIST, REPO, start_lrbench
from optuna.trial import FrozenTrial, TrialState

from lrbench.store.record import claim_of, record_of
from lrbench.store.storage import open_storage
from lrbench.sweep.processes.cluster import (
    ClusterWorker,
    hosts_text,
    plan_cluster_slots,
)

POSTGRES_URL = os.environ.get("LRBENCH_TEST_POSTGRES")
NEEDS_POSTGRES = pytest.mark.skipif(not POSTGRES_URL, reason="set LRBENCH_TEST_POSTGRES="
                                    "postgresql://… (.ci/run starts a server)")


# --- planning slots from the cluster's workers ---


def test_slots_are_one_per_gpu_and_one_per_cpu_worker_with_its_threads():
    workers = [ClusterWorker("tcp://a:1", "node-a", 10, threads=4, gpus=2),
               ClusterWorker("tcp://b:1", "node-b", 11, threads=8, gpus=0)]
    slots = plan_cluster_slots(workers)
    assert [(s.index, s.device, s.threads, s.worker, s.host) for s in slots] == [
        (0, "cuda:0", 1, "tcp://a:1", "node-a"), (1, "cuda:1", 1, "tcp://a:1", "node-a"),
        (2, "cpu", 8, "tcp://b:1", "node-b")]
    assert hosts_text(slots) == "node-a: 2 x cuda, node-b: 1 x cpu"
    assert len(plan_cluster_slots(workers, most=2)) == 2
    # one task per thread: a worker with 2 GPUs and 1 thread can feed one of them
    narrow = [ClusterWorker("tcp://c:1", "node-c", 12, threads=1, gpus=2)]
    assert [s.device for s in plan_cluster_slots(narrow)] == ["cuda:0"]


def test_a_cluster_without_workers_is_a_user_error():
    from lrbench.errors import UserError

    with pytest.raises(UserError, match="no cluster workers"):
        plan_cluster_slots([])


# --- a real scheduler and two workers ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen]  # by name
    addresses: dict[str, str]  # name -> the worker's address


# The cluster workers' limit on the parent's silence (60 s for users): the killed-parent
# test waits it out, while the slots train on. The parent beats twice a second; 8 s of
# silence is no live parent's, even on loaded cores.
PARENT_GONE_SECONDS = 8.0
# Stopped: no trial RUNNING and none started for this long. A slot that still trains
# starts one every ~0.6 s (smoke trials of 4 epochs), and reads its stop flag each second.
QUIET_SECONDS = 3.0


def _dask(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
                            env={**os.environ,
                                 "LRBENCH_PARENT_GONE_SECONDS": str(PARENT_GONE_SECONDS)})


@contextlib.contextmanager
def running_cluster(logs: Path) -> Iterator[Cluster]:
    """A scheduler and two workers on 127.0.0.1, their output in ``logs``; killed after."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    procs = [_dask("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                   address.rsplit(":", 1)[1], "--no-dashboard", log=logs / "scheduler.log")]
    try:
        workers = {name: _dask("distributed.cli.dask_worker", address, "--nthreads", "1",
                               "--no-nanny", "--no-dashboard", "--name", name,
                               log=logs / f"{name}.log") for name in ("w1", "w2")}
        procs += workers.values()
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
            info = client.scheduler_info(n_workers=-1)["workers"]
        addresses = {w["name"]: a for a, w in info.items()}
        yield Cluster(address, procs[0], workers, addresses)
    finally:
        for proc in procs:
            with_group(proc, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of the test's own, for a test that kills part of it."""
    with running_cluster(tmp_path) as started:
        yield started


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the tests that leave it whole (each asserts that it does): each
    start costs ~3 s of imports in each of its three processes, and torch in each
    worker's first slot."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture(params=["postgresql", "redis"])
def shared_storage(request: pytest.FixtureRequest) -> Iterator[str]:
    """A storage every cluster worker reaches: .ci/run's PostgreSQL, or a private Redis."""
    if request.param == "postgresql":
        if not POSTGRES_URL:
            pytest.skip("set LRBENCH_TEST_POSTGRES=postgresql://… (.ci/run starts a server)")
        yield POSTGRES_URL
        return
    if not private_redis.available():
        pytest.skip("no redis-server here (apt-get install redis-server)")
    with private_redis.private_server() as server:
        yield server.url


# A trial asked at most this many seconds ago is still training a moment later: a smoke
# trial of 4 epochs takes ~0.6 s (tests/test_sweep_cli.py waits the same way).
JUST_STARTED = 0.25


def with_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def sweep(*args: str, results: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return start_lrbench("sweep", "smoke", "--engine", "sequential", *args, results=results,
                         data_dir=DATA, env=env)


# For a sweep whose scheduler is not there, or goes: it hears that nobody answers within
# this many seconds (10 for users), which it then reports.
NOBODY_ANSWERS = {"LRBENCH_CONNECT_TIMEOUT_SECONDS": "3"}


def study_of(name: str, storage: str | None = POSTGRES_URL) -> optuna.Study:
    assert storage is not None
    return optuna.load_study(study_name=name, storage=open_storage(storage, create=False))


def unique(name: str) -> str:
    return f"{name}-{os.getpid()}-{time.time_ns()}"


def watch(proc: subprocess.Popen, name: str, until: Callable[[list[FrozenTrial]], Any],
          timeout: float = 180, storage: str | None = POSTGRES_URL) -> Any:
    """Poll the study's trials while ``proc`` runs, until ``until(trials)`` is truthy;
    return that (None if the sweep ended or the time ran out first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            trials = study_of(name, storage).get_trials(deepcopy=False)
        except KeyError:  # the study is not created yet
            trials = []
        found = until(trials)
        if found:
            return found
        time.sleep(0.05)
    return None


def configuration(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's params; a queued trial holds them as Optuna's fixed params until it runs."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def count(trials: list[FrozenTrial], state: TrialState) -> int:
    return sum(t.state == state for t in trials)


@pytest.mark.slow
@NEEDS_MNIST
def test_a_cluster_sweep_counts_exactly_with_trials_from_both_workers(
        shared_cluster: Cluster, shared_storage: str, tmp_path: Path):
    cluster = shared_cluster
    name = unique("cluster")
    proc = sweep("--trials", "8", "--storage", shared_storage, "--study", name,
                 "--cluster", cluster.address, results=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"cluster {cluster.address}: 2 slots ({socket.gethostname()}: 2 x cpu)" in out
    trials = study_of(name, shared_storage).get_trials()
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 8}
    claims = [claim_of(t) for t in trials]
    assert {c.worker for c in claims} == set(cluster.addresses.values())  # both took trials
    assert {c.host for c in claims} == {socket.gethostname()}
    # each slot ran inside its worker's process, and recorded it
    assert {c.pid for c in claims} == {p.pid for p in cluster.workers.values()}


@pytest.mark.slow
@NEEDS_MNIST
def test_a_killed_worker_costs_only_its_trials_and_the_sweep_finishes_the_count(
        cluster: Cluster, shared_storage: str, tmp_path: Path):
    name = unique("cluster-kill")
    victim = cluster.addresses["w1"]
    proc = sweep("--trials", "30", "--epochs", "4", "--storage", shared_storage, "--study",
                 name, "--cluster", cluster.address, results=tmp_path)

    def victims_running(trials: list[FrozenTrial]) -> list[int]:
        """The victim's trials once one of them has just started: the kill lands inside
        it. (Any running one was not enough: once in a full run the kill landed after
        its end, before the worker's next trial, and nothing failed.)"""
        now = datetime.datetime.now()
        mine = [t for t in trials if t.state == TrialState.RUNNING
                and (c := claim_of(t)) is not None and c.worker == victim]
        just_started = any(t.datetime_start is not None
                           and (now - t.datetime_start).total_seconds() < JUST_STARTED
                           for t in mine)
        ready = just_started and count(trials, TrialState.COMPLETE) >= 3
        return [t.number for t in mine] if ready else []

    killed_during = watch(proc, name, victims_running, storage=shared_storage)
    assert killed_during, "the sweep ended before the worker could be killed mid-trial"
    killed_at = datetime.datetime.now()  # (Optuna's completion times are local and naive)
    with_group(cluster.workers["w1"], signal.SIGKILL)  # the worker's whole group
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = study_of(name, shared_storage).get_trials()
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == 30
    assert states[TrialState.RUNNING] == states[TrialState.WAITING] == 0
    failed = {t.number for t in trials if t.state == TrialState.FAIL}
    # The killed trials failed and were re-queued: those seen running, less one that
    # finished between the look and the kill (a trial of 4 short epochs can).
    finished_first = {t.number for t in trials if t.number in killed_during
                      and t.state == TrialState.COMPLETE and t.datetime_complete <= killed_at}
    assert set(killed_during) - finished_first <= failed
    assert failed  # the worker held a trial when it died: the one seen, or its next
    assert "re-queued trials left running by dead worker processes" in out
    survivor = cluster.addresses["w2"]
    late = [t for t in trials if t.state == TrialState.COMPLETE
            and t.datetime_complete > max(f.datetime_complete for f in trials
                                          if f.number in failed)]
    assert late and {claim_of(t).worker for t in late} == {survivor}


@pytest.mark.slow
@NEEDS_MNIST
def test_an_unreachable_scheduler_exits_2_naming_it(tmp_path: Path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nobody listens there
    proc = sweep("--storage", "postgresql://nobody@127.0.0.1:1/none", "--cluster", address,
                 results=tmp_path, env=NOBODY_ANSWERS)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert f"--cluster {address}: no Dask scheduler answered there within 3 s" in err
    assert "Traceback" not in err


@pytest.mark.slow
@NEEDS_MNIST
def test_a_journal_file_with_a_cluster_exits_2_and_says_what_to_use(tmp_path: Path):
    proc = sweep("--cluster", "tcp://127.0.0.1:1", results=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "cannot share" in err
    assert "--storage redis://HOST:6379 or postgresql://" in err
    assert "Traceback" not in err
    assert not (tmp_path / "lrbench.journal").exists()


@pytest.mark.slow
@NEEDS_MNIST
@NEEDS_POSTGRES
def test_a_lost_scheduler_stops_the_sweep_cleanly_and_a_rerun_resumes(cluster: Cluster,
                                                                      tmp_path: Path):
    """Kill the scheduler mid-sweep: exit 1 saying so, every finished trial kept, none
    left RUNNING (the slots cannot reach it either, so they re-queue theirs); then a new
    scheduler on the same address, and the same command finishes the count."""
    name = unique("cluster-lost")
    # (20 trials: once, on 3 busy workers, the sweep had finished before the kill)
    args = ("--trials", "30", "--epochs", "4", "--storage", POSTGRES_URL, "--study", name,
            "--cluster", cluster.address)
    proc = sweep(*args, results=tmp_path, env=NOBODY_ANSWERS)
    assert watch(proc, name, lambda trials: count(trials, TrialState.COMPLETE) >= 3)
    with_group(cluster.scheduler, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert f"lost the Dask scheduler at {cluster.address}" in err
    assert "run the same command to resume" in err and "Traceback" not in err
    assert "distributed.client" not in err  # its reconnect errors would bury the message
    before = Counter(t.state for t in study_of(name).get_trials())
    assert 3 <= before[TrialState.COMPLETE] < 30
    settle = time.monotonic() + 60  # the slots notice within their control's timeout
    while before[TrialState.RUNNING] and time.monotonic() < settle:
        time.sleep(0.5)
        before = Counter(t.state for t in study_of(name).get_trials())
    assert before[TrialState.RUNNING] == 0, before

    cluster.scheduler.wait(timeout=30)
    port = cluster.address.rsplit(":", 1)[1]
    restarted = [_dask("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port,
                       "--no-dashboard", log=tmp_path / "scheduler-2.log"),
                 _dask("distributed.cli.dask_worker", cluster.address, "--nthreads", "1",
                       "--no-nanny", "--no-dashboard", log=tmp_path / "worker-3.log")]
    try:
        rerun = sweep(*args, results=tmp_path)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err
    finally:
        for p in restarted:
            with_group(p, signal.SIGKILL)
            p.wait(timeout=30)
    after = Counter(t.state for t in study_of(name).get_trials())
    assert after[TrialState.COMPLETE] == 30
    assert after[TrialState.RUNNING] == after[TrialState.WAITING] == 0


@pytest.mark.slow
@NEEDS_MNIST
@NEEDS_POSTGRES
def test_sigterm_stops_the_cluster_slots_like_local_ones(shared_cluster: Cluster,
                                                        tmp_path: Path):
    cluster = shared_cluster
    """SIGTERM to `lrbench sweep` (what Slurm sends): every slot on the cluster re-queues
    its trial at its next epoch, the sweep exits 143, and nothing is left RUNNING."""
    name = unique("cluster-term")
    proc = sweep("--trials", "40", "--epochs", "4", "--storage", POSTGRES_URL, "--study",
                 name, "--cluster", cluster.address, results=tmp_path)
    running = watch(proc, name, lambda trials: count(trials, TrialState.COMPLETE) >= 2 and [
        t.number for t in trials if t.state == TrialState.RUNNING])
    assert running, "no trial was running when the signal was to be sent"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted: finished trials are kept" in out
    trials = study_of(name).get_trials()
    states = Counter(t.state for t in trials)
    assert states[TrialState.RUNNING] == 0 and states[TrialState.COMPLETE] < 40
    # Each trial running at the signal finished, or failed with its configuration
    # re-queued: it waits, or another slot has already trained it again. (A cluster slot
    # reads the stop flag at most once a second, so a short trial may finish first, and
    # the slot may take one more: CI saw FAIL 1, WAITING 0, its rerun COMPLETE; and once
    # no FAIL at all.)
    assert all(trials[n].state in (TrialState.COMPLETE, TrialState.FAIL) for n in running)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    for trial in failed:
        assert any(again.number > trial.number and configuration(again) == trial.params
                   and again.state in (TrialState.WAITING, TrialState.COMPLETE)
                   for again in trials), f"trial {trial.number}'s configuration was lost"
    assert all(p.poll() is None for p in cluster.workers.values())  # the cluster lives on


@pytest.mark.slow
@NEEDS_MNIST
@NEEDS_POSTGRES
def test_a_killed_parent_stops_its_cluster_slots_at_the_latest_when_its_heartbeat_is_stale(
        shared_cluster: Cluster, tmp_path: Path):
    """kill -9 of `lrbench sweep`: nobody sets the stop flag. Each slot stops by itself,
    at the latest once the parent's heartbeat is PARENT_GONE_SECONDS old, failing and
    re-queueing the trial it was training (none, if it stopped between trials). Then no
    slot trains the study on alone, and the workers live on."""
    cluster = shared_cluster
    name = unique("cluster-orphan")
    proc = sweep("--trials", "2000", "--epochs", "4", "--storage", POSTGRES_URL, "--study",
                 name, "--cluster", cluster.address, results=tmp_path)
    assert watch(proc, name, lambda trials: count(trials, TrialState.COMPLETE) >= 2
                 and count(trials, TrialState.RUNNING) >= 1)
    proc.kill()
    proc.wait(timeout=30)
    killed = time.monotonic()
    # Stopped: nothing RUNNING, and no trial started, for QUIET_SECONDS in a row (between
    # two trials a slot has none RUNNING for a moment: one empty poll proves nothing).
    quiet_since, seen, trials = None, -1, []
    while time.monotonic() - killed < PARENT_GONE_SECONDS + 30:
        trials = study_of(name).get_trials()
        if count(trials, TrialState.RUNNING) or len(trials) != seen:
            quiet_since, seen = None, len(trials)
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_SECONDS:
            break
        time.sleep(0.5)
    assert quiet_since is not None and time.monotonic() - quiet_since >= QUIET_SECONDS, \
        f"the slots still train {time.monotonic() - killed:.0f} s after the parent died"
    assert count(trials, TrialState.COMPLETE) < 2000
    # Each interrupted trial's configuration was re-queued: it waits, or a slot that had
    # not stopped yet trained it again (to the end, or until it was interrupted in turn,
    # and then that trial's configuration is checked the same way).
    for trial in trials:
        if trial.state == TrialState.FAIL:
            assert "interrupted" in record_of(trial).reason
            assert any(again.number > trial.number and configuration(again) == trial.params
                       and again.state in (TrialState.WAITING, TrialState.COMPLETE,
                                           TrialState.FAIL)
                       for again in trials), f"trial {trial.number}'s configuration was lost"
    assert all(p.poll() is None for p in cluster.workers.values())  # the cluster lives on

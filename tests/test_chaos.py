"""lrbench under faults: real processes, real signals, a real full disk, on the MNIST sample.

Each test attacks ``lrbench sweep`` the way a user's cluster or disk would (kill -9,
SIGTERM, Ctrl-C, a torn journal, a full tmpfs, bad files) and then asserts the exact
trial counts, the trial states and the exit codes, and that no worker outlives its
sweep. Sized for 2 cores: smoke trials of 2 epochs on 4,500 images take ~0.3 s each.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import psutil
import pytest
from conftest import DATA, NEEDS_MNIST, REPO, run_lrbench, write_idx
from optuna.trial import TrialState
from test_sweep_cli import (
    killed_trials,
    load,
    lrbench,
    run,
    states,
    wait_for_running_trial,
    wait_for_slots_at_work,
)

from lrbench.errors import UserError
from lrbench.store import journal, record
from lrbench.sweep.processes import lifeline

pytestmark = [pytest.mark.slow, NEEDS_MNIST]

ORPHAN_DEADLINE = 10.0  # seconds a worker may outlive its parent


def workers_of(proc: subprocess.Popen, count: int, timeout: float = 60) -> list[psutil.Process]:
    """The sweep's worker processes (its Python descendants), once ``count`` are running."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        children = [c for c in psutil.Process(proc.pid).children(recursive=True)
                    if "python" in c.name().lower() and _is_slot(c, proc.pid)]
        if len(children) >= count:
            return children
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} workers started in {timeout:.0f} s: "
                         f"{_descendants(proc)}")


def _descendants(proc: subprocess.Popen) -> str:
    """What the sweep's process tree looks like now, for a failure's message."""
    if proc.poll() is not None:
        _, err = proc.communicate(timeout=30)
        return f"the sweep ended (exit {proc.returncode}): {err[-2000:]}"
    seen = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            seen.append(f"{child.pid} (parent {child.ppid()}, {child.status()}): "
                        f"{' '.join(child.cmdline())[:120]}")
    return "the sweep runs; its processes: " + ("; ".join(seen) or "none")


def _is_slot(process: psutil.Process, sweep: int) -> bool:
    """Not a resource tracker, nor the fork server (the sweep's child that the workers
    are forked from: they share its command line, and are its children)."""
    try:
        command = " ".join(process.cmdline())
        if "resource_tracker" in command:
            return False
        return "multiprocessing.forkserver" not in command or process.ppid() != sweep
    except psutil.Error:
        return False


def assert_gone(processes: list[psutil.Process], within: float = ORPHAN_DEADLINE) -> None:
    _, alive = psutil.wait_procs(processes, timeout=within)
    for process in alive:
        process.kill()
    assert not alive, f"{len(alive)} workers outlived their sweep by {within} s"


def params_seen(results: Path, name: str = "smoke") -> list[str]:
    """Every started trial's configuration, as text (FAIL ones were re-queued, so skip)."""
    trials = load(results, name).get_trials(deepcopy=False)
    return [json.dumps(t.params, sort_keys=True) for t in trials if t.state != TrialState.FAIL
            and record.plan_of(t).requeued_from is None]


SMOKE = ("sweep", "smoke", "--epochs", "2", "--engine", "sequential")

# The trials of a sweep that is interrupted, then resumed to its count: enough that the
# fault lands before its end (each trial trains 8 epochs, and every fault here lands in
# the first trials or after the second finished one), few enough that the resume, which
# trains what is left, stays short (12 cost ~3 CPU-seconds more per test, 30 ~16).
RESUMED = 8


def assert_stopped_cleanly(results: Path) -> None:
    """Nothing left RUNNING: the interrupted trials (at least the one the signal landed
    in) failed, each with its configuration re-queued."""
    trials = load(results).get_trials()
    count = Counter(t.state for t in trials)
    assert count[TrialState.RUNNING] == 0
    assert count[TrialState.FAIL] == count[TrialState.WAITING] >= 1
    assert all("interrupted" in record.record_of(t).reason for t in trials
               if t.state == TrialState.FAIL)


def signal_mid_trial(results: Path, send: Callable[[], None]) -> None:
    """Send a signal while a trial has just begun training, so it lands inside one (with a
    fixed delay, two slots of equal trials were sometimes between trials together)."""
    wait_for_slots_at_work(results, "smoke")
    wait_for_running_trial(results, "smoke", started_within=0.15)
    send()


def assert_resume_finishes(results: Path, trials: int) -> None:
    """The same 8-epoch sweep run again finishes the exact count and leaves nothing behind."""
    resumed = run(*SMOKE, "--trials", str(trials), "--epochs", "8", results=results)
    assert resumed.returncode == 0, resumed.stderr
    count = states(load(results))
    assert count[TrialState.COMPLETE] + count[TrialState.PRUNED] == trials
    assert count[TrialState.RUNNING] == count[TrialState.WAITING] == 0


def test_torn_tail_then_resume_from_4_to_8_trials_repeats_nothing(tmp_path: Path) -> None:
    first = run(*SMOKE, "--trials", "4", "--workers", "2", results=tmp_path)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "lrbench.journal"
    with open(path, "ab") as handle:  # a crash mid-write
        handle.write(b'{"op_code":6,"worker_id":"dead","trial_id":2,"sta')
    resumed = run(*SMOKE, "--trials", "8", "--workers", "2", results=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    [side] = path.parent.glob(f"lrbench.journal{journal.TORN_SUFFIX}*")
    assert str(side) in resumed.stderr and "torn bytes" in resumed.stderr
    assert states(load(tmp_path)) == {TrialState.COMPLETE: 8}
    seen = params_seen(tmp_path)
    assert len(seen) == 8 and len(set(seen)) == 8, "a resumed sweep re-ran a configuration"


def test_sigterm_to_the_parent_stops_cleanly_and_leaves_no_orphans(tmp_path: Path) -> None:
    proc = lrbench("sweep", "smoke", "--trials", str(RESUMED), "--epochs", "8",
                   "--workers", "2", "--engine", "sequential", results=tmp_path)
    workers = workers_of(proc, 2)
    # the parent alone, as `kill PID` or a scheduler does
    signal_mid_trial(tmp_path, lambda: proc.send_signal(signal.SIGTERM))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert_gone(workers)
    assert_stopped_cleanly(tmp_path)
    assert_resume_finishes(tmp_path, RESUMED)


def test_sigterm_to_the_whole_group_leaves_nothing_running(tmp_path: Path) -> None:
    """What Slurm does at the end of a job: every process gets SIGTERM."""
    proc = lrbench("sweep", "smoke", "--trials", "30", "--epochs", "8", "--workers", "2",
                   "--engine", "batched", "--batch-trials", "3", results=tmp_path,
                   start_new_session=True)
    workers = workers_of(proc, 2)
    signal_mid_trial(tmp_path, lambda: os.killpg(proc.pid, signal.SIGTERM))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert_gone(workers)
    assert_stopped_cleanly(tmp_path)


def test_kill_9_of_the_parent_takes_its_workers_down_too(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"  # where the workers' progress files are
    temp.mkdir()
    proc = lrbench(*SMOKE, "--trials", str(RESUMED), "--epochs", "8", "--workers", "2",
                   results=tmp_path, env={"TMPDIR": str(temp)})
    workers = workers_of(proc, 2)
    wait_for_running_trial(tmp_path, "smoke")
    assert list(temp.glob("lrbench-worker-*"))  # (else the last check is vacuous)
    proc.kill()
    proc.communicate(timeout=30)
    # They stopped themselves: no orphan trains the study alone. Each left once its slot
    # had stopped, not at the hard exit (the parent's death is seen within half a second,
    # and an epoch is ~0.1 s).
    assert_gone(workers, within=lifeline.GRACE_SECONDS)
    # ... and removed their progress files, which their parent could not
    assert not list(temp.glob("lrbench-worker-*"))
    assert_resume_finishes(tmp_path, RESUMED)


def test_kill_9_of_one_worker_costs_only_its_trial(tmp_path: Path) -> None:
    proc = lrbench(*SMOKE, "--trials", "12", "--epochs", "12", "--workers", "2",
                   results=tmp_path)
    victim = wait_for_running_trial(tmp_path, "smoke", started_within=0.4)
    os.kill(record.claim_of(victim).pid, signal.SIGKILL)  # the OOM killer, say
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err  # the sweep went on: a replacement slot started

    trials = load(tmp_path).get_trials()
    count = Counter(t.state for t in trials)
    assert count[TrialState.COMPLETE] + count[TrialState.PRUNED] == 12
    assert count[TrialState.RUNNING] == count[TrialState.WAITING] == 0
    # Only the killed process's one trial failed: the healthy slot's was not lost with it.
    [dead] = killed_trials(trials, victim)
    assert "re-queued" in record.record_of(dead).reason
    [rerun] = [t for t in trials if record.plan_of(t).requeued_from == dead.number]
    assert rerun.params == dead.params and rerun.state != TrialState.FAIL
    assert record.trained_seeds(rerun) == record.trained_seeds(dead)  # it carried its seeds
    assert len({record.claim_of(t).pid for t in trials}) >= 3  # two slots and a replacement
    assert f"{dead.number}" in out
    seen = params_seen(tmp_path)  # the replacement samples with a seed of its own
    assert len(seen) == len(set(seen)), "a replacement slot re-ran a configuration"


def stop_a_training_worker(results: Path) -> tuple[optuna.trial.FrozenTrial, psutil.Process]:
    """``kill -STOP`` the worker of a trial that is training (a hung driver or a stalled
    file system looks the same to the parent: a process that does nothing)."""
    victim = wait_for_running_trial(results, "smoke", started_within=0.4)
    process = psutil.Process(record.claim_of(victim).pid)
    process.suspend()
    return victim, process


@pytest.mark.parametrize("engine", ["sequential", "batched"])
def test_a_stopped_worker_is_found_killed_and_replaced(tmp_path: Path, engine: str) -> None:
    """Before: progress froze for good at "running 5" and only kill -9 ended it. Now the
    slot is called stuck after --stuck-after seconds (its epochs are far shorter), killed,
    its trials re-queued, a new slot started, and the sweep ends with its exact count."""
    proc = lrbench("sweep", "smoke", "--engine", engine, "--trials", "16", "--epochs", "4",
                   "--workers", "2", "--stuck-after", "3", results=tmp_path)
    victim, stopped = stop_a_training_worker(tmp_path)
    stopped_at = time.monotonic()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert time.monotonic() - stopped_at < 60
    assert not stopped.is_running() or stopped.status() == psutil.STATUS_ZOMBIE
    notice = re.search(r"slot (\d) \(cpu\) made no progress for (\d+) s \(limit (\d+) s: "
                       r"[^)]*\): killed it; re-queued its trials \[([\d, ]+)\]; a new slot "
                       r"takes its place", " ".join(out.split()))
    assert notice, out
    assert 3 <= int(notice[3]) <= int(notice[2]) < 30
    requeued = {int(n) for n in notice[4].split(",")}
    assert victim.number in requeued
    trials = load(tmp_path).get_trials()
    count = Counter(t.state for t in trials)
    assert count[TrialState.COMPLETE] + count[TrialState.PRUNED] == 16
    assert count[TrialState.RUNNING] == count[TrialState.WAITING] == 0
    assert {t.number for t in trials if t.state == TrialState.FAIL} == requeued
    for number in requeued:  # each configuration trained again, not lost
        assert any(record.plan_of(t).requeued_from == number and t.state != TrialState.FAIL
                   for t in trials)


# The sweep's wait for its slots to stop after Ctrl-C, then it kills those left (10 s for
# users): a test with a stopped worker waits it out.
STOP_GRACE = 3


def test_ctrl_c_with_a_stopped_worker_still_ends_within_seconds(tmp_path: Path) -> None:
    """Before: the parent waited on the stopped worker forever, after one Ctrl-C or two,
    and after SIGTERM. Now the slots that do not stop within the grace are killed."""
    proc = lrbench(*SMOKE, "--trials", str(RESUMED), "--epochs", "8", "--workers", "2",
                   results=tmp_path, start_new_session=True,
                   env={"LRBENCH_STOP_GRACE_SECONDS": str(STOP_GRACE)})
    workers = workers_of(proc, 2)
    victim, stopped = stop_a_training_worker(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert STOP_GRACE <= time.monotonic() - started < STOP_GRACE + 8
    assert "Traceback" not in err, err
    assert_gone(workers)
    trials = load(tmp_path).get_trials()
    assert trials[victim.number].state == TrialState.FAIL  # recorded, and re-queued
    assert_resume_finishes(tmp_path, RESUMED)


def test_a_second_ctrl_c_with_a_stopped_worker_leaves_at_once(tmp_path: Path) -> None:
    proc = lrbench(*SMOKE, "--trials", str(RESUMED), "--epochs", "8", "--workers", "2",
                   results=tmp_path, start_new_session=True)
    workers = workers_of(proc, 2)
    victim, stopped = stop_a_training_worker(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    # A fixed delay, not an event: the parent's handling of the first Ctrl-C leaves no
    # trace outside before a slot ends. Sending the second once the live slot had ended
    # (tried) passed alone, but once in a loaded full run the sweep took 9 s to leave
    # after it: not explained yet (the closing note of the Redis session).
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 5
    assert "Traceback" not in err, err
    assert_gone(workers, within=5)
    assert load(tmp_path).get_trials()[victim.number].state == TrialState.FAIL
    assert_resume_finishes(tmp_path, RESUMED)


KILLED_BETWEEN_ASK_AND_CLAIM = textwrap.dedent("""
    import os, signal, sys
    import optuna
    from lrbench.store.claims import claim_lock
    from lrbench.store.storage import open_storage
    journal = sys.argv[1]
    study = optuna.load_study(study_name="smoke", storage=open_storage(journal))
    with claim_lock(journal, "smoke"):
        study.ask()  # created RUNNING, not yet marked with its host and PID
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_kill_9_between_ask_and_claim_is_recovered(tmp_path: Path) -> None:
    assert run(*SMOKE, "--trials", "2", results=tmp_path).returncode == 0
    journal_path = str(tmp_path / "lrbench.journal")
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_ASK_AND_CLAIM, journal_path],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    orphan = load(tmp_path).get_trials()[-1]
    assert orphan.state == TrialState.RUNNING and record.claim_of(orphan) is None

    resumed = run(*SMOKE, "--trials", "6", results=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    trials = load(tmp_path).get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 6, TrialState.FAIL: 1}


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.5])
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path: Path,
                                                              delay: float) -> None:
    """While the parent or its workers are still importing torch."""
    proc = lrbench(*SMOKE, "--trials", "20", "--workers", "2", results=tmp_path,
                   start_new_session=True)
    time.sleep(delay)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert_gone(children)
    if (tmp_path / "lrbench.journal").exists():
        assert states(load(tmp_path))[TrialState.RUNNING] == 0


def test_double_ctrl_c_leaves_at_once_and_the_workers_still_stop(tmp_path: Path) -> None:
    proc = lrbench(*SMOKE, "--trials", str(RESUMED), "--epochs", "8", "--workers", "2",
                   results=tmp_path, start_new_session=True)
    workers = workers_of(proc, 2)
    signal_mid_trial(tmp_path, lambda: os.killpg(proc.pid, signal.SIGINT))
    time.sleep(0.2)  # the second while the slots still stop (they end within an epoch)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert_gone(workers)
    assert_resume_finishes(tmp_path, RESUMED)


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 128 KiB file system: a journal fills it after ~50 trials (of ~2.5 KB each)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root and "
                    f"CAP_SYS_ADMIN")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_stops_the_sweep_cleanly_and_the_storage_stays_loadable(
        tmp_path: Path, small_tmpfs: Path) -> None:
    done = run(*SMOKE, "--trials", "400", "--epochs", "1", "--workers", "2",
               results=small_tmpfs, timeout=600)
    assert done.returncode == 1, done.stderr
    assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
    assert "run the same command to resume" in done.stderr
    # Loadable as it is (a reader, on the full disk) and after moving it to a roomy one.
    finished = states(load(small_tmpfs))
    assert 0 < finished[TrialState.COMPLETE] < 400
    assert journal.inspect(small_tmpfs / "lrbench.journal").torn_bytes == 0
    roomy = tmp_path / "roomy"
    shutil.copytree(small_tmpfs, roomy)
    resumed = run(*SMOKE, "--trials", str(finished[TrialState.COMPLETE] + 2), "--epochs", "1",
                  results=roomy)
    assert resumed.returncode == 0, resumed.stderr
    after = states(load(roomy))
    assert after[TrialState.COMPLETE] == finished[TrialState.COMPLETE] + 2
    assert after[TrialState.RUNNING] == after[TrialState.WAITING] == 0


def one_line_error(err: str) -> str:
    """The last line of stderr, which must be all the user needs: no traceback above it."""
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_a_journal_deleted_mid_sweep_ends_it_in_one_line(tmp_path: Path) -> None:
    """Before: a FileNotFoundError traceback from a worker, exit 1."""
    proc = lrbench(*SMOKE, "--trials", str(RESUMED), "--epochs", "8", "--workers", "2",
                   results=tmp_path)
    wait_for_running_trial(tmp_path, "smoke")
    path = tmp_path / "lrbench.journal"
    path.rename(tmp_path / "moved.journal")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert one_line_error(err) == (
        f"lrbench: error: journal {path} was deleted or moved mid-sweep: nothing more can be "
        f"written to it; put it back, then run the same command to resume")
    (tmp_path / "moved.journal").rename(path)  # put back: the resume finishes the count
    assert_resume_finishes(tmp_path, RESUMED)


def remount_read_only(mount_point: Path, timeout: float = 10) -> None:
    """Remount it read-only as soon as no file on it is open for writing (the kernel
    refuses while one is, "mount point is busy": a write of the sweep's, in flight)."""
    deadline = time.monotonic() + timeout
    while True:
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(mount_point)],
                                   capture_output=True, text=True)
        if remounted.returncode == 0:
            return
        assert "busy" in remounted.stderr and time.monotonic() < deadline, remounted.stderr
        time.sleep(0.01)


def test_a_file_system_turned_read_only_mid_sweep_ends_it_in_one_line(
        tmp_path: Path, small_tmpfs: Path) -> None:
    """Before: a PermissionError / OSError traceback, exit 1."""
    proc = lrbench(*SMOKE, "--trials", str(RESUMED), "--epochs", "8", "--workers", "2",
                   results=small_tmpfs)
    wait_for_running_trial(small_tmpfs, "smoke")
    deadline = time.monotonic() + 120
    while states(load(small_tmpfs))[TrialState.COMPLETE] < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    remount_read_only(small_tmpfs)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_tmpfs)], check=True)
    assert proc.returncode == 1, err
    last = one_line_error(err)
    # (the journal, or the lock beside it that a slot took first)
    assert re.match(rf"lrbench: error: cannot write to {small_tmpfs}/\S*lrbench.journal\S*: "
                    rf"Read-only file system; ", last), err
    assert last.endswith("run the same command to resume"), err
    assert states(load(small_tmpfs))[TrialState.COMPLETE] >= 2  # kept, and readable
    roomy = tmp_path / "roomy"
    shutil.copytree(small_tmpfs, roomy)
    assert_resume_finishes(roomy, RESUMED)


def limit_memory(process: psutil.Process) -> None:
    """No more address space for ``process`` than it has now (RLIMIT_AS, set from outside
    on the running worker: set before start-up, torch's import itself fails). Its next
    tensor then fails to allocate, as on a machine whose memory ran out."""
    in_use = process.memory_info().vms
    process.rlimit(psutil.RLIMIT_AS, (in_use, in_use))


def training_pids(results: Path, count: int, timeout: float = 120) -> set[int]:
    """The processes of ``count`` slots, once each holds a trial (past its start-up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyError, UserError):  # (no journal, or no study, yet)
            pids = {record.claim_of(t).pid for t in load(results).get_trials(
                states=(TrialState.RUNNING,)) if record.claim_of(t) is not None}
            if len(pids) >= count:
                return pids
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} slots took a trial")


def memory_failures(results: Path) -> list[str]:
    failed = [t for t in load(results).get_trials() if t.state == TrialState.FAIL]
    return [record.record_of(t).reason for t in failed]


# torch's allocator, Python's, or a C extension that got NULL from malloc and returned it
OUT_OF_MEMORY = re.compile(r"MemoryError|allocate memory|error return without exception")


def test_a_worker_out_of_memory_fails_only_its_own_trials(tmp_path: Path) -> None:
    """Before: a MemoryError ended the sweep with a traceback, exit 1, and stacks were
    retried with new trials (a 6-trial study ended holding 18 failed). Now the stack is
    retried alone, smaller; the slot gives up after 3 trials failed in a row, and the
    other slot finishes the count."""
    proc = lrbench(*SMOKE, "--engine", "batched", "--trials", "20", "--epochs", "4",
                   "--workers", "2", results=tmp_path)
    victim = psutil.Process(record.claim_of(wait_for_running_trial(tmp_path, "smoke")).pid)
    limit_memory(victim)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    count = states(load(tmp_path))
    assert count[TrialState.COMPLETE] == 20
    assert count[TrialState.RUNNING] == count[TrialState.WAITING] == 0
    reasons = memory_failures(tmp_path)
    assert 1 <= len(reasons) <= 3, reasons  # only the trials that ran out, at most 3 in a row
    assert [r for r in reasons if not OUT_OF_MEMORY.search(r)] == []  # names any other
    assert "3 trials in a row failed" in out and "the other slots go on" in out
    assert len(params_seen(tmp_path)) == len(set(params_seen(tmp_path)))


def test_every_worker_out_of_memory_fails_only_trials_that_ran_out(tmp_path: Path) -> None:
    """Both slots run out of memory mid-trial. How far each gets then varies (memory that
    freed trials leave behind can be reused, so some trials still fit), but each failed
    trial failed for its own lack of memory, and a slot stops at 3 failures in a row: no
    new rounds of failures. Either a slot finishes the count (exit 0), or both give up and
    the sweep ends in one line (exit 1); a resume finishes it."""
    proc = lrbench(*SMOKE, "--trials", "20", "--epochs", "8", "--workers", "2",
                   results=tmp_path)
    for pid in training_pids(tmp_path, 2):
        limit_memory(psutil.Process(pid))
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    trials = load(tmp_path).get_trials()
    reasons = memory_failures(tmp_path)
    assert reasons
    # A worker may also die of it outright (an allocation that fails inside C code): its
    # trial is then failed as a dead worker's, and its configuration queued again.
    died = [t for t in trials if t.state == TrialState.FAIL
            and record.record_of(t).reason.startswith("its worker process died")]
    for trial in died:
        assert any(record.plan_of(t).requeued_from == trial.number for t in trials)
    assert [r for r in reasons if not OUT_OF_MEMORY.search(r)
            and not r.startswith("its worker process died")] == []  # names any other
    assert longest_failure_run_per_slot(trials) <= 3
    count = states(load(tmp_path))
    assert count[TrialState.RUNNING] == 0
    if proc.returncode == 0:
        assert count[TrialState.COMPLETE] == 20
    else:
        assert proc.returncode == 1, err
        assert one_line_error(err) == (
            f"lrbench: the sweep ended with {count[TrialState.COMPLETE]} of 20 trials "
            f"finished: {len(reasons)} trials failed in this run (each keeps its error: "
            f"lrbench list, or optuna-dashboard); 2 of 2 slots stopped after a run of "
            f"failed trials; run the same command to try again")
        assert_resume_finishes(tmp_path, 20)


def longest_failure_run_per_slot(trials: list[optuna.trial.FrozenTrial]) -> int:
    """The most trials one slot's process failed in a row, in the order it started them."""
    longest: Counter[int] = Counter()
    run: Counter[int] = Counter()
    for trial in sorted(trials, key=lambda t: t.datetime_start or datetime.datetime.max):
        claim = record.claim_of(trial)
        if claim is None:
            continue
        run[claim.pid] = run[claim.pid] + 1 if trial.state == TrialState.FAIL else 0
        longest[claim.pid] = max(longest[claim.pid], run[claim.pid])
    return max(longest.values(), default=0)


POSTGRES_URL = os.environ.get("LRBENCH_TEST_POSTGRES")
URL_STORAGES = [pytest.param("sqlite", id="sqlite"), pytest.param(
    "postgresql", id="postgresql", marks=pytest.mark.skipif(
        not POSTGRES_URL, reason="set LRBENCH_TEST_POSTGRES=postgresql://… (.ci/run does)"))]


@pytest.mark.parametrize("kind", URL_STORAGES)
def test_url_storages_count_exactly_with_big_batches(tmp_path: Path, kind: str) -> None:
    """Claims go through the storage (an flock beside sqlite, an advisory lock in
    PostgreSQL): 40/30 with --batch-trials 10 and 42/40 on sqlite:/// were seen before."""
    url = f"sqlite:///{tmp_path / 'studies.db'}" if kind == "sqlite" else POSTGRES_URL
    study = f"exact-{os.getpid()}-{time.time_ns()}"
    done = run(*SMOKE, "--trials", "10", "--workers", "2", "--engine", "batched",
               "--batch-trials", "4", "--storage", url, "--study", study, results=tmp_path)
    assert done.returncode == 0, done.stderr
    import optuna

    from lrbench.store.storage import open_storage
    trials = optuna.load_study(study_name=study, storage=open_storage(url)).get_trials()
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 10}


@pytest.mark.parametrize("engine", ["sequential", "batched"])
def test_the_same_seed_gives_the_same_curves_with_any_number_of_workers(
        tmp_path: Path, engine: str) -> None:
    """Trial numbers depend on timing; seeds come from the configuration instead.

    Not bit for bit: one worker trains with 2 torch threads and two with 1 each, and the
    batched engine stacks the five runs as K = 5 with one worker, 3 + 2 with two; both
    change how matmuls round. The README's stated tolerance (measured over 3 epochs:
    losses within 1.4e-7 relative, sequential, and 6.8e-8, batched; one validation
    accuracy one image apart) is held here: losses within 1e-5 relative, accuracies
    within one validation image."""
    curves, sizes = {}, {}
    for workers in ("1", "2"):  # the tutorial's five fixed configurations
        results = tmp_path / workers
        done = run("sweep", "dlwizard", "--epochs", "2", "--engine", engine,
                   "--workers", workers, results=results)
        assert done.returncode == 0, done.stderr
        trials = load(results, "dlwizard").get_trials()
        curves[workers] = {json.dumps(t.params, sort_keys=True): record.record_of(t).curves
                           for t in trials}
        sizes[workers] = sorted(record.record_of(t).batch_trials for t in trials)
        val_size = record.record_of(trials[0]).val_size
    assert len(curves["1"]) == 5 and curves["1"].keys() == curves["2"].keys()
    if engine == "batched":
        assert sizes["1"] != sizes["2"]  # different stacks, or the test shows nothing
    for config, curve in curves["1"].items():
        other = curves["2"][config]
        assert curve["val_accuracy"] == pytest.approx(other["val_accuracy"],
                                                      abs=1.01 / val_size), config
        for loss in ("train_loss", "val_loss"):
            assert curve[loss] == pytest.approx(other[loss], rel=1e-5), config


def test_three_simultaneous_starts_queue_the_fixed_trials_once(tmp_path: Path) -> None:
    procs = [lrbench("sweep", "dlwizard", "--epochs", "2", "--workers", "1", results=tmp_path)
             for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    trials = load(tmp_path, "dlwizard").get_trials()
    configs = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(configs) == 5 and len(set(configs)) == 5
    assert all(t.state == TrialState.COMPLETE for t in trials)


# --- bad inputs: exit 2, the file or flag named, no traceback, nothing written --------


def bad_data(folder: Path, n_labels: int = 200, bad_label: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n_labels)
    if bad_label is not None:
        labels[17] = bad_label
    write_idx(folder, rng.integers(0, 255, (200, 28, 28)), labels, test=False)
    write_idx(folder, rng.integers(0, 255, (50, 28, 28)), rng.integers(0, 10, 50), test=True)
    return folder


def run_bad(*args: str, results: Path, data_dir: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return run_lrbench(*args, results=results, data_dir=data_dir or DATA, timeout=timeout)


def assert_user_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr)


def test_images_and_labels_that_do_not_pair_up_are_refused(tmp_path: Path) -> None:
    data_dir = bad_data(tmp_path / "data", n_labels=190)
    done = run_bad(*SMOKE, results=tmp_path / "r", data_dir=data_dir)
    assert_user_error(done, "train-labels-idx1-ubyte", "190 labels", "200 images")
    assert not (tmp_path / "r" / "lrbench.journal").exists()


def test_a_label_outside_the_classes_is_refused(tmp_path: Path) -> None:
    data_dir = bad_data(tmp_path / "data", bad_label=200)
    done = run_bad(*SMOKE, results=tmp_path / "r", data_dir=data_dir)
    assert_user_error(done, "train-labels-idx1-ubyte", "label 200 at index 17")
    assert not (tmp_path / "r" / "lrbench.journal").exists()


def test_storage_on_a_users_text_file_is_refused_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my experiment notes\n")
    done = run_bad(*SMOKE, "--storage", str(notes), results=tmp_path / "r")
    assert_user_error(done, str(notes), "not an Optuna journal")
    assert notes.read_text() == "my experiment notes\n"


@pytest.mark.parametrize("args, fragments", [
    (("--study", "a/b"), ["--study", "a/b"]),
    (("--seed", str(2**32)), ["--seed", str(2**32)]),
    (("--workers", "1000", "--trials", "2"), ["--workers 1000", "at most"]),
    (("--device", "cuda:-1"), ["cuda:-1"]),
])
def test_bad_flags_exit_2_before_anything_is_stored(tmp_path: Path, args: tuple[str, ...],
                                                    fragments: list[str]) -> None:
    started = time.monotonic()
    done = run_bad(*SMOKE, *args, results=tmp_path / "r")
    assert_user_error(done, *fragments)
    assert "\N{THUMBS DOWN SIGN}" not in done.stderr
    assert not (tmp_path / "r").exists()
    assert time.monotonic() - started < 60  # no thousand processes were started


def test_a_seed_out_of_range_in_the_sweep_file_is_refused(tmp_path: Path) -> None:
    text = (REPO / "sweeps" / "smoke.toml").read_text()
    sweep = tmp_path / "big-seed.toml"
    sweep.write_text(re.sub(r"(?m)^seed = 0", f"seed = {2**32}", text))
    done = run_bad("sweep", str(sweep), results=tmp_path / "r")
    assert_user_error(done, str(sweep), "study.seed", str(2**32))
    assert not (tmp_path / "r").exists()


def test_results_path_that_is_a_file_or_read_only_exits_2(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert_user_error(run_bad(*SMOKE, results=a_file / "r"), str(a_file))

    read_only = tmp_path / "ro"
    read_only.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                              str(read_only)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
    try:
        done = run_bad(*SMOKE, results=read_only)
        assert_user_error(done, str(read_only), "not writable")
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)

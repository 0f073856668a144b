"""Tests for lrbench.sweep.processes.workers: the worker started early is the first slot's, and
one that no slot takes ends with its command."""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
import psutil
import pytest
from conftest import DATA, NEEDS_MNIST, start_lrbench
from test_study import write_sweep

from lrbench.entry import starts_local_slots, trains
from lrbench.store import record
from lrbench.store.storage import open_storage
from lrbench.sweep import study as st
from lrbench.sweep.devices import Slot
from lrbench.sweep.processes import workers
from lrbench.sweep.processes.pool import SlotPool
from lrbench.sweep.slot_job import SlotJob
from lrbench.train.data import load_arrays


def test_which_commands_start_a_worker_early(monkeypatch):
    monkeypatch.delenv("LRBENCH_CLUSTER", raising=False)
    for args in (["sweep", "step"], ["sweep", "all", "--workers", "2"],
                 ["confirm", "all", "--seeds", "3"]):
        assert starts_local_slots(args), args
    for args in ([], ["report"], ["list"], ["sweep", "--help"], ["confirm", "all", "-h"],
                 ["sweep", "step", "--cluster", "tcp://h:8786"],
                 ["sweep", "step", "--cluster=tcp://h:8786"]):
        assert not starts_local_slots(args), args
    monkeypatch.setenv("LRBENCH_CLUSTER", "tcp://h:8786")
    assert not starts_local_slots(["sweep", "step"])


def test_only_commands_that_train_import_the_sweep_machinery_with_signals_held() -> None:
    """A sweep on a cluster trains too (signals held); a report never imports it."""
    assert trains(["sweep", "step", "--cluster", "tcp://h:8786"])
    assert trains(["confirm", "all"])
    for args in ([], ["report"], ["list"], ["sweep", "--help"], ["confirm", "all", "-h"]):
        assert not trains(args), args


def _slot_children() -> set[int]:
    """This process's worker processes (loky's resource tracker is not one)."""
    return {c.pid for c in psutil.Process().children()
            if "resource_tracker" not in " ".join(c.cmdline())}


@pytest.mark.slow
@NEEDS_MNIST
def test_the_first_slot_runs_in_the_worker_started_early(tmp_path: Path):
    config = write_sweep(tmp_path, name="early", trials=2, seed=0, epochs=1,
                         families='["step", "constant"]', validation_size="0.2")
    journal = str(tmp_path / "results" / "lrbench.journal")
    st.open_study(config, open_storage(journal))
    job = SlotJob(Slot(0, "cpu", 1), config, journal, load_arrays("mnist", DATA))
    before = _slot_children()
    workers.start_early()
    pool = None
    try:
        [early_pid] = _slot_children() - before
        pool = SlotPool()
        assert workers.take_early() is None  # the pool has it
        pool.start(job)
        ends = []
        deadline = time.time() + 120
        while pool.running and time.time() < deadline:
            ends += pool.wait(1.0)
        [end] = ends
        assert end.report is not None and end.report.trials == 2, end.error
    finally:
        if pool is not None:
            pool.close()
        workers.discard_early()
    study = optuna.load_study(study_name="early", storage=open_storage(journal))
    assert {record.claim_of(t).pid for t in study.trials} == {early_pid}


@pytest.mark.slow
def test_an_early_worker_that_no_slot_takes_ends_with_its_command(tmp_path: Path):
    """A user error (no data there) exits 2 after the early worker started; nothing of
    the command's session outlives it."""
    proc = start_lrbench("sweep", "step", results=tmp_path / "r",
                         data_dir=tmp_path / "nothing", start_new_session=True)
    seen_worker = False
    while proc.poll() is None and not seen_worker:
        try:
            seen_worker = any("popen_loky" in " ".join(c.cmdline())
                              for c in psutil.Process(proc.pid).children())
        except psutil.Error:
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "does not hold dataset 'mnist'" in err and "Traceback" not in err
    assert seen_worker, "no worker was started early"
    deadline = time.time() + 10
    while time.time() < deadline and _session_members(proc.pid):
        time.sleep(0.2)
    assert not _session_members(proc.pid)


def _session_members(sid: int) -> list[int]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid:
                members.append(process.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members

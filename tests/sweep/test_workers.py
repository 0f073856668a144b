"""Tests for lrbench.sweep.processes.workers: the workers are forked from the fork server
started early, which imported the slot's modules, and which ends with its command."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import optuna
import psutil
import pytest
from conftest import DATA, NEEDS_MNIST, run_lrbench, run_python, start_lrbench
from test_study import write_sweep

from lrbench.entry import asks_for_sequential, starts_local_slots, trains
from lrbench.store import record
from lrbench.store.storage import open_storage
from lrbench.sweep import study as st
from lrbench.sweep.devices import Slot
from lrbench.sweep.processes import workers
from lrbench.sweep.processes.pool import SlotPool
from lrbench.sweep.slot_job import SlotJob
from lrbench.train.data import load_arrays


def test_which_commands_start_the_workers_fork_server_early(monkeypatch):
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


def test_the_sequential_engine_is_read_from_the_command_line() -> None:
    for args in (["sweep", "step", "--engine", "sequential"],
                 ["confirm", "all", "--engine=sequential", "--seeds", "3"]):
        assert asks_for_sequential(args), args
    for args in (["sweep", "step"], ["sweep", "step", "--engine", "batched"],
                 ["sweep", "sequential"], ["sweep", "step", "--engine", "auto"]):
        assert not asks_for_sequential(args), args


@pytest.mark.slow
@pytest.mark.parametrize("sequential", [False, True])
def test_a_sequential_engine_s_workers_are_forked_with_its_optimizers_imported(
        sequential: bool) -> None:
    """torch's optimizers import torch._dynamo (~1 s of CPU): the server imports it once
    for a sequential engine's workers, and never for the batched engine's."""
    workers.start_fork_server(sequential=sequential)
    try:
        worker = workers.spawn(workers.new_stop_event())
        imported = worker.submit(eval, "'torch._dynamo' in __import__('sys').modules")
        assert imported.result(timeout=120) is sequential
        assert worker.submit(eval, "__import__('os').getppid()").result() == _fork_server().pid
        worker.executor.shutdown(wait=True)
    finally:
        workers.end_fork_server()


def _fork_server() -> psutil.Process:
    [server] = [c for c in psutil.Process().children()
                if "multiprocessing.forkserver" in " ".join(c.cmdline())]
    return server


@pytest.mark.slow
@NEEDS_MNIST
def test_the_slots_are_forked_from_the_fork_server_which_imported_torch(tmp_path: Path):
    config = write_sweep(tmp_path, name="early", trials=4, seed=0, epochs=2,
                         families='["step", "constant"]', validation_size="0.2")
    journal = str(tmp_path / "results" / "lrbench.journal")
    st.open_study(config, open_storage(journal))
    data = load_arrays("mnist", DATA)
    workers.start_fork_server()
    try:
        server = _fork_server()
        pool = SlotPool()
        for index in range(2):
            pool.start(SlotJob(Slot(index, "cpu", 1), config, journal, data))
        parent_of: dict[int, int] = {}  # each slot's process -> its parent
        ends = []
        deadline = time.time() + 120
        while pool.running and time.time() < deadline:
            for process in pool.running:
                pid = process.pace.pid() if process.pace is not None else None
                if pid is not None:  # (once the worker has written it)
                    with contextlib.suppress(psutil.Error):
                        parent_of[pid] = psutil.Process(pid).ppid()
            ends += pool.wait(0.1)
        assert sum(end.report.trials for end in ends if end.report) == 4, ends
        # ... which had imported torch before it forked them
        assert any("libtorch" in m.path for m in server.memory_maps())
    finally:
        workers.end_fork_server()
    study = optuna.load_study(study_name="early", storage=open_storage(journal))
    trained_in = {record.claim_of(t).pid for t in study.trials}
    # every trial ran in a process forked by the server, not spawned by this one
    assert trained_in <= set(parent_of) and {parent_of[p] for p in trained_in} == {server.pid}
    assert not server.is_running()  # end_fork_server ended it


@pytest.mark.slow
def test_the_fork_server_ends_with_a_command_that_trained_nothing(tmp_path: Path):
    """A user error (no data there) exits 2 after the fork server started, maybe while
    it still imports torch; nothing of the command's session outlives it."""
    proc = start_lrbench("sweep", "step", results=tmp_path / "r",
                         data_dir=tmp_path / "nothing", start_new_session=True)
    server = None
    while proc.poll() is None and server is None:
        try:
            server = next((c for c in psutil.Process(proc.pid).children()
                           if "multiprocessing.forkserver" in " ".join(c.cmdline())), None)
        except psutil.Error:
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    # The command killed and reaped its server before it exited. Had it left the server
    # to end by itself, the server would still be importing torch here, holding the
    # command's output pipes open.
    assert server is not None, "no fork server was started early"
    assert not _still_running(server)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "does not hold dataset 'mnist'" in err and "Traceback" not in err
    deadline = time.time() + 10
    while time.time() < deadline and _session_members(proc.pid):
        time.sleep(0.2)
    assert not _session_members(proc.pid)


def _still_running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _session_members(sid: int) -> list[int]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid:
                members.append(process.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


SOCKET_FOLDER = """
import multiprocessing.util, socket, tempfile
from lrbench.sweep.processes import workers
workers._socket_folder_within_reach()
folder = multiprocessing.util.get_temp_dir()
with socket.socket(socket.AF_UNIX) as listener:  # what the fork server binds there
    listener.bind(tempfile.mktemp(prefix="listener-", dir=folder))
print(folder)
"""


@pytest.mark.parametrize("length", [40, 76, 120])
def test_the_fork_servers_socket_folder_fits_a_unix_socket_whatever_tmpdir(
        tmp_path: Path, length: int):
    """A TMPDIR of over 75 characters made the server's socket path too long for a Unix
    socket (107 bytes): the folder then goes under /tmp. A shorter TMPDIR is kept."""
    tmpdir = tmp_path / ("t" * max(1, length - len(str(tmp_path)) - 1))
    tmpdir.mkdir()
    assert len(str(tmpdir)) >= length
    done = run_python(SOCKET_FOLDER, env={"TMPDIR": str(tmpdir)})
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    expected = tmpdir if len(str(tmpdir)) <= 75 else Path(workers.SHORT_TEMP)
    assert folder.parent == expected and folder.name.startswith("pymp-")
    assert not folder.exists()  # removed at exit, as multiprocessing does


@pytest.mark.slow
@NEEDS_MNIST
def test_a_sweep_runs_with_a_long_tmpdir(tmp_path: Path):
    """Before: a traceback ending in `OSError: AF_UNIX path too long`. A full test run
    found it: a chaos test's TMPDIR, inside its tmp_path, grew past 75 characters once
    pytest's numbered folders reached /tmp/pytest-of-root/pytest-100."""
    tmpdir = tmp_path / ("t" * 100)
    tmpdir.mkdir()
    done = run_lrbench("sweep", "smoke", "--trials", "2", "--epochs", "1", "--workers", "1",
                       results=tmp_path / "results", data_dir=DATA,
                       env={"TMPDIR": str(tmpdir)})
    assert done.returncode == 0, done.stderr
    assert "2/2 trials finished" in " ".join(done.stdout.split())

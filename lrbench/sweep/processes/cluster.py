"""A sweep's slots on a Dask cluster: ``lrbench sweep NAME --cluster tcp://HOST:8786``.

The slots are the local ones (``lrbench.sweep.slot``): each asks the shared study for
trials, trains them and writes their records, so the study (in PostgreSQL) stays the one
source of truth and a rerun resumes it. Only where a slot runs changes: one Dask task
per slot, pinned to one worker, planned from the workers the scheduler knows:

- a worker that declares GPUs (``dask worker --resources GPU=1``) gets one slot per GPU;
- any other worker gets one CPU slot with as many torch threads as the worker has.

``ClusterPool`` has ``SlotPool``'s interface, so ``lrbench.sweep.run`` drives both alike:
dead slots' trials are recovered, Ctrl-C and SIGTERM stop every slot at its next epoch
(each re-queues its trials), and the parent's progress reads the storage.

Dask's futures, not ``joblib.Parallel(backend="dask")``: joblib's Dask backend (which
drives the same futures) can neither pin one task to one worker nor say which task a
lost worker took with it, and both are what a slot needs. The data set is read once by
the parent and scattered once to every worker; each slot's task refers to it.

A slot stops when the parent asks (a flag in a Dask ``Variable``), when the parent's
heartbeat in it is older than ``PARENT_GONE_SECONDS`` (the parent was killed), or when
the scheduler cannot be reached: what ``lrbench.sweep.processes.lifeline`` does for local slots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lrbench import environment
from lrbench.errors import UserError
from lrbench.sweep.devices import Slot
from lrbench.sweep.processes import lifeline
from lrbench.sweep.processes.pool import SlotEnd, SlotProcess
from lrbench.sweep.slot_job import SlotJob, SlotReport, run_in_worker
from lrbench.train.data import DatasetArrays

# How long a call to the scheduler may take: connecting, and each question the parent or
# a slot asks it. LRBENCH_CONNECT_TIMEOUT_SECONDS may set it (a test of an unreachable or
# lost scheduler need not wait 10 s for the answer that nobody is there).
CONNECT_TIMEOUT_SECONDS = environment.seconds("LRBENCH_CONNECT_TIMEOUT_SECONDS", 10)
# No heartbeat from the parent this long (it beats every poll, twice a second): its slots
# stop. Read in the cluster worker, where LRBENCH_PARENT_GONE_SECONDS may set it (a test
# that kills the parent need not wait a minute).
PARENT_GONE_SECONDS = environment.seconds("LRBENCH_PARENT_GONE_SECONDS", 60)
CHECK_EVERY_SECONDS = 1.0  # a slot reads the control variable at most this often
SCHEDULER_LOST_SECONDS = 15.0  # the parent waits this long for a reconnect, then stops


class ClusterLost(Exception):
    """The Dask scheduler went away mid-sweep: finished trials are stored; rerun to resume."""


@dataclass(frozen=True)
class ClusterWorker:
    address: str  # the Dask worker's address: where its slot's task is pinned
    host: str  # its machine's host name, as trial claims record it
    pid: int  # its process: a slot runs inside it, so the claims record this pid
    threads: int
    gpus: int


def connect(address: str) -> Any:
    """A Dask client of the scheduler at ``address``; exit 2 naming it if none answers."""
    from distributed import Client

    # lrbench says itself when the scheduler is unreachable or lost, and what to do; the
    # client's own reconnect attempts log errors with tracebacks that would bury that.
    # (distributed's own logging config gives some of its loggers levels of their own.)
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise UserError(f"--cluster {address}: no Dask scheduler answered there within "
                        f"{CONNECT_TIMEOUT_SECONDS:g} s ({type(err).__name__}: {err}); start one "
                        f"with `dask scheduler`, or check the address") from None


def _whoami() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def workers_of(client: Any) -> list[ClusterWorker]:
    """The cluster's workers now, in address order."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    identities = client.run(_whoami)
    workers = []
    for address in sorted(info):
        if address not in identities:  # left between the two calls
            continue
        host, pid = identities[address]
        gpus = int(info[address].get("resources", {}).get("GPU", 0))
        workers.append(ClusterWorker(address, host, pid, int(info[address]["nthreads"]), gpus))
    return workers


def plan_cluster_slots(workers: list[ClusterWorker], most: int | None = None) -> list[Slot]:
    """One slot per GPU on GPU workers, one CPU slot per other worker (``most``: a cap).

    A worker runs one task per thread: one declaring more GPUs than threads gets a slot
    per thread (``dask worker --nthreads N --resources GPU=N`` uses all N)."""
    slots: list[Slot] = []
    for worker in workers:
        gpus = min(worker.gpus, worker.threads)
        devices = [f"cuda:{i}" for i in range(gpus)] or ["cpu"]
        for device in devices:
            threads = worker.threads if device == "cpu" else 1
            slots.append(Slot(len(slots), device, threads, worker=worker.address,
                              host=worker.host))
    if not slots:
        raise UserError("--cluster: the scheduler has no cluster workers; start some with "
                        "`dask worker SCHEDULER_ADDRESS --nthreads 1`")
    return slots[:most] if most else slots


def hosts_text(slots: list[Slot]) -> str:
    """Slots per worker host, for the terminal: "node1: 2 x cpu, node2: 4 x cuda"."""
    per_host: dict[str, list[str]] = {}
    for slot in slots:
        per_host.setdefault(slot.host or "?", []).append(slot.device.split(":")[0])
    return ", ".join(f"{host}: " + ", ".join(f"{devices.count(d)} x {d}"
                                             for d in dict.fromkeys(devices))
                     for host, devices in per_host.items())


# --- on a worker ---


class _Control:
    """A slot's view of the parent's control variable, read at most once a second."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.checked = 0.0
        self.stop = False

    def __call__(self) -> bool:
        if self.stop or time.monotonic() - self.checked < CHECK_EVERY_SECONDS:
            return self.stop
        self.checked = time.monotonic()
        from distributed import Variable

        try:
            state = Variable(self.name).get(timeout=CONNECT_TIMEOUT_SECONDS)
        except Exception:  # the scheduler is gone: nobody can collect the results
            self.stop = True
            return True
        self.stop = bool(state["stop"]) or time.time() - state["beat"] > PARENT_GONE_SECONDS
        return self.stop


def _run_on_worker(job: SlotJob, arrays: DatasetArrays, control: str) -> SlotReport:
    """A slot inside a Dask worker: the local slot loop, stopped by the parent's control."""
    source = _Control(control)
    lifeline.watch(source)
    try:
        return run_in_worker(dataclasses.replace(job, arrays=arrays))
    finally:
        lifeline.unwatch(source)


# --- the parent's side ---


class ClusterPool:
    """``SlotPool``'s interface over Dask: one pinned task per slot."""

    def __init__(self, client: Any, arrays: DatasetArrays, address: str,
                 workers: list[ClusterWorker]) -> None:
        from distributed import Variable

        self.client, self.address = client, address
        self.arrays = client.scatter(arrays, broadcast=True, hash=False)  # once per worker
        self.control_name = f"lrbench-control-{uuid.uuid4().hex}"
        self.control = Variable(self.control_name, client=client)
        self._stopping = False
        self._beat()
        self.running: list[SlotProcess] = []
        self.workers = {w.address: w for w in workers}  # the ones the slots were planned on
        self.dead: set[tuple[str, int]] = set()  # lost workers' (host, pid): their claims
        self.lost_since: float | None = None

    def _beat(self) -> None:
        with self._scheduler_call():
            self.control.set({"stop": self._stopping, "beat": time.time()})

    def start(self, job: SlotJob, restarts: int = 0) -> SlotProcess:
        if job.slot.worker not in self.workers or self._lost(job.slot.worker):
            self._live_workers()  # raises if the scheduler went: then that is the news
            raise ClusterLost(f"cluster worker {job.slot.worker} left the cluster")
        self._check_scheduler()
        with self._scheduler_call():
            future = self.client.submit(
                _run_on_worker, dataclasses.replace(job, arrays=None), self.arrays,
                self.control_name, key=f"lrbench-slot-{job.slot.index}-{uuid.uuid4().hex[:8]}",
                workers=[job.slot.worker], allow_other_workers=False, pure=False)
        process = SlotProcess(job, None, future, restarts)
        self.running.append(process)
        return process

    def _lost(self, address: str) -> bool:
        return address in {a for a, w in self.workers.items()
                           if (w.host, w.pid) in self.dead}

    def wait(self, timeout: float) -> list[SlotEnd]:
        """The slots that ended within ``timeout`` seconds, a lost worker's included."""
        self._check_scheduler()
        self._beat()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(p.future.done() for p in self.running):
            time.sleep(0.05)  # (distributed.wait needs a default client; this one is not)
        self._check_scheduler()  # futures end as cancelled when the scheduler goes
        ended = [self._ended(p) for p in list(self.running) if p.future.done()]
        with self._scheduler_call():  # (it may have gone between the two checks)
            alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
        if (any(end.died for end in ended)
                or any(p.job.slot.worker not in alive for p in self.running)):
            alive = self._live_workers()  # (the cached list may be stale)
        for process in [p for p in self.running if p.job.slot.worker not in alive]:
            worker = self.workers[process.job.slot.worker]
            self.dead.add((worker.host, worker.pid))
            self.running.remove(process)
            process.future.cancel()
            ended.append(SlotEnd(process, died=True))
        return ended

    def _check_scheduler(self) -> None:
        """Raise ClusterLost once the scheduler is gone: at once when the client has
        closed, after SCHEDULER_LOST_SECONDS while it tries to reconnect."""
        status = self.client.status
        if status == "running":
            self.lost_since = None
            return
        self.lost_since = self.lost_since or time.monotonic()
        if status in ("closing", "closed") or (
                time.monotonic() - self.lost_since > SCHEDULER_LOST_SECONDS):
            raise self._scheduler_lost()

    def _live_workers(self) -> set[str]:
        """The workers' addresses, asked of the scheduler, before any slot is called dead.

        When the scheduler dies, the client's cached list of workers can empty and the
        slots' futures end as cancelled before the client notices that it is cut off.
        Then every worker looks lost, but the scheduler is what went: the user must hear
        that, and a rerun needs a scheduler, not new workers."""
        with self._scheduler_call():
            identity = self.client.sync(self.client.scheduler.identity, n_workers=-1,
                                        callback_timeout=CONNECT_TIMEOUT_SECONDS)
        return set(identity["workers"])

    @contextlib.contextmanager
    def _scheduler_call(self) -> Iterator[None]:
        """A call to the scheduler: its failure (the client closed, the scheduler went
        away) becomes ClusterLost."""
        try:
            yield
        except Exception as err:
            raise self._scheduler_lost(err) from None

    def _scheduler_lost(self, err: BaseException | None = None) -> ClusterLost:
        why = f" ({type(err).__name__})" if err is not None else ""
        return ClusterLost(f"lost the Dask scheduler at {self.address}{why}")

    def _ended(self, process: SlotProcess) -> SlotEnd:
        self.running.remove(process)
        if process.future.status == "finished":
            return SlotEnd(process, report=process.future.result())
        try:
            error = process.future.exception(timeout=CONNECT_TIMEOUT_SECONDS)
        except Exception as err:  # cancelled, or the scheduler went away
            error = err
        # A worker that died while running the task: Dask reports it as KilledWorker.
        died = type(error).__name__ in ("KilledWorker", "CancelledError")
        return SlotEnd(process, error=error, died=died)

    def restartable(self, process: SlotProcess) -> bool:
        """A slot restarts only where its worker still lives (it is pinned there)."""
        return not self._lost(process.job.slot.worker)

    def stop(self) -> None:
        self._stopping = True
        try:
            self._beat()
        except ClusterLost:  # the slots stop by themselves: they cannot reach it either
            pass

    @property
    def stopping(self) -> bool:
        return self._stopping

    def kill_all(self, why: str) -> None:
        """Stop waiting for the slots: each still stops by itself at its next epoch (it
        reads the stop flag) and re-queues its trials; a Dask task cannot be killed."""
        for process in self.running:
            process.killed = process.killed or why
            process.future.cancel()

    def abandon(self) -> None:
        self.stop()
        self.kill_all("still running when the sweep was left")

    def close(self) -> None:
        try:
            self.client.close(timeout=CONNECT_TIMEOUT_SECONDS)
        except Exception:  # already gone
            pass


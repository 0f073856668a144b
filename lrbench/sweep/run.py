"""Run a sweep: open the study, start one worker process per slot, watch them to the end.

The parent does the checks that should fail fast and once (devices, data, the results
folder, the study's setup), then runs the slots in rounds until the study holds its
trial count:

- a slot whose process dies costs only its own trials: they are recovered at once and
  a replacement slot starts (at most ``MAX_RESTARTS`` times per slot);
- when the slots are done but trials of another live sweep are still running, the
  parent waits for them, and runs a new round if any of them die;
- a slot that makes no progress for too long (``lrbench.sweep.processes.stuck``) is killed, its
  trials recovered, and a replacement started; the terminal says which and why;
- Ctrl-C or SIGTERM sets the stop event: every slot fails and re-queues its trials at
  its next epoch, and the parent returns once they have, or after
  ``STOP_GRACE_SECONDS``, when it kills the slots that have not (a long epoch, a stuck
  worker) and recovers their trials; a second one kills every slot at once, recovers
  their trials and leaves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from lrbench import environment
from lrbench.errors import LockTimeout, StorageError, UserError, signal_of
from lrbench.store import data_identity, outage
from lrbench.store.claims import claim_lock, recover_stale_trials, requeued_trials_of
from lrbench.store.picks import best_per_family
from lrbench.store.schema import start_run
from lrbench.store.storage import is_url, open_storage, shown, storage_location
from lrbench.sweep import seeds
from lrbench.sweep.choice import resolve_engine
from lrbench.sweep.config import SweepConfig, check_against_data, check_loss_against_data
from lrbench.sweep.devices import Slot, plan_slots
from lrbench.sweep.processes.cluster import (
    ClusterLost,
    ClusterPool,
    connect,
    plan_cluster_slots,
    workers_of,
)
from lrbench.sweep.processes.pool import SlotEnd, SlotPool
from lrbench.sweep.processes.stuck import DEFAULT_FLOOR_SECONDS
from lrbench.sweep.protocol import spent_failures
from lrbench.sweep.slot_job import SlotJob, SlotReport, TooManyFailures
from lrbench.sweep.study import counted_trials, open_study
from lrbench.torch_import import import_torch
from lrbench.train import data
from lrbench.train.workload import add_import_root, check_model, is_import_path

MAX_RESTARTS = 3  # a slot whose process keeps dying (out of memory, say) is given up
MAX_IDLE_ROUNDS = 2  # rounds in a row that finish no trial: the sweep cannot get further
POLL_SECONDS = 0.5
RECOVER_EVERY_SECONDS = 5.0  # while waiting on other sweeps' trials
# After Ctrl-C or SIGTERM: slots not stopped by then are killed. LRBENCH_STOP_GRACE_SECONDS
# may set it (a test of a slot that never stops need not wait 10 s for it).
STOP_GRACE_SECONDS = environment.seconds("LRBENCH_STOP_GRACE_SECONDS", 10)
PARENT_LOCK_SECONDS = 2.0  # the parent's longest wait for the claim lock


@dataclass
class StudySnapshot:
    """A snapshot of the study, as the progress bar shows it."""

    finished: int
    running: int
    best: float | None
    failed: int = 0


@dataclass
class SweepOutcome:
    study: optuna.Study  # already synced with the storage: read results from it directly
    storage: str
    slots: list[Slot]
    finished: int
    target: int
    recovered: list[int] = field(default_factory=list)  # trials re-queued from dead workers
    interrupted: int = 0  # the signal that stopped the sweep (SIGINT, SIGTERM), or 0
    wall_seconds: float = 0.0
    reports: list[SlotReport] = field(default_factory=list)
    error: BaseException | None = None
    deaths: int = 0  # worker processes that died mid-sweep
    notices: list[str] = field(default_factory=list)  # slots killed, and why (on_notice)
    failed_before: int = 0  # FAIL trials in the study when this sweep started
    gave_up: set[int] = field(default_factory=set)  # slots stopped by failing trials

    @property
    def train_seconds(self) -> float:
        return sum(r.train_seconds for r in self.reports)

    @property
    def short(self) -> bool:
        """Ended with fewer finished trials than its target, though nobody stopped it."""
        return not self.interrupted and self.error is None and self.finished < self.target


def snapshot(study: optuna.Study) -> StudySnapshot:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # the one "best" (no diverged run, none on other data), as the closing table's
    complete = [t.value for t in best_per_family(study, trials).values()]
    # compare: a trial that failed by its own error was spent, and is done
    return StudySnapshot(finished=len(done) + len(spent_failures(trials)),
                         running=sum(t.state == TrialState.RUNNING for t in trials),
                         best=max(complete) if complete else None,
                         failed=sum(t.state == TrialState.FAIL for t in trials))


def run_sweep(config: SweepConfig, *, results_dir: str | Path = "results",
              storage: str | None = None, data_dir: str | None = None, device: str = "auto",
              workers: int | None = None, engine: str = "auto", batch_trials: int | None = None,
              tf32: bool = False, arrays: data.DatasetArrays | None = None,
              cluster: str | None = None, stuck_after: float = DEFAULT_FLOOR_SECONDS,
              storage_wait: float = outage.DEFAULT_WAIT_SECONDS,
              on_progress: Callable[[StudySnapshot], None] | None = None,
              on_slots: Callable[[list[Slot]], None] | None = None,
              on_notice: Callable[[str], None] | None = None) -> SweepOutcome:
    """Train the sweep's trials on worker slots until the study holds ``config.trials``.

    ``engine``: "sequential", "batched" or "auto" (per slot: lrbench.sweep.choice);
    ``batch_trials``: K for the batched engine, None to size it per slot; ``tf32``: TF32
    matmuls in batched GPU slots; ``arrays``: the data set, already read (confirm reads it
    to check it against the search study before queueing runs); ``cluster``: a Dask
    scheduler's address, to run the slots on its workers (lrbench.sweep.processes.cluster);
    ``stuck_after``: the floor of the silence after which a local slot counts as stuck
    (lrbench.sweep.processes.stuck; 0: never); ``storage_wait``: how long a server storage may be
    unreachable before the sweep stops (lrbench.store.outage); ``on_notice``: told, in a
    sentence, what happened to a slot (killed as stuck, say) while the sweep runs.
    """
    started = time.perf_counter()
    outage.set_wait_seconds(storage_wait)
    location = storage_location(storage, results_dir)
    if cluster is not None:
        check_shared(location, cluster)
    # Fail here, once, on a missing data set or a bad validation size, not in N workers.
    add_import_root(config.workload_root)  # a user's model and data modules
    arrays = arrays or data.load_arrays(config.dataset, data_dir, source=config.source)
    check_against_data(config, len(arrays.train_labels))  # file, key and value on error
    check_loss_against_data(config, arrays.loss)
    identity = data_identity.identity_of(arrays, config.validation_size)  # checks the split
    if is_import_path(config.model) or not arrays.built_in:  # the pair must fit together
        import_torch()  # (a built-in model on built-in data needs no torch here)
        check_model(config.model, arrays.examples(2), arrays.num_classes, config.source,
                    config.loss)
    fallback = engine_fallback(config, arrays, engine)
    if fallback:
        (on_notice or _ignore)(fallback)
    client = connect(cluster) if cluster is not None else None
    try:
        if client is not None:
            on_cluster = workers_of(client)
            slots = plan_cluster_slots(on_cluster, workers)
        else:
            slots = plan_slots(device, workers)
        if on_slots is not None:
            on_slots(slots)
        if not is_url(location):
            check_writable(Path(location).parent)
        study_storage = open_storage(location)
        with claim_lock(location, config.study):
            study = open_study(config, study_storage)
            data_identity.check_and_record(study, identity)
            counts = {"budget": config.budget, "repeats": config.repeats} if config.compare \
                else {}
            run = start_run(study, {"trials": config.trials, **counts, "workers": len(slots),
                                    **({"cluster": cluster} if cluster else {}),
                                    "device": ",".join(dict.fromkeys(s.device for s in slots)),
                                    "engine": engine,
                                    **({"engine_fallback": fallback} if fallback else {}),
                                    **({"suite": config.suite} if config.suite else {}),
                                    "batch_trials": batch_trials, "tf32": tf32,
                                    "data_dir": str(arrays.root)})
        first = snapshot(study)
        outcome = SweepOutcome(study, location, slots, first.finished, config.trials,
                               failed_before=first.failed)
        jobs = [SlotJob(slot, config, location, arrays,
                        engine="sequential" if fallback else resolve_engine(engine, slot),
                        batch_trials=batch_trials, slots=_peers(slot, slots), tf32=tf32,
                        data_fingerprint=identity.fingerprint, storage_wait=storage_wait)
                for slot in slots]
        pool = (SlotPool(stuck_after) if client is None
                else ClusterPool(client, arrays, cluster or "", on_cluster))
    except BaseException:
        if client is not None:  # nothing ran on it yet
            client.close()
        raise
    try:
        _run_rounds(_Starter(pool, config.seed, run, on_notice or _ignore), jobs, study,
                    outcome, on_progress)
    except ClusterLost as lost:  # the trials its slots finished are stored; the rest re-run
        outcome.error = lost
    except StorageError as broken:  # unreachable past --storage-wait, the journal gone
        outcome.error = broken
        pool.abandon()  # its slots cannot write either; a resume recovers their trials
    except KeyboardInterrupt as interrupt:  # the second Ctrl-C: leave now
        pool.abandon()
        outcome.interrupted = signal_of(interrupt)
        with contextlib.suppress(Exception):  # (a resume recovers them too)
            outcome.recovered += _recover(study, outcome.storage, pool.dead)
        raise
    finally:
        pool.close()
    if not isinstance(outcome.error, StorageError):  # (else the last count seen stands)
        outcome.finished = snapshot(study).finished
    outcome.wall_seconds = time.perf_counter() - started
    return outcome


def engine_fallback(config: SweepConfig, arrays: data.DatasetArrays, engine: str) -> str:
    """Why a user's model trains on the sequential engine where the batched one was
    asked for or chosen, in a sentence; "" if it stacks (or the sequential one was asked).
    Said once: on the terminal, and in the study's run options for the page."""
    if engine == "sequential" or not is_import_path(config.model):
        return ""  # the built-in models all stack
    import_torch()
    from lrbench.train.stacked import unstackable

    reason = unstackable(config.model, arrays.examples(2), arrays.num_classes)
    if not reason:
        return ""
    return f"{config.model} trains on the sequential engine, one trial at a time: {reason}"


def check_writable(folder: Path) -> None:
    """The results folder exists (or can be made) and takes files: say so now, not later."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lrbench-write-test-"):
            pass
    except OSError as err:
        raise UserError(f"results folder {folder} is not writable: {err.strerror}") from None


def check_shared(location: str, cluster: str) -> None:
    """A cluster's workers write the study themselves: its storage must be a server."""
    if not is_url(location) or location.startswith("sqlite"):
        raise UserError(f"--cluster {cluster}: the storage {shown(location)} is a file on this "
                        f"machine, which cluster workers cannot share; pass --storage "
                        f"redis://HOST:6379 or postgresql://USER:PASSWORD@HOST/DATABASE "
                        f"(README: 'On a cluster')")


def _peers(slot: Slot, slots: list[Slot]) -> int:
    """Slots on the same kind of device: the ones this slot shares the trials with when
    sizing K. A GPU slot trains ~100x a CPU slot, so counting the CPU slots would leave
    it a CPU-sized share."""
    return sum(s.device.startswith("cuda") == slot.device.startswith("cuda") for s in slots)


@dataclass
class _Starter:
    """Starts slot processes, each with a sampler seed of its own (``seeds.sampler_seed``):
    a replacement slot, or the same slot in a later round, seeded as before would propose
    its first trials again."""

    pool: SlotPool | ClusterPool
    base_seed: int
    run: int
    notice: Callable[[str], None]
    starts: Counter[int] = field(default_factory=Counter)

    def start(self, job: SlotJob, restarts: int = 0) -> None:
        index = job.slot.index
        seed = seeds.sampler_seed(self.base_seed, self.run, index, self.starts[index])
        self.starts[index] += 1
        self.pool.start(dataclasses.replace(job, sampler_seed=seed), restarts)


def _ignore(notice: str) -> None:
    """No one to tell (a library call without ``on_notice``)."""


def _recover(study: optuna.Study, location: str,
             dead: Collection[tuple[str, int]] = ()) -> list[int]:
    """Dead workers' trials, failed and re-queued; none if the claim lock stays held for
    ``PARENT_LOCK_SECONDS`` (a stuck slot may hold it: the parent must go on watching, to
    kill it; every slot's ask recovers them too, and so does the next round)."""
    try:
        with claim_lock(location, study.study_name, timeout=PARENT_LOCK_SECONDS):
            return recover_stale_trials(study, dead)
    except LockTimeout:
        return []


def _run_rounds(starter: _Starter, jobs: list[SlotJob], study: optuna.Study,
                outcome: SweepOutcome, on_progress: Callable[[StudySnapshot], None] | None
                ) -> None:
    """Rounds of slots until the count is reached, the sweep is stopped, or rounds stop
    helping (every slot gave up: failing trials, dying processes)."""
    idle_rounds = 0
    while True:
        outcome.recovered += _recover(study, outcome.storage, starter.pool.dead)
        left = outcome.target - counted_trials(study)
        now = snapshot(study)
        if left > 0:
            if idle_rounds >= MAX_IDLE_ROUNDS:
                return
            willing = [job for job in jobs if job.slot.index not in outcome.gave_up]
            if not willing:
                return
            for job in willing[:left]:  # more slots than trials left would only start and stop
                starter.start(job)
            _watch(starter, study, outcome, on_progress)
            if outcome.interrupted or outcome.error is not None:
                return
            idle_rounds = idle_rounds + 1 if snapshot(study).finished == now.finished else 0
            continue
        if now.finished >= outcome.target:
            return
        # The count is reached only with trials another live sweep is running: wait for
        # them, and train again if any of them die or are re-queued.
        _wait_for_others(study, outcome, on_progress, starter.pool.dead)
        if outcome.interrupted:
            return


def _watch(starter: _Starter, study: optuna.Study, outcome: SweepOutcome,
           on_progress: Callable[[StudySnapshot], None] | None) -> None:
    """Wait for the round's slots, replacing dead ones; Ctrl-C or SIGTERM stops them."""
    pool = starter.pool
    give_up_at = None  # after a stop: when the slots still running are killed
    while pool.running:
        try:
            for end in pool.wait(POLL_SECONDS):
                _slot_ended(starter, end, study, outcome)
            if on_progress is not None:
                now = snapshot(study)
                outcome.finished = now.finished
                on_progress(now)
            if give_up_at is not None and time.monotonic() > give_up_at:
                pool.kill_all(f"did not stop within {STOP_GRACE_SECONDS:g} s of the stop")
                give_up_at = math.inf
        except KeyboardInterrupt as interrupt:
            if outcome.interrupted:
                raise  # a second one
            outcome.interrupted = signal_of(interrupt)
            pool.stop()  # every slot re-queues its trials at its next epoch
            give_up_at = time.monotonic() + STOP_GRACE_SECONDS
    if on_progress is not None:
        on_progress(snapshot(study))


def _slot_ended(starter: _Starter, end: SlotEnd, study: optuna.Study,
                outcome: SweepOutcome) -> None:
    if end.report is not None:  # (a slot that was sent SIGTERM alone re-queued its trials)
        outcome.reports.append(end.report)
        outcome.recovered += end.report.recovered
        return
    if isinstance(end.error, TooManyFailures):  # this slot gives up, the others go on
        outcome.gave_up.add(end.process.job.slot.index)
        detail = f"\n{end.error.detail}" if end.error.detail else ""
        outcome.notices.append(f"{end.error}: it stops; the other slots go on{detail}")
        starter.notice(outcome.notices[-1])
        return
    if not end.died:  # a bug, a broken device, a full disk: stop the sweep, keep the error
        outcome.error = outcome.error or end.error
        starter.pool.stop()
        return
    outcome.deaths += 1
    # its trials, at once (a lost cluster worker's by its process, even on another host)
    recovered = _recover(study, outcome.storage, starter.pool.dead)
    outcome.recovered += recovered
    if end.process.killed:
        slot, pid = end.process.job.slot, end.process.killed_pid
        # Another slot may have re-queued them first, as it asked for its next trial.
        held = sorted(set(recovered) | set(
            requeued_trials_of(study, socket.gethostname(), pid) if pid is not None else ()))
        outcome.notices.append(
            f"slot {slot.index} ({slot.device}) {end.process.killed}: killed it; "
            + (f"re-queued its trials {held}" if held else "it held no trial")
            + ("" if starter.pool.stopping else "; a new slot takes its place"))
        starter.notice(outcome.notices[-1])
    if (not starter.pool.stopping and end.process.restarts < MAX_RESTARTS
            and starter.pool.restartable(end.process)):
        starter.start(end.process.job, end.process.restarts + 1)


def _wait_for_others(study: optuna.Study, outcome: SweepOutcome,
                     on_progress: Callable[[StudySnapshot], None] | None,
                     dead: Collection[tuple[str, int]]) -> None:
    """Wait until no trial runs, or some were recovered from dead workers, or Ctrl-C.
    ``dead``: processes known dead, whose trials a recovery missed (its lock was held)."""
    last_check = time.monotonic()
    try:
        while (now := snapshot(study)).running:
            if on_progress is not None:
                on_progress(now)
            if time.monotonic() - last_check > RECOVER_EVERY_SECONDS:
                last_check = time.monotonic()
                recovered = _recover(study, outcome.storage, dead)
                if recovered:
                    outcome.recovered += recovered
                    return
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt as interrupt:
        outcome.interrupted = signal_of(interrupt)

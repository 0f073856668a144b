"""One worker slot: a process pinned to one device, looping ask -> train -> record.

Each slot talks to the shared study itself, so a sweep can be joined by more slots (or
a second ``lrbench sweep``) at any time. The trial count is checked across all slots
under the claim lock, not per slot, and the same lock covers recovering dead workers'
trials, so the count is exact.

A batched slot keeps K trials in flight (continuous batching): at every epoch boundary
the trials that finished, were pruned or diverged leave its stacks, their records are
written in one batch, and newly asked trials take their places. Pruning is decided per
stack and epoch (``lrbench.sweep.pruning``), not per trial through the storage.

Storage per trial: its creation, then its params and claim in one batch of writes
with the rest of the asks, then its end (record, intermediate values, state) in one
batch with the others that leave at the same epoch (``lrbench.store.record``).

The slot stops at its next epoch boundary when ``lifeline.stop_requested()``: it fails
its trials and re-queues them, so an interrupted sweep loses no configuration.
"""

from __future__ import annotations

import logging
import math
import resource
import time
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from lrbench.errors import StorageError
from lrbench.store import journal, outage
from lrbench.store.claims import claim_lock, new_claim, recover_stale_trials, requeue
from lrbench.store.record import (
    Cell,
    Claim,
    batched_writes,
    beat,
    failed_record,
    finished_record,
    write_claim,
    write_end,
)
from lrbench.store.storage import is_url, open_storage
from lrbench.sweep import protocol
from lrbench.sweep.choice import batch_trials, fuse_update
from lrbench.sweep.devices import Slot, configure_process
from lrbench.sweep.processes import lifeline
from lrbench.sweep.pruning import stack_pruner
from lrbench.sweep.sampling import asking
from lrbench.sweep.slot_job import SlotJob, SlotReport, TooManyFailures
from lrbench.sweep.study import (
    counted_trials,
    make_pruner,
    make_sampler,
    trial_spec,
)
from lrbench.train.batched import EpochRow, Stack, group_key
from lrbench.train.data import split_to_device
from lrbench.train.sequential import prepare_optimizers, train_trial
from lrbench.train.trial import TrialResult, TrialSpec
from lrbench.train.workload import add_import_root, is_import_path, their_traceback

log = logging.getLogger(__name__)

# A slot whose trials keep raising has a bug or a broken device, not bad luck: stop it.
MAX_FAILURES_IN_A_ROW = 3
# Claims are refreshed this often: only another host's sweep reads the heartbeat, and it
# takes a trial as dead after claims.STALE_AFTER_SECONDS (30 min) without one.
HEARTBEAT_SECONDS = 60.0
# A batched slot asks at least this share of K at a time (see _batched_loop).
ASK_CHUNK = 0.25


class StopRequested(Exception):
    """The sweep is stopping (Ctrl-C, SIGTERM, parent gone): abandon the trial, re-queue it."""


def run_slot(job: SlotJob) -> SlotReport:
    """Train the sweep's trials on this slot until the study holds its count, or a stop."""
    slot = _Slot(job)
    if job.engine == "batched":
        _batched_loop(slot)
    else:
        _sequential_loop(slot)
    slot.report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
    if job.slot.device.startswith("cuda"):
        slot.report.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20
    return slot.report


@dataclass
class _Running:
    """A trial this slot trains: Optuna's handle, what it trains, and this slot's claim."""

    trial: optuna.Trial
    spec: TrialSpec
    claim: Claim
    batch_trials: int = 1  # its stack's size when it joined
    cell: Cell | None = None  # compare: its (family, repeat), whose trials it is pruned against


class _Slot:
    """A slot's open study, data and counters; the two loops below share them."""

    def __init__(self, job: SlotJob) -> None:
        self.job, self.config, self.slot = job, job.config, job.slot
        outage.set_wait_seconds(job.storage_wait, on_wait=lifeline.progressed)
        configure_process(job.slot)
        add_import_root(self.config.workload_root)  # a user's model module, as the parent found it
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if not is_url(job.storage) and not Path(job.storage).exists():
            # The parent made it: moved since. Opening it would make an empty one there
            # (Optuna's journal creates its file), which every other slot then takes for
            # a replacement of theirs.
            raise StorageError(journal.gone_mid_sweep(Path(job.storage)))
        self.study = optuna.load_study(study_name=self.config.study,
                                       storage=open_storage(job.storage, waits=True),
                                       sampler=make_sampler(self.config, job.sampler_seed),
                                       pruner=make_pruner(self.config))
        self.storage = self.study._storage
        # Pruning runs inside the slot, with the rule of the study's pruner.
        self.pruner = stack_pruner(self.study.pruner, self.config.study)
        started = time.perf_counter()
        self.data = split_to_device(job.arrays, self.config.validation_size, self.config.seed,
                                    job.slot.device)
        data_seconds = time.perf_counter() - started
        self.batch_trials = 1
        if job.engine == "batched":
            queued = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            self.batch_trials = batch_trials(job.batch_trials, self.config, job.slot, job.slots,
                                             queued, self.data)
        self.report = SlotReport(job.slot, job.engine, self.batch_trials,
                                 data_seconds=data_seconds)
        lifeline.ready()
        self.failures_in_a_row = 0
        self.last_beat = time.time()

    def ask(self, most: int) -> list[_Running]:
        """Up to ``most`` new trials, counted against the sweep's total across all slots.

        Dead workers' trials are recovered first, under the same lock: their
        configurations are queued again and this slot may take them at once. The new
        trials' params and claims go to the storage as one write, before the lock is
        released (an unclaimed trial is taken as its asker's death after 2 s).
        """
        running: list[_Running] = []
        with claim_lock(self.job.storage, self.config.study):
            self.report.recovered += recover_stale_trials(self.study)
            while True:
                count = max(0, min(most - len(running),
                                   self.config.trials - counted_trials(self.study)))
                if count == 0:
                    break
                claimed, void = self._claim(count)
                running += claimed
                if not void:
                    break
        lifeline.progressed()
        return running

    def _claim(self, count: int) -> tuple[list[_Running], int]:
        """Ask ``count`` trials and claim them (under the claim lock); and how many of them
        were void: failed by another process while this one asked them."""
        # compare: the cells (family, repeat) these asks take, queued for them
        cells = protocol.assign(self.study, self.config, count) if self.config.compare \
            else None
        claimed, void = [], 0
        with asking(self.study, count, cells) as trials, batched_writes(self.storage):
            for trial in trials:
                try:
                    spec = trial_spec(trial, self.config)  # draws its params
                    claim = new_claim(trial, spec, self.slot.index, self.slot.device,
                                      self.job.sampler_seed, self.slot.worker)
                    write_claim(trial, claim)
                except optuna.exceptions.UpdateFinishedTrialError:
                    # A server restart mid-ask ended the session that held the claim lock
                    # (PostgreSQL's), and another process, finding this trial unmarked,
                    # failed it as a dead asker's and queued its configuration again.
                    log.warning("trial %d was recovered by another process while this slot "
                                "asked it (a storage outage); asking again", trial.number)
                    void += 1
                    continue
                claimed.append(_Running(trial, spec, claim, cell=protocol.cell_of(trial)))
        return claimed, void

    def decide(self, running: dict[Hashable, _Running], rows: list[EpochRow]) -> list[Hashable]:
        """Which of a stack's trials to prune after this epoch (keys of ``running``)."""
        if self.pruner is None:
            return []
        return self.pruner.decide(self.study, rows,
                                  {row.key: running[row.key].trial._trial_id for row in rows},
                                  {row.key: running[row.key].cell for row in rows})

    def beat_if_due(self, running: list[_Running]) -> None:
        if time.time() - self.last_beat < HEARTBEAT_SECONDS:
            return
        with batched_writes(self.storage):
            for r in running:
                r.claim = beat(r.trial, r.claim)
        self.last_beat = time.time()

    def ended(self, ends: list[tuple[_Running, TrialResult]]) -> None:
        """Record finished trials: one batch of writes for all of them."""
        self.failures_in_a_row = 0
        sizes = {"train_size": len(self.data.train_y), "val_size": len(self.data.val_y),
                 "test_size": len(self.data.test_y),
                 "data_fingerprint": self.job.data_fingerprint}
        with batched_writes(self.storage):
            for r, result in ends:
                record = finished_record(
                    r.spec, result, device=self.slot.device, engine=self.job.engine,
                    batch_trials=r.batch_trials,
                    tf32=self.job.tf32 and self.job.engine == "batched",
                    steps_per_epoch=math.ceil(len(self.data.train_y) / r.spec.batch_size),
                    **sizes)
                state = TrialState.PRUNED if result.status == "pruned" else TrialState.COMPLETE
                write_end(self.study, r.trial._trial_id, record, state)
        self.report.trials += len(ends)

    def interrupted(self, running: list[_Running]) -> None:
        self.release(running, "interrupted (Ctrl-C, SIGTERM or parent gone); re-queued")
        self.report.interrupted = True

    def release(self, running: list[_Running], reason: str) -> None:
        """Trials this slot will not finish, through no fault of theirs: failed with
        ``reason`` and their configurations queued again, so none is lost."""
        with batched_writes(self.storage):
            for r in running:
                record = failed_record(r.trial, reason)
                write_end(self.study, r.trial._trial_id, record, TrialState.FAIL)
        for r in running:  # a new trial each: Optuna's create needs its answer at once
            requeue(self.study, r.trial)

    def failed(self, running: list[_Running], err: Exception) -> None:
        """Fail the trials with the error's trace; stop the slot after a run of failures."""
        trace = traceback.format_exc()
        with batched_writes(self.storage):
            for r in running:
                record = failed_record(r.trial, f"error: {err!r}", trace)
                write_end(self.study, r.trial._trial_id, record, TrialState.FAIL)
        self.report.failed += len(running)
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            # an error raised in a user's model shows their frames, not lrbench's
            theirs = their_traceback(err) if is_import_path(self.config.model) else ""
            where = f", raised in your code (train.model = {self.config.model!r})" \
                if theirs else ""
            raise TooManyFailures(f"slot {self.slot.index} ({self.slot.device}): "
                                  f"{self.failures_in_a_row} trials in a row failed; "
                                  f"last: {err!r}{where}", theirs) from err


def _sequential_loop(slot: _Slot) -> None:
    """One trial at a time: ask, train, record."""
    prepare_optimizers()  # before the first trial, not inside it
    while not lifeline.stop_requested():
        got = slot.ask(1)
        if not got:
            break
        r = got[0]
        curve: list[float] = []

        def on_epoch(epoch: int, val_accuracy: float, r: _Running = r,
                     curve: list[float] = curve) -> bool:
            lifeline.progressed()
            slot.beat_if_due([r])
            if lifeline.stop_requested():
                raise StopRequested
            curve.append(val_accuracy)
            last = epoch + 1 == r.spec.epochs
            row = EpochRow(r.trial.number, epoch, val_accuracy, last, curve)
            return bool(slot.decide({r.trial.number: r}, [row]))

        try:
            started = time.perf_counter()
            result = train_trial(r.spec, slot.data, on_epoch)
        except StopRequested:
            slot.interrupted([r])
            break
        except StorageError:  # nothing more can be written: end the slot, say why
            raise
        except Exception as err:  # a bug or a device error: keep its trace with the trial
            slot.failed([r], err)
            continue
        slot.report.train_seconds += time.perf_counter() - started
        slot.ended([(r, result)])


def _batched_loop(slot: _Slot) -> None:
    """Keep ``slot.batch_trials`` trials in flight, in stacks of one batch order each.

    Every epoch boundary: fill the free places, let the new trials join their stacks,
    train every stack one epoch, record the trials that left. Trials of different batch
    orders (e.g. confirm runs of different seeds) train in separate stacks, one after the
    other within the epoch.

    Places are filled from the slot's queue of asked trials, refilled ASK_CHUNK of K at
    a time: a sampler fit costs about the same for 1 trial as for 8, and pruned trials
    leave a stack one or two at a time. Queued trials are claimed (RUNNING) and join at
    the next free place. On a GPU the queue is topped up while an epoch's kernels run
    (``Stack.run_epoch(while_training=...)``): the host would otherwise wait for the
    device. (Asking in a second thread was slower, on a CPU and on a GPU:
    benchmarks/README.md.)
    """
    stacks: dict[tuple[object, ...], Stack] = {}
    running: dict[Hashable, _Running] = {}
    queue: list[_Running] = []
    fused = fuse_update(slot.slot, slot.batch_trials)
    chunk = max(1, math.ceil(ASK_CHUNK * slot.batch_trials))
    drained = False  # an ask got fewer trials than it asked for: no asking ahead

    def ask(count: int) -> None:
        nonlocal drained
        got = slot.ask(count)
        drained = len(got) < count
        queue.extend(got)

    def ask_ahead() -> None:
        if len(queue) < chunk and not drained and not lifeline.stop_requested():
            ask(chunk)

    overlap = ask_ahead if asks_while_training(slot.slot) else None
    while True:
        if lifeline.stop_requested():
            slot.interrupted([*running.values(), *queue])
            return
        free = slot.batch_trials - len(running)
        if free > len(queue):
            ask(max(free - len(queue), chunk))
        joining, queue[:] = queue[:free], queue[free:]
        try:
            _join(slot, joining, stacks, running, fused)
            if not running:
                if joining:  # none of them could start (and each failed): ask for others
                    continue
                return
            _run_epoch(slot, stacks, running, overlap, fused)
        except TooManyFailures:  # the slot stops: the trials it holds go back to the queue
            slot.release([*running.values(), *queue], "its slot stopped after a run of "
                                                      "failed trials; re-queued")
            raise
        slot.beat_if_due([*running.values(), *queue])


def asks_while_training(slot: Slot) -> bool:
    """Whether a slot tops up its queue during an epoch: where the device trains
    asynchronously (a GPU). A CPU slot's epoch has already run when the host gets back."""
    return slot.device.startswith("cuda")


def _run_epoch(slot: _Slot, stacks: dict[tuple[object, ...], Stack],
               running: dict[Hashable, _Running],
               while_training: Callable[[], None] | None = None, fused: bool = False) -> None:
    """One epoch of every stack; record the trials that left; isolate a stack that raised.

    A stack trains its trials as one model, so when it raises, which trial raised is not
    known (a schedule dividing by zero, or memory running out for all of them). Each of
    its trials then starts again alone, from its first epoch with its own seeds: a trial
    that raises alone fails with its own error, and its stack-mates go on. A trial alone
    that raises fails.

    ``while_training`` runs once, inside the first stack's epoch (Stack.run_epoch); the
    time it takes is not training time."""
    overlapped = 0.0

    def timed(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            nonlocal overlapped
            started = time.perf_counter()
            work()
            overlapped = time.perf_counter() - started
        return run

    hook = None if while_training is None else timed(while_training)
    for key, stack in list(stacks.items()):
        members = stack.keys()
        try:
            started = time.perf_counter()
            left = stack.run_epoch(lambda rows: slot.decide(running, rows), hook)
            lifeline.progressed()
            slot.report.train_seconds += time.perf_counter() - started - overlapped
            hook, overlapped = None, 0.0
        except StorageError:
            raise
        except Exception as err:
            del stacks[key]
            _isolate(slot, [running.pop(k) for k in members], err, stacks, running, fused)
            continue
        if left:
            slot.ended([(running.pop(k), result) for k, result in left])
        if not len(stack):
            del stacks[key]


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the device or the host running out of memory."""
    text = str(err).lower()
    return (isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError))
            or "out of memory" in text or "can't allocate memory" in text)


def _isolate(slot: _Slot, trials: list[_Running], err: Exception,
             stacks: dict[tuple[object, ...], Stack], running: dict[Hashable, _Running],
             fused: bool) -> None:
    """Trials whose stack raised ``err``: one alone fails with it; several each start again
    alone (which of them raised is not known). Out of memory also halves K for new stacks.
    A trial that cannot even start alone (memory still short) fails with its own error."""
    if len(trials) == 1:
        slot.failed(trials, err)
    else:
        log.warning("slot %d: a stack of %d trials raised %r; each starts again alone",
                    slot.slot.index, len(trials), err)
        for r in trials:
            try:
                _alone(slot, r, stacks, fused)
            except StorageError:
                raise
            except Exception as alone_err:
                stacks.pop(("alone", r.trial.number), None)
                slot.failed([r], alone_err)
            else:
                running[r.trial.number] = r
    if out_of_memory(err) and slot.batch_trials > 1:  # new stacks: half the size
        slot.batch_trials //= 2
        log.warning("slot %d: out of memory; it now stacks at most %d trial%s",
                    slot.slot.index, slot.batch_trials, "" if slot.batch_trials == 1 else "s")


def _alone(slot: _Slot, r: _Running, stacks: dict[tuple[object, ...], Stack],
           fused: bool) -> None:
    """``r`` from its first epoch again, in a stack of its own that no trial joins."""
    data_seed = r.spec.data_seed
    stack = stacks[("alone", r.trial.number)] = Stack(
        slot.data, r.spec.seed if data_seed is None else data_seed, tf32=slot.job.tf32,
        fused=fused)
    stack.join([r.spec], keys=[r.trial.number])
    r.batch_trials = 1


def _join(slot: _Slot, new: list[_Running], stacks: dict[tuple[object, ...], Stack],
          running: dict[Hashable, _Running], fused: bool) -> None:
    """New trials join the stack of their batch order (a new stack if there is none)."""
    by_key: dict[tuple[object, ...], list[_Running]] = {}
    for r in new:
        by_key.setdefault(group_key(r.spec), []).append(r)
    for key, group in by_key.items():
        stack = stacks.get(key)
        before = [] if stack is None else [running.pop(k) for k in stack.keys()]
        try:
            if stack is None:
                data_seed = group[0].spec.data_seed
                stack = Stack(slot.data, group[0].spec.seed if data_seed is None
                              else data_seed, tf32=slot.job.tf32, fused=fused)
            stack.join([r.spec for r in group], keys=[r.trial.number for r in group])
        except StorageError:
            raise
        except Exception as err:  # (memory, mostly) a stack half joined is not to be trusted
            stacks.pop(key, None)
            _isolate(slot, [*before, *group], err, stacks, running, fused)
            continue
        stacks[key] = stack
        for r in before:
            running[r.trial.number] = r
        for r in group:
            r.batch_trials = len(stack)
            running[r.trial.number] = r

"""One worker slot: a process pinned to one device, looping ask -> train -> tell.

Each slot talks to the shared study itself, so pruning decisions are per trial and a
sweep can be joined by more slots (or a second ``lrbench sweep``) at any time. The
trial count is checked across all slots under the claim lock, not per slot, and the
same lock covers recovering dead workers' trials, so the count is exact.

The slot stops at its next safe point when ``lifeline.stop_requested()``: it fails
its trials and re-queues them, so an interrupted sweep loses no configuration.
"""

from __future__ import annotations

import dataclasses
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import TrialState

from lrbench import lifeline
from lrbench.claim import claim_lock
from lrbench.config import SweepConfig
from lrbench.data import DatasetArrays, split_to_device
from lrbench.devices import Slot, configure_process
from lrbench.engine.batched import group_specs, train_batch
from lrbench.engine.choice import batch_trials, fuse_update
from lrbench.engine.sequential import train_trial
from lrbench.engine.trial import TrialResult, TrialSpec
from lrbench.errors import StorageError
from lrbench.sampling import ask_batch
from lrbench.storage import open_storage
from lrbench.study import (
    counted_trials,
    heartbeat,
    make_pruner,
    make_sampler,
    mark_running,
    record_data_sizes,
    record_result,
    recover_stale_trials,
    requeue,
    trial_spec,
)

# A slot whose trials keep raising has a bug or a broken device, not bad luck: stop it.
MAX_FAILURES_IN_A_ROW = 3


class StopRequested(Exception):
    """The sweep is stopping (Ctrl-C, SIGTERM, parent gone): abandon the trial, re-queue it."""


@dataclass(frozen=True)
class SlotJob:
    slot: Slot
    config: SweepConfig
    storage: str  # URL or journal path: each process opens its own connection
    arrays: DatasetArrays  # read once by the parent: workers never import torchvision
    sampler_seed: int = 0  # this slot process's own (lrbench.seeds.sampler_seed)
    engine: str = "sequential"  # "sequential" or "batched", already resolved for this slot
    batch_trials: int | None = None  # trials per stacked model; None: sized in the worker
    slots: int = 1  # slots on this kind of device: the auto-sized K is a share of the trials
    tf32: bool = False  # batched engine on a GPU: TF32 matmuls (faster, 10-bit mantissas)


@dataclass
class SlotReport:
    slot: Slot
    engine: str = "sequential"
    batch_trials: int = 1
    trials: int = 0
    failed: int = 0
    interrupted: bool = False
    recovered: list[int] = dataclasses.field(default_factory=list)  # dead workers' trials
    data_seconds: float = 0.0  # loading the data set onto the device, once per slot
    train_seconds: float = 0.0  # wall time inside the engine (a batch counts once)
    peak_rss_mb: float = 0.0  # the worker process's peak resident memory
    peak_gpu_mb: float = 0.0  # torch's peak allocated CUDA memory, on a GPU slot


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


class _Slot:
    """A slot's open study, data and counters; the two loops below share them."""

    def __init__(self, job: SlotJob) -> None:
        self.job, self.config, self.slot = job, job.config, job.slot
        configure_process(job.slot)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.load_study(study_name=self.config.study,
                                       storage=open_storage(job.storage),
                                       sampler=make_sampler(self.config, job.sampler_seed),
                                       pruner=make_pruner(self.config))
        self.batch_trials = 1
        if job.engine == "batched":
            self.batch_trials = batch_trials(job.batch_trials, self.config, job.slot, job.slots)
        self.report = SlotReport(job.slot, job.engine, self.batch_trials)
        started = time.perf_counter()
        self.data = split_to_device(job.arrays, self.config.validation_size, self.config.seed,
                                    job.slot.device)
        self.report.data_seconds = time.perf_counter() - started
        self.failures_in_a_row = 0

    def ask(self, most: int) -> list[optuna.Trial]:
        """Up to ``most`` new trials, counted against the sweep's total across all slots.

        Dead workers' trials are recovered first, under the same lock: their
        configurations are queued again and this slot may take them at once.
        """
        with claim_lock(self.job.storage, self.config.study):
            self.report.recovered += recover_stale_trials(self.study)
            left = self.config.trials - counted_trials(self.study)
            trials = ask_batch(self.study, max(0, min(most, left)))
            for trial in trials:
                mark_running(trial, self.slot.index, self.slot.device, self.job.sampler_seed)
        return trials

    def spec(self, trial: optuna.Trial) -> TrialSpec:
        spec = trial_spec(trial, self.config)
        record_data_sizes(trial, self.data, spec.batch_size)
        trial.set_user_attr("engine", self.job.engine)
        if self.job.tf32 and self.job.engine == "batched":
            trial.set_user_attr("tf32", True)
        return spec

    def hook(self, trial: optuna.Trial, beat_every: float = 0.0) -> Callable[[int, float], bool]:
        """The engine's per-epoch hook: report, heartbeat, honour a stop, ask the pruner."""
        last_beat = [time.time()]

        def on_epoch(epoch: int, val_accuracy: float) -> bool:
            trial.report(val_accuracy, epoch)
            if time.time() - last_beat[0] >= beat_every:
                heartbeat(trial)
                last_beat[0] = time.time()
            if lifeline.stop_requested():
                raise StopRequested
            return trial.should_prune()
        return on_epoch

    def interrupted(self, trials: list[optuna.Trial]) -> None:
        for trial in trials:
            trial.set_user_attr("reason", "interrupted (Ctrl-C, SIGTERM or parent gone); "
                                          "re-queued")
            self.study.tell(trial, state=TrialState.FAIL)
            requeue(self.study, trial)
        self.report.interrupted = True

    def failed(self, trials: list[optuna.Trial], err: Exception) -> None:
        """Fail the trials with the error's trace; stop the slot after a run of failures."""
        for trial in trials:
            trial.set_user_attr("reason", f"error: {err!r}")
            trial.set_user_attr("traceback", traceback.format_exc())
            self.study.tell(trial, state=TrialState.FAIL)
        self.report.failed += len(trials)
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            unit = "batches" if self.job.engine == "batched" else "trials"
            raise RuntimeError(f"slot {self.slot.index} ({self.slot.device}): "
                               f"{self.failures_in_a_row} {unit} in a row failed; "
                               f"last: {err!r}") from err

    def told(self, trial: optuna.Trial, result: TrialResult) -> None:
        self.failures_in_a_row = 0
        record_result(trial, result)
        self.report.trials += 1
        if result.status == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, result.val_accuracy)


def _sequential_loop(slot: _Slot) -> None:
    """One trial at a time: ask, train, tell."""
    while not lifeline.stop_requested():
        trials = slot.ask(1)
        if not trials:
            break
        trial = trials[0]
        try:
            started = time.perf_counter()
            result = train_trial(slot.spec(trial), slot.data, slot.hook(trial))
        except StopRequested:
            slot.interrupted([trial])
            break
        except StorageError:  # nothing more can be written: end the slot, say why
            raise
        except Exception as err:  # a bug or a device error: keep its trace with the trial
            slot.failed([trial], err)
            continue
        slot.report.train_seconds += time.perf_counter() - started
        slot.told(trial, result)


def _batched_loop(slot: _Slot) -> None:
    """K trials at a time, trained as one stacked model on one shared batch order."""
    while not lifeline.stop_requested():
        trials = slot.ask(slot.batch_trials)
        if not trials:
            break
        specs = [slot.spec(t) for t in trials]  # one batch order per data_seed: group_specs
        by_number = {t.number: t for t in trials}
        pending = list(trials)
        try:
            for group in group_specs(specs):  # e.g. fixed trials with their own epochs
                members = [by_number[s.number] for s in group]
                # Heartbeats every minute, not every epoch: K writes per epoch add up.
                hooks = [slot.hook(t, beat_every=60.0) for t in members]
                started = time.perf_counter()
                results = train_batch(group, slot.data,
                                      lambda i, epoch, acc, hooks=hooks: hooks[i](epoch, acc),
                                      fused=fuse_update(slot.slot, len(group)),
                                      tf32=slot.job.tf32)
                slot.report.train_seconds += time.perf_counter() - started
                for trial, result in zip(members, results):
                    trial.set_user_attr("batch_trials", len(group))
                    slot.told(trial, result)
                    pending.remove(trial)
        except StopRequested:
            slot.interrupted(pending)
            break
        except StorageError:
            raise
        except Exception as err:
            slot.failed(pending, err)

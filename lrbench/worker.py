"""One worker slot: a process pinned to one device, looping ask -> train -> tell.

Each slot talks to the shared study itself, so pruning decisions are per trial and a
sweep can be joined by more slots (or a second ``lrbench sweep``) at any time. The
trial count is checked across all slots under a lock, not per slot.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from lrbench.config import SweepConfig
from lrbench.data import DatasetArrays, split_to_device
from lrbench.devices import Slot, configure_process
from lrbench.engine.sequential import train_trial
from lrbench.storage import claim_lock, open_storage
from lrbench.study import (
    counted_trials,
    heartbeat,
    make_pruner,
    make_sampler,
    mark_running,
    record_data_sizes,
    record_result,
    requeue,
    trial_spec,
)

# A slot whose trials keep raising has a bug or a broken device, not bad luck: stop it.
MAX_FAILURES_IN_A_ROW = 3


class StopRequested(Exception):
    """The parent asked every slot to stop (Ctrl-C): abandon the trial, re-queue it."""


@contextlib.contextmanager
def _ctrl_c_left_to_parent() -> Iterator[None]:
    """Ignore Ctrl-C here: the parent turns it into the stop file.

    A terminal's Ctrl-C reaches every process of the group. A KeyboardInterrupt landing
    in a worker between ``ask`` and ``tell`` (outside the trial's ``try``) left its trial
    RUNNING behind a live process; the stop file is checked only at safe points (between
    trials, after each epoch). Only a main thread may set handlers: with one slot, joblib
    runs it in a thread of the parent, which gets no signals anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class SlotJob:
    slot: Slot
    config: SweepConfig
    storage: str  # URL or journal path: each process opens its own connection
    arrays: DatasetArrays  # read once by the parent: workers never import torchvision
    stop_file: str  # exists once the parent wants the sweep stopped


@dataclass
class SlotReport:
    slot: Slot
    trials: int = 0
    failed: int = 0
    interrupted: bool = False
    data_seconds: float = 0.0  # loading the data set onto the device, once per slot
    train_seconds: float = 0.0  # sum of the slot's trials' training time
    peak_rss_mb: float = 0.0  # the worker process's peak resident memory


def run_slot(job: SlotJob) -> SlotReport:
    with _ctrl_c_left_to_parent():
        return _run_slot(job)


def _run_slot(job: SlotJob) -> SlotReport:
    slot, config = job.slot, job.config
    configure_process(slot)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=config.study, storage=open_storage(job.storage),
                              sampler=make_sampler(config, slot.index),
                              pruner=make_pruner(config))
    report = SlotReport(slot)
    started = time.perf_counter()
    data = split_to_device(job.arrays, config.validation_size, config.seed, slot.device)
    report.data_seconds = time.perf_counter() - started
    stop = Path(job.stop_file)

    failures_in_a_row = 0
    while not stop.exists():
        with claim_lock(job.storage, config.study):
            if counted_trials(study) >= config.trials:
                break
            trial = study.ask()
            mark_running(trial, slot.index, slot.device)

        def on_epoch(epoch: int, val_accuracy: float, trial: optuna.Trial = trial) -> bool:
            trial.report(val_accuracy, epoch)
            heartbeat(trial)
            if stop.exists():
                raise StopRequested
            return trial.should_prune()

        try:
            spec = trial_spec(trial, config)
            record_data_sizes(trial, data, spec.batch_size)
            result = train_trial(spec, data, on_epoch)
        except StopRequested:
            trial.set_user_attr("reason", "interrupted (Ctrl-C); re-queued")
            study.tell(trial, state=TrialState.FAIL)
            requeue(study, trial)
            report.interrupted = True
            break
        except Exception as err:  # a bug or a device error: keep its trace with the trial
            trial.set_user_attr("reason", f"error: {err!r}")
            trial.set_user_attr("traceback", traceback.format_exc())
            study.tell(trial, state=TrialState.FAIL)
            report.failed += 1
            failures_in_a_row += 1
            if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                raise RuntimeError(f"slot {slot.index} ({slot.device}): {failures_in_a_row} "
                                   f"trials in a row failed; last: {err!r}") from err
            continue

        failures_in_a_row = 0
        record_result(trial, result)
        report.trials += 1
        report.train_seconds += result.train_seconds
        if result.status == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, result.val_accuracy)
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return report

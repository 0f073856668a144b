"""Run a sweep: open the study, start one joblib process per slot, watch progress.

The parent does the checks that should fail fast and once (devices, data, the
study's setup), recovers trials that dead workers left RUNNING, then lets the slots
work while it draws a progress bar from the storage. Ctrl-C asks every slot to stop
at its next epoch; finished trials are already in the storage, the interrupted ones
are re-queued for the next run.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import optuna
from optuna.trial import TrialState

from lrbench import data
from lrbench.config import SweepConfig
from lrbench.devices import Slot, plan_slots
from lrbench.engine.choice import resolve_engine
from lrbench.storage import claim_lock, open_storage, storage_location
from lrbench.study import counted_trials, open_study, recover_stale_trials
from lrbench.worker import SlotJob, SlotReport, run_slot


@dataclass
class StudySnapshot:
    """A snapshot of the study, as the progress bar shows it."""

    finished: int
    running: int
    best: float | None


@dataclass
class SweepOutcome:
    study: optuna.Study  # already synced with the storage: read results from it directly
    storage: str
    slots: list[Slot]
    finished: int
    target: int
    recovered: list[int] = field(default_factory=list)  # trials re-queued from dead workers
    interrupted: bool = False
    wall_seconds: float = 0.0
    reports: list[SlotReport] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def train_seconds(self) -> float:
        return sum(r.train_seconds for r in self.reports)


def snapshot(study: optuna.Study) -> StudySnapshot:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return StudySnapshot(finished=len(done),
                    running=sum(t.state == TrialState.RUNNING for t in trials),
                    best=max(complete) if complete else None)


def run_sweep(config: SweepConfig, *, results_dir: str | Path = "results",
              storage: str | None = None, data_dir: str | None = None, device: str = "auto",
              workers: int | None = None, engine: str = "auto", batch_trials: int | None = None,
              tf32: bool = False,
              on_progress: Callable[[StudySnapshot], None] | None = None) -> SweepOutcome:
    """Train the sweep's trials on worker slots until the study holds ``config.trials``.

    ``engine``: "sequential", "batched" or "auto" (per slot: lrbench.engine.choice);
    ``batch_trials``: K for the batched engine, None to size it per slot; ``tf32``: TF32
    matmuls in batched GPU slots.
    """
    started = time.perf_counter()
    slots = plan_slots(device, workers)
    # Fail here, once, on a missing data set or a bad validation size, not in N workers.
    arrays = data.load_arrays(config.dataset, data_dir)
    data.validation_count(config.validation_size, len(arrays.train_labels))
    location = storage_location(storage, results_dir)
    study = open_study(config, open_storage(location))
    outcome = SweepOutcome(study, location, slots, 0, config.trials,
                           recovered=_recover(study, location))
    if counted_trials(study) < config.trials:
        stop_file = Path(results_dir) / f".stop-{uuid.uuid4().hex}"
        jobs = [SlotJob(slot, config, location, arrays, str(stop_file),
                        resolve_engine(engine, slot), batch_trials, _peers(slot, slots), tf32)
                for slot in slots]
        _run_slots(jobs, study, stop_file, outcome, on_progress)
        outcome.recovered += _recover(study, location)  # a slot that died mid-trial
    outcome.finished = snapshot(study).finished
    outcome.wall_seconds = time.perf_counter() - started
    return outcome


def _peers(slot: Slot, slots: list[Slot]) -> int:
    """Slots on the same kind of device: the ones this slot shares the trials with when
    sizing K. A GPU slot trains ~100x a CPU slot, so counting the CPU slots would leave
    it a CPU-sized share."""
    return sum(s.device.startswith("cuda") == slot.device.startswith("cuda") for s in slots)


def _recover(study: optuna.Study, location: str) -> list[int]:
    # Under the claim lock: a slot of another sweep between ask and mark_running must not
    # look dead to us.
    with claim_lock(location, study.study_name):
        return recover_stale_trials(study)


def _run_slots(jobs: list[SlotJob], study: optuna.Study, stop_file: Path,
               outcome: SweepOutcome, on_progress: Callable[[StudySnapshot], None] | None) -> None:
    """Run the slots in loky processes from a thread, so this thread can draw progress."""

    finished = threading.Event()

    def work() -> None:
        try:
            outcome.reports = list(joblib.Parallel(n_jobs=len(jobs), backend="loky")(
                joblib.delayed(run_slot)(job) for job in jobs))
        except BaseException as err:  # reported by the caller; the thread must not die silently
            outcome.error = err
        finally:
            finished.set()

    # Wait on an Event, not Thread.join: before Python 3.13 a join interrupted by Ctrl-C
    # can mark the thread finished, and the next join returns while the slots still run.
    threading.Thread(target=work, name="lrbench-slots", daemon=True).start()
    try:
        while not finished.wait(timeout=0.5):
            if on_progress is not None:
                on_progress(snapshot(study))
    except KeyboardInterrupt:
        outcome.interrupted = True
        stop_file.parent.mkdir(parents=True, exist_ok=True)
        stop_file.touch()  # every slot stops at its next epoch and re-queues its trial
        finished.wait()  # a second Ctrl-C leaves the file, so orphaned workers still stop
    stop_file.unlink(missing_ok=True)
    if on_progress is not None:
        on_progress(snapshot(study))
    outcome.interrupted |= any(r.interrupted for r in outcome.reports)

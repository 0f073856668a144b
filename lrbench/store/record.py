"""A trial's record in the study: the one module that writes and reads it.

A trial carries three typed records, each one user attribute holding a JSON object:

- ``Plan`` (``lrbench_plan``), written when the trial is queued: what a queued trial
  trains beyond its Optuna params (a fixed trial's LR and epochs, a confirm run's or a
  re-queued trial's seeds);
- ``Claim`` (``lrbench_claim``), written when a slot starts it: who runs it (liveness, for
  recovering a dead worker's trial) and the seeds it trains with; rewritten as a heartbeat;
- ``TrialRecord`` (``lrbench_record``), written when it ends: everything the report needs,
  curves included.

So a trial costs its claim when it starts and one write when it ends: the record, the
per-epoch validation accuracies as Optuna intermediate values (where optuna-dashboard
and Optuna's pruners look for them) and the final state, appended to a journal as one
locked write (``batched_writes``).

Storages written before these records existed held ~35 loose attributes; the readers
here still read them (tests/data/release-995747e.journal).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from lrbench.store.schema import FAMILY_PARAM
from lrbench.train.trial import CURVE_KEYS, TrialResult, TrialSpec

PLAN_ATTR = "lrbench_plan"
CLAIM_ATTR = "lrbench_claim"
RECORD_ATTR = "lrbench_record"
# Short scalar copies of the record, for tools that sort by attributes (scalar_attrs)
FAMILY_ATTR = "family"
TEST_ACCURACY_ATTR = "test_accuracy"

AnyTrial = optuna.Trial | FrozenTrial
Cell = tuple[str, int]  # a compare-protocol trial's (family, repeat): lrbench.sweep.protocol


@dataclass(frozen=True)
class Plan:
    """What a queued trial trains beyond its params; all None for a sampled trial."""

    epochs: int | None = None  # a fixed trial's own epochs
    fixed_lr: float | None = None  # a fixed trial's LR when the sweep does not search LR
    fixed_warmup_epochs: int | None = None  # likewise its warm-up
    seed: int | None = None  # a confirm run's or re-queued trial's init seed
    data_seed: int | None = None  # ... and its batch-order seed
    confirm_of: int | None = None  # a confirm run: the search trial it re-runs
    confirm_index: int | None = None  # ... and which of its seeds
    requeued_from: int | None = None  # a re-queued trial: the one that was interrupted
    repeat: int | None = None  # compare protocol: which repeat of the tuning it belongs to

    def training(self) -> dict[str, Any]:
        """The plan's part of a configuration (what changes the trained model, not who)."""
        return {k: v for k, v in (("fixed_lr", self.fixed_lr),
                                  ("fixed_warmup_epochs", self.fixed_warmup_epochs))
                if v is not None}


@dataclass(frozen=True)
class Claim:
    """Who runs a trial, and the seeds it trains with: written when a slot starts it."""

    host: str
    pid: int
    pid_started: float  # the process's start time: a reused pid is another process
    slot: int
    device: str
    seed: int
    data_seed: int
    sampler_seed: int | None = None  # the slot sampler's seed that proposed it
    heartbeat: float = 0.0  # time.time() of the last sign of life
    worker: str = ""  # the Dask worker's address, on a cluster


@dataclass
class TrialRecord:
    """A finished (or failed) trial, as the report reads it."""

    status: str  # "complete", "pruned", "diverged" or "failed"
    family: str = ""
    reason: str = ""  # why it diverged, was pruned or failed
    seed: int | None = None
    data_seed: int | None = None
    data_offset: int = 0  # batch-order epochs skipped: the stack epoch it joined at
    epochs: int | None = None  # planned
    epochs_run: int = 0
    val_accuracy: float = math.nan  # the last epoch's
    test_accuracy: float = math.nan
    test_loss: float = math.nan
    train_seconds: float = math.nan
    device: str = ""
    engine: str = "sequential"
    batch_trials: int = 1  # trials in its stack when it joined
    tf32: bool = False
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    data_fingerprint: str = ""  # lrbench.train.data.fingerprint of what it trained on
    steps_per_epoch: int | None = None
    curves: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in CURVE_KEYS})
    traceback: str = ""

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"


# --- reading ---


def _fields(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def plan_of(trial: AnyTrial) -> Plan:
    attrs = trial.user_attrs
    if PLAN_ATTR in attrs:
        return Plan(**_fields(Plan, attrs[PLAN_ATTR]))
    # before the records: loose keys, a queued trial's seeds under *_override (a loose
    # "seed" was the seed it trained with, not a plan)
    legacy = {**attrs, "seed": attrs.get("seed_override"),
              "data_seed": attrs.get("data_seed_override")}
    return Plan(**_fields(Plan, legacy))


def cell_of(trial: AnyTrial) -> Cell | None:
    """The trial's (family, repeat) under the compare protocol; None for any other trial."""
    repeat = plan_of(trial).repeat
    if repeat is None:
        return None
    family = trial.params.get(FAMILY_PARAM)
    if family is None:  # asked, not yet sampled: its family was queued as a fixed param
        family = trial.system_attrs.get("fixed_params", {}).get(FAMILY_PARAM)
    return (str(family), int(repeat)) if family is not None else None


def claim_of(trial: AnyTrial) -> Claim | None:
    attrs = trial.user_attrs
    if CLAIM_ATTR in attrs:
        return Claim(**_fields(Claim, attrs[CLAIM_ATTR]))
    if "host" not in attrs:
        return None
    return Claim(host=attrs["host"], pid=attrs.get("pid", -1),
                 pid_started=attrs.get("pid_started", 0.0), slot=attrs.get("slot", -1),
                 device=attrs.get("device", ""), seed=attrs.get("seed", -1),
                 data_seed=attrs.get("data_seed", attrs.get("seed", -1)),
                 sampler_seed=attrs.get("sampler_seed"), heartbeat=attrs.get("heartbeat", 0.0))


def record_of(trial: AnyTrial) -> TrialRecord | None:
    """The trial's record; None while it runs (or if it never ended with one)."""
    attrs = trial.user_attrs
    if RECORD_ATTR in attrs:
        return TrialRecord(**_fields(TrialRecord, attrs[RECORD_ATTR]))
    if "status" not in attrs and "reason" not in attrs:
        return None
    # before the records: loose keys written while the trial ran and when it ended
    legacy = _fields(TrialRecord, attrs)
    legacy.setdefault("status", "failed")
    legacy.setdefault("data_seed", attrs.get("seed"))
    legacy.setdefault("curves", {k: [] for k in CURVE_KEYS})
    return TrialRecord(**legacy)


def trained_seeds(trial: AnyTrial) -> tuple[int, int] | None:
    """The (seed, data_seed) the trial trained with, from its record or its claim."""
    record = record_of(trial)
    if record is not None and record.seed is not None:
        return record.seed, record.data_seed if record.data_seed is not None else record.seed
    claim = claim_of(trial)
    if claim is not None and claim.seed >= 0:
        return claim.seed, claim.data_seed
    return None


# --- writing ---


def plan_attrs(plan: Plan) -> dict[str, Any]:
    """The user attributes that queue a trial with ``plan`` (``enqueue_trial``)."""
    values = {k: v for k, v in dataclasses.asdict(plan).items() if v is not None}
    return {PLAN_ATTR: values} if values else {}


def step_of(epoch_index: int) -> int:
    """Optuna's step for a trial's epoch (0-based index): its epoch number, 1-based, as the
    page and the curves count epochs (studies before 2026-12 stored the index)."""
    return epoch_index + 1


def write_claim(trial: optuna.Trial, claim: Claim) -> None:
    trial.set_user_attr(CLAIM_ATTR, dataclasses.asdict(claim))


def beat(trial: optuna.Trial, claim: Claim) -> Claim:
    """Rewrite the claim with a fresh heartbeat; the new claim."""
    claim = dataclasses.replace(claim, heartbeat=time.time())
    write_claim(trial, claim)
    return claim


def write_end(study: optuna.Study, trial_id: int, record: TrialRecord,
              state: TrialState) -> None:
    """End a trial: its intermediate values, its record, its state, in that order.

    Written straight to the storage, not through ``study.tell``: tell reads the trial
    back first, which would break a batch of buffered writes (``batched_writes``). The
    value is what tell would store: the last epoch's validation accuracy for a complete
    trial, the last intermediate value for a pruned one, none for a failed one.
    """
    storage = study._storage
    accuracies = record.curves.get("val_accuracy", [])
    for index, value in enumerate(accuracies):
        storage.set_trial_intermediate_value(trial_id, step_of(index), float(value))
    write_record(study, trial_id, record)
    # Short scalar copies, for tools that show or sort attributes and cut long ones
    # (optuna-dashboard cuts at 1,024 characters, mid-record): same batch of writes.
    for key, value in scalar_attrs(record).items():
        storage.set_trial_user_attr(trial_id, key, value)
    values = None
    if state == TrialState.COMPLETE:
        values = [float(record.val_accuracy)]
    elif state == TrialState.PRUNED and accuracies and math.isfinite(accuracies[-1]):
        values = [float(accuracies[-1])]
    storage.set_trial_state_values(trial_id, state, values)


def scalar_attrs(record: TrialRecord) -> dict[str, Any]:
    """The record's scalar user attributes: its family and test accuracy."""
    attrs: dict[str, Any] = {FAMILY_ATTR: record.family}
    if math.isfinite(record.test_accuracy):
        attrs[TEST_ACCURACY_ATTR] = float(record.test_accuracy)
    return attrs


def finished_record(spec: TrialSpec, result: TrialResult, **context: Any) -> TrialRecord:
    """A trained trial's record: its spec's seeds and epochs, the engine's result, and
    ``context`` (device, engine, batch_trials, tf32, the data's sizes)."""
    return TrialRecord(
        status=result.status, family=spec.schedule.family, reason=result.reason,
        seed=spec.seed, data_seed=result.data_seed, data_offset=result.data_offset,
        epochs=spec.epochs, epochs_run=result.epochs_run, val_accuracy=result.val_accuracy,
        test_accuracy=result.test_accuracy, test_loss=result.test_loss,
        train_seconds=result.train_seconds, curves=result.curves, **context)


def failed_record(trial: AnyTrial, reason: str, traceback: str = "") -> TrialRecord:
    """The record of a trial that ended without a result."""
    seeds = trained_seeds(trial)
    claim = claim_of(trial)
    return TrialRecord(
        status="failed", family=trial.params.get(FAMILY_PARAM, ""), reason=reason,
        seed=seeds[0] if seeds else None, data_seed=seeds[1] if seeds else None,
        device=claim.device if claim else "", traceback=traceback)


def write_record(study: optuna.Study, trial_id: int, record: TrialRecord) -> None:
    """Write a trial's record, whoever runs it (Optuna's Trial writes only its own)."""
    study._storage.set_trial_user_attr(trial_id, RECORD_ATTR, dataclasses.asdict(record))


@contextlib.contextmanager
def batched_writes(storage: BaseStorage) -> Iterator[None]:
    """Within this block, a journal's appends go out as one write at the end: one locked
    write to a file, one round trip to Redis (``journal.BatchedAppends``).

    Only writes whose caller needs nothing back belong here (params, attributes,
    intermediate values, states): nothing written inside is visible to reads inside.
    If the block raises, nothing of it is written. Other storages write as they go.
    """
    backend = getattr(storage, "_backend", None)
    batch = getattr(backend, "batch", None)
    if batch is None:
        yield
        return
    with batch():
        yield

"""Tests for lrbench.sweep.slot: one slot's loops (sequential and batched), run in this
process against a journal on the real MNIST sample."""

from __future__ import annotations

import dataclasses
import socket
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from conftest import DATA, require_mnist
from optuna.trial import TrialState
from test_study import write_sweep

from lrbench.errors import StorageError
from lrbench.store import claims, record
from lrbench.store.storage import open_storage
from lrbench.sweep import slot as worker
from lrbench.sweep import study as st
from lrbench.sweep.devices import Slot
from lrbench.sweep.processes import lifeline
from lrbench.sweep.slot import run_slot
from lrbench.sweep.slot_job import SlotJob
from lrbench.train.data import load_arrays

optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- run_slot, in this process -----------------------------------------------------------


@pytest.fixture
def slot_job(tmp_path: Path):
    """A 2-trial, 1-epoch sweep on the real sample; restores what run_slot sets globally."""
    require_mnist()
    config = write_sweep(tmp_path, name="slot", trials=2, seed=0, epochs=1,
                         families='["step", "constant"]', validation_size="0.2")
    journal = str(tmp_path / "results" / "lrbench.journal")
    st.open_study(config, open_storage(journal))
    threads, verbosity = torch.get_num_threads(), optuna.logging.get_verbosity()
    arrays = load_arrays("mnist", DATA)
    yield SlotJob(Slot(0, "cpu", 1), config, journal, arrays)
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(verbosity)
    lifeline.reset()


def stored(job: SlotJob) -> optuna.Study:
    return optuna.load_study(study_name=job.config.study, storage=open_storage(job.storage))


def test_run_slot_runs_the_sweeps_trials(slot_job: SlotJob):
    report = run_slot(slot_job)
    assert (report.trials, report.failed, report.interrupted) == (2, 0, False)
    assert report.train_seconds > 0 and report.data_seconds >= 0
    trials = stored(slot_job).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        rec, claim = record.record_of(trial), record.claim_of(trial)
        assert rec.seed == st.trial_seeds(trial, slot_job.config)[0] == claim.seed
        assert rec.data_seed == slot_job.config.seed == claim.data_seed
        assert rec.status == "complete" and rec.diverged is False
        assert rec.curves["epoch"] == [1] and rec.epochs_run == 1
        assert set(rec.curves) == {"epoch", "lr", "train_loss", "val_loss",
                                   "val_accuracy", "seconds"}
        assert 0.5 < rec.test_accuracy <= 1  # 4,000 images, 1 epoch: ~0.85
        assert trial.value == rec.val_accuracy
        assert trial.intermediate_values == {1: rec.val_accuracy}  # steps are epoch numbers
        assert claim.host == socket.gethostname() and rec.device == claim.device == "cpu"
    # the sweep is full: another slot joining now runs nothing
    assert run_slot(slot_job).trials == 0


def batched_job(slot_job: SlotJob, tmp_path: Path, *, trials: int, epochs: int) -> SlotJob:
    """``slot_job``'s data and storage, for a new study trained in stacks of 4."""
    config = write_sweep(tmp_path, name=f"stacked-{trials}", trials=trials, seed=0,
                         epochs=epochs, families='["step", "constant"]', validation_size="0.2")
    st.open_study(config, open_storage(slot_job.storage))
    return dataclasses.replace(slot_job, config=config, engine="batched", batch_trials=4)


def stacks_raise(monkeypatch, when, error: Exception) -> None:  # type: ignore[no-untyped-def]
    """Every stack for which ``when(stack)`` holds raises ``error`` at its epoch."""
    trained = worker.Stack.run_epoch

    def run_epoch(self, decide, while_training=None):  # type: ignore[no-untyped-def]
        if when(self):
            raise error
        return trained(self, decide, while_training)

    monkeypatch.setattr(worker.Stack, "run_epoch", run_epoch)


def test_a_trial_that_raises_in_a_stack_fails_alone(slot_job: SlotJob, tmp_path: Path,
                                                     monkeypatch):
    """Before: one trial's error (REX with beta = 1 divided 0 by 0) failed its healthy
    stack-mates too. Now the stack's trials start again alone: only the one that raises
    alone fails, with its own error; the others complete (and a fifth trial is asked in
    place of the failed one, which does not count)."""
    job = batched_job(slot_job, tmp_path, trials=4, epochs=2)
    bad = 2  # the trial whose schedule raises, in any stack it trains in
    stacks_raise(monkeypatch, lambda stack: bad in stack.keys(),
                 ZeroDivisionError("float division by zero"))
    report = run_slot(job)
    assert (report.trials, report.failed) == (4, 1)
    trials = stored(job).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE,
                                         TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert "ZeroDivisionError" in record.record_of(trials[bad]).reason
    for trial in trials[:4]:
        if trial.number != bad:  # retried alone, from its first epoch, to the end
            rec = record.record_of(trial)
            assert rec.batch_trials == 1 and rec.curves["epoch"] == [1, 2]


def test_out_of_memory_in_a_stack_retries_the_same_trials_smaller(
        slot_job: SlotJob, tmp_path: Path, monkeypatch, caplog):
    """Before: every stack that ran out of memory failed its trials, and the slot asked new
    ones (a 6-trial study ended with 18 failed). Now the same trials train again, alone,
    and the slot stacks half as many from then on: nothing fails."""
    job = batched_job(slot_job, tmp_path, trials=6, epochs=1)
    stacks_raise(monkeypatch, lambda stack: len(stack) > 2,  # what this "device" holds
                 RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    report = run_slot(job)
    assert (report.trials, report.failed) == (6, 0)
    trials = stored(job).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6  # no trial asked twice
    assert "it now stacks at most 2 trials" in caplog.text
    assert max(record.record_of(t).batch_trials for t in trials[4:]) <= 2


def test_a_trial_recovered_by_another_process_while_asked_is_skipped(
        slot_job: SlotJob, tmp_path: Path, monkeypatch):
    """A PostgreSQL restart mid-ask drops the claim lock with its session; the parent then
    takes the unmarked trial for a dead asker's, fails it and re-queues its configuration.
    Before: the asker's next write raised UpdateFinishedTrialError, and the sweep ended
    with a traceback. Now the slot skips it, and the re-queued configuration is trained.
    (On an RDB storage, as PostgreSQL is: SQLite here; each call writes at once.)"""
    slot_job = dataclasses.replace(slot_job, storage=f"sqlite:///{tmp_path / 'studies.db'}")
    st.open_study(slot_job.config, open_storage(slot_job.storage))
    asked = worker.trial_spec
    recovered: list[int] = []

    def trial_spec(trial, config):  # type: ignore[no-untyped-def]
        if not recovered:
            monkeypatch.setattr(claims, "UNMARKED_AFTER_SECONDS", 0.0)
            elsewhere = optuna.load_study(study_name=config.study,
                                          storage=open_storage(slot_job.storage))
            recovered.extend(claims.recover_stale_trials(elsewhere))
            monkeypatch.setattr(claims, "UNMARKED_AFTER_SECONDS", 2.0)
        return asked(trial, config)

    monkeypatch.setattr(worker, "trial_spec", trial_spec)
    report = run_slot(slot_job)
    assert recovered == [0]
    assert report.trials == 2 and report.failed == 0
    trials = stored(slot_job).trials
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 2, TrialState.FAIL: 1}
    assert record.plan_of(trials[1]).requeued_from == 0  # its configuration, trained


def test_a_slot_starting_after_the_journal_was_moved_says_so_and_makes_no_new_one(
        slot_job: SlotJob):
    """It once made an empty journal where the moved one had been, and the other slots
    then called theirs replaced."""
    moved = Path(slot_job.storage).with_name("moved.journal")
    Path(slot_job.storage).rename(moved)
    with pytest.raises(StorageError, match="was deleted or moved mid-sweep"):
        run_slot(slot_job)
    assert not Path(slot_job.storage).exists()


def test_run_slot_asked_to_stop_runs_nothing(slot_job: SlotJob):
    lifeline.request_stop()
    report = run_slot(slot_job)
    assert (report.trials, report.failed) == (0, 0)
    assert stored(slot_job).trials == []


def test_stop_during_a_trial_fails_and_requeues_it(slot_job: SlotJob, monkeypatch):
    """Ctrl-C mid-trial: the trial is FAIL (not lost as RUNNING) and its config re-queued."""
    def stopped_in_epoch_1(spec, data, on_epoch):
        lifeline.request_stop()
        on_epoch(0, 0.5)
        raise AssertionError("on_epoch should have raised StopRequested")

    monkeypatch.setattr(worker, "train_trial", stopped_in_epoch_1)
    report = run_slot(slot_job)
    assert report.interrupted and report.trials == 0
    study = stored(slot_job)
    first, queued = study.trials
    assert first.state == TrialState.FAIL
    assert "interrupted" in record.record_of(first).reason
    assert queued.state == TrialState.WAITING
    assert queued.system_attrs["fixed_params"] == first.params
    plan = record.plan_of(queued)
    assert plan.requeued_from == first.number
    assert (plan.seed, plan.data_seed) == record.trained_seeds(first)  # its seeds too
    assert st.trial_seeds(queued, slot_job.config) == record.trained_seeds(first)


def test_slot_stops_after_repeated_errors(slot_job: SlotJob, monkeypatch):
    """A trainer that always raises is a bug: stop the slot, keep each trace with its trial."""
    def broken(spec, data, on_epoch):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(worker, "train_trial", broken)
    with pytest.raises(RuntimeError, match="3 trials in a row failed"):
        run_slot(slot_job)
    trials = stored(slot_job).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * worker.MAX_FAILURES_IN_A_ROW
    for trial in trials:
        assert "boom" in record.record_of(trial).reason
        assert "ZeroDivisionError" in record.record_of(trial).traceback


def test_batched_slot_fails_every_trial_of_a_broken_batch(slot_job: SlotJob, monkeypatch):
    def broken(self, decide=None, while_training=None):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(worker.Stack, "run_epoch", broken)
    job = dataclasses.replace(slot_job, engine="batched", batch_trials=2)
    with pytest.raises(worker.TooManyFailures, match="3 trials in a row failed"):
        run_slot(job)
    # Each stack's trials were retried alone (a stack-mate may be healthy), and each
    # failed alone with its own error: 3 in a row stop the slot. The trial it still held
    # is failed as released and queued again: nothing is left RUNNING, nothing lost.
    trials = stored(job).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    raised = [t for t in failed if "ZeroDivisionError" in (record.record_of(t).traceback
                                                           or "")]
    assert len(raised) == worker.MAX_FAILURES_IN_A_ROW
    released = [t for t in failed if t not in raised]
    assert released and all("its slot stopped" in record.record_of(t).reason
                            for t in released)
    assert Counter(t.state for t in trials)[TrialState.WAITING] == len(released)
    assert Counter(t.state for t in trials)[TrialState.RUNNING] == 0


def test_batched_slot_trains_and_tells_each_trial(slot_job: SlotJob):
    job = dataclasses.replace(slot_job, engine="batched", batch_trials=2)
    report = run_slot(job)
    trials = stored(job).trials
    assert report.trials == 2 and report.batch_trials == 2
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    records = [record.record_of(t) for t in trials]
    assert {r.data_seed for r in records} == {job.config.seed}  # one batch order
    assert all(r.engine == "batched" and r.batch_trials == 2 for r in records)


@pytest.mark.slow
@pytest.mark.parametrize("pruner, ask_ahead", [("median", False), ("hyperband", False),
                                               ("median", True)])
def test_a_batched_slot_prunes_and_refills_with_either_pruner(tmp_path: Path, pruner: str,
                                                              ask_ahead: bool, monkeypatch):
    """Either pruner's rule runs inside the stack. Each trial ends with its curve as
    intermediate values, once, and a pruned trial stopped where its record says; with
    hyperband, a pruned trial recorded the rung it lost at, in Optuna's own attribute.
    Freed places are refilled: 10 trials through K = 4, one of them a fixed 2-epoch
    trial whose place is free after epoch 2. With ask_ahead, the queue is topped up
    inside each epoch, as on a GPU slot."""
    monkeypatch.setattr(worker, "asks_while_training", lambda slot: ask_ahead)
    require_mnist()
    seed = 0 if pruner == "median" else 2  # seeds whose sweeps prune 3 and 5 trials here
    config = write_sweep(tmp_path, name="p", trials=10, seed=seed, epochs=4, pruner=pruner,
                         families='["step", "constant"]', validation_size="0.2",
                         extra='[[fixed]]\nschedule = "constant"\nepochs = 2\n')
    journal = str(tmp_path / "results" / "lrbench.journal")
    st.open_study(config, open_storage(journal))
    threads = torch.get_num_threads()
    try:
        job = SlotJob(Slot(0, "cpu", 1), config, journal, load_arrays("mnist", DATA),
                      engine="batched", batch_trials=4)
        report = run_slot(job)
    finally:
        torch.set_num_threads(threads)
        lifeline.reset()
    trials = stored(job).trials
    assert report.trials == 10 == len(trials)
    offsets = set()
    for trial in trials:
        rec = record.record_of(trial)
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert (trial.state == TrialState.PRUNED) == (rec.status == "pruned")
        assert list(trial.intermediate_values) == list(range(1, rec.epochs_run + 1))
        assert list(trial.intermediate_values.values()) == rec.curves["val_accuracy"]
        if rec.status == "complete":
            assert rec.epochs_run == rec.epochs == (2 if trial.number == 0 else 4)
        else:  # median: not before step epochs // 2 = 2, so after epoch 3 at the earliest
            assert (3 if pruner == "median" else 1) <= rec.epochs_run < 4
        rungs = [value for key, value in trial.system_attrs.items()
                 if key.startswith("completed_rung_")]
        assert set(rungs) <= set(rec.curves["val_accuracy"])
        if pruner == "hyperband" and rec.status == "pruned":
            assert rungs[-1] == rec.curves["val_accuracy"][-1]  # lost at its last rung
        assert rec.batch_trials <= 4
        offsets.add(rec.data_offset)
    assert len(offsets) > 1  # later trials joined running stacks
    assert any(t.state == TrialState.PRUNED for t in trials)

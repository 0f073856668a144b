"""Tests for lrbench.store.record: one typed record per trial, written in few storage operations.

``tests/data/release-995747e.journal`` was written by the release before the records
(commit 995747e: ``lrbench sweep`` of ``release-995747e.toml`` and ``confirm --seeds 2``,
on a 500-image MNIST root). Its ``.trials.csv`` / ``.epochs.csv`` are that release's own
report tables of it: the new readers must give the same tables.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from lrbench.report import frames
from lrbench.store import record
from lrbench.store.journal import SafeJournalBackend
from lrbench.store.record import Claim, Plan, TrialRecord
from lrbench.store.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
DATA = Path(__file__).resolve().parents[1] / "data"
RELEASE = "release-995747e"


@pytest.fixture
def release_journal(tmp_path: Path) -> Path:
    path = tmp_path / "lrbench.journal"
    shutil.copy(DATA / f"{RELEASE}.journal", path)
    return path


def test_a_storage_of_the_previous_release_gives_that_releases_report_tables(release_journal):
    loaded = frames.load(str(release_journal))
    for name, frame in (("trials", loaded.trials), ("epochs", loaded.epochs)):
        folder = release_journal.parent / name
        folder.mkdir()
        frame.to_csv(folder / "t.csv", index=False)
        ours = pd.read_csv(folder / "t.csv")
        theirs = pd.read_csv(DATA / f"{RELEASE}.{name}.csv")
        assert set(theirs.columns) <= set(ours.columns)  # columns added since, none lost
        pd.testing.assert_frame_equal(ours[theirs.columns], theirs)
    assert len(loaded.trials) == 14 and set(loaded.trials["status"]) == {"complete", "pruned"}


def test_legacy_loose_attributes_read_as_records(release_journal):
    storage = open_storage(str(release_journal), create=False)
    search = optuna.load_study(study_name="frozen", storage=storage).trials
    confirm = optuna.load_study(study_name="frozen:confirm", storage=storage).trials
    first = record.record_of(search[0])
    assert first is not None and first.status == "complete" and first.family == "step"
    assert first.epochs_run == 4 == len(first.curves["epoch"])
    assert first.val_accuracy == search[0].value
    # (it recorded every trial's epochs; its LR was searched, not fixed)
    assert record.plan_of(search[0]) == Plan(epochs=4)
    claim = record.claim_of(search[0])
    assert claim is not None and claim.pid > 0 and claim.seed == first.seed
    run = record.plan_of(confirm[0])
    assert run.confirm_of is not None and run.confirm_index == 0 and run.seed is not None
    assert record.trained_seeds(confirm[0]) == (run.seed, run.data_seed)


def test_records_round_trip_through_a_journal(tmp_path: Path):
    storage = open_storage(str(tmp_path / "j.journal"))
    study = optuna.create_study(storage=storage, direction="maximize")
    plan = Plan(epochs=3, fixed_lr=0.2, seed=5, data_seed=6, confirm_of=1, confirm_index=0)
    study.enqueue_trial({"x": 1.0}, user_attrs=record.plan_attrs(plan))
    trial = study.ask()
    trial.suggest_float("x", 0, 2)
    claim = Claim("host", 1, 2.0, 0, "cpu", seed=5, data_seed=6)
    record.write_claim(trial, claim)
    curves = {"epoch": [1, 2], "lr": [0.2, 0.1], "train_loss": [1.0, math.nan],
              "val_loss": [0.5, 0.4], "val_accuracy": [0.7, 0.8], "seconds": [0.1, 0.2]}
    done = TrialRecord("complete", family="step", seed=5, data_seed=6, data_offset=2,
                       epochs=3, epochs_run=2, val_accuracy=0.8, test_accuracy=0.75,
                       test_loss=0.6, train_seconds=1.5, device="cpu", engine="batched",
                       batch_trials=4, train_size=10, val_size=2, test_size=3,
                       steps_per_epoch=1, curves=curves)
    record.write_end(study, trial._trial_id, done, TrialState.COMPLETE)
    reopened = optuna.load_study(study_name=study.study_name,
                                 storage=open_storage(str(tmp_path / "j.journal"))).trials[0]
    assert record.plan_of(reopened) == plan
    assert record.claim_of(reopened) == claim
    got = record.record_of(reopened)
    assert math.isnan(got.curves["train_loss"][1])
    got.curves["train_loss"][1] = curves["train_loss"][1] = 0.0
    assert got == done
    assert reopened.state == TrialState.COMPLETE and reopened.value == 0.8
    # the dashboard's and pruners' view, at the page's epoch numbers
    assert reopened.intermediate_values == {1: 0.7, 2: 0.8}
    # short scalars beside the record, for optuna-dashboard to show and sort by
    assert reopened.user_attrs["family"] == "step"
    assert reopened.user_attrs["test_accuracy"] == 0.75


def test_a_trials_end_is_one_journal_append(tmp_path: Path):
    """Record, every epoch's intermediate value and the state: one locked write."""
    path = tmp_path / "j.journal"
    storage = open_storage(str(path))
    study = optuna.create_study(storage=storage, direction="maximize")
    trials = [study.ask() for _ in range(3)]
    appends = []
    backend: SafeJournalBackend = storage._backend
    original = SafeJournalBackend.append_logs

    def counting(self, logs):
        if self._buffer is None:
            appends.append(len(logs))
        return original(self, logs)

    SafeJournalBackend.append_logs = counting
    try:
        curves = {"epoch": [1, 2, 3], "val_accuracy": [0.5, 0.6, 0.7]}
        with record.batched_writes(storage):
            for trial in trials:
                record.write_end(study, trial._trial_id,
                                 TrialRecord("complete", val_accuracy=0.7, curves=curves),
                                 TrialState.COMPLETE)
    finally:
        SafeJournalBackend.append_logs = original
    # one write: 3 trials x (3 values, record, its family as a scalar, state)
    assert appends == [3 * (3 + 1 + 1 + 1)]
    assert backend._buffer is None
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials())
    assert path.read_bytes().endswith(b"\n")


def test_a_batch_that_raises_writes_nothing(tmp_path: Path):
    path = tmp_path / "j.journal"
    storage = open_storage(str(path))
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    size = path.stat().st_size
    with pytest.raises(ZeroDivisionError), record.batched_writes(storage):
        trial.set_user_attr("a", 1)
        raise ZeroDivisionError
    assert path.stat().st_size == size
    reopened = optuna.load_study(study_name=study.study_name, storage=open_storage(str(path)))
    assert reopened.trials[0].user_attrs == {}


def test_a_record_with_every_field_set_comes_back_equal_from_a_journal(tmp_path: Path):
    """Every field survives the journal (JSON) and the reader, with no default standing
    in for a value: each one differs from its default here."""
    full = TrialRecord(
        status="pruned", family="step", reason="pruned at epoch 2", seed=7, data_seed=8,
        data_offset=1, epochs=5, epochs_run=2, val_accuracy=0.91, test_accuracy=0.9,
        test_loss=0.3, train_seconds=1.5, device="cuda:1", engine="batched",
        batch_trials=16, tf32=True, train_size=4500, val_size=500, test_size=10000,
        data_fingerprint="abc123", steps_per_epoch=45,
        curves={k: [0.5, 0.25] for k in TrialRecord("x").curves}, traceback="Traceback ...")
    default = TrialRecord("complete")
    assert all(getattr(full, f.name) != getattr(default, f.name)
               for f in dataclasses.fields(TrialRecord))
    path = str(tmp_path / "lrbench.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(path))
    trial = study.ask()
    record.write_record(study, trial._trial_id, full)
    reopened = optuna.load_study(study_name="s", storage=open_storage(path))
    assert record.record_of(reopened.trials[0]) == full


def test_a_study_of_the_previous_release_reopens_from_its_sweep_file(release_journal):
    """Its recorded setup still matches the file it was made from: new setup fields that
    the file does not use (a family's own LR range) must not count as a change."""
    from lrbench.sweep import config as config_module
    from lrbench.sweep.study import open_study

    config = config_module.load(DATA / f"{RELEASE}.toml")
    storage = open_storage(str(release_journal), create=False)
    study = open_study(config, storage)  # raises "already exists with a different setup"
    assert len(study.trials) == 8

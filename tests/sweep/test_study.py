"""Tests for lrbench.sweep.study (the Optuna side) and lrbench.sweep.slot.run_slot.

In-memory studies where one process is enough; a journal file in tmp_path where a second
process (a later sweep, a dead worker) is the point. Only the run_slot tests train, for
one epoch on the real MNIST sample.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import warnings
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from conftest import require_mnist
from optuna.trial import TrialState

from lrbench.errors import UserError
from lrbench.store import record, schema
from lrbench.store.record import Plan
from lrbench.store.storage import open_storage
from lrbench.sweep import seeds
from lrbench.sweep import slot as worker
from lrbench.sweep import study as st
from lrbench.sweep.config import SweepConfig, load
from lrbench.sweep.devices import Slot
from lrbench.sweep.processes import lifeline
from lrbench.sweep.sampling import BatchTPESampler
from lrbench.sweep.slot import SlotJob, run_slot
from lrbench.train.data import load_arrays

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write_sweep(tmp_path: Path, *, name: str = "t", trials: int = 10, seed: int = 7,
                sampler: str = "random", pruner: str = "none", epochs: int = 5,
                families: str = '["step", "plateau", "constant"]', search: str = "",
                extra: str = "", validation_size: str = "0.1") -> SweepConfig:
    """A sweep file in tmp_path, loaded as the CLI loads it. `search` is the body of
    [search]; `extra` is appended raw (family tables, [[fixed]] entries)."""
    text = f"""\
[study]
name = "{name}"
trials = {trials}
seed = {seed}
sampler = "{sampler}"
pruner = "{pruner}"

[data]
dataset = "mnist"
validation_size = {validation_size}

[train]
model = "fnn"
epochs = {epochs}
batch_size = 100

[optimizer]
name = "sgd"
lr = 0.1

[search]
{search}

[schedules]
families = {families}

{extra}
"""
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load(path)


def memory_study(sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    return optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="maximize",
                               sampler=sampler or optuna.samplers.RandomSampler(seed=0))


def expected_names(config: SweepConfig, family: str) -> set[str]:
    return {"schedule"} | {f"{family}.{name}" for name in config.space(family)}


def waiting(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def enqueued_params(study: optuna.Study) -> list[dict]:
    """What enqueue_trial stored: Optuna keeps it in system_attrs until the trial is asked."""
    return [t.system_attrs["fixed_params"] for t in waiting(study)]


# --- trial_spec: the conditional space ---------------------------------------------------


def test_trial_spec_samples_only_the_chosen_familys_parameters(tmp_path: Path):
    """A `gamma` of `step` must never show up in a `plateau` trial (and TPE's groups rely
    on each family's names being its own)."""
    config = write_sweep(tmp_path)
    study = memory_study()
    families = Counter()
    for _ in range(30):
        trial = study.ask()
        spec = st.trial_spec(trial, config)
        family = trial.params["schedule"]
        families[family] += 1
        assert set(trial.params) == expected_names(config, family)
        assert spec.schedule.family == family
        assert dict(spec.schedule.params) == {
            name: trial.params[f"{family}.{name}"] for name in config.space(family)}
        # not searched: the optimizer's lr, no warm-up
        assert spec.optimizer == config.optimizer
        assert spec.schedule.warmup_epochs == 0
        assert (spec.model, spec.epochs, spec.batch_size) == ("fnn", 5, 100)
        study.tell(trial, 0.5)
    assert set(families) == {"step", "plateau", "constant"}


def test_trial_spec_suggests_lr_and_warmup_when_searched(tmp_path: Path):
    config = write_sweep(tmp_path, search="lr = { low = 0.01, high = 0.5, log = true }\n"
                                          "warmup_epochs = { low = 0, high = 2 }")
    study = memory_study()
    for _ in range(10):
        trial = study.ask()
        spec = st.trial_spec(trial, config)
        family = trial.params["schedule"]
        assert set(trial.params) == expected_names(config, family) | {"lr", "warmup_epochs"}
        assert spec.optimizer.lr == trial.params["lr"] and 0.01 <= spec.optimizer.lr <= 0.5
        assert spec.schedule.warmup_epochs == trial.params["warmup_epochs"] in (0, 1, 2)
        assert spec.optimizer.momentum == config.optimizer.momentum
        study.tell(trial, 0.5)


def test_a_schedulefree_trial_gets_its_optimizer_form_beta_and_own_lr_range(tmp_path: Path):
    """`[schedules.schedulefree] lr` is that family's own LR range, searched as
    "schedulefree.lr"; the others keep the shared "lr"."""
    config = write_sweep(tmp_path, families='["schedulefree", "step"]', sampler="random",
                         search="lr = { low = 0.01, high = 0.5, log = true }",
                         extra="[schedules.schedulefree]\nlr = { low = 1.0, high = 5.0 }\n")
    study = memory_study()
    families = Counter()
    for _ in range(20):
        trial = study.ask()
        spec = st.trial_spec(trial, config)
        family = trial.params["schedule"]
        families[family] += 1
        if family == "schedulefree":
            assert "lr" not in trial.params
            assert spec.optimizer.lr == trial.params["schedulefree.lr"]
            assert 1.0 <= spec.optimizer.lr <= 5.0
            assert spec.optimizer.name == "sgd_schedulefree"
            assert spec.optimizer.momentum == trial.params["schedulefree.momentum"]
        else:
            assert "schedulefree.lr" not in trial.params
            assert 0.01 <= spec.optimizer.lr == trial.params["lr"] <= 0.5
            assert spec.optimizer == dataclasses.replace(config.optimizer, lr=spec.optimizer.lr)
        study.tell(trial, 0.5)
    assert set(families) == {"schedulefree", "step"}


def test_a_schedule_free_optimizer_makes_every_trial_schedule_free(tmp_path: Path):
    """`[optimizer] name = "sgd_schedulefree"`: whatever family a trial draws, it trains
    with schedule-free SGD, its beta the optimizer's momentum."""
    config = write_sweep(tmp_path, families='["constant", "cosine"]')
    config = dataclasses.replace(config, optimizer=dataclasses.replace(
        config.optimizer, name="sgd_schedulefree", momentum=0.95, lr=2.0))
    study = memory_study()
    for _ in range(6):
        trial = study.ask()
        spec = st.trial_spec(trial, config)
        assert (spec.optimizer.name, spec.optimizer.momentum, spec.optimizer.lr) == (
            "sgd_schedulefree", 0.95, 2.0)
        study.tell(trial, 0.5)


def test_trial_spec_seed_comes_from_base_seed_and_configuration(tmp_path: Path):
    """Distinct seeds per configuration, the same whatever the trial's number (which
    depends on which worker asked first); one shared batch order, the base seed's."""
    config = write_sweep(tmp_path, seed=7)
    study = memory_study()
    specs = []
    for number in range(3):
        trial = study.ask()
        spec = st.trial_spec(trial, config)
        assert trial.number == spec.number == number
        configuration = {**trial.params, "epochs": 5}
        assert spec.seed == seeds.trial_seed(7, configuration)
        assert spec.data_seed == 7
        assert spec.schedule.family == trial.params["schedule"]
        assert spec.epochs == 5
        specs.append((trial.params, spec.seed))
        study.tell(trial, 0.5)
    assert len({seed for _, seed in specs}) == 3
    # The same configuration asked again, as trial 3: the same seed.
    params, seed = specs[0]
    study.enqueue_trial(params)
    again = study.ask()
    assert again.number == 3 and st.trial_spec(again, config).seed == seed
    # Another base seed: other seeds.
    other = dataclasses.replace(config, seed=8)
    assert st.trial_spec(study.ask(), other).seed != seeds.trial_seed(7, {**params, "epochs": 5})


def test_queued_seeds_override_the_derived_ones(tmp_path: Path):
    """A re-queued trial carries its seeds; a confirm run brings fresh ones for both."""
    config = write_sweep(tmp_path, seed=7)
    study = memory_study()
    study.enqueue_trial({"schedule": "constant"}, user_attrs=record.plan_attrs(Plan(seed=11)))
    study.enqueue_trial({"schedule": "constant"},
                        user_attrs=record.plan_attrs(Plan(seed=11, data_seed=7)))
    first, second = study.ask(), study.ask()
    assert st.trial_seeds(first, config) == (11, 11)
    assert st.trial_seeds(second, config) == (11, 7)


def test_fixed_trial_epochs_and_lr_override_the_config(tmp_path: Path):
    """The tutorial's step runs are 5 epochs in a 10-epoch sweep, at their own LR."""
    fixed = '[[fixed]]\nschedule = "step"\nstep_size = 1\ngamma = 0.1\nepochs = 2\nlr = 0.05\n'
    config = write_sweep(tmp_path, extra=fixed)
    study = st.open_study(config, optuna.storages.InMemoryStorage())
    first = study.ask()
    spec = st.trial_spec(first, config)
    assert first.params == {"schedule": "step", "step.step_size": 1, "step.gamma": 0.1}
    assert record.plan_of(first).epochs == spec.epochs == 2
    assert spec.optimizer.lr == 0.05
    study.tell(first, 0.5)
    second = study.ask()
    spec = st.trial_spec(second, config)
    assert spec.epochs == config.epochs == 5
    assert spec.optimizer.lr == config.optimizer.lr


# --- open_study: create, reopen, refuse a changed setup ----------------------------------

FIXED_TWO = ('[[fixed]]\nschedule = "step"\nstep_size = 1\ngamma = 0.1\n'
             '[[fixed]]\nschedule = "plateau"\nfactor = 0.5\npatience = 0\n')


@pytest.fixture(params=["memory", "journal"])
def storage_factory(request, tmp_path: Path):
    """A fresh connection each call: the journal one is what a second `lrbench sweep` sees."""
    if request.param == "memory":
        shared = optuna.storages.InMemoryStorage()
        return lambda: shared
    return lambda: open_storage(str(tmp_path / "results" / "lrbench.journal"))


def test_open_study_stores_config_and_provenance(tmp_path: Path, storage_factory):
    config = write_sweep(tmp_path, extra=FIXED_TWO)
    study = st.open_study(config, storage_factory())
    attrs = study.user_attrs
    assert study.study_name == "t"
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert attrs[schema.CONFIG_ATTR] == json.loads(json.dumps(config.identity()))
    assert attrs["sweep_file"] == str(tmp_path / "t.toml")
    provenance = attrs["provenance"]
    assert provenance["lrbench"] and provenance["optuna"] == optuna.__version__
    assert provenance["torch"] == torch.__version__
    assert provenance["host"] == socket.gethostname()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert provenance["git_revision"] == (head.stdout.strip() if head.returncode == 0
                                          else "unknown")


def test_reopen_with_the_same_config_enqueues_nothing_new(tmp_path: Path, storage_factory):
    config = write_sweep(tmp_path, extra=FIXED_TWO)
    st.open_study(config, storage_factory())
    again = load(config.source)  # the same file read again, as a resumed sweep does
    study = st.open_study(again, storage_factory())
    assert len(study.trials) == 2
    assert enqueued_params(study) == [
        {"schedule": "step", "step.step_size": 1, "step.gamma": 0.1},
        {"schedule": "plateau", "plateau.factor": 0.5, "plateau.patience": 0},
    ]
    # more trials asked for is not a different setup: the count is not part of the identity
    st.open_study(again.with_overrides(trials=50), storage_factory())


def test_reopen_with_changed_epochs_is_refused(tmp_path: Path, storage_factory):
    config = write_sweep(tmp_path)
    st.open_study(config, storage_factory())
    with pytest.raises(UserError) as err:
        st.open_study(config.with_overrides(epochs=3), storage_factory())
    message = str(err.value)
    assert "epochs" in message and "--study" in message and "'t'" in message


def test_grid_enqueues_each_familys_own_product(tmp_path: Path):
    """A grid over a conditional space: step's and plateau's axes are never crossed."""
    config = write_sweep(
        tmp_path, sampler="grid", search="lr = [0.05, 0.1]",
        extra="[schedules.step]\nstep_size = [1, 2]\ngamma = [0.1, 0.5]\n"
              "[schedules.plateau]\nfactor = [0.1, 0.5]\npatience = { low = 0, high = 2 }\n")
    study = st.open_study(config, optuna.storages.InMemoryStorage())
    points = enqueued_params(study)
    by_family = Counter(p["schedule"] for p in points)
    # step 2 x 2 x lr 2 = 8; plateau 2 x 3 (0, 1, 2) x lr 2 = 12; constant: lr 2 = 2
    assert by_family == {"step": 8, "plateau": 12, "constant": 2}
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 22  # no duplicates
    for point in points:
        assert set(point) == expected_names(config, point["schedule"]) | {"lr"}
    assert {"schedule": "plateau", "plateau.factor": 0.5, "plateau.patience": 2,
            "lr": 0.1} in points
    assert {"schedule": "constant", "lr": 0.05} in points
    # the first asked trial is the first grid point, and trial_spec reads it back
    trial = study.ask()
    spec = st.trial_spec(trial, config)
    assert trial.params == points[0]
    assert spec.optimizer.lr == points[0]["lr"]


# --- counting and sampling ---------------------------------------------------------------


def test_counted_trials_counts_finished_and_running_only():
    study = memory_study()
    for value in (0.1, 0.2):
        study.tell(study.ask(), value)
    study.tell(study.ask(), state=TrialState.PRUNED)
    study.tell(study.ask(), state=TrialState.FAIL)
    study.ask()  # running
    study.enqueue_trial({"x": 1.0})
    study.enqueue_trial({"x": 2.0})
    states = Counter(t.state for t in study.trials)
    assert states == {TrialState.COMPLETE: 2, TrialState.PRUNED: 1, TrialState.FAIL: 1,
                      TrialState.RUNNING: 1, TrialState.WAITING: 2}
    assert st.counted_trials(study) == 4


def first_suggestion(sampler: optuna.samplers.BaseSampler) -> float:
    trial = memory_study(sampler).ask()
    return trial.suggest_float("x", 0.0, 1.0)


def test_tpe_is_multivariate_grouped_and_lies_for_running_trials(tmp_path: Path):
    """Judged by what it proposes, not by Optuna's private attributes: on a sweep's
    conditional space, with three trials still running, the sampler proposes exactly
    what multivariate, grouped, constant-liar TPE that fits only the chosen family's group
    proposes (lrbench.sweep.sampling), and not what TPE without the liar or default TPE does."""
    config = write_sweep(tmp_path, sampler="tpe")

    def proposals(sampler: optuna.samplers.BaseSampler) -> list[dict]:
        study = memory_study(sampler)
        for number in range(26):
            trial = study.ask()
            st.trial_spec(trial, config)
            if number < 23:  # the last three stay RUNNING: constant liar sees them
                study.tell(trial, (number % 5) / 5)
        return [t.params for t in study.trials]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        reference, no_liar = (BatchTPESampler(multivariate=True, group=True, constant_liar=liar,
                                              seed=5, family_param="schedule")
                              for liar in (True, False))
    ours = proposals(st.make_sampler(config, seed=5))
    assert ours == proposals(reference)
    assert ours != proposals(no_liar)
    assert ours != proposals(optuna.samplers.TPESampler(seed=5))


@pytest.mark.parametrize("sampler, shared", [("tpe", False), ("random", False), ("qmc", True),
                                             ("grid", False)])
def test_slot_seeds(tmp_path: Path, sampler: str, shared: bool):
    """Slots with one seed would propose the same trials; QMC must share its sequence."""
    config = write_sweep(tmp_path, sampler=sampler, extra=(
        "[schedules.step]\nstep_size = [1, 2]\ngamma = [0.1]\n"
        "[schedules.plateau]\nfactor = [0.1]\npatience = [0]\n" if sampler == "grid" else ""))
    slot_seeds = [seeds.sampler_seed(config.seed, run=0, slot=i) for i in (0, 1)]
    slot0, slot1 = (first_suggestion(st.make_sampler(config, s)) for s in slot_seeds)
    assert first_suggestion(st.make_sampler(config, slot_seeds[0])) == slot0  # reproducible
    assert (slot0 == slot1) is shared
    if sampler == "qmc":
        assert st.make_sampler(config, slot_seeds[1])._seed == config.seed


def test_each_run_of_a_study_samples_with_new_seeds(tmp_path: Path):
    """A resumed or joined sweep is the study's next run: its slots never replay an
    earlier run's seeds (4 -> 8 trials once re-ran trials 0-3's exact parameters)."""
    journal = str(tmp_path / "lrbench.journal")
    config = write_sweep(tmp_path, seed=3)
    study = st.open_study(config, open_storage(journal))
    assert [schema.start_run(study) for _ in range(3)] == [0, 1, 2]
    assert schema.start_run(st.open_study(config, open_storage(journal))) == 3  # stored
    all_seeds = {seeds.sampler_seed(3, run, slot, start) for run in range(4)
                 for slot in range(8) for start in range(3)}  # (a replacement is a new start)
    assert len(all_seeds) == 4 * 8 * 3
    assert all(0 <= s < 2**31 for s in all_seeds)


@pytest.mark.parametrize("pruner, kind", [
    ("median", optuna.pruners.MedianPruner), ("hyperband", optuna.pruners.HyperbandPruner),
    ("none", optuna.pruners.NopPruner)])
def test_make_pruner(tmp_path: Path, pruner: str, kind: type):
    assert isinstance(st.make_pruner(write_sweep(tmp_path, pruner=pruner)), kind)


def test_median_pruner_waits_half_the_run(tmp_path: Path):
    """No pruning before epoch epochs // 2 + 1 (steps are epoch numbers, 1-based):
    late-decaying schedules trail early."""
    pruner = st.make_pruner(write_sweep(tmp_path, pruner="median", epochs=6))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(5):  # n_startup_trials good runs
        trial = study.ask()
        for epoch in range(1, 7):
            trial.report(0.9, epoch)
        study.tell(trial, 0.9)
    laggard = study.ask()
    decisions = []
    for epoch in range(1, 7):
        laggard.report(0.1, epoch)
        decisions.append(laggard.should_prune())
    assert decisions == [False, False, False, True, True, True]


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

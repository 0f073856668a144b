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
from conftest import REPO
from optuna.trial import TrialState

from lrbench.errors import UserError
from lrbench.store import record, schema
from lrbench.store.record import Plan
from lrbench.store.storage import open_storage
from lrbench.sweep import seeds
from lrbench.sweep import study as st
from lrbench.sweep.config import SweepConfig, load
from lrbench.sweep.sampling import BatchTPESampler

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

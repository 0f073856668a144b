"""Tests for lrbench.sweep.protocol: equal budgets per (family, repeat) cell, each cell's
sampler and pruner fed only its own trials, and a real batched slot that keeps the budgets.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from conftest import require_mnist
from optuna.trial import TrialState

from lrbench.store import claims, record
from lrbench.store.record import Plan, cell_of, plan_attrs
from lrbench.store.storage import open_storage
from lrbench.sweep import protocol
from lrbench.sweep import study as st
from lrbench.sweep.config import SweepConfig, load
from lrbench.sweep.devices import Slot
from lrbench.sweep.processes import lifeline
from lrbench.sweep.pruning import StackMedian
from lrbench.sweep.sampling import BatchTPESampler, asking
from lrbench.sweep.slot import run_slot
from lrbench.sweep.slot_job import SlotJob
from lrbench.train.data import load_arrays

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def compare_config(tmp_path: Path, *, budget: int = 3, repeats: int = 2, epochs: int = 4,
                   sampler: str = "tpe", pruner: str = "none",
                   families: str = '["step", "cosine", "constant"]') -> SweepConfig:
    path = tmp_path / "cmp.toml"
    path.write_text(f"""\
[study]
name = "cmp"
protocol = "compare"
budget = {budget}
repeats = {repeats}
sampler = "{sampler}"
pruner = "{pruner}"
[data]
validation_size = 0.2
[train]
epochs = {epochs}
[search]
lr = {{ low = 0.01, high = 0.5, log = true }}
[schedules]
families = {families}
""", encoding="utf-8")
    return load(path)


def new_study(config: SweepConfig, seed: int = 0) -> optuna.Study:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="maximize",
                                sampler=st.make_sampler(config, seed))
    st.open_study(config, study._storage)
    return optuna.load_study(study_name=config.study, storage=study._storage,
                             sampler=st.make_sampler(config, seed))


def ask(study: optuna.Study, config: SweepConfig, count: int) -> list[optuna.Trial]:
    """What a slot does under the claim lock: queue the cells, then ask and sample."""
    cells = protocol.assign(study, config, count)
    with asking(study, count, cells) as trials:
        for trial in trials:
            st.trial_spec(trial, config)
    return trials


def finish(study: optuna.Study, trial: optuna.Trial, value: float) -> None:
    trial.report(value, 1)
    study.tell(trial, value)


def test_cells_fill_evenly_and_never_past_the_budget(tmp_path: Path):
    config = compare_config(tmp_path, budget=3, repeats=2)
    study = new_study(config)
    for count in (4, 5, 7, 2):  # odd chunks, as slots ask them
        for trial in ask(study, config, count):
            finish(study, trial, 0.5)
        used = Counter(cell_of(t) for t in study.trials)
        assert max(used.values()) - min(used.get(c, 0) for c in protocol.cells(config)) <= 1
    assert Counter(cell_of(t) for t in study.trials) == {c: 3 for c in protocol.cells(config)}
    assert config.trials == 18 == len(study.trials)
    assert protocol.assign(study, config, 5) == Counter()  # full: nothing more is queued
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_a_failure_of_its_own_is_spent_and_a_requeued_one_is_not(tmp_path: Path):
    config = compare_config(tmp_path, budget=2, repeats=1, families='["step", "constant"]')
    study = new_study(config)
    broken, interrupted, *rest = ask(study, config, 4)
    cells = {cell_of(broken), cell_of(interrupted)}
    study.tell(broken, state=TrialState.FAIL)  # its own error: spent
    study.tell(interrupted, state=TrialState.FAIL)  # a dead worker: re-queued, not spent
    claims.requeue(study, study.trials[interrupted.number])
    for trial in rest:
        finish(study, trial, 0.5)
    assert st.counted_trials(study) == 3  # the re-queued copy waits
    assert protocol.spent(study.trials) == Counter(
        {cell: 2 for cell in protocol.cells(config)})
    [again] = ask(study, config, 1)
    assert again.params == study.trials[interrupted.number].params
    assert cell_of(again) == cell_of(interrupted) and cells == set(protocol.cells(config))
    finish(study, again, 0.5)
    assert st.counted_trials(study) == config.trials
    assert protocol.assign(study, config, 3) == Counter()


def test_a_cells_sampler_sees_only_its_cell(tmp_path: Path):
    """TPE in cell (step, 0) must model only step's trials of repeat 0: fed the whole study
    it would copy the LR that the other cells found best."""
    config = compare_config(tmp_path, budget=12, repeats=2, families='["step", "constant"]')
    study = new_study(config)
    for trial in ask(study, config, 24):  # random start-up in every cell
        cell = cell_of(trial)
        finish(study, trial, 1.0 if cell == ("step", 0) else 0.0)
    sampler = study.sampler
    assert isinstance(sampler, protocol.CellSampler)
    view = protocol.CellView(study, ("step", 0), {})
    assert {cell_of(t) for t in view.get_trials()} == {("step", 0)}
    assert len(view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) == 6
    inner = sampler.sampler(("step", 0))
    assert isinstance(inner, BatchTPESampler) and not inner._group
    assert inner._n_startup_trials == protocol.startup_trials(12) == 4
    # each cell's sampler has its own seed: repeats are independent tunings
    seeds_ = {sampler.sampler(c)._rng.rng.get_state()[1][0] for c in protocol.cells(config)}
    assert len(seeds_) == len(protocol.cells(config))


def test_each_cells_tpe_fits_once_per_batch(tmp_path: Path):
    config = compare_config(tmp_path, budget=12, repeats=1, families='["step", "constant"]')
    study = new_study(config)
    for trial in ask(study, config, 8):
        finish(study, trial, float(trial.number) / 10)
    fits = {c: study.sampler.sampler(c).below_fits for c in protocol.cells(config)}
    ask(study, config, 8)  # 4 per cell, past start-up: one split and "below" fit per cell
    after = {c: study.sampler.sampler(c).below_fits - fits[c] for c in protocol.cells(config)}
    assert after == {("step", 0): 1, ("constant", 0): 1}


def test_the_median_rule_compares_a_trial_with_its_cell_only():
    study = optuna.create_study(direction="maximize")
    for cell, value in ((("step", 0), 0.9), (("constant", 0), 0.2)):
        for _ in range(5):
            study.enqueue_trial({"schedule": cell[0]}, user_attrs=plan_attrs(Plan(repeat=cell[1])))
            trial = study.ask()
            trial.suggest_categorical("schedule", ["step", "constant"])
            trial.report(value, 1)
            study.tell(trial, value)
    pruner = StackMedian(n_startup_trials=5, n_warmup_steps=0)
    pruner.refresh(study)
    assert pruner.threshold(1, ("step", 0)) == 0.9 and pruner.threshold(1, ("constant", 0)) == 0.2
    assert pruner.prune(1, [0.5], ("step", 0)) and not pruner.prune(1, [0.5], ("constant", 0))
    assert not pruner.prune(1, [0.5], ("cosine", 0))  # no completed trials in its cell yet
    assert pruner.threshold(1) != pruner.threshold(1)  # NaN: no trial outside the cells


@pytest.mark.slow
@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_batched_slot_spends_exactly_the_budget_of_every_cell(tmp_path: Path, pruner: str):
    require_mnist()
    config = compare_config(tmp_path, budget=7, repeats=2, epochs=4, pruner=pruner)
    journal = str(tmp_path / "lrbench.journal")
    st.open_study(config, open_storage(journal))
    threads = torch.get_num_threads()
    try:
        report = run_slot(SlotJob(Slot(0, "cpu", 1), config, journal,
                                  load_arrays("mnist", DATA), engine="batched",
                                  batch_trials=8, sampler_seed=3))
    finally:
        torch.set_num_threads(threads)
        lifeline.reset()
    study = optuna.load_study(study_name="cmp", storage=open_storage(journal))
    trials = study.trials
    assert report.trials == config.trials == 42 == len(trials)
    assert Counter(cell_of(t) for t in trials) == {c: 7 for c in protocol.cells(config)}
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    # two repeats never train one model: their init seeds differ even for equal params
    init = Counter(record.record_of(t).seed for t in trials)
    assert max(init.values()) == 1

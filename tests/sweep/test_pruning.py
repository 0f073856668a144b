"""Tests for lrbench.sweep.pruning: the stack's decisions equal Optuna's own pruners'."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import TrialState

from lrbench.sweep.pruning import StackHyperband, StackMedian, stack_pruner
from lrbench.train.batched import EpochRow

optuna.logging.set_verbosity(optuna.logging.WARNING)


def history(completed: int, seed: int, epochs: int = 6) -> optuna.Study:
    """Completed trials with noisy rising curves; some stopped early, one has a NaN."""
    rng = random.Random(seed)
    study = optuna.create_study(direction="maximize")
    for number in range(completed):
        trial = study.ask()
        level = rng.uniform(0.5, 0.9)
        steps = epochs if number % 4 else rng.randint(2, epochs)  # shorter curves too
        for step in range(steps):
            value = level + 0.01 * step + rng.gauss(0, 0.02)
            if (number, step) == (3, 1):
                value = math.nan
            trial.report(value, step)
        study.tell(trial, level)
    pruned = study.ask()  # pruned and running trials never count
    pruned.report(0.99, 0)
    study.tell(pruned, state=TrialState.PRUNED)
    return study


@pytest.mark.parametrize("completed", [0, 3, 5, 12])
@pytest.mark.parametrize("warmup", [0, 3])
def test_stack_decisions_equal_median_pruner(completed: int, warmup: int):
    study = history(completed, seed=completed + 10 * warmup)
    optuna_pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    ours = stack_pruner(optuna_pruner, study.study_name)
    assert isinstance(ours, StackMedian)
    ours.refresh(study)
    rng = random.Random(completed)
    decisions = []
    for _ in range(40):  # candidates: running trials with curves of every length and level
        trial = study.ask()
        level = rng.uniform(0.4, 1.0)
        values = []
        for step in range(rng.randint(1, 7)):
            value = math.nan if rng.random() < 0.1 else level + 0.01 * step
            values.append(value)
            trial.report(value, step)
            frozen = study._storage.get_trial(trial._trial_id)
            want = optuna_pruner.prune(study, frozen)
            assert ours.prune(step, values) == want, (step, values)
            decisions.append(want)
        study.tell(trial, state=TrialState.FAIL)
    if completed >= 5:  # the comparison saw both answers
        assert True in decisions and False in decisions
    else:
        assert not any(decisions)


def test_every_pruner_lrbench_makes_has_a_stack_twin():
    hyperband = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9)
    assert isinstance(stack_pruner(hyperband, "s"), StackHyperband)
    assert isinstance(stack_pruner(optuna.pruners.MedianPruner(), "s"), StackMedian)
    assert stack_pruner(optuna.pruners.NopPruner(), "s") is None
    with pytest.raises(TypeError, match="PercentilePruner"):
        stack_pruner(optuna.pruners.PercentilePruner(25.0), "s")
    with pytest.raises(TypeError, match="max_resource"):
        stack_pruner(optuna.pruners.HyperbandPruner(), "s")  # "auto": unknown until a trial ends


class _Member:
    """A trial in flight in both twin studies: its curve, and where it stands."""

    def __init__(self, rng: random.Random, epochs: int) -> None:
        self.level, self.rise = rng.uniform(0.3, 0.9), rng.uniform(-0.01, 0.03)
        self.noise = [rng.gauss(0, 0.02) for _ in range(epochs)]
        self.nan_at = rng.randrange(epochs) if rng.random() < 0.05 else None
        self.epochs, self.curve = epochs, []

    def value(self, epoch: int) -> float:
        if epoch == self.nan_at:
            return math.nan
        return self.level + self.rise * epoch + self.noise[epoch]


@pytest.mark.parametrize("epochs, eta, bootstrap", [(9, 3, 0), (10, 3, 0), (16, 2, 0),
                                                    (9, 3, 2)])
def test_stack_decisions_equal_hyperband_pruner(epochs: int, eta: int, bootstrap: int):
    """Two twin studies see the same trials: in one, Optuna's HyperbandPruner decides
    trial by trial after each report; in the other, StackHyperband decides for the whole
    stack per epoch. A slot keeps 6 trials in flight and refills places as trials end,
    so trials join at every epoch. Decisions and the rung values recorded must match."""
    name = f"hb-{epochs}-{eta}-{bootstrap}"
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                            reduction_factor=eta, bootstrap_count=bootstrap)
    theirs = optuna.create_study(study_name=name, direction="maximize", pruner=pruner)
    ours_study = optuna.create_study(study_name=name, direction="maximize")
    ours = stack_pruner(pruner, name)
    assert isinstance(ours, StackHyperband)
    rng = random.Random(epochs * 100 + eta + bootstrap)
    flight: dict[int, _Member] = {}
    decisions: list[bool] = []
    started = 0
    while started < 120 or flight:
        while len(flight) < 6 and started < 120:  # refill the free places
            number = theirs.ask().number
            assert ours_study.ask().number == number
            flight[number] = _Member(rng, epochs)
            started += 1
        rows = []
        for number, member in flight.items():
            epoch = len(member.curve)
            member.curve.append(member.value(epoch))
            rows.append(EpochRow(number, epoch, member.curve[-1], epoch + 1 == epochs,
                                 list(member.curve)))
        ids = {row.key: ours_study._storage.get_trial_id_from_study_id_trial_number(
            ours_study._study_id, row.key) for row in rows}
        pruned = set(ours.decide(ours_study, rows, ids))
        for row in rows:  # Optuna's way: report, then should_prune, one trial at a time
            trial_id = theirs._storage.get_trial_id_from_study_id_trial_number(
                theirs._study_id, row.key)
            theirs._storage.set_trial_intermediate_value(trial_id, row.epoch + 1,
                                                         row.val_accuracy)  # epoch numbers
            want = not row.last and pruner.prune(theirs, theirs._storage.get_trial(trial_id))
            assert (row.key in pruned) == want, (row.key, row.epoch, row.curve)
            decisions.append(want)
            if want or row.last:
                state = TrialState.PRUNED if want else TrialState.COMPLETE
                for study in (theirs, ours_study):
                    study.tell(row.key, state=state,
                               values=None if want else row.val_accuracy)
                del flight[row.key]
    assert True in decisions and False in decisions
    rungs = [{k: v for k, v in t.system_attrs.items() if k.startswith("completed_rung_")}
             for t in theirs.trials]
    assert rungs == [{k: v for k, v in t.system_attrs.items() if k.startswith("completed_rung_")}
                     for t in ours_study.trials]
    assert any(len(r) >= 2 for r in rungs)  # some were promoted past a recorded rung

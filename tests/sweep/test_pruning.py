"""Tests for lrbench.sweep.pruning: the stack's decisions equal Optuna's MedianPruner's."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import TrialState

from lrbench.sweep.pruning import StackPruner

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
    ours = StackPruner.like(optuna_pruner)
    assert ours is not None
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


def test_only_median_pruners_have_a_stack_twin():
    assert StackPruner.like(optuna.pruners.HyperbandPruner()) is None
    assert StackPruner.like(optuna.pruners.NopPruner()) is None

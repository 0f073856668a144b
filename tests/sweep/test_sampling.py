"""Tests for lrbench.sweep.sampling: K asks from one TPE fit per search-space group."""

from __future__ import annotations

import statistics

import numpy as np
import optuna
import pytest

from lrbench.sweep.sampling import BatchTPESampler, asking

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def ask_batch(study: optuna.Study, count: int) -> list[optuna.Trial]:
    """``count`` trials whose relative params are drawn as one batch, as a slot asks."""
    with asking(study, count) as trials:
        for trial in trials:
            _ = trial.relative_params
    return trials


def sampler(seed: int = 0) -> BatchTPESampler:
    return BatchTPESampler(multivariate=True, group=True, constant_liar=True, seed=seed)


def suggest(trial: optuna.Trial) -> float:
    """A conditional space like a sweep's: a family, its own parameters, a shared LR."""
    family = trial.suggest_categorical("schedule", ["step", "cosine", "constant"])
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    score = -abs(lr - 0.1)
    if family == "step":
        gamma = trial.suggest_float("step.gamma", 0.05, 0.99, log=True)
        step = trial.suggest_int("step.step_size", 1, 5)
        score -= abs(gamma - 0.5) + 0.1 * abs(step - 2)
    elif family == "cosine":
        score -= abs(trial.suggest_float("cosine.eta_min_ratio", 1e-4, 0.1, log=True) - 0.01)
    else:
        score -= 0.5
    return score


def study_with_history(s: optuna.samplers.BaseSampler, trials: int = 20) -> optuna.Study:
    study = optuna.create_study(sampler=s, direction="maximize")
    for _ in range(trials):
        trial = study.ask()
        study.tell(trial, suggest(trial))
    return study


def test_a_batch_fits_once_per_group_not_once_per_ask():
    plain, batched = sampler(), sampler()
    for s, batch in ((plain, False), (batched, True)):
        study = study_with_history(s)
        s.below_fits = 0
        trials = ask_batch(study, 16) if batch else [study.ask() for _ in range(16)]
        for trial in trials:
            suggest(trial)
    assert batched.below_fits >= 2  # one per group of the conditional space (here: 3)
    assert plain.below_fits == 16 * batched.below_fits  # plain TPE fits every group for every ask


def test_batch_proposals_are_distinct_and_inside_their_distributions():
    study = study_with_history(sampler(1))
    trials = ask_batch(study, 12)
    for trial in trials:
        study.tell(trial, suggest(trial))
    proposed = [t for t in study.trials[-12:]]
    assert len({tuple(sorted(t.params.items())) for t in proposed}) == 12
    for trial in proposed:
        for name, value in trial.params.items():
            distribution = trial.distributions[name]
            if isinstance(distribution, optuna.distributions.CategoricalDistribution):
                assert value in distribution.choices
            else:
                assert distribution.low <= value <= distribution.high


def test_outside_a_batch_it_is_plain_tpe():
    """Same seed, same history, one ask at a time: the very proposals TPESampler makes."""
    ours = study_with_history(sampler(2), trials=15)
    theirs = study_with_history(optuna.samplers.TPESampler(
        multivariate=True, group=True, constant_liar=True, seed=2), trials=15)
    assert [t.params for t in ours.trials] == [t.params for t in theirs.trials]


@pytest.mark.slow
def test_batched_tpe_still_beats_random_search():
    """One fit per batch keeps TPE's guidance: 8 batches of 10 after 20 random trials."""
    def best_after(make: type | None, seed: int) -> float:
        s = sampler(seed) if make is None else make(seed=seed)
        study = study_with_history(s)
        for _ in range(8):
            trials = ask_batch(study, 10)
            for trial in trials:
                study.tell(trial, suggest(trial))
        return study.best_value

    seeds = range(4)
    tpe = statistics.mean(best_after(None, seed) for seed in seeds)
    random = statistics.mean(best_after(optuna.samplers.RandomSampler, seed) for seed in seeds)
    assert tpe > random


def test_each_later_proposal_is_judged_with_the_earlier_ones_as_liars(monkeypatch):
    """Like TPE asked k times with constant_liar: proposal j sees proposals 1..j-1 as
    running trials in "above"; "below" (which running trials never enter) is fitted once."""
    s = sampler(3)
    study = study_with_history(s, trials=30)
    built: list[tuple[bool, int]] = []
    refits: list[np.ndarray] = []
    build = BatchTPESampler._build_parzen_estimator
    estimator = s._parzen_estimator_cls

    def spy(self, study, search_space, trials, handle_below):
        built.append((handle_below, len(trials)))
        return build(self, study, search_space, trials, handle_below)

    def refit_spy(observations, search_space, parameters):
        refits.append(observations["lr"])
        return estimator(observations, search_space, parameters)

    monkeypatch.setattr(BatchTPESampler, "_build_parzen_estimator", spy)
    distribution = optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)
    with s.batch(5):
        s._parzen_estimator_cls = refit_spy
        proposals = [s._sample(study, study.ask(), {"lr": distribution}) for _ in range(5)]
    [(below_flag, n_below), (above_flag, n_above)] = built  # one split: below, above, once
    assert (below_flag, above_flag) == (True, False)
    assert [len(r) for r in refits[:2]] == [n_below, n_above]  # the split's own fits
    refits = refits[2:]
    # Refit j holds "above" and the earlier proposals, in TPE's internal repr (log for lr).
    assert [len(r) for r in refits] == [n_above + liars for liars in range(1, 5)]
    for j, observations in enumerate(refits, start=1):
        assert observations[n_above:] == pytest.approx(
            [distribution.to_internal_repr(p["lr"]) for p in proposals[:j]])
    assert len({p["lr"] for p in proposals}) == 5


def family_sampler(seed: int = 0) -> BatchTPESampler:
    return BatchTPESampler(multivariate=True, group=True, constant_liar=True, seed=seed,
                           family_param="schedule")


@pytest.mark.parametrize("batch", [False, True])
def test_a_trial_fits_only_its_own_familys_group(batch, monkeypatch):
    """With family_param, the family's group is fitted, then only the chosen family's:
    plain TPE fitted every family's group for every trial and threw all but one away."""
    s = family_sampler(4)
    study = study_with_history(s, trials=20)
    independent: list[str] = []
    original = BatchTPESampler.sample_independent

    def spy(self, study, trial, name, distribution):
        independent.append(name)
        return original(self, study, trial, name, distribution)

    monkeypatch.setattr(BatchTPESampler, "sample_independent", spy)
    s.below_fits = 0
    trials = ask_batch(study, 16) if batch else [study.ask() for _ in range(16)]
    for trial in trials:
        suggest(trial)
    families = [t.params["schedule"] for t in trials]
    assert independent == []  # every suggested value came from a relative (joint) fit
    if batch:  # the family group once, and once per family that a trial chose (if it has one)
        assert s.below_fits == 1 + len({f for f in families if f != "constant"})
    else:  # per trial: the family group, and its own family's group (constant has none)
        assert s.below_fits == sum(1 + (f != "constant") for f in families)


def test_family_groups_are_proposed_as_many_times_as_chosen():
    s = family_sampler(5)
    study = study_with_history(s, trials=25)
    trials = ask_batch(study, 12)
    for trial in trials:
        study.tell(trial, suggest(trial))
    step = [t.params for t in study.trials[-12:] if t.params["schedule"] == "step"]
    assert len({(p["step.gamma"], p["step.step_size"]) for p in step}) == len(step)


def test_enqueued_trials_are_not_sampled():
    s = family_sampler(6)
    study = study_with_history(s, trials=20)
    study.enqueue_trial({"schedule": "cosine", "lr": 0.2, "cosine.eta_min_ratio": 0.01})
    s.below_fits = 0
    trial = study.ask()
    assert trial.relative_params == {}
    assert s.below_fits == 0
    suggest(trial)
    assert trial.params["lr"] == 0.2


def test_incremental_groups_equal_optunas():
    """Adding each finished trial once gives the groups Optuna's full recount gives."""
    from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

    s = family_sampler(7)
    study = study_with_history(s, trials=15)
    ours, theirs = s._group_decomposed_search_space, _GroupDecomposedSearchSpace(True)
    for _ in range(3):
        for trial in ask_batch(study, 4):
            study.tell(trial, suggest(trial))
        assert ours.calculate(study).search_spaces == theirs.calculate(study).search_spaces
    assert len(ours.calculate(study).search_spaces) == 3  # schedule+lr, step's, cosine's

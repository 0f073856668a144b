"""Tests for lrbench.report.budget: expected best of n over every spent trial, by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from lrbench.report import budget


def test_expected_best_is_the_exact_bootstrap_maximum() -> None:
    values = np.array([0.9, 0.1, 0.5])
    # n = 2 draws with replacement: max is 0.1 w.p. 1/9, 0.5 w.p. 3/9, 0.9 w.p. 5/9
    mean, low, high = budget.expected_best(values, 2)
    assert mean == pytest.approx((0.1 * 1 + 0.5 * 3 + 0.9 * 5) / 9)
    assert (low, high) == (0.1, 0.9)  # P(max <= 0.1) = 1/9 >= 10%; P(max <= 0.5) = 4/9 < 90%
    draws = [max(pair) for pair in itertools.product(values, repeat=2)]  # all 9 equally likely
    assert mean == pytest.approx(sum(draws) / len(draws))
    assert budget.expected_best(values, 1)[0] == pytest.approx(values.mean())


def trial(family: str, state: str, val: float | None, repeat: int | None = None,
          spent: bool = True) -> dict:
    return {"role": "search", "family": family, "state": state, "val_accuracy": val,
            "repeat": repeat, "spent": spent}


def test_every_spent_trial_counts_and_a_rerun_one_does_not() -> None:
    trials = pd.DataFrame([trial("a", "complete", 0.9), trial("a", "pruned", 0.5),
                           trial("a", "fail", None),  # its own error: spent, worth 0
                           trial("a", "fail", None, spent=False),  # re-run: not spent
                           trial("a", "waiting", None, spent=False)])
    curve = budget.curves(trials)
    assert list(curve["n"]) == [1, 2, 3] and set(curve["trials"]) == {3}
    values = np.array([0.9, 0.5, 0.0])
    assert curve["expected"].tolist() == pytest.approx(
        [budget.expected_best(values, n)[0] for n in (1, 2, 3)])


def test_repeats_are_averaged_up_to_the_budget() -> None:
    trials = pd.DataFrame([trial("a", "complete", v, r) for r, vs in
                           ((0, (0.9, 0.7)), (1, (0.6, 0.8))) for v in vs])
    curve = budget.curves(trials)
    assert list(curve["n"]) == [1, 2]
    first = (budget.expected_best(np.array([0.9, 0.7]), 2)[0]
             + budget.expected_best(np.array([0.6, 0.8]), 2)[0]) / 2
    assert curve["expected"].iloc[1] == pytest.approx(first)


def test_the_budget_at_which_the_ranking_changes() -> None:
    table = pd.DataFrame([
        {"family": "slow", "n": n, "expected": e} for n, e in ((1, 0.80), (2, 0.90), (3, 0.95))
    ] + [{"family": "fast", "n": n, "expected": e} for n, e in ((1, 0.88), (2, 0.89),
                                                                 (3, 0.90))])
    assert budget.ranking_change(table) == (["slow", "fast"], 1)
    steady = table.assign(expected=table["expected"] + (table["family"] == "slow"))
    assert budget.ranking_change(steady) == (["slow", "fast"], None)

"""Tests for lrbench.report.selection (the test against the best) and its calibration.

The worked examples come from outside lrbench: published studentized-range table values,
and statsmodels' two-way ANOVA for the block design's error term. The simulation drives
the same code as the report with synthetic scores, no training.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm

from lrbench.report import calibration, selection


@pytest.mark.parametrize(("k", "dof", "table"), [(3, 10, 3.877), (5, 20, 4.232),
                                                 (3, math.inf, 3.314), (10, 30, 4.824)])
def test_critical_range_matches_the_published_table(k: int, dof: float, table: float):
    # q(0.05; k, dof) from the studentized range tables (Harter 1960; any statistics text)
    assert selection.critical_range(k, dof) == pytest.approx(table, abs=2e-3)


def test_block_test_matches_a_two_way_anova_by_hand():
    """Three families on four seeds: the error term is statsmodels' residual mean square
    of score ~ family + seed, and p is the studentized range's tail at gap / SE."""
    scores = {"a": {0: 0.91, 1: 0.93, 2: 0.90, 3: 0.94},
              "b": {0: 0.89, 1: 0.90, 2: 0.88, 3: 0.91},
              "c": {0: 0.90, 1: 0.925, 2: 0.895, 3: 0.93}}
    frame = pd.DataFrame([{"family": f, "seed": s, "score": v}
                          for f, runs in scores.items() for s, v in runs.items()])
    table = anova_lm(ols("score ~ C(family) + C(seed)", frame).fit())
    mse, dof = table.loc["Residual", "mean_sq"], table.loc["Residual", "df"]
    test = selection.block_test(scores)
    assert (test.best, test.dof, test.units, test.families) == ("a", dof, 4, 3)
    se = math.sqrt(mse / 4)
    for family, mean in (("b", 0.895), ("c", 0.9125)):
        expected = stats.studentized_range.sf((0.92 - mean) / se, 3, dof)
        assert test.p_values[family] == pytest.approx(expected, rel=1e-9)
        assert (family in test.below) == (expected < 0.05)
    assert test.below == {"b"} and test.tied("c") and test.tied("a")


def test_units_are_seeds_for_one_tuning_and_repeat_means_for_several():
    one = {(0, 0): 1.0, (0, 1): 2.0, (0, 2): 4.0}
    assert selection.by_unit(one) == {0: 1.0, 1: 2.0, 2: 4.0}
    several = {(0, 0): 1.0, (0, 1): 3.0, (1, 0): 5.0, (1, 1): 7.0}
    assert selection.by_unit(several) == {0: 2.0, 1: 6.0}


def test_untestable_and_spreadless_cases():
    assert math.isnan(selection.block_test({"a": {0: 1.0}, "b": {0: 0.5}}).p_values["b"])
    flat = selection.block_test({"a": {0: 1.0, 1: 1.0}, "b": {0: 0.5, 1: 0.5}})
    assert flat.p_values == {"b": 0.0} and flat.below == {"b"}
    same = selection.block_test({"a": {0: 1.0, 1: 1.0}, "b": {0: 1.0, 1: 1.0}})
    assert same.below == set()


def test_single_runs_use_tukey_kramer_with_known_errors():
    test = selection.single_run_test({"a": 0.95, "b": 0.94, "c": 0.90},
                                     {"a": 0.005, "b": 0.005, "c": 0.006})
    q = (0.95 - 0.90) / math.sqrt((0.005 ** 2 + 0.006 ** 2) / 2)
    assert test.p_values["c"] == pytest.approx(stats.studentized_range.sf(q, 3, math.inf))
    assert test.below == {"c"}


SIMULATIONS = 1500


@pytest.mark.slow
@pytest.mark.parametrize("setting", calibration.SETTINGS, ids=str)
def test_with_equal_families_any_below_stays_within_its_stated_rate(setting):
    """The issue's target: at most 5% within Monte Carlo error (3 standard errors)."""
    rate, _ = calibration.rates(setting, SIMULATIONS, seed=setting.families)
    allowance = 3 * math.sqrt(0.05 * 0.95 / SIMULATIONS)
    assert rate <= 0.05 + allowance, f"{setting}: {rate:.3f}"


def test_a_single_tuning_cannot_rank_families_whose_tunings_vary():
    """Why repeats: with one tuning, the luck of each family's pick looks like a real
    difference; the verdict then speaks of the picked configurations (its page says so)."""
    rate, _ = calibration.rates(calibration.Setting(9, 5, 1), 400, tuning_sd=0.3)
    assert rate > 0.3
    repeated, _ = calibration.rates(calibration.Setting(9, 5, 3), 400)
    assert repeated <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


@pytest.mark.slow
def test_the_old_rule_against_the_observed_maximum_overshoots():
    """The rule it replaces (paired t against the best, Holm-corrected) on the same null,
    9 families x 5 seeds, configurations equal: the simulation can see miscalibration."""
    rng, fired = np.random.default_rng(1), 0
    for _ in range(SIMULATIONS):
        runs = calibration.simulated_runs(calibration.Setting(9, 5, 1), rng, tuning_sd=0.0)
        matrix = np.array([[v for _, v in sorted(r.items())] for r in runs.values()])
        best = int(np.argmax(matrix.mean(axis=1)))
        p = sorted(stats.ttest_rel(matrix[best], matrix[i]).pvalue
                   for i in range(9) if i != best)
        fired += any(p_i * (8 - j) < 0.05 for j, p_i in enumerate(p))  # Holm's first step on
    assert fired / SIMULATIONS > 0.08


def test_power_against_a_planted_two_point_gap():
    power = calibration.rates(calibration.Setting(9, 3, 3), 400, planted=2.0)[1]
    assert power > 0.9

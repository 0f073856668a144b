"""Seed statistics: mean ± 95% CI over confirm runs, and whether two families differ.

A sweep's best trial is one draw; ``lrbench confirm`` re-trains it with N fresh seeds.
These turn those N runs into an interval and a test, so the page can say whether the
winner's lead is larger than seed noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE


@dataclass(frozen=True)
class Interval:
    mean: float
    half_width: float  # NaN with fewer than two runs: one run has no spread to measure
    n: int

    def text(self, scale: float = 100.0, digits: int = 2) -> str:
        if self.n == 0:
            return "–"
        if math.isnan(self.half_width):
            return f"{self.mean * scale:.{digits}f} (1 run)"
        return f"{self.mean * scale:.{digits}f} ± {self.half_width * scale:.{digits}f}"


def mean_ci(values: Sequence[float]) -> Interval:
    """Student-t interval of the mean: right for the handful of seeds confirm runs."""
    clean = [float(v) for v in values if not math.isnan(float(v))]
    n = len(clean)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = sum(clean) / n
    if n < 2:
        return Interval(mean, math.nan, n)
    sem = stats.sem(clean)
    return Interval(mean, float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sem), n)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value (unequal variances); NaN when it is undefined."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    result = stats.ttest_ind(list(a), list(b), equal_var=False)
    return float(result.pvalue)


def confirm_runs(trials: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Finished confirm runs of each family's *current* best trial.

    Confirm runs of an earlier best (the sweep went on and found a better one) are
    left out: they measure a configuration the leaderboard no longer shows. Diverged
    runs stay in: a configuration that diverges on one seed in five is worse for it.
    """
    runs = trials[(trials["role"] == "confirm") & (trials["state"] == "complete")]
    keys = set(zip(best["study"], best["number"]))
    mine = pd.Series([k in keys for k in zip(runs["study"], runs["confirm_of"])],
                     index=runs.index, dtype=bool)
    return runs[mine]


def seed_summary(trials: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Per study and family: test and validation accuracy over confirm seeds."""
    rows = []
    runs = confirm_runs(trials, best)
    for (study, family), group in runs.groupby(["study", "family"]):
        test, val = mean_ci(group["test_accuracy"]), mean_ci(group["val_accuracy"])
        rows.append({"study": study, "family": family, "n": test.n, "test_mean": test.mean,
                     "test_ci": test.half_width, "val_mean": val.mean, "val_ci": val.half_width,
                     "diverged": int(group["diverged"].sum())})
    return pd.DataFrame(rows, columns=["study", "family", "n", "test_mean", "test_ci",
                                       "val_mean", "val_ci", "diverged"])

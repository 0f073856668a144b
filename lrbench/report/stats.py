"""Seed statistics: mean ± 95% CI over confirm runs, and which runs are confirm runs.

A sweep's best trial is one draw; ``lrbench confirm`` re-trains it with N fresh seeds.
These turn those runs into an interval; whether two families differ is
``lrbench.report.selection``'s test.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

CONFIDENCE = 0.95


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
    sem = statistics.stdev(clean) / math.sqrt(n)
    return Interval(mean, t_quantile(0.5 + CONFIDENCE / 2, n - 1) * sem, n)


def t_quantile(p: float, dof: float) -> float:
    """Student's t quantile. scipy.stats is imported here, where confirm runs need it, not
    with this module, which every sweep's closing table imports (most have no confirm
    runs; lrbench.report.normal_range says what the import costs)."""
    from scipy import stats

    return float(stats.t.ppf(p, dof))


def confirm_runs(trials: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Finished confirm runs of the *current* picks in ``best`` (each family's best trial;
    under the compare protocol, each repeat's).

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

"""Tuning budgets: what n trials of a family give, over every trial it spent.

A ranking holds at the budget it was measured at. Expected-best-of-n curves (Dodge et
al. 2019, "Show Your Work") say what a family reaches with fewer trials: the maximum of
n draws with replacement from its spent trials' validation accuracies, computed exactly
from their empirical distribution (P(max <= v_(i)) = (i/m)^n over the sorted values).

Every spent trial counts, as it cost its budget: a pruned trial with the validation
accuracy it had when stopped, a diverged one with its (chance-level) accuracy, one that
failed by its own error as 0 (for a regression, whose score is −MSE, a failed or
non-finite run counts as the worst score any run of the study reached). Under the
compare protocol each repeat is its own tuning: the curve is the mean over repeats of each
repeat's curve, up to the budget. TPE's trials
are not independent draws, so read a curve as what n trials like these give, not as a
forecast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BAND = (0.1, 0.9)  # the band's quantiles
COLUMNS = ["family", "n", "expected", "low", "high", "trials"]


def expected_best(values: np.ndarray, n: int) -> tuple[float, float, float]:
    """The maximum of ``n`` draws with replacement from ``values``: its mean and its
    ``BAND`` quantiles, exactly."""
    v = np.sort(values)
    m = len(v)
    cdf = (np.arange(1, m + 1) / m) ** n
    mean = float(np.sum(v * np.diff(np.concatenate([[0.0], cdf]))))
    low, high = (float(v[np.searchsorted(cdf, q - 1e-12)]) for q in BAND)
    return mean, low, high


def spent_values(trials: pd.DataFrame) -> pd.DataFrame:
    """The study's spent search trials with the value each delivered (``value``)."""
    search = trials[(trials["role"] == "search")]
    if "spent" in search:
        search = search[search["spent"].astype(bool)]
    search = search[search["state"].isin(["complete", "pruned", "fail"])]
    scores = search["val_accuracy"].astype(float).replace([np.inf, -np.inf], np.nan)
    worst = min(0.0, float(scores.min())) if scores.notna().any() else 0.0
    value = scores.where(search["state"] != "fail", worst).fillna(worst)
    return search.assign(value=value)


def curves(trials: pd.DataFrame) -> pd.DataFrame:
    """(family, n, expected, low, high, trials) for n = 1 .. the family's trials per
    tuning (its budget under the compare protocol): one study's curves."""
    spent = spent_values(trials)
    rows = []
    for family, runs in spent.groupby("family"):
        repeated = "repeat" in runs and runs["repeat"].notna().any()
        repeats = [r for _, r in runs.groupby("repeat")] if repeated else [runs]
        budget = min(len(r) for r in repeats)
        for n in range(1, budget + 1):
            points = np.array([expected_best(r["value"].to_numpy(), n) for r in repeats])
            mean, low, high = points.mean(axis=0)
            rows.append({"family": family, "n": n, "expected": mean, "low": low, "high": high,
                         "trials": len(runs)})
    return pd.DataFrame(rows, columns=COLUMNS)


def ranking_change(table: pd.DataFrame) -> tuple[list[str], int | None]:
    """The families' order by expected best at the largest budget all of them reached, and
    the largest smaller budget at which that order differs (None: it holds at every n)."""
    if table.empty:
        return [], None
    common = int(table.groupby("family")["n"].max().min())

    def order(n: int) -> list[str]:
        at = table[table["n"] == n].sort_values(["expected", "family"], ascending=[False, True])
        return list(at["family"])

    final = order(common)
    for n in range(common - 1, 0, -1):
        if order(n) != final:
            return final, n
    return final, None

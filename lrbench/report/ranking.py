"""The one ranking of a study's families, and which of them the data cannot tell apart.

Every place that orders families (verdict, leaderboard, figures, terminal) asks ``rank``:

- **With confirm runs** (at least two families re-trained on two or more fresh seeds), a
  family's score is its mean test accuracy over those seeds. Confirm run *i* of every
  family trains on the same batch order (``lrbench.sweep.confirm``), so families are
  compared seed by seed: a paired t-test against the best where the runs pair up, else
  Welch's test. Families without confirm runs follow, by their search result.
- **Without**, the score is each family's best search run's validation accuracy: one run,
  whose uncertainty is at least the validation set's binomial standard error. The tests
  against the best are two-proportion z-tests on those runs.

The p-values against the best are Holm-corrected for the number of comparisons; families
whose corrected p is not below ``ALPHA`` are *tied with the best*. The best itself was
picked as the maximum, which makes these tests lean towards separating families: a tie
is the safe reading, a separation a likely one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from lrbench.report import stats
from lrbench.report.frames import best_per_family
from lrbench.train.schedules import FAMILIES

ALPHA = stats.ALPHA
BASELINE = "constant"  # the family every schedule must beat to be worth its parameters
MIN_SEEDS = 2  # confirm runs per family for a confirm-based ranking


@dataclass
class Standing:
    """One family's place in the ranking."""

    family: str
    trial: int  # its best search trial
    params: str
    search_val: float  # that trial's validation accuracy (one run)
    search_test: float  # ... and its test accuracy
    confirm: stats.Interval  # test accuracy over confirm seeds (n = 0: none)
    runs: dict[object, float] = field(default_factory=dict)  # confirm index -> test accuracy
    score: float = math.nan  # what it is ranked by (confirm mean, or search validation)
    p_vs_best: float = math.nan  # Holm-corrected; NaN for the best itself, or untestable
    test: str = ""  # which test gave p_vs_best
    tied_with_best: bool = True
    vs_baseline: stats.Interval | None = None  # score minus the baseline's, with its CI

    @property
    def search_confirm_gap(self) -> float:
        """Search test accuracy minus the confirm mean: the winner's curse, in points."""
        return self.search_test - self.confirm.mean if self.confirm.n else math.nan


@dataclass
class Ranking:
    basis: str  # "confirm", "search", or "none" (nothing completed)
    standings: list[Standing]  # best first; on the confirm basis, unconfirmed ones last
    val_size: int | None = None  # validation images of one run (search basis)
    seeds: int = 0  # the fewest confirm runs among ranked families (confirm basis)

    @property
    def order(self) -> list[str]:
        return [s.family for s in self.standings]

    @property
    def ranked(self) -> list[Standing]:
        """The standings the basis ranks (on the confirm basis: the confirmed ones)."""
        if self.basis != "confirm":
            return self.standings
        return [s for s in self.standings if s.confirm.n >= MIN_SEEDS]

    @property
    def tied(self) -> list[str]:
        """The best and every family not distinguishable from it."""
        return [s.family for s in self.ranked if s.tied_with_best]

    @property
    def baseline(self) -> Standing | None:
        return next((s for s in self.ranked if s.family == BASELINE), None)

    def standard_error(self, accuracy: float) -> float:
        """One search run's validation accuracy's binomial standard error."""
        if not self.val_size or math.isnan(accuracy):
            return math.nan
        return math.sqrt(accuracy * (1 - accuracy) / self.val_size)


def rank(trials: pd.DataFrame) -> Ranking:
    """One study's families, best first (``trials``: that study's frame, confirm runs in)."""
    best = best_per_family(trials) if len(trials) else trials
    if best.empty:
        return Ranking("none", [])
    runs = stats.confirm_runs(trials, best)
    standings = []
    for row in best.to_dict("records"):
        mine = runs[runs["family"] == row["family"]].dropna(subset=["test_accuracy"])
        by_index = _by_seed(row["family"], mine)
        standings.append(Standing(
            row["family"], int(row["number"]), row["params"] or "(fixed)",
            float(row["val_accuracy"]), float(row["test_accuracy"]),
            stats.mean_ci(list(by_index.values())), by_index))
    confirmed = [s for s in standings if s.confirm.n >= MIN_SEEDS]
    val_sizes = best["val_size"].dropna() if "val_size" in best else pd.Series(dtype=int)
    val_size = int(val_sizes.min()) if len(val_sizes) else None
    if len(confirmed) >= 2:
        ranking = Ranking("confirm", [], val_size, min(s.confirm.n for s in confirmed))
        for s in confirmed:
            s.score = s.confirm.mean
        rest = [s for s in standings if s.confirm.n < MIN_SEEDS]
        for s in rest:
            s.score, s.tied_with_best = s.search_val, False
        ranking.standings = _ordered(confirmed) + _ordered(rest)
    else:
        ranking = Ranking("search", [], val_size)
        for s in standings:
            s.score = s.search_val
        ranking.standings = _ordered(standings)
    _test_against_best(ranking)
    _against_baseline(ranking)
    return ranking


def _by_seed(family: str, runs: pd.DataFrame) -> dict[object, float]:
    """Confirm index -> test accuracy. Runs stored without their index (older releases)
    get keys of their own family, so they never pair with another family's."""
    return {(int(index) if not pd.isna(index) else (family, i)): float(accuracy)
            for i, (index, accuracy) in enumerate(zip(runs["confirm_index"],
                                                      runs["test_accuracy"]))}


def _ordered(standings: list[Standing]) -> list[Standing]:
    registry = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(standings, key=lambda s: (-s.score, registry.get(s.family, 99), s.family))


def _pair(a: Standing, b: Standing) -> tuple[list[float], list[float]]:
    common = sorted(set(a.runs) & set(b.runs))
    return [a.runs[i] for i in common], [b.runs[i] for i in common]


def _confirm_p(best: Standing, other: Standing) -> tuple[float, str]:
    x, y = _pair(best, other)
    if len(x) >= 2 and len(x) == max(len(best.runs), len(other.runs)):
        differences = np.subtract(x, y)
        if np.all(differences == differences[0]):  # no spread: the t statistic is undefined
            return (1.0 if differences[0] == 0 else 0.0), "paired t-test"
        return float(scipy_stats.ttest_rel(x, y).pvalue), "paired t-test"
    return stats.welch_p(list(best.runs.values()), list(other.runs.values())), "Welch t-test"


def _search_p(ranking: Ranking, best: Standing, other: Standing) -> tuple[float, str]:
    se = math.hypot(ranking.standard_error(best.score), ranking.standard_error(other.score))
    if not se or math.isnan(se):
        return (1.0 if best.score == other.score else math.nan), "two-proportion z-test"
    z = (best.score - other.score) / se
    return float(2 * scipy_stats.norm.sf(abs(z))), "two-proportion z-test"


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment; NaN stays NaN and is not counted as a comparison."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running, m = 0.0, len(order)
    for rank_, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank_) * p))
        adjusted[i] = running
    return adjusted


def _test_against_best(ranking: Ranking) -> None:
    ranked = ranking.ranked
    if not ranked:
        return
    best, others = ranked[0], ranked[1:]
    raw = []
    for other in others:
        p, test = (_confirm_p(best, other) if ranking.basis == "confirm"
                   else _search_p(ranking, best, other))
        raw.append(p)
        other.test = test
    for other, p in zip(others, holm(raw)):
        other.p_vs_best = p
        other.tied_with_best = math.isnan(p) or p >= ALPHA


def _against_baseline(ranking: Ranking) -> None:
    """Each ranked family's score minus the baseline's, with a 95% CI."""
    base = ranking.baseline
    if base is None:
        return
    for s in ranking.ranked:
        if s is base:
            continue
        if ranking.basis == "confirm":
            s.vs_baseline = _difference_ci(s, base)
        else:
            se = math.hypot(ranking.standard_error(s.score), ranking.standard_error(base.score))
            half = scipy_stats.norm.ppf(0.5 + stats.CONFIDENCE / 2) * se
            s.vs_baseline = stats.Interval(s.score - base.score, half, 1)


def _difference_ci(a: Standing, b: Standing) -> stats.Interval:
    """Mean difference a - b over confirm seeds: paired where the runs pair up, else Welch."""
    x, y = _pair(a, b)
    if len(x) >= 2 and len(x) == max(len(a.runs), len(b.runs)):
        return stats.mean_ci(list(np.subtract(x, y)))
    xa, xb = list(a.runs.values()), list(b.runs.values())
    if len(xa) < 2 or len(xb) < 2:
        return stats.Interval(a.confirm.mean - b.confirm.mean, math.nan, 0)
    va, vb = np.var(xa, ddof=1) / len(xa), np.var(xb, ddof=1) / len(xb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1)) \
        if va + vb > 0 else len(xa) + len(xb) - 2
    half = float(scipy_stats.t.ppf(0.5 + stats.CONFIDENCE / 2, dof) * math.sqrt(va + vb))
    return stats.Interval(a.confirm.mean - b.confirm.mean, half, min(len(xa), len(xb)))

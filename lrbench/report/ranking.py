"""The one ranking of a study's families, and which of them the data cannot tell apart.

Every place that orders families (verdict, leaderboard, figures, terminal) asks ``rank``:

- **With confirm runs** (at least two families with two or more units), a family's score
  is its mean test accuracy over its confirm runs. The *units* are what the uncertainty
  is measured over (``selection.by_unit``): the seeds of one tuning, or, under the compare
  protocol with repeated tuning, the repeats (each scored by the mean over its seeds), so
  that the interval covers the tuning's variance as well as the seeds'. Confirm run *i*
  of every family trains on the same batch order, so units pair up across families.
- **Without**, the score is each family's best search run's validation accuracy: one run,
  whose uncertainty is at least the validation set's binomial standard error.

"Below the best" is Tukey's HSD against the best (``lrbench.report.selection``): its error
rate holds although the best is picked from the same data. Families not below the best
are *tied with the best*.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lrbench.report import selection, stats
from lrbench.report.frames import ReportFrames, picks
from lrbench.report.metric import ACCURACY, Metric
from lrbench.train.schedules import FAMILIES

ALPHA = selection.ALPHA
BASELINE = "constant"  # the family every schedule must beat to be worth its parameters
MIN_SEEDS = 2  # confirm runs per family for a confirm-based ranking


@dataclass
class Standing:
    """One family's place in the ranking."""

    family: str
    trial: int  # its best search trial (the best of its repeats' picks)
    params: str
    search_val: float  # its picks' validation accuracy (the mean over repeats' picks)
    search_test: float  # ... and their test accuracy
    confirm: stats.Interval  # test accuracy over the units of its confirm runs (n = 0: none)
    runs: dict[object, float] = field(default_factory=dict)  # unit -> test accuracy
    score: float = math.nan  # what it is ranked by (confirm mean, or search validation)
    p_vs_best: float = math.nan  # Tukey-adjusted; NaN for the best itself, or untestable
    test: str = ""  # which test gave p_vs_best
    tied_with_best: bool = True
    vs_baseline: stats.Interval | None = None  # score minus the baseline's, with its CI
    picks: int = 1  # configurations re-trained: one per repeat of the tuning
    confirm_runs: int = 0  # confirm runs behind ``confirm``
    # The winner's curse, on the metric that selected (validation) and on test: each pick's
    # search run minus its mean on fresh seeds, averaged over the picks.
    curse_val: float = math.nan
    curse_test: float = math.nan


@dataclass
class Ranking:
    basis: str  # "confirm", "search", or "none" (nothing completed)
    standings: list[Standing]  # best first; on the confirm basis, unconfirmed ones last
    val_size: int | None = None  # validation images of one run (search basis)
    seeds: int = 0  # the fewest confirm units among ranked families (confirm basis)
    protocol: str = "search"  # "compare": equal budgets per family and repeat
    repeats: int = 1  # tunings behind the picks (compare protocol)
    unit: str = "seed"  # what the confirm intervals and tests run over: "seed" or "repeat"
    budgets: dict[str, int] = field(default_factory=dict)  # search trials spent per family
    metric: Metric = ACCURACY  # what the scores are (a regression's: −MSE)
    has_p_values: bool = True  # whether the standings' p_vs_best were computed (else NaN)

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
        """One search run's validation accuracy's binomial standard error (none for a
        score that is not a fraction of examples)."""
        if not self.val_size or math.isnan(accuracy) or not self.metric.bounded:
            return math.nan
        return math.sqrt(accuracy * (1 - accuracy) / self.val_size)


def ranking_of(frames: ReportFrames, p_values: bool = False) -> Ranking:
    """``rank(frames.trials)``, computed once per trials frame: the leaderboard, the
    verdict and every figure ask for it.

    Its p-values only with ``p_values``: each is a numerical integral (~6 ms), and the
    report ranks every study before its figures can start, which need only the verdicts;
    the summary asks for them later, while the figures draw (they are then added to the
    ranking computed before)."""
    cached = frames.cache.get("ranking")
    if cached is None or cached[0] is not frames.trials:  # replaced trials: rank again
        ranking = rank(frames.trials, frames.metric, p_values)
        cached = frames.cache["ranking"] = (frames.trials, ranking)
    ranking = cached[1]
    if p_values and not ranking.has_p_values:
        _test_against_best(ranking, p_values=True)
    return ranking


def rank(trials: pd.DataFrame, metric: Metric = ACCURACY, p_values: bool = True) -> Ranking:
    """One study's families, best first (``trials``: that study's frame, confirm runs in;
    ``metric``: what its scores are, which decides whether single runs have a binomial
    standard error; ``p_values=False``: the tests' verdicts without their p-values, each
    a numerical integral, which are then NaN)."""
    best = picks(trials) if len(trials) else trials
    if best.empty:
        return Ranking("none", [], metric=metric)
    runs = stats.confirm_runs(trials, best)
    standings = [_standing(family, chosen, runs[runs["family"] == family])
                 for family, chosen in best.groupby("family", sort=False)]
    confirmed = [s for s in standings if s.confirm.n >= MIN_SEEDS]
    val_sizes = best["val_size"].dropna() if "val_size" in best else pd.Series(dtype=int)
    val_size = int(val_sizes.min()) if len(val_sizes) else None
    repeats = int(best["repeat"].nunique()) if "repeat" in best else 0
    context = {"protocol": "compare" if repeats else "search", "repeats": max(1, repeats),
               "unit": "repeat" if repeats > 1 else "seed", "budgets": spent_budgets(trials),
               "metric": metric}
    if len(confirmed) >= 2:
        ranking = Ranking("confirm", [], val_size, min(s.confirm.n for s in confirmed),
                          **context)
        for s in confirmed:
            s.score = s.confirm.mean
        rest = [s for s in standings if s.confirm.n < MIN_SEEDS]
        for s in rest:
            s.score, s.tied_with_best = s.search_val, False
        ranking.standings = _ordered(confirmed) + _ordered(rest)
    else:
        ranking = Ranking("search", [], val_size, **context)
        for s in standings:
            s.score = s.search_val
        ranking.standings = _ordered(standings)
    _test_against_best(ranking, p_values)
    _against_baseline(ranking)
    return ranking


def spent_budgets(trials: pd.DataFrame) -> dict[str, int]:
    """Search trials each family spent: finished, pruned, diverged or failed by its own
    error (a trial failed by a dead worker or a stop was re-run, and counts once)."""
    search = trials[trials["role"] == "search"]
    if "spent" in search:
        search = search[search["spent"].astype(bool)]
    return {str(f): int(n) for f, n in search.groupby("family").size().items() if f}


def _standing(family: str, picks: pd.DataFrame, runs: pd.DataFrame) -> Standing:
    """A family's standing from its picks (one per repeat) and their confirm runs."""
    picks = picks.sort_values("val_accuracy", ascending=False)
    top = picks.iloc[0]
    runs = runs.dropna(subset=["test_accuracy"])
    units = selection.by_unit(_by_seed(family, runs))
    curses = {"val": [], "test": []}
    # (three columns, not every stored one: selecting rows of the full frames, once per
    # pick, was a third of the ranking's time)
    scores = runs[["confirm_of", "val_accuracy", "test_accuracy"]]
    for number, val, test in zip(picks["number"], picks["val_accuracy"],
                                 picks["test_accuracy"]):
        mine = scores[scores["confirm_of"] == number]
        if len(mine):
            curses["val"].append(val - float(mine["val_accuracy"].mean()))
            curses["test"].append(test - float(mine["test_accuracy"].mean()))
    return Standing(family, int(top["number"]), top["params"] or "(fixed)",
                    float(picks["val_accuracy"].mean()), float(picks["test_accuracy"].mean()),
                    stats.mean_ci(list(units.values())), units, picks=len(picks),
                    confirm_runs=len(runs),
                    curse_val=float(np.mean(curses["val"])) if curses["val"] else math.nan,
                    curse_test=float(np.mean(curses["test"])) if curses["test"] else math.nan)


def _by_seed(family: str, runs: pd.DataFrame) -> dict[tuple[object, object], float]:
    """(repeat, confirm index) -> test accuracy. Runs stored without their index (older
    releases) get keys of their own family, so they never pair with another family's."""
    repeats = runs["repeat"] if "repeat" in runs else pd.Series([pd.NA] * len(runs))
    return {(None if pd.isna(repeat) else int(repeat),
             int(index) if not pd.isna(index) else (family, i)): float(accuracy)
            for i, (repeat, index, accuracy) in enumerate(zip(repeats, runs["confirm_index"],
                                                              runs["test_accuracy"]))}


def _ordered(standings: list[Standing]) -> list[Standing]:
    registry = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(standings, key=lambda s: (-s.score, registry.get(s.family, 99), s.family))


def _pair(a: Standing, b: Standing) -> tuple[list[float], list[float]]:
    common = sorted(set(a.runs) & set(b.runs), key=repr)
    return [a.runs[i] for i in common], [b.runs[i] for i in common]


def _test_against_best(ranking: Ranking, p_values: bool) -> None:
    ranked = ranking.ranked
    ranking.has_p_values = p_values
    if not ranked:
        return
    if ranking.basis == "confirm":
        result = selection.block_test({s.family: s.runs for s in ranked}, with_p=p_values)
        name = f"{selection.PROCEDURE} (blocks: {ranking.unit}s)"
    else:
        result = selection.single_run_test(
            {s.family: s.score for s in ranked},
            {s.family: ranking.standard_error(s.score) for s in ranked}, with_p=p_values)
        name = f"{selection.PROCEDURE} (single runs, binomial errors)"
    for s in ranked:
        s.p_vs_best = result.p_values.get(s.family, math.nan)
        s.tied_with_best = result.tied(s.family)
        s.test = name if s.family != result.best else ""


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
            half = statistics.NormalDist().inv_cdf(0.5 + stats.CONFIDENCE / 2) * se
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
    half = stats.t_quantile(0.5 + stats.CONFIDENCE / 2, dof) * math.sqrt(va + vb)
    return stats.Interval(a.confirm.mean - b.confirm.mean, half, min(len(xa), len(xb)))

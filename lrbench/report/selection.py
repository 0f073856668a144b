"""Which families are below the best, at an error rate that holds although the best is
picked from the same data.

Testing every family against the observed maximum with ordinary paired tests (even
Holm-corrected) is biased: the maximum of k equal families sits above their common mean
by construction. Simulated with 9 equal families and 5 seeds, that rule declared some
family "below" 10.9% of the time at a stated 5%.

Here "below the best" is Tukey's honestly significant difference: family i is below when
the gap between the best mean and its mean exceeds what the studentized range of k means
allows at level alpha. Tukey's procedure holds its family-wise error rate over all k(k-1)/2
pairs at once, so it holds for the pairs (best, i) whichever family turns out best: under
equal families the chance of any "below" is at most alpha (tests/report/test_selection.py
shows it by simulation).

- **Replicated scores** (confirm runs): a randomized block design. The blocks are the units
  every family was measured on — seed i (all families' run i share one batch order) or,
  with repeated tuning, repeat r (the unit then carries the tuning's variance too). The
  error variance is the residual mean square of the two-way ANOVA without interaction,
  with (k-1)(n-1) degrees of freedom.
- **Single runs** (no confirm runs): each score's standard error is known (binomial on the
  validation set), and the range is taken with infinite degrees of freedom
  (Tukey-Kramer's form for unequal standard errors).

Adjusted p-values are the studentized range's upper tail at the observed gap.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np

from lrbench.report import normal_range

ALPHA = 0.05
PROCEDURE = "Tukey's HSD against the best"


@dataclass(frozen=True)
class BestTest:
    """The test of every family against the best: adjusted p-values and the verdicts."""

    best: str
    p_values: dict[str, float]  # family -> adjusted p that it is below the best; NaN: untestable
    families: int  # k, the number of means compared
    dof: float  # error degrees of freedom (inf for known standard errors)
    units: int = 0  # blocks every family was measured on (0 for single runs)
    below: set[str] = field(default_factory=set)

    def tied(self, family: str) -> bool:
        return family not in self.below


def block_test(scores: Mapping[str, Mapping[Hashable, float]], alpha: float = ALPHA,
               with_p: bool = True) -> BestTest:
    """Families' replicated scores (family -> unit -> score), best = highest mean over the
    units all families share. Fewer than two shared units: every p is NaN (untestable).
    ``with_p=False`` decides without the p-values (each costs a numerical integral):
    for simulations."""
    families = list(scores)
    shared = set.intersection(*(set(s) for s in scores.values())) if scores else set()
    units = sorted(shared, key=repr)
    matrix = np.array([[scores[f][u] for u in units] for f in families], dtype=float)
    k, n = len(families), len(units)
    means = matrix.mean(axis=1) if n else np.full(k, math.nan)
    best = families[int(np.nanargmax(means))] if n else families[0]
    if n < 2 or k < 2:
        return BestTest(best, {f: math.nan for f in families if f != best}, k, math.nan, n)
    residual = (matrix - matrix.mean(axis=1, keepdims=True) - matrix.mean(axis=0, keepdims=True)
                + matrix.mean())
    dof = (k - 1) * (n - 1)
    standard_error = math.sqrt(float((residual ** 2).sum()) / dof / n)
    gaps = {f: float(means[families.index(best)] - means[i]) for i, f in enumerate(families)
            if f != best}
    return _decide(best, gaps, {f: standard_error for f in gaps}, k, dof, n, alpha, with_p)


def single_run_test(scores: Mapping[str, float], standard_errors: Mapping[str, float],
                    alpha: float = ALPHA, with_p: bool = True) -> BestTest:
    """One score per family with a known standard error each (e.g. binomial);
    ``with_p`` as for ``block_test``."""
    families = list(scores)
    best = max(families, key=lambda f: scores[f])
    gaps = {f: scores[best] - scores[f] for f in families if f != best}
    # the studentized range compares (gap) / sqrt((se_best^2 + se_i^2) / 2) with q
    errors = {f: math.sqrt((standard_errors[best] ** 2 + standard_errors[f] ** 2) / 2)
              for f in gaps}
    return _decide(best, gaps, errors, len(families), math.inf, 0, alpha, with_p)


def by_unit(runs: Mapping[tuple[Hashable, Hashable], float]) -> dict[Hashable, float]:
    """A family's confirm runs, (repeat, seed index) -> score, as the test's units.

    One tuning (one repeat): each seed is a unit. Repeated tuning: each repeat is a unit,
    scored by the mean over its seeds, so the unit's spread includes the tuning's (another
    repeat picks another configuration), not only the seeds'.
    """
    repeats = {repeat for repeat, _ in runs}
    if len(repeats) < 2:
        return {seed: score for (_, seed), score in runs.items()}
    totals: dict[Hashable, list[float]] = {}
    for (repeat, _), score in runs.items():
        totals.setdefault(repeat, []).append(score)
    return {repeat: float(np.mean(values)) for repeat, values in totals.items()}


@functools.lru_cache(maxsize=256)
def critical_range(families: int, dof: float, alpha: float = ALPHA) -> float:
    """The studentized range's upper alpha point, q(alpha; k, dof)."""
    if math.isinf(dof):
        return normal_range.critical(alpha, families)
    from scipy import stats  # (not at the top: see range_sf)

    return float(stats.studentized_range.ppf(1 - alpha, families, dof))


def range_sf(q: float, families: int, dof: float) -> float:
    """The studentized range's upper tail at q. Single runs (infinite dof) take it from
    ``normal_range``, which spares every sweep's closing table (it runs their test) the
    import of scipy.stats."""
    if math.isinf(dof):
        return normal_range.sf(q, families)
    from scipy import stats

    return float(stats.studentized_range.sf(q, families, dof))


def _decide(best: str, gaps: Mapping[str, float], errors: Mapping[str, float], k: int,
            dof: float, units: int, alpha: float, with_p: bool) -> BestTest:
    """Below: the gap exceeds q(alpha; k, dof) standard errors (the HSD); p: the range's
    tail at the observed gap (p < alpha exactly when below)."""
    q = critical_range(k, dof, alpha) if gaps else math.nan  # (one family: nothing to test)
    p_values: dict[str, float] = {}
    below = set()
    for family, gap in gaps.items():
        error = errors[family]
        if math.isnan(gap) or math.isnan(error):
            p_values[family] = math.nan
            continue
        if error == 0:  # no spread at all: any gap is certain, none is a tie
            p_values[family] = 0.0 if gap > 0 else 1.0
        else:
            p_values[family] = range_sf(gap / error, k, dof) if with_p else math.nan
        if gap > q * error:
            below.add(family)
    return BestTest(best, p_values, k, dof, units, below)

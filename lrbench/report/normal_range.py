"""The range of k independent standard normals: the studentized range with infinite degrees
of freedom, which the single-run test against the best needs (its standard errors are known).

scipy.stats has it (``studentized_range`` with ``df=inf``), but importing scipy.stats costs
~0.55 s of CPU, and every ``lrbench sweep`` imports the single-run test for its closing
table. Numpy and one integral do it: with Φ and φ the standard normal's distribution and
density, the range R of k normals exceeds q with probability

    P(R > q) = k ∫ φ(z) [Φ(z)^(k-1) - (Φ(z) - Φ(z - q))^(k-1)] dz

(the smallest of the k sits at z; the rest within z + q, or not). Written as
a^(k-1) - b^(k-1) = (a - b) Σ_j a^(k-2-j) b^j with a - b = Φ(z - q), every term is positive:
no cancellation, so tail probabilities far below 1e-16 keep their digits.
tests/report/test_normal_range.py checks both functions against scipy.stats and the
published table.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# The integrand is a smooth, Gaussian-like bump centred near q/2 (its two normal factors
# meet there), negligible beyond 12 units from it: e^-144 of its peak. On such functions
# the trapezoid rule converges exponentially; a step of 0.01 is ~1e-15 from the exact value.
HALF_WIDTH = 12.0
STEP = 0.01


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x), accurate in the far lower tail (erfc, not 1 + erf)."""
    return 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in x])


def sf(q: float, k: int) -> float:
    """P(R > q) for the range R of k independent standard normals (k >= 2)."""
    if k < 2:
        raise ValueError(f"the range needs at least two means, but got k={k}")
    if math.isnan(q):
        return math.nan
    if q <= 0:
        return 1.0
    z = np.arange(q / 2 - HALF_WIDTH, q / 2 + HALF_WIDTH + STEP / 2, STEP)
    below = _normal_cdf(z)  # Φ(z): a
    gap = _normal_cdf(z - q)  # Φ(z - q): a - b, exact
    within = below - gap  # Φ(z) - Φ(z - q): b
    powers = sum(below ** (k - 2 - j) * within ** j for j in range(k - 1))
    density = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return float(min(1.0, k * STEP * np.sum(density * gap * powers)))


@functools.lru_cache(maxsize=256)
def critical(alpha: float, k: int) -> float:
    """q with P(R > q) = alpha: the upper alpha point of the range, by bisection
    (``sf`` falls from 1 at q = 0 to ~1e-50 by q = 25 for any k up to a thousand)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), but got alpha={alpha}")
    low, high = 0.0, 25.0
    while high - low > 1e-12 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if sf(middle, k) > alpha else (low, middle)
    return (low + high) / 2

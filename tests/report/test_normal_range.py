"""Tests for lrbench.report.normal_range, against three outside references: the closed form
for two means, scipy.stats' studentized range with infinite degrees of freedom, and the
published table of its upper 5% points."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from conftest import REPO
from scipy import stats

from lrbench.report import normal_range


@pytest.mark.parametrize("q", [0.1, 1.0, 2.77, 5.0, 9.0, 15.0, 20.0])
def test_two_means_match_the_closed_form_far_into_the_tail(q: float):
    # The range of two standard normals is |Z1 - Z2| ~ |N(0, 2)|: P(R > q) = erfc(q / 2),
    # 3e-45 at q = 20, where 1 - cdf would have lost every digit.
    assert normal_range.sf(q, 2) == pytest.approx(math.erfc(q / 2), rel=1e-12)


@pytest.mark.parametrize("k", [3, 5, 11, 16])
@pytest.mark.parametrize("q", [0.05, 1.0, 2.0, 3.3, 5.0, 7.0])
def test_the_tail_matches_scipys_studentized_range(k: int, q: float):
    # (scipy computes the tail as 1 - cdf: beyond q = 7 its own error exceeds 1e-9)
    assert normal_range.sf(q, k) == pytest.approx(
        stats.studentized_range.sf(q, k, math.inf), rel=1e-9)


@pytest.mark.parametrize(("k", "table"), [(2, 2.772), (3, 3.314), (4, 3.633), (5, 3.858),
                                          (6, 4.030), (8, 4.286), (10, 4.474), (20, 5.012)])
def test_critical_points_match_the_published_table_and_scipy(k: int, table: float):
    # q(0.05; k, inf) from the studentized range tables (Harter 1960; any statistics text)
    q = normal_range.critical(0.05, k)
    assert q == pytest.approx(table, abs=1e-3)
    assert q == pytest.approx(stats.studentized_range.ppf(0.95, k, math.inf), rel=1e-9)
    assert normal_range.sf(q, k) == pytest.approx(0.05, rel=1e-9)


def test_edges_and_bad_arguments():
    assert normal_range.sf(0.0, 3) == 1.0 and normal_range.sf(-1.0, 3) == 1.0
    assert math.isnan(normal_range.sf(math.nan, 3))
    with pytest.raises(ValueError, match="k=1"):
        normal_range.sf(1.0, 1)
    with pytest.raises(ValueError, match="alpha=1.5"):
        normal_range.critical(1.5, 3)


@pytest.mark.slow  # a whole process
def test_a_sweeps_closing_table_modules_leave_scipy_stats_unimported():
    """What this module is for: the closing table's imports stay ~0.55 s of CPU lighter."""
    script = ("import sys, lrbench.cli, lrbench.report.frames, lrbench.report.ranking, "
              "lrbench.report.summary; print('scipy.stats' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr

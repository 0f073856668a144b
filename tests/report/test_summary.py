"""Tests for lrbench.report.summary's words: what the page and the terminal say of a place."""

from __future__ import annotations

import math

import pytest

from lrbench.report import stats
from lrbench.report.ranking import Standing
from lrbench.report.summary import versus_best


def standing(p: float, tied: bool) -> Standing:
    return Standing("step", 3, "gamma=0.1", 0.9, 0.89, stats.Interval(math.nan, math.nan, 0),
                    p_vs_best=p, tied_with_best=tied)


@pytest.mark.parametrize("place, p, tied, page, terminal", [
    (1, math.nan, True, "best", "best"),
    (2, 0.4123, True, "tied (p = 0.41)", "tied p=0.41"),
    (3, 0.00312, False, "below (p = 0.0031)", "below p=0.0031"),
    (2, math.nan, True, "tied (untestable)", "tied?"),
    (None, 0.5, True, "–", "-"),  # not ranked (no completed pick)
])
def test_the_page_and_the_terminal_say_the_same_verdict(place, p, tied, page, terminal):
    s = standing(p, tied)
    assert versus_best(s, place) == page
    assert versus_best(s, place, compact=True) == terminal

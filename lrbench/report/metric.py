"""What a study's score is, in words and numbers: accuracy, or a regression's −MSE.

Every trial's score is "higher is better" (``lrbench.train.losses``): the accuracy of a
classifier, or the negative mean squared error of a regression. The ranking, the verdict
and the budget curves work on the score alone; only what the page and the terminal *say*
depends on which it is: its name, and how a value or a difference is written (accuracy in
per cent and percentage points, −MSE as a plain number in the targets' units squared).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lrbench.report.stats import Interval


@dataclass(frozen=True)
class Metric:
    name: str  # "accuracy", "−MSE"
    short: str  # in narrow table headers: "acc", "−MSE"
    percent: bool  # written as a percentage (differences in points)
    bounded: bool  # a fraction in [0, 1]: a binomial standard error, a chance level

    def text(self, score: float | None, digits: int = 2) -> str:
        """One score: "98.12%" or "-0.01234"; "–" for a missing one."""
        if score is None or math.isnan(score):
            return "–"
        return f"{100 * score:.{digits}f}%" if self.percent else f"{score:.4g}"

    def fraction(self, score: float | None) -> str:
        """A score in a terminal table: accuracy as a fraction to 4 places, −MSE to 4
        digits; "-" for none."""
        if score is None:
            return "-"
        return f"{score:.4f}" if self.percent else f"{score:.4g}"

    def interval(self, interval: Interval) -> str:
        """A confirm interval: "98.12 ± 0.10" (per cent, the sign left to the caller's
        header or text) or "-0.0123 ± 0.0011"."""
        return interval.text() if self.percent else interval.text(scale=1.0, digits=4)

    def number(self, score: float) -> str:
        """A score without its unit, as a table column under a header naming it."""
        return f"{100 * score:.2f}" if self.percent else f"{score:.4g}"

    def difference(self, delta: float, sign: bool = True) -> str:
        """A difference of scores: "+0.52" (points) or "+0.0012"."""
        if math.isnan(delta):
            return "–"
        plus = "+" if sign else ""
        return f"{100 * delta:{plus}.2f}" if self.percent else f"{delta:{plus}.3g}"

    @property
    def unit(self) -> str:
        """What ``difference`` counts: " points" of accuracy, or "" (the score's own)."""
        return " points" if self.percent else ""

    def axis(self, split: str) -> str:
        """An axis label: "val accuracy", "test −MSE"."""
        return f"{split} {self.name}"

    def tick(self, score: float) -> str:
        return f"{100 * score:.1f}%" if self.percent else f"{score:.3g}"


ACCURACY = Metric("accuracy", "acc", percent=True, bounded=True)
NEG_MSE = Metric("−MSE", "−MSE", percent=False, bounded=False)


def metric_of(config: dict[str, Any]) -> Metric:
    """A study's metric, from its stored setup (a study before losses: accuracy)."""
    return NEG_MSE if config.get("loss") == "mse" else ACCURACY

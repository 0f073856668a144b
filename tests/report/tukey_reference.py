"""An independent reference for the test against the best, for the report's tests:
statsmodels' two-way ANOVA gives the block design's error term, scipy's studentized range
the adjusted p-values."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm


def tukey_block_p(by_family: dict[str, list[float]]) -> dict[str, float]:
    """family -> p that it is below the best, runs i of every family in one block."""
    frame = pd.DataFrame([{"family": f, "block": i, "score": v}
                          for f, values in by_family.items() for i, v in enumerate(values)])
    table = anova_lm(ols("score ~ C(family) + C(block)", frame).fit())
    mse, dof = table.loc["Residual", "mean_sq"], table.loc["Residual", "df"]
    n = len(next(iter(by_family.values())))
    means = {f: sum(v) / len(v) for f, v in by_family.items()}
    best = max(means, key=means.get)
    return {f: float(stats.studentized_range.sf((means[best] - m) / math.sqrt(mse / n),
                                                 len(means), dof))
            for f, m in means.items() if f != best}

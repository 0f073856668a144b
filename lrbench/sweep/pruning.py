"""Pruning decided inside a slot's stack: Optuna's median rule for all members at once.

Optuna's ``MedianPruner`` asks the storage for the study's completed trials on every
``should_prune`` call, and needs every intermediate value written first: one locked
write and one read per trial-epoch. ``StackPruner`` reads the completed curves once per
epoch boundary and applies the same rule to every member of the stack
(``optuna.pruners.PercentilePruner.prune`` at the 50th percentile, interval 1):

- no pruning before ``n_startup_trials`` trials have completed, or at a step below
  ``n_warmup_steps``;
- a trial whose best value so far is NaN is pruned;
- otherwise it is pruned when its best value so far is below the median of the
  completed trials' values at the same step (none there: not pruned).

tests/sweep/test_pruning.py checks the decisions against ``MedianPruner`` on the same history.
Hyperband keeps Optuna's own pruner, per trial (its rungs live in the storage).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import TrialState


class StackPruner:
    """``MedianPruner(n_startup_trials, n_warmup_steps)`` for a whole stack per epoch."""

    def __init__(self, n_startup_trials: int = 5, n_warmup_steps: int = 0,
                 percentile: float = 50.0) -> None:
        self.n_startup_trials, self.n_warmup_steps = n_startup_trials, n_warmup_steps
        self.percentile = percentile
        self._completed = 0
        self._by_step: dict[int, np.ndarray] = {}

    @classmethod
    def like(cls, pruner: optuna.pruners.BasePruner) -> StackPruner | None:
        """The stack's twin of a median pruner; None for any other pruner."""
        if not isinstance(pruner, optuna.pruners.MedianPruner):
            return None
        return cls(pruner._n_startup_trials, pruner._n_warmup_steps)

    def refresh(self, study: optuna.Study) -> None:
        """Read the completed trials' curves (one storage read for the whole stack)."""
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        self._completed = len(completed)
        by_step: dict[int, list[float]] = {}
        for trial in completed:
            for step, value in trial.intermediate_values.items():
                by_step.setdefault(step, []).append(value)
        self._by_step = {step: np.array(values, dtype=float)
                         for step, values in by_step.items()}

    def threshold(self, step: int) -> float:
        """The median of the completed trials' values at ``step``; NaN if none."""
        values = self._by_step.get(step)
        if values is None or len(values) == 0:
            return math.nan
        # maximize: the (100 - p)th percentile, as PercentilePruner computes it
        return float(np.nanpercentile(values, 100 - self.percentile))

    def prune(self, step: int, values_so_far: Sequence[float]) -> bool:
        """Whether a trial with these per-epoch values (steps 0..``step``) is pruned now."""
        if self._completed == 0 or self._completed < self.n_startup_trials:
            return False
        if step < self.n_warmup_steps:
            return False
        best = float(np.nanmax(np.asarray(values_so_far, dtype=float))) \
            if not all(math.isnan(v) for v in values_so_far) else math.nan
        if math.isnan(best):
            return True
        median = self.threshold(step)
        return not math.isnan(median) and best < median

"""Pruning decided inside a slot's stack: Optuna's rules for all members at once.

Optuna's pruners ask the storage for the study's trials on every ``should_prune`` call,
and need every intermediate value written first: one locked write and one read per
trial-epoch. The twins here read the study at most once per stack and epoch boundary,
and apply the same rule to every member of the stack. ``stack_pruner`` picks the twin.

``StackMedian`` is ``optuna.pruners.PercentilePruner.prune`` at the 50th percentile,
interval 1:

- no pruning before ``n_startup_trials`` trials have completed, or at a step below
  ``n_warmup_steps``;
- a trial whose best value so far is NaN is pruned;
- otherwise it is pruned when its best value so far is below the median of the
  completed trials' values at the same step (none there: not pruned).

``StackHyperband`` is ``HyperbandPruner`` (its docstring has the rule).

Under the compare protocol a trial is judged only against trials of its own cell
(family, repeat): a family is never cut for trailing another family early, and repeats
stay independent. Trials of other sweeps have no cell (None), and are all one cell.

tests/sweep/test_pruning.py checks both against Optuna's own pruners on the same history.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import optuna
from optuna.trial import TrialState

from lrbench.store.record import Cell, batched_writes, cell_of, step_of

if TYPE_CHECKING:  # for annotations only: the engine imports torch, this module need not
    from lrbench.train.batched import EpochRow


class StackPruner(Protocol):
    def decide(self, study: optuna.Study, rows: Sequence[EpochRow],
               trial_ids: Mapping[Hashable, int],
               cells: Mapping[Hashable, Cell | None] | None = None) -> list[Hashable]:
        """The members to prune after this epoch. ``rows`` are keyed by trial number, in
        stack order; ``trial_ids`` maps those numbers to storage ids; ``cells`` to their
        compare cells (None: all one cell)."""


def stack_pruner(pruner: optuna.pruners.BasePruner, study_name: str) -> StackPruner | None:
    """The stack's twin of the study's pruner; None for no pruning."""
    if isinstance(pruner, optuna.pruners.NopPruner):
        return None
    if isinstance(pruner, optuna.pruners.MedianPruner):
        return StackMedian.like(pruner)
    if isinstance(pruner, optuna.pruners.HyperbandPruner):
        return StackHyperband.like(pruner, study_name)
    raise TypeError(f"no stack twin for {type(pruner).__name__}")


class StackMedian:
    """``MedianPruner(n_startup_trials, n_warmup_steps)`` for a whole stack per epoch."""

    def __init__(self, n_startup_trials: int = 5, n_warmup_steps: int = 0,
                 percentile: float = 50.0) -> None:
        self.n_startup_trials, self.n_warmup_steps = n_startup_trials, n_warmup_steps
        self.percentile = percentile
        self._completed: dict[Cell | None, int] = {}
        self._by_step: dict[tuple[Cell | None, int], np.ndarray] = {}

    @classmethod
    def like(cls, pruner: optuna.pruners.MedianPruner) -> StackMedian:
        return cls(pruner._n_startup_trials, pruner._n_warmup_steps)

    def refresh(self, study: optuna.Study) -> None:
        """Read the completed trials' curves (one storage read for the whole stack)."""
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        self._completed = {}
        by_step: dict[tuple[Cell | None, int], list[float]] = {}
        for trial in completed:
            cell = cell_of(trial)
            self._completed[cell] = self._completed.get(cell, 0) + 1
            for step, value in trial.intermediate_values.items():
                by_step.setdefault((cell, step), []).append(value)
        self._by_step = {key: np.array(values, dtype=float) for key, values in by_step.items()}

    def threshold(self, step: int, cell: Cell | None = None) -> float:
        """The median of the completed trials' values at ``step`` (of ``cell``); NaN if none."""
        values = self._by_step.get((cell, step))
        if values is None or len(values) == 0:
            return math.nan
        # maximize: the (100 - p)th percentile, as PercentilePruner computes it
        return float(np.nanpercentile(values, 100 - self.percentile))

    def prune(self, step: int, values_so_far: Sequence[float],
              cell: Cell | None = None) -> bool:
        """Whether a trial with these per-epoch values (up to ``step``) is pruned now."""
        completed = self._completed.get(cell, 0)
        if completed == 0 or completed < self.n_startup_trials:
            return False
        if step < self.n_warmup_steps:
            return False
        best = float(np.nanmax(np.asarray(values_so_far, dtype=float))) \
            if not all(math.isnan(v) for v in values_so_far) else math.nan
        if math.isnan(best):
            return True
        median = self.threshold(step, cell)
        return not math.isnan(median) and best < median

    def decide(self, study: optuna.Study, rows: Sequence[EpochRow],
               trial_ids: Mapping[Hashable, int],
               cells: Mapping[Hashable, Cell | None] | None = None) -> list[Hashable]:
        # Only rows past the warm-up can be pruned: read the study only for them.
        candidates = [row for row in rows
                      if not row.last and step_of(row.epoch) >= self.n_warmup_steps]
        if not candidates:
            return []
        self.refresh(study)  # one read for the whole stack
        cells = cells or {}
        return [row.key for row in candidates
                if self.prune(step_of(row.epoch), row.curve, cells.get(row.key))]


class StackHyperband:
    """``HyperbandPruner(min_resource, max_resource: int, reduction_factor, bootstrap_count)``
    for a whole stack per epoch.

    Optuna's rule: each trial belongs to one bracket, fixed by the CRC-32 of
    "<study name>_<trial number>"; bracket *s* is a successive-halving pruner whose rung
    *r* closes at step ``min_resource * eta**(s + r)``. A trial reaching that step records
    its value there (the system attribute ``completed_rung_<r>``, which other slots and
    Optuna itself read) and is promoted when the value is in the top 1/eta of the values
    its bracket's trials (any state) recorded at that rung, itself included; among the
    first eta - 1 it must be the best. A NaN is pruned.

    A trial's rung is kept here (only its own slot writes it); the study is read only
    when a member has reached the next rung's step, once for the stack. Members decide
    in stack order, each seeing the values recorded before it, as sequential
    ``should_prune`` calls would.
    """

    def __init__(self, study_name: str, min_resource: int, max_resource: int,
                 reduction_factor: int = 3, bootstrap_count: int = 0) -> None:
        self.study_name, self.min_resource = study_name, min_resource
        self.eta, self.bootstrap_count = reduction_factor, bootstrap_count
        brackets = math.floor(math.log(max_resource / min_resource, reduction_factor)) + 1
        # each bracket's share of trials (Hyperband's n per bracket, as Optuna sets it)
        self.budgets = [math.ceil(brackets * reduction_factor ** (brackets - 1 - s)
                                  / (brackets - s)) for s in range(brackets)]
        self._rung: dict[int, int] = {}  # trial number -> its next rung to close
        # (cell, bracket, rung) -> the values recorded there
        self._recorded: dict[tuple[Cell | None, int, int], list[float]] = {}

    @classmethod
    def like(cls, pruner: optuna.pruners.HyperbandPruner, study_name: str) -> StackHyperband:
        max_resource = pruner._max_resource
        if not isinstance(max_resource, int):
            raise TypeError("the stack's Hyperband needs max_resource as an int, not 'auto'")
        return cls(study_name, pruner._min_resource, max_resource, pruner._reduction_factor,
                   pruner._bootstrap_count)

    def bracket(self, number: int) -> int:
        n = binascii.crc32(f"{self.study_name}_{number}".encode()) % sum(self.budgets)
        for bracket, budget in enumerate(self.budgets):
            n -= budget
            if n < 0:
                return bracket
        raise AssertionError("unreachable: n < sum(budgets)")

    def promotion_step(self, number: int) -> int:
        """The step at which ``number`` closes its next rung."""
        return self.min_resource * self.eta ** (self.bracket(number) + self._rung.get(number, 0))

    def refresh(self, study: optuna.Study) -> None:
        """Read every trial's recorded rung values (one storage read for the whole stack)."""
        recorded: dict[tuple[Cell | None, int, int], list[float]] = {}
        for trial in study.get_trials(deepcopy=False):
            if _rung_key(0) not in trial.system_attrs:
                continue  # it recorded no rung yet
            bracket, cell, rung = self.bracket(trial.number), cell_of(trial), 0
            while (key := _rung_key(rung)) in trial.system_attrs:
                recorded.setdefault((cell, bracket, rung), []).append(trial.system_attrs[key])
                rung += 1
        self._recorded = recorded

    def prune(self, number: int, step: int, value: float,
              cell: Cell | None = None) -> tuple[bool, dict[str, float]]:
        """Whether trial ``number`` (of ``cell``), at ``step`` with this value, is pruned
        now; and the rung values it records on the way (system attribute name -> value)."""
        bracket, records = self.bracket(number), {}
        while step >= self.promotion_step(number):
            if math.isnan(value):
                return True, records
            rung = self._rung.get(number, 0)
            competing = self._recorded.setdefault((cell, bracket, rung), [])
            competing.append(value)  # recorded before the comparison, as Optuna does
            records[_rung_key(rung)] = value
            if len(competing) <= self.bootstrap_count or not _promotable(value, competing,
                                                                          self.eta):
                return True, records
            self._rung[number] = rung + 1
        return False, records

    def decide(self, study: optuna.Study, rows: Sequence[EpochRow],
               trial_ids: Mapping[Hashable, int],
               cells: Mapping[Hashable, Cell | None] | None = None) -> list[Hashable]:
        due = [row for row in rows
               if not row.last and step_of(row.epoch) >= self.promotion_step(row.key)]
        if not due:
            return []
        self.refresh(study)
        pruned, storage, cells = [], study._storage, cells or {}
        with batched_writes(storage):
            for row in due:
                prune, records = self.prune(row.key, step_of(row.epoch), row.val_accuracy,
                                            cells.get(row.key))
                for name, value in records.items():
                    storage.set_trial_system_attr(trial_ids[row.key], name, value)
                if prune:
                    pruned.append(row.key)
        return pruned


def _rung_key(rung: int) -> str:
    return f"completed_rung_{rung}"  # Optuna's SuccessiveHalvingPruner's name for it


def _promotable(value: float, competing: list[float], eta: int) -> bool:
    """In the top 1/eta of ``competing`` (maximizing); the best of the first eta - 1."""
    index = max(len(competing) // eta - 1, 0)
    return value >= sorted(competing)[-(index + 1)]

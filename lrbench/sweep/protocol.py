"""How a sweep spends its trials over the families: its protocol.

- **search** (``[study] protocol = "search"``, the default): one sampler over the family and
  its parameters, to find the best configuration. The sampler spends trials where it
  finds promise, so the families' budgets are unequal: good for finding a winner, not for
  ranking families.
- **compare**: every family gets exactly ``budget`` trials in each of ``repeats``
  independent tunings. A trial belongs to a *cell*, (family, repeat):

  - the asking slot assigns new trials to the cells with the fewest spent trials, under
    the claim lock, so all families advance together and no cell exceeds its budget;
  - a trial is *spent* once asked, whatever its end: finished, pruned, diverged, running,
    queued, or failed by its own error. A trial failed by a dead worker or a stop is not:
    its re-queued copy is;
  - the sampler of a cell sees only that cell's trials (``CellSampler``), and so does the
    pruner (``lrbench.sweep.pruning``): each repeat is an independent tuning with a
    sampler seed of its own, and each family is tuned on its own evidence.

  Trials of every cell share one batch order, so they stack together in one batched slot.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Container, Iterator, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from lrbench.store.record import Cell, Plan, cell_of, plan_attrs, plan_of
from lrbench.store.schema import FAMILY_PARAM
from lrbench.sweep import seeds
from lrbench.sweep.config import SweepConfig


def cells(config: SweepConfig) -> list[Cell]:
    """Every cell of a compare sweep, repeat by repeat, families in the file's order."""
    return [(family, repeat) for repeat in range(config.repeats) for family in config.families]


def spent_failures(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Compare trials that failed by their own error: spent, and never re-run.

    Every ask and every progress poll counts these: the plans of all trials are read only
    when a compare trial has failed at all (a search study has none to look for)."""
    failed = [t for t in trials if t.state == TrialState.FAIL and cell_of(t) is not None]
    if not failed:
        return []
    requeued = {plan_of(t).requeued_from for t in trials} - {None}
    return [t for t in failed if t.number not in requeued]


def spent(trials: Sequence[FrozenTrial]) -> Counter[Cell]:
    """Trials spent per cell: asked, queued, running, finished, or failed by their error."""
    own_failures = {t.number for t in spent_failures(trials)}
    return Counter(cell for t in trials
                   if (t.state != TrialState.FAIL or t.number in own_failures)
                   and (cell := cell_of(t)) is not None)


def assign(study: optuna.Study, config: SweepConfig, count: int) -> Counter[Cell]:
    """Queue the cells of the next ``count`` asks; their cells, queued ones first.

    Hold the claim lock: the spent counts must not change between reading and queueing.
    Optuna's ``ask`` takes queued trials oldest first, so the next ``count`` asks take the
    re-queued trials already waiting, then the cells queued here: each the cell with the
    fewest spent trials (ties: earlier repeat, then the file's family order).
    """
    trials = study.get_trials(deepcopy=False)
    used = spent(trials)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    asked: Counter[Cell] = Counter(c for t in waiting[:count] if (c := cell_of(t)) is not None)
    order = {cell: i for i, cell in enumerate(cells(config))}
    for _ in range(count - len(waiting)):
        cell = min(order, key=lambda c: (used[c], order[c]))
        if config.budget is None or used[cell] >= config.budget:
            break
        study.enqueue_trial({FAMILY_PARAM: cell[0]}, user_attrs=plan_attrs(Plan(repeat=cell[1])))
        used[cell] += 1
        asked[cell] += 1
    return asked


def startup_trials(budget: int) -> int:
    """Random trials before TPE models a cell: a third of its budget, 3 to 10 (Optuna's
    default of 10 would leave a budget of 10 or less entirely random)."""
    return max(3, min(10, budget // 3))


class CellView:
    """A study as one cell's sampler sees it: only that cell's trials (as Optuna's
    Hyperband shows a sampler only a bracket's). Everything else is the study's."""

    def __init__(self, study: optuna.Study, cell: Cell, known: dict[int, Cell | None]) -> None:
        self._study, self._cell, self._known = study, cell, known

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _mine(self, trial: FrozenTrial) -> bool:
        if trial.number not in self._known:  # a trial's cell never changes: look once
            self._known[trial.number] = cell_of(trial)
        return self._known[trial.number] == self._cell

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if self._mine(t)]

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class CellSampler(BaseSampler):
    """One sampler per cell, each fed only its cell's trials (``CellView``), each seeded
    from this slot's seed and its cell: repeats are independent tunings."""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._samplers: dict[Cell, BaseSampler] = {}
        self._known: dict[int, Cell | None] = {}

    def sampler(self, cell: Cell) -> BaseSampler:
        if cell not in self._samplers:
            self._samplers[cell] = self._make(seeds.derive(self._seed, "cell", *cell))
        return self._samplers[cell]

    def _route(self, study: optuna.Study, trial: FrozenTrial) -> tuple[BaseSampler, Any]:
        cell = cell_of(trial)
        if cell is None:
            raise ValueError(f"trial {trial.number} has no compare cell (family, repeat)")
        return self.sampler(cell), CellView(study, cell, self._known)

    @contextlib.contextmanager
    def batch(self, asked: Counter[Cell]) -> Iterator[None]:
        """Within this block, each cell's asks (``asked``: how many) share its sampler's
        fits, where the sampler batches (``BatchTPESampler.batch``)."""
        with contextlib.ExitStack() as stack:
            for cell, count in asked.items():
                sampler = self.sampler(cell)
                if count > 1 and hasattr(sampler, "batch"):
                    stack.enter_context(sampler.batch(count))
            yield

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        sampler, view = self._route(study, trial)
        return sampler.infer_relative_search_space(view, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        sampler, view = self._route(study, trial)
        return sampler.sample_relative(view, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        sampler, view = self._route(study, trial)
        return sampler.sample_independent(view, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if cell_of(trial) is not None:
            sampler, view = self._route(study, trial)
            sampler.before_trial(view, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        if cell_of(trial) is not None:
            sampler, view = self._route(study, trial)
            sampler.after_trial(view, trial, state, values)

    def reseed_rng(self) -> None:
        for sampler in self._samplers.values():
            sampler.reseed_rng()

"""TPE that splits and fits "below" once per batch of asks: a batched slot's sampler.

Optuna's TPE splits the trials at gamma and fits its Parzen estimators (below and above,
for every group of the conditional space) on every ask. A batched slot asks K trials at
a time, so it paid K of each for one decision point: in the harness benchmark that was
most of the time outside training.

Inside ``sampler.batch(k)``, the first ask of each search-space group runs TPE's own
``_sample`` once with K x ``n_ei_candidates`` candidates and keeps them all; the K asks
then take, in turn, the best candidate of each block of ``n_ei_candidates``, each judged
against "above" refitted with the batch's earlier picks as constant liars (as TPE with
``constant_liar`` does when asked K times). What is shared is the split, the "below" fit,
its samples and their likelihoods. Outside a batch the sampler is plain ``TPESampler``.

With ``family_param`` set (lrbench's ``schedule``), it also fits only the groups a trial
uses. TPE with ``group=True`` samples every group of the conditional space for every
trial, though a trial suggests only its own family's parameters: with 11 families, 10 of
its 12 fits were thrown away. Here the family's group is sampled first, then only the
groups whose names all start with ``FAMILY.``; a batch proposes, per family, as many
points as the batch's trials that chose it.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe.sampler import _RELATIVE_PARAMS_KEY, _SYSTEM_ATTR_MAX_LENGTH
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace, _SearchSpaceGroup
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


@contextlib.contextmanager
def asking(study: optuna.Study, count: int,
           cells: Mapping[Any, int] | None = None) -> Iterator[list[optuna.Trial]]:
    """``count`` new trials; inside the block, their params are drawn as one batch.

    Optuna samples a trial's relative parameters lazily, at its first ``suggest``: draw
    them inside the block (suggest, or read ``relative_params``) so that, with a
    ``BatchTPESampler``, the trials share the batch's fits. ``cells``: under the compare
    protocol, how many of the asks fall in each cell (``protocol.assign``); each cell's
    sampler batches its own.
    """
    sampler = study.sampler
    if cells is not None and hasattr(sampler, "batch"):
        batch: contextlib.AbstractContextManager[None] = sampler.batch(cells)
    elif isinstance(sampler, BatchTPESampler) and count > 1:
        batch = sampler.batch(count)
    else:
        batch = contextlib.nullcontext()
    with batch:
        yield [study.ask() for _ in range(count)]


class BatchTPESampler(TPESampler):
    """``TPESampler`` with ``batch(k)``: k asks share each group's split and "below" fit.

    ``family_param``: the categorical that decides which other groups a trial uses (see
    the module's docstring); None samples every group, as ``TPESampler`` does.
    """

    def __init__(self, *, family_param: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        if self._group:
            self._group_decomposed_search_space = _IncrementalGroups(include_pruned=True)
        self._family_param = family_param
        self._batch_size = 0
        self._proposals: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        self._candidates: tuple[dict[str, np.ndarray], np.ndarray, np.ndarray] | None = None
        self._above_trials: list[FrozenTrial] | None = None
        self.below_fits = 0  # gamma splits and "below" fits so far (for tests)

    @contextlib.contextmanager
    def batch(self, k: int) -> Iterator[None]:
        """Within this block, up to ``k`` asks share each group's split and "below" fit."""
        self._batch_size, self._proposals = k, {}
        try:
            yield
        finally:
            self._batch_size, self._proposals = 0, {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self._family_param is None or not self._group:
            return super().sample_relative(study, trial, search_space)
        if trial.system_attrs.get("fixed_params"):  # enqueued: every value is given
            return {}
        assert self._search_space_group is not None
        groups = [{name: d for name, d in sorted(group.items())
                   if not d.single() and name in search_space}
                  for group in self._search_space_group.search_spaces]
        # The family's group first: it decides which of the others this trial uses.
        groups.sort(key=lambda group: self._family_param not in group)
        params: dict[str, Any] = {}
        for group in groups:
            family = params.get(self._family_param)
            if group and (family is None or all(n.startswith(f"{family}.") for n in group)
                          or not _conditional(group)):
                params.update(self._sample_relative(study, trial, group))
        if params and self._constant_liar:
            # As TPESampler does: other processes read these as this running trial's liar.
            text = json.dumps(params)
            for i in range(0, len(text), _SYSTEM_ATTR_MAX_LENGTH):
                study._storage.set_trial_system_attr(
                    trial._trial_id, f"{_RELATIVE_PARAMS_KEY}:{i // _SYSTEM_ATTR_MAX_LENGTH}",
                    text[i:i + _SYSTEM_ATTR_MAX_LENGTH])
        return params

    def _sample(self, study: Study, trial: FrozenTrial,
                search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self._batch_size <= 1:
            self.below_fits += 1
            return super()._sample(study, trial, search_space)
        key = tuple(search_space)
        if not self._proposals.get(key):
            self._proposals[key] = self._propose(study, trial, search_space,
                                                 self._demand(search_space))
        return self._proposals[key].pop()

    def _demand(self, search_space: dict[str, BaseDistribution]) -> int:
        """How many of the batch's trials will use this group: this one, and those still to
        come whose family (already proposed) owns it; the whole batch when not conditional."""
        family_key = next((k for k in self._proposals if self._family_param in k), None)
        if self._family_param is None or family_key is None or not _conditional(search_space):
            return self._batch_size
        family = next(iter(search_space)).split(".", 1)[0]
        coming = self._proposals[family_key]
        return 1 + sum(p[self._family_param] == family for p in coming)

    def _propose(self, study: Study, trial: FrozenTrial,
                 search_space: dict[str, BaseDistribution], k: int) -> list[dict[str, Any]]:
        """K proposals from one fit of "below", in reverse order (the caller pops).

        Proposal j is the best of its block of candidates by log l(x) - log g_j(x), where
        g_j is "above" refitted with proposals 1..j-1 as constant liars, as if they had been
        asked one by one. Only "above" is refitted: the batch's own running trials never
        move the gamma split, so "below", its candidates and l(x) are the same for all K.
        """
        per_draw = self._n_ei_candidates
        self._n_ei_candidates = per_draw * k
        try:
            self.below_fits += 1
            super()._sample(study, trial, search_space)  # keeps its candidates, below
        finally:
            self._n_ei_candidates = per_draw
        assert self._candidates is not None and self._above_trials is not None
        samples, log_below, log_above = self._candidates
        # "above" as arrays once; each refit appends the liars' rows (the candidates they
        # were, already in TPE's internal representation) instead of converting every
        # above trial again: the same estimator TPE builds from above + liars, at a
        # fraction of the cost.
        above = self._get_internal_repr(self._above_trials, search_space, study)
        liars: list[int] = []  # candidate rows picked so far
        proposals = []
        for block in range(k):
            rows = slice(block * per_draw, (block + 1) * per_draw)
            if liars:
                observations = {name: np.concatenate([above[name], samples[name][liars]])
                                for name in search_space}
                refit = self._parzen_estimator_cls(observations, search_space,
                                                   self._parzen_estimator_parameters)
                scores = log_below[rows] - refit.log_pdf({n: v[rows] for n, v in samples.items()})
            else:
                scores = log_below[rows] - log_above[rows]
            best = rows.start + int(np.argmax(scores))
            proposals.append({name: search_space[name].to_external_repr(samples[name][best].item())
                              for name in search_space})
            liars.append(best)
        return proposals[::-1]

    def _build_parzen_estimator(self, study: Study, search_space: dict[str, BaseDistribution],
                                trials: list[FrozenTrial], handle_below: bool) -> Any:
        if not handle_below:
            self._above_trials = trials  # the liars join these in _propose
        return super()._build_parzen_estimator(study, search_space, trials, handle_below)

    def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: Any,
                                  mpe_above: Any) -> np.ndarray:
        # TPE's acquisition, log l(x) - log g(x), with both terms kept for _propose.
        log_below, log_above = mpe_below.log_pdf(samples), mpe_above.log_pdf(samples)
        self._candidates = (samples, log_below, log_above)
        return log_below - log_above


class _IncrementalGroups(_GroupDecomposedSearchSpace):
    """Optuna's group decomposition of the search space, adding each finished trial once.

    Optuna's re-adds every finished trial's distributions on every ask: O(trials) per
    ask, which grows with the study (benchmarks/README.md). Re-adding a trial never changes
    the groups (they already refine its distributions), so adding each once gives the
    same groups in the same order.
    """

    def __init__(self, include_pruned: bool) -> None:
        super().__init__(include_pruned)
        self._added: set[int] = set()
        self._copy: _SearchSpaceGroup | None = None  # handed out until a trial is added

    def calculate(self, study: Study, use_cache: bool = False) -> _SearchSpaceGroup:
        states = ((TrialState.COMPLETE, TrialState.PRUNED) if self._include_pruned
                  else (TrialState.COMPLETE,))
        for trial in study._get_trials(deepcopy=False, states=states, use_cache=use_cache):
            if trial.number not in self._added:
                self._added.add(trial.number)
                self._search_space.add_distributions(trial.distributions)
                self._copy = None
        if self._copy is None:
            self._copy = copy.deepcopy(self._search_space)
        return self._copy


def _conditional(group: dict[str, BaseDistribution]) -> bool:
    """Whether a group belongs to one family: all its names are ``FAMILY.param``."""
    prefixes = {name.split(".", 1)[0] for name in group if "." in name}
    return len(prefixes) == 1 and all("." in name for name in group)

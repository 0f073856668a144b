"""Which stored trials are each family's best: the one definition of "best".

The terminal's table, ``lrbench list``, the progress bar, ``confirm`` (which re-trains the
picks) and the report all read the picks through ``best_per_family``.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrbench.store import data_identity
from lrbench.store.record import cell_of, record_of
from lrbench.store.schema import FAMILY_PARAM


def best_per_family(study: optuna.Study,
                    trials: list[FrozenTrial] | None = None) -> dict[str, FrozenTrial]:
    """Each family's best result by validation accuracy: the one definition of "best".

    A result is a complete trial that did not diverge, trained on the study's data: a
    diverged trial never wins, even at a higher value (its accuracy is chance's), and a
    run on other data is not comparable. The report's frames apply the same rule to their
    table (``report.frames.completed``). Under the compare protocol each repeat picks its
    own: the keys are then "FAMILY rREPEAT" (``pick_label``).
    """
    data = data_identity.recorded(study)
    best: dict[str, FrozenTrial] = {}
    if trials is None:  # (a caller that has just read them passes them: one read a poll)
        trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state != TrialState.COMPLETE:
            continue
        family = trial.params.get(FAMILY_PARAM)
        record = record_of(trial)
        if family is None or trial.value is None or (record is not None and record.diverged):
            continue
        mine = data_identity.trial_identity(trial, data.dataset) if data else None
        if data is not None and mine is not None and not data.same_data(mine):
            continue
        key = pick_label(family, cell_of(trial))
        if key not in best or trial.value > best[key].value:
            best[key] = trial
    return best


def pick_label(family: str, cell: tuple[str, int] | None) -> str:
    """A pick's name: its family, and its repeat under the compare protocol."""
    return family if cell is None else f"{family} r{cell[1]}"

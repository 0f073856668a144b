"""Text for the terminal and the page: a trial's parameters in short, and `lrbench list`'s rows."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from lrbench.store.schema import FAMILY_PARAM
from lrbench.sweep.study import best_per_family


def params_text(params: dict[str, Any]) -> str:
    """``{'schedule': 'step', 'step.gamma': 0.5}`` -> ``gamma=0.5``: what a table shows."""
    parts = []
    for name, value in params.items():
        if name == FAMILY_PARAM:
            continue
        short = name.split(".", 1)[-1]
        parts.append(f"{short}={value:.4g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)


def study_rows(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        count = {s: sum(t.state == s for t in trials) for s in TrialState}
        values = [t.value for t in best_per_family(study).values()]  # the one "best"
        families = sorted({t.params[FAMILY_PARAM] for t in trials if FAMILY_PARAM in t.params})
        rows.append({"study": summary.study_name, "complete": count[TrialState.COMPLETE],
                     "pruned": count[TrialState.PRUNED], "failed": count[TrialState.FAIL],
                     "running": count[TrialState.RUNNING],
                     "best": f"{max(values):.4f}" if values else "-",
                     "families": ", ".join(families)})
    return rows

"""`lrbench list`'s rows: the studies in a storage."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from lrbench.store.picks import best_per_family
from lrbench.store.schema import FAMILY_PARAM, config_of


def study_rows(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        count = {s: sum(t.state == s for t in trials) for s in TrialState}
        values = [t.value for t in best_per_family(study, trials).values()]  # the one "best"
        families = sorted({t.params[FAMILY_PARAM] for t in trials if FAMILY_PARAM in t.params})
        # a regression's score is −MSE (lrbench.train.losses): named beside its value
        mse = config_of(study).get("loss") == "mse"
        best = (f"{max(values):.4g} −MSE" if mse else f"{max(values):.4f}") if values else "-"
        rows.append({"study": summary.study_name, "complete": count[TrialState.COMPLETE],
                     "pruned": count[TrialState.PRUNED], "failed": count[TrialState.FAIL],
                     "running": count[TrialState.RUNNING], "best": best,
                     "families": ", ".join(families)})
    return rows

"""Small tables for the terminal: the best trial per family, the studies in a storage."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import TrialState

from lrbench.sweep.record import record_of
from lrbench.sweep.study import best_per_family


def params_text(params: dict[str, Any]) -> str:
    """``{'schedule': 'step', 'step.gamma': 0.5}`` -> ``gamma=0.5``: what a table shows."""
    parts = []
    for name, value in params.items():
        if name == "schedule":
            continue
        short = name.split(".", 1)[-1]
        parts.append(f"{short}={value:.4g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)


def best_by_family(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per schedule family, best validation accuracy first: ``best_per_family``'s
    winner and the family's counts of complete, pruned and diverged trials. A family with
    no result (all pruned or diverged) comes last, with None for its accuracies."""
    counts: dict[str, Counter[str]] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                          TrialState.PRUNED)):
        family = trial.params.get("schedule")
        if family is not None:
            count = counts.setdefault(family, Counter())
            count["pruned" if trial.state == TrialState.PRUNED else "complete"] += 1
            record = record_of(trial)
            count["diverged"] += bool(record and record.diverged)
    winners = best_per_family(study)
    rows = []
    for family, count in counts.items():
        best = winners.get(family)  # None: every trial was pruned or diverged
        rows.append({"family": family, "complete": count["complete"], "pruned": count["pruned"],
                     "diverged": count["diverged"],
                     "val_accuracy": best.value if best else None,
                     "test_accuracy": _test_accuracy(best),
                     "number": best.number if best else None,
                     "params": params_text(best.params) if best else ""})
    return sorted(rows, key=lambda r: (r["val_accuracy"] is None, -(r["val_accuracy"] or 0)))


def _test_accuracy(trial: optuna.trial.FrozenTrial | None) -> float | None:
    record = record_of(trial) if trial is not None else None
    return record.test_accuracy if record is not None else None


def study_rows(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        count = {s: sum(t.state == s for t in trials) for s in TrialState}
        values = [t.value for t in trials if t.state == TrialState.COMPLETE]
        families = sorted({t.params["schedule"] for t in trials if "schedule" in t.params})
        rows.append({"study": summary.study_name, "complete": count[TrialState.COMPLETE],
                     "pruned": count[TrialState.PRUNED], "failed": count[TrialState.FAIL],
                     "running": count[TrialState.RUNNING],
                     "best": f"{max(values):.4f}" if values else "-",
                     "families": ", ".join(families)})
    return rows

"""Studies compared across workloads: the same families on other data sets or models.

A family that wins on MNIST may be ordinary on Fashion-MNIST. When a report holds
studies that share families but differ in data set or model, this module lines them up:

- ``standings``: each family's rank and score per workload, from each study's own
  ranking (``report.ranking``: the confirm mean where the study has confirm runs, else
  the best search run's validation accuracy);
- ``profiles``: AlgoPerf-style performance profiles. For a tolerance tau (accuracy
  points), a family's profile is the fraction of workloads where its score is within tau
  of that workload's best; a family never run on a workload is never within. Its score
  is the area under the profile over [0, ``tau_max``], normalised to 0..1 (1: best on
  every workload);
- ``budgets``: tuning-budget curves (DeepOBS's tuneability, Crowded Valley's budgets):
  the expected best validation accuracy after n trials of a family, with its 10-90%
  band, computed exactly from the bootstrap distribution of the family's completed
  search trials (the maximum of n draws with replacement). TPE's trials are not
  independent draws, so read it as what n trials like these give, not as a forecast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lrbench.report.frames import ReportFrames, completed
from lrbench.report.ranking import rank

TAUS = 101  # points of each profile
BAND = (0.1, 0.9)  # the tuning-budget band's quantiles


@dataclass(frozen=True)
class Workload:
    study: str
    dataset: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.dataset} · {self.model}"


def groups(frames: ReportFrames) -> dict[str, list[Workload]]:
    """The report's studies as workloads, grouped by the sweep file they ran (a suite's
    workloads share one): each group whose studies differ in data set or model and share a
    family is a comparison, named after its sweep file."""
    by_sweep: dict[str, list[Workload]] = {}
    for info in frames.studies:
        name = Path(info.sweep_file).stem or info.name
        by_sweep.setdefault(name, []).append(
            Workload(info.name, info.dataset, str(info.config.get("model", "?"))))
    found = {}
    for name, members in by_sweep.items():
        if len({(w.dataset, w.model) for w in members}) < 2:
            continue
        families = [set(frames.study(w.study).trials.get("family", [])) for w in members]
        if any(sum(f in fs for fs in families) >= 2 for f in set().union(*families)):
            found[name] = members
    return found


def standings(frames: ReportFrames, found: list[Workload]) -> pd.DataFrame:
    """One row per workload and ranked family: its rank, score and the score's basis."""
    rows = []
    for workload in found:
        ranking = rank(frames.study(workload.study).trials)
        for place, standing in enumerate(ranking.ranked, start=1):
            rows.append({"study": workload.study, "workload": workload.label,
                         "family": standing.family, "rank": place, "score": standing.score,
                         "basis": ranking.basis, "tied_with_best": standing.tied_with_best,
                         "confirm_mean": standing.confirm.mean, "seeds": standing.confirm.n})
    return pd.DataFrame(rows, columns=["study", "workload", "family", "rank", "score", "basis",
                                       "tied_with_best", "confirm_mean", "seeds"])


def profiles(table: pd.DataFrame, tau_max: float | None = None) -> tuple[pd.DataFrame,
                                                                         pd.Series]:
    """Performance profiles (family, tau, fraction) and each family's area score, best
    first. ``tau_max`` defaults to the largest gap to a workload's best (at least 1 point).
    """
    if table.empty:
        return pd.DataFrame(columns=["family", "tau", "fraction"]), pd.Series(dtype=float)
    best = table.groupby("study")["score"].transform("max")
    gaps = table.assign(gap=best - table["score"])
    studies = gaps["study"].nunique()
    top = float(gaps["gap"].max()) if tau_max is None else tau_max
    taus = np.linspace(0.0, max(top, 0.01), TAUS)
    rows = []
    for family, mine in gaps.groupby("family"):
        within = (mine["gap"].to_numpy()[None, :] <= taus[:, None] + 1e-12).sum(axis=1)
        rows += [{"family": family, "tau": t, "fraction": w / studies}
                 for t, w in zip(taus, within)]
    curves = pd.DataFrame(rows)
    scores = curves.groupby("family")["fraction"].mean().sort_values(ascending=False)
    return curves, scores


def expected_best(values: np.ndarray, n: int) -> tuple[float, float, float]:
    """The maximum of ``n`` draws with replacement from ``values``: its mean and its
    ``BAND`` quantiles, exactly (P(max <= v_(i)) = (i/m)^n over the sorted values)."""
    v = np.sort(values)
    m = len(v)
    cdf = (np.arange(1, m + 1) / m) ** n
    mean = float(np.sum(v * np.diff(np.concatenate([[0.0], cdf]))))
    low, high = (float(v[np.searchsorted(cdf, q - 1e-12)]) for q in BAND)
    return mean, low, high


def budgets(frames: ReportFrames, found: list[Workload]) -> pd.DataFrame:
    """Tuning-budget curves: (study, workload, family, n, expected, low, high), n from 1 to
    the family's own number of completed trials (beyond it would be extrapolation)."""
    rows = []
    for workload in found:
        done = completed(frames.study(workload.study).trials).dropna(subset=["val_accuracy"])
        for family, runs in done.groupby("family"):
            values = runs["val_accuracy"].to_numpy(dtype=float)
            for n in range(1, len(values) + 1):
                mean, low, high = expected_best(values, n)
                rows.append({"study": workload.study, "workload": workload.label,
                             "family": family, "n": n, "expected": mean, "low": low,
                             "high": high, "trials": len(values)})
    return pd.DataFrame(rows, columns=["study", "workload", "family", "n", "expected", "low",
                                       "high", "trials"])

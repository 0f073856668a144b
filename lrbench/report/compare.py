"""Studies compared across workloads: the same families on other data sets or models.

A family that wins on MNIST may be ordinary on Fashion-MNIST. When a report holds
studies that share families but differ in data set or model, this module lines them up:

- ``standings``: each family's rank and score per workload, from each study's own
  ranking (``report.ranking``: the confirm mean where the study has confirm runs, else
  the best search run's validation accuracy);
- ``profiles``: AlgoPerf's performance profiles. On each workload, a family's time is the
  epochs its runs need to reach that workload's target (the median over its confirm runs,
  else over its search picks; never reached: infinite), and its ratio is that time over
  the fastest family's. Its profile at tau is the fraction of workloads where its ratio is
  at most tau, for tau in [1, ``R_MAX``]; its score is the exact area under that step
  function, scaled to 0..1. ``R_MAX`` is fixed, so one family's presence cannot move
  another's score except by being fastest somewhere;
- ``budgets``: tuning-budget curves per workload (``report.budget``): the expected best
  validation accuracy after n of a family's spent trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lrbench.report import budget
from lrbench.report.frames import ReportFrames, time_to_target
from lrbench.report.ranking import ranking_of

R_MAX = 4.0  # AlgoPerf's largest time ratio: slower than 4x the fastest scores nothing


@dataclass(frozen=True)
class Workload:
    study: str
    dataset: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.dataset} · {self.model}"


def groups(frames: ReportFrames) -> dict[str, list[Workload]]:
    """The report's studies as workloads, grouped by the suite they were run in, else by
    the sweep file they ran: each group whose studies differ in data set or model and share
    a family is a comparison, named after its suite or sweep file. (A suite may run other
    sweep files on its workloads: a transformer's and MNIST's, say.)"""
    by_sweep: dict[str, list[Workload]] = {}
    for info in frames.studies:
        suites = [run["suite"] for run in info.runs if run.get("suite")]
        name = suites[-1] if suites else Path(info.sweep_file).stem or info.name
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
        ranking = ranking_of(frames.study(workload.study))
        for place, standing in enumerate(ranking.ranked, start=1):
            rows.append({"study": workload.study, "workload": workload.label,
                         "family": standing.family, "rank": place, "score": standing.score,
                         "basis": ranking.basis, "tied_with_best": standing.tied_with_best,
                         "confirm_mean": standing.confirm.mean, "seeds": standing.confirm.n})
    return pd.DataFrame(rows, columns=["study", "workload", "family", "rank", "score", "basis",
                                       "tied_with_best", "confirm_mean", "seeds"])


def times_to_target(frames: ReportFrames, found: list[Workload],
                    targets: dict[str, float]) -> pd.DataFrame:
    """(study, workload, family, target, epochs): epochs to each workload's target, the
    median over the family's confirm runs (else its search picks); inf when not reached."""
    rows = []
    for workload in found:
        one = frames.study(workload.study)
        target = targets[workload.study]
        reached = time_to_target(one, (target,))
        for family, runs in reached.groupby("family"):
            confirm = runs[runs["role"] == "confirm"]
            chosen = confirm if len(confirm) else runs[runs["role"] == "search"]
            epochs = chosen["epoch"].fillna(math.inf).to_numpy(dtype=float)
            rows.append({"study": workload.study, "workload": workload.label,
                         "family": family, "target": target,
                         "epochs": float(np.median(epochs)) if len(epochs) else math.inf})
    return pd.DataFrame(rows, columns=["study", "workload", "family", "target", "epochs"])


def profiles(times: pd.DataFrame, r_max: float = R_MAX) -> tuple[pd.DataFrame, pd.Series]:
    """AlgoPerf's performance profiles (family, tau, fraction) from ``times_to_target``,
    and each family's score, best first: the exact area under its profile over
    [1, r_max], divided by r_max - 1. A family not run on a workload never reaches it."""
    if times.empty:
        return pd.DataFrame(columns=["family", "tau", "fraction"]), pd.Series(dtype=float)
    fastest = times.groupby("study")["epochs"].transform("min")
    ratio = (times["epochs"] / fastest).where(np.isfinite(fastest), math.inf)
    ratios = times.assign(ratio=ratio.fillna(math.inf))
    workloads = ratios["study"].nunique()
    finite = ratios["ratio"][np.isfinite(ratios["ratio"]) & (ratios["ratio"] <= r_max)]
    taus = np.unique(np.concatenate([[1.0, r_max], finite.to_numpy(dtype=float)]))
    rows, scores = [], {}
    for family, mine in ratios.groupby("family"):
        r = mine["ratio"].to_numpy(dtype=float)
        within = (r[None, :] <= taus[:, None] + 1e-12).sum(axis=1)
        rows += [{"family": family, "tau": t, "fraction": w / workloads}
                 for t, w in zip(taus, within)]
        counted = r[r <= r_max]
        scores[family] = float(np.sum(r_max - np.maximum(counted, 1.0))
                               / ((r_max - 1) * workloads))
    return pd.DataFrame(rows), pd.Series(scores).sort_values(ascending=False, kind="stable")


def budgets(frames: ReportFrames, found: list[Workload]) -> pd.DataFrame:
    """Tuning-budget curves (``budget.curves``) of every workload, one frame."""
    tables = [budget.curves(frames.study(w.study).trials).assign(study=w.study,
                                                                 workload=w.label)
              for w in found]
    columns = ["study", "workload", *budget.COLUMNS]
    return pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(
        columns=columns)

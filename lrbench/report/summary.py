"""What the page says in words and tables: leaderboard, verdict, reproduction table.

Pure functions of one study's frames, so tests can check every sentence and number
without drawing or rendering anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lrbench.errors import UserError
from lrbench.report import stats
from lrbench.report.frames import ReportFrames, best_per_family, completed, time_to_target
from lrbench.sweep import config as config_module

# The tutorial's published runs (Deep Learning Wizard, "Learning Rate Scheduling"):
# family, parameters, epochs, published test accuracy in %.
PUBLISHED = (
    ("step", {"step_size": 1, "gamma": 0.1}, 5, 97.0),
    ("step", {"step_size": 2, "gamma": 0.1}, 5, 97.0),
    ("step", {"step_size": 2, "gamma": 0.96}, 5, 97.0),
    ("plateau", {"factor": 0.1, "patience": 0}, 10, 98.04),
    ("plateau", {"factor": 0.5, "patience": 0}, 10, 98.01),
)


@dataclass
class LeaderRow:
    rank: int
    family: str
    trial: int
    params: str
    val_accuracy: float
    test_accuracy: float
    seeds: stats.Interval  # test accuracy over confirm seeds (n=0 without confirm runs)
    to_target: list[str]  # one text per target: "3 ep (1.2 s)" or "missed (best 96.1%)"
    trials: str  # "12 done, 4 pruned"
    diverged: str  # "1 of 16"


@dataclass
class StudySummary:
    name: str
    targets: tuple[float, ...]
    leaderboard: list[LeaderRow]
    verdict: str
    notes: list[str] = field(default_factory=list)  # families without results and the like
    has_confirm: bool = False


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def _to_target_texts(ttt: pd.DataFrame, number: int, targets: tuple[float, ...]) -> list[str]:
    texts = []
    for target in targets:
        row = ttt[(ttt["number"] == number) & (ttt["role"] == "search")
                  & (ttt["target"] == target)]
        if row.empty:
            texts.append("–")
        elif bool(row["reached"].iloc[0]):
            texts.append(f"{int(row['epoch'].iloc[0])} ep ({row['seconds'].iloc[0]:.1f} s)")
        else:
            texts.append(f"missed (best {_pct(row['best_val_accuracy'].iloc[0])})")
    return texts


def summarise(frames: ReportFrames, targets: tuple[float, ...]) -> StudySummary:
    """One study's leaderboard and verdict (``frames`` holds that study only)."""
    info = frames.studies[0]
    trials = frames.trials
    best = best_per_family(trials) if len(trials) else trials
    seeds = stats.seed_summary(trials, best) if len(trials) else pd.DataFrame()
    ttt = time_to_target(frames, targets) if len(best) else pd.DataFrame()
    rows = []
    for rank, run in enumerate(best.to_dict("records"), start=1):
        family = run["family"]
        of_family = trials[(trials["family"] == family) & (trials["role"] == "search")]
        finished = of_family[of_family["state"].isin(["complete", "pruned"])]
        runs = stats.confirm_runs(trials, best)
        runs = runs[runs["family"] == family]
        rows.append(LeaderRow(
            rank, family, int(run["number"]), run["params"] or "(fixed)",
            run["val_accuracy"], run["test_accuracy"], stats.mean_ci(runs["test_accuracy"]),
            _to_target_texts(ttt, run["number"], targets),
            f"{(finished['state'] == 'complete').sum()} done, "
            f"{(finished['state'] == 'pruned').sum()} pruned",
            f"{int(finished['diverged'].sum())} of {len(finished)}"))
    summary = StudySummary(info.name, targets, rows, "", has_confirm=len(seeds) > 0)
    summary.notes = _notes(frames, best)
    summary.verdict = _verdict(info.name, rows, trials)
    return summary


def _notes(frames: ReportFrames, best: pd.DataFrame) -> list[str]:
    trials, notes = frames.trials, []
    configured = frames.studies[0].config.get("families", [])
    seen = set(trials["family"]) if len(trials) else set()
    for family in configured:
        if family not in seen:
            notes.append(f"{family}: never sampled in this study.")
        elif family not in set(best["family"]):
            states = trials[trials["family"] == family]["status"].value_counts()
            counts = ", ".join(f"{n} {state}" for state, n in states.items())
            notes.append(f"{family}: no completed trial ({counts}).")
    for description, count in frames.studies[0].other_data.items():
        notes.append(f"{count} run(s) trained on other data ({description}) are left out of "
                     f"every table and figure: results on different data are never pooled.")
    failed = (trials["state"] == "fail").sum() if len(trials) else 0
    if failed:
        notes.append(f"{failed} trial(s) failed (errors or interrupted runs; failed trials are "
                     f"re-queued and re-run by the next `lrbench sweep`).")
    return notes


def _verdict(study: str, rows: list[LeaderRow], trials: pd.DataFrame) -> str:
    if not rows:
        counts = trials["status"].value_counts() if len(trials) else pd.Series(dtype=int)
        states = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
        return (f"Study {study} has no completed trial yet (trials: {states}), so no schedule "
                f"can be ranked.")
    confirmed = [r for r in rows if r.seeds.n >= 2]
    if len(confirmed) >= 2:
        return _confirmed_verdict(study, confirmed, trials)
    top = rows[0]
    text = (f"By the single best run of each family, {top.family} leads study {study} with "
            f"{_pct(top.val_accuracy)} validation accuracy ({_pct(top.test_accuracy)} test; "
            f"{top.params}).")
    if len(rows) > 1:
        second = rows[1]
        text += (f" The runner-up, {second.family}, reached {_pct(second.val_accuracy)} "
                 f"(a lead of {100 * (top.val_accuracy - second.val_accuracy):.2f} points).")
    return text + (f" This ranking rests on single runs, with no measure of seed noise: run "
                   f"`lrbench confirm {study}` to re-train each family's best with fresh seeds.")


def _confirmed_verdict(study: str, rows: list[LeaderRow], trials: pd.DataFrame) -> str:
    ranked = sorted(rows, key=lambda r: -r.seeds.mean)
    top, second = ranked[0], ranked[1]
    runs = trials[(trials["role"] == "confirm") & (trials["state"] == "complete")]
    a = runs[runs["confirm_of"] == top.trial]["test_accuracy"].dropna().tolist()
    b = runs[runs["confirm_of"] == second.trial]["test_accuracy"].dropna().tolist()
    p = stats.welch_p(a, b)
    lead = 100 * (top.seeds.mean - second.seeds.mean)
    if math.isnan(p):
        significance = "a significance test is not possible with these runs"
    elif p < stats.ALPHA:
        significance = f"significant (Welch t-test, p = {p:.3g})"
    else:
        significance = (f"not significant at the 5% level (Welch t-test, p = {p:.3g}): "
                        f"treat the two as tied")
    return (f"{top.family} wins study {study}: test accuracy {top.seeds.text()}% (mean ± 95% "
            f"CI over {top.seeds.n} seeds) against {second.seeds.text()}% for {second.family}, "
            f"the runner-up: a lead of {lead:.2f} points, {significance}. Its configuration: "
            f"{top.params}.")


@dataclass
class ReproductionRow:
    configuration: str
    epochs: int
    published: float
    measured: str  # single run, in %
    seeds: str  # confirm runs, mean ± CI in %
    trial: int | None


def reproduction(frames: ReportFrames) -> list[ReproductionRow]:
    """The tutorial's five published runs beside this study's runs of the same setup."""
    trials = frames.trials
    runs = completed(trials) if len(trials) else trials
    confirm = trials[(trials["role"] == "confirm")] if len(trials) else trials
    rows = []
    for family, params, epochs, published in PUBLISHED:
        name = ("StepLR" if family == "step" else "ReduceLROnPlateau") + "(" + ", ".join(
            f"{k}={v}" for k, v in params.items()) + ")"
        match = None
        for run in runs[runs["family"] == family].to_dict("records"):
            raw = frames.params.get((run["study"], "search", run["number"]), {})
            if all(raw.get(f"{family}.{k}") == v for k, v in params.items()) \
                    and run["epochs"] == epochs:
                match = run
                break
        if match is None:
            rows.append(ReproductionRow(name, epochs, published, "not run", "–", None))
            continue
        seeds = stats.mean_ci(confirm[confirm["confirm_of"] == match["number"]]["test_accuracy"])
        rows.append(ReproductionRow(name, epochs, published, _pct(match["test_accuracy"]),
                                    seeds.text() + ("%" if seeds.n else ""), match["number"]))
    return rows


def data_description(frames: ReportFrames) -> str:
    """What the study trained on: its recorded data identity, else the trials' sizes."""
    info = frames.studies[0]
    if info.data is not None:
        return info.data.describe()
    sizes = frames.trials["train_size"].dropna() if len(frames.trials) else pd.Series()
    validation = info.config.get("validation_size")
    text = info.dataset
    if len(sizes):
        text += f", trained on {int(sizes.max()):,} images"
    if validation == 0:
        text += ", validated on the test set (as the tutorial did)"
    elif validation is not None:
        text += f", validation split {validation}"
    return text


def provenance(frames: ReportFrames) -> dict[str, Any]:
    info, trials = frames.studies[0], frames.trials
    out: dict[str, Any] = {"sweep file": info.sweep_file or "unknown"}
    out.update({k.replace("_", " "): v for k, v in info.provenance.items()})
    if len(trials):
        out["devices"] = ", ".join(sorted({d for d in trials["device"] if d}))
        out["engines"] = ", ".join(sorted({e for e in trials["engine"] if e}))
        started, finished = trials["started"].dropna(), trials["finished"].dropna()
        if len(started) and len(finished):
            out["trials ran"] = (f"{started.min():%Y-%m-%d %H:%M} – "
                                 f"{finished.max():%Y-%m-%d %H:%M}")
    out["trials"] = f"{info.trials} in the study, {info.confirm_trials} confirm runs"
    return out


def reproduce_commands(frames: ReportFrames) -> list[str]:
    """The commands that re-create this study, its confirm runs and this page."""
    info = frames.studies[0]
    command = f"lrbench sweep {info.sweep_file or 'SWEEP.toml'} --study {info.name}"
    try:  # the overrides the sweep ran with: where the stored setup differs from its file
        file_config = config_module.load(info.sweep_file)
        for key in ("epochs", "dataset", "seed"):
            if key in info.config and info.config[key] != getattr(file_config, key):
                command += f" --{key} {info.config[key]}"
    except UserError:  # the file is gone or changed: the stored values are the best we have
        command += "".join(f" --{k} {info.config[k]}" for k in ("epochs", "dataset", "seed")
                           if k in info.config)
    searched = (frames.trials["role"] == "search").sum() if len(frames.trials) else 0
    commands = [f"{command} --trials {searched}"]
    if info.confirm_trials:
        runs = frames.trials[frames.trials["role"] == "confirm"]
        per_config = runs.groupby("confirm_of").size().max()
        commands.append(f"lrbench confirm {info.name} --seeds {per_config}")
    commands.append(f"lrbench report --study {info.name}")
    return commands

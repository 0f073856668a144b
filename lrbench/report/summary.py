"""What the page says in words and tables: leaderboard, verdict, reproduction table.

Pure functions of one study's frames, so tests can check every sentence and number
without drawing or rendering anything.
"""

from __future__ import annotations

import math
import shlex
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lrbench.errors import UserError
from lrbench.report import budget, selection, stats
from lrbench.report import ranking as ranking_module
from lrbench.report.frames import (
    ReportFrames,
    StudyInfo,
    best_per_family,
    completed,
    time_to_target,
)
from lrbench.report.metric import ACCURACY, Metric
from lrbench.store.storage import DEFAULT_JOURNAL, is_url
from lrbench.sweep import config as config_module
from lrbench.train.workload import is_import_path

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
    rank: int | None  # None: not ranked by the basis (no confirm runs, on a confirm basis)
    family: str
    trial: int
    params: str
    val_accuracy: float
    test_accuracy: float
    seeds: stats.Interval  # test accuracy over confirm seeds (n=0 without confirm runs)
    to_target: list[str]  # one text per target: "3 ep (1.2 s)" or "missed (best 96.1%)"
    trials: str  # "12 done, 4 pruned"
    diverged: str  # "1 of 16"
    standing: ranking_module.Standing | None = None
    metric: Metric = ACCURACY

    @property
    def versus_best(self) -> str:
        return versus_best(self.standing, self.rank)

    @property
    def versus_baseline(self) -> str:
        s, m = self.standing, self.metric
        if s is None or s.vs_baseline is None:
            return "–"
        return m.difference(s.vs_baseline.mean) + (
            "" if math.isnan(s.vs_baseline.half_width)
            else f" ± {m.difference(s.vs_baseline.half_width, sign=False)}")

    @property
    def curse(self) -> str:
        """The winner's curse in points: on validation (what selected), then on test."""
        s = self.standing
        if s is None or math.isnan(s.curse_val):
            return "–"
        return f"{self.metric.difference(s.curse_val)} / {self.metric.difference(s.curse_test)}"

    @property
    def seeds_text(self) -> str:
        """The test score over confirm seeds: "98.12 ± 0.10" (in %), or "-0.0123 ± 0.001"."""
        return self.metric.interval(self.seeds)


def versus_best(standing: ranking_module.Standing | None, rank: int | None,
                compact: bool = False) -> str:
    """"best", "tied (p = 0.41)", "below (p = 0.003)", "tied (untestable)" or "–"; compact
    (for 80 terminal columns): "best", "tied p=0.41", "below p=0.003", "tied?" or "-"."""
    if standing is None or rank is None:
        return "-" if compact else "–"
    if rank == 1:
        return "best"
    if math.isnan(standing.p_vs_best):
        return "tied?" if compact else "tied (untestable)"
    verdict = "tied" if standing.tied_with_best else "below"
    p = f"{standing.p_vs_best:.2g}"
    return f"{verdict} p={p}" if compact else f"{verdict} (p = {p})"


@dataclass
class StudySummary:
    name: str
    targets: tuple[float, ...]
    leaderboard: list[LeaderRow]
    verdict: str
    notes: list[str] = field(default_factory=list)  # families without results and the like
    has_confirm: bool = False
    ranking: ranking_module.Ranking = field(
        default_factory=lambda: ranking_module.Ranking("none", []))
    target_note: str = ""  # how the targets were chosen
    budget_note: str = ""  # the protocol and the budgets the ranking rests on
    metric: Metric = ACCURACY  # what its scores are


def _to_target_texts(ttt: pd.DataFrame, number: int, targets: tuple[float, ...],
                     metric: Metric) -> list[str]:
    texts = []
    for target in targets:
        row = ttt[(ttt["number"] == number) & (ttt["role"] == "search")
                  & (ttt["target"] == target)]
        if row.empty:
            texts.append("–")
        elif bool(row["reached"].iloc[0]):
            texts.append(f"{int(row['epoch'].iloc[0])} ep ({row['seconds'].iloc[0]:.1f} s)")
        else:
            texts.append(f"missed (best {metric.text(row['best_val_accuracy'].iloc[0])})")
    return texts


def summarise(frames: ReportFrames, targets: tuple[float, ...]) -> StudySummary:
    """One study's leaderboard and verdict (``frames`` holds that study only)."""
    info = frames.studies[0]
    trials = frames.trials
    ranking = ranking_module.ranking_of(frames, p_values=True)
    ttt = time_to_target(frames, targets) if ranking.standings else pd.DataFrame()
    ranked = {s.family for s in ranking.ranked}
    rows = []
    for place, standing in enumerate(ranking.standings, start=1):
        family = standing.family
        of_family = trials[(trials["family"] == family) & (trials["role"] == "search")]
        finished = of_family[of_family["state"].isin(["complete", "pruned"])]
        rows.append(LeaderRow(
            place if family in ranked else None, family, standing.trial, standing.params,
            standing.search_val, standing.search_test, standing.confirm,
            _to_target_texts(ttt, standing.trial, targets, frames.metric),
            f"{(finished['state'] == 'complete').sum()} done, "
            f"{(finished['state'] == 'pruned').sum()} pruned"
            + (f", {unlearned} did not learn"
               if (unlearned := int((finished['status'] == 'did not learn').sum())) else ""),
            f"{int(finished['diverged'].sum())} of {len(finished)}", standing, frames.metric))
    summary = StudySummary(info.name, targets, rows, "", ranking=ranking,
                           has_confirm=any(s.confirm.n for s in ranking.standings),
                           metric=frames.metric)
    summary.notes = _notes(frames, best_per_family(trials) if len(trials) else trials)
    fixed_only = is_fixed_only(frames)
    summary.budget_note = budget_text(ranking, fixed_only, trials) if ranking.standings else ""
    summary.verdict = verdict(info.name, ranking, trials, fixed_only=fixed_only,
                              budget_note=summary.budget_note)
    return summary


def is_fixed_only(frames: ReportFrames) -> bool:
    """Every trial was listed in the sweep file (dlwizard): nothing was searched."""
    info = frames.studies[0]
    fixed = len(info.config.get("fixed") or [])
    return fixed > 0 and info.trials <= fixed


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
    for state in ("running", "waiting"):
        count = int((trials["state"] == state).sum()) if len(trials) else 0
        if count:
            notes.append(f"{count} trial(s) {state} (not finished: left out of the ranking).")
    failed = (trials["state"] == "fail").sum() if len(trials) else 0
    if failed:
        notes.append(f"{failed} trial(s) failed (errors or interrupted runs; failed trials are "
                     f"re-queued and re-run by the next `lrbench sweep`).")
    return notes


def verdict(study: str, ranking: ranking_module.Ranking, trials: pd.DataFrame,
            fixed_only: bool = False, budget_note: str | None = None) -> str:
    """The page's answer, in the ranking's order; never "wins" for a tie. It states the
    protocol and budget it rests on (``budget_note``: ``budget_text``'s, if already
    made), and what its intervals cover."""
    if ranking.basis == "none":
        counts = trials["status"].value_counts() if len(trials) else pd.Series(dtype=int)
        states = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
        return (f"Study {study} has no completed trial yet (trials: {states}), so no schedule "
                f"can be ranked.")
    ranked = ranking.ranked
    top = ranked[0]
    if len(ranked) == 1:
        return _one_family_verdict(study, ranking)
    if ranking.basis == "confirm":
        text = _confirm_verdict(study, ranking)
    else:
        text = _search_verdict(study, ranking, fixed_only)
    text += " " + (budget_note if budget_note is not None
                   else budget_text(ranking, fixed_only, trials))
    base, m = ranking.baseline, ranking.metric
    if base is not None and base is not top and top.vs_baseline is not None:
        gap = top.vs_baseline
        width = ("" if math.isnan(gap.half_width)
                 else f" (95% CI {m.difference(gap.mean - gap.half_width)} to "
                      f"{m.difference(gap.mean + gap.half_width)})")
        text += (f" Against constant LR, {top.family} is {m.difference(gap.mean)}"
                 f"{m.unit or ' in ' + m.name}{width}")
        clear = not math.isnan(gap.half_width) and abs(gap.mean) > gap.half_width
        if clear and base.tied_with_best:
            comparisons = len(ranking.ranked) - 1
            text += (f": this one interval excludes zero, but corrected for the "
                     f"{comparisons} comparisons against the best, constant LR stays within "
                     f"noise of it")
        text += "; every family's gap is in the leaderboard."
    elif base is not None and base is top:
        text += " Constant LR itself is at the top: no schedule beat a well-chosen constant LR."
    return text


VERDICT_COLUMNS = ("family", "protocol", "budget", "repeats", "seeds", "score", "ci_low",
                   "ci_high", "p_vs_best", "tied_with_best", "gap_vs_constant", "gap_ci_low",
                   "gap_ci_high", "curse_val", "curse_test")


def verdict_frame(ranking: ranking_module.Ranking) -> pd.DataFrame:
    """The verdict's numbers, one row per ranked family (``verdict-<study>.csv``).

    ``budget``: search trials per repeat; ``seeds``: confirm runs per pick (per repeat);
    ``score`` and its CI: over the ranking's units (repeats, else seeds); gaps and curses
    in the score's units (accuracy as fractions; a regression's −MSE).
    """
    rows = []
    for s in ranking.ranked:
        score = s.confirm if ranking.basis == "confirm" else stats.Interval(s.score, math.nan, 1)
        gap = s.vs_baseline
        rows.append({
            "family": s.family, "protocol": ranking.protocol,
            "budget": ranking.budgets.get(s.family, 0) // ranking.repeats,
            "repeats": ranking.repeats,
            "seeds": s.confirm_runs // max(1, s.picks) if ranking.basis == "confirm" else 0,
            "score": s.score, "ci_low": score.mean - score.half_width,
            "ci_high": score.mean + score.half_width, "p_vs_best": s.p_vs_best,
            "tied_with_best": s.tied_with_best,
            "gap_vs_constant": gap.mean if gap else math.nan,
            "gap_ci_low": gap.mean - gap.half_width if gap else math.nan,
            "gap_ci_high": gap.mean + gap.half_width if gap else math.nan,
            "curse_val": s.curse_val, "curse_test": s.curse_test})
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def budget_text(ranking: ranking_module.Ranking, fixed_only: bool = False,
                trials: pd.DataFrame | None = None) -> str:
    """The budget the ranking rests on: equal by protocol, or what the sampler spent; and
    the smaller budget at which the families' order by expected best would change."""
    budgets = {s.family: ranking.budgets.get(s.family, 0) for s in ranking.standings}
    change = ""
    if trials is not None and len(budgets) > 1 and not fixed_only:
        order, differs = budget.ranking_change(budget.curves(trials))
        if order:
            change = (f" By expected best validation {ranking.metric.name} after n trials "
                      f"(Dodge et al. "
                      f"2019), the order at the full budget is {' > '.join(order)}; "
                      + (f"with {differs} trial{'s' if differs > 1 else ''} per family or "
                         f"fewer it differs (budget figure)."
                         if differs else "it is the same at every smaller budget."))
    if ranking.protocol == "compare":
        per_repeat = sorted({n // ranking.repeats for n in budgets.values()})
        each = "/".join(map(str, per_repeat))
        return (f"Protocol compare: every family had {each} search trials in each of "
                f"{ranking.repeats} independent tuning{'s' if ranking.repeats > 1 else ''} "
                f"(pruned, diverged and failed trials count): the ranking holds at that "
                f"budget.{change}")
    if fixed_only:
        return "Protocol search: every run was listed in the sweep file."
    spent = ", ".join(f"{f} {n}" for f, n in sorted(budgets.items(), key=lambda kv: -kv[1]))
    if len(set(budgets.values())) <= 1:
        return (f"Protocol search: each family had {next(iter(budgets.values()), 0)} "
                f"trials.{change}")
    return (f"Protocol search: the sampler spent unequal budgets ({spent} trials), so this "
            f"ranking partly follows where it looked; protocol = \"compare\" gives every "
            f"family the same budget and repeats the tuning.{change}")


def _one_family_verdict(study: str, ranking: ranking_module.Ranking) -> str:
    """A study of one family (``step``) asks which parameters, not which family."""
    top, m = ranking.ranked[0], ranking.metric
    text = (f"Study {study} has results for one family, {top.family}, so there is no family "
            f"to rank; its best configuration ({top.params}) reached {m.text(top.search_val)} "
            f"validation {m.name} ({m.text(top.search_test)} test)")
    if top.confirm.n:
        return text + (f", and {m.interval(top.confirm)}{'%' if m.percent else ''} test "
                       f"{m.name} over {top.confirm.n} fresh seeds. The sensitivity figure "
                       f"shows how much each parameter matters.")
    se = ranking.standard_error(top.score)
    noise = ("" if math.isnan(se) else f": one run's validation accuracy on "
             f"{ranking.val_size:,} images has a standard error of ±{100 * se:.2f} points")
    return text + (f" in a single run{noise}. The sensitivity figure shows how much each "
                   f"parameter matters; `lrbench confirm {study}` re-trains the best with "
                   f"fresh seeds.")


def _tie_text(ranking: ranking_module.Ranking) -> str:
    tied = ranking.tied
    others = [f for f in tied if f != tied[0]]
    how = (f"{selection.PROCEDURE}, which holds its {100 * ranking_module.ALPHA:g}% error "
           f"rate although the best is picked from the same data")
    if not others:
        return f"every other family is below it ({how})"
    return (f"{', '.join(others)} {'is' if len(others) == 1 else 'are'} not distinguishable "
            f"from it ({how})")


def interval_text(ranking: ranking_module.Ranking, standing: ranking_module.Standing) -> str:
    """What a confirm interval is over, and which sources of variance it covers."""
    if ranking.unit == "repeat":
        seeds = standing.confirm_runs // max(1, standing.confirm.n)
        return (f"mean ± 95% CI over {standing.confirm.n} repeats of the tuning × {seeds} "
                f"seeds each; it covers the tuning's variance and the seeds'")
    return (f"mean ± 95% CI over {standing.confirm.n} seeds of one tuning's pick; it covers "
            f"seed noise only, and another tuning could pick another configuration")


def _confirm_verdict(study: str, ranking: ranking_module.Ranking) -> str:
    top, m = ranking.ranked[0], ranking.metric
    ties = [f for f in ranking.tied if f != top.family]
    lead = (f"{top.family} is best in study {study}" if not ties
            else f"No single winner in study {study}: {top.family} has the highest mean")
    text = (f"{lead}: test {m.name} {m.interval(top.confirm)}{'%' if m.percent else ''} "
            f"({interval_text(ranking, top)}), and {_tie_text(ranking)}.")
    if ties and len(ties) + 1 == len(ranking.ranked):
        more = ("--seeds N with more seeds, or more --repeats" if ranking.unit == "repeat"
                else "--seeds N with more seeds")
        text += (f" With {ranking.seeds} {ranking.unit}s per family, this study cannot rank "
                 f"its families: run `lrbench confirm {study}` with {more}.")
    if not math.isnan(top.curse_val):
        text += (f" Its search pick{'s' if top.picks > 1 else ''} measured "
                 f"{m.difference(top.curse_val)}{m.unit} of validation {m.name} (the metric "
                 f"that selected {'them' if top.picks > 1 else 'it'}) and "
                 f"{m.difference(top.curse_test)}{m.unit} of test {m.name} against "
                 f"{'their' if top.picks > 1 else 'its'} mean on fresh seeds: the winner's "
                 f"curse.")
    return text


def _search_verdict(study: str, ranking: ranking_module.Ranking, fixed_only: bool) -> str:
    top, m = ranking.ranked[0], ranking.metric
    se = ranking.standard_error(top.score)
    noise = (f"one run's validation accuracy on {ranking.val_size:,} images has a standard "
             f"error of ±{100 * se:.2f} points" if not math.isnan(se) else
             "the validation set's size is unknown" if m.bounded else
             "their seed noise is unmeasured")
    ties = [f for f in ranking.tied if f != top.family]
    lead = (f"{top.family} has the highest validation {m.name} in study {study}" if not ties
            else f"No single winner in study {study}: {top.family} has the highest "
                 f"validation {m.name}")
    what = "each listed run once" if fixed_only else "each family's best search run"
    text = (f"{lead}, {m.text(top.search_val)} ({m.text(top.search_test)} test; {top.params}), "
            f"and {_tie_text(ranking)}. These are single runs ({what}, no confirm runs): "
            f"{noise}.")
    if ties and len(ties) + 1 == len(ranking.ranked):
        text += " On single runs this study cannot rank its families."
    return text + (f" Run `lrbench confirm {study}` to re-train each with fresh seeds and "
                   f"rank them on means.")


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
        rows.append(ReproductionRow(name, epochs, published,
                                    ACCURACY.text(match["test_accuracy"]),
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
    # A user's model the batched engine cannot stack: why it trained one trial at a time
    fallbacks = {r["engine_fallback"] for r in [*info.runs, *info.confirm_runs]
                 if r.get("engine_fallback")}
    if fallbacks:
        out["engine fallback"] = "; ".join(sorted(fallbacks))
        started, finished = trials["started"].dropna(), trials["finished"].dropna()
        if len(started) and len(finished):
            out["trials ran"] = (f"{started.min():%Y-%m-%d %H:%M} – "
                                 f"{finished.max():%Y-%m-%d %H:%M}")
    out["trials"] = f"{info.trials} in the study, {info.confirm_trials} confirm runs"
    return out


def reproduce_commands(frames: ReportFrames) -> list[str]:
    """Commands that re-create this study, its confirm runs and this page, in order.

    Each recorded sweep run becomes one ``lrbench sweep`` with the options it ran with
    (workers, device, engine, K) and what makes it the same study: the sweep file and its
    overrides, the data folder and the storage. With one worker the replay is exact (the
    sampler's seeds derive from the base seed, the run and the slot); parallel slots
    interleave their asks by timing, so a replay with several draws other trials.
    """
    info = frames.studies[0]
    where = _storage_option(info.location)
    from_loader = info.data is not None and info.data.from_loader
    data_dir = (f" --data-dir {shlex.quote(info.data.location)}"
                if info.data is not None and info.data.location and not from_loader else "")
    command = f"lrbench sweep {shlex.quote(info.sweep_file or 'SWEEP.toml')} --study {info.name}"
    try:  # the overrides the sweep ran with: where the stored setup differs from its file
        file_config = config_module.load(info.sweep_file)
        for key in ("epochs", "dataset", "seed"):
            if key in info.config and info.config[key] != getattr(file_config, key):
                command += f" --{key} {info.config[key]}"
        if info.config.get("protocol", "search") != file_config.protocol:
            command += f" --protocol {info.config.get('protocol', 'search')}"
    except UserError:  # the file is gone or changed: the stored values are the best we have
        command += "".join(f" --{k} {info.config[k]}" for k in ("epochs", "dataset", "seed")
                           if k in info.config)
    searched = (frames.trials["role"] == "search").sum() if len(frames.trials) else 0
    runs = info.runs or [{"trials": int(searched)}]  # a study made before runs were recorded
    commands = [f"{command}{_counts(options)}{_run_flags(options)}{data_dir}{where}"
                for options in runs]
    if info.confirm_trials:
        confirm = frames.trials[frames.trials["role"] == "confirm"]
        seeds = int(confirm["confirm_index"].max()) + 1 if confirm["confirm_index"].notna().any() \
            else int(confirm.groupby("confirm_of").size().max())
        chosen = "".join(f" --trial {int(n)}" for n in sorted(confirm["confirm_of"].dropna()
                                                                 .unique()))
        options = info.confirm_runs[-1] if info.confirm_runs else {}
        commands.append(f"lrbench confirm {info.name} --seeds {seeds}{chosen}"
                        f"{_run_flags(options)}{data_dir}{where}")
    commands.append(f"lrbench report --study {info.name}{where}")
    return _user_workload_note(info) + commands


def _user_workload_note(info: StudyInfo) -> list[str]:
    """A user's model or data, named by import path: a comment line saying which, and
    where the sweep looks for their modules (the sweep file's folder first)."""
    paths = [f"{key} = {info.config[key.split('.')[1]]!r}"
             for key in ("train.model", "data.dataset")
             if is_import_path(str(info.config.get(key.split(".")[1], "")))]
    if not paths:
        return []
    folder = Path(info.sweep_file).parent if info.sweep_file else "the sweep file's folder"
    return [f"# {', '.join(paths)}: imported from {folder} (or PYTHONPATH)"]


def _counts(options: dict[str, Any]) -> str:
    """A run's trial count: its budget and repeats under the compare protocol."""
    if options.get("budget") is not None:
        return f" --budget {options['budget']} --repeats {options['repeats']}"
    return f" --trials {options['trials']}"


def _run_flags(options: dict[str, Any]) -> str:
    # On a cluster the workers' devices came from the cluster, not from --device.
    cluster = options.get("cluster")
    flags = f" --cluster {shlex.quote(cluster)}" if cluster else ""
    for key, flag in (("workers", "--workers"), ("device", "--device"), ("engine", "--engine"),
                      ("batch_trials", "--batch-trials")):
        if key == "device" and cluster:
            continue
        if options.get(key) not in (None, "", "auto"):
            flags += f" {flag} {options[key]}"
    return flags + (" --tf32" if options.get("tf32") else "")


def _storage_option(location: str) -> str:
    """``--results DIR`` for a default journal, else ``--storage``; a URL's password is left
    out (libpq reads it from PGPASSWORD or ~/.pgpass), never printed on a page."""
    if not location:
        return ""
    if is_url(location):
        parts = urllib.parse.urlsplit(location)
        if parts.password:
            host = parts.hostname + (f":{parts.port}" if parts.port else "")
            netloc = f"{parts.username}@{host}" if parts.username else host
            location = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return f" --storage {shlex.quote(location)}"
    path = Path(location)
    if path.name == DEFAULT_JOURNAL:
        return f" --results {shlex.quote(str(path.parent))}"
    return f" --storage {shlex.quote(location)}"

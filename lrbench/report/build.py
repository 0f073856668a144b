"""``lrbench report``: storage -> frames -> CSV + figures -> index.html, one step each."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from lrbench.report import compare, compare_plots, drawing, html, plots, summary
from lrbench.report import frames as frames_module
from lrbench.report.frames import DEFAULT_TARGETS, ReportFrames
from lrbench.report.ranking import ranking_of

FALLBACK_TARGETS = (0.9, 0.95)  # a data set without its own defaults


@dataclass
class Report:
    index: Path
    csvs: list[Path]
    figures: list[Path] = field(default_factory=list)
    studies: list[summary.StudySummary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # damage found in the storage


# Derived targets, as fractions of the best validation accuracy the study reached: one
# that most good runs reach, one that only runs near the best do.
DERIVED_FRACTIONS = (0.95, 0.99)


def targets_for(frames: ReportFrames, given: tuple[float, ...]) -> tuple[tuple[float, ...], str]:
    """Time-to-target's targets for one study, and a sentence saying where they came from.

    ``--target`` wins. Otherwise the data set's defaults, unless the study never reached
    the highest of them (a 5,000-image sample tops out near 95% on MNIST, and every cell
    would read "missed"): then 95% and 99% of the best validation accuracy it reached,
    rounded down to 0.1 point.
    """
    if given:
        return tuple(sorted(given)), "Targets given with --target."
    if not frames.metric.percent:
        return _regression_targets(frames)
    dataset = frames.studies[0].dataset
    defaults = DEFAULT_TARGETS.get(dataset, FALLBACK_TARGETS)
    search = frames.epochs[frames.epochs["role"] == "search"] if len(frames.epochs) else None
    reached = float(search["val_accuracy"].max()) if search is not None and len(search) \
        else math.nan
    listed = " and ".join(f"{100 * t:g}%" for t in defaults)
    if math.isnan(reached) or reached >= max(defaults):
        return defaults, f"Targets: the defaults for {dataset} ({listed}); set them with --target."
    derived = tuple(sorted({math.floor(1000 * f * reached) / 1000 for f in DERIVED_FRACTIONS}))
    return derived, (
        f"Targets: {' and '.join(f'{100 * t:.1f}%' for t in derived)}, that is 95% and 99% "
        f"of the best validation accuracy this study reached ({100 * reached:.2f}%), rounded "
        f"down to 0.1 point: the defaults for {dataset} ({listed}) are out of its reach. Set "
        f"them with --target.")


def _regression_targets(frames: ReportFrames) -> tuple[tuple[float, ...], str]:
    """A regression's targets: within 1/0.95 and 1/0.99 of the best validation MSE the
    study reached (its scores are −MSE: dividing a negative score by 0.95 loosens it)."""
    search = frames.epochs[frames.epochs["role"] == "search"] if len(frames.epochs) else None
    best = float(search["val_accuracy"].max()) if search is not None and len(search) \
        else math.nan
    if math.isnan(best):
        return (), "No targets: no search run finished an epoch."
    targets = tuple(sorted(best / f for f in DERIVED_FRACTIONS))
    return targets, (
        f"Targets: validation −MSE of {' and '.join(f'{t:.4g}' for t in targets)}, that is "
        f"the best this study reached ({best:.4g}) divided by 0.95 and 0.99: within about 5% "
        f"and 1% of its MSE (--target sets accuracy targets only).")


def build_report(location: str, out_dir: Path, studies: list[str] | None = None,
                 targets: tuple[float, ...] = (), top_k: int = 3) -> Report:
    """Write ``out_dir/index.html`` with its CSVs and PNGs; return what was written."""
    # Started first: its replayer imports torch while the storage is read (report.drawing).
    with drawing.Drawing() as drawer:
        return _build(drawer, location, out_dir, studies, targets, top_k)


def _build(drawer: drawing.Drawing, location: str, out_dir: Path, studies: list[str] | None,
           targets: tuple[float, ...], top_k: int) -> Report:
    all_frames = frames_module.load(location, studies)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir / "index.html", frames_module.export_csv(all_frames, out_dir),
                    warnings=all_frames.warnings)
    ones = [all_frames.study(info.name) for info in all_frames.studies]
    for one in ones:  # ranked once, here: the drawing processes get it with the frames
        ranking_of(one)
    chosen = [targets_for(one, targets) for one in ones]
    jobs = [_study_jobs(one, out_dir / "figures", study_targets, top_k)
            for one, (study_targets, _) in zip(ones, chosen)]
    lowest = {one.studies[0].name: min(study_targets) for one, (study_targets, _)
              in zip(ones, chosen)}
    comparisons = [_comparison(all_frames, name, members, out_dir, report, lowest)
                   for name, members in compare.groups(all_frames).items()]

    def summaries() -> list[summary.StudySummary]:  # the parent's work while figures draw
        return [_summarise(one, study_targets, note, out_dir, report)
                for one, (study_targets, note) in zip(ones, chosen)]
    figures_drawn, report.studies = drawer.draw(
        [*(job for _, figure_jobs in comparisons for job in figure_jobs),
         *(job for study_jobs in jobs for job in study_jobs)], meanwhile=summaries)
    drawn = iter(figures_drawn)
    for comparison, figure_jobs in comparisons:
        figures = [next(drawn) for _ in figure_jobs]
        comparison.figures = [_view(f) for f in figures]
        report.figures += [f.path for f in figures if f.path is not None]
    views = []
    for one, study_summary, study_jobs in zip(ones, report.studies, jobs):
        info = one.studies[0]
        intervals, budgets, *figures = [next(drawn) for _ in study_jobs]
        report.figures += [f.path for f in (intervals, budgets, *figures) if f.path is not None]
        views.append(html.StudyView(
            name=info.name, slug=plots.slug(info.name), data=summary.data_description(one),
            model=info.config.get("model", "?"), epochs=info.config.get("epochs", "?"),
            sweep_file=info.sweep_file, summary=study_summary,
            edges=[] if summary.is_fixed_only(one) else _edge_texts(one),
            reproduction=summary.reproduction(one) if _is_tutorial(one) else [],
            figures=[_view(f) for f in figures], intervals=_view(intervals),
            budgets=_view(budgets),
            provenance=summary.provenance(one), commands=summary.reproduce_commands(one),
            batched=bool(len(one.trials)) and (one.trials["engine"] == "batched").any()))
    report.index.write_text(html.render(views, location, report.warnings,
                                        [c for c, _ in comparisons]), encoding="utf-8")
    return report


def _summarise(one: ReportFrames, targets: tuple[float, ...], target_note: str,
               out_dir: Path, report: Report) -> summary.StudySummary:
    """One study's leaderboard and verdict, its verdict written to ``verdict-STUDY.csv``."""
    study_summary = summary.summarise(one, targets)
    study_summary.target_note = target_note
    verdict_csv = out_dir / f"verdict-{plots.slug(one.studies[0].name)}.csv"
    summary.verdict_frame(study_summary.ranking).to_csv(verdict_csv, index=False)
    report.csvs.append(verdict_csv)
    return study_summary


def _comparison(frames: ReportFrames, name: str, members: list[compare.Workload],
                out_dir: Path, report: Report, targets: dict[str, float]
                ) -> tuple[html.ComparisonView, list[Callable[[], plots.Figure]]]:
    """One comparison's table and CSVs, and its two figures, undrawn. The profiles time
    each workload's lowest time-to-target target."""
    table = compare.standings(frames, members)
    times = compare.times_to_target(frames, members, targets)
    curves, scores = compare.profiles(times)
    budgets = compare.budgets(frames, members)
    stem = plots.slug(name)
    for kind, df in (("comparison", table), ("budgets", budgets), ("times", times)):
        path = out_dir / f"{kind}-{stem}.csv"
        df.to_csv(path, index=False)
        report.csvs.append(path)
    rows = []
    for family in [*scores.index, *sorted(set(table["family"]) - set(scores.index))]:
        mine = table[table["family"] == family].set_index("study")
        cells = [f"{int(mine.at[w.study, 'rank'])} "
                 f"({frames.study(w.study).metric.text(mine.at[w.study, 'score'])}"
                 + ("" if mine.at[w.study, "basis"] == "confirm" else ", 1 run") + ")"
                 if w.study in mine.index else "–" for w in members]
        rows.append(html.ComparisonRow(family, cells, float(scores.get(family, 0.0))))
    folder = out_dir / "figures"
    names = {frames.study(w.study).metric.name for w in members}
    jobs = [partial(compare_plots.performance_profiles, curves, scores,
                    folder / f"compare-{stem}-profiles.png"),
            partial(compare_plots.tuning_budgets, budgets, list(scores.index),
                    folder / f"compare-{stem}-budgets.png",
                    names.pop() if len(names) == 1 else "score")]
    view = html.ComparisonView(name, stem, [f"{w.label} ({w.study})" for w in members], rows,
                               set(table["basis"]))
    return view, jobs


def _study_jobs(one: ReportFrames, folder: Path, targets: tuple[float, ...],
                top_k: int) -> list[Callable[[], plots.Figure]]:
    """One study's figures, undrawn: the verdict's first, then the page's figures. A study
    of fixed trials only searched nothing: no sensitivity, importance or search history."""
    prefix = plots.slug(one.studies[0].name)
    figures = plots.figure_jobs(one, folder, targets, top_k=top_k, prefix=prefix)
    if summary.is_fixed_only(one):
        figures = [job for job in figures if job.func not in plots.SEARCH_FIGURES]
    return [partial(plots.verdict_intervals, one, folder / f"{prefix}-00-verdict.png"),
            partial(compare_plots.study_budgets, one, folder / f"{prefix}-00-budgets.png"),
            *figures]


def _view(figure: plots.Figure) -> html.FigureView:
    if figure.path is None:
        return html.FigureView(figure.title, figure.caption, "", figure.note)
    return html.FigureView(figure.title, figure.caption, html.data_uri(figure.path),
                           figure.note, html.png_width(figure.path) // 2)


def _is_tutorial(frames: ReportFrames) -> bool:
    info = frames.studies[0]
    return info.name == "dlwizard" or Path(info.sweep_file).stem == "dlwizard"


def _edge_texts(frames: ReportFrames) -> list[str]:
    edges = plots.edge_optima(frames)
    return [f"{r.family}: {r.param.removeprefix(r.family + '.')} = {r.value:.4g} "
            f"(range {r.low:.4g} – {r.high:.4g}, at its {r.edge} end)"
            for r in edges.itertuples()]

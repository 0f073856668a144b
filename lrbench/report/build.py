"""``lrbench report``: storage -> frames -> CSV + figures -> index.html, one step each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lrbench.report import frames as frames_module
from lrbench.report import html, plots, summary
from lrbench.report.frames import DEFAULT_TARGETS, ReportFrames

FALLBACK_TARGETS = (0.9, 0.95)  # a data set without its own defaults


@dataclass
class Report:
    index: Path
    csvs: list[Path]
    figures: list[Path] = field(default_factory=list)
    studies: list[summary.StudySummary] = field(default_factory=list)


def targets_for(frames: ReportFrames, given: tuple[float, ...]) -> tuple[float, ...]:
    if given:
        return tuple(sorted(given))
    return DEFAULT_TARGETS.get(frames.studies[0].dataset, FALLBACK_TARGETS)


def build_report(location: str, out_dir: Path, studies: list[str] | None = None,
                 targets: tuple[float, ...] = (), top_k: int = 3) -> Report:
    """Write ``out_dir/index.html`` with its CSVs and PNGs; return what was written."""
    all_frames = frames_module.load(location, studies)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir / "index.html", frames_module.export_csv(all_frames, out_dir))
    views = []
    for info in all_frames.studies:
        one = all_frames.study(info.name)
        study_targets = targets_for(one, targets)
        figures = plots.draw_all(one, out_dir / "figures", study_targets, top_k=top_k,
                                 prefix=plots.slug(info.name))
        report.figures += [f.path for f in figures if f.path is not None]
        study_summary = summary.summarise(one, study_targets)
        intervals = plots.verdict_intervals(
            one, out_dir / "figures" / f"{plots.slug(info.name)}-00-verdict.png")
        if intervals.path is not None:
            report.figures.append(intervals.path)
        report.studies.append(study_summary)
        views.append(html.StudyView(
            name=info.name, slug=plots.slug(info.name), data=summary.data_description(one),
            model=info.config.get("model", "?"), epochs=info.config.get("epochs", "?"),
            sweep_file=info.sweep_file, summary=study_summary, edges=_edge_texts(one),
            reproduction=summary.reproduction(one) if _is_tutorial(one) else [],
            figures=[_view(f) for f in figures], intervals=_view(intervals),
            provenance=summary.provenance(one), commands=summary.reproduce_commands(one),
            batched=bool(len(one.trials)) and (one.trials["engine"] == "batched").any()))
    report.index.write_text(html.render(views, location), encoding="utf-8")
    return report


def _view(figure: plots.Figure) -> html.FigureView:
    return html.FigureView(figure.title, figure.caption,
                           html.data_uri(figure.path) if figure.path else "", figure.note)


def _is_tutorial(frames: ReportFrames) -> bool:
    info = frames.studies[0]
    return info.name == "dlwizard" or Path(info.sweep_file).stem == "dlwizard"


def _edge_texts(frames: ReportFrames) -> list[str]:
    edges = plots.edge_optima(frames)
    return [f"{r.family}: {r.param.removeprefix(r.family + '.')} = {r.value:.4g} "
            f"(range {r.low:.4g} – {r.high:.4g}, at its {r.edge} end)"
            for r in edges.itertuples()]

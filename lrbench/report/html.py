"""One self-contained HTML page: figures embedded as data URIs, so it opens from disk,
from a copied folder or from a mail attachment with every image in place."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

import lrbench
from lrbench.report.summary import ReproductionRow, StudySummary
from lrbench.store.storage import shown


@dataclass
class FigureView:
    title: str
    caption: str
    src: str  # a data: URI, or "" when there was nothing to draw
    note: str = ""
    width: int = 0  # CSS pixels: half the PNG's, so it shows at 2x density (or smaller)


@dataclass
class StudyView:
    name: str
    slug: str
    data: str
    model: str
    epochs: Any
    sweep_file: str
    summary: StudySummary
    edges: list[str]
    reproduction: list[ReproductionRow]
    figures: list[FigureView]
    provenance: dict[str, Any]
    commands: list[str]
    batched: bool = False  # some trials trained in a batch: their seconds are shared
    intervals: FigureView | None = None  # the verdict's figure, under the leaderboard
    budgets: FigureView | None = None  # the verdict's budget curves, beside it


@dataclass
class ComparisonRow:
    family: str
    cells: list[str]  # per workload: "rank (score)" or "–" where the family was not run
    profile_score: float  # area under its performance profile, 0..1


@dataclass
class ComparisonView:
    name: str  # the sweep file the compared studies ran
    slug: str
    workloads: list[str]
    rows: list[ComparisonRow]  # by profile score, best first
    bases: set[str]  # "confirm" and/or "search": what the scores are
    figures: list[FigureView] = field(default_factory=list)


def png_width(png: Path) -> int:
    """The PNG's width in pixels, from its IHDR chunk (bytes 16-20)."""
    with open(png, "rb") as handle:
        head = handle.read(24)
    return int.from_bytes(head[16:20], "big")


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def render(studies: list[StudyView], storage: str, warnings: list[str] | None = None,
           comparisons: list[ComparisonView] | None = None) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("lrbench.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return env.get_template("report.html.j2").render(
        studies=studies, storage=shown(storage), generated=now, version=lrbench.__version__,
        warnings=warnings or [], comparisons=comparisons or [])

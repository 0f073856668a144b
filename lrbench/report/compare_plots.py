"""The figures of the comparison across workloads (``report.compare``): performance
profiles and tuning-budget curves. Drawn like the study figures (``report.plots``): one
PNG each, a family's colour and marker fixed by the registry."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from lrbench.report.plots import (
    NO_COMPLETED,
    WIDTH,
    Figure,
    family_markers,
    family_palette,
    legend_above,
    legend_marker,
    render,
)


def performance_profiles(curves: pd.DataFrame, scores: pd.Series, path: Path) -> Figure:
    """Each family's performance profile across the compared workloads."""
    title = "Performance profiles across workloads"
    if len(scores) < 2:
        return Figure(None, title, "", "a profile compares families: this comparison has "
                                       f"{len(scores)} with results")
    caption = ("For each tolerance tau (x, accuracy points), the fraction of workloads on "
               "which a family's score is within tau of that workload's best (AlgoPerf's "
               "performance profiles; higher and further left is better). Legend: families "
               "by the area under their profile, scaled to 0-1.")
    return Figure(render(_draw_profiles, path, curves, scores), title, caption)


def _draw_profiles(curves: pd.DataFrame, scores: pd.Series) -> Any:
    order = list(scores.index)
    palette, markers = family_palette(order), family_markers(order)
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2))
    for family in order:
        mine = curves[curves["family"] == family]
        ax.step(100 * mine["tau"], mine["fraction"], where="post", color=palette[family],
                marker=markers[family], markevery=max(1, len(mine) // 6), linewidth=1.5,
                label=f"{family} ({scores[family]:.2f})")
    ax.set(xlabel="tau: points below the workload's best", ylabel="fraction of workloads",
           ylim=(-0.03, 1.03))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small")
    return fig


def tuning_budgets(table: pd.DataFrame, order: list[str], path: Path) -> Figure:
    """Expected best validation accuracy after n trials, per family, one panel per workload."""
    title = "Tuning budget: best validation accuracy after n trials"
    if table.empty:
        return Figure(None, title, "", NO_COMPLETED)
    caption = ("The expected best validation accuracy after n search trials of a family "
               "(line) and its 10-90% band, from the exact bootstrap distribution of the "
               "family's completed trials; each curve stops at the family's own trial count. "
               "A family whose curve rises late needs more tuning to show its best.")
    drawn = render(_draw_budgets, path, table, [f for f in order if f in set(table["family"])])
    return Figure(drawn, title, caption)


def _draw_budgets(table: pd.DataFrame, order: list[str]) -> Any:
    palette, markers = family_palette(order), family_markers(order)
    panels = list(dict.fromkeys(table["workload"]))
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, 0.6 + 3.2 * rows), squeeze=False)
    for ax, workload in zip(axes.flat, panels):
        mine = table[table["workload"] == workload]
        for family in order:
            curve = mine[mine["family"] == family]
            if curve.empty:
                continue
            ax.plot(curve["n"], curve["expected"], color=palette[family],
                    marker=markers[family], markevery=max(1, len(curve) // 5), linewidth=1.4)
            ax.fill_between(curve["n"], curve["low"], curve["high"], color=palette[family],
                            alpha=0.12, linewidth=0)
        ax.set(title=workload, xlabel="trials of the family", ylabel="best val accuracy")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    legend_above(fig, [legend_marker(f, palette[f], markers[f], "-") for f in order])
    fig.tight_layout()
    return fig

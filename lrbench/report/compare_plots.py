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

from lrbench.report import budget, compare
from lrbench.report.frames import ReportFrames
from lrbench.report.plots import (
    NO_COMPLETED,
    TITLE_ROOM,
    WIDTH,
    X_LABEL_ROOM,
    Y_LABEL_ROOM,
    Figure,
    family_markers,
    family_order,
    family_palette,
    legend_above,
    legend_marker,
    render,
    zoom,
)


def performance_profiles(curves: pd.DataFrame, scores: pd.Series, path: Path) -> Figure:
    """Each family's performance profile across the compared workloads."""
    title = "Performance profiles across workloads"
    if len(scores) < 2:
        return Figure(None, title, "", "a profile compares families: this comparison has "
                                       f"{len(scores)} with results")
    caption = ("AlgoPerf's performance profiles: for each ratio tau (x), the fraction of "
               "workloads on which a family reached the workload's target (its lowest "
               "time-to-target target) within tau times the fastest family's epochs (median "
               "over its confirm runs, else its search picks). Higher and further left is "
               "better; a family that never reached a target stays below 1. Legend: the "
               f"exact area under each profile over [1, {compare.R_MAX:g}], scaled to 0-1 "
               "(AlgoPerf's score).")
    return Figure(render(_draw_profiles, path, curves, scores), title, caption)


def _draw_profiles(curves: pd.DataFrame, scores: pd.Series) -> Any:
    order = list(scores.index)
    palette, markers = family_palette(order), family_markers(order)
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2))
    for family in order:
        mine = curves[curves["family"] == family]
        ax.step(mine["tau"], mine["fraction"], where="post", color=palette[family],
                marker=markers[family], markevery=max(1, len(mine) // 6), linewidth=1.5,
                label=f"{family} ({scores[family]:.2f})")
    ax.set(xlabel="tau: epochs to target over the fastest family's",
           ylabel="fraction of workloads", ylim=(-0.03, 1.03), xlim=(1, compare.R_MAX))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small")
    return fig


def study_budgets(frames: ReportFrames, path: Path) -> Figure:
    """One study's tuning-budget curves (a comparison's figure, with one panel)."""
    table = budget.curves(frames.trials).assign(workload=frames.studies[0].name)
    return tuning_budgets(table, family_order(frames), path, frames.metric.name)


def tuning_budgets(table: pd.DataFrame, order: list[str], path: Path,
                   score: str = "accuracy") -> Figure:
    """Expected best validation score after n trials, per family, one panel per workload.
    ``score``: what the scores are ("accuracy"; a comparison of several metrics: "score")."""
    title = f"Tuning budget: best validation {score} after n trials"
    if table.empty:
        return Figure(None, title, "", NO_COMPLETED)
    caption = (f"The expected best validation {score} after n search trials of a family "
               "(line) and its 10-90% band (Dodge et al. 2019), from the exact bootstrap "
               "distribution of every trial the family spent: pruned ones at the score "
               "they were stopped at, diverged ones at theirs, failed ones at 0 (a "
               "regression's: at its study's worst −MSE). Under the "
               "compare protocol, the mean over repeats of each tuning's curve, up to the "
               "budget. A family whose curve rises late needs more tuning to show its best. "
               "The axis follows the curves; a band reaching below it is cut at the edge.")
    drawn = render(_draw_budgets, path, table, [f for f in order if f in set(table["family"])],
                   score)
    return Figure(drawn, title, caption)


def _draw_budgets(table: pd.DataFrame, order: list[str], score: str = "accuracy") -> Any:
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
        # The expected values set the axis: a band's low end can sit at chance (a family
        # with near-chance trials), which squashed every curve into a line.
        low, high = zoom(pd.concat([mine["expected"], mine["high"]]))
        ax.set(title=workload, xlabel="trials of the family", ylabel=f"best val {score}",
               ylim=(low, high))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    legend_above(fig, [legend_marker(f, palette[f], markers[f], "-") for f in order])
    # Fixed margins, not tight_layout, whose measuring is a second draw of the figure: room
    # for the labels left of and below the panels, and for their titles (the legend goes
    # above the figure, in the canvas's overhang: plots.render crops to what is drawn).
    height = fig.get_figheight()
    fig.subplots_adjust(left=Y_LABEL_ROOM / WIDTH, right=1, bottom=X_LABEL_ROOM / height,
                        top=1 - TITLE_ROOM / height,
                        wspace=0.3, hspace=0.45)
    return fig

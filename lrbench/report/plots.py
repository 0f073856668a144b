"""One study's frames -> matplotlib figures (in seaborn's style), one PNG each, for the HTML report.

Every public figure function takes one study's ``ReportFrames`` (``frames.study(name)``)
and a path, and returns a ``Figure``: the PNG's path plus a title, caption and note for
the page. When there is nothing to draw (no completed trial, no searched parameter ...)
it writes nothing, ``path`` is None and ``note`` says why, so the page can print that
instead of an image; no function raises on an empty or odd study.

Each family keeps one colour (``family_palette``) and one place (``family_order``: the
study's ranking, ``report.ranking``) in every figure. Only drawing happens here: the numbers come
from ``report/frames.py``, and the small data steps below (``edge_optima`` and the
``_*_data`` helpers) are plain pandas that tests check without drawing.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cbook import boxplot_stats
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FuncFormatter,
    Locator,
    LogLocator,
    MaxNLocator,
    NullLocator,
)
from matplotlib.transforms import Bbox
from PIL import Image

from lrbench.report import selection, stats
from lrbench.report.frames import (
    PARAM_PREFIX,
    ReportFrames,
    best_per_family,
    completed,
    top_k_per_family,
)
from lrbench.report.frames import time_to_target as target_epochs
from lrbench.report.metric import ACCURACY, Metric
from lrbench.report.ranking import ranking_of
from lrbench.train.schedules import FAMILIES, SCHEDULE_FREE_FAMILY

# Reports are built headless (CLI, CI, a worker box): never open a window.
matplotlib.use("Agg")

DPI = 200  # 2x the page's CSS pixels: sharp on high-resolution screens
WIDTH = 11.0  # inches: the page's ~1,100 px content width at 100 px per inch
COL_WRAP = 4  # facets per row: 11 families -> 3 rows of ~270 px panels
PANEL_HEIGHT = 2.3  # inches per facet row
TITLE_ROOM = 0.3  # inches above a figure's first row of panels, for their titles
Y_LABEL_ROOM = 0.75  # inches left of a panel for its y tick labels and y label
X_LABEL_ROOM = 0.5  # inches below a panel for its x tick labels and x label
# Inches around a figure where its legends and labels may still be drawn: the most any
# figure uses is ~0.7 (a row of panels' y labels). Every inch costs: the canvas is
# cleared, copied and compared with its background pixel by pixel, and at 1.5 inches
# that was ~0.8 s of the benchmark page's ~15 s of drawing.
OVERHANG = 1.0
WIDE_OVERHANG = 4.0  # the canvas for a figure that reached the edge of OVERHANG's
CROP_PAD = 0.1  # inches of background left around a drawn figure (savefig's pad_inches)
CONFIRM_COLOUR = "black"
EDGE_MARGIN = 0.05  # an optimum within 5% of its range's end may lie outside the range
# The registry's families need colours a reader can tell apart: tab10 without its grey
# (grey reads as "no family"), then a maroon, a gold, a magenta, a peach, a lavender, a
# dark green, a dark grey and an ochre, each at least as far from the others (CIE76) as
# tab10's own closest pair (the teal and navy used before read as a third green and
# blue). One more than the registry's families: a family outside it gets a colour of its
# own. Colour alone still fails some readers and printers, so each family also keeps a
# marker of its own.
COLOURS = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7]
COLOURS += sns.color_palette(["#800000", "#e6ab02", "#f0027f", "#fdc086", "#cab2d6",
                              "#00441b", "#4d4d4d", "#a6761d"])
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "8", "H", "d", "1", "2"]
FILE_STEMS = ("01-accuracy", "02-convergence", "03-learning-rates", "04-learning-rates-overlaid",
              "05-losses", "06-sensitivity", "07-importance-history", "08-time-to-target")
SENSITIVITY_TITLE = "Sensitivity: validation accuracy against each searched parameter"
HISTORY_TITLE = "Optimisation history and parameter importances"
NO_COMPLETED = "no completed search trial (all failed, pruned, diverged or still running)"


@dataclass(frozen=True)
class Figure:
    """One figure for the page.

    ``path`` is the PNG, or None when there was nothing to draw; ``note`` then says why
    (the page shows it instead of an image). A drawn figure's ``note`` is a caveat for
    under the image ("2 trials below 0.80 are off-scale"), or empty.
    """

    path: Path | None
    title: str
    caption: str
    note: str = ""

    @property
    def drawn(self) -> bool:
        return self.path is not None


# --- colours, order, shared helpers --------------------------------------------------


def family_palette(families: Iterable[str]) -> dict[str, Any]:
    """family -> RGB colour, fixed by the family's place in the schedule registry.

    So a family has the same colour in every figure and every study, whatever subset
    is drawn. A family that declares its colour (``Family.colour``) has it; names outside
    the registry take the colours after it, by name; past the palette, new hues.
    """
    families = list(dict.fromkeys(families))
    slots = list(FAMILIES) + sorted(set(families) - set(FAMILIES))
    declared = {f: mcolors.to_rgb(FAMILIES[f].colour) for f in slots
                if f in FAMILIES and FAMILIES[f].colour}
    rest = [f for f in slots if f not in declared]
    # past COLOURS, evenly spaced hues of their own (husl: equal lightness), not repeats
    extra = sns.color_palette("husl", max(0, len(rest) - len(COLOURS)))
    given = dict(zip(rest, [*COLOURS, *extra]))
    return {f: declared.get(f, given.get(f)) for f in families}


def family_markers(families: Iterable[str]) -> dict[str, str]:
    """family -> matplotlib marker, fixed like its colour by its place in the registry."""
    families = list(dict.fromkeys(families))
    slots = list(FAMILIES) + sorted(set(families) - set(FAMILIES))
    return {f: MARKERS[slots.index(f) % len(MARKERS)] for f in families}


def family_order(frames: ReportFrames) -> list[str]:
    """Families in the study's one ranking (``report.ranking``: the page's order).

    Families without a completed search trial come last, in registry order.
    """
    trials = frames.trials
    if trials.empty:
        return []
    ranked = ranking_of(frames).order
    registry = {f: i for i, f in enumerate(FAMILIES)}
    rest = sorted(set(trials["family"]) - set(ranked), key=lambda f: (registry.get(f, 99), f))
    return ranked + rest


def _done(frames: ReportFrames, role: str = "search",
          column: str = "val_accuracy") -> pd.DataFrame:
    """Completed, non-diverged trials of ``role`` with a value in ``column``."""
    if frames.trials.empty:
        return frames.trials
    return completed(frames.trials, role).dropna(subset=[column])


def zoom(values: pd.Series) -> tuple[float, float]:
    """Axis limits for accuracies: from just below the 5% quantile to just above the best.

    One bad run at 0.15 would otherwise squash every other family into a line. Under 20
    values the quantile is just the worst few points, so all of them are shown.
    """
    clip = len(values) >= 20
    low, high = float(values.quantile(0.05) if clip else values.min()), float(values.max())
    pad = max(0.1 * (high - low), 0.005)
    return low - pad, min(high + pad / 2, 1.0 + pad / 2)


def _below(values: pd.Series, low: float, what: str) -> str:
    n = int((values < low).sum())
    return f"{n} {what} below {low:.3f} off-scale." if n else ""


def _missing(frames: ReportFrames, drawn: list[str]) -> str:
    """A note naming the study's families a figure could not show, and the diverged
    trials it left out (they have no accuracy to place)."""
    absent = [f for f in family_order(frames) if f not in drawn]
    search = frames.trials[frames.trials["role"] == "search"]
    diverged = int(search["diverged"].sum())
    return " ".join(filter(None, [
        f"No completed search trial: {', '.join(absent)}." if absent else "",
        f"{diverged} diverged search trial(s) not shown." if diverged else ""]))


def legend_above(owner: Any, handles: list[Any], ncol: int = 4) -> None:
    """A legend just above an axes or a whole figure (panels), where it hides no data."""
    owner.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=ncol,
                 frameon=False, fontsize="small", borderaxespad=0.3)


def legend_marker(label: str, colour: Any, marker: str = "o", line: str = "",
                  width: float = 1.5, size: float = 6) -> Line2D:
    """A legend entry: a marker, a line, or both."""
    return Line2D([], [], color=colour, marker=marker, linestyle=line, linewidth=width,
                  markersize=size, label=label)


def share_y(axes: Sequence[Any], ylim: tuple[float, float]) -> None:
    """One y range over a row of panels, labelled on the first only: what ``sharey`` draws,
    without matplotlib's shared-axis bookkeeping, which measures every sibling's tick
    labels for every panel at every draw (quadratic: seconds for a 50-panel figure)."""
    for index, ax in enumerate(axes):
        ax.set_ylim(ylim)
        if index:
            ax.tick_params(labelleft=False)


def panel_title(ax: Any, text: str, **kwargs: Any) -> None:
    """A title at a fixed height: an automatic one is re-placed at every draw by measuring
    the panel's ticks (a third of a many-panel figure's drawing time)."""
    ax.set_title(text, y=1.0, **kwargs)


def family_panels(order: list[str]) -> tuple[Any, dict[str, Any]]:
    """A figure of one panel per family, ``COL_WRAP`` to a row, ~WIDTH/COL_WRAP wide each
    (the layout of seaborn's ``relplot(col_wrap=...)``), and its panels by family.

    Plain subplots, not relplot, and not shared: a shared axis measures every sibling's
    tick labels for every panel at every draw, and relplot lays the figure out twice.
    ``finish_panels`` gives the panels one range and inner labels off, as sharing would.
    """
    ncols = min(COL_WRAP, len(order))
    nrows = -(-len(order) // ncols)
    fig = plt.figure(figsize=(ncols * WIDTH / COL_WRAP, nrows * PANEL_HEIGHT))
    grid = fig.add_gridspec(nrows, ncols)
    flat = [fig.add_subplot(grid[i // ncols, i % ncols]) for i in range(len(order))]
    # No margins: the saved image is cropped to what is drawn. Room above the first row
    # for the titles, the legend just above them (``legend_above``).
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - TITLE_ROOM / fig.get_figheight(),
                        wspace=0.12, hspace=0.35)
    return fig, dict(zip(order, flat))


def finish_panels(panels: dict[str, Any], xlabel: str, ylabel: str,
                  sharey: bool = True) -> None:
    """Titles, integer epoch ticks, one x range (and one y range if ``sharey``) over all
    panels; tick labels and axis labels only on the outer ones."""
    axes = list(panels.values())
    columns = min(COL_WRAP, len(axes))

    def union(limits: list[tuple[float, float]]) -> tuple[float, float]:
        return min(low for low, _ in limits), max(high for _, high in limits)

    axes[0].figure.subplots_adjust(wspace=0.12 if sharey else 0.3)  # room for y labels
    xlim = union([ax.get_xlim() for ax in axes])
    ylim = union([ax.get_ylim() for ax in axes]) if sharey else None
    for index, (family, ax) in enumerate(panels.items()):
        if not ax.get_title():
            panel_title(ax, family)
        ax.set_xlim(xlim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        last_in_column = index + columns >= len(axes)
        ax.set_xlabel(xlabel if last_in_column else "")
        ax.tick_params(labelbottom=last_in_column)
        first_in_row = index % columns == 0
        ax.set_ylabel(ylabel if first_in_row else "")
        if sharey:
            ax.set_ylim(ylim)
            ax.tick_params(labelleft=first_in_row)


@contextmanager
def _style() -> Iterator[None]:
    # A context, not sns.set_theme(): importing this module must not restyle a user's plots.
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        yield


def render(draw: Callable[..., Any], path: Path, *args: Any) -> Path:
    """Call ``draw(*args)`` (returns a matplotlib figure), save it, close every new figure.

    Closing even when drawing fails keeps a long report run from leaking figures.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    before = set(plt.get_fignums())
    try:
        with _style():
            image = _drawn_image(draw(*args))
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
    save_palette_png(image, path)
    return path


def _drawn_image(fig: Any) -> Image.Image:
    """The figure as an RGB image, cropped to what is drawn plus ``CROP_PAD`` inches.

    What ``savefig(bbox_inches="tight")`` gives, in one draw instead of two: "tight"
    draws the figure once to measure it, then again to save it, and measuring (every
    tick label's extent) costs as much again. Here the figure is drawn once onto a canvas
    ``OVERHANG`` inches larger on every side (legends and labels may sit outside the
    figure), as raw pixels (encoding a PNG only to decode it again was a quarter of the
    report's CPU), and the background around the drawing is cut off. A drawing that
    reaches the canvas's edge may go on beyond it: it is drawn again on a canvas
    ``WIDE_OVERHANG`` inches larger (rare: a figure's legend taller than ``OVERHANG``).
    Each axis's locator is wrapped first (``InViewLocator``): no tick is built that the
    view would not show. The figure is for drawing once, then closing.
    """
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(InViewLocator(axis.get_major_locator()))
    image, drawn = _drawn_pixels(fig, OVERHANG)
    if drawn is not None and _touches_edge(drawn, image.size):
        image, drawn = _drawn_pixels(fig, WIDE_OVERHANG)
    if drawn is None:
        return image.convert("RGB")
    pad = round(CROP_PAD * DPI)
    left, top, right, bottom = drawn
    return image.crop((max(left - pad, 0), max(top - pad, 0),
                       min(right + pad, image.width), min(bottom + pad, image.height))
                      ).convert("RGB")


class InViewLocator(Locator):
    """Another locator's ticks, less those outside the axis's view.

    Matplotlib builds a tick (two marks, a grid line, two labels: ~0.6 ms) for every
    position its locator gives, and draws only those in view: the automatic locators give
    one step beyond each end. On the benchmark page, 1 in 4 of the ~3,100 ticks built
    were never drawn.
    """

    def __init__(self, base: Locator) -> None:
        self.base = base

    def set_axis(self, axis: Any) -> None:
        super().set_axis(axis)
        self.base.set_axis(axis)

    def __call__(self) -> np.ndarray:
        locs = np.asarray(self.base(), dtype=float)
        if not len(locs):
            return locs
        # Compared where they are drawn (log axes), with matplotlib's own slack for a tick
        # at the very end of the view.
        scale = self.axis.get_transform()
        low, high = sorted(scale.transform(np.asarray(self.axis.get_view_interval(), float)))
        with np.errstate(invalid="ignore", divide="ignore"):
            at = scale.transform(locs)
        slack = 1e-10 * (high - low)
        return locs[(at >= low - slack) & (at <= high + slack)]

    def tick_values(self, vmin: float, vmax: float) -> Any:
        return self.base.tick_values(vmin, vmax)

    def nonsingular(self, v0: float, v1: float) -> tuple[float, float]:
        return self.base.nonsingular(v0, v1)

    def view_limits(self, vmin: float, vmax: float) -> tuple[float, float]:
        return self.base.view_limits(vmin, vmax)


def _drawn_pixels(fig: Any, overhang: float
                  ) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """The figure drawn on a canvas ``overhang`` inches larger on every side, and the
    box (left, top, right, bottom) of what differs from the background (None: nothing)."""
    width, height = fig.get_size_inches()
    area = Bbox([[-overhang, -overhang], [width + overhang, height + overhang]])
    raw = io.BytesIO()
    fig.savefig(raw, format="rgba", dpi=DPI, bbox_inches=area)
    image = _rgba_image(raw.getbuffer(), area.width * DPI, area.height * DPI)
    # The rows and columns with a pixel unlike the first (the background), each pixel
    # compared as one 32-bit number: a third of the time of Pillow's difference image
    # and its bounding box.
    columns, rows = image.size
    pixels = np.frombuffer(raw.getbuffer(), np.uint32).reshape(rows, columns)
    differs = pixels != pixels[0, 0]
    ys, xs = np.flatnonzero(differs.any(axis=1)), np.flatnonzero(differs.any(axis=0))
    if not len(ys):
        return image, None
    return image, (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


def _touches_edge(box: tuple[int, int, int, int], size: tuple[int, int]) -> bool:
    left, top, right, bottom = box
    return left == 0 or top == 0 or right == size[0] or bottom == size[1]


def _rgba_image(buffer: memoryview, width: float, height: float) -> Image.Image:
    """Agg's raw RGBA pixels as an image. Its canvas is the float size cut to whole
    pixels; which way a size such as 2799.9999 went, the buffer's length says."""
    for columns in {int(width), round(width)}:
        rows = len(buffer) // (4 * columns)
        if rows * columns * 4 == len(buffer) and abs(rows - height) < 2:
            return Image.frombuffer("RGBA", (columns, rows), buffer, "raw", "RGBA", 0, 1)
    raise ValueError(f"a raw figure of {len(buffer)} bytes is not {width:g} x {height:g} "
                     f"pixels")


def save_palette_png(image: Image.Image, path: Path) -> None:
    """Save a figure as a 256-colour PNG: flat colours and antialiased lines fit a palette,
    at about a third of the bytes of matplotlib's RGBA (the page embeds every figure)."""
    palette = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                             dither=Image.Dither.NONE)
    # zlib's default level: its highest ("optimize") saves a tenth of the bytes in five
    # times the time, and the report waits for every figure.
    palette.save(path, format="PNG", compress_level=6)


# --- 1. test accuracy by family --------------------------------------------------------


def accuracy_by_family(frames: ReportFrames, path: Path) -> Figure:
    """Box + dots of every completed search trial's test accuracy; confirm runs as diamonds."""
    m = frames.metric
    title = f"Test {m.name} by family"
    search = _done(frames, column="test_accuracy")
    if search.empty:
        return Figure(None, title, "", NO_COMPLETED)
    confirm = _done(frames, "confirm", "test_accuracy")
    order = [f for f in family_order(frames) if f in set(search["family"])]
    confirm = confirm[confirm["family"].isin(order)]
    low, high = zoom(search["test_accuracy"])
    if len(confirm):  # every confirm run stays on the axis: they carry the verdict
        low = min(low, float(confirm["test_accuracy"].min()) - 0.005)
        high = max(high, float(confirm["test_accuracy"].max()) + 0.0025)
    clipped = int((search["test_accuracy"] < low).sum())
    caption = (f"Final test {m.name} of {len(search)} completed search trials (box: quartiles,"
               f" dots: trials) and {len(confirm)} confirm runs (black diamonds: each "
               "family's search picks re-trained with fresh seeds; all drawn). Families in "
               "the ranking's order."
               + (f" {clipped} search trial(s) below {m.tick(low)} are drawn at the left "
                  f"edge as open triangles." if clipped else ""))
    note = _missing(frames, order)
    drawn = render(_draw_accuracy, path, search, confirm, order, (low, high), m)
    return Figure(drawn, title, caption, note)


def _draw_accuracy(search: pd.DataFrame, confirm: pd.DataFrame, order: list[str],
                   xlim: tuple[float, float], metric: Metric = ACCURACY) -> Any:
    palette = family_palette(order)
    fig, ax = plt.subplots(figsize=(WIDTH, 1.2 + 0.45 * len(order)))
    jitter = np.random.default_rng(0)  # the same storage, the same page
    for y, family in enumerate(order):
        values = search.loc[search["family"] == family, "test_accuracy"].to_numpy(float)
        _draw_box(ax, y, values, palette[family])
        inside = values[values >= xlim[0]]
        ax.scatter(inside, y + jitter.uniform(-0.2, 0.2, len(inside)), color=palette[family],
                   s=16, linewidths=0.5, edgecolors="white", zorder=3)
        off = len(values) - len(inside)  # off-scale trials: at the edge, marked, counted
        if off:
            ax.plot([xlim[0]] * off, [y] * off, marker="<", markersize=7, linestyle="",
                    markerfacecolor="white", color=palette[family], clip_on=False)
            ax.annotate(f"{off}", (xlim[0], y), xytext=(8, 4), textcoords="offset points",
                        fontsize="x-small", color=palette[family])
        runs = confirm.loc[confirm["family"] == family, "test_accuracy"].to_numpy(float)
        ax.scatter(runs, y + jitter.uniform(-0.08, 0.08, len(runs)), color=CONFIRM_COLOUR,
                   marker="D", s=25, linewidths=0, zorder=4)
    category_axis(ax.yaxis, order)
    ax.set(xlim=xlim, xlabel=f"{metric.axis('test')} (final epoch)", ylabel="")
    legend_above(ax, [Patch(color="0.75", label="search trials: quartiles"),
                 legend_marker("search trial", "0.45"),
                 legend_marker("confirm run (fresh seed)", CONFIRM_COLOUR, "D", size=5)])
    return fig


def _draw_box(ax: Any, y: float, values: np.ndarray, colour: Any, height: float = 0.6) -> None:
    """A horizontal box plot of ``values`` at ``y``: the quartiles as a pale box, the
    median, and whiskers to the furthest values within 1.5 IQR (matplotlib's numbers,
    ``boxplot_stats``; fewer artists than ``boxplot``, whose options vary by version)."""
    if not len(values):
        return
    box = boxplot_stats(values)[0]
    ax.barh(y, box["q3"] - box["q1"], height=height, left=box["q1"], color=colour,
            alpha=0.35, edgecolor="0.2", linewidth=1)
    ax.vlines(box["med"], y - height / 2, y + height / 2, color="black", linewidth=1.5)
    ax.hlines([y, y], [box["whislo"], box["q3"]], [box["q1"], box["whishi"]], color="black",
              linewidth=1.2)
    ax.vlines([box["whislo"], box["whishi"]], y - height / 4, y + height / 4, color="black",
              linewidth=1.2)


def category_axis(axis: Any, labels: list[str]) -> None:
    """A categorical axis as seaborn draws one: a slot per label, the first at the top
    (or left), no grid lines across the categories."""
    axis.set_ticks(range(len(labels)), labels)
    axis.grid(False)
    if axis.axis_name == "y":
        axis.axes.set_ylim(len(labels) - 0.5, -0.5)
    else:
        axis.axes.set_xlim(-0.5, len(labels) - 0.5)


# --- the verdict's figure: each family's score with its interval ------------------------


def verdict_intervals(frames: ReportFrames, path: Path) -> Figure:
    """Each ranked family's score ± 95% CI on one axis, in the ranking's order, with the
    constant-LR baseline marked: what the verdict says, drawn."""
    ranking, m = ranking_of(frames), frames.metric
    title = "The ranking with its uncertainty"
    standings = ranking.ranked
    if len(standings) < 2:
        return Figure(None, title, "", "fewer than two families with a result: nothing to "
                                       "compare")
    if ranking.basis == "confirm":
        over = (f"{ranking.repeats} repeats of the tuning (each the mean over its seeds)"
                if ranking.unit == "repeat" else "confirm seeds")
        caption = (f"Mean test {m.name} over {over} ± 95% CI (Student t), best first. "
                   f"Filled: not distinguishable from the best ({selection.PROCEDURE}); "
                   f"hollow: below it. Crosses: the search picks' own test {m.name}, whose "
                   f"distance to the mean is the winner's curse on test.")
    else:
        spread = ("± 1.96 binomial standard errors of its validation set" if m.bounded
                  else "(single runs: no interval)")
        caption = (f"Single runs: each family's best search trial's validation {m.name} "
                   f"{spread}, best first. Filled: not distinguishable from the best "
                   f"({selection.PROCEDURE}, single runs); hollow: below.")
    if ranking.baseline is not None:
        caption += " Dashed line: constant LR, the baseline."
    return Figure(render(_draw_intervals, path, ranking), title, caption)


def _draw_intervals(ranking: Any) -> Any:
    standings = ranking.ranked
    palette = family_palette(s.family for s in standings)
    fig, ax = plt.subplots(figsize=(WIDTH, 1.0 + 0.42 * len(standings)))
    for y, s in enumerate(standings):
        if ranking.basis == "confirm":
            centre, half = s.confirm.mean, s.confirm.half_width
        else:
            centre, half = s.score, 1.96 * ranking.standard_error(s.score)
        colour = palette[s.family]
        ax.errorbar(centre, y, xerr=None if math.isnan(half) else half, fmt="o",
                    color=colour, markerfacecolor=colour if s.tied_with_best else "white",
                    markersize=8, capsize=4, linewidth=2)
        if ranking.basis == "confirm":
            ax.plot(s.search_test, y, marker="x", color="0.3", markersize=7, linestyle="")
    base = ranking.baseline
    if base is not None:
        ax.axvline(base.score, color="0.4", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(standings)), [s.family for s in standings])
    ax.invert_yaxis()
    m = ranking.metric
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: m.tick(v)))
    what = f"test {m.name} over seeds" if ranking.basis == "confirm" else f"validation {m.name}"
    ax.set(xlabel=what, ylabel="")
    return fig


# --- 2. convergence --------------------------------------------------------------------


def convergence(frames: ReportFrames, path: Path, top_k: int = 3) -> Figure:
    """Validation accuracy per epoch: the top-k search trials per family, best bold, and
    the confirm runs' mean with its 95% CI band."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, but got {top_k=}")
    title = f"Convergence: validation {frames.metric.name} per epoch"
    curves, confirm = _convergence_data(frames, top_k)
    if curves.empty:
        return Figure(None, title, "", NO_COMPLETED + " with per-epoch curves")
    order = [f for f in family_order(frames) if f in set(curves["family"])]
    ylim = zoom(curves["val_accuracy"])
    caption = (f"The {top_k} best search trials per family (thin; the best bold)"
               + (f" and the mean ± 95% CI over {confirm['number'].nunique()} confirm runs "
                  "(black, band)" if len(confirm) else "; no confirm runs yet")
               + ". Shared y axis, zoomed to the upper range.")
    drawn = render(_draw_convergence, path, curves, confirm, order, ylim, frames.metric)
    return Figure(drawn, title, caption)


def _convergence_data(frames: ReportFrames, top_k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Epoch rows of each family's top-k search trials (``best`` marks the best) and of
    its completed confirm runs."""
    if _done(frames).empty or frames.epochs.empty:
        return pd.DataFrame(), pd.DataFrame()
    top = top_k_per_family(frames.trials, top_k)
    best = set(best_per_family(frames.trials)["number"])
    epochs = frames.epochs
    curves = epochs[(epochs["role"] == "search") & epochs["number"].isin(top["number"])]
    curves = curves.assign(best=curves["number"].isin(best))
    runs = _done(frames, "confirm")
    confirm = (epochs[(epochs["role"] == "confirm") & epochs["number"].isin(runs["number"])]
               if len(runs) else epochs.iloc[:0])
    return curves, confirm


def _draw_convergence(curves: pd.DataFrame, confirm: pd.DataFrame, order: list[str],
                      ylim: tuple[float, float], metric: Metric = ACCURACY) -> Any:
    palette = family_palette(order)
    fig, panels = family_panels(order)
    for family, ax in panels.items():
        for (_, best), trial in curves[curves["family"] == family].groupby(["number", "best"]):
            ax.plot(trial["epoch"], trial["val_accuracy"], color=palette[family],
                    linewidth=2.4 if best else 0.8)
        runs = confirm[confirm["family"] == family]
        if len(runs):  # the page's interval (Student t over runs), not a bootstrap's
            band = pd.DataFrame([{"epoch": epoch, "mean": ci.mean, "half": ci.half_width}
                                 for epoch, values in runs.groupby("epoch")["val_accuracy"]
                                 for ci in [stats.mean_ci(list(values))]])
            ax.plot(band["epoch"], band["mean"], color=CONFIRM_COLOUR, linewidth=1.2)
            ax.fill_between(band["epoch"], band["mean"] - band["half"],
                            band["mean"] + band["half"], color=CONFIRM_COLOUR, alpha=0.2,
                            linewidth=0)
        ax.set_ylim(ylim)
    finish_panels(panels, "epoch", metric.axis("val"))
    handles = [legend_marker("top search trials", "0.45", "", "-", 0.8),
               legend_marker("best search trial", "0.45", "", "-", 2.4)]
    if len(confirm):
        handles.append(legend_marker("confirm mean ± 95% CI", CONFIRM_COLOUR, "", "-", 1.2))
    legend_above(fig, handles)
    return fig


# --- 3. learning rates -----------------------------------------------------------------


def learning_rates(frames: ReportFrames, path: Path) -> Figure:
    """The LR of each family's best trial, per batch where known, on a log scale."""
    title = "Learning rate of each family's best trial"
    steps, order = _lr_traces(frames)
    if not order:
        return Figure(None, title, "", NO_COMPLETED + " with a recorded LR")
    caption = ("Learning rate against training progress in epochs (per batch, replayed on "
               "the trial's scheduler where the storage holds its steps per epoch; a step "
               "per epoch otherwise), warm-up included. Log y axis, each panel its own range.")
    return Figure(render(_draw_learning_rates, path, _close_steps(steps), order),
                  title, caption, _schedule_free_note(order))


def _schedule_free_note(order: list[str]) -> str:
    """Schedule-free's LR is drawn as what it is, its constant base LR: the schedule's
    work is done by the optimizer's average of its iterates, which no LR trace shows."""
    if SCHEDULE_FREE_FAMILY not in order:
        return ""
    return (f"{SCHEDULE_FREE_FAMILY}: drawn at its constant base LR (after any warm-up). It "
            f"has no schedule: its optimizer evaluates a running average of its iterates, "
            f"which does the work a decaying LR does for the others.")


def _lr_traces(frames: ReportFrames) -> tuple[pd.DataFrame, list[str]]:
    """The best trials' LR traces and their families in the ranking's order (none: nothing
    to draw)."""
    steps = frames.lr_steps
    if steps.empty or _done(frames).empty:
        return steps, []
    return steps, [f for f in family_order(frames) if f in set(steps["family"])]


def _close_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """Repeat each trace's last LR at the end of its last epoch, so a step-like (per
    epoch) trace draws its last epoch too instead of ending where that epoch begins."""
    last = steps.loc[steps.groupby("family")["position"].idxmax()]
    ends = last.assign(position=np.floor(last["position"]) + 1)
    return pd.concat([steps, ends], ignore_index=True).sort_values(["family", "position"])


def _draw_learning_rates(steps: pd.DataFrame, order: list[str]) -> Any:
    # Each panel its own y range: OneCycle's 1e-6 start squeezed every other family into
    # the top fifth of a shared axis. The overlay below compares them on one axis.
    palette = family_palette(order)
    fig, panels = family_panels(order)
    for family, ax in panels.items():
        trace = steps[steps["family"] == family]
        ax.step(trace["position"], trace["lr"], where="post", color=palette[family],
                linewidth=1.4)
        ax.set_yscale("log")
        log_ticks(ax.yaxis, *ax.get_ylim())
        panel_title(ax, f"{family} (trial {trace['number'].iloc[0]})")
    finish_panels(panels, "epoch", "learning rate", sharey=False)
    return fig


def learning_rates_overlaid(frames: ReportFrames, path: Path) -> Figure:
    """Every family's best trial's LR on one axis, in the ranking's order."""
    title = "Learning rates of all families' best trials, overlaid"
    steps, order = _lr_traces(frames)
    if not order:
        return Figure(None, title, "", NO_COMPLETED + " with a recorded LR")
    floor = _lr_floor(steps)
    clipped = sorted(set(steps.loc[steps["lr"] < floor, "family"]))
    caption = ("The per-panel traces above on one log axis (markers every few epochs tell the "
               "families apart without colour).")
    note = (f"Shown down to {floor:.2g} (a thousandth of the highest LR): "
            f"{', '.join(clipped)} go lower." if clipped else "")
    note = " ".join(n for n in (note, _schedule_free_note(order)) if n)
    drawn = render(_draw_lr_overlay, path, _close_steps(steps), order, floor)
    return Figure(drawn, title, caption, note)


def _lr_floor(steps: pd.DataFrame) -> float:
    """The overlay's lowest LR: a thousandth of the highest, or lower if all stay above."""
    return max(float(steps["lr"][steps["lr"] > 0].min()), float(steps["lr"].max()) / 1000)


def _draw_lr_overlay(steps: pd.DataFrame, order: list[str], floor: float) -> Any:
    palette, markers = family_palette(order), family_markers(order)
    fig, ax = plt.subplots(figsize=(WIDTH, 4.0))
    for family in order:
        trace = steps[steps["family"] == family]
        every = max(1, len(trace) // 8)
        ax.step(trace["position"], trace["lr"].clip(lower=floor), where="post",
                color=palette[family], linewidth=1.4, marker=markers[family],
                markevery=every, markersize=6, label=family)
    ax.set(yscale="log", xlabel="epoch", ylabel="learning rate")
    ax.set_ylim(bottom=floor * 0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small")
    return fig


# --- 4. losses ---------------------------------------------------------------------------


def losses(frames: ReportFrames, path: Path) -> Figure:
    """Train and validation loss per epoch of each family's best trial (log y)."""
    title = "Train and validation loss of each family's best trial"
    curves = _loss_data(frames)
    if curves.empty:
        return Figure(None, title, "", NO_COMPLETED + " with per-epoch curves")
    order = [f for f in family_order(frames) if f in set(curves["family"])]
    caption = ("Mean training loss over each epoch's batches (solid) and validation loss at "
               "the epoch's end (dashed) of each family's best search trial. Log y axis.")
    return Figure(render(_draw_losses, path, curves, order), title, caption)


def _loss_data(frames: ReportFrames) -> pd.DataFrame:
    """Long form: one row per best trial, epoch and split ('train' | 'validation')."""
    if _done(frames).empty or frames.epochs.empty:
        return pd.DataFrame()
    best = best_per_family(frames.trials)["number"]
    rows = frames.epochs[(frames.epochs["role"] == "search")
                         & frames.epochs["number"].isin(best)]
    long = rows.melt(id_vars=["family", "number", "epoch"], value_vars=["train_loss", "val_loss"],
                     var_name="split", value_name="loss")
    long["split"] = long["split"].map({"train_loss": "train", "val_loss": "validation"})
    return long.dropna(subset=["loss"])


def _draw_losses(curves: pd.DataFrame, order: list[str]) -> Any:
    palette = family_palette(order)
    fig, panels = family_panels(order)
    for family, ax in panels.items():
        mine = curves[curves["family"] == family]
        for split, marker, dashes in (("train", "o", ()), ("validation", "X", (4, 2))):
            line = mine[mine["split"] == split]
            ax.plot(line["epoch"], line["loss"], color=palette[family], marker=marker,
                    markersize=5, dashes=dashes, linewidth=1.5)
        ax.set_yscale("log")
    finish_panels(panels, "epoch", "loss")
    for ax in panels.values():
        log_ticks(ax.yaxis, *ax.get_ylim())
    legend_above(fig, [legend_marker("train", "0.3", "o", "-", size=4),
                       Line2D([], [], color="0.3", marker="X", linestyle="--",
                              markersize=5, label="validation")])
    return fig


# --- 5. sensitivity ----------------------------------------------------------------------


def sensitivity(frames: ReportFrames, path: Path) -> Figure:
    """Validation accuracy against each searched parameter, one row of panels per family."""
    m = frames.metric
    title = SENSITIVITY_TITLE.replace("accuracy", m.name)
    done, space = _sensitivity_data(frames)
    if done.empty:
        return Figure(None, title, "", NO_COMPLETED)
    if space.empty:
        return Figure(None, title, "", "no searched parameter: every trial's values were fixed")
    order = [f for f in family_order(frames) if f in set(space["family"])]
    done = done[done["family"].isin(order)]
    # Each family its own y range: the plot compares values within a family, and one
    # weak family would flatten the others on a shared axis.
    ylims = {f: zoom(runs["val_accuracy"]) for f, runs in done.groupby("family")}
    off = sum((runs["val_accuracy"] < ylims[f][0]).sum() for f, runs in done.groupby("family"))
    caption = (f"Each completed search trial's final validation {m.name} against its value of "
               "each parameter the sampler searched, one row per family with its own y range "
               "(star: the family's best trial; dashed: the searched range; log x where the "
               "range is searched on a log scale).")
    note = f"{off} trial(s) below their family's y range off-scale." if off else ""
    drawn = render(_draw_sensitivity, path, done, space, order, ylims, m)
    return Figure(drawn, title, caption, note)


def _sensitivity_data(frames: ReportFrames) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Completed search trials, and the ``space`` rows of the families that have some."""
    done = _done(frames)
    if done.empty or frames.space.empty:
        return done, frames.space.iloc[:0]
    space = frames.space[frames.space["family"].isin(done["family"])]
    space = space[[PARAM_PREFIX + p in done.columns for p in space["param"]]]
    return done, space.reset_index(drop=True)


def _draw_sensitivity(done: pd.DataFrame, space: pd.DataFrame, order: list[str],
                      ylims: dict[str, tuple[float, float]], metric: Metric = ACCURACY) -> Any:
    palette = family_palette(order)
    params = {f: space[space["family"] == f] for f in order}
    ncols = max(len(p) for p in params.values())
    fig = plt.figure(figsize=(WIDTH, 0.3 + 2.0 * len(order)))
    grid = fig.add_gridspec(len(order), ncols)
    for index, family in enumerate(order):
        runs = done[done["family"] == family]
        best = runs.loc[runs["val_accuracy"].idxmax()]
        # Only the panels a family fills: each costs ~30 ms to make and draw.
        row = [fig.add_subplot(grid[index, column]) for column in range(len(params[family]))]
        for ax, spec in zip(row, params[family].itertuples()):
            _draw_parameter(ax, runs, best, spec, palette[family])
        share_y(row, ylims[family])
        row[0].set_ylabel(f"{family}\n{metric.axis('val')}")
    # Fixed spacing, not tight_layout: that re-measures every tick of ~50 panels (4 s).
    fig.subplots_adjust(hspace=0.6, wspace=0.2)
    return fig


def _draw_parameter(ax: Any, runs: pd.DataFrame, best: pd.Series, spec: Any,
                    colour: Any) -> None:
    column = PARAM_PREFIX + spec.param
    x, best_x = runs[column], best[column]
    if isinstance(spec.choices, str):  # categorical: one slot per choice, in Optuna's order
        choices = spec.choices.split(", ")
        slot = {c: i for i, c in enumerate(choices)}
        x, best_x = x.astype(str).map(slot), slot.get(str(best_x), math.nan)
        ax.set_xticks(range(len(choices)), choices)
        ax.set_xlim(-0.5, len(choices) - 0.5)
    else:
        low, high = spec.low, spec.high
        for bound in (low, high):
            ax.axvline(bound, color="0.5", linestyle="--", linewidth=1)
        if spec.log:
            _log_x(ax, low, high)
        if high > low:  # pad 6% of the range beyond each end, so edge points stay visible
            pad = (high / low) ** 0.06 if spec.log else 0.06 * (high - low)
            ax.set_xlim((low / pad, high * pad) if spec.log else (low - pad, high + pad))
    ax.scatter(x, runs["val_accuracy"], color=colour, s=18, alpha=0.75, linewidths=0)
    ax.scatter([best_x], [best["val_accuracy"]], color=colour, marker="*", s=160,
               edgecolors="black", linewidths=0.8, zorder=3)
    panel_title(ax, spec.param.split(".", 1)[-1], fontsize="small")


def _log_x(ax: Any, low: float, high: float) -> None:
    """Log x with plain-number ticks (``log_ticks``)."""
    ax.set_xscale("log")
    log_ticks(ax.xaxis, low, high)
    # Long labels ("0.0001") ran into the next panel's: short and smaller, they fit.
    ax.tick_params(axis="x", labelsize="x-small")


def log_ticks(axis: Any, low: float, high: float) -> None:
    """~5 short plain-number ticks on a log axis from ``low`` to ``high``, for a ~250 px
    panel: 1-2-5 steps within a decade (1-9 within a factor of 3, so a narrow range still
    has labels), 1-3 within two, else decades. Matplotlib's default overlaps labels like
    2x10^0, and under a decade labels its minor ticks into the curves."""
    decades = math.log10(high / low) if low > 0 and high > low else 0.0
    subs = (tuple(float(i) for i in range(1, 10)) if decades < math.log10(3)
            else (1.0, 2.0, 5.0) if decades <= 1 else (1.0, 3.0) if decades <= 2 else (1.0,))
    axis.set_major_locator(LogLocator(subs=subs, numticks=6))
    axis.set_major_formatter(FuncFormatter(lambda value, _: _short_number(value)))
    axis.set_minor_locator(NullLocator())  # invisible in this style, and costly to make


def _short_number(value: float) -> str:
    """A tick label of at most ~4 characters: 1e-4, 0.01, 0.5, 20, 3e+3 -> 3e3."""
    if value == 0 or 0.01 <= abs(value) < 1000:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def edge_optima(frames: ReportFrames, margin: float = EDGE_MARGIN) -> pd.DataFrame:
    """Best-trial values within ``margin`` of their searched range's end (log space for a
    log range): the optimum may lie outside the range, so the page warns about each.

    The float parameters of each family's best completed search trial count near either
    end. An integer parameter counts only at its top value: its low end is a natural limit
    (no warm-up, a step every epoch), but its top (warm-up 2 of 0..2) says the best may lie
    above the range; with a handful of values, "near" an end would be every choice.
    """
    columns = ["family", "param", "value", "low", "high", "edge"]
    if not 0 < margin < 0.5:
        raise ValueError(f"margin must be in (0, 0.5), but got {margin=}")
    done, space = _sensitivity_data(frames)
    if done.empty or space.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for best in best_per_family(done).to_dict("records"):
        raw = frames.params.get((best["study"], "search", best["number"]), {})
        for spec in space[space["family"] == best["family"]].itertuples():
            value = best[PARAM_PREFIX + spec.param]
            if isinstance(spec.choices, str) or pd.isna(value) or spec.high <= spec.low:
                continue
            if isinstance(raw.get(spec.param), int):
                if value >= spec.high:
                    rows.append({"family": best["family"], "param": spec.param,
                                 "value": float(value), "low": spec.low, "high": spec.high,
                                 "edge": "high"})
                continue
            where = _range_position(float(value), spec.low, spec.high, bool(spec.log))
            if where <= margin or where >= 1 - margin:
                rows.append({"family": best["family"], "param": spec.param,
                             "value": float(value), "low": spec.low, "high": spec.high,
                             "edge": "low" if where <= margin else "high"})
    return pd.DataFrame(rows, columns=columns)


def _range_position(value: float, low: float, high: float, log: bool) -> float:
    """0 at ``low``, 1 at ``high``; measured in log space for a log-searched range."""
    if log:
        return math.log(value / low) / math.log(high / low)
    return (value - low) / (high - low)


# --- 6. importances and optimisation history -----------------------------------------


def importance_and_history(frames: ReportFrames, path: Path) -> Figure:
    """The optimisation history (val accuracy per trial, best so far) above Optuna's
    PED-ANOVA importances over all families and within each family."""
    title = HISTORY_TITLE
    done = _done(frames)
    if done.empty:
        return Figure(None, title, "", NO_COMPLETED)
    tried = frames.trials[(frames.trials["role"] == "search")
                          & frames.trials["state"].isin(["complete", "pruned"])
                          & ~frames.trials["diverged"]].dropna(subset=["val_accuracy"])
    bars = _importance_data(frames, family_order(frames))
    ylim = zoom(tried["val_accuracy"])
    caption = (f"Top: each search trial's final validation {frames.metric.name} by trial "
               "number (pruned "
               "trials faint, at the epoch they stopped) and the best so far. "
               + ("Bottom: Optuna's PED-ANOVA parameter importances (Watanabe et al. 2023): "
                  "how differently a parameter is spread among the best 10% of the trials "
                  "than among all of them, over all families (grey) and within each family, "
                  "summing to 1 per scope." if len(bars) else ""))
    no_bars = ("No parameter importances: too few completed trials, or no parameter "
               "varied.")
    note = " ".join(filter(None, ["" if len(bars) else no_bars,
                                  _below(tried["val_accuracy"], ylim[0], "trial(s)"),
                                  _missing(frames, list(done["family"]))]))
    drawn = render(_draw_importance_history, path, tried, bars, family_order(frames),
                    ylim, frames.metric)
    return Figure(drawn, title, caption, note)


def _importance_data(frames: ReportFrames, order: list[str]) -> pd.DataFrame:
    """One bar per (scope, param), labelled 'all: lr' or 'step: gamma'; scopes in
    family order, each scope's parameters by importance."""
    imp = frames.importances
    if imp.empty:
        return pd.DataFrame(columns=["scope", "param", "importance", "label"])
    rank = {s: i for i, s in enumerate(["all families", *order])}
    imp = imp.assign(rank=imp["scope"].map(rank).fillna(len(rank)))
    imp = imp.sort_values(["rank", "importance"], ascending=[True, False])
    short = [p.removeprefix(f"{s}.") for s, p in zip(imp["scope"], imp["param"])]
    scope = imp["scope"].replace({"all families": "all"})
    return imp.assign(label=[f"{s}: {p}" for s, p in zip(scope, short)])


def _draw_importance_history(tried: pd.DataFrame, bars: pd.DataFrame, order: list[str],
                             ylim: tuple[float, float], metric: Metric = ACCURACY) -> Any:
    history_height, bars_height = 3.4, (0.6 + 0.22 * len(bars)) if len(bars) else 0.0
    fig = plt.figure(figsize=(WIDTH, history_height + bars_height))
    history = fig.add_axes((0, 0, 1, 1))  # both panels placed below, once measured
    legend = _draw_history(history, tried, family_palette(order), ylim, metric)
    importance = None
    if len(bars):
        colours = {**family_palette(bars["scope"]), "all families": (0.45, 0.45, 0.45)}
        importance = fig.add_axes((0, 0, 1, 1))
        rows = range(len(bars))
        importance.barh(rows, bars["importance"], color=[colours[s] for s in bars["scope"]])
        importance.set_yticks(rows, bars["label"])
        importance.set_ylim(len(bars) - 0.5, -0.5)  # the first bar on top
        importance.set(xlabel="importance (PED-ANOVA, sums to 1 per scope)", ylabel="")
        importance.tick_params(axis="y", labelsize="small")
    # Both panels span from right of the bars' labels to left of the history's legend,
    # the two measured alone: tight_layout measures every artist, in a second draw.
    renderer = fig.canvas.get_renderer()
    labels = importance.get_yticklabels() if importance is not None else []
    widest = max((t.get_window_extent(renderer).width for t in labels), default=0) / fig.dpi
    left = (widest + 0.1) / WIDTH if labels else 0.0
    width = 1 - (legend.get_window_extent(renderer).width / fig.dpi + 0.1) / WIDTH - left
    height = fig.get_figheight()
    # In inches from the bottom: each panel's x labels below it, 0.3 between the history's
    # and the bars, 0.1 above the history.
    history.set_position([left, (bars_height + X_LABEL_ROOM) / height, width,
                          (history_height - X_LABEL_ROOM - 0.1) / height])
    if importance is not None:
        importance.set_position([left, X_LABEL_ROOM / height, width,
                                 (bars_height - X_LABEL_ROOM - 0.3) / height])
    return fig


def _draw_history(ax: Any, tried: pd.DataFrame, palette: dict[str, Any],
                  ylim: tuple[float, float], metric: Metric = ACCURACY) -> Any:
    """Draw the optimisation history on ``ax``; return its legend (right of the axes)."""
    done = tried[tried["state"] == "complete"].sort_values("number")
    pruned = tried[tried["state"] == "pruned"]
    markers = family_markers(palette)
    if len(pruned):  # hollow and grey: a pruned trial's value is where it stopped, not final
        ax.scatter(pruned["number"], pruned["val_accuracy"], facecolors="none",
                   edgecolors="0.6", marker="o", s=30, linewidths=0.8)
    for family, runs in done.groupby("family"):
        ax.scatter(runs["number"], runs["val_accuracy"], color=palette.get(family, "0.3"),
                   marker=markers.get(family, "o"), s=36)
    ax.step(done["number"], done["val_accuracy"].cummax(), where="post",
            color=CONFIRM_COLOUR, linewidth=1.2)
    ax.set(ylim=ylim, xlabel="trial number", ylabel=metric.axis("val"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [legend_marker(f, palette[f], markers[f]) for f in palette]
    handles += [Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                       markeredgecolor="0.6", label="pruned (value where it stopped)"),
                legend_marker("best so far (completed)", "black", "", "-")]
    return ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1),
                     frameon=False, fontsize="small")


# --- 7. time to target ----------------------------------------------------------------


def time_to_target(frames: ReportFrames, path: Path, targets: tuple[float, ...]) -> Figure:
    """Epochs each family's best trial needs to reach each validation accuracy target;
    a missed target is an 'x' in the 'missed' column, never a bar at the last epoch."""
    m = frames.metric
    if not targets or (m.bounded and not all(0 < t <= 1 for t in targets)):
        raise ValueError(f"targets must be accuracies in (0, 1], but got {targets=}")
    title = f"Epochs to reach a validation {m.name} target"
    if _done(frames).empty or frames.epochs.empty:
        return Figure(None, title, "", NO_COMPLETED)
    search, confirm = _target_data(frames, targets)
    order = [f for f in family_order(frames) if f in set(search["family"])]
    last = int(frames.epochs["epoch"].max())
    caption = (f"Bars: the first epoch (of {last}) at which each family's best search trial "
               "reached each target; x: never reached."
               + (" Diamonds: the confirm runs' mean epoch over the seeds that reached it "
                  "(none drawn: no seed did). Confirm runs that reached each target "
                  f"({' / '.join(map(_target_text, sorted(targets)))}): "
                  + "; ".join(f"{family} " + " / ".join(
                      f"{int(row.seeds)} of {int(row.runs)}"
                      for row in confirm[confirm["family"] == family].sort_values("target")
                      .itertuples()) for family in order if family in set(confirm["family"]))
                  + "." if len(confirm) else ""))
    note = ("" if search["reached"].any()
            else f"no family's best trial reached {', '.join(map(str, targets))}")
    drawn = render(_draw_targets, path, search, confirm, order, sorted(targets), last, m)
    return Figure(drawn, title, caption, note)


def _target_text(target: float) -> str:
    """A target as its caption names it: "97%" for an accuracy, "-0.0123" for a −MSE."""
    return f"{100 * target:g}%" if 0 < target <= 1 else f"{target:.4g}"


def _target_data(frames: ReportFrames,
                 targets: tuple[float, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The best search trials' rows of frames.time_to_target, and per family and target
    the confirm runs' mean epoch over the seeds that reached it (NaN when none did)."""
    table = target_epochs(frames, targets)
    search = table[table["role"] == "search"]
    runs = table[table["role"] == "confirm"]
    confirm = (runs.groupby(["family", "target"], as_index=False)
               .agg(epoch=("epoch", "mean"), reached=("reached", "any"),
                    seeds=("reached", "sum"), runs=("reached", "size")))
    return search, confirm


def _draw_targets(search: pd.DataFrame, confirm: pd.DataFrame, order: list[str],
                  targets: list[float], last: int, metric: Metric = ACCURACY) -> Any:
    missed_x = last + 1  # the 'missed' column, one epoch right of the last
    colours = dict(zip(targets, sns.color_palette("crest", len(targets))))
    fig, ax = plt.subplots(figsize=(WIDTH, 1.2 + 0.5 * len(order)))
    # One bar per target within each family's slot (0.8 of it), and each marker on its
    # target's bar.
    slot = {family: y for y, family in enumerate(order)}
    height = 0.8 / len(targets)

    def rows_at(table: pd.DataFrame, target: float) -> tuple[pd.DataFrame, np.ndarray]:
        rows = table[(table["target"] == target) & table["family"].isin(slot)]
        offset = -0.4 + (targets.index(target) + 0.5) * height
        return rows, rows["family"].map(slot).to_numpy(float) + offset

    for target in targets:
        reached, y = rows_at(search[search["reached"]], target)
        ax.barh(y, reached["epoch"], height=height, color=colours[target])
        missed, y = rows_at(search[~search["reached"]], target)
        ax.scatter([missed_x] * len(missed), y, marker="X", s=64, color=colours[target],
                   linewidths=1, edgecolors="white", zorder=3)
        means, y = rows_at(confirm[confirm["reached"]], target)
        ax.scatter(means["epoch"], y, marker="D", s=64, color=colours[target],
                   linewidths=1, edgecolors=CONFIRM_COLOUR, zorder=3)
    category_axis(ax.yaxis, order)
    ax.set_xticks([*range(last + 1), missed_x], [*map(str, range(last + 1)), "missed"])
    ax.set(xlim=(0, missed_x + 0.6), xlabel="epoch", ylabel="")
    handles = [Patch(color=colours[t], label=f"val {metric.short} ≥ {t:.4g}") for t in targets]
    handles.append(legend_marker("missed (best search trial)", "0.4", "X", size=7))
    if len(confirm):
        handles.append(legend_marker("confirm mean", "0.8", "D", size=6))
        handles[-1].set_markeredgecolor(CONFIRM_COLOUR)
    legend_above(ax, handles, ncol=len(handles))
    return fig


# --- all figures of one study ------------------------------------------------------------


def figure_jobs(frames: ReportFrames, folder: Path, targets: tuple[float, ...],
                top_k: int = 3, prefix: str | None = None) -> list[Callable[[], Figure]]:
    """The eight figures of one study, not yet drawn: one call each, in page order, written
    as ``folder/PREFIX-01-accuracy.png`` and so on (``report.build`` draws them in parallel).

    ``prefix`` (default: a slug of the study's name) lets several studies share a folder;
    the numbered stems keep the files in page order.
    """
    if prefix is None:
        prefix = slug(frames.studies[0].name) if frames.studies else ""
    folder = Path(folder)
    paths = [folder / f"{prefix}-{stem}.png" if prefix else folder / f"{stem}.png"
             for stem in FILE_STEMS]
    return [partial(accuracy_by_family, frames, paths[0]),
            partial(convergence, frames, paths[1], top_k),
            partial(learning_rates, frames, paths[2]),
            partial(learning_rates_overlaid, frames, paths[3]),
            partial(losses, frames, paths[4]), partial(sensitivity, frames, paths[5]),
            partial(importance_and_history, frames, paths[6]),
            partial(time_to_target, frames, paths[7], targets)]


# Figures about the search itself: a study of fixed trials only (dlwizard) has none.
SEARCH_FIGURES = (sensitivity, importance_and_history)
# The figures that replay schedules (ReportFrames.lr_steps), and so import torch.
LR_FIGURES = (learning_rates, learning_rates_overlaid)
# The figures that take longest to draw, slowest first: on the benchmark page, 1.2-1.5 s
# for a sensitivity figure (a panel per searched parameter of each family), 0.6-0.75 s
# for an importance figure, at most 0.5 s for any other.
SLOWEST_FIGURES = (sensitivity, importance_and_history)


def draw_all(frames: ReportFrames, folder: Path, targets: tuple[float, ...], top_k: int = 3,
             prefix: str | None = None) -> list[Figure]:
    """``figure_jobs``, drawn one after the other in this process."""
    return [draw() for draw in figure_jobs(frames, folder, targets, top_k, prefix)]


def slug(name: str) -> str:
    """A file-name-safe form of a study name; distinct names never share one.

    A name that is already safe is its own slug; any other gets a hash of the exact
    name, so "a/b" and "a:b" (both "a-b" once cleaned) stay apart.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "study"
    if cleaned == name:
        return name
    return f"{cleaned}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"

"""The report's figures, drawn from a small real sweep (plus synthesized confirm runs).

One module-scoped sweep of the ``all`` file (12 trials x 3 epochs, ~25 s on 2 cores)
gives real frames: several families, pruned trials, per-batch LR traces, importances.
Confirm runs are synthesized from its best trials (``lrbench confirm`` is not needed):
each family's best trial copied with role 'confirm' and jittered accuracies.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageChops

from lrbench.cli import main
from lrbench.report import frames as frames_module
from lrbench.report import html, plots
from lrbench.report.frames import ReportFrames, best_per_family
from lrbench.train.schedules import FAMILIES

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
TARGETS = (0.85, 0.9)  # 3 epochs on the 5,000-image sample: the best trials land ~0.92


def with_confirm(frames: ReportFrames, seeds: int = 3) -> ReportFrames:
    """Each family's best search trial re-run ``seeds`` times: copied rows, role 'confirm',
    accuracies jittered by ~0.3 points as fresh seeds would."""
    rng = np.random.default_rng(0)
    trials, epochs = [], []
    runs = [(r, i) for r in best_per_family(frames.trials).to_dict("records")
            for i in range(seeds)]
    for number, (best, index) in enumerate(runs):
        trials.append({**best, "role": "confirm", "confirm_of": best["number"],
                       "confirm_index": index, "number": number,
                       "val_accuracy": best["val_accuracy"] + rng.normal(0, 0.003),
                       "test_accuracy": best["test_accuracy"] + rng.normal(0, 0.003)})
        curve = frames.epochs[(frames.epochs["number"] == best["number"])
                              & (frames.epochs["role"] == "search")]
        epochs.append(curve.assign(role="confirm", number=number,
                                   val_accuracy=curve["val_accuracy"]
                                   + rng.normal(0, 0.003, len(curve))))
    all_trials = pd.concat([frames.trials, pd.DataFrame(trials)], ignore_index=True)
    all_trials["confirm_of"] = all_trials["confirm_of"].astype("Int64")
    return dataclasses.replace(frames, trials=all_trials,
                               epochs=pd.concat([frames.epochs, *epochs], ignore_index=True))


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> ReportFrames:
    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST sample not found at {DATA}/MNIST/raw")
    results = tmp_path_factory.mktemp("sweep")
    # --epochs 3: the all file searches warm-up in [0, 2], which needs 3 epochs; the
    # search protocol: 12 trials over the families, as the sampler spends them
    main(["sweep", "all", "--data-dir", str(DATA), "--results", str(results),
          "--protocol", "search", "--trials", "12", "--epochs", "3", "--workers", "2"])
    loaded = frames_module.load(str(results / "lrbench.journal")).study("all")
    assert loaded.trials["state"].eq("complete").sum() >= 3, loaded.trials
    return with_confirm(loaded)


def assert_png(path: Path | None, min_width: int = 250, min_height: int = 150) -> None:
    """A readable PNG of a sensible size with more than a few colours (something drawn)."""
    assert path is not None and path.is_file()
    with Image.open(path) as image:
        width, height = image.size
        # (Pillow counts colours in C: numpy's unique over rows took a minute a figure set)
        counts = sorted(count for count, _ in image.convert("RGB").getcolors(width * height))
    assert width >= min_width and height >= min_height, (path, image.size)
    # 2x the page's ~1,100 CSS px: sharp on high-resolution screens, not oversized
    assert width <= 2600, f"{path} is {width} px wide: more than 2x the page"
    # Something drawn, not a blank: the figures are 256-colour PNGs, so count pixels off
    # the background (the commonest colour) as well as colours (a one-line figure has few
    # colours, many pixels)
    drawn = 1 - counts[-1] / (width * height)
    assert len(counts) > 8 and drawn > 0.01, f"{path} is nearly blank ({drawn:.2%} drawn)"


# --- palette and order: no drawing --------------------------------------------------------


def test_family_palette_gives_a_family_the_same_colour_in_any_subset() -> None:
    everyone = plots.family_palette(FAMILIES)
    assert len(set(everyone.values())) == len(FAMILIES)  # all distinguishable
    assert plots.family_palette(["polynomial", "step"]) == {
        "polynomial": everyone["polynomial"], "step": everyone["step"]}
    extra = plots.family_palette(["step", "my_schedule"])
    assert extra["step"] == everyone["step"]
    assert extra["my_schedule"] not in everyone.values()


def cie_lab(rgb: tuple[float, float, float]) -> np.ndarray:
    """sRGB in [0, 1] -> CIE L*a*b* (D65), for colour differences a reader perceives."""
    c = np.array(rgb, float)
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ c / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_registry_families_are_distinguishable_by_colour_and_by_marker() -> None:
    """Two greens and three blues among 11 families, and no markers, was a defect: every
    pair now differs by a CIE76 distance of at least 25 (tab10's own closest pair is 27.7),
    and each family has a marker of its own for readers who cannot rely on colour."""
    colours = plots.family_palette(FAMILIES)
    closest = min(np.linalg.norm(cie_lab(a) - cie_lab(b))
                  for a, b in itertools.combinations(colours.values(), 2))
    assert closest >= 25
    markers = plots.family_markers(FAMILIES)
    assert len(set(markers.values())) == len(FAMILIES)
    assert plots.family_markers(["step"]) == {"step": markers["step"]}  # fixed per family


@pytest.mark.slow
def test_family_order_puts_the_best_family_first_and_uncompleted_last(
        swept: ReportFrames) -> None:
    """The figures' order is the page's one ranking: here (confirm runs of every family)
    by mean test accuracy over the seeds, not by the best search run."""
    order = plots.family_order(swept)
    best = best_per_family(swept.trials)
    confirm = swept.trials[swept.trials["role"] == "confirm"]
    means = confirm.groupby("family")["test_accuracy"].mean()
    assert order[:len(best)] == list(means.sort_values(ascending=False).index)
    assert sorted(order) == sorted(set(swept.trials["family"]))


# --- every figure from real frames -----------------------------------------------------


@pytest.mark.slow
def test_draw_all_writes_eight_named_pngs_and_leaks_no_figure(swept: ReportFrames,
                                                                tmp_path: Path) -> None:
    figures = plots.draw_all(swept, tmp_path, TARGETS, top_k=2, prefix="all")
    names = [f"all-{stem}.png" for stem in plots.FILE_STEMS]
    assert [f.path.name for f in figures if f.path] == names
    for figure in figures:
        assert figure.drawn and figure.title and figure.caption
        assert_png(figure.path)
        # shown at most at half its pixels (sharp on high-resolution screens), each
        # figure still fills most of the page's ~1,100 px column
        shown = html.png_width(figure.path) // 2
        assert shown >= 0.8 * plots.WIDTH * 100, (figure.path.name, shown)
    assert "confirm" in figures[0].caption and "confirm" in figures[1].caption
    # the same data, the same pixels (the strip plot's jitter is seeded), in one draw
    again = plots.accuracy_by_family(swept, tmp_path / "again.png")
    assert again.path.read_bytes() == figures[0].path.read_bytes()
    assert plt.get_fignums() == []


@pytest.mark.slow
def test_every_figure_is_drawn_once(swept: ReportFrames, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One draw per figure: a layout engine (tight_layout) or savefig's "tight" box draws
    it a second time to measure it, which doubled those figures' time."""
    from matplotlib.figure import Figure as MplFigure

    from lrbench.report import compare_plots

    draws: list[int] = []
    real_draw = MplFigure.draw
    monkeypatch.setattr(MplFigure, "draw", lambda fig, renderer: (
        draws.append(id(fig)), real_draw(fig, renderer))[1])
    figures = plots.draw_all(swept, tmp_path, TARGETS, top_k=2, prefix="all")
    figures.append(compare_plots.study_budgets(swept, tmp_path / "budgets.png"))
    figures.append(plots.verdict_intervals(swept, tmp_path / "verdict.png"))
    assert all(f.drawn for f in figures)
    assert len(draws) == len(set(draws)) == len(figures)


@pytest.mark.slow
def test_draw_all_names_files_after_the_study_by_default(swept: ReportFrames,
                                                         tmp_path: Path) -> None:
    figures = plots.draw_all(single_family(swept), tmp_path, TARGETS)
    assert figures[0].path == tmp_path / "all-01-accuracy.png"


@pytest.mark.slow
def test_slugs_of_distinct_study_names_never_collide() -> None:
    """Report files are named after studies; "a/b" and "a:b" both clean to "a-b"."""
    names = ["smoke", "a/b", "a:b", "a b", "a-b", "smoke:confirm", "smoke-confirm", "/", ":"]
    slugs = [plots.slug(name) for name in names]
    assert len(set(slugs)) == len(names)
    assert plots.slug("smoke") == "smoke" and plots.slug("a-b") == "a-b"  # safe names stay
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", s) for s in slugs)
    # the same name, the same files, in any process (no per-process string hashing)
    other = subprocess.run([sys.executable, "-c", "from lrbench.report.plots import slug; "
                            "print(slug('a/b'))"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "7"}, check=True)
    assert other.stdout.strip() == plots.slug("a/b")


@pytest.mark.slow
def test_captions_count_confirm_runs_only_when_there_are_some(swept: ReportFrames,
                                                              tmp_path: Path) -> None:
    search_only = keep(swept, swept.trials["role"] == "search")
    assert "0 confirm runs" in plots.accuracy_by_family(search_only, tmp_path / "a.png").caption
    assert "no confirm runs yet" in plots.convergence(search_only, tmp_path / "c.png").caption


def test_bad_arguments_are_rejected_with_the_value() -> None:
    empty = ReportFrames([], pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    with pytest.raises(ValueError, match="top_k=0"):
        plots.convergence(empty, Path("x.png"), top_k=0)
    with pytest.raises(ValueError, match="targets="):
        plots.time_to_target(empty, Path("x.png"), (97,))


# --- edge optima --------------------------------------------------------------------------


def plant_lr(frames: ReportFrames, value: float) -> tuple[ReportFrames, str]:
    """Set the best family's best trial's searched LR (log range) to ``value``."""
    best = best_per_family(frames.trials).iloc[0]
    trials = frames.trials.copy()
    trials.loc[(trials["role"] == "search") & (trials["number"] == best["number"]),
               "param:lr"] = value
    return dataclasses.replace(frames, trials=trials), best["family"]


@pytest.mark.slow
def test_edge_optima_flags_a_value_at_the_end_of_its_range(swept: ReportFrames) -> None:
    planted, family = plant_lr(swept, 0.49)  # lr is searched in [0.01, 0.5], log
    edges = plots.edge_optima(planted)
    row = edges[(edges["family"] == family) & (edges["param"] == "lr")]
    assert row[["value", "low", "high", "edge"]].values.tolist() == [[0.49, 0.01, 0.5, "high"]]


@pytest.mark.slow
@pytest.mark.parametrize("value", [math.sqrt(0.01 * 0.5), 0.03])
def test_edge_optima_ignores_a_value_inside_its_log_range(swept: ReportFrames,
                                                          value: float) -> None:
    # 0.03 is 4% along [0.01, 0.5] linearly but 28% along it in log space: not an edge
    planted, family = plant_lr(swept, value)
    edges = plots.edge_optima(planted)
    assert edges[(edges["family"] == family) & (edges["param"] == "lr")].empty


@pytest.mark.slow
@pytest.mark.parametrize(("warmup", "flagged"), [(2, True), (0, False)])
def test_an_integer_at_the_top_of_its_range_is_flagged_and_at_the_bottom_not(
        swept: ReportFrames, warmup: int, flagged: bool) -> None:
    """Warm-up 2 of 0..2 says more warm-up might be better; 0 is no warm-up, a limit."""
    best = best_per_family(swept.trials).iloc[0]
    trials = swept.trials.copy()
    mine = (trials["role"] == "search") & (trials["number"] == best["number"])
    trials.loc[mine, "param:warmup_epochs"] = warmup
    key = (best["study"], "search", int(best["number"]))
    params = {**swept.params, key: {**swept.params[key], "warmup_epochs": warmup}}
    edges = plots.edge_optima(dataclasses.replace(swept, trials=trials, params=params))
    row = edges[(edges["family"] == best["family"]) & (edges["param"] == "warmup_epochs")]
    assert row[["value", "low", "high", "edge"]].values.tolist() == (
        [[2.0, 0, 2, "high"]] if flagged else [])


def test_edge_position_is_measured_in_log_space_for_log_ranges() -> None:
    assert plots._range_position(0.1, 0.01, 1.0, log=True) == pytest.approx(0.5)
    assert plots._range_position(0.1, 0.0, 1.0, log=False) == pytest.approx(0.1)


# --- edge cases: a Figure with a note, never an exception ---------------------------------


def keep(frames: ReportFrames, rows: pd.Series) -> ReportFrames:
    """Only the trials in ``rows`` (a mask over frames.trials) and their epochs."""
    trials = frames.trials[rows]
    keys = set(zip(trials["role"], trials["number"]))
    epochs = frames.epochs[[k in keys for k in zip(frames.epochs["role"],
                                                   frames.epochs["number"])]]
    families = set(trials["family"])
    return dataclasses.replace(
        frames, trials=trials, epochs=epochs,
        space=frames.space[frames.space["family"].isin(families)],
        replayed_lr_steps=frames.lr_steps[frames.lr_steps["family"].isin(families)],
        computed_importances=frames.importances[frames.importances["scope"].isin(families)])


def single_family(frames: ReportFrames) -> ReportFrames:
    return keep(frames, frames.trials["family"] == plots.family_order(frames)[0])


def one_trial(frames: ReportFrames) -> ReportFrames:
    best = best_per_family(frames.trials).iloc[0]
    return keep(frames, (frames.trials["role"] == "search")
                & (frames.trials["number"] == best["number"]))


def none_completed(frames: ReportFrames, state: str) -> ReportFrames:
    trials = frames.trials.assign(state=state, status=state)
    return dataclasses.replace(frames, trials=trials, replayed_lr_steps=frames.lr_steps.iloc[:0],
                               computed_importances=frames.importances.iloc[:0])


def diverged(frames: ReportFrames) -> ReportFrames:
    """All but each family's best search trial diverged: NaN accuracies and losses."""
    best = set(best_per_family(frames.trials)["number"])
    hit = (frames.trials["role"] == "search") & ~frames.trials["number"].isin(best)
    trials = frames.trials.copy()
    trials.loc[hit, ["val_accuracy", "test_accuracy"]] = math.nan
    trials.loc[hit, ["diverged", "status"]] = [True, "diverged"]
    epochs = frames.epochs.copy()
    bad = (epochs["role"] == "search") & epochs["number"].isin(trials[hit]["number"])
    epochs.loc[bad, ["val_loss", "val_accuracy"]] = math.nan
    return dataclasses.replace(frames, trials=trials, epochs=epochs)


def no_search_space(frames: ReportFrames) -> ReportFrames:
    fixed = frames.trials.drop(columns=[c for c in frames.trials if c.startswith("param:")])
    return dataclasses.replace(frames, trials=fixed, space=frames.space.iloc[:0])


NOT_DRAWN = {"failed": set(range(8)), "pruned": set(range(8)), "empty": set(range(8))}
VARIANTS = {
    "failed": lambda f: none_completed(f, "fail"),
    "pruned": lambda f: none_completed(f, "pruned"),
    "empty": lambda f: dataclasses.replace(f, trials=f.trials.iloc[:0], epochs=f.epochs.iloc[:0],
                                           replayed_lr_steps=pd.DataFrame(),
                                           computed_importances=pd.DataFrame()),
    "single family": single_family,
    "one trial": one_trial,
    "diverged": diverged,
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_odd_studies_give_a_figure_or_a_note(swept: ReportFrames, tmp_path: Path,
                                             variant: str) -> None:
    figures = plots.draw_all(VARIANTS[variant](swept), tmp_path, TARGETS, prefix="odd")
    assert len(figures) == 8
    for index, figure in enumerate(figures):
        if index in NOT_DRAWN.get(variant, set()):
            assert figure.path is None and figure.note, (variant, figure)
        else:
            assert_png(figure.path, min_width=200, min_height=100)
    assert plt.get_fignums() == []


@pytest.mark.slow
def test_no_searched_parameter_says_so_and_has_no_edges(swept: ReportFrames,
                                                        tmp_path: Path) -> None:
    fixed = no_search_space(swept)
    assert "no searched parameter" in plots.sensitivity(fixed, tmp_path / "s.png").note
    assert plots.edge_optima(fixed).empty


@pytest.mark.slow
def test_no_importances_still_draws_the_history_with_a_note(swept: ReportFrames,
                                                            tmp_path: Path) -> None:
    figure = plots.importance_and_history(
        dataclasses.replace(swept, computed_importances=pd.DataFrame()), tmp_path / "i.png")
    assert_png(figure.path)
    assert "No parameter importances" in figure.note


@pytest.mark.slow
def test_all_targets_missed_is_drawn_as_missed_with_a_note(swept: ReportFrames,
                                                           tmp_path: Path) -> None:
    figure = plots.time_to_target(swept, tmp_path / "t.png", (0.999,))
    assert_png(figure.path)
    assert "reached 0.999" in figure.note


def drawn_size(image: Image.Image) -> tuple[int, int]:
    """The size of what differs from the white background: the drawing, without margins
    (savefig's "tight" box also counts invisible extents, such as a spine's)."""
    rgb = image.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, "white")).getbbox()
    assert box is not None
    return box[2] - box[0], box[3] - box[1]


def assert_same_size(size: tuple[int, int], reference: tuple[int, int]) -> None:
    """Equal within 2 pixels (the two are drawn a fraction of a pixel apart, which moves
    antialiased edges); anything cut off would be short by a whole label or more."""
    assert all(abs(a - b) <= 2 for a, b in zip(size, reference)), (size, reference)


def test_a_figure_reaching_beyond_the_canvas_is_drawn_again_whole() -> None:
    """A legend above the figure, taller than the canvas's OVERHANG: the drawing reaches
    the canvas's edge, so it is drawn again on a wider one, and nothing is cut off."""
    def tall_legend() -> Any:
        fig, ax = plt.subplots(figsize=(plots.WIDTH, 2))
        ax.plot([0, 1], [0, 1])
        rows = round(3 * plots.OVERHANG * 72 / 10)  # ~3x OVERHANG of 10-point lines
        plots.legend_above(fig, [plots.legend_marker(f"entry {i}", "C0")
                                 for i in range(rows)], ncol=1)
        return fig

    fig = tall_legend()
    image = plots._drawn_image(fig)
    plt.close(fig)
    fig = tall_legend()
    fig.savefig(tight := io.BytesIO(), format="png", dpi=plots.DPI, bbox_inches="tight",
                pad_inches=plots.CROP_PAD)
    plt.close(fig)
    assert image.height > (2 + 2 * plots.OVERHANG) * plots.DPI  # beyond the first canvas
    assert_same_size(drawn_size(image), drawn_size(Image.open(tight)))


def test_ticks_outside_the_view_are_not_built_and_the_figure_is_the_same() -> None:
    def figure(in_view: bool) -> Any:
        fig, (linear, log) = plt.subplots(1, 2, figsize=(6, 2))
        linear.plot([0.05, 0.95], [0.13, 0.87])
        log.loglog([3e-4, 0.7], [2, 900])
        if in_view:
            for axis in (linear.xaxis, linear.yaxis, log.xaxis, log.yaxis):
                axis.set_major_locator(plots.InViewLocator(axis.get_major_locator()))
        return fig

    drawn, built = {}, {}
    for in_view in (False, True):
        fig = figure(in_view)
        drawn[in_view] = plots._drawn_pixels(fig, plots.OVERHANG)[0].tobytes()
        built[in_view] = [len(axis.majorTicks) for ax in fig.axes
                          for axis in (ax.xaxis, ax.yaxis)]
        plt.close(fig)
    # on each axis, the automatic locators built a tick beyond the view
    assert all(0 < n < before for n, before in zip(built[True], built[False]))
    assert drawn[True] == drawn[False]  # and the ticks in view are the same


def test_a_figure_within_the_canvas_is_cropped_like_savefigs_tight_box() -> None:
    fig, ax = plt.subplots(figsize=(plots.WIDTH, 3))
    ax.plot([0, 1], [0, 1])
    ax.set(xlabel="x", ylabel="y", title="a title")
    image = plots._drawn_image(fig)
    fig.savefig(tight := io.BytesIO(), format="png", dpi=plots.DPI, bbox_inches="tight",
                pad_inches=plots.CROP_PAD)
    plt.close(fig)
    assert_same_size(drawn_size(image), drawn_size(Image.open(tight)))


def test_each_lr_panel_has_its_own_range_and_the_overlay_is_floored() -> None:
    """OneCycle's 1e-6 start squeezed every other family into the top fifth of a shared
    log axis: now each panel has its own range, and the overlay stops at 1/1000 of the
    highest LR, saying which families go lower."""
    positions = np.linspace(0, 3, 31)
    steps = pd.concat([
        pd.DataFrame({"family": "onecycle", "number": 1, "position": positions,
                      "lr": np.geomspace(1e-6, 0.2, 31)}),
        pd.DataFrame({"family": "step", "number": 2, "position": positions,
                      "lr": np.where(positions < 2, 0.1, 0.01)})])
    figure = plots._draw_learning_rates(plots._close_steps(steps), ["onecycle", "step"])
    lows = [ax.get_ylim()[0] for ax in figure.axes[:2]]
    assert lows[1] > 100 * lows[0]  # step's panel is not stretched down to 1e-6
    plt.close(figure)
    assert plots._lr_floor(steps) == pytest.approx(0.2 / 1000)


@pytest.mark.slow
def test_integer_axes_get_integer_ticks(swept: ReportFrames) -> None:
    tried = swept.trials[swept.trials["role"] == "search"].dropna(subset=["val_accuracy"])
    figure = plots._draw_importance_history(tried, pd.DataFrame(columns=["scope", "label"]),
                                            plots.family_order(swept), (0.0, 1.0))
    ticks = figure.axes[0].get_xticks()  # trial numbers
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    plt.close(figure)


@pytest.mark.slow
def test_log_axis_tick_labels_stay_out_of_the_next_panel(swept: ReportFrames) -> None:
    """Labels like 0.0001 on a log x axis ran into the neighbouring panel."""
    done, space = plots._sensitivity_data(swept)
    order = [f for f in plots.family_order(swept) if f in set(space["family"])]
    done = done[done["family"].isin(order)]
    ylims = {f: (0.0, 1.0) for f in order}
    figure = plots._draw_sensitivity(done, space, order, ylims)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    checked = 0
    rows: dict[int, list[Any]] = {}
    for ax in figure.axes:  # a row holds only the panels its family fills
        rows.setdefault(ax.get_subplotspec().rowspan.start, []).append(ax)
    assert len(rows) == len(order)
    for row in rows.values():
        row.sort(key=lambda ax: ax.get_subplotspec().colspan.start)
        for left, right in zip(row, row[1:]):
            low, high = left.get_xlim()  # labels of ticks outside the view are not drawn
            labels = [label for tick, label in zip(left.get_xticks(), left.get_xticklabels())
                      if label.get_text() and low <= tick <= high]
            if left.get_xscale() != "log" or not labels:
                continue
            rightmost = max(t.get_window_extent(renderer).x1 for t in labels)
            assert rightmost <= right.get_window_extent(renderer).x0 + 1
            checked += 1
    plt.close(figure)
    assert checked  # some log axis had a neighbour


def test_schedule_free_is_drawn_flat_with_a_note_saying_why() -> None:
    note = plots._schedule_free_note(["schedulefree", "step"])
    assert note.startswith("schedulefree: drawn at its constant base LR")
    assert "average of its iterates" in note
    assert plots._schedule_free_note(["step", "cosine"]) == ""

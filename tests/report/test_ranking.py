"""The one ranking: its order, its ties against the best (Tukey's HSD), its gaps to the
constant-LR baseline, each checked against numbers worked out here independently."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from tukey_reference import tukey_block_p

from lrbench.report import plots, ranking
from lrbench.report.frames import ReportFrames, StudyInfo


def study_frame(search: dict[str, tuple[float, float]],
                confirm: dict[str, list[float]], val_size: int = 500) -> pd.DataFrame:
    """A study's trials frame: search[family] = (val, test) of its best trial; confirm
    [family] = test accuracies of its confirm runs, run i on seed i."""
    rows = []
    for number, (family, (val, test)) in enumerate(search.items()):
        rows.append({"study": "s", "number": number, "role": "search", "state": "complete",
                     "family": family, "params": f"{family}=1", "val_accuracy": val,
                     "test_accuracy": test, "diverged": False, "best_in_family": True,
                     "confirm_of": pd.NA, "confirm_index": pd.NA, "val_size": val_size})
        for index, accuracy in enumerate(confirm.get(family, [])):
            rows.append({"study": "s", "number": 100 * (number + 1) + index, "role": "confirm",
                         "state": "complete", "family": family, "params": "",
                         "val_accuracy": accuracy, "test_accuracy": accuracy,
                         "diverged": False, "best_in_family": False, "confirm_of": number,
                         "confirm_index": index, "val_size": val_size})
    return pd.DataFrame(rows)


CONFIRM = {
    "cosine": [0.950, 0.952, 0.949, 0.951, 0.953],
    "step": [0.949, 0.953, 0.948, 0.950, 0.952],  # within noise of cosine
    "constant": [0.930, 0.931, 0.929, 0.932, 0.930],  # clearly below
}
SEARCH = {"step": (0.962, 0.958), "cosine": (0.960, 0.957), "constant": (0.941, 0.935),
          "linear": (0.955, 0.950)}  # linear: no confirm runs


def test_confirm_basis_ranks_by_seed_means_with_tukey_against_the_best() -> None:
    result = ranking.rank(study_frame(SEARCH, CONFIRM))
    assert result.basis == "confirm" and result.seeds == 5 and result.unit == "seed"
    # by mean over seeds (cosine 0.9510 > step 0.9504), not by the search's best (step)
    assert result.order == ["cosine", "step", "constant", "linear"]
    cosine, step, constant, linear = result.standings
    expected = tukey_block_p(CONFIRM)  # seeds are blocks: run i shares batch order i
    assert step.p_vs_best == pytest.approx(expected["step"], rel=1e-9)
    assert constant.p_vs_best == pytest.approx(expected["constant"], rel=1e-9)
    assert expected["step"] > 0.5 and expected["constant"] < 1e-6
    assert step.tied_with_best and not constant.tied_with_best
    assert step.test.startswith("Tukey's HSD against the best (blocks: seeds)")
    assert result.tied == ["cosine", "step"]
    assert linear.confirm.n == 0 and not linear.tied_with_best  # unranked, listed last
    # the gap to constant LR: the mean paired difference with its Student-t interval
    differences = [a - b for a, b in zip(CONFIRM["cosine"], CONFIRM["constant"])]
    sd = pd.Series(differences).std()
    half = scipy_stats.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert cosine.vs_baseline.mean == pytest.approx(sum(differences) / 5)
    assert cosine.vs_baseline.half_width == pytest.approx(half)
    # the winner's curse: the search run minus the confirm mean, on validation (which
    # selected it; here the confirm runs' validation equals their test) and on test
    assert cosine.curse_test == pytest.approx(0.957 - 0.951)
    assert cosine.curse_val == pytest.approx(0.960 - 0.951)


def test_search_basis_uses_the_validation_sets_standard_error() -> None:
    result = ranking.rank(study_frame(SEARCH, {}, val_size=5000))
    assert result.basis == "search" and result.order == ["step", "cosine", "linear", "constant"]
    step, cosine, linear, constant = result.standings

    def tukey_kramer_p(a: float, b: float) -> float:
        se = math.sqrt((a * (1 - a) / 5000 + b * (1 - b) / 5000) / 2)
        return scipy_stats.studentized_range.sf((a - b) / se, 4, math.inf)

    for standing in (cosine, linear, constant):
        assert standing.p_vs_best == pytest.approx(
            tukey_kramer_p(0.962, SEARCH[standing.family][0]), rel=1e-6)
    assert result.tied == ["step", "cosine", "linear"]  # within noise of 5,000 images
    assert not constant.tied_with_best
    # on 500 images even constant LR's 2.1 points are within noise
    small = ranking.rank(study_frame(SEARCH, {}, val_size=500))
    assert small.tied == ["step", "cosine", "linear", "constant"]
    gap = step.vs_baseline
    assert gap.mean == pytest.approx(0.962 - 0.941)
    assert gap.half_width == pytest.approx(
        1.959964 * math.hypot(math.sqrt(0.962 * 0.038 / 5000), math.sqrt(0.941 * 0.059 / 5000)),
        rel=1e-5)


def test_one_family_and_no_family_are_not_ranked() -> None:
    assert ranking.rank(study_frame({}, {})).basis == "none"
    alone = ranking.rank(study_frame({"step": (0.9, 0.9)}, {"step": [0.9, 0.91]}))
    assert alone.tied == ["step"] and len(alone.standings) == 1


def test_the_interval_figure_follows_the_ranking(tmp_path: Path) -> None:
    trials = study_frame(SEARCH, CONFIRM)
    frames = ReportFrames([StudyInfo("s", {}, "", {}, 4, 15)], trials, pd.DataFrame(),
                          pd.DataFrame())
    figure = plots.verdict_intervals(frames, tmp_path / "v.png")
    assert figure.drawn and "Tukey" in figure.caption and "constant LR" in figure.caption
    assert (tmp_path / "v.png").stat().st_size > 5_000 and plt.get_fignums() == []
    single = ReportFrames(frames.studies, study_frame({"step": (0.9, 0.9)}, {}),
                          pd.DataFrame(), pd.DataFrame())
    assert not plots.verdict_intervals(single, tmp_path / "w.png").drawn


def test_the_verdict_explains_a_baseline_gap_that_the_best_test_keeps_tied() -> None:
    """An unadjusted 95% CI of the gap to constant LR can exclude zero while the test
    against the best, corrected for all comparisons, keeps constant tied: the verdict must
    say both."""
    from lrbench.report import summary

    best = [0.950, 0.950, 0.950, 0.950, 0.950]
    confirm = {"cosine": best,
               "constant": [b - d for b, d in zip(best, [0.02, 0.005, 0.015, 0.0, 0.01])],
               "step": [0.956, 0.944, 0.950, 0.957, 0.943],  # noisy families: a larger
               "linear": [0.944, 0.957, 0.951, 0.943, 0.955]}  # pooled error term
    search = {f: (0.95, 0.95) for f in confirm}
    result = ranking.rank(study_frame(search, confirm))
    base = result.baseline
    assert result.order[0] == "cosine" and base.tied_with_best  # Tukey: not below
    gap = result.standings[0].vs_baseline
    assert gap.mean - gap.half_width > 0  # yet the single interval excludes zero
    text = summary.verdict("s", result, study_frame(search, confirm))
    assert "No single winner" in text and "wins" not in text
    assert "this one interval excludes zero, but corrected for the 3 comparisons" in text


def test_a_one_family_verdict_gives_the_best_configuration_not_a_ranking() -> None:
    """`lrbench sweep step`, the README's first command, studies one family: the verdict
    is about its best parameters and their noise, not "nothing to rank"."""
    from lrbench.report import summary

    single = study_frame({"step": (0.926, 0.918)}, {}, val_size=500)
    text = summary.verdict("step", ranking.rank(single), single)
    assert "one family, step" in text and "step=1" in text and "92.60%" in text
    se = math.sqrt(0.926 * 0.074 / 500)
    assert f"standard error of ±{100 * se:.2f} points" in text
    assert "lrbench confirm step" in text and "wins" not in text
    confirmed = study_frame({"step": (0.926, 0.918)}, {"step": [0.91, 0.915, 0.92]})
    text = summary.verdict("step", ranking.rank(confirmed), confirmed)
    assert "% test accuracy over 3 fresh seeds" in text


@pytest.mark.parametrize("confirm", [CONFIRM, {}], ids=["confirm basis", "search basis"])
def test_the_reports_ranking_adds_its_p_values_only_when_asked(confirm: dict) -> None:
    """The report ranks every study before its figures start, and they need only the
    verdicts: the p-values (numerical integrals) come when the summary asks."""
    trials = study_frame(SEARCH, confirm)
    frames = ReportFrames([StudyInfo("s", {}, "", {}, 4, 15)], trials, pd.DataFrame(),
                          pd.DataFrame())
    full = ranking.rank(trials)
    quick = ranking.ranking_of(frames)
    assert not quick.has_p_values and full.has_p_values
    tested = [s for s in full.ranked if s.test]
    assert tested and all(not math.isnan(s.p_vs_best) for s in tested)
    assert all(math.isnan(s.p_vs_best) for s in quick.standings)
    assert [(s.family, s.tied_with_best) for s in quick.standings] == \
        [(s.family, s.tied_with_best) for s in full.standings]
    again = ranking.ranking_of(frames, p_values=True)
    assert again is quick and again.has_p_values  # the same ranking, completed
    assert [s.p_vs_best for s in again.standings] == pytest.approx(
        [s.p_vs_best for s in full.standings], nan_ok=True)

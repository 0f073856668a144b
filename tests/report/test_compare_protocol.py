"""The compare protocol end to end: sweep, confirm and report through the command line,
and the page's new elements read in a real browser at 1400 and 800 px."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
from browser import BROWSER, MISSING, seen_by_browser
from conftest import DATA, NEEDS_MNIST, run_lrbench

from lrbench.report import summary
from lrbench.store.record import cell_of
from lrbench.store.storage import open_storage

pytestmark = [pytest.mark.slow, NEEDS_MNIST]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """smoke's three families under the compare protocol: 3 trials each in 2 repeats,
    every pick re-trained on 2 seeds, then the report."""
    results = tmp_path_factory.mktemp("compare")
    common = ("--results", str(results), "--data-dir", str(DATA), "--workers", "2")
    for args in (("sweep", "smoke", "--protocol", "compare", "--budget", "3", "--repeats",
                  "2", "--epochs", "2", *common),
                 ("confirm", "smoke", "--seeds", "2", *common),
                 ("report", "--results", str(results))):
        done = run_lrbench(*args)
        assert done.returncode == 0, done.stderr
    return results


def test_every_family_spent_exactly_its_budget_in_every_repeat(compared: Path) -> None:
    storage = open_storage(str(compared / "lrbench.journal"), create=False)
    trials = optuna.load_study(study_name="smoke", storage=storage).trials
    assert Counter(cell_of(t) for t in trials) == {
        (family, repeat): 3 for family in ("step", "cosine", "onecycle") for repeat in (0, 1)}
    confirm = optuna.load_study(study_name="smoke:confirm", storage=storage).trials
    assert len(confirm) == 3 * 2 * 2  # each repeat's pick of each family, on 2 seeds
    assert {cell_of(t)[1] for t in confirm} == {0, 1}


def test_the_verdict_csv_holds_the_verdicts_numbers(compared: Path) -> None:
    verdict = pd.read_csv(compared / "report" / "verdict-smoke.csv")
    assert tuple(verdict.columns) == summary.VERDICT_COLUMNS
    assert set(verdict["family"]) == {"step", "cosine", "onecycle"}
    assert (verdict[["protocol", "budget", "repeats", "seeds"]].drop_duplicates().values
            .tolist() == [["compare", 3, 2, 2]])
    assert (verdict["ci_low"] <= verdict["score"]).all()
    assert (verdict["score"] <= verdict["ci_high"]).all()
    assert verdict["p_vs_best"].isna().sum() == 1  # the best is not tested against itself
    page = (compared / "report" / "index.html").read_text(encoding="utf-8")
    assert "Protocol compare: every family had 3 search trials in each of 2 independent" in page
    assert "over 2 repeats of the tuning × 2 seeds each" in page
    assert "covers the tuning&#39;s variance" in page or "covers the tuning's variance" in page


# Where the verdict's columns sit at a given window width: their header cells' right edges.
PROBE = """<script>window.addEventListener('load', () => {
  const cells = [...document.querySelectorAll('table.leaderboard thead th')];
  const right = name => Math.max(...cells.filter(c => c.textContent.includes(name))
                                       .map(c => c.getBoundingClientRect().right));
  document.body.dataset.best = right('against the best');
  document.body.dataset.score = right('test acc over');
  document.body.dataset.protocol = document.querySelectorAll('p.protocol').length;
  document.body.dataset.budgets = [...document.images].filter(
    i => i.alt.startsWith('Tuning budget') && i.naturalWidth > 0).length;
});</script>"""


@pytest.mark.skipif(BROWSER is None, reason=MISSING)
@pytest.mark.parametrize("width", [1400, 800])
def test_the_verdicts_columns_are_on_screen_at_either_width(compared: Path, tmp_path: Path,
                                                            width: int) -> None:
    seen = seen_by_browser(compared / "report" / "index.html", PROBE, tmp_path, width,
                           screenshot=f"compare-{width}.png")
    assert float(seen["score"]) <= width and float(seen["best"]) <= width
    assert seen["protocol"] == "1" and seen["budgets"] == "1"
    assert (tmp_path / f"compare-{width}.png").stat().st_size > 10_000  # what a reader sees

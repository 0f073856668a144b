"""Studies compared across workloads: ranks per workload, performance profiles and
tuning-budget curves, checked against numbers worked out by hand; then a suite end to end."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import REPO, small_mnist

from lrbench.report import compare
from lrbench.sweep.storage import open_storage


def test_expected_best_is_the_exact_bootstrap_maximum() -> None:
    values = np.array([0.9, 0.1, 0.5])
    # n = 2 draws with replacement: max is 0.1 w.p. 1/9, 0.5 w.p. 3/9, 0.9 w.p. 5/9
    mean, low, high = compare.expected_best(values, 2)
    assert mean == pytest.approx((0.1 * 1 + 0.5 * 3 + 0.9 * 5) / 9)
    assert (low, high) == (0.1, 0.9)  # P(max <= 0.1) = 1/9 >= 10%; P(max <= 0.5) = 4/9 < 90%
    draws = [max(pair) for pair in itertools.product(values, repeat=2)]  # all 9 equally likely
    assert mean == pytest.approx(sum(draws) / len(draws))
    assert compare.expected_best(values, 1)[0] == pytest.approx(values.mean())


def table(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"study": s, "workload": s, "family": f, "score": v, "rank": 0,
                          "basis": "confirm"} for s, f, v in rows])


def test_performance_profiles_count_workloads_within_tau() -> None:
    scores = table([("w1", "a", 0.95), ("w1", "b", 0.92), ("w1", "c", 0.945),
                    ("w2", "a", 0.90), ("w2", "b", 0.91)])  # c never ran on w2
    curves, area = compare.profiles(scores, tau_max=0.04)
    at = {(f, round(t, 4)): v for f, t, v in curves.itertuples(index=False)}
    assert (at[("a", 0.0)], at[("b", 0.0)], at[("c", 0.0)]) == (0.5, 0.5, 0.0)
    assert (at[("a", 0.01)], at[("b", 0.01)], at[("c", 0.01)]) == (1.0, 0.5, 0.5)
    assert at[("b", 0.03)] == 1.0 and at[("c", 0.04)] == 0.5  # c: never within on w2
    assert list(area.index) == ["a", "b", "c"] and area["a"] > area["b"] > area["c"]
    assert area["a"] == pytest.approx(curves[curves["family"] == "a"]["fraction"].mean())


@pytest.mark.slow
def test_a_suite_runs_its_workloads_skips_missing_data_and_is_compared(tmp_path: Path) -> None:
    data_dir = small_mnist(tmp_path / "data", 600, 300)
    # A second "data set" for the mechanics: other MNIST images filed as FashionMNIST.
    small_mnist(tmp_path / "data", 600, 300, folder="FashionMNIST", start=1000)
    results = tmp_path / "results"

    def lrbench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lrbench", *args, "--results",
                               str(results)], cwd=REPO, capture_output=True, text=True,
                              timeout=600)

    done = lrbench("sweep", "suite", "--trials", "12", "--epochs", "2", "--data-dir",
                   str(data_dir))
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "skipping suite-all-kmnist (kmnist is not here" in out
    storage = open_storage(str(results / "lrbench.journal"), create=False)
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert names == {"suite-all-mnist": 12, "suite-all-fashion-mnist": 12}
    done = lrbench("confirm", "suite", "--seeds", "2")
    assert done.returncode == 0, done.stderr
    assert "suite-all-kmnist was never swept here" in " ".join(done.stdout.split())
    done = lrbench("report")
    assert done.returncode == 0, done.stderr
    page = (results / "report" / "index.html").read_text(encoding="utf-8")
    assert '<section id="comparison-all" class="comparison">' in page
    assert "Comparison across workloads: all" in page and "Performance profiles" in page
    standings = pd.read_csv(results / "report" / "comparison-all.csv")
    assert set(standings["study"]) == {"suite-all-mnist", "suite-all-fashion-mnist"}
    assert set(standings["basis"]) == {"confirm"}
    for _, mine in standings.groupby("study"):
        assert sorted(mine["rank"]) == list(range(1, len(mine) + 1))
    budgets = pd.read_csv(results / "report" / "budgets-all.csv")
    for _, curve in budgets.groupby(["study", "family"]):
        assert curve["expected"].is_monotonic_increasing  # more trials never hurt the best
        assert list(curve["n"]) == list(range(1, int(curve["trials"].iloc[0]) + 1))


def test_a_bad_suite_names_the_file_the_key_and_the_value(tmp_path: Path) -> None:
    suite = tmp_path / "mine.toml"
    suite.write_text('[suite]\nname = "mine"\n[[workload]]\nsweep = "smoke"\n'
                     'dataset = "cifar10"\n')
    done = subprocess.run([sys.executable, "-m", "lrbench", "sweep", str(suite), "--results",
                           str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert str(suite) in message and "workload[0].dataset" in message and "cifar10" in message


def test_a_one_family_comparison_draws_no_profile(tmp_path: Path) -> None:
    from lrbench.report import compare_plots

    curves, scores = compare.profiles(table([("w1", "step", 0.9), ("w2", "step", 0.8)]))
    figure = compare_plots.performance_profiles(curves, scores, tmp_path / "p.png")
    assert not figure.drawn and "1 with results" in figure.note
    assert not (tmp_path / "p.png").exists()

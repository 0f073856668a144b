"""Studies compared across workloads: ranks per workload, performance profiles and
tuning-budget curves, checked against numbers worked out by hand; then a suite end to end."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import run_lrbench, small_mnist

from lrbench.report import compare
from lrbench.store.storage import open_storage


def times(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"study": s, "workload": s, "family": f, "target": 0.9, "epochs": e}
                         for s, f, e in rows])


def test_performance_profiles_are_algoperfs_time_ratios_with_a_fixed_r_max() -> None:
    table = times([("w1", "a", 2.0), ("w1", "b", 3.0), ("w1", "c", 10.0),
                   ("w2", "a", math.inf), ("w2", "b", 4.0)])  # a missed w2; c never ran it
    curves, score = compare.profiles(table, r_max=4.0)
    at = {(f, t): v for f, t, v in curves.itertuples(index=False)}
    # ratios: w1: a 1, b 1.5, c 5 (> r_max); w2: b 1, a inf, c absent
    assert (at[("a", 1.0)], at[("b", 1.0)], at[("c", 1.0)]) == (0.5, 0.5, 0.0)
    assert (at[("a", 1.5)], at[("b", 1.5)], at[("c", 4.0)]) == (0.5, 1.0, 0.0)
    # the exact area over [1, 4] / 3 / workloads: a: (4 - 1) / 3 / 2; b: (3 + 2.5) / 3 / 2
    assert score["a"] == pytest.approx(0.5) and score["b"] == pytest.approx(5.5 / 6)
    assert score["c"] == 0.0 and list(score.index) == ["b", "a", "c"]
    # a family's presence moves another's score only where it is fastest: c, slower than
    # 4x everywhere, changes nothing
    _, without = compare.profiles(table[table["family"] != "c"], r_max=4.0)
    assert without["a"] == score["a"] and without["b"] == score["b"]


@pytest.mark.slow
def test_a_suite_runs_its_workloads_skips_missing_data_and_is_compared(tmp_path: Path) -> None:
    data_dir = small_mnist(tmp_path / "data", 600, 300)
    # A second "data set" for the mechanics: other MNIST images filed as FashionMNIST.
    small_mnist(tmp_path / "data", 600, 300, folder="FashionMNIST", start=1000)
    results = tmp_path / "results"

    def lrbench(*args: str) -> subprocess.CompletedProcess:
        return run_lrbench(*args, results=results)

    # all.toml's compare protocol, as small as it goes: 11 families x 1 trial x 2 repeats
    done = lrbench("sweep", "suite", "--budget", "1", "--repeats", "2", "--epochs", "2",
                   "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "skipping suite-all-kmnist (kmnist is not here" in out
    storage = open_storage(str(results / "lrbench.journal"), create=False)
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert names == {"suite-all-mnist": 22, "suite-all-fashion-mnist": 22}
    done = lrbench("confirm", "suite", "--seeds", "2")
    assert done.returncode == 0, done.stderr
    assert "suite-all-kmnist was never swept here" in " ".join(done.stdout.split())
    done = lrbench("report")
    assert done.returncode == 0, done.stderr
    page = (results / "report" / "index.html").read_text(encoding="utf-8")
    assert '<section id="comparison-suite" class="comparison">' in page
    assert "Comparison across workloads: suite" in page and "Performance profiles" in page
    standings = pd.read_csv(results / "report" / "comparison-suite.csv")
    assert set(standings["study"]) == {"suite-all-mnist", "suite-all-fashion-mnist"}
    assert set(standings["basis"]) == {"confirm"}
    for _, mine in standings.groupby("study"):
        assert sorted(mine["rank"]) == list(range(1, len(mine) + 1))
    budgets = pd.read_csv(results / "report" / "budgets-suite.csv")
    for _, curve in budgets.groupby(["study", "family"]):
        # each spent trial counts; a curve runs to the budget per repeat (2 repeats)
        assert curve["expected"].is_monotonic_increasing  # more trials never hurt the best
        assert list(curve["n"]) == list(range(1, int(curve["trials"].iloc[0]) // 2 + 1))
    times = pd.read_csv(results / "report" / "times-suite.csv")
    assert set(times["study"]) == set(standings["study"]) and (times["epochs"] >= 1).all()


@pytest.mark.slow
def test_a_bad_suite_names_the_file_the_key_and_the_value(tmp_path: Path) -> None:
    suite = tmp_path / "mine.toml"
    suite.write_text('[suite]\nname = "mine"\n[[workload]]\nsweep = "smoke"\n'
                     'dataset = "cifar10"\n')
    done = run_lrbench("sweep", str(suite), results=tmp_path / "r", timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert str(suite) in message and "workload[0].dataset" in message and "cifar10" in message


def test_a_one_family_comparison_draws_no_profile(tmp_path: Path) -> None:
    from lrbench.report import compare_plots

    curves, scores = compare.profiles(times([("w1", "step", 3.0), ("w2", "step", 2.0)]))
    figure = compare_plots.performance_profiles(curves, scores, tmp_path / "p.png")
    assert not figure.drawn and "1 with results" in figure.note
    assert not (tmp_path / "p.png").exists()

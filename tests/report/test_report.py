"""``lrbench confirm`` and the report's data step, on studies from real sweeps.

A module fixture runs real sweeps through the command line (worker processes, the
journal storage, the MNIST sample in ../shared/data) and confirm runs on top; the tests
read them back as frames, statistics and sentences, without drawing anything.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import CONFIRM_SEEDS as SEEDS
from conftest import DATA, NEEDS_MNIST, REPO, run_lrbench
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from tukey_reference import tukey_block_p

from lrbench.errors import UserError
from lrbench.report import build, plots, stats, summary
from lrbench.report import frames as frames_module
from lrbench.report.frames import PARAM_PREFIX
from lrbench.store import record
from lrbench.store.picks import best_per_family
from lrbench.store.schema import CONFIG_ATTR, confirm_study_name
from lrbench.store.storage import open_storage
from lrbench.sweep import config as config_module
from lrbench.sweep.confirm import SEED_OFFSET

pytestmark = [pytest.mark.slow, NEEDS_MNIST]


def lrbench(*args: str, results: Path) -> subprocess.CompletedProcess:
    return run_lrbench(*args, results=results, data_dir=DATA)


@pytest.fixture(scope="module")
def frames(results: Path) -> frames_module.ReportFrames:
    return frames_module.load(str(results / "lrbench.journal"))


def config_seed(parent: optuna.Study) -> int:
    return parent.user_attrs[CONFIG_ATTR]["seed"]


def study(results: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name,
                             storage=open_storage(str(results / "lrbench.journal")))


# --- confirm --------------------------------------------------------------------------


def test_confirm_reruns_each_familys_best_with_fresh_recorded_seeds(results: Path) -> None:
    parent = study(results, "smoke")
    runs = study(results, confirm_study_name("smoke")).get_trials()
    best = {}
    for t in parent.get_trials(states=(TrialState.COMPLETE,)):
        family = t.params["schedule"]
        if not record.record_of(t).diverged and (family not in best
                                                  or t.value > best[family].value):
            best[family] = t
    assert len(runs) == SEEDS * len(best)
    assert all(t.state == TrialState.COMPLETE for t in runs)
    for winner in best.values():
        mine = [t for t in runs if record.plan_of(t).confirm_of == winner.number]
        assert len(mine) == SEEDS
        assert all(t.params == winner.params for t in mine)  # the same configuration ...
        seeds = {record.record_of(t).seed for t in mine}  # ... with seeds of its own
        assert len(seeds) == SEEDS and record.record_of(winner).seed not in seeds
        assert min(seeds) >= SEED_OFFSET
        # run i of every family shares batch order i (and so one stack): a fresh one each
        for t in mine:
            index = record.plan_of(t).confirm_index
            assert record.record_of(t).data_seed == record.plan_of(t).data_seed == (
                config_seed(parent) + SEED_OFFSET * (index + 1))
        assert all(len(record.record_of(t).curves["epoch"]) == 3 for t in mine)  # never pruned


def test_confirm_again_adds_only_missing_seeds(results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "results"
    copy.mkdir()
    (copy / "lrbench.journal").write_bytes((results / "lrbench.journal").read_bytes())
    before = len(study(copy, confirm_study_name("smoke")).get_trials())
    same = lrbench("confirm", "smoke", "--seeds", str(SEEDS), "--workers", "1", results=copy)
    assert same.returncode == 0, same.stderr
    assert len(study(copy, confirm_study_name("smoke")).get_trials()) == before
    more = lrbench("confirm", "smoke", "--seeds", str(SEEDS + 1), "--workers", "1",
                   results=copy)
    assert more.returncode == 0, more.stderr
    families = before // SEEDS
    assert len(study(copy, confirm_study_name("smoke")).get_trials()) == before + families


@pytest.mark.parametrize("args, message", [
    (("confirm", "nosuch"), "no study 'nosuch'"),
    (("confirm", "smoke", "--trial", "999"), "no completed trial number 999"),
])
def test_confirm_bad_input_exits_2_without_traceback(results: Path, args: tuple[str, ...],
                                                     message: str) -> None:
    done = lrbench(*args, results=results)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_confirm_without_storage_exits_2(tmp_path: Path) -> None:
    done = lrbench("confirm", "smoke", results=tmp_path)
    assert done.returncode == 2 and "no lrbench storage" in done.stderr


# --- frames ---------------------------------------------------------------------------


def test_trial_frame_has_one_row_per_trial_of_both_roles(results: Path,
                                                         frames: frames_module.ReportFrames
                                                         ) -> None:
    trials = frames.trials
    for name in ("smoke", "dlwizard"):
        stored = study(results, name).get_trials()
        mine = trials[(trials["study"] == name) & (trials["role"] == "search")]
        assert sorted(mine["number"]) == [t.number for t in stored]
        assert list(mine.sort_values("number")["val_accuracy"]) == pytest.approx(
            [record.record_of(t).val_accuracy for t in stored])
    confirm = trials[trials["role"] == "confirm"]
    assert set(confirm["study"]) == {"smoke"}  # filed under their parent study
    assert confirm["confirm_of"].notna().all() and trials[trials["role"] == "search"][
        "confirm_of"].isna().all()
    smoke = trials[(trials["study"] == "smoke") & (trials["role"] == "search")]
    for row in smoke.to_dict("records"):  # each searched parameter has its own column
        params = study(results, "smoke").trials[row["number"]].params
        for name, value in params.items():
            if name != "schedule":
                assert row[PARAM_PREFIX + name] == pytest.approx(value)
    assert (smoke["train_size"] == 4000).all() and (smoke["steps_per_epoch"] == 40).all()


def test_report_and_terminal_agree_on_each_familys_best(results: Path,
                                                        frames: frames_module.ReportFrames
                                                        ) -> None:
    """One rule for "best": the report's table and the terminal's (and confirm's) pick the
    same trial of each family."""
    table = frames_module.best_per_family(frames.trials)
    for name in ("smoke", "dlwizard"):
        mine = table[table["study"] == name]
        assert {f: t.number for f, t in best_per_family(study(results, name)).items()} == \
            dict(zip(mine["family"], mine["number"]))


def test_epoch_frame_matches_the_stored_curves(frames: frames_module.ReportFrames) -> None:
    epochs = frames.epochs
    assert len(epochs) == frames.trials["epochs_run"].sum()
    runs = epochs.groupby(["study", "role", "number"])["epoch"].apply(list)
    assert all(curve == list(range(1, len(curve) + 1)) for curve in runs)
    assert set(epochs.columns) >= {"lr", "train_loss", "val_loss", "val_accuracy", "seconds"}


def test_csv_exports_round_trip(frames: frames_module.ReportFrames, tmp_path: Path) -> None:
    written = frames_module.export_csv(frames, tmp_path)
    assert [p.name for p in written] == ["trials.csv", "epochs.csv"]
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == len(frames.trials)
    assert trials["val_accuracy"].tolist() == pytest.approx(
        frames.trials["val_accuracy"].tolist(), nan_ok=True)
    assert len(pd.read_csv(tmp_path / "epochs.csv")) == len(frames.epochs)


def test_lr_steps_replay_the_recorded_per_epoch_lr(frames: frames_module.ReportFrames) -> None:
    best = frames_module.best_per_family(frames.trials)
    assert len(frames.lr_steps) > 0
    for run in best.itertuples():
        steps = frames.lr_steps[(frames.lr_steps["study"] == run.study)
                                & (frames.lr_steps["number"] == run.number)]
        curve = frames.epochs[(frames.epochs["study"] == run.study)
                              & (frames.epochs["number"] == run.number)
                              & (frames.epochs["role"] == "search")]
        at_epoch_start = steps[steps["position"] == steps["position"].round()]
        # The replay on a real scheduler gives the LR each epoch actually started with,
        # plateau's metric-driven drops included.
        assert at_epoch_start["lr"].tolist() == pytest.approx(curve["lr"].tolist())
        if run.family == "onecycle":  # per batch: many distinct values within an epoch
            assert steps["lr"].nunique() > 2 * len(curve)


def test_time_to_target_reports_reached_and_missed(frames: frames_module.ReportFrames) -> None:
    ttt = frames_module.time_to_target(frames, (0.05, 0.9999))
    easy, impossible = ttt[ttt["target"] == 0.05], ttt[ttt["target"] == 0.9999]
    assert easy["reached"].all() and (easy["epoch"] == 1).all()
    assert (~impossible["reached"]).all() and impossible["epoch"].isna().all()
    assert set(ttt["role"]) == {"search", "confirm"}


def test_importances_cover_searched_parameters(frames: frames_module.ReportFrames) -> None:
    imp = frames.importances[frames.importances["study"] == "smoke"]
    overall = imp[imp["scope"] == "all families"]
    assert set(overall["param"]) == {"schedule"}  # the only parameter every trial has
    assert overall["importance"].sum() == pytest.approx(1.0)
    within = imp[imp["scope"] != "all families"]  # a family's own parameters, on its trials
    assert all(p.startswith(f"{s}.") for s, p in zip(within["scope"], within["param"]))


def test_importances_are_computed_on_first_read_and_a_study_shares_them(results: Path) -> None:
    """Loading leaves them to the process that draws their figure; one study's are its
    rows of the whole storage's, read before or after picking the study."""
    loaded = frames_module.load(str(results / "lrbench.journal"))
    assert loaded.computed_importances is None
    early = loaded.study("smoke").importances  # computed for that study alone
    assert loaded.computed_importances is None
    everything = loaded.importances
    assert {"smoke", "dlwizard"} == set(everything["study"])
    pd.testing.assert_frame_equal(early, everything[everything["study"] == "smoke"]
                                  .reset_index(drop=True))


def test_unknown_study_missing_and_empty_storage_are_user_errors(tmp_path: Path,
                                                                 results: Path) -> None:
    with pytest.raises(UserError, match="no lrbench storage"):
        frames_module.load(str(tmp_path / "nothing.journal"))
    empty = tmp_path / "empty.journal"
    empty.touch()
    with pytest.raises(UserError, match="holds no study"):
        frames_module.load(str(empty))
    with pytest.raises(UserError, match="no study 'nope'"):
        frames_module.load(str(results / "lrbench.journal"), ["nope"])


# --- statistics and sentences ---------------------------------------------------------


def test_mean_ci_is_the_student_t_interval() -> None:
    interval = stats.mean_ci([0.90, 0.92, 0.94])
    # mean 0.92, sd 0.02, sem 0.02/sqrt(3), t(0.975, 2) = 4.302653
    assert interval.mean == pytest.approx(0.92)
    assert interval.half_width == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert math.isnan(stats.mean_ci([0.9]).half_width) and stats.mean_ci([]).n == 0


def test_verdict_with_confirm_runs_gives_interval_and_test(
        frames: frames_module.ReportFrames) -> None:
    smoke = summary.summarise(frames.study("smoke"), (0.9,))
    assert smoke.has_confirm and smoke.ranking.basis == "confirm"
    assert all(row.seeds.n == SEEDS for row in smoke.leaderboard)
    # ranked by the confirm mean, the one order of verdict, leaderboard and figures
    means = [row.seeds.mean for row in smoke.leaderboard]
    assert means == sorted(means, reverse=True)
    assert [r.family for r in smoke.leaderboard] == plots.family_order(frames.study("smoke"))
    # each family against the best: Tukey's HSD with the confirm seeds as blocks (run i of
    # every family shares batch order i), recomputed here with statsmodels and scipy
    runs = frames.study("smoke").trials.query("role == 'confirm'")
    by_family = {f: g.sort_values("confirm_index")["test_accuracy"].tolist()
                 for f, g in runs.groupby("family")}
    best = smoke.leaderboard[0].family
    expected = tukey_block_p(by_family)
    for row in smoke.leaderboard[1:]:
        assert row.standing.p_vs_best == pytest.approx(expected[row.family], rel=1e-9)
        assert row.standing.tied_with_best == (expected[row.family] >= 0.05)
    assert f"over {SEEDS} seeds of one tuning's pick" in smoke.verdict
    assert "Tukey's HSD against the best" in smoke.verdict
    assert "covers seed noise only" in smoke.verdict
    assert "wins" not in smoke.verdict
    tied = [r.family for r in smoke.leaderboard if r.standing.tied_with_best]
    if len(tied) > 1:
        assert smoke.verdict.startswith(f"No single winner in study smoke: {best} has")
        assert all(f in smoke.verdict for f in tied)
    else:
        assert smoke.verdict.startswith(f"{best} is best in study smoke")


def test_verdict_without_confirm_runs_says_it_rests_on_single_runs(
        frames: frames_module.ReportFrames) -> None:
    tutorial = summary.summarise(frames.study("dlwizard"), (0.9,))
    assert not tutorial.has_confirm and tutorial.ranking.basis == "search"
    assert "These are single runs (each listed run once, no confirm runs)" in tutorial.verdict
    # the validation set is the 10,000-image test set (validation_size = 0): its standard
    # error at the best run's accuracy is stated
    top = tutorial.leaderboard[0]
    se = math.sqrt(top.val_accuracy * (1 - top.val_accuracy) / 10_000)
    assert f"on 10,000 images has a standard error of ±{100 * se:.2f} points" in \
        tutorial.verdict
    assert "lrbench confirm dlwizard" in tutorial.verdict and "wins" not in tutorial.verdict


def test_reproduction_table_pairs_published_and_measured(
        frames: frames_module.ReportFrames) -> None:
    rows = summary.reproduction(frames.study("dlwizard"))
    assert [r.published for r in rows] == [97.0, 97.0, 97.0, 98.04, 98.01]
    assert [r.epochs for r in rows] == [5, 5, 5, 10, 10]
    assert all(r.measured.endswith("%") and r.trial is not None for r in rows)


def test_study_with_only_failed_trials_is_summarised_not_raised(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "lrbench.journal"))
    config = config_module.load(REPO / "sweeps" / "smoke.toml")
    broken = optuna.create_study(study_name="broken", storage=storage, direction="maximize")
    broken.set_user_attr(CONFIG_ATTR, config.identity())
    for _ in range(2):
        trial = broken.ask()
        trial.suggest_categorical("schedule", ["step"])
        broken.tell(trial, state=TrialState.FAIL)
    loaded = frames_module.load(str(tmp_path / "lrbench.journal"))
    verdict = summary.summarise(loaded.study("broken"), (0.9,))
    assert verdict.leaderboard == []
    assert "no completed trial yet (trials: 2 fail)" in verdict.verdict
    assert any("2 trial(s) failed" in note for note in verdict.notes)


def test_a_run_that_ends_near_chance_did_not_learn(tmp_path: Path) -> None:
    """Runs ending at 16-19% (chance: 10%) were neither diverged nor failed: now a status."""
    storage = open_storage(str(tmp_path / "lrbench.journal"))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for accuracy in (0.17, 0.2, 0.9):
        trial = study.ask()
        trial.suggest_categorical("schedule", ["step"])
        record.write_end(study, trial._trial_id,
                         record.TrialRecord("complete", family="step", val_accuracy=accuracy,
                                            test_accuracy=accuracy),
                         TrialState.COMPLETE)
    trials = frames_module.trials_of(study)
    assert trials["status"].tolist() == ["did not learn", "complete", "complete"]


def test_targets_fit_what_the_study_reached(frames: frames_module.ReportFrames) -> None:
    """The 5,000-image sample tops out below MNIST's 97/98% defaults: every cell said
    "missed". Now the targets come from what the study reached, and the page says how."""
    one = frames.study("smoke")
    reached = one.epochs.query("role == 'search'")["val_accuracy"].max()
    assert reached < 0.98
    targets, note = build.targets_for(one, ())
    assert targets == (math.floor(950 * reached) / 1000, math.floor(990 * reached) / 1000)
    assert "out of its reach" in note and f"{100 * reached:.2f}%" in note
    ttt = frames_module.time_to_target(one, targets)
    assert ttt.query("role == 'search'")["reached"].any()  # the best trial reaches both
    assert build.targets_for(one, (0.5,)) == ((0.5,), "Targets given with --target.")
    easy = dataclasses.replace(one, epochs=one.epochs.assign(val_accuracy=0.99))
    assert build.targets_for(easy, ())[0] == (0.97, 0.98)  # mnist's, when within reach


def test_a_one_family_study_shows_its_importances_once() -> None:
    schedule = CategoricalDistribution(["step"])
    gamma, lr = FloatDistribution(0.1, 0.9), FloatDistribution(0.01, 0.5, log=True)
    trials = [optuna.trial.create_trial(
        params={"schedule": "step", "step.gamma": 0.1 + i / 10, "lr": 0.01 * (i + 1)},
        distributions={"schedule": schedule, "step.gamma": gamma, "lr": lr},
        value=0.9 - abs(i - 3) / 100) for i in range(8)]
    one_family = frames_module.importances("one", trials)
    assert set(one_family["scope"]) == {"all families"}  # not again as "step"
    assert set(one_family["param"]) == {"step.gamma", "lr"}

"""Tests for lrbench.cli's exit codes, on outcomes built by hand (no worker processes)."""

from __future__ import annotations

import dataclasses
import signal

import optuna
import pytest
from optuna.trial import TrialState

from lrbench import cli
from lrbench.errors import StorageError
from lrbench.store.record import RECORD_ATTR, TrialRecord
from lrbench.sweep.devices import Slot
from lrbench.sweep.run import SweepOutcome

optuna.logging.set_verbosity(optuna.logging.WARNING)


def outcome(finished: int, target: int, failed: int = 0, **fields: object) -> SweepOutcome:
    study = optuna.create_study(direction="maximize")
    for _ in range(finished):
        study.tell(study.ask(), 0.5)
    for _ in range(failed):
        study.tell(study.ask(), state=TrialState.FAIL)
    return SweepOutcome(study, "results/lrbench.journal", [Slot(0, "cpu", 1)], finished,
                        target, **fields)


def test_a_finished_sweep_exits_0(capsys):
    cli._finish(outcome(4, 4))
    assert "4/4 trials finished" in capsys.readouterr().out


def test_a_sweep_that_ends_short_says_why_and_exits_1(capsys):
    """38/40 and 9/10 used to exit 0."""
    with pytest.raises(SystemExit) as exit_:
        cli._finish(outcome(2, 4, failed=3, deaths=1))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "ended with 2 of 4 trials finished" in err
    assert "3 trials failed in this run" in err and "died 1 times" in err


def test_failures_from_earlier_runs_are_not_blamed_on_this_one(capsys):
    with pytest.raises(SystemExit):
        cli._finish(outcome(2, 4, failed=3, failed_before=3))
    assert "failed in this run" not in capsys.readouterr().err


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_sweep_exits_128_plus_its_signal(signum: int, code: int):
    with pytest.raises(SystemExit) as exit_:
        cli._finish(outcome(2, 4, interrupted=signum))
    assert exit_.value.code == code


def test_a_full_disk_exits_1_with_one_line(capsys):
    """The storage's message says what to do (tests/sweep/test_journal.py checks the full
    disk's); the command prints it as it is, in one line."""
    message = ("cannot write to x: No space left; finished trials are kept: free space, "
               "then run the same command to resume")
    with pytest.raises(SystemExit) as exit_:
        cli._finish(outcome(2, 4, error=StorageError(message)))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"lrbench: error: {message}"
    assert "Traceback" not in err


def test_the_best_trial_table_never_crowns_a_diverged_trial(capsys):
    """A diverged trial's accuracy is chance's; it used to win the terminal's table when
    its value happened to be the highest (the report and confirm already skipped it)."""
    study = optuna.create_study(direction="maximize")
    schedule = optuna.distributions.CategoricalDistribution(["step", "cosine"])
    for family, value, diverged in (("step", 0.9, False), ("step", 0.95, True),
                                    ("cosine", 0.8, True)):
        study.add_trial(optuna.trial.create_trial(
            params={"schedule": family}, distributions={"schedule": schedule}, value=value,
            user_attrs={RECORD_ATTR: dataclasses.asdict(TrialRecord(
                "diverged" if diverged else "complete", test_accuracy=value))}))
    cli._print_best(study)
    lines = capsys.readouterr().out.splitlines()
    [step] = [line for line in lines if line.split()[1:2] == ["step"]]
    [cosine] = [line for line in lines if line.split()[1:2] == ["cosine"]]
    assert "0.9000" in step and "0.9500" not in step
    assert step.split()[:3] == ["1", "step", "2/0/1"]  # 2 complete, 1 of them diverged
    assert cosine.split() == ["-", "cosine", "1/0/1", "-", "-", "-", "-"]  # counted, no winner
    assert lines.index(step) < lines.index(cosine)  # a family without a result comes last


def test_the_terminal_table_fits_80_columns_with_every_family(capsys, monkeypatch):
    """Parameters wrapped the table into one-word lines at 80 columns; now they get lines
    of their own under it, and the table keeps one line per family."""
    monkeypatch.setattr(cli, "console", cli.Console(width=80, force_terminal=False))
    study = optuna.create_study(direction="maximize")
    families = ["cosine_restarts", "exponential", "multistep", "polynomial", "onecycle"]
    schedule = optuna.distributions.CategoricalDistribution(families)
    long_params = {"max_lr_ratio": 1.993, "pct_start": 0.4241, "div_factor": 63.65, "lr": 0.0413}
    for i, family in enumerate(families):
        params = {"schedule": family, **{f"{family}.{k}": v for k, v in long_params.items()}}
        distributions = {"schedule": schedule, **{
            f"{family}.{k}": optuna.distributions.FloatDistribution(0.001, 100)
            for k in long_params}}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, value=0.9 - i / 100,
            user_attrs={RECORD_ATTR: dataclasses.asdict(TrialRecord(
                "complete", family=family, val_accuracy=0.9 - i / 100, test_accuracy=0.88,
                val_size=500))}))
    cli._print_best(study)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.split()[1:2] and line.split()[1] in families]
    assert [row.split()[1] for row in rows] == families  # one line each, in rank order
    assert "  onecycle: max_lr_ratio=1.993 pct_start=0.4241 div_factor=63.65 lr=0.0413" in lines

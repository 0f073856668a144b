"""Tests for lrbench.cli's exit codes, on outcomes built by hand (no worker processes)."""

from __future__ import annotations

import dataclasses
import signal

import optuna
import pytest
from optuna.trial import TrialState

from lrbench import cli
from lrbench.errors import StorageError
from lrbench.sweep.devices import Slot
from lrbench.sweep.record import RECORD_ATTR, TrialRecord
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
    with pytest.raises(SystemExit) as exit_:
        cli._finish(outcome(2, 4, error=StorageError("cannot write to x: No space left")))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "No space left" in err and "run the same command to resume" in err
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
    [step] = [line for line in lines if line.startswith("│ step")]
    [cosine] = [line for line in lines if line.startswith("│ cosine")]
    assert "0.9000" in step and "0.9500" not in step
    cells = [cell.strip() for cell in cosine.strip("│").split("│")]
    assert cells[:7] == ["cosine", "1", "0", "1", "-", "-", "-"]  # counted, no winner
    assert lines.index(step) < lines.index(cosine)  # a family without a result comes last

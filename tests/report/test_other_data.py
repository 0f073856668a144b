"""The report never pools runs of different data: a study holding runs on a smaller
training set (an older release let them in) reports them apart, and ranks without them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from lrbench.report import frames as frames_module
from lrbench.report import summary
from lrbench.store.record import RECORD_ATTR, TrialRecord
from lrbench.store.schema import CONFIG_ATTR
from lrbench.store.storage import open_storage


def add_run(study: optuna.Study, family: str, val: float, train_size: int,
            lr: float | None = None) -> None:
    record = TrialRecord(status="complete", family=family, val_accuracy=val, test_accuracy=val,
                         epochs=1, epochs_run=1, train_size=train_size, val_size=500,
                         test_size=1000,
                         curves={"epoch": [1], "lr": [0.1], "train_loss": [0.5],
                                 "val_loss": [0.4], "val_accuracy": [val], "seconds": [1.0]})
    params: dict[str, object] = {"schedule": family}
    distributions = {"schedule": CategoricalDistribution(["step", "cosine"])}
    if lr is not None:  # a second searched parameter: importances then split between them
        params["lr"], distributions["lr"] = lr, FloatDistribution(0.01, 1.0, log=True)
    study.add_trial(create_trial(
        state=TrialState.COMPLETE, value=val, params=params, distributions=distributions,
        user_attrs={RECORD_ATTR: dataclasses.asdict(record)}))


def test_runs_on_other_data_are_left_out_and_named(tmp_path: Path) -> None:
    location = str(tmp_path / "lrbench.journal")
    study = optuna.create_study(study_name="mixed", storage=open_storage(location),
                                direction="maximize")
    study.set_user_attr(CONFIG_ATTR, {"dataset": "mnist", "epochs": 1})
    # No recorded data identity (an older study): the sizes most of its trials trained on
    # are its data.
    add_run(study, "step", 0.90, 4500)
    add_run(study, "cosine", 0.91, 4500)
    add_run(study, "step", 0.97, 2700)  # the best value, on other data
    frames = frames_module.load(location)
    assert len(frames.trials) == 2 and set(frames.trials["train_size"]) == {4500}
    info = frames.studies[0]
    assert info.other_data == {"mnist: 2,700 train / 500 validation / 1,000 test images": 1}
    assert info.data is not None and info.data.train_size == 4500
    one = summary.summarise(frames.study("mixed"), (0.95,))
    assert [row.family for row in one.leaderboard] == ["cosine", "step"]
    assert [row.val_accuracy for row in one.leaderboard] == [0.91, 0.90]
    assert any("1 run(s) trained on other data (mnist: 2,700 train" in n for n in one.notes)
    assert summary.data_description(frames.study("mixed")).startswith("mnist: 4,500 train")


def test_the_list_the_progress_bar_and_importances_leave_other_data_out(tmp_path: Path) -> None:
    """Before, ``lrbench list`` and the progress bar took the raw maximum (0.97 here, a run
    on other data), and parameter importances were computed over every trial."""
    from lrbench.sweep.run import snapshot
    from lrbench.sweep.summary import study_rows

    location = str(tmp_path / "lrbench.journal")
    study = optuna.create_study(study_name="mixed", storage=open_storage(location),
                                direction="maximize")
    study.set_user_attr(CONFIG_ATTR, {"dataset": "mnist", "epochs": 1})
    for i, value in enumerate((0.90, 0.88, 0.86, 0.84, 0.82)):
        add_run(study, "step", value, 4500, lr=0.1 + 0.01 * i)
        add_run(study, "cosine", value + 0.01, 4500, lr=0.5 - 0.01 * i)
    add_run(study, "step", 0.97, 2700, lr=0.9)  # alone, it would make lr look important
    assert [row["best"] for row in study_rows(open_storage(location))] == ["0.9100"]
    assert snapshot(study).best == 0.91
    frames = frames_module.load(location)
    kept = frames.trials[frames.trials["role"] == "search"]
    assert len(kept) == 10  # the other-data run is not among the trials importances see
    only = frames_module.importances("mixed", [t for t in study.get_trials()
                                               if t.values and t.values[0] < 0.95])
    every = frames_module.importances("mixed", study.get_trials())
    assert not every.equals(only)  # the other-data run changes them: it must be left out
    assert frames.importances.equals(only)

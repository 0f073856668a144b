"""Tests for lrbench.store.schema: every key lrbench stores on a study is named there."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import NEEDS_MNIST
from test_sweep_cli import load, run

from lrbench.store import record, schema

STUDY_KEYS = {schema.CONFIG_ATTR, schema.SWEEP_FILE_ATTR, schema.PROVENANCE_ATTR,
              schema.DATA_ATTR, schema.RUNS_ATTR}


def test_readers_give_what_define_wrote() -> None:
    study = optuna.create_study()
    assert schema.config_of(study) == {} and schema.sweep_file_of(study) == ""
    schema.define(study, {"epochs": 3}, "sweeps/x.toml", {"lrbench": "1"})
    assert schema.config_of(study) == {"epochs": 3}
    assert schema.sweep_file_of(study) == "sweeps/x.toml"
    assert schema.provenance_of(study.user_attrs) == {"lrbench": "1"}  # or the attrs read


def test_run_options_come_back_in_run_order_past_nine() -> None:
    study = optuna.create_study()
    for index in range(12):
        assert schema.start_run(study, {"workers": index}) == index
    assert [o["workers"] for o in schema.run_options(study)] == list(range(12))


@pytest.mark.slow
@NEEDS_MNIST
def test_a_real_sweep_stores_only_the_keys_schema_names(tmp_path: Path) -> None:
    """A sweep, resumed once: the study's attributes are schema's keys and nothing else,
    and each trial's are the record's (``lrbench.store.record``)."""
    for trials in (2, 3):
        done = run("sweep", "smoke", "--epochs", "1", "--trials", str(trials), "--workers", "1",
                   results=tmp_path)
        assert done.returncode == 0, done.stderr
    study = load(tmp_path, "smoke")
    keys = set(study.user_attrs)
    runs = {k for k in keys if k.startswith(schema.RUN_OPTIONS_PREFIX)}
    assert keys - runs == STUDY_KEYS
    assert len(runs) == 2 and study.user_attrs[schema.RUNS_ATTR] == 2
    trial_keys = set().union(*(t.user_attrs for t in study.get_trials()))
    assert trial_keys <= {record.PLAN_ATTR, record.CLAIM_ATTR, record.RECORD_ATTR,
                          record.FAMILY_ATTR, record.TEST_ACCURACY_ATTR}, trial_keys
    assert all(schema.FAMILY_PARAM in t.params for t in study.get_trials())

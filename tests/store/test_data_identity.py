"""A study's data is recorded once and checked by every run into it (issue: runs on a
2,700-image training set were pooled into a study built on 4,500 images)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import optuna
import pytest
import torch
from conftest import DATA, require_mnist, run_lrbench, small_mnist

from lrbench.store import data_identity
from lrbench.store.data_identity import DataIdentity
from lrbench.store.record import record_of
from lrbench.store.schema import confirm_study_name
from lrbench.store.storage import open_storage
from lrbench.train import data


def test_the_shared_samples_fingerprint_is_the_one_studies_recorded() -> None:
    """Reading the IDX files into numpy instead of tensors changed no fingerprint: studies
    recorded before (d9cedb5d7735fa55, by 9dbd7d0's tensor reader) take this data still,
    and a user's loader, which returns tensors, fingerprints the same data the same."""
    require_mnist()
    arrays = data.load_arrays("mnist", DATA)
    assert data.fingerprint(arrays) == "d9cedb5d7735fa55"
    as_tensors = dataclasses.replace(
        arrays, train_images=torch.as_tensor(arrays.train_images),
        train_labels=torch.as_tensor(arrays.train_labels),
        test_images=torch.as_tensor(arrays.test_images),
        test_labels=torch.as_tensor(arrays.test_labels))
    assert data.fingerprint(as_tensors) == "d9cedb5d7735fa55"


def test_fingerprint_tells_two_samples_of_one_data_set_apart(tmp_path: Path) -> None:
    a = data.load_arrays("mnist", small_mnist(tmp_path / "a", 300, 100))
    b = data.load_arrays("mnist", small_mnist(tmp_path / "b", 200, 100))
    copy = data.load_arrays("mnist", small_mnist(tmp_path / "copy", 300, 100))
    assert data.fingerprint(a) == data.fingerprint(copy)  # a copy elsewhere is the same data
    assert data.fingerprint(a) != data.fingerprint(b)
    first, second = (data_identity.identity_of(x, 0.1) for x in (a, copy))
    assert (first.train_size, first.val_size, first.test_size) == (270, 30, 100)
    assert first.same_data(second) and first.location != second.location
    other = data_identity.identity_of(b, 0.1)
    assert not first.same_data(other)
    # a study recorded before fingerprints is compared on its sizes alone
    sizes_only = dataclasses.replace(first, fingerprint="")
    assert sizes_only.same_data(first) and not sizes_only.same_data(other)
    assert "270 train / 30 validation / 100 test images" in first.describe()


def test_recorded_identity_is_checked_and_written_once() -> None:
    study = optuna.create_study()
    one = DataIdentity("mnist", 270, 30, 100, "aaaa", "/data/a")
    data_identity.check_and_record(study, one)
    data_identity.check_and_record(study, dataclasses.replace(one, location="/copy"))
    assert data_identity.recorded(study) == one  # the first location stays
    with pytest.raises(data_identity.UserError) as refused:
        data_identity.check_and_record(study, DataIdentity("mnist", 180, 20, 100, "bbbb"))
    assert "270 train" in str(refused.value) and "180 train" in str(refused.value)
    assert "--data-dir /data/a" in str(refused.value)


def lrbench(*args: str, results: Path, data_dir: Path | None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_lrbench(*args, results=results, data_dir=data_dir, env=env, timeout=300)


def trials_of(results: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(str(results / "lrbench.journal"), create=False)
    return optuna.load_study(study_name=name, storage=storage).get_trials()


@pytest.mark.slow
def test_sweep_and_confirm_refuse_other_data_and_confirm_reuses_the_studys(
        tmp_path: Path) -> None:
    study_data = small_mnist(tmp_path / "sample", 400, 200)
    other_data = small_mnist(tmp_path / "smaller", 300, 200)
    results = tmp_path / "results"
    sweep = ("sweep", "smoke", "--trials", "3", "--epochs", "1", "--workers", "1")
    done = lrbench(*sweep, results=results, data_dir=study_data)
    assert done.returncode == 0, done.stderr
    fingerprint = data.fingerprint(data.load_arrays("mnist", study_data))
    trials = trials_of(results, "smoke")
    assert {record_of(t).data_fingerprint for t in trials} == {fingerprint}

    refused = lrbench(*sweep[:3], "6", *sweep[4:], results=results, data_dir=other_data)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert "320 train / 80 validation / 200 test" in message  # the study's
    assert "240 train / 60 validation / 200 test" in message  # this run's
    assert len(trials_of(results, "smoke")) == 3  # nothing added

    refused = lrbench("confirm", "smoke", "--seeds", "2", results=results, data_dir=other_data)
    assert refused.returncode == 2 and "320 train" in " ".join(refused.stderr.split())
    storage = open_storage(str(results / "lrbench.journal"), create=False)
    assert confirm_study_name("smoke") not in [s.study_name for s in
                                              optuna.get_all_study_summaries(storage)]

    # No --data-dir, an empty cache and no LRBENCH_DATA_DIR: offline, only the folder the
    # study recorded holds the data, and confirm finds it there.
    env = {"LRBENCH_CACHE_DIR": str(tmp_path / "empty-cache"), "LRBENCH_DATA_DIR": ""}
    done = lrbench("confirm", "smoke", "--seeds", "2", "--workers", "1", results=results,
                   data_dir=None, env=env)
    assert done.returncode == 0, done.stderr
    runs = trials_of(results, confirm_study_name("smoke"))
    assert runs and {record_of(t).data_fingerprint for t in runs} == {fingerprint}

"""What data a study trains on, recorded once per study and checked by every run into it.

A study's results mean something only on one data set: a confirm run trained on the full
54,000 MNIST images, pooled with search trials on a 4,500-image sample, changes the
verdict while the header still names the sample. So each study records its data when it
is created (``lrbench_data``): the data set's name, the train / validation / test sizes
after the split, a fingerprint of the arrays (``lrbench.train.data.fingerprint``) and the
folder they were read from. A later sweep or confirm into the study must bring the same
data (the folder may differ: a copy is the same data), or it is refused with both named.
Each trial's record also carries the fingerprint, so the report can tell runs apart.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import optuna

from lrbench.errors import UserError
from lrbench.store import schema
from lrbench.store.record import record_of
from lrbench.train import data, workload


@dataclass(frozen=True)
class DataIdentity:
    dataset: str
    train_size: int
    val_size: int  # images validated on: the test set's size when validating on it
    test_size: int
    fingerprint: str  # "" for a study made before fingerprints: sizes only
    location: str = ""  # the folder read from; not part of the identity
    val_is_test: bool = False  # validation_size = 0: validated on the test set (the tutorial)

    def same_data(self, other: DataIdentity) -> bool:
        sizes = (self.dataset, self.train_size, self.val_size, self.test_size)
        if sizes != (other.dataset, other.train_size, other.val_size, other.test_size):
            return False
        return not (self.fingerprint and other.fingerprint) or \
            self.fingerprint == other.fingerprint

    @property
    def from_loader(self) -> bool:
        """A user's data set, named by their loader's import path (not a folder of files)."""
        return workload.is_import_path(self.dataset)

    def describe(self) -> str:
        """"mnist: 4,500 train / 500 validation / 10,000 test images (fingerprint …)"."""
        validation = ("validated on the test set" if self.val_is_test
                      else f"{self.val_size:,} validation")
        unit = "examples" if self.from_loader else "images"
        text = (f"{self.dataset}: {self.train_size:,} train / {validation} / "
                f"{self.test_size:,} test {unit}")
        if self.fingerprint:
            text += f", fingerprint {self.fingerprint}"
        return text + (f", from {self.location}" if self.location else "")


def identity_of(arrays: data.DatasetArrays, validation_size: float) -> DataIdentity:
    """The identity of ``arrays`` split as a sweep with ``validation_size`` splits them."""
    n = len(arrays.train_labels)
    n_val, n_test = data.validation_count(validation_size, n), len(arrays.test_labels)
    return DataIdentity(arrays.name, n - n_val, n_val or n_test, n_test,
                        data.fingerprint(arrays), str(arrays.root), val_is_test=n_val == 0)


def recorded(study: optuna.Study) -> DataIdentity | None:
    """The data the study recorded, or, for a study made before this record, the sizes
    most of its trials trained on (their records hold sizes, not fingerprints)."""
    stored = study.user_attrs.get(schema.DATA_ATTR)
    if stored is not None:
        return DataIdentity(**{k: v for k, v in stored.items()
                               if k in {f.name for f in dataclasses.fields(DataIdentity)}})
    return majority_of_trials(study.get_trials(deepcopy=False),
                              str(schema.config_of(study).get("dataset", "")))


def majority_of_trials(trials: list[optuna.trial.FrozenTrial],
                       dataset: str) -> DataIdentity | None:
    sizes: Counter[tuple[int, int, int, str]] = Counter()
    for trial in trials:
        record = record_of(trial)
        if record is not None and record.train_size is not None:
            sizes[(record.train_size, record.val_size or 0, record.test_size or 0,
                   record.data_fingerprint)] += 1
    if not sizes:
        return None
    (train, val, test, fingerprint), _ = sizes.most_common(1)[0]
    return DataIdentity(dataset, train, val, test, fingerprint)


def trial_identity(trial: optuna.trial.FrozenTrial, dataset: str) -> DataIdentity | None:
    """The data one finished trial trained on, as far as its record says."""
    record = record_of(trial)
    if record is None or record.train_size is None:
        return None
    return DataIdentity(dataset, record.train_size, record.val_size or 0,
                        record.test_size or 0, record.data_fingerprint)


def check(study: optuna.Study, identity: DataIdentity) -> None:
    """Refuse ``identity`` (a UserError naming both) unless it is the study's data."""
    known = recorded(study)
    if known is not None and not known.same_data(identity) and known.from_loader:
        raise UserError(
            f"study {study.study_name!r} was trained on {known.describe()}; its loader now "
            f"returns {identity.describe()}. Runs on other data would be pooled with its "
            f"results: restore the loader's data, or pass --study NAME for a new study")
    if known is not None and not known.same_data(identity):
        raise UserError(
            f"study {study.study_name!r} was trained on {known.describe()}; this run's "
            f"data is {identity.describe()}. Runs on other data would be pooled with its "
            f"results: pass --data-dir {known.location or 'DIR'} to use the study's data, "
            f"or --study NAME for a new study")


def check_and_record(study: optuna.Study, identity: DataIdentity) -> None:
    """``check``, then record the identity on a study that has none yet.

    Hold the study's claim lock: two first sweeps must not record two identities.
    """
    check(study, identity)
    if study.user_attrs.get(schema.DATA_ATTR) is None:
        study.set_user_attr(schema.DATA_ATTR, dataclasses.asdict(identity))


def recorded_location(study: optuna.Study) -> str | None:
    """The folder the study's data was read from, if it still holds that data set."""
    known = recorded(study)
    if known is None or not known.location:
        return None
    return known.location if data.holds(known.location, known.dataset) else None


def as_dict(identity: DataIdentity | None) -> dict[str, Any]:
    return dataclasses.asdict(identity) if identity is not None else {}

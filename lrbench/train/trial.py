"""What goes into a trial and what comes out: plain, picklable records.

They cross process boundaries (parent -> joblib worker -> storage), so they hold only
dataclasses, strings and numbers; no Optuna objects, no tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lrbench.train.schedules import ScheduleSpec


@dataclass(frozen=True)
class OptimizerConfig:
    """A sweep's ``[optimizer]`` table; a trial's carries its own base LR."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9  # SGD only
    nesterov: bool = True  # SGD only
    weight_decay: float = 0.0


# Per-epoch curves recorded for every trial, in this order.
CURVE_KEYS = ("epoch", "lr", "train_loss", "val_loss", "val_accuracy", "seconds")


@dataclass(frozen=True)
class TrialSpec:
    number: int
    seed: int
    model: str
    epochs: int
    batch_size: int
    optimizer: OptimizerConfig  # its lr is this trial's base LR
    schedule: ScheduleSpec
    plateau_metric: str = "accuracy"
    data_seed: int | None = None  # seed of the batch order; None = seed
    data_offset: int = 0  # permutations of that order skipped first (a stack joined late)


@dataclass
class TrialResult:
    status: str  # "complete", "pruned" or "diverged"
    val_accuracy: float  # the last epoch's: what the final model scores
    test_accuracy: float
    test_loss: float
    train_seconds: float  # wall time of training and evaluation, data loading excluded
    device: str
    reason: str = ""  # why a trial diverged or was pruned
    curves: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in CURVE_KEYS})
    data_seed: int | None = None  # seed of the batch order it trained with
    data_offset: int = 0  # ... and the permutations it skipped (the stack epoch it joined at)

    @property
    def epochs_run(self) -> int:
        return len(self.curves["epoch"])

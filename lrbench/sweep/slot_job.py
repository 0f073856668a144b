"""What a sweep's parent and its slots pass each other: the job, the report, and the error
that makes a slot give up.

Apart from ``lrbench.sweep.slot``, which trains and so imports torch (~1.4 s of CPU): the
parent of a sweep imports only this, and its slots' processes import the rest
(``run_in_worker``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lrbench.store import outage
from lrbench.sweep.config import SweepConfig
from lrbench.sweep.devices import Slot
from lrbench.train.data import DatasetArrays


class TooManyFailures(RuntimeError):
    """A slot whose trials keep raising: a bug or a broken device, not bad luck.
    ``detail``: the user's traceback when the error came from their model."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message, detail)  # both in args: they survive pickling
        self.message, self.detail = message, detail

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class SlotJob:
    slot: Slot
    config: SweepConfig
    storage: str  # URL or journal path: each process opens its own connection
    arrays: DatasetArrays  # read once by the parent: workers never import torchvision
    sampler_seed: int = 0  # this slot process's own (lrbench.sweep.seeds.sampler_seed)
    engine: str = "sequential"  # "sequential" or "batched", already resolved for this slot
    batch_trials: int | None = None  # trials in flight per slot; None: sized in the worker
    slots: int = 1  # slots on this kind of device: the auto-sized K is a share of the trials
    tf32: bool = False  # batched engine on a GPU: TF32 matmuls (faster, 10-bit mantissas)
    data_fingerprint: str = ""  # of ``arrays``, computed once by the parent
    storage_wait: float = outage.DEFAULT_WAIT_SECONDS  # --storage-wait (lrbench.store.outage)


@dataclass
class SlotReport:
    slot: Slot
    engine: str = "sequential"
    batch_trials: int = 1
    trials: int = 0
    failed: int = 0
    interrupted: bool = False
    recovered: list[int] = dataclasses.field(default_factory=list)  # dead workers' trials
    data_seconds: float = 0.0  # loading the data set onto the device, once per slot
    train_seconds: float = 0.0  # wall time inside the engine (a batch counts once)
    peak_rss_mb: float = 0.0  # the worker process's peak resident memory
    peak_gpu_mb: float = 0.0  # torch's peak allocated CUDA memory, on a GPU slot


def run_in_worker(job: SlotJob) -> SlotReport:
    """``lrbench.sweep.slot.run_slot``, imported in the process that runs it: what the
    parent submits, so that it never imports torch itself."""
    from lrbench.sweep.slot import run_slot

    return run_slot(job)

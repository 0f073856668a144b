"""Which engine a slot runs, and how many trials it stacks: ``--engine``/``--batch-trials``.

``auto`` picks the batched engine on a GPU, where one small model is launch-bound and
K stacked models run at nearly the cost of one, and on the CPU only where
benchmarks/bench_batched.py measured it faster than the sequential engine.

The engines (and torch) are imported by the functions that size a stack: the CLI reads
``ENGINES`` here without them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lrbench.sweep.devices import Slot

if TYPE_CHECKING:
    from lrbench.sweep.config import SweepConfig
    from lrbench.train.data import DeviceData

ENGINES = ("auto", "sequential", "batched")
CPU_AUTO_ENGINE = "batched"
# Trials in flight per slot when not given, for throughput. On a CPU a stack runs fastest
# while its weights stay in cache: K = 16 FNNs (5 MB of weights) reached most of the
# batched speed-up and K = 64 (20 MB) was slower (benchmarks/README.md). So a CPU slot
# stacks as many trials as fit CPU_STACK_BYTES of weights, between these bounds.
CPU_BATCH_TRIALS = 16
CPU_MAX_BATCH_TRIALS = 256
CPU_STACK_BYTES = 5 * 2**20
# On a GPU, the throughput curve is flat beyond this (benchmarks/README.md).
GPU_BATCH_TRIALS = 1024
# For feedback: at most this share of a slot's sampled trials is in flight at once.
BLIND_SHARE = 0.25


def resolve_engine(engine: str, slot: Slot) -> str:
    if engine != "auto":
        return engine
    return "batched" if slot.device.startswith("cuda") else CPU_AUTO_ENGINE


def batch_trials(requested: int | None, config: SweepConfig, slot: Slot, peers: int,
                 queued: int = 0, data: DeviceData | None = None) -> int:
    """K, the trials this slot keeps in flight: as asked, else sized for throughput and
    feedback.

    Throughput: what a CPU runs fastest (``cpu_batch_trials``), or what fits a GPU's
    memory up to GPU_BATCH_TRIALS. Feedback: TPE and the pruner learn only from finished
    trials, and the first K x slots trials of a sweep are asked with none, so sampled
    trials in flight are capped at BLIND_SHARE of the slot's share. ``queued`` trials
    (fixed trials, confirm runs, re-queued ones) are not sampled: all of them may stack.

    ``peers``: slots on the same kind of device (this one included); ``data``: the slot's,
    whose inputs and classes size the model. Runs in the worker: a GPU's free memory is
    only known once its process owns it.
    """
    if requested:
        return requested
    if slot.device.startswith("cuda"):
        import torch

        from lrbench.train.batched import max_trials_for_memory

        free, _ = torch.cuda.mem_get_info(slot.device)
        fits = max_trials_for_memory(config.model, config.batch_size, free,
                                     config.optimizer.name,
                                     *((data.num_classes, data.train_x[:1]) if data else ()))
        k = min(GPU_BATCH_TRIALS, max(1, fits))
    else:
        k = cpu_batch_trials(config.model, data.num_classes if data else 10)
    sampled = max(0, config.trials - queued)
    feedback = math.ceil(queued / peers) + math.ceil(BLIND_SHARE * sampled / peers)
    return max(1, min(k, feedback))


def cpu_batch_trials(model: str, num_classes: int = 10) -> int:
    """K for throughput on a CPU: the trials whose float32 weights fit CPU_STACK_BYTES
    (16 FNNs; 166 logistic regressions, whose tiny steps are mostly per-call overhead)."""
    from lrbench.train.stacked import parameter_count

    fits = CPU_STACK_BYTES // (4 * parameter_count(model, num_classes))
    return max(CPU_BATCH_TRIALS, min(CPU_MAX_BATCH_TRIALS, fits))


# The compiled SGD update pays off only for big stacks: at K=4,096 a step is bound by
# passes over the weights, below a few thousand trials per-call overhead wins (H200
# figures in the README's GPU table).
FUSED_MIN_TRIALS = 4096


def fuse_update(slot: Slot, trials: int) -> bool:
    """Whether a batch compiles its SGD update into one kernel: big stacks on a GPU."""
    return slot.device.startswith("cuda") and trials >= FUSED_MIN_TRIALS

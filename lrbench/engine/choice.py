"""Which engine a slot runs, and how many trials it stacks: ``--engine``/``--batch-trials``.

``auto`` picks the batched engine on a GPU, where one small model is launch-bound and
K stacked models run at nearly the cost of one, and on the CPU only where
benchmarks/bench_batched.py measured it faster than the sequential engine.
"""

from __future__ import annotations

import math

import torch

from lrbench.config import SweepConfig
from lrbench.devices import Slot
from lrbench.engine.batched import max_trials_for_memory

ENGINES = ("auto", "sequential", "batched")
CPU_AUTO_ENGINE = "batched"
# Trials per stacked model when not given. On a CPU, K = 16 already reaches most of the
# batched speed-up; more would mostly delay the pruner's and TPE's feedback.
CPU_BATCH_TRIALS = 16
# On a GPU, the throughput curve is flat beyond this (benchmarks/README.md).
GPU_BATCH_TRIALS = 1024
MIN_ROUNDS = 4  # batches each slot asks for, at least, when K is sized automatically


def resolve_engine(engine: str, slot: Slot) -> str:
    if engine != "auto":
        return engine
    return "batched" if slot.device.startswith("cuda") else CPU_AUTO_ENGINE


def batch_trials(requested: int | None, config: SweepConfig, slot: Slot, peers: int) -> int:
    """K for this slot: as asked, else what fits, capped so each slot asks MIN_ROUNDS times.

    ``peers``: slots on the same kind of device (this one included). Runs in the worker:
    a GPU's free memory is only known once its process owns it.
    """
    if requested:
        return requested
    if slot.device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(slot.device)
        fits = max_trials_for_memory(config.model, config.batch_size, free,
                                     config.optimizer.name)
        k = min(GPU_BATCH_TRIALS, max(1, fits))
    else:
        k = CPU_BATCH_TRIALS
    # At most a quarter of a slot's share: the sampler and the pruner learn only from
    # finished trials, and a sweep asked in one round is a random search that prunes nothing
    # (measured in the README's end-to-end batched table).
    return max(1, min(k, math.ceil(config.trials / (peers * MIN_ROUNDS))))


# The compiled SGD update pays off only for big stacks: at K=4,096 a step is bound by
# passes over the weights, below a few thousand trials per-call overhead wins (H200
# figures in the README's GPU table).
FUSED_MIN_TRIALS = 4096


def fuse_update(slot: Slot, trials: int) -> bool:
    """Whether a batch compiles its SGD update into one kernel: big stacks on a GPU."""
    return slot.device.startswith("cuda") and trials >= FUSED_MIN_TRIALS

"""Which engine a slot runs and how many trials it stacks (no GPU needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lrbench.sweep import choice
from lrbench.sweep import config as config_module
from lrbench.sweep.devices import Slot
from lrbench.train.batched import max_trials_for_memory

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
CPU, GPU = Slot(0, "cpu", 1), Slot(1, "cuda:0", 1)


def sweep(trials: int) -> config_module.SweepConfig:
    return dataclasses.replace(config_module.load(SWEEPS / "step.toml"), trials=trials)


def test_auto_is_batched_on_gpus_and_cpus_and_explicit_choices_stand() -> None:
    assert choice.resolve_engine("auto", GPU) == "batched"
    assert choice.resolve_engine("auto", CPU) == choice.CPU_AUTO_ENGINE == "batched"
    assert choice.resolve_engine("sequential", GPU) == "sequential"


@pytest.mark.parametrize("trials, slots, k", [
    (30, 2, 4),  # a quarter of each slot's share: ceil(0.25 x 30 / 2)
    (4, 2, 1),
    (128, 2, 16),  # the CPU default, reached
    (10_000, 2, 16),
])
def test_cpu_k_leaves_the_sampler_rounds_of_feedback(trials: int, slots: int, k: int) -> None:
    assert choice.batch_trials(None, sweep(trials), CPU, slots) == k


def test_cpu_k_stacks_what_fits_the_cache_budget() -> None:
    """16 FNNs (318 KB of weights each) fit 5 MiB; logistic regressions (31 KB) 166 of
    them; the CNN would fit 6, and gets the floor of 16."""
    assert choice.cpu_batch_trials("fnn") == 16
    assert choice.cpu_batch_trials("logreg") == 5 * 2**20 // (4 * (784 * 10 + 10)) == 166
    assert choice.cpu_batch_trials("cnn") == choice.CPU_BATCH_TRIALS
    big = dataclasses.replace(sweep(10_000), model="logreg")
    assert choice.batch_trials(None, big, CPU, 2) == 166


def test_requested_k_is_taken_as_given() -> None:
    assert choice.batch_trials(7, sweep(30), CPU, 2) == 7


def test_gpu_k_comes_from_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2 * 2**30, 80 * 2**30))
    # 2 GiB free holds a few hundred FNNs (weights, grads, momentum, activations)
    fits = max_trials_for_memory("fnn", 100, 2 * 2**30, "sgd")
    assert 100 < fits < choice.GPU_BATCH_TRIALS
    assert choice.batch_trials(None, sweep(100_000), GPU, 1) == fits
    assert choice.batch_trials(None, sweep(400), GPU, 1) == 100  # 4 rounds of 100


def test_only_big_gpu_stacks_fuse_their_update() -> None:
    assert choice.fuse_update(GPU, choice.FUSED_MIN_TRIALS)
    assert not choice.fuse_update(GPU, choice.FUSED_MIN_TRIALS - 1)
    assert not choice.fuse_update(CPU, 10_000)


def test_a_gpu_slot_shares_trials_only_with_gpu_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    from lrbench.sweep.run import _peers

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (80 * 2**30, 80 * 2**30))
    slots = [GPU] + [Slot(i, "cpu", 1) for i in range(2, 17)]  # --device auto on 16 cores
    assert _peers(slots[0], slots) == 1 and _peers(slots[1], slots) == 15
    config = sweep(1000)
    # The GPU slot's share is the whole sweep: 4 rounds of 250, not ceil(1000 / 64) = 16.
    assert choice.batch_trials(None, config, GPU, _peers(GPU, slots)) == 250
    assert choice.batch_trials(None, config, slots[1], _peers(slots[1], slots)) == 16

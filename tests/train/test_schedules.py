"""Tests for lrbench.train.schedules: every family against hand-written LR sequences.

In the style of PyTorch's own scheduler tests, each expected sequence is written out as
literal numbers, worked out by hand from the torch formula (base LRs of 1.0 or 0.1 keep
the arithmetic exact-ish); a comment beside each says how. Fast, CPU only, no data.
"""

from __future__ import annotations

import itertools
import math
import pickle
import warnings
from typing import Any

import pytest
import torch

from lrbench.space import Axis, Choice, FloatRange, IntRange
from lrbench.train.lr_schedule import LRSchedule, lr_trace
from lrbench.train.schedules import (
    FAMILIES,
    PARAM_LIMITS,
    WARMUP_START_FACTOR,
    Family,
    ScheduleContext,
    ScheduleSpec,
)

REL = 1e-6
STEPS = 3  # batches per epoch for the per-epoch families: enough to see the LR held


def approx(values: list[float]) -> Any:
    # abs covers the literal zeros (eta_min, end_factor); every other value is checked rel.
    return pytest.approx(values, rel=REL, abs=1e-12)


def per_epoch(trace: list[list[float]]) -> list[float]:
    """First-batch LR of each epoch, after checking the LR is held within every epoch."""
    for epoch, lrs in enumerate(trace):
        assert lrs == [lrs[0]] * len(lrs), f"LR changed within epoch {epoch}: {lrs}"
    return [lrs[0] for lrs in trace]


def flat(trace: list[list[float]]) -> list[float]:
    return [lr for lrs in trace for lr in lrs]


def epoch_trace(family: str, params: dict[str, Any], epochs: int, base_lr: float,
                **kw: Any) -> list[float]:
    ctx = ScheduleContext(epochs=epochs, steps_per_epoch=STEPS, **kw.pop("ctx", {}))
    return per_epoch(lr_trace(ScheduleSpec(family, params), ctx, base_lr, **kw))


# --- 1. every family against a hand-written sequence ---

# (family, params, epochs, base_lr, expected first-batch LR per epoch)
PER_EPOCH_CASES = [
    # constant: the base LR throughout.
    ("constant", {}, 3, 0.1, [0.1, 0.1, 0.1]),
    # schedule-free: no schedule either (its optimizer averages the weights instead); its
    # beta goes to the optimizer, not to the LR.
    ("schedulefree", {"momentum": 0.9}, 3, 2.0, [2.0, 2.0, 2.0]),
    # StepLR, the Deep Learning Wizard tutorial's three runs at base 0.1:
    # step_size=1, gamma=0.1: x0.1 every epoch.
    ("step", {"step_size": 1, "gamma": 0.1}, 5, 0.1, [0.1, 0.01, 0.001, 1e-4, 1e-5]),
    # step_size=2, gamma=0.1: x0.1 at epochs 2 and 4.
    ("step", {"step_size": 2, "gamma": 0.1}, 5, 0.1, [0.1, 0.1, 0.01, 0.01, 0.001]),
    # step_size=2, gamma=0.96: 0.1*0.96 = 0.096, 0.096*0.96 = 0.09216.
    ("step", {"step_size": 2, "gamma": 0.96}, 5, 0.1, [0.1, 0.1, 0.096, 0.096, 0.09216]),
    # step_size=3 over 4 epochs: one decay, at epoch 3.
    ("step", {"step_size": 3, "gamma": 0.5}, 4, 1.0, [1.0, 1.0, 1.0, 0.5]),
    # MultiStepLR, milestones 2 and 4, gamma 0.5: halved at epochs 2 and 4.
    ("multistep", {"milestone_1": 2, "milestone_2": 4, "gamma": 0.5}, 6, 1.0,
     [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]),
    # The milestones are sorted, so their order in the params does not matter.
    ("multistep", {"milestone_1": 4, "milestone_2": 2, "gamma": 0.5}, 6, 1.0,
     [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]),
    # Equal milestones are deduplicated (a set): one decay at epoch 3, not gamma^2.
    ("multistep", {"milestone_1": 3, "milestone_2": 3, "gamma": 0.1}, 5, 1.0,
     [1.0, 1.0, 1.0, 0.1, 0.1]),
    # ExponentialLR, gamma 0.5: 0.5^t.
    ("exponential", {"gamma": 0.5}, 4, 1.0, [1.0, 0.5, 0.25, 0.125]),
    # ExponentialLR, gamma 0.9 at base 0.1: 0.1 * 0.9^t.
    ("exponential", {"gamma": 0.9}, 4, 0.1, [0.1, 0.09, 0.081, 0.0729]),
    # CosineAnnealingLR, T_max = epochs = 4, eta_min 0: (1 + cos(pi t / 4)) / 2;
    # cos(pi/4) = 0.70710678 -> 0.85355339, cos(3pi/4) -> 0.14644661.
    ("cosine", {"eta_min_ratio": 0.0}, 4, 1.0, [1.0, 0.85355339, 0.5, 0.14644661]),
    # Same with eta_min = 0.1 * base: 0.1 + 0.9 * (the above).
    ("cosine", {"eta_min_ratio": 0.1}, 4, 1.0, [1.0, 0.86819805, 0.55, 0.23180195]),
    # eta_min is relative to the base LR: base 0.1, eta_min 0.01, T_max 2 -> 0.01 + 0.09/2.
    ("cosine", {"eta_min_ratio": 0.1}, 2, 0.1, [0.1, 0.055]),
    # CosineAnnealingWarmRestarts, T_0 2, T_mult 1, eta_min 0: T_cur = 0, 1, 0, 1, ...;
    # T_cur 1 of 2 -> (1 + cos(pi/2)) / 2 = 0.5.
    ("cosine_restarts", {"t_0": 2, "t_mult": 1, "eta_min_ratio": 0.0}, 6, 1.0,
     [1.0, 0.5, 1.0, 0.5, 1.0, 0.5]),
    # T_0 1, T_mult 2: periods 1, 2, 4 start at epochs 0, 1, 3; within the period of 4,
    # T_cur/T_i = 1/4, 2/4, 3/4 -> 0.85355339, 0.5, 0.14644661.
    ("cosine_restarts", {"t_0": 1, "t_mult": 2, "eta_min_ratio": 0.0}, 7, 1.0,
     [1.0, 1.0, 0.5, 1.0, 0.85355339, 0.5, 0.14644661]),
    # T_0 2, T_mult 1, eta_min 0.5 * base: mid-period 0.5 + 0.5 * 0.5 = 0.75.
    ("cosine_restarts", {"t_0": 2, "t_mult": 1, "eta_min_ratio": 0.5}, 4, 1.0,
     [1.0, 0.75, 1.0, 0.75]),
    # LinearLR from 1.0 to end_factor over T = epochs = 4: 1 - t/4 (end 0 is never reached).
    ("linear", {"end_factor": 0.0}, 4, 1.0, [1.0, 0.75, 0.5, 0.25]),
    # end_factor 0.5 over 5 epochs: 1 - 0.5 t / 5 = 1 - 0.1 t.
    ("linear", {"end_factor": 0.5}, 5, 1.0, [1.0, 0.9, 0.8, 0.7, 0.6]),
    # PolynomialLR over T = epochs = 4: (1 - t/4)^power.
    ("polynomial", {"power": 1.0}, 4, 1.0, [1.0, 0.75, 0.5, 0.25]),
    ("polynomial", {"power": 2.0}, 4, 1.0, [1.0, 0.5625, 0.25, 0.0625]),
    # power 0.5: sqrt(0.75) = 0.8660254, sqrt(0.5) = 0.70710678, sqrt(0.25) = 0.5.
    ("polynomial", {"power": 0.5}, 4, 1.0, [1.0, 0.8660254, 0.70710678, 0.5]),
]


@pytest.mark.parametrize(("family", "params", "epochs", "base_lr", "expected"),
                         PER_EPOCH_CASES)
def test_per_epoch_family_matches_hand_sequence(family: str, params: dict[str, Any],
                                                epochs: int, base_lr: float,
                                                expected: list[float]) -> None:
    assert epoch_trace(family, params, epochs, base_lr) == approx(expected)


def test_every_family_has_a_hand_written_case() -> None:
    covered = {case[0] for case in PER_EPOCH_CASES} | {"plateau", "onecycle", "cyclic"}
    covered |= {case[0] for case in MODERN_CASES}
    assert covered == set(FAMILIES)


# 2026's families, per batch over 2 epochs x 4 batches (T = 8), base LR 1: batch b at
# progress z = b / 8 (each family's formula and reference are in schedules.py).
MODERN_CASES = [
    # WSD, the last half a linear cooldown to 0: x = (z - 0.5) / 0.5 for b = 4..7.
    ("wsd", {"decay_fraction": 0.5, "shape": "linear", "final_lr_ratio": 0.0},
     [1, 1, 1, 1, 1.0, 0.75, 0.5, 0.25]),
    # cosine cooldown to 0.1: 0.1 + 0.9 (1 + cos(pi x)) / 2 at x = 0, 1/4, 1/2, 3/4.
    ("wsd", {"decay_fraction": 0.5, "shape": "cosine", "final_lr_ratio": 0.1},
     [1, 1, 1, 1, 1.0, 0.86819805, 0.55, 0.23180195]),
    # 1-sqrt cooldown: 1 - sqrt(x).
    ("wsd", {"decay_fraction": 0.5, "shape": "1-sqrt", "final_lr_ratio": 0.0},
     [1, 1, 1, 1, 1.0, 0.5, 0.29289322, 0.13397460]),
    # inverse sqrt, a 2-batch ramp and timescale 2 (= the ramp: the Transformer's rule):
    # t = 1 at 1/2, then sqrt(2 / t) for t = 2..8.
    ("inverse_sqrt", {"ramp_epochs": 0.5, "timescale_epochs": 0.5},
     [0.5, 1.0, 0.81649658, 0.70710678, 0.63245553, 0.57735027, 0.53452248, 0.5]),
    # ... a timescale of 8 batches falls slower: 1 / sqrt(1 + (t - 2) / 8).
    ("inverse_sqrt", {"ramp_epochs": 0.5, "timescale_epochs": 2.0},
     [0.5, 1.0, 0.94280904, 0.89442719, 0.85280287, 0.81649658, 0.78446454, 0.75592895]),
    # REX, the paper's beta 1/2: 2 (1 - z) / (2 - z).
    ("rex", {"beta": 0.5},
     [1.0, 0.93333333, 0.85714286, 0.76923077, 0.66666667, 0.54545455, 0.4, 0.22222222]),
    # decay to zero, linear (D2Z): 1 - z; and squared: (1 - z)^2.
    ("decay_to_zero", {"power": 1.0}, [1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]),
    ("decay_to_zero", {"power": 2.0},
     [1, 0.765625, 0.5625, 0.390625, 0.25, 0.140625, 0.0625, 0.015625]),
]


@pytest.mark.parametrize(("family", "params", "expected"), MODERN_CASES)
def test_modern_family_matches_hand_sequence(family: str, params: dict[str, Any],
                                             expected: list[float]) -> None:
    assert FAMILIES[family].per_batch  # these shapes move within an epoch
    trace = lr_trace(ScheduleSpec(family, params), ScheduleContext(2, 4), 1.0)
    assert flat(trace) == approx(expected)


def test_decay_to_zero_reaches_exactly_zero_after_the_last_batch() -> None:
    """D2Z: unlike per-epoch ``linear``, whose last epoch still trains at a fraction of
    the base LR, the LR is exactly 0 once the last batch has stepped."""
    for family, params in (("decay_to_zero", {"power": 1.0}), ("decay_to_zero", {"power": 2.0}),
                           ("wsd", {"decay_fraction": 0.3, "shape": "linear",
                                    "final_lr_ratio": 0.0})):
        weight = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([weight], lr=0.1)
        schedule = LRSchedule(optimizer, ScheduleSpec(family, params), ScheduleContext(3, 5))
        for _ in range(15):
            optimizer.step()
            schedule.after_batch()
        assert schedule.lr == 0.0, family


# ReduceLROnPlateau: a reduction decided by epoch t's metric shows from epoch t + 1. A
# metric is "better" only beyond the default relative threshold 1e-4, so a repeat is bad.
PLATEAU_CASES = [
    # The tutorial's case: mode max, factor 0.1, patience 0, base 0.1. Accuracy 80, 85
    # improve; 85 (a repeat) and 84 are bad -> x0.1 after each; 90 improves; the last
    # 90 is bad, but its reduction would show only after the run.
    ("accuracy", 0.1, 0, 0.1, [80, 85, 85, 84, 90, 90], [0.1, 0.1, 0.1, 0.01, 0.001, 0.001]),
    # mode max, factor 0.5, patience 1: two bad epochs in a row (60, 55) halve the LR
    # after the second; then 70 improves, 65, 65 are bad -> halved again after the run.
    ("accuracy", 0.5, 1, 1.0, [50, 60, 60, 55, 70, 65, 65], [1, 1, 1, 1, 0.5, 0.5, 0.5]),
    # mode min, factor 0.1, patience 0, base 0.1: losses 0.5, 0.4 improve, 0.45 is bad
    # -> 0.01; 0.3 improves; the repeated 0.3 is bad (shows after the run).
    ("loss", 0.1, 0, 0.1, [0.5, 0.4, 0.45, 0.3, 0.3], [0.1, 0.1, 0.1, 0.01, 0.01]),
    # mode min, factor 0.5, patience 1: 0.9, 0.85 bad twice -> 0.5 from epoch 4; 0.7
    # improves; 0.75, 0.76 bad twice -> 0.25 from epoch 7; the counter restarts after.
    ("loss", 0.5, 1, 1.0, [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.76, 0.77],
     [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25]),
]


@pytest.mark.parametrize(("metric", "factor", "patience", "base_lr", "metrics", "expected"),
                         PLATEAU_CASES)
def test_plateau_matches_hand_sequence(metric: str, factor: float, patience: int,
                                       base_lr: float, metrics: list[float],
                                       expected: list[float]) -> None:
    params = {"factor": factor, "patience": patience}
    lrs = epoch_trace("plateau", params, len(metrics), base_lr, metrics=metrics,
                      ctx={"plateau_metric": metric})
    assert lrs == approx(expected)


def test_plateau_mode_follows_the_metric() -> None:
    # A rising metric improves in mode max (accuracy) and worsens in mode min (loss):
    # the first value only sets the best, so the loss run halves from epoch 2.
    rising = [1.0, 2.0, 3.0, 4.0]
    params = {"factor": 0.5, "patience": 0}
    acc = epoch_trace("plateau", params, 4, 1.0, metrics=rising, ctx={"plateau_metric": "accuracy"})
    loss = epoch_trace("plateau", params, 4, 1.0, metrics=rising, ctx={"plateau_metric": "loss"})
    assert acc == approx([1.0, 1.0, 1.0, 1.0])
    assert loss == approx([1.0, 1.0, 0.5, 0.25])


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_plateau_without_metrics_never_triggers(metric: str) -> None:
    lrs = epoch_trace("plateau", {"factor": 0.5, "patience": 0}, 4, 1.0,
                      ctx={"plateau_metric": metric})
    assert lrs == approx([1.0, 1.0, 1.0, 1.0])


# Per-batch families, epochs=2 x steps_per_epoch=4 = 8 batches, base 1.0.
PER_BATCH_CASES = [
    # OneCycleLR, anneal cos, total 8, max_lr 1.0, initial_lr = 1.0/10 = 0.1,
    # min_lr = 0.1/1e4 = 1e-5. Phase 1 ends at step 0.5*8 - 1 = 3: s = 0..3 at pct s/3,
    # lr = 1 + (0.1 - 1)/2 (1 + cos(pi pct)): 0.1, 0.325, 0.775, 1.0. Phase 2 ends at 7:
    # s = 4..7 at pct (s - 3)/4, lr = 1e-5 + (1 - 1e-5)/2 (1 + cos(pi pct)):
    # 0.85355486, 0.500005, 0.14645514, 1e-5.
    ("onecycle", {"max_lr_ratio": 1.0, "pct_start": 0.5, "div_factor": 10.0},
     [0.1, 0.325, 0.775, 1.0, 0.85355486, 0.500005, 0.14645514, 1e-5]),
    # max_lr_ratio 2, div 4: initial 0.5, max 2.0, min 5e-5; pct_start 0.25 -> phase 1
    # ends at step 1: 0.5, 2.0. Phase 2 over steps 1..7 at pct (s - 1)/6, cos(pi/6) =
    # 0.8660254, cos(pi/3) = 0.5: lr = 5e-5 + (2 - 5e-5)/2 (1 + cos): 1.86602875,
    # 1.5000125, 1.000025, 0.5000375, 0.13402125, 5e-5.
    ("onecycle", {"max_lr_ratio": 2.0, "pct_start": 0.25, "div_factor": 4.0},
     [0.5, 2.0, 1.86602875, 1.5000125, 1.000025, 0.5000375, 0.13402125, 5e-5]),
    # CyclicLR triangular, max 1.0, base 0.2, step_size_up = round(0.5 * 4) = 2: the LR
    # climbs 0.8/2 = 0.4 a batch to 1.0, then falls back, period 4.
    ("cyclic", {"base_lr_ratio": 0.2, "half_cycle_epochs": 0.5, "mode": "triangular"},
     [0.2, 0.6, 1.0, 0.6, 0.2, 0.6, 1.0, 0.6]),
    # triangular2 halves the amplitude each cycle: the second cycle peaks at 0.2 + 0.4.
    ("cyclic", {"base_lr_ratio": 0.2, "half_cycle_epochs": 0.5, "mode": "triangular2"},
     [0.2, 0.6, 1.0, 0.6, 0.2, 0.4, 0.6, 0.4]),
    # half_cycle_epochs 1 -> step_size_up 4: 0.2 a batch up to 1.0, then down.
    ("cyclic", {"base_lr_ratio": 0.2, "half_cycle_epochs": 1.0, "mode": "triangular"},
     [0.2, 0.4, 0.6, 0.8, 1.0, 0.8, 0.6, 0.4]),
]


@pytest.mark.parametrize(("family", "params", "expected"), PER_BATCH_CASES)
def test_per_batch_family_matches_hand_sequence(family: str, params: dict[str, Any],
                                                expected: list[float]) -> None:
    trace = lr_trace(ScheduleSpec(family, params), ScheduleContext(2, 4), 1.0)
    assert flat(trace) == approx(expected)
    for lrs in trace:  # stepped per batch: the LR moves within each epoch
        assert len(set(lrs)) > 1


def test_onecycle_runs_its_full_horizon_per_batch() -> None:
    # total_steps = epochs * steps_per_epoch: the last batch sits at min_lr, no raise.
    params = {"max_lr_ratio": 1.0, "pct_start": 0.3, "div_factor": 25.0}
    lrs = flat(lr_trace(ScheduleSpec("onecycle", params), ScheduleContext(3, 7), 1.0))
    assert len(lrs) == 21
    assert lrs[0] == pytest.approx(0.04, rel=REL)  # 1.0 / 25
    # The peak falls between batches (0.3 * 21 - 1 = 5.3), so it is approached, not hit.
    assert 0.99 < max(lrs) <= 1.0
    assert lrs[-1] == pytest.approx(0.04 / 1e4, rel=REL)


# --- 2. warm-up ---

WARMUP_CASES = [
    # step (x0.5 every epoch) after 1 warm-up epoch of 2 batches: the ramp goes from
    # 0.1 * 1.0 by (1 - 0.1)/2 = 0.45 a batch: 0.1, 0.55; then StepLR's epoch 0 is
    # epoch 1 (1.0), and it halves from epoch 2 on.
    ("step", {"step_size": 1, "gamma": 0.5}, 1, 4, 2, None,
     [0.1, 0.55, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]),
    # cosine after 2 warm-up epochs (4 batches): ramp 0.1 + 0.9 i/4 = 0.1, 0.325, 0.55,
    # 0.775; cosine's horizon is the remaining 2 epochs: 1.0, then (1 + cos(pi/2))/2 = 0.5.
    ("cosine", {"eta_min_ratio": 0.0}, 2, 4, 2, None,
     [0.1, 0.325, 0.55, 0.775, 1.0, 1.0, 0.5, 0.5]),
    # linear (end 0) after 1 warm-up epoch: horizon 3 epochs -> 1, 2/3, 1/3.
    ("linear", {"end_factor": 0.0}, 1, 4, 2, None,
     [0.1, 0.55, 1.0, 1.0, 0.66666667, 0.66666667, 0.33333333, 0.33333333]),
    # plateau (max, x0.5, patience 0) after 1 warm-up epoch: the warm-up epoch's metric
    # (99) is ignored; were it not, 50 would be a bad epoch and halve the LR at epoch 2.
    # 50 then 40 (bad) -> 0.5 from epoch 3; 60 improves; 55's cut shows after the run.
    ("plateau", {"factor": 0.5, "patience": 0}, 1, 5, 2, [99, 50, 40, 60, 55],
     [0.1, 0.55, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]),
    # onecycle after 1 warm-up epoch of 4 batches: the ramp climbs to OneCycle's initial
    # lr 1.0/10 = 0.1: 0.01 + 0.09 i/4 = 0.01, 0.0325, 0.055, 0.0775; OneCycle then runs
    # over (3 - 1) * 4 = 8 batches, the same 8 values as without warm-up at epochs=2.
    ("onecycle", {"max_lr_ratio": 1.0, "pct_start": 0.5, "div_factor": 10.0}, 1, 3, 4, None,
     [0.01, 0.0325, 0.055, 0.0775,
      0.1, 0.325, 0.775, 1.0, 0.85355486, 0.500005, 0.14645514, 1e-5]),
    # cyclic after 1 warm-up epoch of 2 batches: the ramp climbs to Cyclic's lower bound
    # 0.2: 0.02, 0.11; then the triangle with step_size_up round(1.0 * 2) = 2.
    ("cyclic", {"base_lr_ratio": 0.2, "half_cycle_epochs": 1.0, "mode": "triangular"},
     1, 3, 2, None, [0.02, 0.11, 0.2, 0.6, 1.0, 0.6]),
]


@pytest.mark.parametrize(
    ("family", "params", "warmup", "epochs", "steps", "metrics", "expected"), WARMUP_CASES)
def test_warmup_then_main_schedule(family: str, params: dict[str, Any], warmup: int,
                                   epochs: int, steps: int, metrics: list[float] | None,
                                   expected: list[float]) -> None:
    spec = ScheduleSpec(family, params, warmup_epochs=warmup)
    trace = lr_trace(spec, ScheduleContext(epochs, steps), 1.0, metrics=metrics)
    assert flat(trace) == approx(expected)
    if not FAMILIES[family].per_batch:  # after the warm-up, per-epoch again
        per_epoch(trace[warmup:])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_warmup_ramps_linearly_to_the_main_start(family: str) -> None:
    # Whatever the family, the ramp starts at WARMUP_START_FACTOR x the LR the main
    # schedule starts at and rises by equal steps, reaching it on the first batch after.
    params = _midpoints(FAMILIES[family].default_space(6))
    ctx = ScheduleContext(6, 5)
    start = lr_trace(ScheduleSpec(family, params), ScheduleContext(4, 5), 0.1)[0][0]
    lrs = flat(lr_trace(ScheduleSpec(family, params, warmup_epochs=2), ctx, 0.1))
    ramp = [start * (WARMUP_START_FACTOR + (1 - WARMUP_START_FACTOR) * i / 10)
            for i in range(10)]
    assert lrs[:10] == approx(ramp)
    assert lrs[10] == pytest.approx(start, rel=REL)


# --- 3. every default space builds a working schedule ---


def _values(axis: Axis) -> list[Any]:
    """Both bounds and the midpoint (geometric on a log axis) of a range; every choice."""
    if isinstance(axis, Choice):
        return list(axis.choices)
    if isinstance(axis, IntRange):
        return sorted({axis.low, (axis.low + axis.high) // 2, axis.high})
    mid = math.sqrt(axis.low * axis.high) if axis.log else (axis.low + axis.high) / 2
    return sorted({axis.low, mid, axis.high})


def _midpoints(space: dict[str, Axis]) -> dict[str, Any]:
    return {name: _values(axis)[len(_values(axis)) // 2] for name, axis in space.items()}


def _grid(space: dict[str, Axis]) -> list[dict[str, Any]]:
    names = list(space)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(_values(space[n]) for n in names))]


# Families whose LR may legitimately reach 0: eta_min_ratio / end_factor can be 0.
MAY_REACH_ZERO = {"linear"}


@pytest.mark.parametrize("epochs", [1, 2, 5, 10])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_default_space_builds(family: str, epochs: int) -> None:
    space = FAMILIES[family].default_space(epochs)
    warmups = [0, 1] if epochs > 1 else [0]
    # 3 batches per epoch: OneCycle divides by (pct_start * total - 1), which must not
    # be 0 (see test_onecycle_tiny_horizon_divides_by_zero); no grid point hits it here.
    ctx = ScheduleContext(epochs, 3)
    for params, warmup in itertools.product(_grid(space), warmups):
        spec = ScheduleSpec(family, params, warmup_epochs=warmup)
        metrics = [float(i % 3) for i in range(epochs)]  # plateaus now and then
        lrs = flat(lr_trace(spec, ctx, 0.1, metrics=metrics))
        assert len(lrs) == epochs * 3
        assert all(math.isfinite(lr) for lr in lrs), (spec, lrs)
        if family in MAY_REACH_ZERO:
            assert all(lr >= 0 for lr in lrs), (spec, lrs)
        else:
            assert all(lr > 0 for lr in lrs), (spec, lrs)


def test_onecycle_tiny_horizon_divides_by_zero() -> None:
    # Documents a torch limit, not an lrbench choice: OneCycleLR's first phase spans
    # pct_start * total_steps - 1 steps, and 0.5 * 2 - 1 = 0 divides by zero on step 0.
    # Only tiny runs (pct_start * epochs * steps_per_epoch == 1) can hit it.
    params = {"max_lr_ratio": 1.0, "pct_start": 0.5, "div_factor": 10.0}
    with pytest.raises(ZeroDivisionError):
        lr_trace(ScheduleSpec("onecycle", params), ScheduleContext(1, 2), 1.0)


# --- 4. parameter limits ---


def _all_spaces() -> list[tuple[str, int, str, Axis]]:
    return [(family.name, epochs, name, axis)
            for family in FAMILIES.values() for epochs in (1, 2, 5, 10, 100)
            for name, axis in family.default_space(epochs).items()]


def test_param_limits_cover_every_default_parameter() -> None:
    names = {name for _, _, name, _ in _all_spaces()}
    assert names - set(PARAM_LIMITS) == set()


@pytest.mark.parametrize(("family", "epochs", "name", "axis"), _all_spaces(),
                         ids=lambda v: v if isinstance(v, (str, int)) else "")
def test_default_axis_within_limits(family: str, epochs: int, name: str, axis: Axis) -> None:
    ok, says = PARAM_LIMITS[name]
    for value in _values(axis):
        assert ok(value), f"{family}.{name}={value} at epochs={epochs} is not {says}"


@pytest.mark.parametrize("epochs", [1, 2, 5, 10])
def test_integer_axes_are_integer_ranges(epochs: int) -> None:
    # torch wants ints for step_size, milestones, T_0, T_mult, patience.
    for family in FAMILIES.values():
        for name, axis in family.default_space(epochs).items():
            if name in {"step_size", "milestone_1", "milestone_2", "t_0", "t_mult", "patience"}:
                assert isinstance(axis, IntRange), (family.name, name)
            elif name in {"mode", "shape"}:  # categorical choices
                assert isinstance(axis, Choice), (family.name, name)
            else:
                assert isinstance(axis, FloatRange), (family.name, name)


# --- 5. picklable: families, specs and contexts cross into worker processes ---


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_pickles_and_still_builds(name: str) -> None:
    family = pickle.loads(pickle.dumps(FAMILIES[name]))
    assert isinstance(family, Family)
    assert family == FAMILIES[name]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    params = _midpoints(family.default_space(5))
    scheduler = family.build(opt, params, ScheduleContext(5, 3))
    if name in ("constant", "schedulefree"):  # no LR schedule
        assert scheduler is None
    else:
        assert isinstance(scheduler, (torch.optim.lr_scheduler.LRScheduler,
                                      torch.optim.lr_scheduler.ReduceLROnPlateau))


def test_spec_and_context_pickle() -> None:
    spec = ScheduleSpec("step", {"step_size": 2, "gamma": 0.5}, warmup_epochs=1)
    ctx = ScheduleContext(epochs=4, steps_per_epoch=2, plateau_metric="loss")
    spec2, ctx2 = pickle.loads(pickle.dumps((spec, ctx)))
    assert (spec2, ctx2) == (spec, ctx)
    assert lr_trace(spec2, ctx2, 1.0) == lr_trace(spec, ctx, 1.0)


# --- 6. LRSchedule in a real training loop ---

REAL_LOOP_CASES = [
    (ScheduleSpec("step", {"step_size": 1, "gamma": 0.5}, warmup_epochs=1), "accuracy"),
    (ScheduleSpec("cosine", {"eta_min_ratio": 0.01}), "accuracy"),
    (ScheduleSpec("plateau", {"factor": 0.5, "patience": 0}, warmup_epochs=1), "loss"),
    (ScheduleSpec("plateau", {"factor": 0.1, "patience": 0}), "accuracy"),
    (ScheduleSpec("onecycle", {"max_lr_ratio": 2.0, "pct_start": 0.3, "div_factor": 10.0},
                  warmup_epochs=1), "accuracy"),
    (ScheduleSpec("cyclic", {"base_lr_ratio": 0.1, "half_cycle_epochs": 0.5,
                             "mode": "triangular2"}), "accuracy"),
]


@pytest.mark.parametrize(("spec", "plateau_metric"), REAL_LOOP_CASES,
                         ids=lambda v: getattr(v, "family", v))
def test_real_training_loop_matches_lr_trace(spec: ScheduleSpec, plateau_metric: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    x, y = torch.randn(16, 2), torch.randn(16, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ctx = ScheduleContext(epochs=4, steps_per_epoch=4, plateau_metric=plateau_metric)
    # Fixed validation figures, so lr_trace can be fed the same ones.
    accuracies, losses = [0.5, 0.6, 0.55, 0.7], [1.0, 0.9, 0.95, 0.8]
    metrics = accuracies if plateau_metric == "accuracy" else losses
    expected = lr_trace(spec, ctx, 0.05, metrics=metrics)

    schedule = LRSchedule(optimizer, spec, ctx)
    seen = []
    with warnings.catch_warnings():
        # torch warns if a scheduler steps before the optimizer: that must not happen.
        warnings.simplefilter("error", UserWarning)
        for epoch in range(ctx.epochs):
            lrs = []
            for batch in range(ctx.steps_per_epoch):
                lrs.append(optimizer.param_groups[0]["lr"])
                assert schedule.lr == lrs[-1]
                xb, yb = x[batch * 4:(batch + 1) * 4], y[batch * 4:(batch + 1) * 4]
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(xb), yb).backward()
                optimizer.step()
                schedule.after_batch()
            seen.append(lrs)
            schedule.after_epoch(val_accuracy=accuracies[epoch], val_loss=losses[epoch])
    assert flat(seen) == approx(flat(expected))
    assert all(math.isfinite(p.detach().sum().item()) for p in model.parameters())

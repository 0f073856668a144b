"""The registry of learning-rate schedule families.

Each family knows three things: its default search space, how to build its torch
scheduler from sampled parameters, and whether it steps per batch or per epoch.
``lrbench.train.lr_schedule`` drives a built scheduler inside the training loop.

Reading the registry imports no torch (about 1.4 s): the report, ``lrbench list`` and
the sweep file's checks read names, spaces and limits only. A builder imports torch's
schedulers when it is first called.

Ranges are relative to the base LR where the torch argument is an absolute LR
(``eta_min``, OneCycle's ``max_lr``, Cyclic's ``base_lr``), so searching the base LR
moves the whole schedule with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lrbench.space import Axis, Choice, FloatRange, IntRange

if TYPE_CHECKING:
    import torch

# Warm-up ramps linearly from this fraction of the LR the main schedule starts at.
WARMUP_START_FACTOR = 0.1
# The family whose trials train with the schedule-free form of the study's optimizer
# (lrbench.train.optimizers) instead of following a schedule.
SCHEDULE_FREE_FAMILY = "schedulefree"


@dataclass(frozen=True)
class ScheduleContext:
    """What a builder needs beyond the sampled parameters."""

    epochs: int
    steps_per_epoch: int
    plateau_metric: str = "accuracy"  # "accuracy" (mode max) or "loss" (mode min)


@dataclass(frozen=True)
class ScheduleSpec:
    """One trial's schedule: family, its parameters, and the warm-up prefix."""

    family: str
    params: Mapping[str, Any] = field(default_factory=dict)
    warmup_epochs: int = 0


Builder = Callable[["torch.optim.Optimizer", Mapping[str, Any], ScheduleContext], Any]
Limit = tuple[Callable[[Any], bool], str]  # a parameter's test, and what it expects, in words


@dataclass(frozen=True)
class Family:
    """A schedule family: everything lrbench needs of it, in one declaration.

    The sweep file's checks, both engines, the sampler's space and the report's figures
    all read it from ``FAMILIES`` (built-ins below; ``register`` adds one).
    """

    name: str
    summary: str
    per_batch: bool
    default_space: Callable[[int], dict[str, Axis]]  # epochs -> axes
    build: Builder  # returns a torch scheduler, or None for a constant LR
    # Limits of its own parameters that PARAM_LIMITS does not already give by name
    limits: Mapping[str, Limit] = field(default_factory=dict)
    colour: str | None = None  # a colour for its figures ("#rrggbb"); None: the next free one


def _base_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


# --- builders: module-level functions, so a Family pickles into worker processes ---


def _sched() -> ModuleType:
    """torch's schedulers, imported by the first build rather than with the registry."""
    from torch.optim import lr_scheduler

    return lr_scheduler


def _constant(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> None:
    return None


def _step(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return _sched().StepLR(opt, step_size=p["step_size"], gamma=p["gamma"])


def _multistep(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    milestones = sorted({p["milestone_1"], p["milestone_2"]})
    return _sched().MultiStepLR(opt, milestones=milestones, gamma=p["gamma"])


def _exponential(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return _sched().ExponentialLR(opt, gamma=p["gamma"])


def _cosine(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    eta_min = _base_lr(opt) * p["eta_min_ratio"]
    return _sched().CosineAnnealingLR(opt, T_max=ctx.epochs, eta_min=eta_min)


def _cosine_restarts(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    eta_min = _base_lr(opt) * p["eta_min_ratio"]
    return _sched().CosineAnnealingWarmRestarts(opt, T_0=p["t_0"], T_mult=p["t_mult"],
                                                eta_min=eta_min)


def _plateau(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    mode = "max" if ctx.plateau_metric == "accuracy" else "min"
    return _sched().ReduceLROnPlateau(opt, mode=mode, factor=p["factor"], patience=p["patience"])


def _onecycle(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    # Momentum cycling is off: lrbench compares LR schedules, so momentum stays fixed.
    return _sched().OneCycleLR(
        opt,
        max_lr=_base_lr(opt) * p["max_lr_ratio"],
        total_steps=ctx.epochs * ctx.steps_per_epoch,
        pct_start=p["pct_start"],
        div_factor=p["div_factor"],
        cycle_momentum=False,
    )


def _cyclic(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    top = _base_lr(opt)
    return _sched().CyclicLR(
        opt,
        base_lr=top * p["base_lr_ratio"],
        max_lr=top,
        step_size_up=max(1, round(p["half_cycle_epochs"] * ctx.steps_per_epoch)),
        mode=p["mode"],
        cycle_momentum=False,
    )


def _linear(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return _sched().LinearLR(opt, start_factor=1.0, end_factor=p["end_factor"],
                             total_iters=ctx.epochs)


def _polynomial(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return _sched().PolynomialLR(opt, total_iters=ctx.epochs, power=p["power"])


# --- 2026's schedules: multipliers of the base LR per batch, through LambdaLR ---
#
# Each is a function of training progress measured in batches of the main schedule
# (warm-up excluded: LRSchedule runs it first, from the shared warmup_epochs axis).
# LambdaLR calls the multiplier with the number of steps taken, 0 for the first batch,
# so batch b of T trains at base_lr * f(b / T): the last batch at f((T - 1) / T).

COOLDOWN_SHAPES = ("linear", "cosine", "1-sqrt")


def wsd_factor(progress: float, decay_fraction: float, shape: str, final_ratio: float) -> float:
    """Warmup-stable-decay's multiplier after its warm-up: 1 through the stable phase,
    then a cooldown over the last ``decay_fraction`` of training to ``final_ratio``.

    Cooldown shapes as compared by Hägele et al. 2024, "Scaling Laws and Compute-Optimal
    Training Beyond Fixed Training Durations" (arXiv:2405.18392), for x the cooldown's
    progress in [0, 1]: linear 1 - x, cosine (1 + cos(pi x)) / 2, and 1-sqrt 1 - sqrt(x).
    """
    start = 1.0 - decay_fraction
    if progress < start or decay_fraction <= 0:
        return 1.0
    x = min(1.0, (progress - start) / decay_fraction)
    if shape == "linear":
        fall = 1.0 - x
    elif shape == "cosine":
        fall = 0.5 * (1.0 + math.cos(math.pi * x))
    elif shape == "1-sqrt":
        fall = 1.0 - math.sqrt(x)
    else:
        raise ValueError(f"unknown cooldown shape {shape!r}; known: {COOLDOWN_SHAPES}")
    return final_ratio + (1.0 - final_ratio) * fall


def inverse_sqrt_factor(step: int, warmup_steps: int, timescale: float) -> float:
    """Inverse square root with its own linear warm-up, at 1-based step t = step + 1:
    t / warmup_steps while t < warmup_steps, then 1 / sqrt(1 + (t - warmup_steps) / timescale).

    With ``timescale = warmup_steps`` this is exactly the Transformer's rule,
    d^-0.5 min(t^-0.5, t warmup^-1.5) (Vaswani et al. 2017, "Attention Is All You Need",
    eq. 3), normalised to 1 at its peak t = warmup: min(t / warmup, sqrt(warmup / t)). The
    timescale decouples how fast the LR falls from how long it ramps (big_vision's "rsqrt"
    schedule has the same form).
    """
    t = step + 1
    if t < warmup_steps:
        return t / warmup_steps
    return 1.0 / math.sqrt(1.0 + (t - warmup_steps) / timescale)


def rex_factor(progress: float, beta: float) -> float:
    """REX, the reflected-exponential profile: (1 - z) / ((1 - beta) + beta (1 - z)) at
    progress z. beta = 1/2 is the paper's (Chen, Wolfe and Kyrillidis 2022, "REX:
    Revisiting Budgeted Training with an Improved Schedule", arXiv:2107.04197, eq. 2:
    (1 - z) / (1/2 + (1 - z) / 2)); other betas are init2winit's generalisation of it."""
    remaining = 1.0 - progress
    return remaining / ((1.0 - beta) + beta * remaining)


def decay_to_zero_factor(progress: float, power: float) -> float:
    """(1 - z)^power: linear (power 1) is D2Z, "Straight to Zero: Why Linearly Decaying
    the Learning Rate to Zero Works Best for LLMs" (Bergsma et al. 2025, arXiv:2502.15938);
    other powers are PolynomialLR's shape, per batch. Unlike ``linear`` and ``polynomial``
    (stepped per epoch, so the last epoch still trains at a fraction of the base LR), it
    falls every batch and reaches exactly 0 after the last one."""
    return (1.0 - progress) ** power


def _by_progress(opt: Any, ctx: ScheduleContext, factor: Callable[[float], float]) -> Any:
    """LambdaLR of ``factor(z)``, z the fraction of the main schedule's batches done (0 at
    the first batch, 1 once the last has stepped, and 1 beyond it)."""
    total = max(1, ctx.epochs * ctx.steps_per_epoch)
    return _sched().LambdaLR(opt, lambda step: factor(min(step, total) / total))


def _wsd(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return _by_progress(opt, ctx, lambda z: wsd_factor(
        z, p["decay_fraction"], p["shape"], p["final_lr_ratio"]))


def _inverse_sqrt(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    warmup = max(1, round(p["ramp_epochs"] * ctx.steps_per_epoch))
    timescale = max(1.0, p["timescale_epochs"] * ctx.steps_per_epoch)
    return _sched().LambdaLR(opt, lambda step: inverse_sqrt_factor(step, warmup, timescale))


def _rex(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return _by_progress(opt, ctx, lambda z: rex_factor(z, p["beta"]))


def _decay_to_zero(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return _by_progress(opt, ctx, lambda z: decay_to_zero_factor(z, p["power"]))


# --- default spaces: wide enough to contain the usual choices, narrow enough for ~20 trials ---


def _no_params(epochs: int) -> dict[str, Axis]:
    return {}


def _step_space(epochs: int) -> dict[str, Axis]:
    return {"step_size": IntRange(1, max(1, epochs)), "gamma": FloatRange(0.05, 0.99, log=True)}


def _multistep_space(epochs: int) -> dict[str, Axis]:
    last = max(1, epochs - 1)
    return {
        "milestone_1": IntRange(1, last),
        "milestone_2": IntRange(1, last),
        "gamma": FloatRange(0.05, 0.9, log=True),
    }


def _exponential_space(epochs: int) -> dict[str, Axis]:
    return {"gamma": FloatRange(0.5, 0.99)}


def _cosine_space(epochs: int) -> dict[str, Axis]:
    return {"eta_min_ratio": FloatRange(1e-4, 0.1, log=True)}


def _cosine_restarts_space(epochs: int) -> dict[str, Axis]:
    return {
        "t_0": IntRange(1, max(1, epochs // 2)),
        "t_mult": IntRange(1, 2),
        "eta_min_ratio": FloatRange(1e-4, 0.1, log=True),
    }


def _plateau_space(epochs: int) -> dict[str, Axis]:
    return {"factor": FloatRange(0.05, 0.9), "patience": IntRange(0, 3)}


def _onecycle_space(epochs: int) -> dict[str, Axis]:
    return {
        "max_lr_ratio": FloatRange(0.5, 5.0, log=True),
        "pct_start": FloatRange(0.1, 0.5),
        "div_factor": FloatRange(5.0, 100.0, log=True),
    }


def _cyclic_space(epochs: int) -> dict[str, Axis]:
    return {
        "base_lr_ratio": FloatRange(0.01, 0.5, log=True),
        "half_cycle_epochs": FloatRange(0.5, max(0.5, epochs / 2)),
        "mode": Choice(("triangular", "triangular2")),
    }


def _linear_space(epochs: int) -> dict[str, Axis]:
    return {"end_factor": FloatRange(0.0, 0.5)}


def _polynomial_space(epochs: int) -> dict[str, Axis]:
    return {"power": FloatRange(0.5, 3.0)}


def _wsd_space(epochs: int) -> dict[str, Axis]:
    return {
        # MiniCPM and Hägele et al. cool down over the last 10-20% of training; searched
        # wider, since a short MNIST run may prefer a longer cooldown.
        "decay_fraction": FloatRange(0.05, 0.5),
        "shape": Choice(COOLDOWN_SHAPES),
        "final_lr_ratio": FloatRange(0.0, 0.1),  # 0: all the way down
    }


def _inverse_sqrt_space(epochs: int) -> dict[str, Axis]:
    return {
        "ramp_epochs": FloatRange(0.1, max(0.1, epochs / 4)),  # its own ramp
        "timescale_epochs": FloatRange(0.1, max(0.1, float(epochs)), log=True),
    }


def _rex_space(epochs: int) -> dict[str, Axis]:
    return {"beta": FloatRange(0.1, 0.9)}  # 0.5: the paper's profile


def _decay_to_zero_space(epochs: int) -> dict[str, Axis]:
    return {"power": FloatRange(0.5, 2.0)}  # 1: D2Z's linear decay


def _schedulefree_space(epochs: int) -> dict[str, Axis]:
    # Beta, the interpolation momentum: the package's default is 0.9, and its README
    # advises 0.95-0.98 for long runs; short runs went lower (10 Fashion-MNIST epochs:
    # 0.71, at the low end of 0.7..0.98).
    return {"momentum": FloatRange(0.5, 0.98)}


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("constant", "no schedule: the base LR throughout", False, _no_params, _constant),
        Family("step", "StepLR: x gamma every step_size epochs", False, _step_space, _step),
        Family("multistep", "MultiStepLR: x gamma at two milestones", False,
               _multistep_space, _multistep),
        Family("exponential", "ExponentialLR: x gamma every epoch", False,
               _exponential_space, _exponential),
        Family("cosine", "CosineAnnealingLR over the run", False, _cosine_space, _cosine),
        Family("cosine_restarts", "CosineAnnealingWarmRestarts", False,
               _cosine_restarts_space, _cosine_restarts),
        Family("plateau", "ReduceLROnPlateau on the validation metric", False,
               _plateau_space, _plateau),
        Family("onecycle", "OneCycleLR, stepped per batch", True, _onecycle_space, _onecycle),
        Family("cyclic", "CyclicLR, stepped per batch", True, _cyclic_space, _cyclic),
        Family("linear", "LinearLR: linear decay to end_factor", False, _linear_space, _linear),
        Family("polynomial", "PolynomialLR: (1 - t/T)^power", False,
               _polynomial_space, _polynomial),
        Family("wsd", "warmup-stable-decay: constant, then a cooldown", True,
               _wsd_space, _wsd),
        Family("inverse_sqrt", "inverse square root after its own warm-up", True,
               _inverse_sqrt_space, _inverse_sqrt),
        Family("rex", "REX: (1 - z) / ((1 - beta) + beta (1 - z))", True, _rex_space, _rex),
        Family("decay_to_zero", "(1 - z)^power per batch, exactly 0 at the end (D2Z)", True,
               _decay_to_zero_space, _decay_to_zero),
        # No schedule: its trials train with the schedule-free form of the optimizer
        # (lrbench.train.schedule_free), at a constant LR after any warm-up.
        Family(SCHEDULE_FREE_FAMILY, "schedule-free SGD/AdamW: constant LR, averaged weights",
               False, _schedulefree_space, _constant),
    )
}


# Values outside these make no sense for the torch class (a gamma <= 0 zeroes or flips
# the LR; a patience < 0 never waits). Keyed by parameter name: a name means the same
# thing in every family that uses it.
PARAM_LIMITS: dict[str, Limit] = {
    "gamma": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "step_size": (lambda v: v >= 1, ">= 1"),
    "milestone_1": (lambda v: v >= 1, ">= 1"),
    "milestone_2": (lambda v: v >= 1, ">= 1"),
    "eta_min_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "t_0": (lambda v: v >= 1, ">= 1"),
    "t_mult": (lambda v: v >= 1, ">= 1"),
    "factor": (lambda v: 0 < v < 1, "in (0, 1)"),
    "patience": (lambda v: v >= 0, ">= 0"),
    "max_lr_ratio": (lambda v: v > 0, "> 0"),
    "pct_start": (lambda v: 0 < v < 1, "in (0, 1)"),
    "div_factor": (lambda v: v >= 1, ">= 1"),
    "base_lr_ratio": (lambda v: 0 < v < 1, "in (0, 1)"),
    "half_cycle_epochs": (lambda v: v > 0, "> 0"),
    "mode": (lambda v: v in ("triangular", "triangular2"), "'triangular' or 'triangular2'"),
    "end_factor": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "power": (lambda v: v > 0, "> 0"),
    "decay_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "shape": (lambda v: v in COOLDOWN_SHAPES, " or ".join(map(repr, COOLDOWN_SHAPES))),
    "final_lr_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "ramp_epochs": (lambda v: v > 0, "> 0"),
    "timescale_epochs": (lambda v: v > 0, "> 0"),
    # REX at beta = 1 is a constant LR whose formula divides 0 by 0 at the end of the run
    "beta": (lambda v: 0 < v < 1, "in (0, 1)"),
    "momentum": (lambda v: 0 < v < 1, "in (0, 1)"),  # schedule-free's beta
}

DEFAULT_EPOCHS_FOR_CHECKS = 10  # a family's space is drawn for some epochs to list its names


def limit_of(family: str, name: str) -> Limit | None:
    """The limit on ``family``'s parameter ``name``: its own, or the one shared by name."""
    own = FAMILIES[family].limits if family in FAMILIES else {}
    return own.get(name) or PARAM_LIMITS.get(name)


def register(family: Family) -> None:
    """Add ``family`` to the registry, after checking it is complete: a new name, and a
    limit for every parameter of its space (a value outside it is refused by name)."""
    if family.name in FAMILIES:
        raise ValueError(f"schedule family {family.name!r} is already registered")
    unlimited = sorted(set(family.default_space(DEFAULT_EPOCHS_FOR_CHECKS)) - set(family.limits)
                       - set(PARAM_LIMITS))
    if unlimited:
        raise ValueError(f"schedule family {family.name!r}: no limits for {unlimited} "
                         f"(give them in Family.limits)")
    FAMILIES[family.name] = family


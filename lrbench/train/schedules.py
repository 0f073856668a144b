"""The registry of learning-rate schedule families.

Each family knows three things: its default search space, how to build its torch
scheduler from sampled parameters, and whether it steps per batch or per epoch.
``LRSchedule`` drives a built scheduler inside the training loop: it steps after the
optimizer, feeds ReduceLROnPlateau its validation metric, and prefixes an optional
linear warm-up to any family.

Ranges are relative to the base LR where the torch argument is an absolute LR
(``eta_min``, OneCycle's ``max_lr``, Cyclic's ``base_lr``), so searching the base LR
moves the whole schedule with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import lr_scheduler as sched

from lrbench.space import Axis, Choice, FloatRange, IntRange

# Warm-up ramps linearly from this fraction of the LR the main schedule starts at.
WARMUP_START_FACTOR = 0.1


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


Builder = Callable[[torch.optim.Optimizer, Mapping[str, Any], ScheduleContext], Any]


@dataclass(frozen=True)
class Family:
    name: str
    summary: str
    per_batch: bool
    default_space: Callable[[int], dict[str, Axis]]  # epochs -> axes
    build: Builder  # returns a torch scheduler, or None for a constant LR


def _base_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


# --- builders: module-level functions, so a Family pickles into worker processes ---


def _constant(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> None:
    return None


def _step(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return sched.StepLR(opt, step_size=p["step_size"], gamma=p["gamma"])


def _multistep(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    milestones = sorted({p["milestone_1"], p["milestone_2"]})
    return sched.MultiStepLR(opt, milestones=milestones, gamma=p["gamma"])


def _exponential(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return sched.ExponentialLR(opt, gamma=p["gamma"])


def _cosine(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    eta_min = _base_lr(opt) * p["eta_min_ratio"]
    return sched.CosineAnnealingLR(opt, T_max=ctx.epochs, eta_min=eta_min)


def _cosine_restarts(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    eta_min = _base_lr(opt) * p["eta_min_ratio"]
    return sched.CosineAnnealingWarmRestarts(opt, T_0=p["t_0"], T_mult=p["t_mult"], eta_min=eta_min)


def _plateau(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    mode = "max" if ctx.plateau_metric == "accuracy" else "min"
    return sched.ReduceLROnPlateau(opt, mode=mode, factor=p["factor"], patience=p["patience"])


def _onecycle(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    # Momentum cycling is off: lrbench compares LR schedules, so momentum stays fixed.
    return sched.OneCycleLR(
        opt,
        max_lr=_base_lr(opt) * p["max_lr_ratio"],
        total_steps=ctx.epochs * ctx.steps_per_epoch,
        pct_start=p["pct_start"],
        div_factor=p["div_factor"],
        cycle_momentum=False,
    )


def _cyclic(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    top = _base_lr(opt)
    return sched.CyclicLR(
        opt,
        base_lr=top * p["base_lr_ratio"],
        max_lr=top,
        step_size_up=max(1, round(p["half_cycle_epochs"] * ctx.steps_per_epoch)),
        mode=p["mode"],
        cycle_momentum=False,
    )


def _linear(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return sched.LinearLR(opt, start_factor=1.0, end_factor=p["end_factor"], total_iters=ctx.epochs)


def _polynomial(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return sched.PolynomialLR(opt, total_iters=ctx.epochs, power=p["power"])


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
    )
}


class LRSchedule:
    """Steps one trial's schedule at the right moments in the training loop.

    Call ``after_batch()`` after every ``optimizer.step()`` and ``after_epoch(...)`` after
    each epoch's validation. A warm-up of W epochs ramps per batch over the first W
    epochs; the main schedule then runs over the remaining epochs as its own horizon.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, spec: ScheduleSpec,
                 ctx: ScheduleContext) -> None:
        self.family = FAMILIES[spec.family]
        self.optimizer = optimizer
        self.plateau_metric = ctx.plateau_metric
        main_ctx = ScheduleContext(ctx.epochs - spec.warmup_epochs, ctx.steps_per_epoch,
                                   ctx.plateau_metric)
        # The main scheduler is built first: some (OneCycle, Cyclic) set the starting LR
        # on construction, and the warm-up must ramp up to that LR, not to the base LR.
        self.main = self.family.build(optimizer, spec.params, main_ctx)
        self.warmup_batches = spec.warmup_epochs * ctx.steps_per_epoch
        self.warmup = None
        if self.warmup_batches:
            self.warmup = sched.LinearLR(optimizer, start_factor=WARMUP_START_FACTOR,
                                         end_factor=1.0, total_iters=self.warmup_batches)
        self.batches_done = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _warming_up(self) -> bool:
        return self.batches_done < self.warmup_batches

    def after_batch(self) -> None:
        if self._warming_up():
            self.batches_done += 1
            assert self.warmup is not None
            self.warmup.step()
            return
        self.batches_done += 1
        if self.main is not None and self.family.per_batch:
            self.main.step()

    def constant_this_epoch(self) -> bool:
        """Whether after_batch() leaves the LR alone for the coming epoch: a per-epoch family
        past its warm-up (a warm-up spans whole epochs, so it never ends mid-epoch)."""
        return not self.family.per_batch and not self._warming_up()

    def skip_batches(self, n: int) -> None:
        """``n`` after_batch() calls at once, for an epoch whose LR is constant."""
        if not self.constant_this_epoch():
            raise ValueError(f"skip_batches({n}) needs a constant-LR epoch; "
                             f"family {self.family.name!r}, batch {self.batches_done}")
        self.batches_done += n

    def after_epoch(self, val_accuracy: float, val_loss: float) -> None:
        # An epoch that ended inside (or exactly at the end of) the warm-up is not the
        # main schedule's: its epoch 0 is the first epoch after the warm-up.
        if self.batches_done <= self.warmup_batches and self.warmup_batches:
            return
        if self.main is None or self.family.per_batch:
            return
        if isinstance(self.main, sched.ReduceLROnPlateau):
            self.main.step(val_accuracy if self.plateau_metric == "accuracy" else val_loss)
        else:
            self.main.step()


class ShadowSGD(torch.optim.SGD):
    """The one-parameter optimizer a schedule drives when only its LR is wanted: a batched
    trial's real torch scheduler, or the report's replay of one.

    torch wraps ``Optimizer.add_param_group`` and ``SGD.step`` to keep torch.compile out,
    and the first call of either imports ``torch._dynamo`` (about a second per process).
    A shadow needs neither: its one group is the defaults, and it never updates a weight.
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        group = {**self.defaults, **param_group}
        group["params"] = list(group["params"])
        self.param_groups.append(group)

    def step(self, closure: Any = None) -> None:
        return None


def lr_trace(spec: ScheduleSpec, ctx: ScheduleContext, base_lr: float,
             metrics: list[float] | None = None) -> list[list[float]]:
    """The LR of every batch, per epoch, as a real optimizer would see it.

    Runs the schedule on a one-parameter shadow SGD optimizer. ``metrics`` feeds
    ReduceLROnPlateau one value per epoch (as accuracy or loss, per ``ctx``); without
    them the plateau never triggers. Used by tests and by the report's LR plots.
    """
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = ShadowSGD([weight], lr=base_lr)
    schedule = LRSchedule(optimizer, spec, ctx)
    trace = []
    for epoch in range(ctx.epochs):
        lrs = []
        for _ in range(ctx.steps_per_epoch):
            lrs.append(schedule.lr)
            optimizer.step()
            schedule.after_batch()
        trace.append(lrs)
        if metrics is not None:
            schedule.after_epoch(val_accuracy=metrics[epoch], val_loss=metrics[epoch])
        else:  # a metric that always improves: the plateau never triggers
            schedule.after_epoch(val_accuracy=float(epoch), val_loss=-float(epoch))
    return trace


# Values outside these make no sense for the torch class (a gamma <= 0 zeroes or flips
# the LR; a patience < 0 never waits). Keyed by parameter name: a name means the same
# thing in every family that uses it.
PARAM_LIMITS: dict[str, tuple[Callable[[float], bool], str]] = {
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
}

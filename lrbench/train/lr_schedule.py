"""Driving one trial's schedule: stepping it inside the training loop, or replaying it
for its LRs alone (the batched engine's per-trial LRs, the report's LR figures).

The families themselves (spaces, builders, limits) are declared in
``lrbench.train.schedules``, which imports no torch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import lr_scheduler as sched

from lrbench.train.schedules import (
    FAMILIES,
    WARMUP_START_FACTOR,
    ScheduleContext,
    ScheduleSpec,
)


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
        if schedule.constant_this_epoch():  # one LR all epoch: no need to step each batch
            trace.append([schedule.lr] * ctx.steps_per_epoch)
            optimizer.step()  # (a no-op: torch warns of a scheduler stepped before it)
            schedule.skip_batches(ctx.steps_per_epoch)
        else:
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

"""The optimizers a sweep may name, and the schedule-free form a trial switches to.

A study's trials become schedule-free (``lrbench.train.schedule_free``) in one of two
ways: the ``[optimizer]`` table names ``sgd_schedulefree`` or ``adamw_schedulefree``
(every trial), or a trial draws the ``schedulefree`` schedule family (that trial, at a
constant LR; its searched ``momentum`` is beta). Names only: no torch is imported here.
"""

from __future__ import annotations

import dataclasses

from lrbench.train.schedules import SCHEDULE_FREE_FAMILY, ScheduleSpec
from lrbench.train.trial import OptimizerConfig

# The schedule-free form of each base optimizer. Adam (L2 decay in the gradient) has no
# schedule-free form in the package; with no weight decay it is AdamW's.
SCHEDULE_FREE = {"sgd": "sgd_schedulefree", "adamw": "adamw_schedulefree"}
SCHEDULE_FREE_NAMES = tuple(SCHEDULE_FREE.values())
OPTIMIZERS = ("sgd", "adam", "adamw", *SCHEDULE_FREE_NAMES)


def is_schedule_free(name: str) -> bool:
    return name in SCHEDULE_FREE_NAMES


def schedule_free_form(optimizer: OptimizerConfig, beta: float) -> OptimizerConfig:
    """``optimizer`` as its schedule-free form, with beta (its ``momentum``) = ``beta``."""
    name = optimizer.name
    if name == "adam" and not optimizer.weight_decay:
        name = "adamw"  # the same rule without weight decay
    if is_schedule_free(name):
        return dataclasses.replace(optimizer, momentum=beta)
    if name not in SCHEDULE_FREE:
        raise ValueError(f"optimizer {optimizer.name!r} (weight_decay "
                         f"{optimizer.weight_decay}) has no schedule-free form; "
                         f"use one of {sorted(SCHEDULE_FREE)}")
    return dataclasses.replace(optimizer, name=SCHEDULE_FREE[name], momentum=beta)


def trial_optimizer(optimizer: OptimizerConfig, schedule: ScheduleSpec) -> OptimizerConfig:
    """The optimizer a trial of ``schedule`` trains with: a ``schedulefree`` trial's is
    the schedule-free form of the study's, with its searched beta (``momentum``)."""
    if schedule.family != SCHEDULE_FREE_FAMILY:
        return optimizer
    return schedule_free_form(optimizer, float(schedule.params.get("momentum",
                                                                    optimizer.momentum)))

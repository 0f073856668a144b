"""The Optuna side of a sweep: the study, its conditional space, and its bookkeeping.

Search space: ``schedule`` (categorical over the sweep's families), then that family's
parameters named ``family.param`` (``step.gamma``), then ``lr`` and ``warmup_epochs``
when the sweep searches them. What a trial plans, who runs it and what came out are its
typed records (``lrbench.store.record``), so the report can redraw every curve without
retraining.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.util
import itertools
import json
import re
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

import lrbench
from lrbench.errors import UserError
from lrbench.space import grid_values, suggest
from lrbench.store import schema
from lrbench.store.record import (
    Plan,
    plan_attrs,
    plan_of,
)
from lrbench.store.schema import FAMILY_PARAM
from lrbench.sweep import seeds
from lrbench.sweep.config import FixedTrial, SweepConfig
from lrbench.sweep.protocol import CellSampler, spent_failures, startup_trials
from lrbench.sweep.sampling import BatchTPESampler
from lrbench.torch_import import import_torch
from lrbench.train.optimizers import trial_optimizer
from lrbench.train.schedules import ScheduleSpec
from lrbench.train.trial import TrialSpec


def make_sampler(config: SweepConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The slot's sampler; ``seed`` is the slot's own (``seeds.sampler_seed``): slots with
    equal seeds would propose equal trials. Under the compare protocol, one sampler per
    (family, repeat) cell, each seeing only its cell's trials (``protocol.CellSampler``)."""
    if config.compare:
        return CellSampler(lambda cell_seed: _cell_sampler(config, cell_seed), seed)
    if config.sampler == "tpe":
        with warnings.catch_warnings():  # multivariate/group are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # group=True samples each family's parameters jointly after `schedule`;
            # constant_liar keeps parallel slots from proposing the same point; a batched
            # slot's K asks share one split and "below" fit, and a trial fits only the
            # groups of its own family (lrbench.sweep.sampling).
            return BatchTPESampler(multivariate=True, group=True, constant_liar=True,
                                   seed=seed, family_param=FAMILY_PARAM)
    if config.sampler == "qmc":
        # QMC walks one shared low-discrepancy sequence: every slot must use one seed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(seed=config.seed, warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)  # random, and grid beyond its queue


def _cell_sampler(config: SweepConfig, seed: int) -> optuna.samplers.BaseSampler:
    """One compare cell's sampler: its space is one family's, the same for all its trials,
    so TPE models it jointly (multivariate, no groups)."""
    if config.sampler == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return BatchTPESampler(multivariate=True, constant_liar=True, seed=seed,
                                   n_startup_trials=startup_trials(config.budget or 1))
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(config: SweepConfig) -> optuna.pruners.BasePruner:
    epochs = config.epochs  # fixed trials may set their own; the sweep's is the yardstick
    if config.pruner == "median":
        # No pruning in the first half of a run: schedules that decay late (cosine, step
        # at epoch 3) trail early by design, and pruning them then would bias the study
        # against them. (With n_warmup_steps=1, a 5-epoch step sweep pruned 21 of 30.)
        # Steps are epoch numbers (record.step_of): the first prunable is epochs // 2 + 1.
        return optuna.pruners.MedianPruner(n_startup_trials=5,
                                           n_warmup_steps=epochs // 2 + 1)
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def torch_version() -> str:
    """``torch.__version__`` (its build included, e.g. 2.14.1+cu130, which the package's
    metadata leaves out), read from torch's version file: importing torch would cost a
    sweep's parent ~1.4 s of CPU for this alone."""
    if "torch" in sys.modules:
        return str(sys.modules["torch"].__version__)
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        with contextlib.suppress(OSError):
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
            found = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, re.MULTILINE)
            if found:
                return found[1]
    return str(import_torch().__version__)


def provenance() -> dict[str, Any]:
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                  cwd=Path(lrbench.__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        revision = ""
    return {"lrbench": lrbench.__version__, "optuna": optuna.__version__,
            "torch": torch_version(), "git_revision": revision or "unknown",
            "host": socket.gethostname(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def open_study(config: SweepConfig, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study, or reopen it if this is the same sweep run again.

    Hold the study's claim lock around this: two sweeps starting at once must not both
    find the study new and both queue its fixed trials.
    """
    identity = config.identity()
    study = optuna.create_study(study_name=config.study, storage=storage, direction="maximize",
                                load_if_exists=True)
    stored = schema.config_of(study)
    if not stored:  # a new study
        schema.define(study, identity, config.source, provenance())
        _enqueue_planned(study, config)
    elif stored != json.loads(json.dumps(identity)):
        changed = sorted(k for k in identity
                         if json.dumps(identity[k]) != json.dumps(stored.get(k)))
        raise UserError(f"study {config.study!r} already exists with a different setup "
                        f"(changed: {', '.join(changed)}); resume it unchanged, or start a new "
                        f"study with --study NAME")
    return study


def fixed_params(config: SweepConfig, fixed: FixedTrial) -> tuple[dict[str, Any], Plan]:
    """A fixed trial as Optuna params (what is searched) and its plan (what is not)."""
    params: dict[str, Any] = {FAMILY_PARAM: fixed.family}
    params.update({f"{fixed.family}.{k}": v for k, v in fixed.params.items()})
    fixed_lr = fixed_warmup = None
    lr_search = config.lr_search(fixed.family)
    if fixed.lr is not None:
        if lr_search is not None:
            params[lr_search[0]] = fixed.lr
        else:
            fixed_lr = fixed.lr
    if config.warmup_axis is not None:
        params["warmup_epochs"] = fixed.warmup_epochs
    elif fixed.warmup_epochs:
        fixed_warmup = fixed.warmup_epochs
    return params, Plan(epochs=fixed.epochs, fixed_lr=fixed_lr, fixed_warmup_epochs=fixed_warmup)


def _grid_points(config: SweepConfig) -> list[dict[str, Any]]:
    """Each family's own Cartesian product: a grid over a conditional space."""
    points = []
    for family in config.families:
        axes = {f"{family}.{k}": grid_values(a) for k, a in config.space(family).items()}
        lr_search = config.lr_search(family)
        if lr_search is not None:
            axes[lr_search[0]] = grid_values(lr_search[1])
        if config.warmup_axis is not None:
            axes["warmup_epochs"] = grid_values(config.warmup_axis)
        for values in itertools.product(*axes.values()):
            points.append({FAMILY_PARAM: family, **dict(zip(axes, values))})
    return points


def _enqueue_planned(study: optuna.Study, config: SweepConfig) -> None:
    for fixed in config.fixed:
        params, plan = fixed_params(config, fixed)
        study.enqueue_trial(params, user_attrs=plan_attrs(plan), skip_if_exists=True)
    if config.sampler == "grid":
        for point in _grid_points(config):
            study.enqueue_trial(point, skip_if_exists=True)


def trial_spec(trial: optuna.Trial, config: SweepConfig) -> TrialSpec:
    """Sample the conditional space: the family first, then only its parameters."""
    plan = plan_of(trial)
    family = trial.suggest_categorical(FAMILY_PARAM, list(config.families))
    params = {name: suggest(trial, f"{family}.{name}", axis)
              for name, axis in config.space(family).items()}
    lr_search = config.lr_search(family)
    if lr_search is not None:
        lr = float(suggest(trial, *lr_search))
    else:
        lr = float(plan.fixed_lr if plan.fixed_lr is not None else config.optimizer.lr)
    if config.warmup_axis is not None:
        warmup = int(suggest(trial, "warmup_epochs", config.warmup_axis))
    else:
        warmup = int(plan.fixed_warmup_epochs or 0)
    epochs = int(plan.epochs or config.epochs)
    seed, data_seed = trial_seeds(trial, config)
    schedule = ScheduleSpec(family, params, warmup)
    return TrialSpec(
        number=trial.number, seed=seed, model=config.model, epochs=epochs,
        batch_size=config.batch_size,
        optimizer=trial_optimizer(dataclasses.replace(config.optimizer, lr=lr), schedule),
        schedule=schedule, plateau_metric=config.plateau_metric, data_seed=data_seed,
    )


def trial_seeds(trial: optuna.Trial | FrozenTrial, config: SweepConfig) -> tuple[int, int]:
    """The trial's init seed and batch-order seed.

    Search trials: the init seed comes from the configuration (``seeds.trial_seed``), and
    every trial shares the base seed's batch order (common random numbers: schedules are
    compared on the same data order, and any trials can share a batched stack). A queued
    trial may carry its own (confirm runs' fresh seeds; a re-queued trial's).
    """
    plan = plan_of(trial)
    configuration = {**trial.params, **plan.training(), "epochs": int(plan.epochs or config.epochs)}
    if plan.repeat is not None:  # two repeats proposing one point still train two models
        configuration["repeat"] = plan.repeat
    if plan.seed is None:
        return seeds.trial_seed(config.seed, configuration), config.seed
    return plan.seed, plan.data_seed if plan.data_seed is not None else plan.seed


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards the sweep's total: finished or being trained, and under
    the compare protocol those that failed by their own error (they were spent)."""
    trials = study.get_trials(deepcopy=False)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(t.state in states for t in trials) + len(spent_failures(trials))

"""The Optuna side of a sweep: the study, its conditional space, and its bookkeeping.

Search space: ``schedule`` (categorical over the sweep's families), then that family's
parameters named ``family.param`` (``step.gamma``), then ``lr`` and ``warmup_epochs``
when the sweep searches them. Each trial's results go into its user attributes so
the report can redraw every curve without retraining.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import math
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

import lrbench
from lrbench import seeds
from lrbench.config import FixedTrial, SweepConfig
from lrbench.data import DeviceData
from lrbench.engine.trial import TrialResult, TrialSpec
from lrbench.errors import UserError
from lrbench.sampling import BatchTPESampler
from lrbench.schedules import ScheduleSpec
from lrbench.space import grid_values, suggest

# A RUNNING trial from another machine whose heartbeat (refreshed every epoch) is older
# than this is taken as dead. On this machine the worker's process is checked directly.
STALE_AFTER_SECONDS = 30 * 60
# A RUNNING trial not yet marked with its owner, older than this, seen by a process that
# holds the claim lock, was asked by a process that died before it could mark it: askers
# mark their trials before they release the lock. (Only storages without a shared claim
# lock need the seconds; see lrbench.claim.)
UNMARKED_AFTER_SECONDS = 2.0
CONFIG_ATTR = "lrbench_config"
RUNS_ATTR = "lrbench_runs"  # how many sweeps have started on the study: the next run's index
# User attributes that define what a queued trial trains, so a re-queued (or confirm)
# trial carries them over: its epochs, a fixed trial's LR and warm-up, a confirm run's
# or a re-queued trial's seeds.
CARRIED_ATTRS = ("epochs", "fixed_lr", "fixed_warmup_epochs", "confirm_of", "confirm_index",
                 "seed_override", "data_seed_override")
# The user attributes, besides Optuna's params and the epochs, that change what it trains.
TRAINING_ATTRS = ("fixed_lr", "fixed_warmup_epochs")


def make_sampler(config: SweepConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The slot's sampler; ``seed`` is the slot's own (``seeds.sampler_seed``): slots with
    equal seeds would propose equal trials."""
    if config.sampler == "tpe":
        with warnings.catch_warnings():  # multivariate/group are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # group=True samples each family's parameters jointly after `schedule`;
            # constant_liar keeps parallel slots from proposing the same point; a batched
            # slot's K asks share one split and "below" fit, and a trial fits only the
            # groups of its own family (lrbench.sampling).
            return BatchTPESampler(multivariate=True, group=True, constant_liar=True,
                                   seed=seed, family_param="schedule")
    if config.sampler == "qmc":
        # QMC walks one shared low-discrepancy sequence: every slot must use one seed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(seed=config.seed, warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)  # random, and grid beyond its queue


def make_pruner(config: SweepConfig) -> optuna.pruners.BasePruner:
    epochs = config.epochs  # fixed trials may set their own; the sweep's is the yardstick
    if config.pruner == "median":
        # No pruning in the first half of a run: schedules that decay late (cosine, step
        # at epoch 3) trail early by design, and pruning them then would bias the study
        # against them. (With n_warmup_steps=1, a 5-epoch step sweep pruned 21 of 30.)
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=epochs // 2)
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def provenance() -> dict[str, Any]:
    import torch

    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                  cwd=Path(lrbench.__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        revision = ""
    return {"lrbench": lrbench.__version__, "optuna": optuna.__version__,
            "torch": torch.__version__, "git_revision": revision or "unknown",
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
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, identity)
        study.set_user_attr("sweep_file", config.source)
        study.set_user_attr("provenance", provenance())
        _enqueue_planned(study, config)
    elif stored != json.loads(json.dumps(identity)):
        changed = sorted(k for k in identity
                         if json.dumps(identity[k]) != json.dumps(stored.get(k)))
        raise UserError(f"study {config.study!r} already exists with a different setup "
                        f"(changed: {', '.join(changed)}); resume it unchanged, or start a new "
                        f"study with --study NAME")
    return study


def start_run(study: optuna.Study) -> int:
    """This sweep's run index on the study (0 for the first sweep); hold the claim lock."""
    run = int(study.user_attrs.get(RUNS_ATTR, 0))
    study.set_user_attr(RUNS_ATTR, run + 1)
    return run


def fixed_params(config: SweepConfig, fixed: FixedTrial) -> tuple[dict[str, Any], dict[str, Any]]:
    """A fixed trial as Optuna params (what is searched) and user attrs (what is not)."""
    params: dict[str, Any] = {"schedule": fixed.family}
    params.update({f"{fixed.family}.{k}": v for k, v in fixed.params.items()})
    attrs: dict[str, Any] = {}
    if fixed.lr is not None:
        if config.lr_axis is not None:
            params["lr"] = fixed.lr
        else:
            attrs["fixed_lr"] = fixed.lr
    if config.warmup_axis is not None:
        params["warmup_epochs"] = fixed.warmup_epochs
    elif fixed.warmup_epochs:
        attrs["fixed_warmup_epochs"] = fixed.warmup_epochs
    if fixed.epochs is not None:
        attrs["epochs"] = fixed.epochs
    return params, attrs


def _grid_points(config: SweepConfig) -> list[dict[str, Any]]:
    """Each family's own Cartesian product: a grid over a conditional space."""
    points = []
    shared = {"lr": config.lr_axis, "warmup_epochs": config.warmup_axis}
    shared_axes = {k: grid_values(a) for k, a in shared.items() if a is not None}
    for family in config.families:
        axes = {f"{family}.{k}": grid_values(a) for k, a in config.space(family).items()}
        axes.update(shared_axes)
        for values in itertools.product(*axes.values()):
            points.append({"schedule": family, **dict(zip(axes, values))})
    return points


def _enqueue_planned(study: optuna.Study, config: SweepConfig) -> None:
    for fixed in config.fixed:
        params, attrs = fixed_params(config, fixed)
        study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
    if config.sampler == "grid":
        for point in _grid_points(config):
            study.enqueue_trial(point, skip_if_exists=True)


def trial_spec(trial: optuna.Trial, config: SweepConfig) -> TrialSpec:
    """Sample the conditional space: the family first, then only its parameters."""
    attrs = trial.user_attrs
    family = trial.suggest_categorical("schedule", list(config.families))
    params = {name: suggest(trial, f"{family}.{name}", axis)
              for name, axis in config.space(family).items()}
    if config.lr_axis is not None:
        lr = float(suggest(trial, "lr", config.lr_axis))
    else:
        lr = float(attrs.get("fixed_lr", config.optimizer.lr))
    if config.warmup_axis is not None:
        warmup = int(suggest(trial, "warmup_epochs", config.warmup_axis))
    else:
        warmup = int(attrs.get("fixed_warmup_epochs", 0))
    epochs = int(attrs.get("epochs", config.epochs))
    seed, data_seed = trial_seeds(trial, config)
    trial.set_user_attr("family", family)
    trial.set_user_attr("seed", seed)
    trial.set_user_attr("data_seed", data_seed)
    trial.set_user_attr("epochs", epochs)
    return TrialSpec(
        number=trial.number, seed=seed, model=config.model, epochs=epochs,
        batch_size=config.batch_size,
        optimizer=dataclasses.replace(config.optimizer, lr=lr),
        schedule=ScheduleSpec(family, params, warmup), plateau_metric=config.plateau_metric,
        data_seed=data_seed,
    )


def trial_seeds(trial: optuna.Trial | FrozenTrial, config: SweepConfig) -> tuple[int, int]:
    """The trial's init seed and batch-order seed.

    Search trials: the init seed comes from the configuration (``seeds.trial_seed``), and
    every trial shares the base seed's batch order (common random numbers: schedules are
    compared on the same data order, and any trials can share a batched stack). A queued
    trial may carry its own (confirm runs' fresh seeds; a re-queued trial's).
    """
    attrs = trial.user_attrs
    configuration = {**trial.params, **{k: attrs[k] for k in TRAINING_ATTRS if k in attrs},
                     "epochs": int(attrs.get("epochs", config.epochs))}
    seed = int(attrs.get("seed_override", seeds.trial_seed(config.seed, configuration)))
    default_data_seed = seed if "seed_override" in attrs else config.seed
    return seed, int(attrs.get("data_seed_override", default_data_seed))


# --- who is running what: liveness, so a dead worker's trial can be recovered ---


def mark_running(trial: optuna.Trial, slot_index: int, device: str,
                 sampler_seed: int | None = None) -> None:
    """Mark the trial as this process's (liveness) and record which sampler proposed it."""
    me = psutil.Process()
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", me.pid)
    trial.set_user_attr("pid_started", me.create_time())
    trial.set_user_attr("slot", slot_index)
    trial.set_user_attr("device", device)
    if sampler_seed is not None:
        trial.set_user_attr("sampler_seed", sampler_seed)
    heartbeat(trial)


def heartbeat(trial: optuna.Trial) -> None:
    trial.set_user_attr("heartbeat", time.time())


def _worker_alive(trial: FrozenTrial) -> bool:
    attrs = trial.user_attrs
    if "host" not in attrs:  # asked but not yet marked: alive only while still marking
        started = trial.datetime_start or datetime.datetime.now()
        return (datetime.datetime.now() - started).total_seconds() < UNMARKED_AFTER_SECONDS
    if attrs["host"] != socket.gethostname():
        return time.time() - attrs.get("heartbeat", 0) < STALE_AFTER_SECONDS
    try:
        process = psutil.Process(attrs.get("pid", -1))
        # The same pid with another start time is a new process that reused the number.
        return abs(process.create_time() - attrs.get("pid_started", 0)) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Fail trials left RUNNING by dead workers and queue their configs again.

    Hold the study's claim lock (``lrbench.claim``): then no live asker is between
    asking a trial and marking it as its own.
    """
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _worker_alive(trial):
            continue
        try:
            # Optuna has no public setter for another process's trial attributes.
            study._storage.set_trial_user_attr(trial._trial_id, "reason",
                                               "worker died or was interrupted; re-queued")
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another sweep recovered it first
            continue
        requeue(study, trial)
        recovered.append(trial.number)
    return recovered


def requeue(study: optuna.Study, trial: FrozenTrial | optuna.Trial) -> None:
    """Queue the trial's configuration again, with the seeds it trained with."""
    attrs = {k: v for k, v in trial.user_attrs.items() if k in CARRIED_ATTRS}
    if "seed" in trial.user_attrs:
        attrs["seed_override"] = trial.user_attrs["seed"]
        # (trials stored before data_seed was recorded trained on their own seed's order)
        attrs["data_seed_override"] = trial.user_attrs.get("data_seed", attrs["seed_override"])
    attrs["requeued_from"] = trial.number
    study.enqueue_trial(trial.params, user_attrs=attrs)


def record_data_sizes(trial: optuna.Trial, data: DeviceData, batch_size: int) -> None:
    # The report names the data a trial saw and redraws its per-batch LR from these.
    trial.set_user_attr("train_size", len(data.train_y))
    trial.set_user_attr("val_size", len(data.val_y))
    trial.set_user_attr("test_size", len(data.test_y))
    trial.set_user_attr("steps_per_epoch", math.ceil(len(data.train_y) / batch_size))


def record_result(trial: optuna.Trial, result: TrialResult) -> None:
    trial.set_user_attr("status", result.status)
    trial.set_user_attr("diverged", result.status == "diverged")
    trial.set_user_attr("reason", result.reason)
    trial.set_user_attr("curves", result.curves)
    trial.set_user_attr("val_accuracy", result.val_accuracy)
    trial.set_user_attr("test_accuracy", result.test_accuracy)
    trial.set_user_attr("test_loss", result.test_loss)
    trial.set_user_attr("train_seconds", result.train_seconds)
    trial.set_user_attr("epochs_run", result.epochs_run)


def best_per_family(study: optuna.Study) -> dict[str, FrozenTrial]:
    """Each family's best result by validation accuracy: the one definition of "best".

    A result is a complete trial that did not diverge: a diverged trial never wins, even
    at a higher value (its accuracy is chance's). The report's frames apply the same rule
    to their table (``report.frames.completed``).
    """
    best: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        family = trial.params.get("schedule")
        if family is None or trial.value is None or trial.user_attrs.get("diverged"):
            continue
        if family not in best or trial.value > best[family].value:
            best[family] = trial
    return best


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards the sweep's total: finished or being trained."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=states))

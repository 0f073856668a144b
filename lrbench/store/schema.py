"""What lrbench stores on a study, and the parameter name every trial has.

Each trial's own record (plan, claim, result) is ``lrbench.store.record``'s. A study
holds, as Optuna user attributes:

- ``CONFIG_ATTR``: the sweep file's settings that define the study (a resume with other
  settings is refused: ``lrbench.sweep.study.open_study``);
- ``SWEEP_FILE_ATTR``, ``PROVENANCE_ATTR``: the file it came from, and the versions and
  commit that made it;
- ``DATA_ATTR``: the data it trains on (``lrbench.store.data_identity``);
- ``RUNS_ATTR`` and ``RUN_OPTIONS_PREFIX`` + run index: how many sweeps started on it,
  and each one's options (the report replays them).
"""

from __future__ import annotations

from typing import Any

import optuna

FAMILY_PARAM = "schedule"  # the searched parameter that names a trial's schedule family

CONFIG_ATTR = "lrbench_config"
SWEEP_FILE_ATTR = "sweep_file"
PROVENANCE_ATTR = "provenance"
DATA_ATTR = "lrbench_data"
RUNS_ATTR = "lrbench_runs"  # how many sweeps have started on the study: the next run's index
RUN_OPTIONS_PREFIX = "lrbench_run_options:"  # + run index: the options that run started with

CONFIRM_SUFFIX = ":confirm"  # a study's confirm runs live in the study NAME + this


def confirm_study_name(study: str) -> str:
    return study + CONFIRM_SUFFIX


def params_text(params: dict[str, Any]) -> str:
    """``{'schedule': 'step', 'step.gamma': 0.5}`` -> ``gamma=0.5``: a trial's parameters
    in short, as a table shows them (a family's own are stored as ``FAMILY.NAME``)."""
    parts = []
    for name, value in params.items():
        if name == FAMILY_PARAM:
            continue
        short = name.split(".", 1)[-1]
        parts.append(f"{short}={value:.4g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)


Attrs = optuna.Study | dict[str, Any]  # a study, or its user attributes already read


def _attrs(study: Attrs) -> dict[str, Any]:
    return study if isinstance(study, dict) else study.user_attrs


def config_of(study: Attrs) -> dict[str, Any]:
    """The settings that define the study ({} for a new study, or one lrbench did not make)."""
    return _attrs(study).get(CONFIG_ATTR, {})


def sweep_file_of(study: Attrs) -> str:
    return str(_attrs(study).get(SWEEP_FILE_ATTR, ""))


def provenance_of(study: Attrs) -> dict[str, Any]:
    return _attrs(study).get(PROVENANCE_ATTR, {})


def define(study: optuna.Study, config: dict[str, Any], sweep_file: str,
           provenance: dict[str, Any]) -> None:
    """Record what defines a new study, where it came from, and what made it."""
    study.set_user_attr(CONFIG_ATTR, config)
    study.set_user_attr(SWEEP_FILE_ATTR, sweep_file)
    study.set_user_attr(PROVENANCE_ATTR, provenance)


def start_run(study: optuna.Study, options: dict[str, Any] | None = None) -> int:
    """This sweep's run index on the study (0 for the first sweep); hold the claim lock.

    ``options``: what the run was started with (workers, device, engine, data folder ...),
    kept so that the report can print commands that replay the study (``run_options``).
    """
    run = int(study.user_attrs.get(RUNS_ATTR, 0))
    study.set_user_attr(RUNS_ATTR, run + 1)
    if options is not None:
        study.set_user_attr(f"{RUN_OPTIONS_PREFIX}{run}", options)
    return run


def run_options(study: Attrs) -> list[dict[str, Any]]:
    """The options of each recorded sweep run on the study, in run order."""
    attrs = _attrs(study)
    runs = [(int(k.removeprefix(RUN_OPTIONS_PREFIX)), v) for k, v in attrs.items()
            if k.startswith(RUN_OPTIONS_PREFIX)]
    return [options for _, options in sorted(runs)]

"""A suite: one sweep file run on several workloads (data sets, models), one study each.

A researcher's question is rarely "which schedule wins on MNIST" but "which schedule wins
across my workloads". A suite file lists them::

    [suite]
    name = "suite"

    [[workload]]
    sweep = "step"            # a sweep file, by name or path
    dataset = "fashion-mnist" # overrides the sweep file's [data].dataset
    model = "cnn"             # overrides its [train].model (optional)

Each workload is its sweep file with those values replaced, checked exactly as a sweep
file is, and stored as its own study (``NAME-SWEEP-DATASET[-MODEL]`` unless it sets
``study``). ``lrbench report`` then compares the studies (``report.compare``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrbench.errors import ConfigError
from lrbench.sweep import config as config_module
from lrbench.sweep.config import SweepConfig

SUITE_KEYS = ("name",)
WORKLOAD_KEYS = ("sweep", "dataset", "model", "study")


@dataclass(frozen=True)
class Workload:
    sweep: Path  # the sweep file
    config: SweepConfig  # that file with the workload's data set and model

    @property
    def study(self) -> str:
        return self.config.study


@dataclass(frozen=True)
class Suite:
    name: str
    workloads: tuple[Workload, ...]
    source: Path


def is_suite(path: Path) -> bool:
    """Whether a .toml file is a suite (it lists workloads) rather than a sweep file."""
    try:
        return "workload" in config_module.read_toml(path)
    except ConfigError:
        return False  # the sweep-file reader names the problem


def load(path: Path, find_sweep: Callable[[str], Path]) -> Suite:
    """Read a suite file; ``find_sweep`` turns a workload's ``sweep`` into a file."""
    raw = config_module.read_toml(path)
    unknown = sorted(set(raw) - {"suite", "workload"})
    if unknown:
        raise ConfigError(path, unknown[0], "unknown table; a suite has [suite] and "
                                            "[[workload]]")
    suite = raw.get("suite", {})
    _known_keys(path, "suite", suite, SUITE_KEYS)
    name = suite.get("name", path.stem)
    if not isinstance(name, str) or not config_module.valid_study_name(name):
        raise ConfigError(path, "suite.name", f"must be {config_module.STUDY_NAME_RULE}, but "
                                              f"got {name!r}")
    entries = raw["workload"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(path, "workload", "must be one or more [[workload]] tables")
    workloads = [_workload(path, name, i, entry, find_sweep) for i, entry in enumerate(entries)]
    seen: dict[str, int] = {}
    for i, workload in enumerate(workloads):
        if workload.study in seen:
            raise ConfigError(path, f"workload[{i}]", f"runs study {workload.study!r} again "
                                                      f"(workload[{seen[workload.study]}] "
                                                      f"does); give it its own study name")
        seen[workload.study] = i
    return Suite(name, tuple(workloads), path)


def _known_keys(path: Path, where: str, table: Any, known: tuple[str, ...]) -> None:
    if not isinstance(table, dict):
        raise ConfigError(path, where, f"must be a table, but got {table!r}")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(path, f"{where}.{unknown[0]}",
                          f"unknown key (known: {', '.join(known)})")


def _workload(path: Path, suite: str, index: int, entry: Any,
              find_sweep: Callable[[str], Path]) -> Workload:
    where = f"workload[{index}]"
    _known_keys(path, where, entry, WORKLOAD_KEYS)
    sweep = entry.get("sweep")
    if not isinstance(sweep, str):
        raise ConfigError(path, f"{where}.sweep", f"must name a sweep file, but got {sweep!r}")
    beside = path.parent / (sweep if sweep.endswith(".toml") else f"{sweep}.toml")
    sweep_path = beside if beside.is_file() else find_sweep(sweep)
    for key, valid, rule in (("dataset", config_module.is_dataset_name, config_module.DATASET_RULE),
                             ("model", config_module.is_model_name, config_module.MODEL_RULE)):
        if key in entry and not (isinstance(entry[key], str) and valid(entry[key])):
            raise ConfigError(path, f"{where}.{key}", f"must be {rule}, but got {entry[key]!r}")
    raw = config_module.read_toml(sweep_path)
    base = config_module.parse(copy.deepcopy(raw), sweep_path)
    dataset = entry.get("dataset", base.dataset)
    model = entry.get("model", base.model)
    # (an import path's ':' may not stand in a study name)
    study = entry.get("study") or "-".join(
        part.replace(":", "-")
        for part in [suite, sweep_path.stem, dataset] + ([model] if model != base.model else []))
    raw.setdefault("data", {})["dataset"] = dataset
    raw.setdefault("train", {})["model"] = model
    raw.setdefault("study", {})["name"] = study
    return Workload(sweep_path, dataclasses.replace(config_module.parse(raw, sweep_path),
                                                    suite=suite))



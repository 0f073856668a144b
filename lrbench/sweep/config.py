"""Sweep file (TOML) -> a frozen, validated ``SweepConfig``.

Everything is checked here, once: unknown keys, wrong types and out-of-range values
raise ``ConfigError`` naming the file, the key and the bad value. Every later layer
trusts the config it is given.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrbench.errors import ConfigError, UserError
from lrbench.space import Axis, Choice, FloatRange, IntRange, describe, grid_values
from lrbench.sweep.seeds import SEED_MAX
from lrbench.train import data, workload
from lrbench.train.losses import DEFAULT_LOSS, LOSSES
from lrbench.train.optimizers import OPTIMIZERS, is_schedule_free, schedule_free_form
from lrbench.train.schedules import FAMILIES, PARAM_LIMITS, SCHEDULE_FREE_FAMILY, limit_of
from lrbench.train.trial import OptimizerConfig  # the [optimizer] table

SAMPLERS = ("tpe", "qmc", "random", "grid")
# "search": one sampler over the families, to find the best configuration (budgets per
# family follow the sampler); "compare": every family gets the same budget of trials per
# repeat, and the tuning is repeated (lrbench.sweep.protocol).
PROTOCOLS = ("search", "compare")
DEFAULT_REPEATS = 3  # AlgoPerf repeats its tuning 5 times; 3 keeps a CPU comparison short
PRUNERS = ("median", "hyperband", "none")
PLATEAU_METRICS = ("accuracy", "loss")

# Every key each table may hold: a missing required key beside an unknown one is
# reported as the unknown one (most likely its typo).
KEYS = {
    "study": ("name", "trials", "seed", "sampler", "pruner", "protocol", "budget", "repeats"),
    "data": ("dataset", "validation_size"),
    "train": ("model", "epochs", "batch_size", "loss"),
    "optimizer": ("name", "lr", "momentum", "nesterov", "weight_decay"),
    "search": ("lr", "warmup_epochs"),
    "schedules": ("families", "plateau_metric"),  # and a [schedules.F] table per family
}


# Study names become file names (claim locks, report figures) and command-line words.
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
STUDY_NAME_RULE = ("a name of letters, digits, '.', '_' and '-' (1-100 characters, starting "
                   "with a letter or digit)")
SEED_RULE = f"an integer from 0 to {SEED_MAX}"


def valid_study_name(name: object) -> bool:
    return isinstance(name, str) and _STUDY_NAME.fullmatch(name) is not None


# A model or data set: a built-in's name, or a user's "package.module:attribute".
MODEL_RULE = (f"one of {workload.BUILTIN_MODELS}, or a factory's import path "
              f"{workload.IMPORT_PATH_RULE}")
DATASET_RULE = (f"one of {tuple(data.DATASETS)}, or a loader's import path "
                f"{workload.IMPORT_PATH_RULE}")


def is_model_name(name: str) -> bool:
    return name in workload.BUILTIN_MODELS or workload.check_import_path(name) is None


def is_dataset_name(name: str) -> bool:
    return name in data.DATASETS or workload.check_import_path(name) is None


@dataclass(frozen=True)
class FixedTrial:
    """A configuration the sweep runs as-is (enqueued), e.g. the tutorial's five runs."""

    family: str
    params: Mapping[str, Any]
    lr: float | None = None  # None: the optimizer's lr (or the searched lr's first trial)
    warmup_epochs: int = 0
    epochs: int | None = None  # None: the sweep's epochs


@dataclass(frozen=True)
class SweepConfig:
    study: str
    trials: int
    seed: int
    sampler: str
    pruner: str
    dataset: str
    validation_size: int | float
    model: str
    epochs: int
    batch_size: int
    optimizer: OptimizerConfig
    families: tuple[str, ...]
    plateau_metric: str = "accuracy"
    lr_axis: Axis | None = None  # searched base LR, or None for the optimizer's lr
    warmup_axis: Axis | None = None  # searched warm-up epochs, or None for no warm-up
    range_overrides: Mapping[str, Mapping[str, Axis]] = field(default_factory=dict)
    # A family's own base-LR range (``[schedules.F] lr``), searched as "F.lr" instead of
    # the shared "lr": e.g. schedule-free SGD wants 10-50x SGD's LR.
    family_lr_axes: Mapping[str, Axis] = field(default_factory=dict)
    fixed: tuple[FixedTrial, ...] = ()
    source: str = "<memory>"
    # The sweep file's folder: a user's model and data modules are looked for there first.
    workload_root: str = ""
    suite: str = ""  # the suite this study is a workload of: the report compares them
    loss: str = DEFAULT_LOSS  # "mse": a regression of a user's (lrbench.train.losses)
    # What ``--epochs`` changed in the epoch-dependent ranges, for the terminal.
    clipped: tuple[str, ...] = ()
    protocol: str = "search"
    budget: int | None = None  # compare: search trials per family and repeat
    repeats: int = 1  # compare: independent repeats of the whole tuning

    @property
    def compare(self) -> bool:
        return self.protocol == "compare"

    def space(self, family: str) -> dict[str, Axis]:
        """The family's search space: the registry's defaults, then the file's ranges."""
        axes = FAMILIES[family].default_space(self.epochs)
        axes.update(self.range_overrides.get(family, {}))
        return axes

    def lr_search(self, family: str) -> tuple[str, Axis] | None:
        """The Optuna param and range a trial of ``family`` searches its base LR on, if any."""
        if family in self.family_lr_axes:
            return f"{family}.lr", self.family_lr_axes[family]
        if self.lr_axis is not None:
            return "lr", self.lr_axis
        return None

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same study (the trial count and file path do not)."""
        as_dict = _jsonable(dataclasses.asdict(self))
        # The counts may grow on a resume (a larger budget, more repeats): not the setup.
        for key in ("trials", "source", "study", "clipped", "budget", "repeats",
                    "workload_root", "suite"):
            as_dict.pop(key)
        if not self.family_lr_axes:  # as studies made before it existed recorded themselves
            as_dict.pop("family_lr_axes")
        if not self.compare:  # likewise studies made before protocols existed
            as_dict.pop("protocol")
        if self.loss == DEFAULT_LOSS:  # and before losses
            as_dict.pop("loss")
        return as_dict

    def with_overrides(self, *, trials: int | None = None, epochs: int | None = None,
                       dataset: str | None = None, seed: int | None = None,
                       study: str | None = None, protocol: str | None = None,
                       budget: int | None = None, repeats: int | None = None) -> SweepConfig:
        """The command line's overrides (``--epochs 2``), checked like the file's values."""
        given = {"trials": trials, "epochs": epochs, "dataset": dataset, "seed": seed,
                 "study": study, "protocol": protocol, "budget": budget, "repeats": repeats}
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if not changes:
            return self
        path = Path(self.source)
        compare = changes.get("protocol", self.protocol) == "compare"
        if compare and trials is not None:
            raise ConfigError(path, "study.trials", f"--trials {trials}: the compare protocol "
                                                    f"runs budget x families x repeats trials; "
                                                    f"set --budget instead")
        if not compare and (budget is not None or repeats is not None):
            flag = "--budget" if budget is not None else "--repeats"
            raise ConfigError(path, "study.protocol", f"{flag} needs the compare protocol, "
                                                      f"but the protocol is 'search'")
        if compare and self.budget is None and budget is None:
            raise ConfigError(path, "study.budget", "the compare protocol needs a budget "
                                                    "(trials per family and repeat): --budget N")
        if changes.get("protocol") == "search" and self.compare and trials is None:
            raise ConfigError(path, "study.trials", "the search protocol needs a trial count: "
                                                    "--trials N")
        if "epochs" in changes:  # "--epochs 2" shortens every trial, the fixed ones too
            changes["fixed"] = tuple(dataclasses.replace(t, epochs=None) for t in self.fixed)
            if changes["epochs"] != self.epochs:
                changes.update(_follow_epochs(self, changes["epochs"]))
        updated = dataclasses.replace(self, **changes)
        if updated.compare:
            updated = dataclasses.replace(
                updated, repeats=repeats or (self.repeats if self.compare else DEFAULT_REPEATS))
            updated = dataclasses.replace(updated, trials=compare_trials(updated))
        else:
            updated = dataclasses.replace(updated, budget=None, repeats=1)
        _check_whole(updated, path)
        return updated


def compare_trials(config: SweepConfig) -> int:
    """The compare protocol's trial count: every family's budget in every repeat."""
    return (config.budget or 0) * len(config.families) * config.repeats


def _follow_epochs(config: SweepConfig, epochs: int) -> dict[str, Any]:
    """Epoch-dependent ranges for ``--epochs``: the registry's defaults follow the epochs
    (step_size up to them, milestones below them, ...), and the searched warm-up is clipped
    below them. Each change is said on the terminal (``clipped``). An explicit family
    range that no longer fits is left as written: ``_check_whole`` refuses it."""
    said = []
    for family in config.families:
        before, after = (FAMILIES[family].default_space(e) for e in (config.epochs, epochs))
        for name, axis in after.items():
            if axis != before[name] and name not in config.range_overrides.get(family, {}):
                said.append(f"{family}.{name} {describe(before[name])} -> {describe(axis)}")
    changes: dict[str, Any] = {}
    warmup = config.warmup_axis
    if isinstance(warmup, IntRange) and warmup.high >= epochs and warmup.low < epochs:
        changes["warmup_axis"] = IntRange(warmup.low, epochs - 1)
    elif isinstance(warmup, Choice) and any(_is_int(v) and 0 <= v < epochs
                                            for v in warmup.choices):
        changes["warmup_axis"] = Choice(tuple(v for v in warmup.choices
                                              if not (_is_int(v) and v >= epochs)))
    if changes.get("warmup_axis", warmup) != warmup:
        said.append(f"warmup_epochs {describe(warmup)} -> {describe(changes['warmup_axis'])}")
    changes["clipped"] = tuple(said)
    return changes


def _check_epoch_ranges(config: SweepConfig, path: Path) -> None:
    """A family range written in the file must fit the run's epochs where it counts
    epochs (the registry's range for it follows the epochs): a step_size, milestone or
    restart period beyond the last epoch never takes effect."""
    for family, axes in config.range_overrides.items():
        fitting = FAMILIES[family].default_space(config.epochs)
        unbounded = FAMILIES[family].default_space(10 ** 6)
        for name, axis in axes.items():
            if not isinstance(fitting[name], IntRange) or fitting[name] == unbounded[name]:
                continue  # does not count epochs
            if any(_is_int(v) and v > config.epochs for v in _values(axis)):
                raise ConfigError(path, f"schedules.{family}.{name}",
                                  f"{describe(axis)} does not fit {config.epochs} epochs: "
                                  f"values above {config.epochs} never take effect; narrow "
                                  f"the range or raise the epochs")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --- reading -------------------------------------------------------------------------


class _Table:
    """A TOML table being read: typed getters that name file and key on error."""

    def __init__(self, path: Path, prefix: str, values: Mapping[str, Any],
                 known: tuple[str, ...] = ()) -> None:
        self.path, self.prefix, self.values = path, prefix, dict(values)
        self.seen: set[str] = set()
        self.known = known  # keys read later; not mistaken for typos of a required key

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), message)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...,
            check: Callable[[Any], bool] | None = None, expect: str = "") -> Any:
        self.seen.add(name)
        if name not in self.values:
            if default is ...:
                unknown = sorted(set(self.values) - self.seen - set(self.known))
                if unknown:  # most likely a typo of this very key: name it
                    raise self.error(unknown[0], f"unknown key; {self.key(name)} is required")
                raise self.error(name, "is required")
            return default
        value = self.values[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        bad_bool = isinstance(value, bool) and bool not in kinds
        if bad_bool or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.error(name, f"must be {names}, but got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):  # TOML has inf and nan
            raise self.error(name, f"must be a finite number, but got {value!r}")
        if check is not None and not check(value):
            raise self.error(name, f"must be {expect}, but got {value!r}")
        return value

    def table(self, name: str, known: tuple[str, ...] = ()) -> _Table:
        self.seen.add(name)
        values = self.values.get(name, {})
        if not isinstance(values, Mapping):
            raise self.error(name, f"must be a table, but got {values!r}")
        return _Table(self.path, self.key(name), values, known)

    def finish(self) -> None:
        """Unknown keys are errors: a typo must not fall back to a default silently."""
        unknown = sorted(set(self.values) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise self.error(unknown[0], f"unknown key (known here: {known})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _axis(table: _Table, name: str, integer: bool) -> Axis:
    """``{low, high, log}`` -> range; a list -> choice; a bare value -> fixed."""
    raw = table.values[name]
    table.seen.add(name)
    number = (int,) if integer else (int, float)
    try:
        if isinstance(raw, Mapping):
            spec = _Table(table.path, table.key(name), raw, ("low", "high", "log"))
            low = spec.get("low", number)
            high = spec.get("high", number)
            log = spec.get("log", bool, False)
            spec.finish()
            if integer:
                return IntRange(low, high, log)
            return FloatRange(float(low), float(high), log)
        values = raw if isinstance(raw, list) else [raw]
        for value in values:
            if isinstance(value, float) and not math.isfinite(value):
                raise table.error(name, f"values must be finite numbers, but got {value!r}")
        return Choice(tuple(values))
    except ValueError as err:  # from the range's own checks (low > high, log with low <= 0)
        raise table.error(name, f"{err}") from None


def _values(axis: Axis) -> list[Any]:
    if isinstance(axis, Choice):
        return list(axis.choices)
    return [axis.low, axis.high]


def _not_a_positive_lr(axis: Axis) -> list[Any]:
    """The values of an LR axis that are not positive numbers (none: a usable axis)."""
    return [v for v in _values(axis)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0]


def _family_ranges(path: Path, sched: _Table, family: str, epochs: int) -> dict[str, Axis]:
    """A ``[schedules.F]`` table's ranges; its ``lr`` (the family's own LR range) included."""
    table = sched.table(family)
    defaults = FAMILIES[family].default_space(epochs)
    axes: dict[str, Axis] = {}
    for name in table.values:
        if name == "lr":
            axes[name] = _axis(table, name, False)
            bad = _not_a_positive_lr(axes[name])
            if bad:
                raise table.error(name, f"values must be > 0, but got {bad[0]!r}")
            continue
        if name not in defaults:
            known = ", ".join(defaults) or "none"
            raise table.error(name, f"unknown parameter of {family!r} (its parameters: {known}; "
                                    f"and lr, its own LR range)")
        integer = isinstance(defaults[name], IntRange)
        numeric = not isinstance(defaults[name], Choice)
        axis = _axis(table, name, integer)
        _check_axis_values(table, family, name, axis, integer, numeric)
        axes[name] = axis
    return axes


def _check_axis_values(table: _Table, family: str, name: str, axis: Axis, integer: bool,
                       numeric: bool) -> None:
    for value in _values(axis):
        if integer and not _is_int(value):
            raise table.error(name, f"must be an integer, but got {value!r}")
        if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise table.error(name, f"must be a number, but got {value!r}")
        limit = limit_of(family, name)
        if limit is not None:
            ok, expect = limit
            if isinstance(value, bool) or not ok(value):
                raise table.error(name, f"must be {expect}, but got {value!r}")


def _fixed_trial(path: Path, index: int, raw: Any, config: SweepConfig) -> FixedTrial:
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"fixed[{index}]", f"must be a table, but got {raw!r}")
    table = _Table(path, f"fixed[{index}]", raw,
                   ("schedule", "lr", "warmup_epochs", "epochs", *PARAM_LIMITS,
                    *(name for f in FAMILIES.values() for name in f.limits)))
    family = table.get("schedule", str, check=lambda f: f in config.families,
                       expect=f"one of the sweep's families {list(config.families)}")
    lr = table.get("lr", (int, float), None, lambda v: v > 0, "> 0")
    warmup = table.get("warmup_epochs", int, 0, lambda v: v >= 0, ">= 0")
    epochs = table.get("epochs", int, None, lambda v: v >= 1, ">= 1")
    params = {name: table.get(name, (int, float, str)) for name in config.space(family)}
    table.finish()
    return FixedTrial(family, params, None if lr is None else float(lr), warmup, epochs)


def _check_fixed(path: Path, index: int, trial: FixedTrial, config: SweepConfig) -> None:
    """A fixed trial must lie inside the searched space: Optuna records it on those axes."""
    where = f"fixed[{index}]"
    written = config.range_overrides.get(trial.family, {})
    checks = [(f"{where}.{n}", v, axis, f"[schedules.{trial.family}] {n}" + (
               "" if n in written else f" (its default range follows train.epochs = "
                                       f"{config.epochs})"))
              for n, axis in config.space(trial.family).items() for v in [trial.params[n]]]
    lr_search = config.lr_search(trial.family)
    if lr_search is not None and trial.lr is not None:
        param, axis = lr_search
        source = "search.lr" if param == "lr" else f"[schedules.{trial.family}] lr"
        checks.append((f"{where}.lr", trial.lr, axis, source))
    if config.warmup_axis is not None:
        checks.append((f"{where}.warmup_epochs", trial.warmup_epochs, config.warmup_axis,
                       "search.warmup_epochs"))
    for key, value, axis, source in checks:
        if not axis.contains(value):
            raise ConfigError(path, key, f"= {value!r} lies outside the searched range "
                                         f"{describe(axis)}; widen {source}")


def read_toml(path: Path) -> dict[str, Any]:
    """A sweep or suite file's tables; any failure to read it names the file and why."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "no such sweep file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, "(syntax)", f"not valid TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(path, "(file)", f"cannot be read: {err}") from None


def load(path: str | Path) -> SweepConfig:
    """Read and validate one sweep file."""
    path = Path(path)
    return parse(read_toml(path), path)


def parse(raw: Mapping[str, Any], path: Path) -> SweepConfig:
    top = _Table(path, "", raw)
    study, dset, train, opt = (top.table(name, KEYS[name]) for name in
                               ("study", "data", "train", "optimizer"))
    sched = top.table("schedules", (*KEYS["schedules"], *FAMILIES))

    positive_int = {"check": lambda v: v >= 1, "expect": ">= 1"}
    epochs = train.get("epochs", int, **positive_int)
    families = tuple(sched.get("families", list, check=bool, expect="a non-empty list"))
    for family in families:
        if not isinstance(family, str) or family not in FAMILIES:
            raise sched.error("families", f"has unknown family {family!r} "
                                          f"(known: {', '.join(FAMILIES)})")
    search = top.table("search", KEYS["search"])
    protocol = study.get("protocol", str, "search", lambda v: v in PROTOCOLS,
                         f"one of {PROTOCOLS}")
    budget, repeats = None, 1
    if protocol == "compare":
        if "trials" in study.values:
            raise study.error("trials", "the compare protocol runs budget x families x repeats "
                                        "trials: remove trials and set budget (trials per "
                                        "family and repeat)")
        budget = study.get("budget", int, **positive_int)
        repeats = study.get("repeats", int, DEFAULT_REPEATS, **positive_int)
        trials = budget * len(families) * repeats
    else:
        for key in ("budget", "repeats"):
            if key in study.values:
                raise study.error(key, 'needs protocol = "compare" (the search protocol '
                                       'counts trials: study.trials)')
        trials = study.get("trials", int, **positive_int)
    config = SweepConfig(
        study=study.get("name", str, check=valid_study_name, expect=STUDY_NAME_RULE),
        trials=trials, protocol=protocol, budget=budget, repeats=repeats,
        seed=study.get("seed", int, 0, lambda v: 0 <= v <= SEED_MAX, SEED_RULE),
        sampler=study.get("sampler", str, "tpe", lambda v: v in SAMPLERS, f"one of {SAMPLERS}"),
        pruner=study.get("pruner", str, "median", lambda v: v in PRUNERS, f"one of {PRUNERS}"),
        dataset=dset.get("dataset", str, "mnist", is_dataset_name, DATASET_RULE),
        validation_size=dset.get("validation_size", (int, float), 0.1,
                                 lambda v: v >= 0 if isinstance(v, int) else 0 <= v < 1,
                                 "a count >= 1, a fraction in (0, 1), or 0 for the test set"),
        model=train.get("model", str, "fnn", is_model_name, MODEL_RULE),
        epochs=epochs,
        batch_size=train.get("batch_size", int, 100, **positive_int),
        loss=train.get("loss", str, DEFAULT_LOSS, lambda v: v in LOSSES, f"one of {LOSSES}"),
        optimizer=OptimizerConfig(
            name=opt.get("name", str, "sgd", lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            lr=float(opt.get("lr", (int, float), 0.1, lambda v: v > 0, "> 0")),
            momentum=float(opt.get("momentum", (int, float), 0.9, lambda v: 0 <= v < 1,
                                   "in [0, 1)")),
            nesterov=opt.get("nesterov", bool, True),
            weight_decay=float(opt.get("weight_decay", (int, float), 0.0, lambda v: v >= 0,
                                       ">= 0")),
        ),
        families=families,
        plateau_metric=sched.get("plateau_metric", str, "accuracy",
                                 lambda v: v in PLATEAU_METRICS, f"one of {PLATEAU_METRICS}"),
        lr_axis=_axis(search, "lr", False) if "lr" in search.values else None,
        warmup_axis=(_axis(search, "warmup_epochs", True)
                     if "warmup_epochs" in search.values else None),
        source=str(path),
        workload_root=str(path.resolve().parent),
    )
    ranges = {f: _family_ranges(path, sched, f, epochs) for f in families if f in sched.values}
    config = dataclasses.replace(
        config, family_lr_axes={f: axes.pop("lr") for f, axes in ranges.items() if "lr" in axes},
        range_overrides=ranges)
    for name in set(sched.values) - sched.seen:
        if name in FAMILIES:
            raise sched.error(name, f"has ranges but {name!r} is not in schedules.families")
    for table in (study, dset, train, opt, sched, search):
        table.finish()
    top.get("fixed", list, [])
    top.finish()
    fixed = tuple(_fixed_trial(path, i, r, config) for i, r in enumerate(raw.get("fixed", [])))
    config = dataclasses.replace(config, fixed=fixed)
    _check_whole(config, path)
    return config


# Beyond these a sweep cannot finish on any machine lrbench runs on (10,000 epochs of the
# FNN on MNIST are ~1 GPU-hour per trial); a typo (10**9) gets a clear error, not a hang.
MOST_EPOCHS = 10_000
MOST_TRIALS = 1_000_000


def _check_whole(config: SweepConfig, path: Path) -> None:
    """Checks that span sections, rerun after command-line overrides."""
    if config.epochs < 1:
        raise ConfigError(path, "train.epochs", f"must be >= 1, but got {config.epochs}")
    if config.trials < 1:
        raise ConfigError(path, "study.trials", f"must be >= 1, but got {config.trials}")
    if config.epochs > MOST_EPOCHS:
        raise ConfigError(path, "train.epochs", f"must be at most {MOST_EPOCHS:,}, but got "
                                                f"{config.epochs:,}")
    if config.trials > MOST_TRIALS:
        key = "study.budget" if config.compare else "study.trials"
        raise ConfigError(path, key, f"makes {config.trials:,} trials, more than "
                                     f"{MOST_TRIALS:,}")
    _check_epoch_ranges(config, path)
    repeated = sorted({f for f in config.families if config.families.count(f) > 1})
    if repeated:
        raise ConfigError(path, "schedules.families", f"lists {repeated[0]!r} twice")
    if config.compare:
        _check_compare(config, path)
    if not 0 <= config.seed <= SEED_MAX:
        raise ConfigError(path, "study.seed", f"must be {SEED_RULE}, but got {config.seed}")
    if not valid_study_name(config.study):
        raise ConfigError(path, "study.name", f"must be {STUDY_NAME_RULE}, but got "
                                              f"{config.study!r}")
    if not is_dataset_name(config.dataset):
        raise ConfigError(path, "data.dataset", f"must be {DATASET_RULE}, but got "
                                                f"{config.dataset!r}")
    opt = config.optimizer
    if opt.name == "sgd" and opt.nesterov and not opt.momentum:
        raise ConfigError(path, "optimizer.nesterov", "needs momentum > 0, but momentum is 0")
    if is_schedule_free(opt.name) and not 0 < opt.momentum < 1:
        raise ConfigError(path, "optimizer.momentum", f"is schedule-free's beta for "
                                                      f"{opt.name}: must be in (0, 1), but got "
                                                      f"{opt.momentum}")
    if SCHEDULE_FREE_FAMILY in config.families:
        try:
            schedule_free_form(opt, 0.9)
        except ValueError as err:
            raise ConfigError(path, "optimizer.name", f"{err} (schedules.families has "
                                                      f"{SCHEDULE_FREE_FAMILY!r})") from None
    bad = _not_a_positive_lr(config.lr_axis) if config.lr_axis is not None else []
    if bad:
        raise ConfigError(path, "search.lr", f"values must be > 0, but got {bad[0]!r}")
    if config.warmup_axis is not None:
        for value in _values(config.warmup_axis):
            if not _is_int(value) or not 0 <= value < config.epochs:
                raise ConfigError(path, "search.warmup_epochs",
                                  f"values must be integers in [0, epochs={config.epochs}), "
                                  f"but got {value!r}")
    if config.sampler == "grid":
        for key, axis in (("search.lr", config.lr_axis),
                          ("search.warmup_epochs", config.warmup_axis)):
            if axis is not None and not isinstance(axis, Choice):
                raise ConfigError(path, key, f"the grid sampler needs listed values, but got "
                                             f"{describe(axis)}")
        for family in config.families:
            for name, axis in config.space(family).items():
                try:
                    grid_values(axis)
                except ValueError:
                    raise ConfigError(path, f"schedules.{family}.{name}",
                                      f"the grid sampler needs listed values, but got "
                                      f"{describe(axis)}") from None
    for i, trial in enumerate(config.fixed):
        _check_fixed(path, i, trial, config)
        epochs = trial.epochs or config.epochs
        if trial.warmup_epochs >= epochs:
            raise ConfigError(path, f"fixed[{i}].warmup_epochs",
                              f"must be < epochs={epochs}, but got {trial.warmup_epochs}")


def _check_compare(config: SweepConfig, path: Path) -> None:
    """What the compare protocol cannot honour: each would give a family more trials or
    another sampler than the others."""
    if config.budget is None or config.budget < 1:
        raise ConfigError(path, "study.budget", f"must be >= 1, but got {config.budget}")
    if config.repeats < 1:
        raise ConfigError(path, "study.repeats", f"must be >= 1, but got {config.repeats}")
    if config.fixed:
        raise ConfigError(path, "fixed[0]", "fixed trials would give their family more than "
                                            "its budget under the compare protocol; use "
                                            'protocol = "search", or remove them')
    if config.sampler not in ("tpe", "random"):
        why = ("sets each family's trial count by its grid's size" if config.sampler == "grid"
               else "walks one sequence shared by the whole study")
        raise ConfigError(path, "study.sampler", f"{config.sampler!r} {why}; the compare "
                                                 f"protocol needs tpe or random")


def check_loss_against_data(config: SweepConfig, labels_loss: str) -> None:
    """The loss must suit the labels the data set holds: class labels for cross-entropy,
    float targets for the mean squared error."""
    if config.loss == labels_loss:
        return
    holds = "float targets (a regression)" if labels_loss == "mse" else "integer class labels"
    raise ConfigError(Path(config.source), "train.loss",
                      f"{config.loss!r} does not fit {config.dataset}, which holds {holds}: "
                      f"set loss = {labels_loss!r}")


def check_against_data(config: SweepConfig, train_images: int) -> None:
    """What only the data's size can tell: the split must leave at least one batch of
    training images, and a batch no larger than them (named by file and key)."""
    path = Path(config.source)
    try:
        validation = data.validation_count(config.validation_size, train_images)
    except UserError:
        validation = train_images  # leaves nothing: said below, with the file and key
    left = train_images - validation
    if left < config.batch_size <= train_images:  # the hold-out, not the batch, is the cause
        raise ConfigError(path, "data.validation_size",
                          f"{config.validation_size!r} leaves {max(left, 0):,} of the "
                          f"{train_images:,} training images of {config.dataset} for "
                          f"training, less than one batch (train.batch_size = "
                          f"{config.batch_size:,}); hold out fewer")
    if config.batch_size > left:
        raise ConfigError(path, "train.batch_size",
                          f"{config.batch_size:,} is more than the {left:,} training images "
                          f"of {config.dataset}: every epoch would be one partial batch")

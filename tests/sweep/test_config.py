"""Tests for lrbench.sweep.config: sweep TOML -> frozen, validated SweepConfig (no data, no GPU)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from lrbench.errors import ConfigError, UserError
from lrbench.space import Choice, FloatRange, IntRange
from lrbench.sweep import config as cfg
from lrbench.sweep import suite
from lrbench.sweep.config import FixedTrial, OptimizerConfig, SweepConfig, load
from lrbench.train.schedules import FAMILIES

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"

# --- building sweep files ------------------------------------------------------------

# The smallest valid file, as {section: {key: raw TOML value}}. "" is the top level.
BASE: dict[str, dict[str, str]] = {
    "study": {"name": '"t"', "trials": "3"},
    "train": {"epochs": "5"},
    "schedules": {"families": '["step", "plateau"]'},
}

MINIMAL = """\
[study]
name = "t"
trials = 3
[train]
epochs = 5
[schedules]
families = ["step", "plateau"]
"""

FULL = """\
[study]
name = "step"
trials = 20
seed = 7
sampler = "qmc"
pruner = "hyperband"

[data]
dataset = "fashion-mnist"
validation_size = 5000

[train]
model = "cnn"
epochs = 5
batch_size = 64

[optimizer]
name = "sgd"
lr = 0.05
momentum = 0.8
nesterov = false
weight_decay = 1e-4

[search]
lr = { low = 0.01, high = 0.5, log = true }
warmup_epochs = { low = 0, high = 2 }

[schedules]
families = ["step", "plateau"]
plateau_metric = "loss"

[schedules.step]
gamma = { low = 0.05, high = 0.99, log = true }
step_size = { low = 1, high = 3 }

[[fixed]]
schedule = "step"
step_size = 1
gamma = 0.1
epochs = 4

[[fixed]]
schedule = "plateau"
factor = 0.5
patience = 1
lr = 0.1
warmup_epochs = 1
"""


def render(mutation: dict[str, str | None]) -> str:
    """BASE with ``{"section.key": raw TOML value}`` applied (None deletes the key).

    The section is everything before the last dot (``schedules.step.gamma`` ->
    ``[schedules.step] gamma``); a key without a dot is a top-level key. The special
    key ``"[[fixed]]"`` holds raw text appended at the end (array-of-tables entries).
    """
    sections = {name: dict(keys) for name, keys in BASE.items()}
    sections.setdefault("", {})
    tail = ""
    for dotted, raw in mutation.items():
        if dotted == "[[fixed]]":
            tail += raw or ""
            continue
        section, _, key = dotted.rpartition(".")
        keys = sections.setdefault(section, {})
        if raw is None:
            keys.pop(key, None)
        else:
            keys[key] = raw
    lines = [f"{k} = {v}" for k, v in sections.pop("").items()]
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n" + tail


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fixed(**values: str) -> str:
    """One ``[[fixed]]`` entry from raw TOML values."""
    return "[[fixed]]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


def assert_names(err: ConfigError, path: Path, key: str, bad: str) -> None:
    """The error names the file, the dotted key and the bad value (after the path)."""
    text = str(err)
    assert str(path) in text
    assert err.path == str(path)
    assert err.key == key
    rest = text.removeprefix(f"{path}: ")
    assert rest.startswith(f"{key}: "), text
    assert bad in rest, f"bad value {bad!r} not named in: {text}"


# --- valid files ---------------------------------------------------------------------


def test_render_minimal_matches_the_literal_minimal(tmp_path: Path) -> None:
    assert load(write(tmp_path, render({}), "a.toml")) == dataclasses.replace(
        load(write(tmp_path, MINIMAL, "b.toml")), source=str(tmp_path / "a.toml"))


def test_minimal_file_gets_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load(path)
    assert config == SweepConfig(
        study="t", trials=3, seed=0, sampler="tpe", pruner="median", dataset="mnist",
        validation_size=0.1, model="fnn", epochs=5, batch_size=100,
        optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True,
                                  weight_decay=0.0),
        families=("step", "plateau"), plateau_metric="accuracy", lr_axis=None,
        warmup_axis=None, range_overrides={}, fixed=(), source=str(path),
        workload_root=str(tmp_path.resolve()),
    )


def test_load_accepts_a_str_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert load(str(path)) == load(path)


def test_full_file_parses_every_value(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load(path)
    assert (config.study, config.trials, config.seed) == ("step", 20, 7)
    assert (config.sampler, config.pruner) == ("qmc", "hyperband")
    assert (config.dataset, config.validation_size) == ("fashion-mnist", 5000)
    assert (config.model, config.epochs, config.batch_size) == ("cnn", 5, 64)
    assert config.optimizer == OptimizerConfig("sgd", 0.05, 0.8, False, 1e-4)
    assert isinstance(config.optimizer.lr, float)
    assert config.families == ("step", "plateau")
    assert config.plateau_metric == "loss"
    assert config.lr_axis == FloatRange(0.01, 0.5, log=True)
    assert config.warmup_axis == IntRange(0, 2)
    assert config.range_overrides == {
        "step": {"gamma": FloatRange(0.05, 0.99, log=True), "step_size": IntRange(1, 3)}}
    assert config.fixed == (
        FixedTrial("step", {"step_size": 1, "gamma": 0.1}, lr=None, warmup_epochs=0, epochs=4),
        FixedTrial("plateau", {"factor": 0.5, "patience": 1}, lr=0.1, warmup_epochs=1,
                   epochs=None),
    )
    assert config.source == str(path)


def test_bare_value_is_fixed_list_is_choice_int_range_stays_int(tmp_path: Path) -> None:
    config = load(write(tmp_path, render({
        "schedules.families": '["step", "cyclic"]',
        "schedules.step.step_size": "2",
        "schedules.step.gamma": "[0.1, 0.5]",
        "schedules.cyclic.mode": '"triangular2"',
        "schedules.cyclic.half_cycle_epochs": "{ low = 1, high = 2 }",
        "search.lr": "[0.05, 0.1]",
        "search.warmup_epochs": "1",
    })))
    assert config.range_overrides == {
        "step": {"step_size": Choice((2,)), "gamma": Choice((0.1, 0.5))},
        "cyclic": {"mode": Choice(("triangular2",)), "half_cycle_epochs": FloatRange(1.0, 2.0)},
    }
    assert config.lr_axis == Choice((0.05, 0.1))
    assert config.warmup_axis == Choice((1,))


def test_grid_sampler_accepts_listed_values_and_linear_int_ranges(tmp_path: Path) -> None:
    config = load(write(tmp_path, render({
        "study.sampler": '"grid"',
        "schedules.step.step_size": "{ low = 1, high = 3 }",
        "schedules.step.gamma": "[0.1, 0.5]",
        "schedules.plateau.factor": "0.5",
        "search.lr": "[0.05, 0.1]",
    })))
    assert config.sampler == "grid"


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(write(tmp_path, FULL))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optimizer.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.fixed[0].family = "plateau"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr_axis.low = 1.0  # type: ignore[union-attr]
    assert isinstance(config.families, tuple) and isinstance(config.fixed, tuple)


# --- space(), identity(), with_overrides() --------------------------------------------


def test_space_merges_registry_defaults_with_file_ranges(tmp_path: Path) -> None:
    config = load(write(tmp_path, render({"schedules.step.gamma": "[0.1, 0.5]"})))
    assert config.space("step") == {"step_size": IntRange(1, 5), "gamma": Choice((0.1, 0.5))}
    assert config.space("plateau") == FAMILIES["plateau"].default_space(5)
    # a fresh dict each call: mutating it changes nothing
    config.space("step")["gamma"] = Choice((0.9,))
    assert config.space("step")["gamma"] == Choice((0.1, 0.5))


def test_space_defaults_follow_the_sweep_epochs(tmp_path: Path) -> None:
    config = load(write(tmp_path, render({"train.epochs": "8"})))
    assert config.space("step")["step_size"] == IntRange(1, 8)


def test_identity_excludes_trials_study_and_source(tmp_path: Path) -> None:
    a = load(write(tmp_path, FULL, "a.toml"))
    text = FULL.replace('name = "step"', 'name = "other"').replace("trials = 20", "trials = 3")
    b = load(write(tmp_path, text, "b.toml"))
    ident = a.identity()
    assert not {"trials", "study", "source", "clipped", "workload_root", "suite"} & set(ident)
    # family_lr_axes only when a family has its own LR range, and protocol only when it is
    # "compare": older studies lack the keys; budget and repeats may grow on a resume
    assert set(ident) == {f.name for f in dataclasses.fields(SweepConfig)} - {
        "trials", "study", "source", "clipped", "family_lr_axes", "protocol", "budget",
        "repeats", "workload_root", "suite", "loss"}  # loss: only when not cross-entropy
    assert ident == b.identity()
    own_lr = FULL.replace("[schedules.step]\n",
                          "[schedules.step]\nlr = { low = 0.5, high = 2.0 }\n")
    assert own_lr != FULL
    owned = load(write(tmp_path, own_lr, "c.toml")).identity()
    assert owned["family_lr_axes"] == {"step": {"low": 0.5, "high": 2.0, "log": False}}
    json.dumps(ident)  # plain JSON: no tuples-as-keys, no dataclasses
    assert ident["families"] == ["step", "plateau"]
    assert ident["range_overrides"]["step"]["gamma"] == {"low": 0.05, "high": 0.99, "log": True}


@pytest.mark.parametrize("change", [
    ("epochs = 5", "epochs = 6"),
    ("seed = 7", "seed = 8"),
    ('model = "cnn"', 'model = "fnn"'),
    ("gamma = 0.1", "gamma = 0.2"),
    ('families = ["step", "plateau"]', 'families = ["step", "plateau", "constant"]'),
])
def test_identity_changes_with_what_makes_a_different_study(tmp_path: Path,
                                                            change: tuple[str, str]) -> None:
    a = load(write(tmp_path, FULL, "a.toml"))
    assert change[0] in FULL
    b = load(write(tmp_path, FULL.replace(change[0], change[1]), "b.toml"))
    assert a.identity() != b.identity()


def test_with_overrides_epochs_clears_fixed_epochs(tmp_path: Path) -> None:
    config = load(write(tmp_path, FULL))
    short = config.with_overrides(epochs=3)
    assert short.epochs == 3
    assert [t.epochs for t in short.fixed] == [None, None]
    assert [t.params for t in short.fixed] == [t.params for t in config.fixed]
    assert short.space("plateau") == FAMILIES["plateau"].default_space(3)
    assert (config.epochs, config.fixed[0].epochs) == (5, 4)  # the original is untouched


def test_with_overrides_epochs_two(tmp_path: Path) -> None:
    config = load(write(tmp_path, render({"[[fixed]]": fixed(
        schedule='"step"', step_size="1", gamma="0.1", epochs="5")})))
    short = config.with_overrides(epochs=2)
    assert short.epochs == 2 and short.fixed[0].epochs is None


def test_epochs_override_clips_epoch_dependent_ranges_and_says_so() -> None:
    """`lrbench sweep all --epochs 2` was refused: the shipped warm-up 0..2 no longer fit."""
    config = load(SWEEPS_DIR / "all.toml")
    short = config.with_overrides(epochs=2)
    assert short.warmup_axis == IntRange(0, 1)
    assert short.space("step")["step_size"] == IntRange(1, 2)
    assert short.space("cosine_restarts")["t_0"] == IntRange(1, 1)
    assert "warmup_epochs 0..2 -> 0..1" in short.clipped
    assert "step.step_size 1..10 -> 1..2" in short.clipped
    assert not any(line.startswith("exponential.") for line in short.clipped)  # unchanged
    assert "clipped" not in short.identity()  # a note, not part of the study's setup
    assert config.with_overrides(epochs=10).clipped == ()  # the file's own epochs


def test_with_overrides_nothing_returns_self(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL))
    assert config.with_overrides() is config
    assert config.with_overrides(epochs=None, trials=None) is config


def test_with_overrides_trials(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL))
    assert config.with_overrides(trials=7).trials == 7


@pytest.mark.parametrize(("text", "changes", "key", "bad"), [
    (MINIMAL, {"epochs": 0}, "train.epochs", "0"),
    (MINIMAL, {"epochs": -1}, "train.epochs", "-1"),
    (MINIMAL, {"trials": 0}, "study.trials", "0"),
    (MINIMAL, {"dataset": "cifar10"}, "data.dataset", "'cifar10'"),
    # FULL's explicit step_size 1..3 does not fit 2 epochs: it stays an error (its
    # warm-up range 0..2 would be clipped to 0..1)
    (FULL, {"epochs": 2}, "schedules.step.step_size", "1..3"),
    # a fixed trial's own warm-up is rechecked against the new epochs
    (render({"[[fixed]]": fixed(schedule='"plateau"', factor="0.5", patience="1",
                                warmup_epochs="2")}),
     {"epochs": 2}, "fixed[0].warmup_epochs", "2"),
])
def test_with_overrides_rechecks(tmp_path: Path, text: str, changes: dict[str, Any],
                                 key: str, bad: str) -> None:
    path = write(tmp_path, text)
    config = load(path)
    with pytest.raises(ConfigError) as info:
        config.with_overrides(**changes)
    assert_names(info.value, path, key, bad)


# --- bad input: each names the file, the key and the bad value ------------------------

STEP_OK = {"schedule": '"step"', "step_size": "1", "gamma": "0.1"}

BAD: list[tuple[str, dict[str, str | None], str, str]] = [
    # (id, mutation of BASE, expected key, expected bad value as it appears in the message)
    # unknown keys
    ("unknown-top-level-key", {"bogus": "1"}, "bogus", "bogus"),
    ("unknown-top-level-table", {"serach.lr": "0.1"}, "serach", "serach"),
    ("typo-in-train", {"train.epoch": "5"}, "train.epoch", "epoch"),
    ("typo-in-study", {"study.trails": "3"}, "study.trails", "trails"),
    ("typo-in-optimizer", {"optimizer.moment": "0.9"}, "optimizer.moment", "moment"),
    ("typo-in-search", {"search.learning_rate": "0.1"}, "search.learning_rate", "learning_rate"),
    ("typo-in-range", {"schedules.step.gamma": "{ low = 0.1, high = 0.5, lg = true }"},
     "schedules.step.gamma.lg", "lg"),
    # missing required keys
    ("missing-name", {"study.name": None}, "study.name", "is required"),
    ("missing-trials", {"study.trials": None}, "study.trials", "is required"),
    ("missing-epochs", {"train.epochs": None}, "train.epochs", "is required"),
    ("missing-families", {"schedules.families": None}, "schedules.families", "is required"),
    ("range-missing-high", {"schedules.step.gamma": "{ low = 0.1 }"},
     "schedules.step.gamma.high", "is required"),
    # wrong types
    ("epochs-string", {"train.epochs": '"5"'}, "train.epochs", "'5'"),
    ("epochs-float", {"train.epochs": "5.0"}, "train.epochs", "5.0"),
    ("nesterov-string", {"optimizer.nesterov": '"yes"'}, "optimizer.nesterov", "'yes'"),
    ("trials-bool", {"study.trials": "true"}, "study.trials", "True"),
    ("name-int", {"study.name": "3"}, "study.name", "3"),
    ("batch-size-float", {"train.batch_size": "100.0"}, "train.batch_size", "100.0"),
    ("lr-string", {"optimizer.lr": '"0.1"'}, "optimizer.lr", "'0.1'"),
    ("validation-size-bool", {"data.validation_size": "false"}, "data.validation_size", "False"),
    ("families-string", {"schedules.families": '"step"'}, "schedules.families", "'step'"),
    ("section-not-table", {"search": "0.1"}, "search", "0.1"),
    ("range-log-string", {"schedules.step.gamma": '{ low = 0.1, high = 0.5, log = "yes" }'},
     "schedules.step.gamma.log", "'yes'"),
    ("range-low-bool", {"schedules.step.gamma": "{ low = true, high = 0.5 }"},
     "schedules.step.gamma.low", "True"),
    ("fixed-not-list", {"fixed": "3"}, "fixed", "3"),
    ("fixed-entry-not-table", {"fixed": "[1]"}, "fixed[0]", "1"),
    # out-of-range numbers
    ("epochs-zero", {"train.epochs": "0"}, "train.epochs", "0"),
    ("epochs-negative", {"train.epochs": "-1"}, "train.epochs", "-1"),
    ("trials-zero", {"study.trials": "0"}, "study.trials", "0"),
    ("seed-negative", {"study.seed": "-1"}, "study.seed", "-1"),
    ("batch-size-zero", {"train.batch_size": "0"}, "train.batch_size", "0"),
    ("name-empty", {"study.name": '""'}, "study.name", "''"),
    ("name-with-slash", {"study.name": '"a/b"'}, "study.name", "'a/b'"),
    ("name-with-space", {"study.name": '"my study"'}, "study.name", "'my study'"),
    ("name-too-long", {"study.name": '"' + "x" * 101 + '"'}, "study.name", "x" * 101),
    ("seed-too-big", {"study.seed": str(2**32)}, "study.seed", str(2**32)),
    ("lr-zero", {"optimizer.lr": "0"}, "optimizer.lr", "0"),
    ("lr-negative", {"optimizer.lr": "-0.1"}, "optimizer.lr", "-0.1"),
    ("momentum-one", {"optimizer.momentum": "1.0"}, "optimizer.momentum", "1.0"),
    ("weight-decay-negative", {"optimizer.weight_decay": "-0.1"}, "optimizer.weight_decay",
     "-0.1"),
    ("validation-size-negative", {"data.validation_size": "-0.1"}, "data.validation_size",
     "-0.1"),
    ("validation-size-negative-count", {"data.validation_size": "-1"}, "data.validation_size",
     "-1"),
    # non-finite numbers (TOML has inf and nan) and sizes no machine finishes
    ("lr-inf", {"optimizer.lr": "inf"}, "optimizer.lr", "finite number, but got inf"),
    ("momentum-nan", {"optimizer.momentum": "nan"}, "optimizer.momentum", "nan"),
    ("search-lr-high-inf", {"search.lr": "{ low = 0.01, high = inf, log = true }"},
     "search.lr.high", "finite number, but got inf"),
    ("search-lr-choice-nan", {"search.lr": "[0.1, nan]"}, "search.lr",
     "finite numbers, but got nan"),
    ("gamma-choice-inf", {"schedules.step.gamma": "[0.1, inf]"}, "schedules.step.gamma",
     "finite numbers, but got inf"),
    ("epochs-absurd", {"train.epochs": str(10**9)}, "train.epochs", "1,000,000,000"),
    ("trials-absurd", {"study.trials": str(10**12)}, "study.trials", "1,000,000,000,000"),
    ("rex-beta-one", {"schedules.families": '["rex"]', "schedules.rex.beta": "1.0"},
     "schedules.rex.beta", "in (0, 1), but got 1.0"),
    # unknown names
    ("families-empty", {"schedules.families": "[]"}, "schedules.families", "[]"),
    ("family-unknown", {"schedules.families": '["step", "stepp"]'}, "schedules.families",
     "'stepp'"),
    ("family-not-string", {"schedules.families": "[3]"}, "schedules.families", "3"),
    ("dataset-unknown", {"data.dataset": '"cifar10"'}, "data.dataset", "'cifar10'"),
    ("model-unknown", {"train.model": '"resnet"'}, "train.model", "'resnet'"),
    ("optimizer-unknown", {"optimizer.name": '"lion"'}, "optimizer.name", "'lion'"),
    ("sampler-unknown", {"study.sampler": '"cmaes"'}, "study.sampler", "'cmaes'"),
    ("pruner-unknown", {"study.pruner": '"asha"'}, "study.pruner", "'asha'"),
    ("plateau-metric-unknown", {"schedules.plateau_metric": '"f1"'},
     "schedules.plateau_metric", "'f1'"),
    # family parameter ranges
    ("gamma-range-low-zero", {"schedules.step.gamma": "{ low = 0.0, high = 0.5 }"},
     "schedules.step.gamma", "0.0"),
    ("gamma-fixed-zero", {"schedules.step.gamma": "0.0"}, "schedules.step.gamma", "0.0"),
    ("gamma-fixed-negative", {"schedules.step.gamma": "-0.5"}, "schedules.step.gamma", "-0.5"),
    ("gamma-choice-zero", {"schedules.step.gamma": "[0.5, 0]"}, "schedules.step.gamma", "0"),
    ("gamma-fixed-above-one", {"schedules.step.gamma": "1.5"}, "schedules.step.gamma", "1.5"),
    ("gamma-range-above-one", {"schedules.step.gamma": "{ low = 0.5, high = 1.5 }"},
     "schedules.step.gamma", "1.5"),
    ("range-low-above-high", {"schedules.step.gamma": "{ low = 0.9, high = 0.1 }"},
     "schedules.step.gamma", "low=0.9"),
    ("int-range-low-above-high", {"schedules.step.step_size": "{ low = 3, high = 1 }"},
     "schedules.step.step_size", "low=3"),
    ("log-range-low-zero", {"schedules.step.gamma": "{ low = 0.0, high = 0.5, log = true }"},
     "schedules.step.gamma", "low=0.0"),
    ("log-range-low-negative",
     {"schedules.plateau.patience": "{ low = -1, high = 2, log = true }"},
     "schedules.plateau.patience", "low=-1"),
    ("empty-choice", {"schedules.step.gamma": "[]"}, "schedules.step.gamma", "none"),
    ("ranges-for-family-not-in-families", {"schedules.cosine.eta_min_ratio": "0.01"},
     "schedules.cosine", "'cosine'"),
    ("unknown-param", {"schedules.step.gama": "0.5"}, "schedules.step.gama", "gama"),
    ("param-of-constant", {"schedules.families": '["constant"]',
                           "schedules.constant.gamma": "0.5"},
     "schedules.constant.gamma", "gamma"),
    ("float-for-int-param", {"schedules.step.step_size": "1.5"}, "schedules.step.step_size",
     "1.5"),
    ("float-in-int-choice", {"schedules.step.step_size": "[1, 2.5]"},
     "schedules.step.step_size", "2.5"),
    ("float-in-int-range", {"schedules.step.step_size": "{ low = 1.5, high = 3 }"},
     "schedules.step.step_size.low", "1.5"),
    ("bool-for-int-param", {"schedules.step.step_size": "true"}, "schedules.step.step_size",
     "True"),
    ("bool-for-float-param", {"schedules.step.gamma": "true"}, "schedules.step.gamma", "True"),
    ("step-size-zero", {"schedules.step.step_size": "0"}, "schedules.step.step_size", "0"),
    ("patience-negative", {"schedules.plateau.patience": "-1"}, "schedules.plateau.patience",
     "-1"),
    ("factor-one", {"schedules.plateau.factor": "1.0"}, "schedules.plateau.factor", "1.0"),
    ("cyclic-mode-unknown", {"schedules.families": '["cyclic"]',
                             "schedules.cyclic.mode": '"exp_range"'},
     "schedules.cyclic.mode", "'exp_range'"),
    # cross-section checks
    ("nesterov-without-momentum", {"optimizer.momentum": "0.0"}, "optimizer.nesterov",
     "momentum is 0"),
    ("nesterov-explicit-without-momentum", {"optimizer.momentum": "0", "optimizer.nesterov":
                                            "true"}, "optimizer.nesterov", "momentum is 0"),
    ("warmup-range-reaches-epochs", {"search.warmup_epochs": "{ low = 0, high = 5 }"},
     "search.warmup_epochs", "5"),
    ("warmup-fixed-equals-epochs", {"search.warmup_epochs": "5"}, "search.warmup_epochs", "5"),
    ("warmup-negative", {"search.warmup_epochs": "[-1, 1]"}, "search.warmup_epochs", "-1"),
    ("warmup-float", {"search.warmup_epochs": "1.5"}, "search.warmup_epochs", "1.5"),
    ("search-lr-zero", {"search.lr": "[0.1, 0.0]"}, "search.lr", "0.0"),
    ("search-lr-range-negative", {"search.lr": "{ low = -0.1, high = 0.5 }"}, "search.lr",
     "-0.1"),
    ("search-lr-log-low-zero", {"search.lr": "{ low = 0, high = 0.5, log = true }"},
     "search.lr", "low=0"),
    ("search-lr-string", {"search.lr": '"fast"'}, "search.lr", "'fast'"),
    ("grid-with-float-range", {"study.sampler": '"grid"', "schedules.step.step_size": "2",
                               "schedules.step.gamma": "{ low = 0.1, high = 0.5 }"},
     "schedules.step.gamma", "0.1..0.5"),
    ("grid-with-default-float-range", {"study.sampler": '"grid"'},
     "schedules.step.gamma", "0.05..0.99 (log)"),
    ("grid-with-log-int-range", {"study.sampler": '"grid"', "schedules.families": '["step"]',
                                 "schedules.step.step_size": "{ low = 1, high = 4, log = true }",
                                 "schedules.step.gamma": "0.5"},
     "schedules.step.step_size", "1..4 (log)"),
    ("grid-with-lr-range", {"study.sampler": '"grid"',
                            "search.lr": "{ low = 0.01, high = 0.5, log = true }"},
     "search.lr", "0.01..0.5 (log)"),
    # schedule-free
    ("schedulefree-lr-zero", {"schedules.families": '["schedulefree"]',
                              "schedules.schedulefree.lr": "[1.0, 0]"},
     "schedules.schedulefree.lr", "0"),
    ("schedulefree-beta-one", {"schedules.families": '["schedulefree"]',
                               "schedules.schedulefree.momentum": "1.0"},
     "schedules.schedulefree.momentum", "1.0"),
    ("schedulefree-of-adam-with-decay", {"schedules.families": '["schedulefree", "step"]',
                                         "optimizer.name": '"adam"',
                                         "optimizer.weight_decay": "0.01"},
     "optimizer.name", "'adam'"),
    ("schedulefree-optimizer-beta-zero", {"optimizer.name": '"sgd_schedulefree"',
                                          "optimizer.momentum": "0.0",
                                          "optimizer.nesterov": "false"},
     "optimizer.momentum", "0.0"),
    # [[fixed]] trials
    ("fixed-family-not-in-families",
     {"[[fixed]]": fixed(schedule='"cosine"', eta_min_ratio="0.01")},
     "fixed[0].schedule", "'cosine'"),
    ("fixed-missing-schedule", {"[[fixed]]": fixed(step_size="1", gamma="0.1")},
     "fixed[0].schedule", "is required"),
    ("fixed-missing-param", {"[[fixed]]": fixed(schedule='"step"', step_size="1")},
     "fixed[0].gamma", "is required"),
    ("fixed-value-outside-default-range",
     {"[[fixed]]": fixed(schedule='"step"', step_size="1", gamma="0.001")},
     "fixed[0].gamma", "0.001"),
    ("fixed-value-outside-file-range",
     {"schedules.step.gamma": "{ low = 0.2, high = 0.5 }",
      "[[fixed]]": fixed(schedule='"step"', step_size="1", gamma="0.1")},
     "fixed[0].gamma", "0.1"),
    ("fixed-value-not-the-file-fixed-value",
     {"schedules.step.step_size": "2", "[[fixed]]": fixed(**STEP_OK)},
     "fixed[0].step_size", "1"),
    ("fixed-float-for-int-param",
     {"[[fixed]]": fixed(schedule='"step"', step_size="1.0", gamma="0.1")},
     "fixed[0].step_size", "1.0"),
    ("fixed-unknown-key", {"[[fixed]]": fixed(**STEP_OK, gama="0.1")}, "fixed[0].gama", "gama"),
    ("fixed-lr-zero", {"[[fixed]]": fixed(**STEP_OK, lr="0")}, "fixed[0].lr", "0"),
    ("fixed-epochs-zero", {"[[fixed]]": fixed(**STEP_OK, epochs="0")}, "fixed[0].epochs", "0"),
    ("fixed-warmup-negative", {"[[fixed]]": fixed(**STEP_OK, warmup_epochs="-1")},
     "fixed[0].warmup_epochs", "-1"),
    ("fixed-warmup-reaches-epochs", {"[[fixed]]": fixed(**STEP_OK, warmup_epochs="5")},
     "fixed[0].warmup_epochs", "5"),
    ("fixed-warmup-reaches-own-epochs",
     {"[[fixed]]": fixed(**STEP_OK, warmup_epochs="3", epochs="3")},
     "fixed[0].warmup_epochs", "3"),
    ("second-fixed-trial-is-named",
     {"[[fixed]]": fixed(**STEP_OK) + fixed(schedule='"plateau"', factor="2.0", patience="1")},
     "fixed[1].factor", "2.0"),
]


@pytest.mark.parametrize(("mutation", "key", "bad"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_input_names_file_key_and_value(tmp_path: Path, mutation: dict[str, str | None],
                                            key: str, bad: str) -> None:
    path = write(tmp_path, render(mutation))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, key, bad)
    assert isinstance(info.value, UserError)


def test_bad_input_ids_are_unique() -> None:
    ids = [case[0] for case in BAD]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("text", "key", "bad"), [
    ("[study\nname = 1\n", "(syntax)", "line 1"),
    (MINIMAL.replace("trials = 3", "trials = 3\ntrials = 4"), "(syntax)", "line 4"),
    ('[study]\nname = "unterminated\n', "(syntax)", "line 2"),
])
def test_malformed_toml(tmp_path: Path, text: str, key: str, bad: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, key, "not valid TOML")
    assert bad in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, "(file)", "no such sweep file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert_names(info.value, tmp_path, "(file)", "cannot be read")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(MINIMAL.replace('"t"', '"caf\xe9"').encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, "(file)", "cannot be read")


def test_parse_accepts_an_already_read_mapping(tmp_path: Path) -> None:
    raw = {"study": {"name": "t", "trials": 1}, "train": {"epochs": 1},
           "schedules": {"families": ["constant"]}}
    config = cfg.parse(raw, tmp_path / "x.toml")
    assert config.families == ("constant",) and config.source == str(tmp_path / "x.toml")


# --- regressions: bugs found while writing these tests, since fixed ---


@pytest.mark.parametrize("raw", ['"x"', '["x", 0.5]'])
def test_bug_string_for_float_param_gives_config_error(tmp_path: Path, raw: str) -> None:
    path = write(tmp_path, render({"schedules.step.gamma": raw}))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, "schedules.step.gamma", "'x'")


def test_bug_unhashable_family_entry_gives_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, render({"schedules.families": '[["step"]]'}))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, "schedules.families", "['step']")


@pytest.mark.parametrize("raw", ["1.5", "1.0"])
def test_bug_float_validation_size_of_one_or_more(tmp_path: Path, raw: str) -> None:
    path = write(tmp_path, render({"data.validation_size": raw}))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, "data.validation_size", raw)


def test_bug_fixed_trial_bool_for_float_param(tmp_path: Path) -> None:
    path = write(tmp_path, render({
        "schedules.families": '["cyclic"]',
        "[[fixed]]": fixed(schedule='"cyclic"', base_lr_ratio="0.1", half_cycle_epochs="true",
                           mode='"triangular"')}))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, "fixed[0].half_cycle_epochs", "True")


@pytest.mark.parametrize(("mutation", "key", "bad"), [
    ({"search.lr": "[0.05, 0.1]", "[[fixed]]": fixed(**STEP_OK, lr="0.2")}, "fixed[0].lr",
     "0.2"),
    ({"search.warmup_epochs": "[1, 2]", "[[fixed]]": fixed(**STEP_OK)},
     "fixed[0].warmup_epochs", "0"),
])
def test_bug_fixed_trial_lr_or_warmup_outside_searched_axis(
        tmp_path: Path, mutation: dict[str, str], key: str, bad: str) -> None:
    path = write(tmp_path, render(mutation))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, key, bad)


def test_bug_typo_of_required_key_names_the_typo(tmp_path: Path) -> None:
    path = write(tmp_path, render({"train.epochs": None, "train.epoch": "5"}))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert_names(info.value, path, "train.epoch", "epoch")


@pytest.mark.parametrize("field", ["batch_size", "model", "sampler"])
def test_with_overrides_accepts_only_the_command_lines_fields(tmp_path: Path,
                                                              field: str) -> None:
    with pytest.raises(TypeError):
        load(write(tmp_path, MINIMAL)).with_overrides(**{field: 1})


def test_bug_with_overrides_epochs_rechecks_fixed_params(tmp_path: Path) -> None:
    path = write(tmp_path, render({"[[fixed]]": fixed(schedule='"step"', step_size="4",
                                                      gamma="0.1")}))
    config = load(path)  # step_size 4 lies in the default 1..5
    with pytest.raises(ConfigError) as info:
        config.with_overrides(epochs=2)  # ... but not in 1..2
    assert info.value.key == "fixed[0].step_size"


# --- shipped sweep files -------------------------------------------------------------

SHIPPED_SUITES = sorted(p for p in SWEEPS_DIR.glob("*.toml") if suite.is_suite(p))
SHIPPED = sorted(set(SWEEPS_DIR.glob("*.toml")) - set(SHIPPED_SUITES))


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.name) for p in SHIPPED]
    or [pytest.param(None, id="none-yet",
                     marks=pytest.mark.skip(reason=f"no sweep files in {SWEEPS_DIR} yet"))],
)
def test_shipped_sweep_loads(path: Path) -> None:
    config = load(path)
    assert config.source == str(path)
    for family in config.families:
        config.space(family)
    json.dumps(config.identity())


@pytest.mark.parametrize("path", SHIPPED_SUITES, ids=[p.name for p in SHIPPED_SUITES])
def test_shipped_suite_loads(path: Path) -> None:
    loaded = suite.load(path, lambda name: SWEEPS_DIR / f"{name}.toml")
    datasets = [w.config.dataset for w in loaded.workloads]
    assert len(set(datasets)) == len(datasets) >= 2  # workloads that differ
    for workload in loaded.workloads:
        assert workload.config.source == str(workload.sweep)
        json.dumps(workload.config.identity())


def test_sweeps_are_shipped() -> None:
    """The README's commands name these files; each must be there (and load, above)."""
    assert {path.stem for path in SHIPPED} >= {"smoke", "step", "plateau", "all", "dlwizard"}
    assert {path.stem for path in SHIPPED_SUITES} >= {"suite"}


# --- the compare protocol ------------------------------------------------------------

COMPARE = MINIMAL.replace("trials = 3", 'protocol = "compare"\nbudget = 4\nrepeats = 2')


def test_compare_counts_budget_x_families_x_repeats(tmp_path: Path) -> None:
    config = load(write(tmp_path, COMPARE))
    assert (config.protocol, config.budget, config.repeats, config.trials) == (
        "compare", 4, 2, 4 * 2 * 2)
    assert config.identity()["protocol"] == "compare"
    default = load(write(tmp_path, COMPARE.replace("repeats = 2\n", ""), "d.toml"))
    assert default.repeats == cfg.DEFAULT_REPEATS


def test_compare_overrides_recount_and_search_needs_trials(tmp_path: Path) -> None:
    config = load(write(tmp_path, COMPARE))
    more = config.with_overrides(budget=6, repeats=3)
    assert more.trials == 6 * 2 * 3 and more.identity() == config.identity()
    searched = load(write(tmp_path, MINIMAL, "s.toml")).with_overrides(protocol="compare",
                                                                        budget=5)
    assert (searched.repeats, searched.trials) == (cfg.DEFAULT_REPEATS, 5 * 2 * 3)
    with pytest.raises(ConfigError, match=r"study\.trials.*--budget"):
        config.with_overrides(trials=9)
    with pytest.raises(ConfigError, match=r"study\.budget"):
        load(write(tmp_path, MINIMAL, "s.toml")).with_overrides(protocol="compare")
    with pytest.raises(ConfigError, match=r"study\.protocol.*--repeats"):
        load(write(tmp_path, MINIMAL, "s.toml")).with_overrides(repeats=2)
    with pytest.raises(ConfigError, match=r"study\.trials.*--trials N"):
        config.with_overrides(protocol="search")


@pytest.mark.parametrize(("text", "key", "message"), [
    (COMPARE.replace("budget = 4", "budget = 4\ntrials = 9"), "study.trials",
     "remove trials"),
    (COMPARE.replace("budget = 4\n", ""), "study.budget", "is required"),
    (COMPARE.replace("budget = 4", "budget = 0"), "study.budget", ">= 1"),
    (COMPARE.replace("repeats = 2", "repeats = 0"), "study.repeats", ">= 1"),
    (MINIMAL.replace("trials = 3", "trials = 3\nbudget = 2"), "study.budget",
     'needs protocol = "compare"'),
    (COMPARE.replace("budget = 4", 'budget = 4\nsampler = "grid"'), "study.sampler",
     "tpe or random"),
    (COMPARE.replace("budget = 4", 'budget = 4\nsampler = "qmc"'), "study.sampler",
     "tpe or random"),
    (COMPARE + '[[fixed]]\nschedule = "step"\nstep_size = 1\ngamma = 0.1\n', "fixed[0]",
     "more than its budget"),
    (COMPARE.replace('protocol = "compare"', 'protocol = "fair"'), "study.protocol", "fair"),
    (MINIMAL.replace('["step", "plateau"]', '["step", "step"]'), "schedules.families",
     "'step' twice"),
])
def test_compare_refuses_what_it_cannot_honour(tmp_path: Path, text: str, key: str,
                                               message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, text))
    assert raised.value.key == key and message in str(raised.value)


@pytest.mark.parametrize(("validation", "batch", "key", "message"), [
    ("5000", "100", "data.validation_size", "leaves 0 of the 5,000 training images"),
    ("4999", "100", "data.validation_size", "leaves 1 of the 5,000"),
    ("0.1", str(10**9), "train.batch_size", "1,000,000,000 is more than the 4,500"),
])
def test_sizes_the_data_cannot_honour_name_file_and_key(tmp_path: Path, validation: str,
                                                        batch: str, key: str, message: str):
    path = write(tmp_path, render({"data.validation_size": validation,
                                   "train.batch_size": batch}))
    with pytest.raises(ConfigError) as raised:
        cfg.check_against_data(load(path), 5000)
    assert raised.value.key == key and message in str(raised.value)
    assert str(path) in str(raised.value)
    cfg.check_against_data(load(write(tmp_path, MINIMAL, "ok.toml")), 5000)  # the default

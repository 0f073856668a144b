"""Adding a schedule family is one declaration: ``schedules.register(Family(...))``.

A family written here, in the test alone, with its builder, space, limits and colour, is
then read by the sweep file's checks, the LR trace the report draws, both engines and the
palette, with no other file touched. (A family added to lrbench itself goes into
``FAMILIES`` in lrbench/train/schedules.py, plus a hand-written LR case in
tests/train/test_schedules.py: README, "Extending lrbench".)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import matplotlib.colors as mcolors
import pytest
from conftest import mnist_subset
from torch.optim import lr_scheduler

from lrbench.errors import ConfigError
from lrbench.report import plots
from lrbench.space import FloatRange
from lrbench.sweep import config as config_module
from lrbench.sweep.config import OptimizerConfig
from lrbench.train import schedules
from lrbench.train.batched import train_batch
from lrbench.train.lr_schedule import lr_trace
from lrbench.train.schedules import Family, ScheduleContext, ScheduleSpec
from lrbench.train.sequential import train_trial
from lrbench.train.trial import TrialSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _halving(opt: Any, p: Mapping[str, Any], ctx: ScheduleContext) -> Any:
    return lr_scheduler.LambdaLR(opt, lambda epoch: p["keep"] ** epoch)


HALVING = Family("halving", "x keep every epoch (a test's own family)", False,
                 lambda epochs: {"keep": FloatRange(0.3, 0.9)}, _halving,
                 limits={"keep": (lambda v: 0 < v < 1, "in (0, 1)")}, colour="#123456")


@pytest.fixture
def halving() -> Iterator[Family]:
    schedules.register(HALVING)
    try:
        yield HALVING
    finally:
        del schedules.FAMILIES["halving"]


def sweep_file(tmp_path: Path, keep: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(f'[study]\nname = "mine"\ntrials = 4\n[train]\nepochs = 3\n'
                    f'[schedules]\nfamilies = ["halving", "step"]\n'
                    f'[schedules.halving]\nkeep = {keep}\n')
    return path


def test_the_sweep_file_takes_the_new_family_and_checks_its_limits(
        halving: Family, tmp_path: Path) -> None:
    config = config_module.load(sweep_file(tmp_path, "{ low = 0.4, high = 0.8 }"))
    assert config.families == ("halving", "step")
    assert config.space("halving") == {"keep": FloatRange(0.4, 0.8)}
    with pytest.raises(ConfigError, match=r"schedules\.halving\.keep.*must be in \(0, 1\), "
                                          r"but got 1\.5"):
        config_module.load(sweep_file(tmp_path, "{ low = 0.4, high = 1.5 }"))


def test_its_lr_trace_and_colour_come_from_the_declaration(halving: Family) -> None:
    trace = lr_trace(ScheduleSpec("halving", {"keep": 0.5}), ScheduleContext(3, 2), 0.1)
    assert trace == [[0.1, 0.1], [0.05, 0.05], [0.025, 0.025]]
    colours = plots.family_palette(["step", "halving"])
    assert colours["halving"] == mcolors.to_rgb("#123456")
    assert colours["step"] == plots.family_palette(["step"])["step"]  # the others keep theirs


def test_both_engines_train_it_alike(halving: Family) -> None:
    data = mnist_subset(500, 200, 0.2)
    spec = TrialSpec(number=0, seed=3, model="fnn", epochs=3, batch_size=100,
                     optimizer=OptimizerConfig("sgd", lr=0.1, momentum=0.9, nesterov=True),
                     schedule=ScheduleSpec("halving", {"keep": 0.5}), data_seed=3)
    alone = train_trial(spec, data)
    (stacked,) = train_batch([spec], data, data_seed=3)
    assert alone.curves["lr"] == stacked.curves["lr"] == [0.1, 0.05, 0.025]
    assert stacked.val_accuracy == pytest.approx(alone.val_accuracy, abs=1 / 100)


def test_an_incomplete_family_is_refused_when_registered() -> None:
    unlimited = Family("loose", "no limits", False, lambda e: {"keep": FloatRange(0.3, 0.9)},
                       _halving)
    with pytest.raises(ValueError, match=r"no limits for \['keep'\]"):
        schedules.register(unlimited)
    with pytest.raises(ValueError, match="already registered"):
        schedules.register(Family("step", "again", False, lambda e: {}, _halving))
    assert "loose" not in schedules.FAMILIES


def test_past_the_palette_new_families_get_new_colours() -> None:
    names = [f"extra{i}" for i in range(len(plots.COLOURS) + 5)]
    colours = plots.family_palette([*schedules.FAMILIES, *names])
    assert len(set(colours.values())) == len(colours)

"""The page's Reproduce block re-creates the study: run its commands into a fresh folder
and the same trials come out (the issue: it left out --data-dir and --results, so confirm
exited 2 offline, and online would have trained on other data)."""

from __future__ import annotations

import shlex
from pathlib import Path

import optuna
import pytest
from conftest import run_lrbench, small_mnist

from lrbench.report import frames as frames_module
from lrbench.report import summary
from lrbench.store.record import plan_of, record_of
from lrbench.store.schema import confirm_study_name
from lrbench.store.storage import open_storage

pytestmark = pytest.mark.slow


def lrbench(command: list[str]) -> None:
    assert command[0] == "lrbench"
    done = run_lrbench(*command[1:], timeout=300)
    assert done.returncode == 0, (command, done.stderr)


def outcome(results: Path, name: str) -> list[tuple]:
    storage = open_storage(str(results / "lrbench.journal"), create=False)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    return [(t.number, t.state, t.params, plan_of(t).confirm_of, plan_of(t).confirm_index,
             record_of(t).val_accuracy, record_of(t).test_accuracy) for t in trials]


def test_the_reproduce_commands_recreate_the_study(tmp_path: Path) -> None:
    data_dir = small_mnist(tmp_path / "data", 300, 200)
    first = tmp_path / "first"
    for args in (["sweep", "smoke", "--trials", "4", "--epochs", "2", "--workers", "1"],
                 ["sweep", "smoke", "--trials", "6", "--epochs", "2", "--workers", "1",
                  "--engine", "sequential"],
                 ["confirm", "smoke", "--seeds", "2", "--workers", "1"]):
        lrbench(["lrbench", *args, "--data-dir", str(data_dir), "--results", str(first)])
    frames = frames_module.load(str(first / "lrbench.journal"))
    commands = summary.reproduce_commands(frames.study("smoke"))
    assert len(commands) == 4  # two sweep runs, the confirm, the report
    assert all(f"--results {first}" in c for c in commands)
    assert all(f"--data-dir {data_dir}" in c for c in commands[:3])
    assert "--engine sequential" in commands[1] and "--workers 1" in commands[2]

    again = tmp_path / "again"
    for command in commands:
        lrbench(shlex.split(command.replace(str(first), str(again))))
    for name in ("smoke", confirm_study_name("smoke")):
        assert outcome(again, name) == outcome(first, name)
    assert (again / "report" / "index.html").is_file()

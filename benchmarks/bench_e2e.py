"""A whole CPU sweep through the command line, two checkouts in the same run.

    python benchmarks/bench_e2e.py --before /tmp/release        # a git worktree of the old commit
    python benchmarks/bench_e2e.py --before /tmp/release --rounds 2 --trials 60 --epochs 5

Each round runs, in alternating order, ``lrbench sweep all --dataset fashion-mnist
--trials 60 --epochs 5`` from the ``--before`` checkout and from this one, each into a
fresh results folder, with default workers and engine. It prints each run's wall time
(the command's, from outside), the model-epochs its trials trained (from the storage,
read with this checkout's reader, which reads both formats) and model-epochs per second,
then the ratio after/before over all rounds. Fashion-MNIST comes from the lrbench cache
or the Debian package (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from lrbench.store.record import record_of
from lrbench.store.storage import open_storage

REPO = Path(__file__).resolve().parents[1]


def revision(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                          capture_output=True, text=True).stdout.strip()


def run(repo: Path, folder: Path, trials: int, epochs: int) -> tuple[float, int]:
    """One sweep from ``repo``: (wall seconds, model-epochs trained)."""
    # all.toml ranks families under the compare protocol now; this measures throughput at
    # a trial count, as the search protocol runs it (older checkouts know no --protocol)
    protocol = (["--protocol", "search"]
                if 'protocol = "compare"' in (repo / "sweeps" / "all.toml").read_text() else [])
    command = [sys.executable, "-m", "lrbench", "sweep", "all", "--dataset", "fashion-mnist",
               *protocol, "--trials", str(trials), "--epochs", str(epochs), "--results",
               str(folder)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{repo}: the sweep failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    study = optuna.load_study(study_name="all",
                              storage=open_storage(str(folder / "lrbench.journal")))
    epochs_run = sum(r.epochs_run for t in study.trials if (r := record_of(t)) is not None)
    return wall, epochs_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    checkouts = {"before": args.before.resolve(), "after": REPO}
    totals = {name: [0.0, 0] for name in checkouts}
    print(f"before {revision(checkouts['before'])}, after {revision(REPO)}: sweep all, "
          f"fashion-mnist, {args.trials} trials x {args.epochs} epochs, default workers")
    with tempfile.TemporaryDirectory(prefix="lrbench-e2e-") as tmp:
        for round_ in range(args.rounds):
            order = list(checkouts) if round_ % 2 == 0 else list(checkouts)[::-1]
            for name in order:
                folder = Path(tmp) / f"{name}-{round_}"
                wall, epochs = run(checkouts[name], folder, args.trials, args.epochs)
                totals[name][0] += wall
                totals[name][1] += epochs
                print(f"round {round_ + 1} {name:<6} wall {wall:6.1f} s, {epochs:4d} "
                      f"model-epochs, {epochs / wall:5.2f} model-epochs/s")
    rate = {name: epochs / wall for name, (wall, epochs) in totals.items()}
    print(f"model-epochs/s over all rounds: before {rate['before']:.2f}, after "
          f"{rate['after']:.2f}: {rate['after'] / rate['before']:.2f}x")


if __name__ == "__main__":
    main()

"""What the sweep harness costs per trial when training costs almost nothing.

    python benchmarks/bench_harness.py                    # 1,000 trials x 10 epochs, 1 worker
    python benchmarks/bench_harness.py --trials 200 --profile
    python benchmarks/bench_harness.py --repo /tmp/before # an older checkout, same setup
    python benchmarks/bench_harness.py --pruner hyperband # the study's pruner (default: median)
    python benchmarks/bench_harness.py --trials 300 --versus "--stuck-after 0" --rounds 3
                                          # the same sweep with and without FLAGS, alternating
    python benchmarks/bench_harness.py --trials 300 --workers 2 --rounds 3 \
        --storage file --storage redis --storage postgresql
                                          # the same sweep on each storage, alternating

The setup is the one issue "Keep the engine fed" measured: ``sweeps/all.toml`` under the
search protocol at ``--trials`` with ``model = "logreg"`` and 10 epochs, on a 500-image
MNIST root (the first 500 training and 1,000 test images of ``../shared/data``), run as
``lrbench sweep FILE --workers 1``
through the command line, in a fresh results folder. Training a logistic regression on
400 images is ~1 ms an epoch, so the wall time is the harness: sampling, storage writes,
pruning, process start-up.

It prints ms per trial (wall / trials). With ``--storage`` given more than once, the
sweep runs on each storage in turn (``benchmarks/servers.py`` starts private Redis and
PostgreSQL servers), each run into a fresh study, and the ratios to the first are printed.
``--profile`` runs the sweep under py-spy (``pip install py-spy``), parent and worker,
and adds where the sampled time went: sampling (Optuna's samplers), storage (Optuna's
storages, lrbench's store and the servers' drivers), pruning, the engine, start-up
(imports before the first trial), and the rest.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import servers

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# Where a sampled stack spent its time: the first rule whose pattern appears in it wins, so
# the more specific ones come first.
CATEGORIES = (
    ("start-up", re.compile(r"_find_and_load")),  # an import, wherever it happens
    ("sampling", re.compile(r"optuna/samplers/")),
    ("pruning", re.compile(r"optuna/pruners/|should_prune|lrbench/sweep/pruning\.py")),
    ("storage", re.compile(r"optuna/storages/|lrbench/store/|redis/|sqlalchemy/|psycopg")),
    ("engine", re.compile(r"lrbench/train/")),
)


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x803 if array.ndim == 3 else 0x801
    header = np.array([magic, *array.shape], ">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def small_mnist(root: Path, n_train: int = 500, n_test: int = 1000) -> Path:
    """The first images of the shared MNIST sample, in torchvision's layout."""
    raw_in, raw_out = DATA / "MNIST" / "raw", root / "MNIST" / "raw"
    raw_out.mkdir(parents=True)
    for split, count in (("train", n_train), ("t10k", n_test)):
        for kind, offset in (("images-idx3", 16), ("labels-idx1", 8)):
            name = f"{split}-{kind}-ubyte"
            array = np.frombuffer((raw_in / name).read_bytes()[offset:], np.uint8)
            shape = (-1, 28, 28) if kind.startswith("images") else (-1,)
            write_idx(raw_out / name, array.reshape(shape)[:count])
    return root


def sweep_file(folder: Path, trials: int, pruner: str) -> Path:
    text = (REPO / "sweeps" / "all.toml").read_text()
    text = re.sub(r'(?m)^pruner = "\w+"', f'pruner = "{pruner}"', text)
    if f'pruner = "{pruner}"' not in text:
        text = text.replace("[study]\n", f'[study]\npruner = "{pruner}"\n', 1)
    # The search protocol at a trial count, as before all.toml compared families: no
    # protocol keys, so older checkouts (--repo) read the same file.
    text = re.sub(r"(?m)^(protocol|budget|repeats|trials) = .*\n", "", text)
    text = text.replace("[study]\n", f"[study]\ntrials = {trials}\n", 1)
    text = re.sub(r"(?m)^epochs = \d+", "epochs = 10", text)
    text = re.sub(r'(?m)^model = "\w+"', 'model = "logreg"', text)
    if 'model = "logreg"' not in text:
        text = text.replace("[train]\n", '[train]\nmodel = "logreg"\n', 1)
    path = folder / "harness.toml"
    path.write_text(text)
    return path


def breakdown(raw_profile: Path) -> dict[str, float]:
    """Fractions of py-spy's samples per category (raw format: 'stack count' per line)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw_profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        category = next((name for name, pattern in CATEGORIES if pattern.search(stack)),
                        "other")
        counts[category] += int(count)
    total = sum(counts.values()) or 1
    return {name: counts[name] / total for name in [*dict(CATEGORIES), "other"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repo", type=Path, default=REPO, help="the lrbench checkout to run")
    parser.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"))
    parser.add_argument("--profile", action="store_true", help="run under py-spy")
    parser.add_argument("--keep-profile", type=Path, help="copy py-spy's raw stacks here")
    parser.add_argument("--versus", help="also run with these extra flags, alternating")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each variant")
    parser.add_argument("--workers", type=int, default=1, help="slots (--workers)")
    parser.add_argument("--storage", action="append", choices=servers.STORAGES,
                        help="compare these storages (repeat the flag) [default: file]")
    args = parser.parse_args()
    if args.versus:
        versus(args)
        return
    if args.storage and len(args.storage) > 1:
        compare_storages(args)
        return
    repo = args.repo.resolve()
    env = {**os.environ, "PYTHONPATH": str(repo)}
    with tempfile.TemporaryDirectory(prefix="lrbench-harness-") as tmp:
        folder = Path(tmp)
        root = small_mnist(folder / "data")
        sweep = sweep_file(folder, args.trials, args.pruner)
        command = [sys.executable, "-m", "lrbench", "sweep", str(sweep), "--workers",
                   str(args.workers), "--data-dir", str(root), "--results", str(folder / "r")]
        profile = folder / "profile.txt"
        if args.profile:
            command = ["py-spy", "record", "--subprocesses", "-r", "200", "-f", "raw",
                       "-o", str(profile), "--", *command]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"the sweep failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                                  capture_output=True, text=True).stdout.strip()
        print(f"{repo} at {revision}: {args.trials} trials x 10 epochs, logreg, 500 images, "
              f"{args.pruner} pruner, {args.workers} slot(s)"
              f"{' (under py-spy)' if args.profile else ''}")
        print(f"wall {wall:.1f} s = {1000 * wall / args.trials:.1f} ms per trial")
        if args.profile:
            if args.keep_profile:
                args.keep_profile.write_text(profile.read_text())
            for name, share in breakdown(profile).items():
                print(f"  {name:<10} {100 * share:5.1f}% of sampled time")


def versus(args: argparse.Namespace) -> None:
    """The sweep as it is and with ``--versus`` flags, in alternating order, each in a fresh
    results folder: ms per trial of each, and their ratio (best of ``--rounds``)."""
    repo = args.repo.resolve()
    env = {**os.environ, "PYTHONPATH": str(repo)}
    variants = {"as is": [], args.versus: args.versus.split()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="lrbench-harness-") as tmp:
        folder = Path(tmp)
        root = small_mnist(folder / "data")
        sweep = sweep_file(folder, args.trials, args.pruner)
        for round_ in range(args.rounds):
            names = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
            for name in names:
                results = folder / f"r-{round_}-{len(times[name])}-{names.index(name)}"
                wall = timed_sweep(name, repo, env, [
                    str(sweep), "--workers", "1", "--data-dir", str(root), "--results",
                    str(results), *variants[name]])
                times[name].append(wall)
                print(f"round {round_ + 1} {name:<20} {1000 * wall / args.trials:6.1f} ms per "
                      f"trial", flush=True)
    best = {name: min(walls) for name, walls in times.items()}
    base, other = best["as is"], best[args.versus]
    print(f"best of {args.rounds}: as is {1000 * base / args.trials:.1f} ms per trial, "
          f"{args.versus} {1000 * other / args.trials:.1f} ms ({other / base:.3f}x)")


def timed_sweep(name: str, repo: Path, env: dict[str, str], args: list[str]) -> float:
    """``lrbench sweep ARGS`` run from ``repo``: its wall seconds (exits if it fails)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lrbench", "sweep", *args], cwd=repo,
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{name}: the sweep failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return wall


def compare_storages(args: argparse.Namespace) -> None:
    """The sweep on each ``--storage``, in alternating order, each run a fresh study: ms per
    trial of each (best of ``--rounds``), and its ratio to the first storage's."""
    repo = args.repo.resolve()
    env = {**os.environ, "PYTHONPATH": str(repo)}
    times: dict[str, list[float]] = {name: [] for name in args.storage}
    with tempfile.TemporaryDirectory(prefix="lrbench-harness-") as tmp, \
            servers.storage_servers(args.storage) as urls:
        folder = Path(tmp)
        root = small_mnist(folder / "data")
        sweep = sweep_file(folder, args.trials, args.pruner)
        for round_ in range(args.rounds):
            names = args.storage if round_ % 2 == 0 else args.storage[::-1]
            for name in names:
                run = f"r{round_}-{name}"
                storage = [] if urls[name] is None else ["--storage", urls[name]]
                wall = timed_sweep(name, repo, env, [
                    str(sweep), "--workers", str(args.workers), "--data-dir", str(root),
                    "--results", str(folder / run), "--study", f"harness-{os.getpid()}-{run}",
                    *storage])
                times[name].append(wall)
                print(f"round {round_ + 1} {name:<11} {1000 * wall / args.trials:6.1f} ms per "
                      f"trial", flush=True)
    best = {name: min(walls) for name, walls in times.items()}
    first = args.storage[0]
    print(f"best of {args.rounds}, {args.trials} trials, {args.workers} slot(s): " + ", ".join(
        f"{name} {1000 * wall / args.trials:.1f} ms per trial ({wall / best[first]:.2f}x)"
        for name, wall in best.items()))


if __name__ == "__main__":
    main()

"""`lrbench report` on three studies with their confirm runs, two checkouts in one run.

    git worktree add /tmp/before HEAD~1        # or any older commit
    python benchmarks/bench_report.py --before /tmp/before            # 2 rounds

The storage is built once, by this checkout, on a 2,000-image / 1,000-test sample of the
shared MNIST data (the older checkout reads it too: the records only gained fields):

- ``sweep modern --dataset mnist --budget 4 --repeats 2 --epochs 3`` (compare protocol,
  9 families), then
  ``confirm modern --seeds 3``;
- ``sweep all --budget 2 --repeats 2 --epochs 3`` (11 families), then ``confirm --seeds 3``;
- ``sweep step --trials 30 --epochs 4`` (search protocol; its step_size runs to 4), then
  ``confirm --seeds 3``.

Then each round times ``lrbench report`` from each checkout on that storage, in
alternating order, from outside (the command's wall time: start-up, reading, drawing,
writing), and prints the page's size. The targets: <= 10 s and <= 3 MB on 2 cores.

``--storage JOURNAL --study NAME ...`` times the report of a storage built elsewhere
instead, e.g. the fair-comparison issue's own three studies (benchmarks/README.md says
how that one was built: full Fashion-MNIST, about 10 minutes of sweeps).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
STUDIES = (
    (("sweep", "modern", "--dataset", "mnist", "--budget", "4", "--repeats", "2", "--epochs",
      "3"),
     ("confirm", "modern", "--seeds", "3")),
    (("sweep", "all", "--budget", "2", "--repeats", "2", "--epochs", "3"),
     ("confirm", "all", "--seeds", "3")),
    (("sweep", "step", "--trials", "30", "--epochs", "4"), ("confirm", "step", "--seeds", "3")),
)


def sample(root: Path, n_train: int = 2000, n_test: int = 1000) -> Path:
    """The first images of the shared MNIST sample, in torchvision's layout."""
    raw_in, raw_out = DATA / "MNIST" / "raw", root / "MNIST" / "raw"
    raw_out.mkdir(parents=True)
    for split, count in (("train", n_train), ("t10k", n_test)):
        for kind, header in (("images-idx3", 16), ("labels-idx1", 8)):
            raw = (raw_in / f"{split}-{kind}-ubyte").read_bytes()
            size = 28 * 28 if kind.startswith("images") else 1
            (raw_out / f"{split}-{kind}-ubyte").write_bytes(
                raw[:4] + count.to_bytes(4, "big") + raw[8:header]
                + raw[header:header + count * size])
    return root


def lrbench(repo: Path, *args: str) -> float:
    """Run ``lrbench ARGS`` from ``repo``; its wall seconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lrbench", *args], cwd=repo,
                          env={**os.environ, "PYTHONPATH": str(repo)},
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{repo}: lrbench {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="build the storage in this folder once, and "
                        "reuse it on later runs (to profile the report on it)")
    parser.add_argument("--storage", type=Path, help="time the report of this journal "
                        "instead of building one")
    parser.add_argument("--study", action="append", default=[],
                        help="with --storage: a study to report (repeatable; default all)")
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": REPO}
    with tempfile.TemporaryDirectory(prefix="lrbench-report-") as tmp:
        home = args.keep or Path(tmp)
        results = str(home / "results")
        where = ["--results", results]
        if args.storage:
            where = ["--storage", str(args.storage.resolve())]
            where += [option for name in args.study for option in ("--study", name)]
        elif not (home / "results" / "lrbench.journal").exists():
            data = sample(home / "data")
            for sweep, confirm in STUDIES:
                for command in (sweep, confirm):
                    lrbench(REPO, *command, "--data-dir", str(data), "--results", results)
        times: dict[str, list[float]] = {name: [] for name in checkouts}
        sizes: dict[str, int] = {}
        for round_ in range(args.rounds):
            order = list(checkouts) if round_ % 2 == 0 else list(checkouts)[::-1]
            for name in order:
                out = Path(tmp) / f"out-{name}"
                seconds = lrbench(checkouts[name], "report", *where, "--out", str(out))
                times[name].append(seconds)
                sizes[name] = (out / "index.html").stat().st_size
                print(f"round {round_ + 1} {name:<6} report {seconds:5.1f} s, page "
                      f"{sizes[name] / 2**20:.2f} MiB")
    best = {name: min(values) for name, values in times.items()}
    worst = {name: max(values) for name, values in times.items()}
    print(f"best of {args.rounds}: before {best['before']:.1f} s ({sizes['before'] / 2**20:.2f} "
          f"MiB), after {best['after']:.1f} s ({sizes['after'] / 2**20:.2f} MiB): "
          f"{best['before'] / best['after']:.2f}x faster, {sizes['before'] / sizes['after']:.2f}x "
          f"smaller; slowest: before {worst['before']:.1f} s, after {worst['after']:.1f} s; "
          f"targets <= 10 s and <= 3 MB")


if __name__ == "__main__":
    main()

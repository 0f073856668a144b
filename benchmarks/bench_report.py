"""`lrbench report` on a 100-trial study with its confirm runs, two checkouts in one run.

    git worktree add /tmp/release 995747e
    python benchmarks/bench_report.py --before /tmp/release            # 2 rounds

Each checkout first builds its own storage (its sweep and confirm write its own format):
``lrbench sweep all --trials 100 --epochs 3`` then ``lrbench confirm all --seeds 3`` on a
2,000-image / 1,000-test sample of the shared MNIST data. Then each round times
``lrbench report`` from each checkout on its storage, in alternating order, from outside
(the command's wall time: start-up, reading, drawing, writing). The target: <= 10 s.
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
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": REPO}
    with tempfile.TemporaryDirectory(prefix="lrbench-report-") as tmp:
        data = sample(Path(tmp) / "data")
        for name, repo in checkouts.items():
            results = str(Path(tmp) / name)
            lrbench(repo, "sweep", "all", "--trials", "100", "--epochs", "3", "--data-dir",
                    str(data), "--results", results)
            lrbench(repo, "confirm", "all", "--seeds", "3", "--data-dir", str(data),
                    "--results", results)
        times: dict[str, list[float]] = {name: [] for name in checkouts}
        for round_ in range(args.rounds):
            order = list(checkouts) if round_ % 2 == 0 else list(checkouts)[::-1]
            for name in order:
                seconds = lrbench(checkouts[name], "report", "--results",
                                  str(Path(tmp) / name), "--out", str(Path(tmp) / f"out-{name}"))
                times[name].append(seconds)
                print(f"round {round_ + 1} {name:<6} report {seconds:5.1f} s")
    best = {name: min(values) for name, values in times.items()}
    print(f"best of {args.rounds}: before {best['before']:.1f} s, after {best['after']:.1f} s "
          f"({best['before'] / best['after']:.2f}x faster; target <= 10 s)")


if __name__ == "__main__":
    main()

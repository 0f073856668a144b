"""The two example workloads of your own (examples/digits, examples/modular) on either engine.

For each workload, in this process: the sequential engine, one trial, then the batched
engine with K trials through the generic torch.func path (``functional_call`` under
``vmap``), each timed from the engines' own per-epoch timestamps after one untimed
warm-up epoch. Prints model-epochs/s and the batched/sequential ratio, and checks the
batched trials against sequential ones trained alone (same seeds and batch order): the
test accuracies must agree within ``--tolerance`` points, else exit 1.

    python benchmarks/bench_workloads.py                       # CPU, K=16
    python benchmarks/bench_workloads.py --device cuda --k 16,256,1024
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from machine import cpu_cores, cpu_model  # benchmarks/machine.py

from lrbench.sweep.config import OptimizerConfig
from lrbench.train import workload
from lrbench.train.batched import train_batch
from lrbench.train.data import load_arrays, split_to_device
from lrbench.train.schedules import ScheduleSpec
from lrbench.train.sequential import train_trial
from lrbench.train.trial import TrialResult, TrialSpec

REPO = Path(__file__).resolve().parents[1]
COSINE = ScheduleSpec("cosine", {"eta_min_ratio": 0.01})
# (example folder, loader, factory, optimizer, batch size): as the example sweep files
WORKLOADS = {
    "digits": ("digits", "digits:load", "digits:cnn",
               OptimizerConfig("sgd", lr=0.05, momentum=0.9, nesterov=True), 32),
    "modular": ("modular", "modular:load", "modular:transformer",
                OptimizerConfig("adamw", lr=3e-3, weight_decay=0.1), 64),
}


def specs(model: str, optimizer: OptimizerConfig, batch: int, k: int,
          epochs: int) -> list[TrialSpec]:
    return [TrialSpec(i, i, model, epochs, batch, optimizer, COSINE, data_seed=0)
            for i in range(k)]


def rate(results: list[TrialResult]) -> float:
    """Model-epochs per second after the first (warm-up) epoch."""
    epochs = sum(r.epochs_run - 1 for r in results)
    seconds = max(r.curves["seconds"][-1] - r.curves["seconds"][0] for r in results)
    return epochs / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--k", default="16", help="stack sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=3, help="1 warm-up + timed epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on a CPU")
    parser.add_argument("--tolerance", type=float, default=1.0, help="test accuracy, points")
    parser.add_argument("--only", choices=sorted(WORKLOADS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.k.split(",")]
    print(f"# bench_workloads: {cpu_model()}, {cpu_cores()} cores, {args.device}, "
          f"{args.threads} thread(s); torch {torch.__version__}; {args.epochs} epochs, the "
          f"first untimed; cosine schedule")
    failed = False
    for name, (folder, loader, factory, optimizer, batch) in WORKLOADS.items():
        if args.only and name != args.only:
            continue
        workload.add_import_root(REPO / "examples" / folder)
        try:
            arrays = load_arrays(loader)
        except workload.UserError as err:  # digits without scikit-learn installed
            print(f"{name}: skipped ({str(err).splitlines()[0]})")
            continue
        data = split_to_device(arrays, 0.1, 0, args.device)
        alone = [train_trial(s, data) for s in specs(factory, optimizer, batch, 2, args.epochs)]
        sequential = rate(alone[:1])
        print(f"{name:8} sequential        {sequential:8.2f} model-epochs/s")
        for k in ks:
            started = time.perf_counter()
            stacked = train_batch(specs(factory, optimizer, batch, k, args.epochs), data)
            wall = time.perf_counter() - started
            worst = max(abs(a.test_accuracy - b.test_accuracy) for a, b in zip(stacked, alone))
            print(f"{name:8} batched K={k:<6} {rate(stacked):8.2f} model-epochs/s "
                  f"({rate(stacked) / sequential:.2f}x sequential; {wall:.1f} s wall); "
                  f"trials 0-1 against themselves alone: test accuracies at most "
                  f"{100 * worst:.2f} points apart")
            failed |= 100 * worst > args.tolerance
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

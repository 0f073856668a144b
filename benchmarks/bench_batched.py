"""Batched training speed: `train_batch` with K trials against one trial at a time.

Every loop trains the tutorial's FNN (784-100-10) with SGD(momentum=0.9, nesterov=True),
StepLR(step_size=1, gamma=0.1) and batches of 100, on the same images, in this process:

- seed: the Deep Learning Wizard tutorial's loop (bench_trainer.seed_loop, imported);
- sequential: lrbench's `train_trial`, one trial;
- batched K: lrbench's `train_batch` with K trials (seeds 0..K-1, base LRs log-spaced
  0.02..0.2, so all K stay alive) sharing one batch order.

Each run has one untimed warm-up epoch, then times --epochs epochs from the engines' own
per-epoch timestamps (curves["seconds"]), so model building and the final test pass are
not timed; every epoch includes validation. Reported: model-epochs/s = trials x timed
epochs / their seconds.

``--generic`` also runs each K with the FNN's hand-written stacked forward taken away, so
the engine uses its generic path for any model (``stacked._vmapped``: torch.func's
``functional_call`` under ``vmap``), and prints its rate as a ratio of the hand-written
one's: the evidence for moving the built-in models onto the generic path.

On CPU the fair baseline for batched (all --threads in one process) is the sequential
engine as a sweep runs it: one slot of 1 thread per core, so --threads x its 1-thread
rate (measured alone, so an upper bound: the slots would share memory bandwidth).

    python benchmarks/bench_batched.py --k 1,16,64 --epochs 1 --out benchmarks/results/b.json
    python benchmarks/bench_batched.py --k 16,64 --generic   # + torch.func's generic forward
    python benchmarks/bench_batched.py --device cuda --k 1,64,256,1024,4096 --tf32
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from bench_trainer import seed_loop  # benchmarks/bench_trainer.py: the tutorial's loop
from machine import cpu_cores, cpu_model, peak_rss_mb, write_json  # benchmarks/machine.py

from lrbench.sweep.config import OptimizerConfig
from lrbench.train import stacked
from lrbench.train.batched import train_batch
from lrbench.train.data import DATASETS, DeviceData, load_arrays, split_to_device
from lrbench.train.schedules import ScheduleSpec
from lrbench.train.sequential import train_trial
from lrbench.train.trial import TrialResult, TrialSpec

BATCH_SIZE = 100  # the tutorial's
STEP_LR = ScheduleSpec("step", {"step_size": 1, "gamma": 0.1})  # the tutorial's StepLR
LR_RANGE = (0.02, 0.2)  # base LRs of the K trials: none diverges in 2 epochs
SEED = 0


def specs(k: int, epochs: int) -> list[TrialSpec]:
    low, high = LR_RANGE
    lrs = [low * (high / low) ** (i / max(1, k - 1)) for i in range(k)]
    return [TrialSpec(number=i, seed=SEED + i, model="fnn", epochs=epochs, batch_size=BATCH_SIZE,
                      optimizer=OptimizerConfig("sgd", lr, 0.9, True, 0.0), schedule=STEP_LR)
            for i, lr in enumerate(lrs)]


def timed(results: list[TrialResult]) -> tuple[float, int]:
    """(seconds, model-epochs) after the warm-up epoch, from the curves' timestamps."""
    for r in results:
        if r.status != "complete":
            raise RuntimeError(f"a trial stopped early: {r.status} ({r.reason})")
    stamps = results[0].curves["seconds"]  # batched: every trial shares the batch's clock
    return stamps[-1] - stamps[0], len(results) * (len(stamps) - 1)


def row(loop: str, k: int, threads: int, seconds: float, model_epochs: int,
        wall: float, accuracy: float) -> dict[str, Any]:
    return {"loop": loop, "k": k, "threads": threads, "seconds": seconds,
            "model_epochs": model_epochs, "model_epochs_per_second": model_epochs / seconds,
            "wall_seconds": wall, "min_test_accuracy": accuracy}


def run_sequential(data: DeviceData, epochs: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    result = train_trial(specs(1, 1 + epochs)[0], data)
    wall = time.perf_counter() - t0
    return row("sequential", 1, threads, *timed([result]), wall, result.test_accuracy)


def run_batched(data: DeviceData, k: int, epochs: int, threads: int, tf32: bool, fused: bool,
                bf16: bool, generic: bool = False) -> dict[str, Any]:
    torch.set_num_threads(threads)
    hand_written = stacked.FORWARDS.pop("fnn") if generic else None
    try:
        t0 = time.perf_counter()
        results = train_batch(specs(k, 1 + epochs), data, tf32=tf32, bf16=bf16, fused=fused)
        wall = time.perf_counter() - t0
    finally:
        if hand_written is not None:
            stacked.FORWARDS["fnn"] = hand_written
    loop = f"batched K={k}" + (" torch.func" if generic else "")
    return {**row(loop, k, threads, *timed(results), wall,
                  min(r.test_accuracy for r in results)),
            "test_accuracies": [r.test_accuracy for r in results]}


def run_seed(root: Path, dataset: str, device: torch.device, epochs: int,
             threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    run = seed_loop(root, dataset, device, epochs, threads, 0, input_grad=True)
    return row("seed", 1, threads, run.seconds, run.epochs, time.perf_counter() - t0,
               run.accuracy)


def parse_ks(text: str) -> list[int]:
    ks = [int(part) for part in text.split(",") if part.strip()]
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"--k wants positive integers like 1,16,64, got {text!r}")
    return ks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=sorted(DATASETS))
    parser.add_argument("--data-dir", default=None,
                        help="torchvision root holding <Class>/raw/ (default: lrbench's lookup)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per run (default 1)")
    parser.add_argument("--k", type=parse_ks, default=[1, 16, 64, 256],
                        help="trials per batch to measure (default 1,16,64,256)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=cpu_cores(),
                        help="torch threads of seed, batched and the sequential row beside "
                             "them (default: all cores); sequential also runs at 1 on CPU")
    parser.add_argument("--tf32", action="store_true", help="batched: TF32 matmuls")
    parser.add_argument("--bf16", action="store_true", help="batched: bf16 autocast")
    parser.add_argument("--fused", action="store_true",
                        help="batched: SGD update compiled into one kernel (torch.compile)")
    parser.add_argument("--generic", action="store_true",
                        help="batched: also each K on torch.func's generic forward")
    parser.add_argument("--no-seed", action="store_true", help="skip the tutorial's loop")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.threads < 1:
        parser.error("--epochs and --threads must be >= 1")
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print(f"error: --device {args.device}: torch.cuda.is_available() is False here",
                  file=sys.stderr)
            return 2
        device = torch.device("cuda", device.index or 0)
        torch.cuda.set_device(device)

    arrays = load_arrays(args.dataset, args.data_dir)
    # Validate on the test set, as the tutorial: all loops train the same 60,000 images.
    data = split_to_device(arrays, validation_size=0, seed=SEED, device=device)
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"{cpu_model()}, {cpu_cores()} cores")
    options = ", ".join(o for o, on in (("tf32", args.tf32), ("bf16", args.bf16),
                                        ("fused", args.fused)) if on)
    header = (f"# bench_batched: {device_name} ({device}); torch {torch.__version__}, "
              f"Python {platform.python_version()}; {args.dataset}: trains "
              f"{len(data.train_y):,}, validates {len(data.val_y):,} (the test set); FNN, "
              f"batch {BATCH_SIZE}, StepLR; 1 warm-up + {args.epochs} timed epoch(s) per run; "
              f"batched options: {options or 'none (fp32)'}")
    print(header, flush=True)
    load_before = os.getloadavg()[0]  # other processes on the cores slow every row they overlap

    torch.set_flush_denormal(True)  # as lrbench's worker slots run (configure_process)
    rows = []
    if not args.no_seed:
        rows.append(run_seed(arrays.root, args.dataset, device, args.epochs, args.threads))
    thread_counts = sorted({1, args.threads}) if device.type == "cpu" else [args.threads]
    rows += [run_sequential(data, args.epochs, t) for t in thread_counts]
    for r in rows:
        print(f"  {r['loop']:16s} threads {r['threads']}: "
              f"{r['model_epochs_per_second']:8.2f} model-epochs/s", flush=True)
    for k in args.k:
        for generic in (False, True) if args.generic else (False,):
            rows.append(run_batched(data, k, args.epochs, args.threads, args.tf32, args.fused,
                                    args.bf16, generic))
            r = rows[-1]
            print(f"  {r['loop']:16s} threads {r['threads']}: "
                  f"{r['model_epochs_per_second']:8.2f} model-epochs/s", flush=True)
        if generic:
            hand, func = rows[-2], rows[-1]
            same = max(abs(a - b) for a, b in zip(hand["test_accuracies"],
                                                  func["test_accuracies"]))
            ratio = func["model_epochs_per_second"] / hand["model_epochs_per_second"]
            print(f"  K={k}: torch.func at {ratio:.2f}x the hand-written forward; test "
                  f"accuracies differ by at most {same:.4f}", flush=True)

    # The fair CPU baseline: a sweep's slots, 1 thread each, one per thread used here.
    one = next(r for r in rows if r["loop"] == "sequential" and r["threads"] == min(thread_counts))
    slots = args.threads if device.type == "cpu" else 1
    baseline = slots * one["model_epochs_per_second"]
    print()
    print(f"{'loop':16}  {'threads':>7}  {'model-epochs':>12}  {'seconds':>8}  "
          f"{'m-epochs/s':>10}  {'vs slots':>8}  {'wall s':>7}  {'min test acc':>12}")
    for r in rows:
        r["ratio_vs_sequential_slots"] = r["model_epochs_per_second"] / baseline
        print(f"{r['loop']:16}  {r['threads']:>7}  {r['model_epochs']:>12}  "
              f"{r['seconds']:8.2f}  {r['model_epochs_per_second']:10.2f}  "
              f"{r['ratio_vs_sequential_slots']:7.2f}x  {r['wall_seconds']:7.1f}  "
              f"{r['min_test_accuracy']:12.4f}")
    print(f"vs slots: / ({slots} x sequential at {one['threads']} thread = "
          f"{baseline:.2f} model-epochs/s), the sequential engine as a sweep on "
          f"{slots} slot(s) would run")
    load_after = os.getloadavg()[0]
    print(f"peak RSS {peak_rss_mb():.0f} MiB; 1-min load average {load_before:.2f} at the start "
          f"(~0 on a quiet machine), {load_after:.2f} at the end (this run's threads included)")

    if args.out:
        write_json(args.out, {
            "header": header,
            "machine": {"device": str(device), "device_name": device_name, "cpu": cpu_model(),
                        "cores": cpu_cores(), "python": platform.python_version(),
                        "torch": torch.__version__, "cuda": torch.version.cuda},
            "dataset": args.dataset, "root": str(arrays.root), "batch_size": BATCH_SIZE,
            "timed_epochs": args.epochs, "threads": args.threads, "tf32": args.tf32,
            "fused": args.fused, "bf16": args.bf16, "baseline_sequential_slots": baseline,
            "rows": rows,
            "peak_rss_mb": peak_rss_mb(), "load_average_1min": [load_before, load_after],
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Single-model training speed: lrbench's `train_trial` against the tutorial's loop.

Both train the same FNN (784-100-10) from the same initial weights on the same images,
with SGD(lr=0.1, momentum=0.9, nesterov=True), StepLR(step_size=1, gamma=0.1) stepped
per epoch and batches of 100, in this one process, on one device:

- seed: the Deep Learning Wizard tutorial's loop, as written there: a torchvision dataset
  with `transforms.ToTensor()`, `DataLoader(batch_size=100, shuffle=True)`,
  `images.view(-1, 28*28).requires_grad_()`, zero_grad / forward / loss / backward / step,
  then test accuracy through a test DataLoader (batch 100, no `torch.no_grad()`, as the
  tutorial's). The tutorial evaluates every 500 iterations; here once per epoch, so both
  epochs hold one pass over the training images and one over the evaluation images.
- lrbench: `train_trial` on `split_to_device(...)` tensors (uint8 images on the device,
  index-sliced batches), validating each epoch with `evaluate` (2,000 images per pass).
  With --validation-size 0 (the default) it validates on the test set, as the tutorial.

One warm-up epoch is not timed; the next E epochs are. Rounds alternate which loop goes
first. Reported: model-epochs/s (epochs / seconds) for each, and their ratio.

Imports only torch, torchvision and lrbench's engine/data/models/schedules modules, so it
runs where Optuna is not installed (the GPU hosts); it checks that nothing pulled Optuna in.

    python benchmarks/bench_trainer.py                         # fashion-mnist 60k, 1 thread
    python benchmarks/bench_trainer.py --threads 1 2 --out trainer.json
    python benchmarks/bench_trainer.py --dataset mnist --data-dir /work/shared/data
    python benchmarks/bench_trainer.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from machine import cpu_cores, cpu_model, peak_rss_mb, write_json  # benchmarks/machine.py
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from lrbench.sweep.config import OptimizerConfig
from lrbench.train.data import (
    DATASETS,
    DatasetArrays,
    DeviceData,
    dataset_class,
    load_arrays,
    split_to_device,
)
from lrbench.train.models import fnn
from lrbench.train.schedules import ScheduleSpec
from lrbench.train.sequential import train_trial
from lrbench.train.trial import TrialSpec

BATCH_SIZE = 100  # the tutorial's
LR, MOMENTUM = 0.1, 0.9  # the tutorial's SGD(lr=0.1, momentum=0.9, nesterov=True)
STEP_SIZE, GAMMA = 1, 0.1  # the tutorial's StepLR(step_size=1, gamma=0.1)
SEED = 0


# --- the machine, stated (airbench style) ---








def current_rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the two loops ---


@dataclass
class Run:
    loop: str
    threads: int
    round: int
    epochs: int  # timed epochs
    seconds: float  # wall time of the timed epochs
    accuracy: float  # test accuracy after the last epoch
    train_seconds: float | None = None  # seed only: the training passes
    eval_seconds: float | None = None  # seed only: the test-set passes
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def epochs_per_second(self) -> float:
        return self.epochs / self.seconds


def seed_loop(root: Path, dataset: str, device: torch.device, epochs: int, threads: int,
              rnd: int, input_grad: bool) -> Run:
    """The tutorial's loop; epoch 0 is the untimed warm-up."""
    cls = dataset_class(dataset)  # torchvision.datasets.MNIST / FashionMNIST / KMNIST
    train_dataset = cls(root=root, train=True, transform=transforms.ToTensor(), download=False)
    test_dataset = cls(root=root, train=False, transform=transforms.ToTensor(), download=False)
    torch.manual_seed(SEED)  # initial weights as train_trial's (it seeds, then builds the model)
    model = fnn(len(cls.classes)).to(device)
    train_loader = DataLoader(dataset=train_dataset, batch_size=BATCH_SIZE, shuffle=True)
    test_loader = DataLoader(dataset=test_dataset, batch_size=BATCH_SIZE, shuffle=False)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=STEP_SIZE, gamma=GAMMA)

    train_s = eval_s = 0.0
    epoch_seconds = []
    accuracy = float("nan")
    for epoch in range(1 + epochs):
        sync(device)
        t0 = time.perf_counter()
        for images, labels in train_loader:
            images = images.view(-1, 28 * 28).to(device)
            if input_grad:
                images = images.requires_grad_()  # the tutorial's (a leftover of Variable)
            labels = labels.to(device)
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
        sync(device)
        t1 = time.perf_counter()
        correct = total = 0
        for images, labels in test_loader:
            images = images.view(-1, 28 * 28).to(device)
            if input_grad:
                images = images.requires_grad_()
            outputs = model(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted.cpu() == labels).sum()
        accuracy = float(correct) / total
        scheduler.step()
        t2 = time.perf_counter()
        if epoch > 0:  # epoch 0 warms up allocators and caches
            train_s += t1 - t0
            eval_s += t2 - t1
            epoch_seconds.append(t2 - t0)
    return Run("seed", threads, rnd, epochs, train_s + eval_s, accuracy, train_s, eval_s,
               epoch_seconds)


def loader_only(root: Path, dataset: str) -> float:
    """Seconds for one pass of the seed's training DataLoader alone: no model, no SGD."""
    train_dataset = dataset_class(dataset)(root=root, train=True, transform=transforms.ToTensor(),
                                      download=False)
    t0 = time.perf_counter()
    for images, _labels in DataLoader(dataset=train_dataset, batch_size=BATCH_SIZE, shuffle=True):
        images.view(-1, 28 * 28)
    return time.perf_counter() - t0


def lrbench_loop(data: DeviceData, epochs: int, threads: int, rnd: int) -> Run:
    """`train_trial` for 1 + E epochs; its per-epoch timestamps give the E timed ones."""
    spec = TrialSpec(number=0, seed=SEED, model="fnn", epochs=1 + epochs, batch_size=BATCH_SIZE,
                     optimizer=OptimizerConfig("sgd", LR, MOMENTUM, True, 0.0),
                     schedule=ScheduleSpec("step", {"step_size": STEP_SIZE, "gamma": GAMMA}))
    result = train_trial(spec, data)
    if result.epochs_run != 1 + epochs:
        raise RuntimeError(f"train_trial stopped after {result.epochs_run} epochs: "
                           f"{result.status} ({result.reason})")
    # curves["seconds"][i]: since the trial started, taken after epoch i's validation.
    stamps = result.curves["seconds"]
    epoch_seconds = [b - a for a, b in zip(stamps, stamps[1:])]
    return Run("lrbench", threads, rnd, epochs, stamps[-1] - stamps[0], result.test_accuracy,
               epoch_seconds=epoch_seconds)


# --- the report ---


def tensor_bytes(data: DeviceData) -> dict[str, int]:
    """Bytes of the image tensors held on the device, and what float32 would take."""
    images = {id(t): t for t in (data.train_x, data.val_x, data.test_x)}  # val may be test
    labels = {id(t): t for t in (data.train_y, data.val_y, data.test_y)}
    stored = sum(t.numel() * t.element_size() for t in images.values())
    as_float32 = sum(t.numel() * 4 for t in images.values())
    label_bytes = sum(t.numel() * t.element_size() for t in labels.values())
    return {"images_uint8": stored, "images_if_float32": as_float32, "labels": label_bytes}


def summarise(runs: list[Run], loop: str, threads: int) -> dict[str, Any]:
    mine = [r for r in runs if r.loop == loop and r.threads == threads]
    epochs = sum(r.epochs for r in mine)
    seconds = sum(r.seconds for r in mine)
    out: dict[str, Any] = {
        "epochs": epochs, "seconds": seconds, "epochs_per_second": epochs / seconds,
        "per_round_epochs_per_second": [r.epochs_per_second for r in mine],
        # the least disturbed round: on a shared machine, other load only ever slows a round
        "best_round_epochs_per_second": max(r.epochs_per_second for r in mine),
        "epoch_seconds": [s for r in mine for s in r.epoch_seconds],
        "accuracy": [r.accuracy for r in mine],
    }
    if loop == "seed":
        out["train_seconds"] = sum(r.train_seconds or 0.0 for r in mine)
        out["eval_seconds"] = sum(r.eval_seconds or 0.0 for r in mine)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=sorted(DATASETS))
    parser.add_argument("--data-dir", default=None,
                        help="torchvision root holding <Class>/raw/ (default: lrbench's lookup)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run (default 2)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each loop per thread count, alternating which goes first")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch.set_num_threads values to measure (default 1: an lrbench "
                             "CPU slot's setting); e.g. --threads 1 2")
    parser.add_argument("--validation-size", type=float, default=0,
                        help="lrbench's held-out split (0: validate on the test set, as the "
                             "tutorial; a fraction trains lrbench on fewer images)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--no-input-grad", action="store_true",
                        help="seed loop without the tutorial's images.requires_grad_()")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.rounds < 1 or min(args.threads) < 1:
        parser.error("--epochs, --rounds and --threads must be >= 1")
    # lrbench reads an int as a count and a float in (0, 1) as a fraction
    v = args.validation_size
    validation_size = v if 0 < v < 1 else int(v)

    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device}: expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device}: torch.cuda.is_available() is False here "
              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})", file=sys.stderr)
        return 2
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: expected cpu, cuda or cuda:N")
    if device.type == "cuda":
        if (device.index or 0) >= torch.cuda.device_count():
            print(f"error: --device {args.device}: this machine has "
                  f"{torch.cuda.device_count()} CUDA device(s)", file=sys.stderr)
            return 2
        device = torch.device("cuda", device.index or 0)  # set_device needs an index
        torch.cuda.set_device(device)

    rss = {"after_imports_mb": current_rss_mb()}
    t0 = time.perf_counter()
    arrays: DatasetArrays = load_arrays(args.dataset, args.data_dir)
    load_s = time.perf_counter() - t0
    rss["after_load_arrays_mb"] = current_rss_mb()
    t0 = time.perf_counter()
    data = split_to_device(arrays, validation_size=validation_size, seed=SEED, device=device)
    split_s = time.perf_counter() - t0
    rss["after_split_to_device_mb"] = current_rss_mb()
    sizes = {"train": len(data.train_y), "validation": len(data.val_y), "test": len(data.test_y),
             "validation_is_test": data.validation_is_test,
             "seed_train": len(arrays.train_labels), "seed_test": len(arrays.test_labels)}

    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"{cpu_model()}, {cpu_cores()} cores")
    header = (f"# bench_trainer: {device_name} ({device}); torch {torch.__version__}, "
              f"torchvision {torchvision.__version__}, Python {platform.python_version()}; "
              f"{args.dataset} from {arrays.root}: lrbench trains {sizes['train']:,}, "
              f"validates {sizes['validation']:,}"
              f"{' (the test set)' if data.validation_is_test else ''}; seed trains "
              f"{sizes['seed_train']:,}, tests {sizes['seed_test']:,}; batch {BATCH_SIZE}; "
              f"1 warm-up + {args.epochs} timed epochs x {args.rounds} rounds")
    print(header, flush=True)
    print(f"# data: load_arrays {load_s:.2f} s, split_to_device {split_s:.2f} s", flush=True)
    if data.train_x.shape[0] != sizes["seed_train"]:
        print(f"# note: lrbench trains on {sizes['train']:,} images, the seed loop on "
              f"{sizes['seed_train']:,} (--validation-size {args.validation_size})", flush=True)

    runs: list[Run] = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for rnd in range(args.rounds):
            order = ("seed", "lrbench") if rnd % 2 == 0 else ("lrbench", "seed")
            for loop in order:
                # Each loop runs as it would for real: the tutorial with torch's defaults,
                # lrbench as its worker slots do (configure_process flushes denormals).
                torch.set_flush_denormal(loop == "lrbench")
                if loop == "seed":
                    run = seed_loop(arrays.root, args.dataset, device, args.epochs, threads, rnd,
                                    not args.no_input_grad)
                else:
                    run = lrbench_loop(data, args.epochs, threads, rnd)
                runs.append(run)
                print(f"  threads {threads} round {rnd} {loop:8s} {run.epochs_per_second:7.3f} "
                      f"epochs/s  acc {run.accuracy:.4f}", flush=True)

        if threads == args.threads[0]:
            loader_s = loader_only(arrays.root, args.dataset)
            print(f"  threads {threads} seed DataLoader alone: {loader_s:.3f} s per pass over "
                  f"{sizes['seed_train']:,} images", flush=True)

    rss["peak_mb"] = peak_rss_mb()
    results = {str(t): {loop: summarise(runs, loop, t) for loop in ("seed", "lrbench")}
               for t in args.threads}
    for fig in results.values():
        fig["ratio_lrbench_over_seed"] = (fig["lrbench"]["epochs_per_second"]
                                          / fig["seed"]["epochs_per_second"])
        fig["ratio_best_rounds"] = (fig["lrbench"]["best_round_epochs_per_second"]
                                    / fig["seed"]["best_round_epochs_per_second"])
    mem = tensor_bytes(data)
    optuna_loaded = sys.modules.get("optuna") is not None  # None: import blocked

    print()
    print("what one epoch includes:")
    print("  seed    = 1 pass of DataLoader(ToTensor) over the training set (SGD steps) "
          "+ 1 test-set accuracy pass via a test DataLoader (batch 100)")
    print(f"  lrbench = 1 pass of index-sliced uint8 batches (SGD steps) + validation via "
          f"evaluate() on {sizes['validation']:,} "
          f"{'test ' if data.validation_is_test else 'held-out '}images (chunks of 2,000)")
    print()
    print(f"{'threads':>7}  {'loop':8}  {'epochs':>6}  {'seconds':>8}  {'epochs/s':>9}  "
          f"{'best rnd':>9}  {'s/epoch':>8}  {'train s/ep':>10}  {'eval s/ep':>9}  "
          f"{'accuracy':>8}")
    for threads, fig in results.items():
        for loop in ("seed", "lrbench"):
            f = fig[loop]
            train = (f"{f['train_seconds'] / f['epochs']:10.3f}" if "train_seconds" in f
                     else f"{'-':>10}")
            evals = (f"{f['eval_seconds'] / f['epochs']:9.3f}" if "eval_seconds" in f
                     else f"{'-':>9}")
            print(f"{threads:>7}  {loop:8}  {f['epochs']:6d}  {f['seconds']:8.2f}  "
                  f"{f['epochs_per_second']:9.3f}  {f['best_round_epochs_per_second']:9.3f}  "
                  f"{f['seconds'] / f['epochs']:8.3f}  {train}  "
                  f"{evals}  {min(f['accuracy']):.4f}")
        print(f"{threads:>7}  {'ratio':8}  lrbench/seed = {fig['ratio_lrbench_over_seed']:.2f}x "
              f"model-epochs/s (all rounds); {fig['ratio_best_rounds']:.2f}x (best rounds)")
    print(f"seed DataLoader alone (no model): {loader_s:.3f} s per pass "
          f"({args.threads[0]} thread(s)): the share of the seed's train s/epoch spent "
          "making batches")
    print()
    print(f"memory: peak RSS {rss['peak_mb']:.0f} MiB (whole process, both loops); RSS after "
          f"imports {rss['after_imports_mb']:.0f}, after load_arrays "
          f"{rss['after_load_arrays_mb']:.0f}, after split_to_device "
          f"{rss['after_split_to_device_mb']:.0f} MiB")
    print(f"lrbench device images: {mem['images_uint8'] / 1e6:.1f} MB as uint8 vs "
          f"{mem['images_if_float32'] / 1e6:.1f} MB as float32 "
          f"(+ {mem['labels'] / 1e6:.1f} MB int64 labels)")
    print(f"optuna imported: {optuna_loaded}")

    if args.out:
        report = {
            "header": header,
            "machine": {"device": str(device), "device_name": device_name,
                        "cpu": cpu_model(), "cores": cpu_cores(),
                        "python": platform.python_version(), "torch": torch.__version__,
                        "torchvision": torchvision.__version__, "cuda": torch.version.cuda},
            "dataset": args.dataset, "root": str(arrays.root), "sizes": sizes,
            "batch_size": BATCH_SIZE, "timed_epochs": args.epochs, "rounds": args.rounds,
            "seed_input_grad": not args.no_input_grad,
            "data_seconds": {"load_arrays": load_s, "split_to_device": split_s},
            "seed_loader_only_seconds": loader_s,
            "results": results, "runs": [vars(r) for r in runs],
            "memory": {"rss_mb": rss, **{f"{k}_bytes": v for k, v in mem.items()}},
            "optuna_imported": optuna_loaded,
        }
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Overhead of a whole sweep: `run_sweep` wall time against the training it holds.

Runs the smoke sweep (sweeps/smoke.toml with --trials/--epochs/--dataset overrides) on
CPU worker slots into a temporary results folder, then splits the wall time:

- ideal wall = (sum of the trials' train_seconds) / slots: perfect packing, zero overhead;
- overhead = wall / ideal - 1;
- where the slot-seconds beyond training went, per slot, from the stored trials'
  start/complete times (Optuna's datetime_start is `ask`, datetime_complete is `tell`):
    parent set-up   run_sweep's start to its first progress poll (slots, data check, study)
    slot start-up   to the slot's first `ask`: process spawn, imports, load_study and the
                    slot's data loading (SlotReport.data_seconds, shown on its own)
    in-trial        a trial's ask -> tell time minus its train_seconds: sampling, the
                    running/result user attrs (journal writes). The per-epoch hook (report,
                    heartbeat, should_prune) runs inside train_trial, so it is in train_seconds
    between trials  tell -> next ask: the claim lock, counting trials, `ask`
    tail            the slot's last `tell` to run_sweep's return: waiting for the other slots,
                    process teardown, the parent's final recovery and snapshot
  These add up to the wall time for every slot. Probes before the sweep time a worker's
  imports in fresh interpreters (torch, torchvision.datasets, optuna, lrbench.sweep.slot) and
  loky starting the workers and importing lrbench.sweep.slot in each, without study or data.

    python benchmarks/bench_sweep.py                            # 8 trials x 2 epochs, 2 slots
    python benchmarks/bench_sweep.py --dataset mnist --data-dir /work/shared/data --out s.json
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from machine import cpu_cores, cpu_model, write_json  # benchmarks/machine.py
from optuna.trial import TrialState

import lrbench
from lrbench.store.record import claim_of, record_of
from lrbench.sweep import config as lrconfig
from lrbench.sweep.run import StudySnapshot, run_sweep
from lrbench.train import data

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "sweeps" / "smoke.toml"






# Each probe runs in a fresh interpreter, so nothing is cached in this process (and loky's
# reusable executor here stays unstarted for run_sweep).
PROBES = {
    "python_bare": "pass",
    "import_torch": "import torch",
    "import_torch_torchvision_datasets": "import torch, torchvision.datasets",
    "import_torch_optuna": "import torch, optuna",
    "import_lrbench_worker": "import lrbench.sweep.slot",
    # loky starts N fresh interpreters, each imports lrbench.sweep.slot, at once: a slot's start-up
    # without the study and data (timed inside the parent, around the Parallel call only)
    "loky_spawn_import_lrbench_worker": (
        "import sys, time, joblib; t = time.perf_counter(); "
        "joblib.Parallel(n_jobs={workers}, backend='loky')("
        "joblib.delayed(exec)('import lrbench.sweep.slot') for _ in range({workers})); "
        "print(time.perf_counter() - t)"),
}


def import_probe(workers: int, repeats: int = 2) -> dict[str, float]:
    """Best-of-`repeats` seconds for each probe (the loky one reports its own time)."""
    out = {}
    for name, code in PROBES.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code.format(workers=workers)],
                                  check=True, capture_output=True, text=True)
            elapsed = time.perf_counter() - t0
            times.append(float(done.stdout) if name.startswith("loky") else elapsed)
        out[name] = min(times)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dataset", default="fashion-mnist", choices=sorted(data.DATASETS))
    parser.add_argument("--data-dir", default=None,
                        help="torchvision root (mnist: /work/shared/data holds the 5k sample)")
    parser.add_argument("--workers", type=int, default=2, help="CPU slots (default 2)")
    parser.add_argument("--sweep", type=Path, default=SMOKE, help="sweep file (default smoke)")
    parser.add_argument("--results", type=Path, default=None,
                        help="results folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--no-import-probe", action="store_true",
                        help="skip timing `import lrbench.sweep.slot` in a fresh process")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = lrconfig.load(args.sweep).with_overrides(
        trials=args.trials, epochs=args.epochs, dataset=args.dataset, study="bench-sweep")
    arrays = data.load_arrays(config.dataset, args.data_dir)  # materialises fashion-mnist once
    n = len(arrays.train_labels)
    n_val = data.validation_count(config.validation_size, n)

    probe = {} if args.no_import_probe else import_probe(args.workers)

    with tempfile.TemporaryDirectory(prefix="lrbench-bench-sweep-") as tmp:
        results_dir = args.results or Path(tmp)
        polls: list[tuple[float, StudySnapshot]] = []
        started_at = datetime.datetime.now()  # Optuna stamps trials with naive local time
        t0 = time.perf_counter()
        outcome = run_sweep(config, results_dir=results_dir, data_dir=args.data_dir,
                            device="cpu", workers=args.workers,
                            on_progress=lambda p: polls.append((time.perf_counter() - t0, p)))
        wall = time.perf_counter() - t0
        if outcome.error is not None:
            raise outcome.error
        trials = outcome.study.get_trials(deepcopy=False)

    def since_start(stamp: datetime.datetime | None) -> float:
        return (stamp - started_at).total_seconds() if stamp else float("nan")

    slots = outcome.slots
    threads = slots[0].threads if slots else 0
    setup = polls[0][0] if polls else float("nan")
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    records = {t.number: record_of(t) for t in done}
    attr_train = sum(records[t.number].train_seconds for t in done)
    epochs_run = sum(records[t.number].epochs_run for t in done)
    train_sum = outcome.train_seconds
    ideal = train_sum / len(slots)
    overhead = wall / ideal - 1

    per_slot: list[dict[str, Any]] = []
    for report in outcome.reports:
        mine = sorted((t for t in done if claim_of(t).slot == report.slot.index),
                      key=lambda t: t.datetime_start)
        starts = [since_start(t.datetime_start) for t in mine]
        ends = [since_start(t.datetime_complete) for t in mine]
        trains = [records[t.number].train_seconds for t in mine]
        startup = (starts[0] if mine else wall) - setup
        row = {
            "slot": report.slot.index, "device": report.slot.device,
            "threads": report.slot.threads, "trials": report.trials,
            "failed": report.failed, "train": report.train_seconds,
            "parent_setup": setup,
            "startup_total": startup,
            "data": report.data_seconds,
            "peak_rss_mb": report.peak_rss_mb,
            "startup_other": startup - report.data_seconds,
            "in_trial": sum(e - s - tr for s, e, tr in zip(starts, ends, trains)),
            "between_trials": sum(s - e for e, s in zip(ends, starts[1:])),
            "tail": wall - (ends[-1] if mine else wall),
        }
        row["accounted"] = (row["parent_setup"] + row["startup_total"] + row["train"]
                            + row["in_trial"] + row["between_trials"] + row["tail"])
        per_slot.append(row)

    dataset_line = (f"{config.dataset} from {arrays.root}: {n - n_val:,} train, {n_val:,} "
                    f"validation, {len(arrays.test_labels):,} test")
    header = (f"# bench_sweep: {cpu_model()}, {cpu_cores()} cores; torch {torch.__version__}, "
              f"optuna {optuna.__version__}, lrbench {lrbench.__version__}, Python "
              f"{platform.python_version()}; {dataset_line}; sweep {args.sweep.name}: "
              f"{config.trials} trials x {config.epochs} epochs of {config.model}, batch "
              f"{config.batch_size}, families {', '.join(config.families)}; {len(slots)} CPU "
              f"slots x {threads} torch thread(s)")
    print(header)
    if probe:
        print("# start-up probes (fresh interpreters, run alone before the sweep, best of 2):")
        labels = {"python_bare": "python -c pass",
                  "import_torch": "import torch",
                  "import_torch_torchvision_datasets": "import torch, torchvision.datasets",
                  "import_torch_optuna": "import torch, optuna",
                  "import_lrbench_worker": "import lrbench.sweep.slot",
                  "loky_spawn_import_lrbench_worker":
                      f"loky: start {args.workers} workers + import lrbench.sweep.slot in each"}
        for key, label in labels.items():
            print(f"#   {label:52s} {probe[key]:6.2f} s")
    print()
    rows = [
        ("wall seconds (run_sweep)", wall),
        ("sum of trials' train_seconds (outcome)", train_sum),
        ("  same, from stored user attrs", attr_train),
        (f"ideal wall = sum / {len(slots)} slots", ideal),
        ("overhead = wall / ideal - 1", None),
        ("trials done / failed", None),
        ("model-epochs/s, sweep (epochs / wall)", epochs_run / wall),
        ("model-epochs/s, ideal (epochs / ideal)", epochs_run / ideal),
    ]
    for label, value in rows:
        if label.startswith("overhead"):
            print(f"{label:44s} {overhead * 100:9.1f} %")
        elif label.startswith("trials done"):
            print(f"{label:44s} {len(done):6d} / {len(failed)}")
        else:
            print(f"{label:44s} {value:9.2f}")
    print()
    print("where each slot's wall seconds went:")
    parts = ("parent_setup", "startup_other", "data", "train", "in_trial", "between_trials",
             "tail")
    names = {"parent_setup": "parent set-up", "startup_other": "start-up: spawn/import/study",
             "data": "start-up: data loading", "train": "training (train_seconds)",
             "in_trial": "in-trial bookkeeping", "between_trials": "between trials",
             "tail": "tail (wait for others, teardown)"}
    print(f"{'':34s}" + "".join(f"{'slot ' + str(r['slot']):>10}" for r in per_slot)
          + f"{'mean %wall':>12}")
    for part in (*parts, "accounted"):
        values = [r[part] for r in per_slot]
        share = sum(values) / len(values) / wall * 100 if values else float("nan")
        label = names.get(part, "sum (should equal wall)")
        print(f"{label:34s}" + "".join(f"{v:10.2f}" for v in values) + f"{share:11.1f}%")
    print(f"{'trials':34s}" + "".join(f"{r['trials']:10d}" for r in per_slot))
    print(f"{'peak RSS of the worker (MiB)':34s}"
          + "".join(f"{r['peak_rss_mb']:10.0f}" for r in per_slot))

    if args.out:
        report = {
            "header": header,
            "machine": {"cpu": cpu_model(), "cores": cpu_cores(),
                        "python": platform.python_version(), "torch": torch.__version__,
                        "optuna": optuna.__version__, "lrbench": lrbench.__version__},
            "dataset": config.dataset, "root": str(arrays.root),
            "sizes": {"train": n - n_val, "validation": n_val, "test": len(arrays.test_labels)},
            "trials": config.trials, "epochs": config.epochs, "model": config.model,
            "slots": len(slots), "threads_per_slot": threads,
            "wall_seconds": wall, "train_seconds": train_sum,
            "train_seconds_from_attrs": attr_train, "ideal_wall_seconds": ideal,
            "overhead": overhead, "trials_done": len(done), "trials_failed": len(failed),
            "epochs_run": epochs_run, "import_probe_seconds": probe, "per_slot": per_slot,
            "progress_polls": len(polls),
        }
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

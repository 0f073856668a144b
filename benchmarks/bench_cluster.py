"""Local slots against the same slots on a Dask cluster, in one run, on this machine.

    LRBENCH_TEST_POSTGRES=postgresql://... python benchmarks/bench_cluster.py
    python benchmarks/bench_cluster.py --storage redis --storage postgresql --only storages

Starts a ``dask scheduler`` and two ``dask worker --nthreads 1 --no-nanny`` processes on
127.0.0.1, then runs each sweep through the command line, every one into a fresh study
on the same PostgreSQL server (the cluster's storage, so the local runs pay the same
storage costs):

1. Throughput: ``sweeps/modern.toml`` on the shared MNIST sample (5,000 images), 5
   epochs, 120 trials: locally with 1 worker, locally with 2, and on the cluster's 2.
   Reported in model-epochs per second of wall time (epochs trained, pruned trials'
   included, over the command's wall time: start-up and connecting count).
2. Overhead per trial: the harness benchmark's setup (``bench_harness.py``: logreg,
   10 epochs, 500 images, where training costs ~1 ms an epoch), 200 trials, locally with
   1 worker and on the cluster capped to 1 slot (``--workers 1``): the difference in wall
   time per trial is what the cluster adds.
3. Storages (``--storage``, repeated): the harness setup on the cluster's 2 slots, on
   each storage (``servers.py`` starts private ones), in alternating order over
   ``--rounds``: ms per trial of each and the ratios to the first.

Sections 1 and 2 run on the first ``--storage`` (default: postgresql).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import servers  # noqa: E402
from bench_harness import DATA, small_mnist, sweep_file  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(folder: Path) -> tuple[str, list[subprocess.Popen]]:
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"

    def dask(*args: str, log: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", *args], start_new_session=True,
                                stdout=(folder / log).open("w"), stderr=subprocess.STDOUT)

    procs = [dask("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                  address.rsplit(":", 1)[1], "--no-dashboard", log="scheduler.log")]
    procs += [dask("distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
                   "--no-dashboard", log=f"worker-{i}.log") for i in (1, 2)]
    with Client(address, timeout=60, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
    return address, procs


def model_epochs(storage: str, study: str) -> int:
    import optuna

    from lrbench.store.record import record_of
    from lrbench.store.storage import open_storage
    trials = optuna.load_study(study_name=study,
                               storage=open_storage(storage, create=False)).get_trials()
    return sum(r.epochs_run for t in trials if (r := record_of(t)) is not None
               and r.status != "failed")


def timed_sweep(args: list[str], storage: str, study: str) -> float:
    command = [sys.executable, "-m", "lrbench", "sweep", *args, "--storage", storage,
               "--study", study]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", action="append", choices=("redis", "postgresql"),
                        help="the cluster's storage; repeat it to compare them "
                             "[default: postgresql]")
    parser.add_argument("--only", choices=("throughput", "overhead", "storages"),
                        help="run one section")
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--overhead-trials", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the storages section")
    args = parser.parse_args()
    names = args.storage or ["postgresql"]
    tag = f"{os.getpid()}-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="lrbench-cluster-") as tmp, \
            servers.storage_servers(names) as urls:
        folder = Path(tmp)
        address, procs = start_cluster(folder)
        storage = urls[names[0]]
        try:
            if args.only in (None, "throughput"):
                throughput(args, address, storage, tag)
            root = small_mnist(folder / "data")
            harness = [str(sweep_file(folder, args.overhead_trials, "median")), "--data-dir",
                       str(root)]
            if args.only in (None, "overhead"):
                overhead(args, address, storage, harness, tag)
            if args.only in (None, "storages") and len(names) > 1:
                storages(args, address, urls, harness, tag)
        finally:
            for proc in procs:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=30)


def throughput(args: argparse.Namespace, address: str, storage: str, tag: str) -> None:
    sweep = ["modern", "--dataset", "mnist", "--epochs", str(args.epochs), "--protocol",
             "search", "--trials", str(args.trials), "--data-dir", str(DATA)]
    print(f"throughput: sweeps/modern.toml, MNIST sample, {args.epochs} epochs, "
          f"{args.trials} trials, on {storage.split(':')[0]}")
    for label, extra in (("local, 1 worker", ["--workers", "1"]),
                         ("local, 2 workers", ["--workers", "2"]),
                         ("cluster, 2 workers", ["--cluster", address])):
        study = f"bench-cluster-{tag}-{label.replace(', ', '-').replace(' ', '')}"
        wall = timed_sweep(sweep + extra, storage, study)
        epochs = model_epochs(storage, study)
        print(f"  {label:<20} wall {wall:6.1f} s, {epochs} model-epochs, "
              f"{epochs / wall:6.1f} model-epochs/s")


def overhead(args: argparse.Namespace, address: str, storage: str, harness: list[str],
             tag: str) -> None:
    print(f"overhead: bench_harness's logreg setup, {args.overhead_trials} trials "
          f"x 10 epochs, 1 slot, on {storage.split(':')[0]}")
    walls = {}
    for label, extra in (("local", []), ("cluster", ["--cluster", address])):
        study = f"bench-overhead-{tag}-{label}"
        walls[label] = timed_sweep(harness + ["--workers", "1"] + extra, storage, study)
        print(f"  {label:<8} wall {walls[label]:6.1f} s = "
              f"{1000 * walls[label] / args.overhead_trials:6.1f} ms per trial")
    added = (walls["cluster"] - walls["local"]) / args.overhead_trials
    print(f"  the cluster adds {1000 * added:+.1f} ms per trial")


def storages(args: argparse.Namespace, address: str, urls: dict[str, str | None],
             harness: list[str], tag: str) -> None:
    names = list(urls)
    print(f"storages: bench_harness's logreg setup, {args.overhead_trials} trials x 10 "
          f"epochs, on the cluster's 2 slots, best of {args.rounds}")
    walls: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            storage = urls[name]
            assert storage is not None
            wall = timed_sweep(harness + ["--cluster", address], storage,
                               f"bench-storage-{tag}-{round_}-{name}")
            walls[name].append(wall)
            print(f"  round {round_ + 1} {name:<11} {1000 * wall / args.overhead_trials:6.1f} "
                  f"ms per trial", flush=True)
    best = {name: min(w) for name, w in walls.items()}
    print("  best: " + ", ".join(
        f"{name} {1000 * wall / args.overhead_trials:.1f} ms per trial "
        f"({wall / best[names[0]]:.2f}x)" for name, wall in best.items()))


if __name__ == "__main__":
    main()

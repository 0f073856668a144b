"""What a Redis server does per trial: its CPU, commands and bytes, around one sweep.

    python benchmarks/bench_redis.py --trials 300 --workers 2

The harness setup (``bench_harness.py``: logreg, 10 epochs, 500 images) on a private
``redis-server`` (append-only file synced every second), with ``INFO cpu``, ``INFO stats``
and ``INFO commandstats`` read before and after: what one Redis spends per trial, the
figure that says how many slots one server can take (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import servers  # noqa: F401  (puts tests/ on the path, for private_redis)
from bench_harness import REPO, small_mnist, sweep_file
from private_redis import private_server


def counters(client: Any) -> dict[str, Any]:
    cpu, stats = client.info("cpu"), client.info("stats")
    return {"cpu": cpu["used_cpu_sys"] + cpu["used_cpu_user"],
            "commands": stats["total_commands_processed"],
            "sent": stats["total_net_output_bytes"], "received": stats["total_net_input_bytes"],
            "calls": {name.removeprefix("cmdstat_"): row["calls"]
                      for name, row in client.info("commandstats").items()}}


def main() -> None:
    import redis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lrbench-redis-") as tmp, \
            private_server(fsync="everysec") as server:
        folder = Path(tmp)
        sweep = sweep_file(folder, args.trials, "median")
        client = redis.Redis.from_url(server.url)
        before = counters(client)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "lrbench", "sweep", str(sweep), "--workers",
             str(args.workers), "--data-dir", str(small_mnist(folder / "data")), "--results",
             str(folder / "r"), "--storage", server.url],
            cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"the sweep failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        after = counters(client)
        entries = int(client.get(":log_number")) + 1
    per_trial = {key: (after[key] - before[key]) / args.trials
                 for key in ("cpu", "commands", "sent", "received")}
    calls = {name: (count - before["calls"].get(name, 0)) / args.trials
             for name, count in after["calls"].items()}
    print(f"{args.trials} trials, {args.workers} slot(s), wall {wall:.1f} s, {entries} journal "
          f"entries: Redis CPU {1000 * per_trial['cpu']:.2f} ms, {per_trial['commands']:.0f} "
          f"commands, {per_trial['sent'] / 1024:.1f} KiB sent, {per_trial['received'] / 1024:.1f}"
          f" KiB received per trial")
    print("  calls per trial: " + ", ".join(
        f"{name} {count:.1f}" for name, count in sorted(calls.items(), key=lambda kv: -kv[1])
        if count >= 0.05))


if __name__ == "__main__":
    main()

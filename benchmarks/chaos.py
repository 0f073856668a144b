"""Faults, before and after: run each attack on an lrbench checkout, print one table row each.

    python benchmarks/chaos.py                      # this checkout
    python benchmarks/chaos.py --repo /tmp/before   # another one (e.g. a git worktree of
                                                    # an older commit), same data, same table

Every scenario drives the ``lrbench`` command line only, so any version can be measured.
Columns: what was tried, whether the storage survived (still readable), trials lost
(finished before the fault, unreadable after), repeated configurations, the exit code, and
what the count ended at. Tests assert the same (tests/test_chaos.py); this script reports
figures for the README and the issue's closing note. ~4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import psutil

from lrbench.store.record import claim_of, plan_of  # reads both the old loose keys and records

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import private_postgres  # noqa: E402  (test helpers: servers this script may restart)
import private_redis  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SMOKE = ["sweep", "smoke", "--epochs", "2", "--engine", "sequential"]


class Checkout:
    """Runs the ``lrbench`` of one checkout, on the MNIST sample, into a results folder.

    Output goes to files, not pipes: orphaned workers would hold a pipe open, and reading
    it would wait for them. Every command starts its own process group, killed afterwards.
    """

    def __init__(self, repo: Path, logs: Path) -> None:
        self.repo = repo
        self.env = {**os.environ, "PYTHONPATH": str(repo)}
        self.logs = logs
        self.groups: list[int] = []

    def start(self, args: list[str], results: Path) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "lrbench", *args, "--data-dir", str(DATA),
               "--results", str(results)]
        log = self.logs / f"{len(self.groups)}.err"
        proc = subprocess.Popen(cmd, cwd=self.repo, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=open(log, "w"), start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        self.groups.append(proc.pid)
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
        code = proc.wait(timeout=timeout)
        return code, proc.log.read_text()  # type: ignore[attr-defined]

    def run(self, args: list[str], results: Path) -> tuple[int, str]:
        return self.finish(self.start(args, results))

    def has_flag(self, command: str, flag: str) -> bool:
        """Whether this checkout's ``lrbench COMMAND`` takes ``flag`` (older ones may not)."""
        helped = subprocess.run([sys.executable, "-m", "lrbench", command, "--help"],
                                cwd=self.repo, env=self.env, capture_output=True, text=True)
        return flag in helped.stdout

    def kill_all(self) -> None:
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.groups.clear()


def trials(results: Path, study: str = "smoke") -> list[optuna.trial.FrozenTrial] | None:
    """The study's trials as Optuna reads the journal, or None when it cannot."""
    try:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(results / "lrbench.journal")))
        return optuna.load_study(study_name=study, storage=storage).get_trials()
    except Exception:  # any failure to read is the finding itself
        return None


def summary(results: Path, study: str = "smoke") -> dict[str, object]:
    found = trials(results, study)
    if found is None:
        return {"readable": False, "finished": 0, "running": 0, "repeats": 0}
    states = Counter(t.state.name for t in found)
    configs = [json.dumps(t.params, sort_keys=True) for t in found
               if t.state.name != "FAIL" and plan_of(t).requeued_from is None and t.params]
    return {"readable": True, "finished": states["COMPLETE"] + states["PRUNED"],
            "running": states["RUNNING"], "repeats": len(configs) - len(set(configs))}


def wait_running(results: Path, timeout: float = 120) -> optuna.trial.FrozenTrial:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for trial in trials(results) or []:
            if trial.state.name == "RUNNING" and claim_of(trial) is not None:
                return trial
        time.sleep(0.2)
    raise RuntimeError("no trial started")


def alive_after(processes: list[psutil.Process], seconds: float) -> int:
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    for process in alive:
        process.kill()
    return len(alive)


def torn_tail(lr: Checkout, folder: Path) -> dict[str, object]:
    lr.run([*SMOKE, "--trials", "4", "--workers", "2"], folder)
    with open(folder / "lrbench.journal", "ab") as handle:
        handle.write(b'{"op_code":6,"worker_id":"dead","trial_id":2,"sta')
    code, err = lr.run([*SMOKE, "--trials", "8", "--workers", "2"], folder)
    return {"exit": code, "traceback": "Traceback" in err, **summary(folder), "target": 8}


def resume_4_to_8(lr: Checkout, folder: Path) -> dict[str, object]:
    lr.run([*SMOKE, "--trials", "4", "--workers", "2"], folder)
    code, err = lr.run([*SMOKE, "--trials", "8", "--workers", "2"], folder)
    return {"exit": code, "traceback": "Traceback" in err, **summary(folder), "target": 8}


def sigterm_parent(lr: Checkout, folder: Path) -> dict[str, object]:
    proc = lr.start([*SMOKE, "--trials", "30", "--epochs", "8", "--workers", "2"], folder)
    wait_running(folder)
    time.sleep(1)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    _, err = lr.finish(proc, timeout=120)
    orphans = alive_after(children, 10)
    return {"exit": proc.returncode, "traceback": "Traceback" in err, "orphans": orphans,
            **summary(folder), "target": 30}


def kill_one_worker(lr: Checkout, folder: Path) -> dict[str, object]:
    proc = lr.start([*SMOKE, "--trials", "12", "--epochs", "6", "--workers", "2"], folder)
    victim = wait_running(folder)
    os.kill(claim_of(victim).pid, signal.SIGKILL)
    _, err = lr.finish(proc, timeout=300)
    found = trials(folder) or []
    return {"exit": proc.returncode, "traceback": "Traceback" in err, **summary(folder),
            "target": 12, "failed": sum(t.state.name == "FAIL" for t in found)}


def finish_then_resume(lr: Checkout, proc: subprocess.Popen, stopped: psutil.Process,
                       timeout: float) -> tuple[str, float]:
    """Wait for the sweep (a hang raises TimeoutExpired), then let the stopped worker go:
    its stderr and the seconds it took."""
    started = time.monotonic()
    try:
        _, err = lr.finish(proc, timeout=timeout)
    finally:
        with contextlib.suppress(psutil.Error):
            stopped.resume()
    return err, time.monotonic() - started


def stopped_worker(lr: Checkout, folder: Path) -> dict[str, object]:
    """kill -STOP one worker mid-trial (a hung GPU driver or NFS stall looks the same)."""
    stuck = ["--stuck-after", "5"] if lr.has_flag("sweep", "--stuck-after") else []
    proc = lr.start([*SMOKE, "--trials", "30", "--epochs", "4", "--workers", "2", *stuck],
                    folder)
    victim = psutil.Process(claim_of(wait_running(folder)).pid)
    victim.suspend()
    err, seconds = finish_then_resume(lr, proc, victim, timeout=240)
    found = trials(folder) or []
    return {"exit": f"{proc.returncode} ({seconds:.0f} s)",
            "traceback": "Traceback" in err, **summary(folder), "target": 30,
            "failed": sum(t.state.name == "FAIL" for t in found)}


def ctrl_c_with_a_stopped_worker(lr: Checkout, folder: Path) -> dict[str, object]:
    """One Ctrl-C to the group while a worker is stopped: the README promised 130."""
    proc = lr.start([*SMOKE, "--trials", "30", "--epochs", "8", "--workers", "2"], folder)
    victim = psutil.Process(claim_of(wait_running(folder)).pid)
    children = psutil.Process(proc.pid).children(recursive=True)
    victim.suspend()
    os.killpg(proc.pid, signal.SIGINT)
    err, seconds = finish_then_resume(lr, proc, victim, timeout=60)
    return {"exit": f"{proc.returncode} ({seconds:.0f} s)",
            "traceback": "Traceback" in err, "orphans": alive_after(children, 10),
            **summary(folder), "target": 30}


ASK_THEN_DIE = textwrap.dedent("""
    import os, signal, sys
    import optuna
    try:
        from lrbench.store.claims import claim_lock
        from lrbench.store.storage import open_storage
    except ImportError:  # before lrbench.store existed
        try:
            from lrbench.sweep.claim import claim_lock
        except ImportError:  # before the claim module existed
            from lrbench.sweep.storage import claim_lock
        from lrbench.sweep.storage import open_storage
    study = optuna.load_study(study_name="smoke", storage=open_storage(sys.argv[1]))
    with claim_lock(sys.argv[1], "smoke"):
        study.ask()
        os.kill(os.getpid(), signal.SIGKILL)
""")


def kill_between_ask_and_claim(lr: Checkout, folder: Path) -> dict[str, object]:
    lr.run([*SMOKE, "--trials", "2"], folder)
    subprocess.run([sys.executable, "-c", ASK_THEN_DIE, str(folder / "lrbench.journal")],
                   cwd=lr.repo, env=lr.env, capture_output=True, timeout=120)
    code, err = lr.run([*SMOKE, "--trials", "6"], folder)
    return {"exit": code, "traceback": "Traceback" in err, **summary(folder), "target": 6}


def ctrl_c_at_start_up(lr: Checkout, folder: Path) -> dict[str, object]:
    codes, tracebacks, orphans = [], 0, 0
    for delay in (0.3, 1.0, 2.5):
        results = folder / str(delay)
        proc = lr.start([*SMOKE, "--trials", "20", "--workers", "2"], results)
        time.sleep(delay)
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)
        code, err = lr.finish(proc, timeout=120)
        codes.append(code)
        tracebacks += "Traceback" in err
        orphans += alive_after(children, 10)
    return {"exit": "/".join(map(str, codes)), "traceback": f"{tracebacks} of 3",
            "orphans": orphans}


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted at ``folder/disk`` (None where it cannot be: not root)."""
    disk = folder / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)]
                      ).returncode:
        yield None
        return
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def full_disk(lr: Checkout, folder: Path) -> dict[str, object]:
    with tmpfs(folder, "256k") as disk:
        if disk is None:
            return {"exit": "skipped: cannot mount a tmpfs"}
        code, err = lr.run([*SMOKE, "--trials", "400", "--epochs", "1", "--workers", "2"], disk)
        return {"exit": code, "traceback": "Traceback" in err, **summary(disk), "target": 400}


def simultaneous_starts(lr: Checkout, folder: Path) -> dict[str, object]:
    procs = [lr.start(["sweep", "dlwizard", "--epochs", "2", "--workers", "1"], folder)
             for _ in range(3)]
    codes = [lr.finish(p)[0] for p in procs]
    return {"exit": "/".join(map(str, codes)), **summary(folder, "dlwizard"), "target": 5}


def sqlite_big_batches(lr: Checkout, folder: Path) -> dict[str, object]:
    url = f"sqlite:///{folder / 'studies.db'}"
    code, err = lr.run([*SMOKE, "--trials", "10", "--workers", "2", "--engine", "batched",
                        "--batch-trials", "4", "--storage", url], folder)
    study = optuna.load_study(study_name="smoke", storage=url)
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials())
    return {"exit": code, "traceback": "Traceback" in err, "finished": finished, "target": 10}


def timed_finish(lr: Checkout, proc: subprocess.Popen, since: float,
                 timeout: float = 300) -> tuple[str, str]:
    """The sweep's exit code with the seconds since the fault, and its stderr."""
    _, err = lr.finish(proc, timeout=timeout)
    return f"{proc.returncode} ({time.monotonic() - since:.0f} s)", err


def last_line(err: str) -> str:
    lines = err.strip().splitlines()
    return lines[-1][:160] if lines else ""


def vanished_journal(lr: Checkout, folder: Path) -> dict[str, object]:
    """The journal renamed mid-sweep; put back, then the same command resumes."""
    proc = lr.start([*SMOKE, "--trials", "40", "--epochs", "8", "--workers", "2"], folder)
    wait_running(folder)
    (folder / "lrbench.journal").rename(folder / "moved.journal")
    exit_code, err = timed_finish(lr, proc, time.monotonic())
    (folder / "moved.journal").rename(folder / "lrbench.journal")
    resumed, _ = lr.run([*SMOKE, "--trials", "40", "--epochs", "8", "--workers", "2"], folder)
    return {"exit": f"{exit_code}, resume {resumed}", "traceback": "Traceback" in err,
            "message": last_line(err), **summary(folder), "target": 40}


def read_only_folder(lr: Checkout, folder: Path) -> dict[str, object]:
    """The results folder's file system remounted read-only mid-sweep (a tmpfs)."""
    with tmpfs(folder, "64m") as disk:
        if disk is None:
            return {"exit": "skipped: cannot mount a tmpfs"}
        proc = lr.start([*SMOKE, "--trials", "40", "--epochs", "8", "--workers", "2"], disk)
        wait_running(disk)
        time.sleep(2)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        exit_code, err = timed_finish(lr, proc, time.monotonic())
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        resumed, _ = lr.run([*SMOKE, "--trials", "40", "--epochs", "8", "--workers", "2"],
                            disk)
        return {"exit": f"{exit_code}, resume {resumed}", "traceback": "Traceback" in err,
                "message": last_line(err), **summary(disk), "target": 40}


def memory_limit(lr: Checkout, folder: Path) -> dict[str, object]:
    """One worker's address space capped at what it uses, mid-trial (RLIMIT_AS from
    outside: its next tensor fails to allocate, as when a machine's memory runs out)."""
    proc = lr.start([*SMOKE, "--engine", "batched", "--trials", "20", "--epochs", "4",
                     "--workers", "2"], folder)
    victim = psutil.Process(claim_of(wait_running(folder)).pid)
    in_use = victim.memory_info().vms
    victim.rlimit(psutil.RLIMIT_AS, (in_use, in_use))
    exit_code, err = timed_finish(lr, proc, time.monotonic())
    found = trials(folder) or []
    return {"exit": exit_code, "traceback": "Traceback" in err, "message": last_line(err),
            **summary(folder), "target": 20,
            "failed": sum(t.state.name == "FAIL" for t in found)}


def postgres_restart(lr: Checkout, folder: Path) -> dict[str, object]:
    """A private PostgreSQL stopped for 4 s under a 30-trial sweep, then started."""
    if not private_postgres.available():
        return {"exit": "skipped: no PostgreSQL server binaries"}
    with private_postgres.private_server() as server:
        proc = lr.start([*SMOKE, "--trials", "30", "--epochs", "4", "--workers", "2",
                         "--storage", server.url], folder)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(Exception):  # (no study yet)
                done = optuna.load_study(study_name="smoke", storage=server.url).get_trials(
                    states=(optuna.trial.TrialState.COMPLETE,))
                if len(done) >= 3:
                    break
            time.sleep(0.2)
        server.stop()
        stopped = time.monotonic()
        time.sleep(4)
        server.start()
        exit_code, err = timed_finish(lr, proc, stopped)
        found = optuna.load_study(study_name="smoke", storage=server.url).get_trials()
    states = Counter(t.state.name for t in found)
    return {"exit": exit_code, "traceback": "Traceback" in err, "message": last_line(err),
            "readable": True, "finished": states["COMPLETE"] + states["PRUNED"],
            "running": states["RUNNING"], "target": 30}


def _redis_trials(url: str) -> list[optuna.trial.FrozenTrial] | None:
    """The study as Optuna itself reads it (any checkout wrote Optuna's format); None if
    there is none (or the server has nothing)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalRedisBackend

    with warnings.catch_warnings(), contextlib.suppress(KeyError):
        warnings.simplefilter("ignore")
        storage = JournalStorage(JournalRedisBackend(url))
        return optuna.load_study(study_name="smoke", storage=storage).get_trials()
    return None


def _redis_sweep_until_3_done(lr: Checkout, folder: Path, server: Any) -> subprocess.Popen:
    proc = lr.start([*SMOKE, "--trials", "30", "--epochs", "4", "--workers", "2",
                     "--storage", server.url], folder)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(Exception):  # (no study yet)
            if sum(t.state.name == "COMPLETE" for t in _redis_trials(server.url) or []) >= 3:
                break
        time.sleep(0.2)
    return proc


def redis_restart(lr: Checkout, folder: Path) -> dict[str, object]:
    """A private Redis (append-only file) killed under a 30-trial sweep, started 2 s later."""
    if not private_redis.available():
        return {"exit": "skipped: no redis-server"}
    with private_redis.private_server() as server:
        proc = _redis_sweep_until_3_done(lr, folder, server)
        server.stop()
        stopped = time.monotonic()
        time.sleep(2)
        server.start()
        exit_code, err = timed_finish(lr, proc, stopped)
        states = Counter(t.state.name for t in _redis_trials(server.url) or [])
    return {"exit": exit_code, "traceback": "Traceback" in err, "message": last_line(err),
            "readable": True, "finished": states["COMPLETE"] + states["PRUNED"],
            "running": states["RUNNING"], "target": 30}


def redis_lost_data(lr: Checkout, folder: Path) -> dict[str, object]:
    """The same, but started again without its data (what a server with no persistence
    does): is the loss noticed, and what is left on the server afterwards?"""
    if not private_redis.available():
        return {"exit": "skipped: no redis-server"}
    with private_redis.private_server() as server:
        proc = _redis_sweep_until_3_done(lr, folder, server)
        lost = time.monotonic()
        server.restart_empty()
        exit_code, err = timed_finish(lr, proc, lost)
        left = _redis_trials(server.url)
    return {"exit": exit_code, "traceback": "Traceback" in err, "message": last_line(err),
            "readable": True, "finished": "-" if left is None else len(left),
            "target": "the study lost", "running": 0}


SCENARIOS = {
    "torn journal tail, then resume 4 -> 8": torn_tail,
    "resume 4 -> 8 trials": resume_4_to_8,
    "SIGTERM to the parent mid-sweep": sigterm_parent,
    "kill -9 of one worker (12 trials)": kill_one_worker,
    "kill -9 between ask and claim, then resume": kill_between_ask_and_claim,
    "kill -STOP of one worker (30 trials; --stuck-after 5 where it exists)": stopped_worker,
    "Ctrl-C with one worker stopped": ctrl_c_with_a_stopped_worker,
    "Ctrl-C at 0.3 / 1.0 / 2.5 s (start-up)": ctrl_c_at_start_up,
    "full disk (256 KiB tmpfs)": full_disk,
    "journal renamed mid-sweep, put back, resumed": vanished_journal,
    "folder remounted read-only mid-sweep, then rw, resumed": read_only_folder,
    "memory capped in one worker mid-trial (batched, 20 trials)": memory_limit,
    "PostgreSQL stopped 4 s mid-sweep, then started": postgres_restart,
    "Redis killed mid-sweep, started 2 s later": redis_restart,
    "Redis started again without its data mid-sweep": redis_lost_data,
    "3 simultaneous dlwizard starts": simultaneous_starts,
    "sqlite:///, 2 slots x K=4, 10 trials": sqlite_big_batches,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the lrbench checkout to attack")
    parser.add_argument("--only", help="run scenarios whose name contains this")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logs = Path(tempfile.mkdtemp(prefix="lrbench-chaos-logs-"))
    lr = Checkout(args.repo.resolve(), logs)
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=lr.repo,
                              capture_output=True, text=True).stdout.strip()
    print(f"checkout {lr.repo} at {revision}\n")
    print("| fault | storage readable | finished / target | repeats | running left | "
          "orphans | exit | traceback | last line on stderr |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, scenario in SCENARIOS.items():
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory(prefix="lrbench-chaos-") as folder:
            try:
                r = scenario(lr, Path(folder))
            except (subprocess.TimeoutExpired, RuntimeError) as err:  # hung: that is a finding
                r = {"exit": f"did not end: {type(err).__name__}", **summary(Path(folder))}
            finally:
                lr.kill_all()
        finished = f"{r['finished']} / {r['target']}" if "target" in r else "–"
        if "failed" in r:
            finished += f" ({r['failed']} failed)"
        print(f"| {name} | {r.get('readable', '–')} | {finished} | {r.get('repeats', '–')} | "
              f"{r.get('running', '–')} | {r.get('orphans', '–')} | {r['exit']} | "
              f"{r.get('traceback', '–')} | {r.get('message') or '–'} |", flush=True)


if __name__ == "__main__":
    main()

"""A private PostgreSQL server (initdb + pg_ctl on a free port, in a temporary folder),
for faults that stop and start the server: tests/test_outage.py and benchmarks/chaos.py.
Stopping it touches no server anything else uses."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def available() -> bool:
    """Whether this machine has the server's binaries (apt-get install postgresql), and
    can run them as a user other than root where it is root."""
    return bool(BINARIES) and (os.geteuid() != 0 or shutil.which("runuser") is not None)


@dataclass
class Server:
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://lrbench@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        as_owner([f"{BINARIES[-1]}/pg_ctl", "-D", str(self.folder / "data"), *args])

    def start(self) -> None:
        self.pg_ctl("-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                    "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")


def as_owner(command: list[str]) -> None:
    """initdb and postgres refuse to run as root: there, as the postgres user."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def private_server() -> Iterator[Server]:
    """A fresh server, running; stopped and deleted afterwards."""
    # Not under pytest's tmp_path: its folders are private to root, and the server's
    # owner must reach its own.
    folder = Path(tempfile.mkdtemp(prefix="lrbench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    as_owner([f"{BINARIES[-1]}/initdb", "-D", str(folder / "data"), "-A", "trust",
              "-U", "lrbench"])
    running = Server(folder, free_port())
    running.start()
    try:
        yield running
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # (left stopped)
            running.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)

"""A private Redis server (``redis-server`` on a free port, its data in a temporary
folder), for the Redis storage's tests and benchmarks: stopping it, or starting it
again without its data, touches no server anything else uses."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from private_postgres import free_port


def available() -> bool:
    """Whether this machine has the server (apt-get install redis-server)."""
    return shutil.which("redis-server") is not None


@dataclass
class Server:
    folder: Path
    port: int
    persistent: bool = True  # an append-only file: a restart keeps what it had synced
    fsync: str = "always"  # when it syncs that file: every write, or "everysec"
    password: str | None = None  # required of every client (requirepass), if given
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        login = f":{self.password}@" if self.password else ""
        return f"redis://{login}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = (["--appendonly", "yes", "--appendfsync", self.fsync] if self.persistent
                       else ["--appendonly", "no"])
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--save", "", *persistence,
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill it (SIGKILL: what a crash or a lost machine does; no final save)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def restart_empty(self) -> None:
        """Start it again without its data, as a server that keeps nothing on disk does."""
        self.stop()
        for item in self.folder.iterdir():
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()
        self.start()

    def _answers(self) -> bool:
        import redis

        try:
            with redis.Redis(port=self.port, password=self.password,
                             socket_connect_timeout=0.2) as client:
                return bool(client.ping())
        except redis.exceptions.RedisError:
            return False


@contextlib.contextmanager
def private_server(persistent: bool = True, fsync: str = "always",
                   password: str | None = None) -> Iterator[Server]:
    """A fresh server, running; killed and deleted afterwards. Tests sync every write, so
    a killed server keeps all; ``fsync="everysec"`` is Redis's default, for benchmarks."""
    running = Server(Path(tempfile.mkdtemp(prefix="lrbench-redis-")), free_port(), persistent,
                     fsync, password)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(running.folder, ignore_errors=True)

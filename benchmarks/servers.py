"""The storages a benchmark compares, started for it: ``file`` (the default journal under
the results folder), ``redis`` (a private ``redis-server``, append-only file synced every
second, Redis's default for it) and ``postgresql`` ($LRBENCH_TEST_POSTGRES, else a private
server). The private servers are the tests' helpers (tests/private_*.py), stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import private_postgres  # noqa: E402  (test helpers: servers on free ports)
import private_redis  # noqa: E402

STORAGES = ("file", "redis", "postgresql")


@contextlib.contextmanager
def storage_servers(names: list[str]) -> Iterator[dict[str, str | None]]:
    """Each named storage's URL (None: the journal file), its server running meanwhile."""
    with contextlib.ExitStack() as stack:
        urls: dict[str, str | None] = {}
        for name in names:
            if name == "file":
                urls[name] = None
            elif name == "redis":
                if not private_redis.available():
                    sys.exit("redis: no redis-server here (apt-get install redis-server)")
                urls[name] = stack.enter_context(
                    private_redis.private_server(fsync="everysec")).url
            elif name == "postgresql":
                url = os.environ.get("LRBENCH_TEST_POSTGRES")
                if url is None:
                    if not private_postgres.available():
                        sys.exit("postgresql: set LRBENCH_TEST_POSTGRES, or apt-get install "
                                 "postgresql")
                    url = stack.enter_context(private_postgres.private_server()).url
                urls[name] = url
            else:
                sys.exit(f"unknown storage {name!r}: one of {STORAGES}")
        yield urls

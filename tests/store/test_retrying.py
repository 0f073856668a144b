"""Tests for lrbench.store.outage: a server call retried through a lost connection, within
a bound, and nothing else retried. (A real PostgreSQL stopped and started under a sweep:
tests/test_outage.py.)"""

from __future__ import annotations

import logging

import pytest

from lrbench.errors import StorageOutage
from lrbench.store import outage


class OperationalError(Exception):
    """Named as psycopg2's and SQLAlchemy's are: a lost or refused connection."""


@pytest.fixture
def no_sleeping(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []
    monkeypatch.setattr(outage.time, "sleep", delays.append)
    yield delays
    outage.set_wait_seconds(outage.DEFAULT_WAIT_SECONDS)


def flaky(failures: int, error: Exception) -> tuple[list[int], object]:
    calls: list[int] = []

    def call(x: int) -> int:
        calls.append(x)
        if len(calls) <= failures:
            raise error
        return 2 * x
    return calls, call


def test_a_lost_connection_is_retried_with_backoff_and_said_once(
        no_sleeping: list[float], caplog: pytest.LogCaptureFixture) -> None:
    waits: list[None] = []
    outage.set_wait_seconds(60, on_wait=lambda: waits.append(None))
    calls, call = flaky(3, OperationalError("server closed the connection"))
    with caplog.at_level(logging.WARNING, logger=outage.__name__):
        assert outage.retrying(call, "postgresql://u:***@db/x")(21) == 42
    assert calls == [21] * 4
    assert no_sleeping == [0.5, 1.0, 2.0]  # doubling from FIRST_DELAY_SECONDS
    assert len(waits) == 3  # a slot marks progress at each wait: waiting is not stuck
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "unreachable" in said[0] and "is back" in said[1]
    assert all("***" in line for line in said)


def test_any_other_error_is_raised_at_once(no_sleeping: list[float]) -> None:
    calls, call = flaky(1, ValueError("no such study"))
    with pytest.raises(ValueError, match="no such study"):
        outage.retrying(call, "x")(1)
    assert calls == [1] and no_sleeping == []


def test_past_the_bound_it_stops_in_one_line(no_sleeping: list[float]) -> None:
    outage.set_wait_seconds(0)
    calls, call = flaky(10, OperationalError("connection refused"))
    with pytest.raises(StorageOutage, match=r"storage redis://h unreachable for \d+ s "
                                            r"\(--storage-wait 0; last: OperationalError"):
        outage.retrying(call, "redis://h")(1)
    assert len(calls) == 1


def test_a_cause_deep_in_the_chain_counts() -> None:
    """Optuna wraps SQLAlchemy's error, which wraps the driver's."""
    try:
        try:
            raise OperationalError("gone")
        except OperationalError as inner:
            raise RuntimeError("commit failed") from inner
    except RuntimeError as outer:
        assert outage.is_transient(outer)
    assert not outage.is_transient(RuntimeError("commit failed"))

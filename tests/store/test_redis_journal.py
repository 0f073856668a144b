"""Tests for lrbench.store.redis_journal: Optuna's journal on a real Redis server.

Each test gets an emptied database on one private ``redis-server`` (tests/private_redis.py)
with an append-only file; the tests that restart it get their own.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import optuna
import private_redis
import pytest
import redis
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalRedisBackend
from optuna.trial import TrialState

from lrbench.errors import StorageError, UserError
from lrbench.store import redis_journal
from lrbench.store.record import batched_writes
from lrbench.store.storage import open_storage

pytestmark = pytest.mark.skipif(not private_redis.available(),
                                reason="no redis-server here (apt-get install redis-server)")


@pytest.fixture(scope="module")
def server() -> Iterator[private_redis.Server]:
    with private_redis.private_server() as running:
        yield running


@pytest.fixture
def url(server: private_redis.Server) -> str:
    with redis.Redis.from_url(server.url) as client:
        client.flushdb()
    return server.url


def optunas_own(url: str) -> JournalStorage:
    """The storage as Optuna itself opens it (and optuna-dashboard does)."""
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        return JournalStorage(JournalRedisBackend(url))


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1, 1)
    for step in range(3):
        trial.report(x * step, step)
    return x * x


def test_optuna_reads_what_lrbench_wrote_and_the_other_way_round(url: str) -> None:
    ours = optuna.create_study(study_name="s", storage=open_storage(url))
    ours.optimize(quadratic, n_trials=5)
    theirs = optuna.load_study(study_name="s", storage=optunas_own(url))
    assert [t.params for t in theirs.trials] == [t.params for t in ours.trials]
    assert [t.intermediate_values for t in theirs.trials] == \
           [t.intermediate_values for t in ours.trials]
    theirs.optimize(quadratic, n_trials=2)
    again = optuna.load_study(study_name="s", storage=open_storage(url, create=False))
    assert len(again.trials) == 7
    assert [t.value for t in again.trials] == [t.value for t in theirs.trials]


def test_reads_come_in_batches_and_keep_the_order(url: str, monkeypatch) -> None:
    monkeypatch.setattr(redis_journal, "READ_BATCH", 4)
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    study.optimize(quadratic, n_trials=6)  # ~60 entries: 15 batches
    fresh = optuna.load_study(study_name="s", storage=open_storage(url, create=False))
    assert [t.params for t in fresh.trials] == [t.params for t in study.trials]


def test_a_batch_of_writes_is_one_round_trip_and_all_or_nothing(url: str) -> None:
    storage = open_storage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    with redis.Redis.from_url(url) as client:
        evals = client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0)
        with batched_writes(storage):
            for step in range(5):
                trial.report(step / 10, step)
            assert int(client.get(":log_number")) == 1  # nothing sent yet
        assert client.info("commandstats")["cmdstat_eval"]["calls"] == evals + 1
        assert int(client.get(":log_number")) == 6
        with pytest.raises(RuntimeError), batched_writes(storage):
            trial.set_user_attr("never", 1)
            raise RuntimeError("the block failed")
        assert int(client.get(":log_number")) == 6
    again = optuna.load_study(study_name="s", storage=open_storage(url, create=False))
    assert again.trials[0].intermediate_values == {s: s / 10 for s in range(5)}
    assert "never" not in again.trials[0].user_attrs


def test_no_experimental_warning_is_shown(url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_storage(url)


def test_a_server_that_lost_its_data_is_refused_on_the_next_read_and_write(url: str) -> None:
    storage = open_storage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(quadratic, n_trials=3)
    with redis.Redis.from_url(url) as client:
        client.flushdb()  # what a restart of a server without persistence leaves
    with pytest.raises(StorageError, match=r"lost its data: this process read \d+ journal "
                                           r"entries, and the server now holds 0\. "):
        study.optimize(quadratic, n_trials=1)
    with redis.Redis.from_url(url) as client:
        assert client.dbsize() == 0  # nothing was written over the lost study


def test_a_journal_that_went_back_is_refused_too(url: str) -> None:
    """An older snapshot of the data (save rules, a crash): the counter is lower."""
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    study.optimize(quadratic, n_trials=3)
    with redis.Redis.from_url(url) as client:
        client.set(":log_number", 2)
    with pytest.raises(StorageError, match="lost its data: .* the server now holds 3\\. "):
        study.optimize(quadratic, n_trials=1)


def test_a_lost_journal_already_replaced_by_a_longer_one_is_refused(url: str) -> None:
    """The counter alone would pass: another process wrote more entries since the loss."""
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    study.optimize(quadratic, n_trials=1)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    other = optuna.create_study(study_name="t", storage=open_storage(url))
    other.optimize(quadratic, n_trials=5)  # more entries than the first process read
    with pytest.raises(StorageError, match="the server now holds \\d+ of another journal"):
        study.optimize(quadratic, n_trials=1)
    with pytest.raises(StorageError, match="of another journal"):
        study.get_trials()  # reads refuse too


def test_a_missing_entry_is_named_not_waited_for(url: str) -> None:
    optuna.create_study(study_name="s", storage=open_storage(url)).optimize(quadratic, 2)
    with redis.Redis.from_url(url) as client:
        client.delete(":log:3")
    with pytest.raises(StorageError, match="journal entry 3 \\(key ':log:3'\\) is missing"):
        open_storage(url, create=False)


def test_a_damaged_entry_is_named(url: str) -> None:
    optuna.create_study(study_name="s", storage=open_storage(url)).optimize(quadratic, 2)
    with redis.Redis.from_url(url) as client:
        client.set(":log:2", b"{not json")
    with pytest.raises(StorageError, match="journal entry 2 \\(key ':log:2'\\) is not JSON"):
        open_storage(url, create=False)


def test_a_server_without_persistence_is_refused_for_writing_but_read() -> None:
    with private_redis.private_server(persistent=False) as volatile:
        with pytest.raises(UserError, match="keeps nothing on disk .* `redis-server "
                                            "--appendonly yes"):
            open_storage(volatile.url)
        assert open_storage(volatile.url, create=False).get_all_studies() == []


def test_the_password_is_masked_in_every_message() -> None:
    """On a server of its own that requires a password. (On the module's, which requires
    none and accepts any, it passed only after a test had left a damaged journal there,
    whose error named the URL: alone, or on another xdist worker, nothing was raised.)"""
    with private_redis.private_server(password="right") as guarded:
        wrong = f"redis://:s3cret@127.0.0.1:{guarded.port}/0"
        with pytest.raises(UserError) as caught:
            open_storage(wrong)
        assert "s3cret" not in str(caught.value)
        assert f"redis://:***@127.0.0.1:{guarded.port}/0" in str(caught.value)
        assert open_storage(guarded.url).get_all_studies() == []  # the right one opens


def test_a_restart_with_the_data_is_waited_out() -> None:
    with private_redis.private_server() as own:
        study = optuna.create_study(study_name="s", storage=open_storage(own.url))
        study.optimize(quadratic, n_trials=2)
        own.stop()
        own.start()  # the append-only file brings every entry back
        study.optimize(quadratic, n_trials=2)
        states = [t.state for t in optuna.load_study(
            study_name="s", storage=open_storage(own.url, create=False)).trials]
        assert states == [TrialState.COMPLETE] * 4

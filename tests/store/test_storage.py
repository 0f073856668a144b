"""Tests for lrbench.store.storage: opening journals and URLs, and the cross-process claim lock.

Every storage lives in tmp_path; nothing here needs a database server or the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage

from lrbench.errors import UserError
from lrbench.store.storage import open_storage, shown, storage_location, study_names

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_storage_location_defaults_to_a_journal_in_results(tmp_path: Path):
    assert storage_location(None, tmp_path) == str(tmp_path / "lrbench.journal")
    assert storage_location("sqlite:///x.db", tmp_path) == "sqlite:///x.db"


def test_new_journal_creates_its_folders(tmp_path: Path):
    path = tmp_path / "a" / "b" / "lrbench.journal"
    storage = open_storage(str(path))
    assert isinstance(storage, JournalStorage)
    assert path.parent.is_dir()
    optuna.create_study(study_name="s", storage=storage)
    assert study_names(open_storage(str(path), create=False)) == ["s"]


def test_missing_journal_without_create_is_a_user_error(tmp_path: Path):
    """`lrbench report` on a typo'd --results must say so, not create an empty journal."""
    path = tmp_path / "nowhere" / "lrbench.journal"
    with pytest.raises(UserError, match="no lrbench storage at") as err:
        open_storage(str(path), create=False)
    assert str(path) in str(err.value)
    assert not path.parent.exists()


def test_folder_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="is a folder"):
        open_storage(str(tmp_path))


def test_uncreatable_folder_is_a_user_error(tmp_path: Path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match="cannot create the results folder"):
        open_storage(str(tmp_path / "file" / "lrbench.journal"))


def test_sqlite_url_works(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    storage = open_storage(url)
    assert isinstance(storage, RDBStorage)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.tell(study.ask(), 0.5)
    reopened = optuna.load_study(study_name="s", storage=open_storage(url))
    assert [t.value for t in reopened.trials] == [0.5]


@pytest.mark.parametrize("url", [
    "nosuchdb://x",  # unknown dialect
    "sqlite:////nonexistent-lrbench-dir/x.db",  # cannot be opened
    "postgresql://user@127.0.0.1:1/db",  # driver not installed (or server down)
    "://",
])
def test_bad_url_is_a_user_error(url: str):
    """A typo in --storage must be one clear line naming the URL, not a traceback."""
    with pytest.raises(UserError) as err:
        open_storage(url)
    assert str(err.value).startswith(f"--storage {url}: ")


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://lrbench:s3cret@db.example:5432/lrbench",
     "postgresql://lrbench:***@db.example:5432/lrbench"),
    ("postgresql+psycopg://u:p%40ss@h/d", "postgresql+psycopg://u:***@h/d"),
    ("postgresql://lrbench@db/lrbench", "postgresql://lrbench@db/lrbench"),  # no password
    ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("results/lrbench.journal", "results/lrbench.journal"),
])
def test_a_storage_is_shown_with_its_password_masked(url: str, expected: str):
    assert shown(url) == expected


@pytest.mark.parametrize("url", ["postgresql://lrbench:s3cret@127.0.0.1:1/lrbench",
                                 "redis://:s3cret@127.0.0.1:1/0"])
def test_a_connection_error_never_prints_the_password(url: str):
    with pytest.raises(UserError) as err:
        open_storage(url)
    assert "s3cret" not in str(err.value) and ":***@127.0.0.1:1" in str(err.value)


@pytest.mark.parametrize(("url", "module", "extra"), [
    ("redis://127.0.0.1:1/0", "redis", "redis"),
    ("postgresql+psycopg://u@127.0.0.1:1/d", "psycopg", "postgres"),
])
def test_a_missing_driver_says_which_extra_installs_it(url: str, module: str, extra: str,
                                                       monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # an import of it now fails
    with pytest.raises(UserError, match=f"cannot open it: .*pip install "
                                        f"'lrbench-sweeps\\[{extra}\\]' installs its driver"):
        open_storage(url)


def test_unreachable_redis_url_is_a_user_error():
    with pytest.raises(UserError):
        open_storage("redis://127.0.0.1:1")


def test_file_that_is_not_a_journal_is_a_user_error(tmp_path: Path):
    path = tmp_path / "sweep.toml"
    path.write_text('[study]\nname = "x"\n')
    with pytest.raises(UserError):
        open_storage(str(path)).get_all_studies()

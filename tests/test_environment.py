"""Tests for lrbench.environment: the waits that environment variables set."""

from __future__ import annotations

import pytest
from conftest import run_lrbench

from lrbench import environment


def test_a_wait_is_its_default_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LRBENCH_TEST_WAIT", raising=False)
    assert environment.seconds("LRBENCH_TEST_WAIT", 10) == 10.0
    monkeypatch.setenv("LRBENCH_TEST_WAIT", "")
    assert environment.seconds("LRBENCH_TEST_WAIT", 10) == 10.0
    monkeypatch.setenv("LRBENCH_TEST_WAIT", "2.5")
    assert environment.seconds("LRBENCH_TEST_WAIT", 10) == 2.5


@pytest.mark.parametrize("text", ["abc", "0", "-3", "inf", "nan"])
def test_a_wait_that_is_no_positive_number_exits_2_naming_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str) -> None:
    monkeypatch.setenv("LRBENCH_TEST_WAIT", text)
    with pytest.raises(SystemExit) as ended:
        environment.seconds("LRBENCH_TEST_WAIT", 10)
    assert ended.value.code == 2
    assert capsys.readouterr().err == (
        f"lrbench: error: LRBENCH_TEST_WAIT={text!r}: not a positive number of seconds "
        f"(unset it for the default, 10)\n")


@pytest.mark.slow
def test_the_command_with_a_bad_wait_exits_2_without_a_traceback(tmp_path) -> None:
    """Read as the sweep's modules load, after its fork server started."""
    done = run_lrbench("sweep", "smoke", results=tmp_path,
                       env={"LRBENCH_STOP_GRACE_SECONDS": "ten"})
    assert done.returncode == 2, done.stderr
    assert "LRBENCH_STOP_GRACE_SECONDS='ten': not a positive number" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "lrbench.journal").exists()

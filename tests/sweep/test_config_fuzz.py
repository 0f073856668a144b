"""Property-based fuzz of the sweep file: any value at any key is used or refused clearly.

Hypothesis replaces (or deletes) one value of a shipped sweep file, anywhere in it: a
table's key, a search range's bound, an element of the families list, a fixed trial's
parameter. Loading the file, then checking it against the data (what ``lrbench sweep``
does before it writes anything), must either accept it or raise ``UserError`` naming the
file and the key; any other exception is the traceback a user would have seen. The CLI
tests at the end check the other half for a few such files: exit 2, one line, and no
storage written.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from conftest import DATA, REPO, run_lrbench
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrbench.errors import UserError
from lrbench.sweep import config

SHIPPED = ("all", "step", "dlwizard", "modern", "plateau")
TRAIN_IMAGES = 5000  # the shared sample's


def leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every value's path in a parsed TOML document (list indices included)."""
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in leaves(value, (*path, key))]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in leaves(value, (*path, i))]
    return [path]


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``document`` with the value at ``path`` replaced (or removed: ``DELETE``)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(document) if isinstance(document, dict) else list(document)
    if not rest and value is DELETE:
        del copy[head]
    else:
        copy[head] = replaced(document[head], rest, value)
    return copy


DELETE = object()
HOSTILE = st.one_of(
    st.just(DELETE),
    st.booleans(),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from([0, 1, -1, 2**63 - 1, 10**12, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 0.0, -0.0, 1e-300, 1e300]),
    st.text(max_size=12),
    st.sampled_from(["", "step", "constant", "tpe", "none", "fnn", "mnist", "auto"]),
    st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["step", "cosine", "step"])),
             max_size=4),
    st.fixed_dictionaries({"low": st.floats(allow_nan=True, allow_infinity=True),
                           "high": st.floats(allow_nan=True, allow_infinity=True)},
                          optional={"log": st.booleans()}),
)


def documents() -> dict[str, Any]:
    return {name: tomllib.loads((REPO / "sweeps" / f"{name}.toml").read_text())
            for name in SHIPPED}


PARSED = documents()


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, tuple[Any, ...], Any]:
    name = draw(st.sampled_from(SHIPPED))
    path = draw(st.sampled_from(leaves(PARSED[name])))
    cut = draw(st.integers(min_value=1, max_value=len(path)))  # a whole table, or one value
    return name, path[:cut], draw(HOSTILE)


def write(folder: Path, document: Any) -> Path:
    path = folder / "fuzzed.toml"
    path.write_text(tomli_w.dumps(document))
    return path


# derandomize: CI tests the same 1,000 examples every run. To explore more, run with
# --hypothesis-seed=N (12,000 random examples found one message to improve: a fixed
# trial outside a default range that follows train.epochs now says so).
@pytest.mark.slow
@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=mutations())
def test_any_value_at_any_key_is_used_or_refused_by_name(tmp_path: Path,
                                                         mutation: tuple[str, tuple, Any]):
    name, path, value = mutation
    try:
        document = replaced(PARSED[name], path, value)
        file = write(tmp_path, document)
    except (TypeError, ValueError):
        return  # not writable as TOML (a None, a mixed array): no user can write it either
    try:
        loaded = config.load(file)
        config.check_against_data(loaded, TRAIN_IMAGES)
    except UserError as refused:
        message = str(refused)
        assert str(file) in message, message
        assert "\n" not in message.strip(), message
        named = [str(part) for part in path if isinstance(part, str)]
        assert not named or any(part in message for part in named), (path, message)
    else:  # accepted: then every number it kept is finite and every count positive
        assert loaded.trials >= 1 and loaded.epochs >= 1 and loaded.batch_size >= 1
        assert math.isfinite(loaded.optimizer.lr) and loaded.optimizer.lr > 0


BAD_FILES = {
    "lr = inf": (("optimizer", "lr"), math.inf),
    "families listed twice": (("schedules", "families"), ["step", "step"]),
    "a search bound of inf": (("search", "lr"), {"low": 0.01, "high": math.inf, "log": True}),
}


@pytest.mark.slow
@pytest.mark.parametrize("what", BAD_FILES)
def test_the_command_refuses_them_in_one_line_and_writes_nothing(tmp_path: Path, what: str):
    path, value = BAD_FILES[what]
    file = write(tmp_path, replaced(PARSED["all"], path, value))
    results = tmp_path / "results"
    done = run_lrbench("sweep", str(file), results=results, data_dir=DATA, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lrbench: error: {file}: "), done.stderr
    assert path[-1] in lines[0]
    assert not results.exists() or not any(results.iterdir())

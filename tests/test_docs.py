"""The README against the code: its tables cannot drift silently.

Each test reads a README table and compares it with what the code defines: the flags of
``lrbench sweep``, the sweep file's keys, and the fields of the stored records.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib

from conftest import REPO

from lrbench.cli import cli
from lrbench.store.record import CLAIM_ATTR, PLAN_ATTR, RECORD_ATTR, Claim, Plan, TrialRecord
from lrbench.sweep.config import FAMILIES, KEYS
from lrbench.train.data import DATASETS
from lrbench.train.models import MODELS

README = (REPO / "README.md").read_text(encoding="utf-8")


def section(heading: str) -> str:
    """The README's text from ``heading`` to the next heading of the same level."""
    level = heading.split(" ")[0]
    start = README.index(f"\n{heading}\n")
    end = README.find(f"\n{level} ", start + len(heading) + 2)
    return README[start:end if end > 0 else None]


def table_after(text: str, lead: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``lead`` in ``text`` (header skipped)."""
    rows = []
    for line in text[text.index(lead):].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif rows:
            break
    return rows[2:]


def test_the_flag_table_lists_every_flag_of_lrbench_sweep_and_no_other() -> None:
    rows = table_after(README, "Flags of `lrbench sweep`")
    documented = {re.match(r"`(--[a-z0-9-]+)", flag).group(1) for flag, _ in rows}
    options = {name for param in cli.commands["sweep"].params
               for name in param.opts if name.startswith("--")} - {"--help"}
    assert documented == options


def test_the_sweep_file_example_holds_every_key_of_each_table() -> None:
    """The ``[study]`` ... ``[schedules]`` tables of the format's example, keys written or
    commented out, against the keys the sweep file's reader accepts."""
    example = re.search(r"```toml\n(.*?)```", section("## Sweep files (`sweeps/*.toml`)"),
                        re.S).group(1)
    tomllib.loads(example)  # the example itself is a valid file
    written: dict[str, set[str]] = {}
    table = ""
    for line in example.splitlines():
        if header := re.match(r"\[+([\w.]+)\]+", line):
            table = header.group(1)
        elif key := re.match(r"(?:# )?(\w+) = ", line):
            written.setdefault(table, set()).add(key.group(1))
    for table, keys in KEYS.items():
        assert written[table] == {k for k in keys if k not in FAMILIES}, table


def test_the_stored_record_table_names_every_field() -> None:
    rows = {row[0].strip("`"): row for row in table_after(README, "three typed records")}
    for attr, record in ((PLAN_ATTR, Plan), (CLAIM_ATTR, Claim), (RECORD_ATTR, TrialRecord)):
        assert rows[attr][1] == f"`{record.__name__}`"
        named = set(re.findall(r"`(\w+)`", rows[attr][3]))
        missing = {field.name for field in dataclasses.fields(record)} - named
        assert not missing, f"README's {attr} row lacks {sorted(missing)}"


def test_the_family_table_has_a_row_per_registered_family() -> None:
    rows = table_after(section("### Schedule families"), "### Schedule families")
    assert [row[0].strip("`") for row in rows] == list(FAMILIES)


def test_the_sweep_file_example_names_every_model_and_data_set() -> None:
    example = section("## Sweep files (`sweeps/*.toml`)")
    models = re.search(r"model = \"fnn\" +# (.*)", example).group(1)
    datasets = re.search(r"dataset = \"mnist\" +# (.*)", example).group(1)
    # the built-ins, then the import path of your own
    *built_in, own_model = models.split(" | ")
    assert [m.split(" ")[0] for m in built_in] == list(MODELS)
    assert own_model.startswith('"module:factory"')
    *built_in, own_data = datasets.split(" | ")
    assert built_in == list(DATASETS) and own_data.startswith('"module:loader"')


def test_the_layout_table_names_every_module_in_its_package_row() -> None:
    rows = {row[0].strip("`"): row[2] for row in table_after(README, "Layout (one sub-package")}
    for module in sorted((REPO / "lrbench").rglob("*.py")):
        if module.name in ("__init__.py", "__main__.py"):
            continue
        package = module.parent.relative_to(REPO).as_posix() + "/"
        assert f"`{module.name}`" in rows[package], f"README's {package} row lacks {module.name}"

"""The study's cost-setting defaults are what docs/study-real-models.md says they are (its "Defaults" table), in
`StudyConfig` and on the command line: a default changed in one place and not the other fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from bnlab import cli
from bnlab.workflows.study import StudyConfig

PAGE = Path(__file__).resolve().parents[1] / "docs" / "study-real-models.md"
ROW = re.compile(r"^\| `(?P<field>\w+)`(?: \(`(?P<option>--[\w-]+)`\))? \| (?P<value>[^|]+?) \|")
CLI_FIELD = {"--samples": "samples", "--grid": "grid"}  # the option's parameter name in `bnlab study`


def _rows() -> list[re.Match]:
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## Defaults", 1)[1].split("\n## ", 1)[0]
    return [m for line in section.splitlines() if (m := ROW.match(line))]


def _value(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text.strip()


def test_the_docs_table_lists_every_cost_setting() -> None:
    fields = {m["field"] for m in _rows()}
    assert fields == {"samples", "landscape_points", "hessian_samples", "hessian_tol", "hessian_criterion",
                      "trace_rtol", "trace_samples"}


@pytest.mark.parametrize("row", _rows(), ids=lambda m: m["field"])
def test_each_documented_default_is_the_configs_and_the_command_lines(row: re.Match) -> None:
    documented = _value(row["value"])
    assert getattr(StudyConfig(), row["field"]) == documented
    if row["option"]:
        name = CLI_FIELD[row["option"]]
        option = inspect.signature(cli.study).parameters[name].default
        declared = option.param_decls or ("--" + name.replace("_", "-"),)  # typer's name when none is given
        assert option.default == documented and row["option"] in declared

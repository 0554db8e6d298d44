"""docs/redaction.md is the contract: every row of its tables is checked here, in every place
its last column names, so the documented shapes and the code cannot drift apart.

Text rows also go through the real capture path: an `@observe`d function raises an exception
carrying the example, and the error message handed to the writer must be the documented one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import agentwatch
from _capture_fixtures import Captured, captured  # noqa: F401
from agentwatch.redaction import Redactor, mask_url

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "redaction.md"
#: The `redact_patterns` the doc says its rows assume.
USER_PATTERNS = ("cust-[0-9]+",)
PLACES = {"text", "keys", "URLs", "names"}


@dataclass(frozen=True)
class Row:
    what: str
    example: str
    stored: str
    places: tuple[str, ...]

    def __str__(self) -> str:
        return self.what


def _code(cell: str) -> str:
    cell = cell.strip()
    assert cell.startswith("`") and cell.endswith("`"), f"not a code cell: {cell!r}"
    return cell[1:-1].replace("\\n", "\n")


def _rows(marker: str) -> list[Row]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    lines = [line for line in body.strip().splitlines() if line.startswith("|")]
    rows = []
    for line in lines[2:]:  # header and separator
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 4, line
        places = tuple(p.strip() for p in cells[3].split(","))
        assert set(places) <= PLACES, line
        rows.append(Row(cells[0], _code(cells[1]), _code(cells[2]), places))
    return rows


SECRET_ROWS = _rows("redaction-table")
READABLE_ROWS = _rows("readable-table")
ALL_ROWS = SECRET_ROWS + READABLE_ROWS


def _places(rows: list[Row], place: str) -> Iterator[Row]:
    return (row for row in rows if place in row.places)


def test_the_tables_are_read() -> None:
    assert len(SECRET_ROWS) >= 30 and len(READABLE_ROWS) >= 5
    for row in SECRET_ROWS:
        assert row.example != row.stored, f"{row}: a secret row must change its example"
    for row in READABLE_ROWS:
        assert row.example == row.stored, f"{row}: a readable row must keep its example"


def test_every_marker_the_code_can_leave_is_documented() -> None:
    source = (ROOT / "exporter" / "agentwatch" / "redaction.py").read_text(encoding="utf-8")
    markers = set(re.findall(r"\[REDACTED:[a-z_]+\]", source))
    documented = " ".join(row.stored for row in SECRET_ROWS)
    assert markers and not {m for m in markers if m not in documented}


@pytest.mark.parametrize("row", list(_places(ALL_ROWS, "text")), ids=str)
def test_text_row(row: Row) -> None:
    assert Redactor(USER_PATTERNS).redact_text(row.example) == row.stored


@pytest.mark.parametrize("row", list(_places(ALL_ROWS, "text")), ids=str)
def test_text_row_in_a_captured_error_message(row: Row, captured: Captured) -> None:  # noqa: F811
    captured.reconfigure(redact_patterns=list(USER_PATTERNS))

    @agentwatch.observe(name="failing")
    def failing() -> None:
        raise RuntimeError(row.example)

    with pytest.raises(RuntimeError):
        failing()
    assert captured.sink.execution("failing").error_message == row.stored


@pytest.mark.parametrize("row", list(_places(ALL_ROWS, "keys")), ids=str)
def test_keys_row(row: Row) -> None:
    assert Redactor().redact(json.loads(row.example)) == json.loads(row.stored)


@pytest.mark.parametrize("row", list(_places(ALL_ROWS, "keys")), ids=str)
def test_keys_row_in_captured_arguments(row: Row, captured: Captured) -> None:  # noqa: F811
    captured.reconfigure(capture_arguments=True)

    @agentwatch.observe(name="with_arguments")
    def with_arguments(payload: object) -> None:
        return None

    with_arguments(json.loads(row.example))
    arguments = captured.sink.execution("with_arguments").arguments
    assert arguments == {"payload": json.loads(row.stored)}


@pytest.mark.parametrize("row", list(_places(ALL_ROWS, "URLs")), ids=str)
def test_urls_row(row: Row) -> None:
    assert mask_url(row.example) == row.stored


@pytest.mark.parametrize("row", list(_places(ALL_ROWS, "names")), ids=str)
def test_names_row(row: Row, captured: Captured) -> None:  # noqa: F811
    assert Redactor(USER_PATTERNS).redact_name(row.example) == row.stored
    captured.reconfigure(redact_patterns=list(USER_PATTERNS))

    with agentwatch.track(row.example):
        agentwatch.record_tool_call(row.example)
    (execution,) = captured.sink.executions()
    assert execution.agent == row.stored
    assert [event.name for event in execution.events] == [row.stored]


def test_the_page_is_linked_from_the_readme_and_the_configuration_page() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "configuration.md"):
        assert "redaction.md" in page.read_text(encoding="utf-8"), page

"""How the CLI writes money, durations, statuses, URLs and machine records."""

from __future__ import annotations

import pytest
from rich.console import Console

from agentwatch.cli._render import (
    RECORD_FIELDS,
    cost_table,
    duration,
    event_record,
    execution_record,
    money,
    redact_url,
    trace_tree,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0.0, "$0.00"),
        (0.0003, "$0.0003"),
        (0.0512, "$0.0512"),
        (0.000012, "$0.000012"),
        (0.00000123, "$0.0000012"),
        (1.54, "$1.54"),
        (1234.5, "$1,234.50"),
        (-0.5, "-$0.5000"),
    ],
)
def test_money_keeps_tiny_llm_costs_visible(value: float | None, text: str) -> None:
    assert money(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0042, "4.2ms"),
        (0.52, "0.52s"),
        (12.34, "12.3s"),
        (125, "2m 05s"),
        (3720, "1h 02m"),
        (-0.4, "-0.40s"),
    ],
)
def test_durations_read_naturally(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_store_urls_never_show_a_password() -> None:
    assert (
        redact_url("postgresql://app:s3cret@db:5432/agents")
        == "postgresql://app:***@db:5432/agents"
    )
    assert (
        redact_url("postgresql://postgres@127.0.0.1/test") == "postgresql://postgres@127.0.0.1/test"
    )
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def _execution() -> dict[str, object]:
    return {
        "id": "e1",
        "agent_name": "researcher",
        "parent_id": None,
        "kind": "agent",
        "status": "failed",
        "started_at": 1_790_000_000.0,
        "ended_at": 1_790_000_002.5,
        "duration": 2.5,
        "error_type": "RateLimitError",
        "error_message": "slow down",
        "arguments": None,
        "attributes": {"team": "search"},
        "metrics": {
            "total_cost": 0.0012,
            "total_tokens": 150,
            "input_tokens": 100,
            "output_tokens": 50,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "llm_calls": 1,
            "tool_calls": 0,
        },
    }


def test_execution_records_have_the_documented_keys_and_both_time_forms() -> None:
    record = execution_record(_execution())
    assert tuple(record) == RECORD_FIELDS
    assert record["agent"] == "researcher"
    assert record["started_at"] == "2026-09-21T14:13:20.000+00:00"
    assert record["started_at_epoch"] == 1_790_000_000.0
    assert record["cost_usd"] == 0.0012
    assert record["total_tokens"] == 150


def _plain(renderable: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_failed_trace_shows_the_error_type_and_nested_offsets() -> None:
    parent = _execution()
    child = {
        **_execution(),
        "id": "c1",
        "agent_name": "summariser",
        "status": "completed",
        "started_at": 1_790_000_001.0,
        "events": [],
        "children_records": [],
    }
    parent["events"] = [
        {
            "seq": 0,
            "kind": "llm_call",
            "name": "gpt-4o-mini",
            "model": "gpt-4o-mini",
            "started_at": 1_790_000_000.25,
            "offset": 0.25,
            "duration": 0.5,
            "status": "success",
            "input_tokens": 100,
            "output_tokens": 50,
            "total_tokens": 150,
            "cost_usd": 0.0012,
        },
    ]
    parent["children_records"] = [child]
    text = _plain(trace_tree(parent))
    assert "Error: RateLimitError: slow down" in text
    assert "[0.25s] LLM gpt-4o-mini - 150 tokens (100 in / 50 out), $0.0012, 0.50s" in text
    assert "[1.00s] Agent summariser (c1)" in text
    assert text.index("[0.25s]") < text.index("[1.00s]")
    assert event_record(parent["events"][0])["offset_seconds"] == 0.25  # type: ignore[index]


def test_cost_tables_total_every_group() -> None:
    rows = [
        {"agent": "a", "calls": 2, "tokens": 300, "cost": 0.5},
        {"agent": "b", "calls": 1, "tokens": 100, "cost": 0.25},
    ]
    text = _plain(cost_table(rows, ["agent"]))
    total_line = next(line for line in text.splitlines() if "Total" in line)
    assert "3" in total_line and "400" in total_line and "$0.7500" in total_line

"""How the CLI writes money, durations, statuses, URLs and machine records."""

from __future__ import annotations

import pytest
from rich.console import Console

from agentwatch.cli._render import (
    Trace,
    cost_table,
    cost_text,
    duration,
    executions_table,
    money,
    redact_url,
    stats_table,
    trace_tree,
)
from agentwatch.store.rows import (
    EXECUTION_RECORD_FIELDS,
    CostRow,
    EventRow,
    ExecutionDetail,
    ExecutionRow,
    SummaryStats,
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


def _execution(**fields: object) -> ExecutionRow:
    values: dict[str, object] = {
        "id": "e1",
        "agent": "researcher",
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
        "cost_usd": 0.0012,
        "unpriced_calls": 0,
        "input_tokens": 100,
        "output_tokens": 50,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "llm_calls": 1,
        "tool_calls": 0,
    }
    values.update(fields)
    return ExecutionRow(**values)  # type: ignore[arg-type]


def _event(**fields: object) -> EventRow:
    values: dict[str, object] = {
        "id": 1,
        "execution_id": "e1",
        "agent": "researcher",
        "seq": 0,
        "kind": "llm_call",
        "name": "gpt-4o-mini",
        "started_at": 1_790_000_000.25,
        "offset": 0.25,
        "duration": 0.5,
        "status": "success",
        "model": "gpt-4o-mini",
        "provider": None,
        "input_tokens": 100,
        "output_tokens": 50,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.0012,
        "time_to_first_token": None,
        "error_type": None,
        "error_message": None,
        "attributes": {},
    }
    values.update(fields)
    return EventRow(**values)  # type: ignore[arg-type]


def test_execution_records_have_the_documented_keys_and_iso_times() -> None:
    record = _execution().to_record()
    assert tuple(record) == EXECUTION_RECORD_FIELDS
    assert record["agent"] == "researcher"
    assert record["started_at"] == "2026-09-21T14:13:20.000+00:00"
    assert record["duration_seconds"] == 2.5
    assert record["cost_usd"] == 0.0012 and record["unpriced_calls"] == 0


def test_a_record_never_carries_nan_or_an_unprintable_time() -> None:
    record = _execution(started_at=float("nan"), duration=float("inf")).to_record()
    assert record["started_at"] is None and record["duration_seconds"] is None


@pytest.mark.parametrize(
    ("cost", "unpriced", "text"),
    [
        (0.0, 0, "$0.00"),
        (None, 0, "$0.00"),
        (0.0123, 0, "$0.0123"),
        (None, 1, "unpriced"),
        (None, 3, "unpriced (3)"),
        (0.0123, 2, "$0.0123 + 2 unpriced"),
    ],
)
def test_unpriced_calls_never_read_as_free(cost: float | None, unpriced: int, text: str) -> None:
    assert cost_text(cost, unpriced) == text


def _plain(renderable: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_failed_trace_shows_the_error_type_and_nested_offsets() -> None:
    child = _execution(id="c1", agent="summariser", status="completed",
                       started_at=1_790_000_001.0)  # fmt: skip
    parent = Trace(
        ExecutionDetail(_execution(), (_event(),), ("c1",)), [Trace(ExecutionDetail(child))]
    )
    text = _plain(trace_tree(parent))
    assert "Error: RateLimitError: slow down" in text
    assert "[0.25s] LLM gpt-4o-mini - 150 tokens (100 in / 50 out), $0.0012, 0.50s" in text
    assert "[1.00s] Agent summariser (c1)" in text
    assert text.index("[0.25s]") < text.index("[1.00s]")
    record = parent.to_record()
    assert record["events"][0]["offset_seconds"] == 0.25
    assert [c["id"] for c in record["children"]] == ["c1"]


def test_an_unpriced_call_reads_unpriced_in_trace_and_listing() -> None:
    run = _execution(cost_usd=None, unpriced_calls=1)
    trace = Trace(ExecutionDetail(run, (_event(cost_usd=None, model="acme-7b", name="acme"),)))
    text = _plain(trace_tree(trace))
    assert "cost: unpriced" in text and "$0.00" not in text
    assert "(acme-7b) - 150 tokens (100 in / 50 out), unpriced, 0.50s" in text
    listing = _plain(executions_table([run], title="Runs"))
    assert "unpriced" in listing and "$0.00" not in listing


def test_cost_tables_total_every_group_and_count_unpriced_calls() -> None:
    rows = [
        CostRow({"agent": "a"}, llm_calls=2, unpriced_calls=0, tokens=300, cost_usd=0.5),
        CostRow({"agent": "b"}, llm_calls=1, unpriced_calls=0, tokens=100, cost_usd=0.25),
        CostRow({"agent": "c"}, llm_calls=4, unpriced_calls=4, tokens=50, cost_usd=None),
    ]
    text = _plain(cost_table(rows, ["agent"]))
    line_c = next(line for line in text.splitlines() if line.startswith("│ c "))
    assert "unpriced (4)" in line_c and "$0.00" not in line_c
    total_line = next(line for line in text.splitlines() if "Total" in line)
    assert "7" in total_line and "450" in total_line and "$0.7500 + 4 unpriced" in total_line


def test_stats_table_names_each_count() -> None:
    stats = SummaryStats(runs=53, top_level_runs=40, completed_runs=49, failed_runs=4,
                         llm_calls=60, unpriced_calls=3, tool_calls=14, cost_usd=0.01)  # fmt: skip
    lines = {" ".join(line.split()) for line in _plain(stats_table(stats)).splitlines()}
    for expected in ("Runs 53", "Top-level 40", "Nested 13", "Failed 4", "LLM calls 60",
                     "Unpriced 3", "Tool calls 14", "Total cost $0.0100 + 3 unpriced"):  # fmt: skip
        assert expected in lines

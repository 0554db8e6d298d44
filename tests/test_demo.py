"""`agentwatch demo` produces the variety the dashboards and alerts are proven against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import agentwatch
from agentwatch.demo import run_demo


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[agentwatch.EventStore]:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    agentwatch.configure(store_url=url)
    report = run_demo(runs=30, seed=3)
    assert agentwatch.flush(timeout=30)
    assert report.top_level_runs == 30 and report.runs > 30  # nested summarizer runs too
    event_store = agentwatch.EventStore(url)
    yield event_store
    event_store.close()
    agentwatch.close()


def test_demo_records_several_agents_with_failures_and_nesting(
    store: agentwatch.EventStore,
) -> None:
    executions = store.get_executions(limit=None)
    agents = {e["agent_name"] for e in executions}
    assert {"researcher", "support-bot", "translator", "summarizer"} <= agents
    assert {"completed", "failed"} == {e["status"] for e in executions}
    nested = [e for e in executions if e["agent_name"] == "summarizer"]
    parents = {e["id"]: e for e in executions}
    assert nested and all(parents[e["parent_id"]]["agent_name"] == "researcher" for e in nested)


def test_demo_llm_calls_span_providers_streaming_and_errors(store: agentwatch.EventStore) -> None:
    rows = store.cost_breakdown(["provider"])
    assert {"openai", "anthropic", "gemini"} <= {r["provider"] for r in rows}
    stats = store.get_summary_stats()
    assert stats["llm_calls"] > 30 and stats["tool_calls"] > 0 and stats["total_cost"] > 0
    streamed = [
        event
        for execution in store.get_executions(agent_name="support-bot", limit=5)
        for event in (store.get_execution(execution["id"]) or {}).get("events", [])
        if event["kind"] == "llm_call" and event["status"] == "success"
    ]
    assert streamed and all(e["time_to_first_token"] is not None for e in streamed)

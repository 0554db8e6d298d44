"""`agentwatch demo` produces the variety the dashboards and alerts are proven against."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from agentwatch.demo import DemoReport, run_demo


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[agentwatch.EventStore]:
    """The demo recorded once for the module: the tests that use it only read it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        agentwatch.configure(store_url=url)
        try:
            report = run_demo(runs=30, seed=3)
            assert agentwatch.flush(timeout=30)
        finally:
            agentwatch.close()  # the other tests of the module configure their own
    assert report.top_level_runs == 30 and report.runs > 30  # nested summarizer runs too
    event_store = agentwatch.EventStore(url)
    yield event_store
    event_store.close()


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


def _workload(tmp_path: Path, name: str, seed: int) -> tuple[DemoReport, Counter[tuple[Any, ...]]]:
    """Run the demo into a fresh store; return its report and what the store holds, minus
    ids and timings: one entry per execution with its parent's agent and its calls."""
    url = f"sqlite:///{tmp_path / name}"
    agentwatch.configure(store_url=url)
    try:
        report = run_demo(runs=12, seed=seed, concurrency=6)
        assert agentwatch.flush(timeout=30)
    finally:
        agentwatch.close()
    with closing(sqlite3.connect(tmp_path / name)) as db:
        agents = dict(db.execute("SELECT id, agent FROM executions"))
        calls: dict[str, list[tuple[Any, ...]]] = {}
        for row in db.execute(
            "SELECT execution_id, kind, name, model, status, error_type, input_tokens, "
            "output_tokens FROM events ORDER BY execution_id, seq"
        ):
            calls.setdefault(row[0], []).append(row[1:])
        shape = Counter(
            (agent, status, error_type, agents.get(parent), tuple(calls.get(id_, ())))
            for id_, agent, status, error_type, parent in db.execute(
                "SELECT id, agent, status, error_type, parent_id FROM executions"
            )
        )
    return report, shape


@pytest.mark.slow
def test_same_seed_gives_the_same_runs_failures_and_llm_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    first_report, first = _workload(tmp_path, "first.db", seed=11)
    second_report, second = _workload(tmp_path, "second.db", seed=11)
    _, other = _workload(tmp_path, "other.db", seed=12)
    assert first_report == second_report
    assert first == second
    assert sum(first.values()) > 12, "nested runs and tool calls are part of the comparison"
    assert other != first, "a different seed gives a different workload"

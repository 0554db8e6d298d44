"""`agentwatch.EventStore`: the public query API of the tutorial (steps 7, 9 and 10)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import agentwatch
from agentwatch.cardinality import CardinalityGuard
from agentwatch.errors import UnsupportedStoreURL
from agentwatch.event_store import EventStore
from agentwatch.model import ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBuilder
from conftest import Records


def fill(store: EventStore, *items: WriterItem) -> None:
    store.store.write_batch(RollupBuilder(CardinalityGuard(100)).build(items))


def test_event_store_is_the_public_export() -> None:
    assert agentwatch.EventStore is EventStore


def test_a_path_opens_a_migrated_sqlite_file(tmp_path: Path, records: Records) -> None:
    path = tmp_path / "nested" / "telemetry.db"
    with EventStore(path) as store:
        assert store.url == f"sqlite:///{path}"
        assert store.get_executions() == []
        fill(store, ExecutionFinished(records.execution("translator")))
    with EventStore(str(path)) as again:
        assert again.count_executions() == 1


def test_none_opens_the_configured_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENTWATCH_STORE_URL", raising=False)
    monkeypatch.delenv("AGENTWATCH_CONFIG", raising=False)
    with EventStore() as store:
        assert store.url == f"sqlite:///{tmp_path / 'home' / 'telemetry.db'}"
    assert (tmp_path / "home" / "telemetry.db").exists()


def test_a_url_selects_the_backend(backend_url: str, records: Records) -> None:
    with EventStore(backend_url) as store:
        fill(store, ExecutionFinished(records.execution("chatbot", events=[records.llm()])))
        assert store.store.backend in backend_url
        assert store.get_summary_stats()["llm_calls"] == 1


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(UnsupportedStoreURL):
        EventStore("mongodb://localhost/telemetry")


def test_the_tutorial_queries_work_as_written(tmp_path: Path, records: Records) -> None:
    now = time.time()
    store = EventStore(tmp_path / "telemetry.db")
    fill(
        store,
        ExecutionFinished(records.execution("translator", now - 40 * 86400, 0.5,
                                            [records.llm(now - 40 * 86400)])),
        ExecutionFinished(records.execution("translator", now - 60, 0.52,
                                            [records.llm(now - 60, cost_usd=0.0003)])),
        ExecutionFinished(records.execution("researcher", now - 30, 2.11,
                                            error_type="RuntimeError", error_message="boom")),
        LateEvent(records.llm(now - 10, cost_usd=0.002)),
    )  # fmt: skip

    executions = store.get_executions(agent_name="translator", limit=10)
    assert [f"{e['agent_name']}: {e['status']} - {e['duration']:.2f}s" for e in executions] == [
        "translator: completed - 0.52s",
        "translator: completed - 0.50s",
    ]
    stats = store.get_summary_stats(agent_name="translator")
    assert stats["total_executions"] == 2 and stats["avg_duration"] == pytest.approx(0.51)

    recent = store.get_executions(since=now - 86400)
    assert len(recent) == 2
    failed = store.get_executions(status="failed")
    assert [e.get("error") for e in failed] == ["boom"]
    execution = store.get_execution(failed[0]["id"])
    assert execution is not None and execution["status"] == "failed"
    total_cost = sum(e.get("metrics", {}).get("total_cost", 0.0) for e in recent)
    assert total_cost == pytest.approx(0.0003)

    assert store.cost_breakdown("agent")[0] == {
        "agent": "none", "calls": 1, "unpriced_calls": 0, "tokens": 30,
        "cost": pytest.approx(0.002),
    }  # fmt: skip
    assert store.spend(now - 100, now + 1) == pytest.approx(0.0023)
    assert [r.sample for r in store.read_rollups()]
    assert store.last_write_time() is not None

    thirty_days_ago = time.time() - (30 * 86400)
    assert store.delete_old_executions(older_than=thirty_days_ago) == 1
    assert store.count_executions() == 2
    assert len(list(store.iter_executions(chunk_size=1))) == 2
    store.clear_all()
    assert store.count_executions() == 0 and store.read_rollups() == []
    store.close()


def test_summary_counts_agent_runs_but_totals_include_llm_calls_inside_tools(
    backend_url: str, records: Records
) -> None:
    with EventStore(backend_url) as store:
        agent_run = records.execution("researcher", duration=2.0, events=[records.tool()])
        tool_run = records.execution(
            "web_search", duration=0.5, kind="tool", parent_id=agent_run.id,
            events=[records.llm(cost_usd=0.5)],
        )  # fmt: skip
        fill(store, ExecutionFinished(tool_run), ExecutionFinished(agent_run))
        stats = store.get_summary_stats()
        assert stats["total_executions"] == 1 and stats["completed"] == 1
        assert stats["avg_duration"] == stats["p95_duration"] == 2.0
        assert stats["total_cost"] == 0.5 and stats["llm_calls"] == 1
        assert stats["tool_calls"] == 1


def test_typed_queries_return_rows_with_one_json_shape(backend_url: str, records: Records) -> None:
    with EventStore(backend_url) as store:
        agent_run = records.execution(
            "researcher", 1_000.0, 2.0,
            events=[records.tool(1_000.1), records.llm(1_000.2, cost_usd=None, model="acme")],
        )  # fmt: skip
        tool_run = records.execution(
            "web_search", 1_000.1, 0.5, kind="tool", parent_id=agent_run.id,
            events=[records.llm(1_000.15, cost_usd=0.5, agent="researcher")],
        )  # fmt: skip
        nested = records.execution("summarizer", 1_001.0, 0.5, parent_id=agent_run.id,
                                   error_type="ValueError")  # fmt: skip
        fill(store, ExecutionFinished(tool_run), ExecutionFinished(nested),
             ExecutionFinished(agent_run))  # fmt: skip

        runs = store.executions()
        assert [(r.agent, r.kind, r.status) for r in runs] == [
            ("summarizer", "agent", "failed"),
            ("researcher", "agent", "completed"),
        ]
        researcher = runs[1]
        # Its own call (unpriced) plus the one inside its tool ($0.5); not the nested run's.
        assert (researcher.llm_calls, researcher.unpriced_calls) == (2, 1)
        assert researcher.cost_usd == 0.5 and researcher.tool_calls == 1
        assert [r.agent for r in store.executions(kind="tool")] == ["web_search"]
        assert store.count(kind=None) == 3 and store.count(status="failed") == 1
        assert [r.id for r in store.stream_executions(chunk_size=1)] == [agent_run.id, nested.id]

        detail = store.execution(agent_run.id)
        assert detail is not None and detail.child_ids == (tool_run.id, nested.id)
        assert [e.unpriced for e in detail.events] == [False, True]
        record = detail.to_record()
        assert record["agent"] == "researcher" and record["started_at"].endswith("+00:00")
        assert record["events"][1]["cost_usd"] is None

        summary = store.summary()
        assert (summary.runs, summary.top_level_runs, summary.nested_runs) == (2, 1, 1)
        assert (summary.completed_runs, summary.failed_runs) == (1, 1)
        assert (summary.llm_calls, summary.unpriced_calls, summary.tool_calls) == (2, 1, 1)
        assert summary.cost_usd == 0.5
        assert summary.to_record()["success_rate"] == 0.5

        by_model = {r.group["model"]: r for r in store.costs("model")}
        assert by_model["acme"].cost_usd is None and by_model["acme"].unpriced_calls == 1
        assert by_model["acme"].to_record() == {
            "model": "acme", "calls": 1, "unpriced_calls": 1, "tokens": 30, "cost_usd": None,
        }  # fmt: skip
        with pytest.raises(ValueError, match="kind"):
            store.executions(kind="robot")

"""The durable store, on real SQLite files and the real PostgreSQL server (one body each)."""

from __future__ import annotations

import math
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.errors import StoreError, UnsupportedStoreURL
from agentwatch.model import ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, StoreUnavailable, backend_for_url, open_store, schema
from conftest import Records


def write(store: Store, *items: WriterItem) -> None:
    store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))


def rollup(store: Store, sample: str, **labels: str) -> float | None:
    for row in store.read_rollups():
        if row.sample == sample and row.labels == labels:
            return row.value
    return None


def nearest_rank(values: list[float], percentile: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1]


def test_execution_round_trips_with_its_events(store: Store, records: Records) -> None:
    llm = records.llm(1_000.1, input_tokens=12, output_tokens=30, cached_tokens=4, cost_usd=0.25)
    tool = records.tool(1_000.4, attributes={"query": "weather"})
    execution = records.execution(
        "researcher",
        1_000.0,
        2.5,
        [llm, tool],
        arguments={"question": "why?"},
        attributes={"team": "search"},
    )
    write(store, ExecutionFinished(execution))

    got = store.execution(execution.id)
    assert got is not None
    run = got.execution
    assert (run.agent, run.status, run.kind) == ("researcher", "completed", "agent")
    assert run.duration == pytest.approx(2.5)
    assert run.arguments == {"question": "why?"}
    assert run.attributes == {"team": "search"}
    assert run.cost_usd == pytest.approx(0.25) and run.unpriced_calls == 0
    assert (run.input_tokens, run.output_tokens, run.cached_tokens, run.reasoning_tokens) == (
        12, 30, 4, 0,
    )  # fmt: skip
    assert (run.llm_calls, run.tool_calls, run.total_tokens) == (1, 1, 42)
    assert [e.kind for e in got.events] == ["llm_call", "tool_call"]
    assert [e.seq for e in got.events] == [0, 1]
    assert got.events[0].offset == pytest.approx(0.1)
    assert got.events[0].total_tokens == 42
    assert got.events[1].attributes == {"query": "weather"}
    assert got.child_ids == ()


def test_failed_execution_keeps_its_error_under_the_seeds_key(
    store: Store, records: Records
) -> None:
    execution = records.execution(error_type="TimeoutError", error_message="took too long")
    write(store, ExecutionFinished(execution))
    got = store.get_execution(execution.id)
    assert got is not None
    assert (got["status"], got["error_type"], got["error"]) == (
        "failed",
        "TimeoutError",
        "took too long",
    )


def test_children_are_listed_and_unknown_ids_give_none(store: Store, records: Records) -> None:
    parent = records.execution("planner", 1_000.0)
    child_b = records.execution("writer", 1_002.0, parent_id=parent.id)
    child_a = records.execution("searcher", 1_001.0, parent_id=parent.id)
    write(store, ExecutionFinished(child_b), ExecutionFinished(child_a), ExecutionFinished(parent))
    got = store.get_execution(parent.id)
    assert got is not None and got["children"] == [child_a.id, child_b.id]
    assert store.get_execution("exec_missing") is None


def test_late_event_lands_on_its_execution_and_totals(store: Store, records: Records) -> None:
    execution = records.execution("chatbot", 1_000.0, 1.0, [records.llm(1_000.1, cost_usd=0.5)])
    write(store, ExecutionFinished(execution))
    late = records.llm(
        1_000.8, execution_id=execution.id, agent="chatbot", input_tokens=7, cost_usd=0.25
    )
    write(store, LateEvent(late))
    write(store, LateEvent(records.tool(1_000.9, execution_id=execution.id, agent="chatbot")))

    got = store.get_execution(execution.id)
    assert got is not None
    assert [e["seq"] for e in got["events"]] == [0, 1, 2]
    assert got["metrics"]["total_cost"] == pytest.approx(0.75)
    assert got["metrics"]["input_tokens"] == 17
    assert got["metrics"]["llm_calls"] == 2
    assert got["metrics"]["tool_calls"] == 1
    assert rollup(store, "agentwatch_llm_requests_total", agent="chatbot", model="gpt-4o-mini",
                  provider="openai", status="success") == 2  # fmt: skip


def test_late_event_in_the_same_batch_as_its_execution_still_counts(
    store: Store, records: Records
) -> None:
    execution = records.execution("chatbot")
    late = records.llm(execution_id=execution.id, agent="chatbot", cost_usd=0.3)
    write(store, LateEvent(late), ExecutionFinished(execution))
    got = store.get_execution(execution.id)
    assert got is not None
    assert got["metrics"]["total_cost"] == pytest.approx(0.3)
    assert got["metrics"]["llm_calls"] == 1


def test_late_event_that_overtook_its_execution_joins_its_totals_later(
    store: Store, records: Records
) -> None:
    execution = records.execution("chatbot", events=[records.llm(cost_usd=0.5)])
    late = records.llm(execution_id=execution.id, agent="chatbot", cost_usd=0.25)
    write(store, LateEvent(late))  # the writer got the late event first, in its own batch
    write(store, LateEvent(records.tool(execution_id=execution.id, agent="chatbot")))
    write(store, ExecutionFinished(execution))
    write(store, ExecutionFinished(records.execution("other")))  # nothing pending any more

    got = store.get_execution(execution.id)
    assert got is not None
    assert got["metrics"]["total_cost"] == pytest.approx(0.75)
    assert got["metrics"]["llm_calls"] == 2
    assert got["metrics"]["tool_calls"] == 1
    assert got["metrics"]["input_tokens"] == 20
    assert len(got["events"]) == 3


def test_orphan_events_are_stored_and_rolled_up(store: Store, records: Records) -> None:
    write(store, LateEvent(records.llm(2_000.0, cost_usd=0.125)))
    orphans = store.get_events(orphans_only=True)
    assert len(orphans) == 1
    assert orphans[0]["execution_id"] is None and orphans[0]["offset"] is None
    assert orphans[0]["cost_usd"] == pytest.approx(0.125)
    assert store.count_executions() == 0
    assert rollup(store, "agentwatch_llm_cost_usd_total", agent="none", model="gpt-4o-mini",
                  provider="openai") == pytest.approx(0.125)  # fmt: skip
    assert store.spend(0, 3_000, agent="none") == pytest.approx(0.125)


def test_migrate_is_idempotent_and_recorded(backend_url: str) -> None:
    first = open_store(backend_url)
    first.migrate()
    first.migrate()
    second = open_store(backend_url)
    second.migrate()
    try:
        assert first.schema_versions() == [m.version for m in schema.MIGRATIONS]
        assert second.count_executions() == 0
    finally:
        first.close()
        second.close()


def test_concurrent_migrators_all_succeed_once(backend_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4, timeout=30)

    def migrate() -> None:
        try:
            store = open_store(backend_url)
            start.wait()
            store.migrate()
            store.close()
        except BaseException as exc:  # collected and asserted below
            start.abort()  # never leave the other threads waiting on the barrier
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with open_store(backend_url) as store:
        assert store.schema_versions() == [m.version for m in schema.MIGRATIONS]


def test_a_store_at_an_older_version_is_upgraded_in_place(
    backend_url: str, records: Records
) -> None:
    old = open_store(backend_url)
    with old.atomic() as cur:  # what version 1 of agentwatch left behind, with data
        cur.execute(schema.SCHEMA_VERSION_DDL)
        for statement in schema.statements_for(old.backend, schema.MIGRATIONS[0]):
            cur.execute(statement)
        cur.execute("INSERT INTO schema_version VALUES (1, 'v1', 0)")
        cur.execute(
            "INSERT INTO events (execution_id, agent, seq, kind, name, started_at, status) "
            "VALUES (NULL, 'none', 0, 'custom', 'before-upgrade', 1.0, 'success')"
        )
    old.migrate()
    try:
        assert old.schema_versions() == [m.version for m in schema.MIGRATIONS]
        write(old, LateEvent(records.llm(execution_id="exec_later", agent="a")))
        assert [e["name"] for e in old.get_events(limit=None)] == ["chat", "before-upgrade"]
    finally:
        old.close()


def test_get_executions_filters_newest_first_with_limit_and_offset(
    store: Store, records: Records
) -> None:
    items = []
    for i in range(6):
        agent = "translator" if i % 2 == 0 else "chatbot"
        error = "ValueError" if i == 4 else None
        items.append(ExecutionFinished(records.execution(agent, 1_000.0 + i, error_type=error)))
    write(store, *items)

    newest = store.get_executions(limit=3)
    assert [e["started_at"] for e in newest] == [1_005.0, 1_004.0, 1_003.0]
    page = store.get_executions(limit=2, offset=2)
    assert [e["started_at"] for e in page] == [1_003.0, 1_002.0]
    assert [e["started_at"] for e in store.get_executions(limit=None, offset=4)] == [
        1_001.0,
        1_000.0,
    ]
    translator = store.get_executions(agent_name="translator")
    assert {e["agent_name"] for e in translator} == {"translator"} and len(translator) == 3
    failed = store.get_executions(status="failed")
    assert [e["started_at"] for e in failed] == [1_004.0]
    window = store.get_executions(since=1_001.0, until=1_003.0)
    assert [e["started_at"] for e in window] == [1_002.0, 1_001.0]
    assert store.count_executions(agent_name="chatbot", since=1_002.0) == 2


def test_agent_filter_with_sql_injection_is_inert(store: Store, records: Records) -> None:
    write(store, ExecutionFinished(records.execution("translator")))
    hostile = "x' OR '1'='1'; DROP TABLE executions; --"
    assert store.get_executions(agent_name=hostile) == []
    assert store.count_executions(agent_name=hostile) == 0
    assert store.get_summary_stats(agent_name=hostile)["total_executions"] == 0
    assert store.cost_breakdown(["agent"], agent_name=hostile) == []
    assert store.count_executions() == 1


def test_summary_stats_match_values_computed_from_the_inputs(
    store: Store, records: Records
) -> None:
    durations = [0.1 * ((i * 37) % 101) + 0.05 for i in range(60)]
    costs = [0.001 * (i % 7) for i in range(60)]
    items = []
    for i, (duration, cost) in enumerate(zip(durations, costs, strict=True)):
        llm = records.llm(1_000.0 + i, cost_usd=cost, input_tokens=i, output_tokens=2 * i)
        events = [llm, records.tool(1_000.0 + i)] if i % 3 == 0 else [llm]
        error = "ValueError" if i % 10 == 0 else None
        items.append(ExecutionFinished(records.execution(
            "summarizer", 1_000.0 + i, duration, events, error_type=error)))  # fmt: skip
    items.append(ExecutionFinished(records.execution("other", 1_000.0, 99.0)))
    write(store, *items)

    stats = store.get_summary_stats(agent_name="summarizer")
    failed = sum(1 for i in range(60) if i % 10 == 0)
    assert stats["total_executions"] == 60
    assert stats["failed"] == failed and stats["completed"] == 60 - failed
    assert stats["success_rate"] == pytest.approx((60 - failed) / 60)
    assert stats["avg_duration"] == pytest.approx(sum(durations) / 60)
    for p in (50, 95, 99):
        assert stats[f"p{p}_duration"] == pytest.approx(nearest_rank(durations, p))
    assert stats["total_cost"] == pytest.approx(sum(costs))
    assert stats["input_tokens"] == sum(range(60))
    assert stats["total_tokens"] == 3 * sum(range(60))
    assert stats["llm_calls"] == 60
    assert stats["tool_calls"] == 20

    everyone = store.get_summary_stats()
    assert everyone["total_executions"] == 61
    assert everyone["p99_duration"] == pytest.approx(nearest_rank([*durations, 99.0], 99))


def test_summary_stats_of_nothing_are_zero_and_none(store: Store) -> None:
    stats = store.get_summary_stats(agent_name="nobody")
    assert stats["total_executions"] == 0 and stats["success_rate"] == 0
    assert stats["avg_duration"] is None and stats["p95_duration"] is None
    assert stats["total_cost"] == 0


def test_cost_breakdown_groups_by_agent_model_and_provider(store: Store, records: Records) -> None:
    write(
        store,
        ExecutionFinished(records.execution("a", events=[
            records.llm(cost_usd=1.0, model="gpt-4o"),
            records.llm(cost_usd=2.0, model="claude", provider="anthropic", input_tokens=5,
                        output_tokens=5),
        ])),
        ExecutionFinished(records.execution("b", events=[records.llm(cost_usd=4.0),
                                                         records.tool()])),
        LateEvent(records.llm(cost_usd=None, model="mystery")),
    )  # fmt: skip
    by_agent = store.costs(["agent"])
    assert [(r.group, r.llm_calls, r.unpriced_calls, r.tokens, r.cost_usd) for r in by_agent] == [
        ({"agent": "b"}, 1, 0, 30, pytest.approx(4.0)),
        ({"agent": "a"}, 2, 0, 40, pytest.approx(3.0)),
        ({"agent": "none"}, 1, 1, 30, None),  # unpriced: not $0
    ]
    by_model = store.costs(["agent", "model", "provider"], agent="a")
    assert [(r.group["model"], r.group["provider"], r.cost_usd) for r in by_model] == [
        ("claude", "anthropic", pytest.approx(2.0)),
        ("gpt-4o", "openai", pytest.approx(1.0)),
    ]
    # The pre-1.0 dicts keep their keys (an unpriced group shows 0 there, with its count).
    assert store.cost_breakdown(["agent"])[-1] == {
        "agent": "none", "calls": 1, "unpriced_calls": 1, "tokens": 30, "cost": 0.0,
    }  # fmt: skip


def test_cost_breakdown_by_date_uses_the_requested_time_zone(
    store: Store, records: Records
) -> None:
    late_evening_utc = datetime(2025, 3, 1, 23, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    next_morning_utc = late_evening_utc + 8 * 3600
    write(
        store,
        LateEvent(records.llm(late_evening_utc, cost_usd=1.0)),
        LateEvent(records.llm(next_morning_utc, cost_usd=2.0)),
    )
    utc = store.cost_breakdown(["date"])
    assert [(r["date"], r["cost"]) for r in utc] == [("2025-03-01", 1.0), ("2025-03-02", 2.0)]
    tokyo = store.cost_breakdown(["date"], tz="Asia/Tokyo")  # UTC+9: both on March 2nd
    assert [(r["date"], r["calls"], r["cost"]) for r in tokyo] == [("2025-03-02", 2, 3.0)]
    new_york = store.cost_breakdown(["date"], tz="America/New_York")  # UTC-5
    assert [r["date"] for r in new_york] == ["2025-03-01", "2025-03-02"]
    with pytest.raises(ValueError):
        store.cost_breakdown(["date"], tz="Mars/Olympus")
    with pytest.raises(ValueError):
        store.cost_breakdown(["agent; DROP TABLE events"])


def test_spend_sums_cost_in_a_half_open_range_with_scope(store: Store, records: Records) -> None:
    write(
        store,
        ExecutionFinished(records.execution("a", events=[
            records.llm(100.0, cost_usd=1.0), records.llm(199.0, cost_usd=2.0, model="gpt-4o"),
        ])),
        LateEvent(records.llm(150.0, cost_usd=4.0, agent="b", provider="anthropic")),
        LateEvent(records.llm(200.0, cost_usd=8.0, agent="a")),
        LateEvent(records.llm(120.0, cost_usd=None, agent="a")),
    )  # fmt: skip
    assert store.spend(100.0, 200.0) == pytest.approx(7.0)
    assert store.spend(100.0, 201.0, agent="a") == pytest.approx(11.0)
    assert store.spend(0.0, 1e12, model="gpt-4o") == pytest.approx(2.0)
    assert store.spend(0.0, 1e12, provider="anthropic") == pytest.approx(4.0)
    assert store.spend(300.0, 400.0) == 0.0


def test_iter_executions_streams_oldest_first_in_chunks(store: Store, records: Records) -> None:
    write(store, *(ExecutionFinished(records.execution("a", 1_000.0 + i)) for i in range(25)))
    stream = store.iter_executions(chunk_size=4)
    first = next(stream)
    assert first["started_at"] == 1_000.0
    # The stream holds its own connection: the store stays usable while it is open.
    write(store, ExecutionFinished(records.execution("b", 5_000.0)))
    assert store.count_executions() == 26
    rest = list(stream)
    assert [e["started_at"] for e in rest[:24]] == [1_001.0 + i for i in range(24)]
    assert list(store.iter_executions(agent_name="b")) == store.get_executions(agent_name="b")


def test_delete_old_executions_removes_rows_but_keeps_counters(
    store: Store, records: Records
) -> None:
    old = records.execution("a", 1_000.0, events=[records.llm(1_000.0)])
    new = records.execution("a", 9_000.0, events=[records.llm(9_000.0)])
    write(store, ExecutionFinished(old), ExecutionFinished(new),
          LateEvent(records.llm(500.0)), LateEvent(records.llm(9_500.0)))  # fmt: skip
    before = {(r.sample, tuple(sorted(r.labels.items()))): r.value for r in store.read_rollups()}

    assert store.delete_old_executions(older_than=5_000.0) == 1
    assert store.get_execution(old.id) is None
    assert store.get_execution(new.id) is not None
    assert [e["started_at"] for e in store.get_events()] == [9_500.0, 9_000.0]
    after = {(r.sample, tuple(sorted(r.labels.items()))): r.value for r in store.read_rollups()}
    assert after == before
    assert rollup(store, "agentwatch_executions_total", agent="a", status="completed") == 2


def test_clear_all_removes_rows_and_rollups(store: Store, records: Records) -> None:
    write(store, ExecutionFinished(records.execution(events=[records.llm()])))
    store.clear_all()
    assert store.count_executions() == 0
    assert store.get_events() == []
    assert store.read_rollups() == []


def test_last_write_time_is_set_by_each_batch(store: Store, records: Records) -> None:
    assert store.last_write_time() is None
    write(store, ExecutionFinished(records.execution()))
    first = store.last_write_time()
    assert first is not None and first > 1.6e9
    write(store, ExecutionFinished(records.execution()))
    second = store.last_write_time()
    assert second is not None and second >= first


def test_a_failed_transaction_leaves_nothing_behind(store: Store, records: Records) -> None:
    with pytest.raises(RuntimeError), store.atomic() as cur:
        cur.execute("DELETE FROM rollups")
        write(store, ExecutionFinished(records.execution()))  # nested: a savepoint
        raise RuntimeError("boom")
    assert store.count_executions() == 0


def test_duplicate_execution_ids_are_ignored_not_fatal(store: Store, records: Records) -> None:
    execution = records.execution()
    write(store, ExecutionFinished(execution))
    write(store, ExecutionFinished(execution))
    assert store.count_executions() == 1


# -- SQLite specifics -------------------------------------------------------------------------


def test_sqlite_store_creates_its_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "telemetry.db"
    with open_store(f"sqlite:///{path}") as store:
        store.migrate()
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_store_in_an_impossible_place_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{blocker / 'telemetry.db'}")


@pytest.mark.parametrize("url", ["mysql://root@localhost/db", "sqlite:/relative.db", "telemetry"])
def test_unsupported_store_urls_are_rejected(url: str) -> None:
    with pytest.raises(UnsupportedStoreURL):
        open_store(url)


def test_backend_names_follow_the_url() -> None:
    assert backend_for_url("sqlite:////tmp/x.db") == "sqlite"
    assert backend_for_url("postgres://u@h/db") == "postgresql"


def test_query_errors_are_store_errors(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    with pytest.raises(StoreError):
        store.get_executions()
    store.close()

"""A batch counts exactly once, even when its commit acknowledgement is lost.

The real failure: the connection dies after PostgreSQL committed a batch but before the
writer read the reply, so the writer cannot know the batch landed and retries it. A TCP
proxy in front of the real server (tests/support/tcp_proxy.py) cuts the connection at
exactly that moment; totals in rows, cost and rollups must stay exact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.model import ExecutionFinished, LateEvent
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, StoreUnavailable, open_store
from agentwatch.store.base import new_batch_id
from agentwatch.store.schema import LATE_SEQ_BASE
from agentwatch.writer import BatchWriter
from conftest import Records
from support.tcp_proxy import CommitDroppingProxy

#: A cost exact in binary floating point, so sums of thousands of calls compare exactly.
COST = 2.0**-10


def _rollup_sum(store: Store, sample: str, **labels: str) -> float:
    return sum(
        r.value
        for r in store.read_rollups()
        if r.sample == sample and all(r.labels.get(k) == v for k, v in labels.items())
    )


def _event_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM events").fetchone()
    assert row is not None
    return int(row[0])


def _batch_rows(store: Store) -> int:
    with store._read() as cur:
        cur.execute("SELECT COUNT(*) FROM batches")
        return int(cur.fetchone()[0])


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[CommitDroppingProxy]:
    parts = urlsplit(postgres_url)
    with CommitDroppingProxy((parts.hostname or "127.0.0.1", parts.port or 5432)) as running:
        yield running


def _through(proxy: CommitDroppingProxy, url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def _run(records: Records, agent: str, i: int) -> ExecutionFinished:
    llm = records.llm(started_at=1_000.0 + i, cost_usd=COST, input_tokens=3, output_tokens=5)
    return ExecutionFinished(records.execution(agent, 1_000.0 + i, events=[llm]))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("after_commit", [True, False], ids=["reply-lost", "commit-lost"])
def test_a_lost_commit_reply_never_double_counts(
    postgres_url: str, proxy: CommitDroppingProxy, records: Records, after_commit: bool
) -> None:
    url = _through(proxy, postgres_url)
    writer = BatchWriter(lambda: open_store(url), batch_size=250, flush_interval=0.0)
    assert writer.submit(_run(records, "warmup", 0))
    assert writer.flush(timeout=20) is True  # store opened and migrated through the proxy
    rounds, per_round = 3, 1_000
    for r in range(rounds):
        proxy.arm(after_commit=after_commit)
        for i in range(per_round):
            assert writer.submit(_run(records, "researcher", r * per_round + i))
        assert writer.flush(timeout=30) is True, "every accepted record lands"
    writer.close()
    assert proxy.dropped == rounds, "each round lost one COMMIT"

    runs = 1 + rounds * per_round
    with open_store(postgres_url, create=False) as store:
        assert store.count_executions() == runs
        assert _event_rows(postgres_url) == runs
        assert store.get_summary_stats()["total_cost"] == runs * COST
        assert store.spend(0.0, 10_000.0) == runs * COST
        assert _rollup_sum(store, "agentwatch_executions_total") == runs
        assert _rollup_sum(store, "agentwatch_llm_requests_total") == runs
        assert _rollup_sum(store, "agentwatch_llm_cost_usd_total") == runs * COST
        assert _rollup_sum(store, "agentwatch_llm_tokens_total", type="input") == 3 * runs
        assert (
            _rollup_sum(store, "agentwatch_store_write_errors_total")
            == writer.stats.write_errors()
            >= rounds
        )
        assert _rollup_sum(store, "agentwatch_events_dropped_total") == 0


def _ack_losing(url: str, losses: list[int]) -> Store:
    """A real store whose next `losses[0]` batches land, then raise as if the reply were
    lost: what the proxy does to PostgreSQL, here for SQLite too (where it cannot happen
    by itself), to prove both backends share the one code path."""
    store = open_store(url)
    real_write = store.write_batch

    def write_batch(batch, *, batch_id=None):  # type: ignore[no-untyped-def]
        applied = real_write(batch, batch_id=batch_id)
        if losses[0] > 0:
            losses[0] -= 1
            raise StoreUnavailable("connection lost after commit (simulated acknowledgement loss)")
        return applied

    store.write_batch = write_batch  # type: ignore[method-assign]
    return store


def test_a_batch_retried_after_it_landed_changes_nothing_on_either_backend(
    backend_url: str, records: Records
) -> None:
    losses = [2]
    writer = BatchWriter(lambda: _ack_losing(backend_url, losses), batch_size=100)
    late = records.llm(execution_id="exec_000001", cost_usd=COST)
    items = [_run(records, "a", i) for i in range(300)] + [LateEvent(late)]
    for item in items:
        assert writer.submit(item)
    assert writer.flush(timeout=20) is True
    writer.close()
    assert losses == [0]
    with open_store(backend_url, create=False) as store:
        assert store.count_executions() == 300
        first = store.get_execution("exec_000001")
        assert first is not None
        assert [e["seq"] for e in first["events"]] == [0, 1]  # own event, then the late one
        assert first["metrics"]["llm_calls"] == 2
        assert store.spend(0.0, 10_000.0) == 301 * COST
        assert _rollup_sum(store, "agentwatch_llm_requests_total") == 301
        assert _rollup_sum(store, "agentwatch_executions_total") == 300
        assert _rollup_sum(store, "agentwatch_store_write_errors_total") == 2


def test_the_same_batch_id_applies_once(store: Store, records: Records) -> None:
    builder = RollupBuilder(CardinalityGuard(100))
    batch = builder.build([_run(records, "a", i) for i in range(3)])
    batch_id = new_batch_id()
    assert store.write_batch(batch, batch_id=batch_id) is True
    assert store.write_batch(batch, batch_id=batch_id) is False
    assert store.write_batch(batch) is True  # a new id: rows dedupe, rollups are the caller's
    assert store.count_executions() == 3
    assert _rollup_sum(store, "agentwatch_executions_total") == 6
    assert _batch_rows(store) == 2


def test_an_execution_stored_twice_keeps_one_timeline(store: Store, records: Records) -> None:
    builder = RollupBuilder(CardinalityGuard(100))
    run = _run(records, "a", 0)
    store.write_batch(builder.build([run]))
    store.write_batch(builder.build([run]))
    stored = store.get_execution(run.execution.id)
    assert stored is not None
    assert len(stored["events"]) == 1
    assert store.spend(0.0, 10_000.0) == COST


def test_a_late_event_stored_before_its_execution_keeps_both_timelines(
    store: Store, records: Records
) -> None:
    builder = RollupBuilder(CardinalityGuard(100))
    run = _run(records, "a", 0)
    early = records.llm(execution_id=run.execution.id, name="late", cost_usd=COST)
    store.write_batch(builder.build([LateEvent(early)]))  # overtakes its execution
    store.write_batch(builder.build([run]))
    stored = store.get_execution(run.execution.id)
    assert stored is not None
    assert [e["name"] for e in stored["events"]] == ["chat", "late"]
    assert stored["metrics"]["llm_calls"] == 2
    assert stored["metrics"]["total_cost"] == 2 * COST


def test_migration_3_keeps_colliding_events_of_older_stores(tmp_path: Path) -> None:
    """Before version 3 a pending late event took seq 0 like the execution's own event."""
    from agentwatch.store import schema

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(schema.SCHEMA_VERSION_DDL)
    for migration in schema.MIGRATIONS[:2]:
        for statement in schema.statements_for("sqlite", migration):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version VALUES (?, ?, 0)",
            (migration.version, migration.description),
        )
    conn.execute(
        "INSERT INTO executions (id, agent, kind, status, started_at) "
        "VALUES ('x', 'a', 'agent', 'completed', 1)"
    )
    for name, seq in (("own", 0), ("late", 0), ("late2", 0), ("own2", 1)):
        conn.execute(
            "INSERT INTO events (execution_id, agent, seq, kind, name, started_at, status) "
            "VALUES ('x', 'a', ?, 'llm_call', ?, 1, 'success')",
            (seq, name),
        )
    conn.close()
    with open_store(f"sqlite:///{path}", create=False) as store:
        store.migrate()
        assert store.schema_versions() == [m.version for m in schema.MIGRATIONS]
        stored = store.get_execution("x")
        assert stored is not None
        assert [e["name"] for e in stored["events"]] == ["own", "own2", "late", "late2"]
    seqs = sqlite3.connect(path).execute("SELECT seq FROM events ORDER BY id").fetchall()
    assert [s for (s,) in seqs] == [0, LATE_SEQ_BASE + 1, LATE_SEQ_BASE + 2, 1]


def test_a_store_that_got_a_later_migration_first_still_gets_migration_3(tmp_path: Path) -> None:
    """Branches merge in any order: a store at versions 1, 2 and 4 must still get 3."""
    from agentwatch.store import schema

    path = tmp_path / "skipped.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(schema.SCHEMA_VERSION_DDL)
    for migration in schema.MIGRATIONS:
        if migration.version == 3 or migration.version >= 10:  # 10 needs the store's functions
            continue
        for statement in schema.statements_for("sqlite", migration):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version VALUES (?, ?, 0)",
            (migration.version, migration.description),
        )
    conn.close()
    with open_store(f"sqlite:///{path}") as store:
        store.migrate()
        assert store.schema_versions() == [m.version for m in schema.MIGRATIONS]
        assert _batch_rows(store) == 0  # the table exists now

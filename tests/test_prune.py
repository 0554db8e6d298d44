"""Pruning deletes in short transactions, so a writer is never locked out.

Before, `delete_old_executions` deleted everything in one transaction: on SQLite it held the
write lock for as long as the whole delete took, and a writer whose busy timeout ran out
meanwhile failed with "database is locked".
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from agentwatch.model import ExecutionFinished
from agentwatch.store import Store, open_store
from agentwatch.store.sqlite import SQLiteStore
from agentwatch.writer import BatchWriter
from conftest import Records

#: The writer's busy timeout in this test: shorter than one big delete of this store takes.
BUSY_TIMEOUT = 0.25
OLD = 150_000  # executions (each with two events) older than the cutoff


def _fill(path: Path, n: int) -> None:
    """`n` old executions with two events each, written in bulk by SQL (seconds, not minutes)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) "
        "INSERT INTO executions (id, agent, kind, status, started_at, ended_at, duration) "
        "SELECT printf('old%08d', i), 'a' || (i % 10), 'agent', 'completed', 1000 + i, "
        "1001 + i, 1.0 FROM n",
        (n,),
    )
    conn.execute(
        "INSERT INTO events (execution_id, agent, seq, kind, name, started_at, status, model, "
        "provider, cost_usd) SELECT id, agent, s.seq, 'llm_call', 'chat', started_at, "
        "'success', 'gpt-4o-mini', 'openai', 0.001 FROM executions, "
        "(SELECT 0 AS seq UNION ALL SELECT 1) s"
    )
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.slow  # builds a 450k-row store, then prunes it while a writer writes
def test_a_writer_is_never_locked_out_while_a_large_store_is_pruned(
    tmp_path: Path, records: Records
) -> None:
    path = tmp_path / "telemetry.db"
    with SQLiteStore(path) as store:
        store.migrate()
    _fill(path, OLD)
    writer = BatchWriter(
        lambda: SQLiteStore(path, busy_timeout=BUSY_TIMEOUT), batch_size=10, flush_interval=0.0
    )
    assert writer.submit(ExecutionFinished(records.execution("new", time.time())))
    assert writer.flush(timeout=10) is True  # opened and migrated before the prune starts

    pruning = threading.Event()
    pruned: list[int] = []

    def prune() -> None:
        with SQLiteStore(path) as pruner:
            pruning.set()
            pruned.append(pruner.delete_old_executions(older_than=1_000 + OLD))

    thread = threading.Thread(target=prune)
    thread.start()
    assert pruning.wait(timeout=10)
    written_during_prune = 1
    while thread.is_alive():
        assert writer.submit(ExecutionFinished(records.execution("new", time.time())))
        assert writer.flush(timeout=10), "a write failed while the store was being pruned"
        written_during_prune += 1
    thread.join()
    writer.close()

    assert writer.stats.write_errors() == 0, "the writer waited past its busy timeout"
    assert written_during_prune > 5, "the writer wrote while the prune ran"
    assert pruned == [OLD]
    with open_store(f"sqlite:///{path}", create=False) as store:
        assert store.count_executions() == written_during_prune
        assert store.count_executions(agent_name="new") == written_during_prune
        assert _event_rows(store) == 0


def _event_rows(store: Store) -> int:
    with store._read() as cur:
        cur.execute("SELECT COUNT(*) FROM events")
        return int(cur.fetchone()[0])


@pytest.mark.slow
def test_pruning_in_chunks_deletes_exactly_what_is_older_on_either_backend(
    store: Store, records: Records
) -> None:
    from agentwatch.cardinality import CardinalityGuard
    from agentwatch.model import LateEvent
    from agentwatch.rollups import RollupBuilder

    builder = RollupBuilder(CardinalityGuard(100))
    items = [
        ExecutionFinished(records.execution("a", float(t), events=[records.llm(float(t))]))
        for t in range(1, 2_501)
    ] + [LateEvent(records.llm(float(t), execution_id=None)) for t in range(1, 301)]
    store.write_batch(builder.build(items))
    before = {r.sample: r.value for r in store.read_rollups()}
    assert store.delete_old_executions(older_than=2_001.0) == 2_000
    assert store.count_executions() == 500
    assert min(e["started_at"] for e in store.get_executions(limit=None)) == 2_001.0
    assert len(store.get_events(limit=None)) == 500, "their events and old orphans went too"
    assert {r.sample: r.value for r in store.read_rollups()} == before, "rollups stay"
    assert store.delete_old_executions(older_than=2_001.0) == 0

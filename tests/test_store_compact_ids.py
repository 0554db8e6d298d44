"""Migration 10: a store of the previous release (schema 8, text ids) upgrades to compact ids
without changing any answer, on SQLite and PostgreSQL.

The previous release is reproduced by the migrations up to 8 and the text form bound as is
(the id codec replaced by the identity, PostgreSQL's array insert by `executemany`, as that
release bound text arrays): every reader is asked the same questions before and after.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.ids import new_execution_id
from agentwatch.model import ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, idcodec, open_store, schema
from agentwatch.store.base import StoreUnavailable
from agentwatch.store.rows import ExecutionFilter
from conftest import Records

OTHER_IDS = (
    "run-1",
    "exec_" + "A" * 32,  # uppercase hex: not canonical
    "exec_0123",
    "0123456789abcde",  # 15 bytes: its stored form is padded
    "é" * 8,
    "x\x01y",
    "exec_" + "f" * 31 + "g",
)
HOUR = 3_600.0
T0 = 1_700_000_000.0 - 1_700_000_000.0 % HOUR  # an hour boundary


def _items(records: Records) -> list[list[WriterItem]]:
    """Runs with canonical and other ids, tools under both, failures, late and orphan calls."""
    canonical = [new_execution_id() for _ in range(6)]
    batches: list[list[WriterItem]] = []
    for n, run_id in enumerate([*canonical, *OTHER_IDS]):
        started = T0 + 600.0 * n + 0.5  # across several hours, edges included
        run = records.execution(
            id=run_id,
            agent=f"agent-{n % 3}",
            started_at=started,
            events=[records.llm(started + 0.1, model=f"m{n % 2}"), records.tool(started + 0.2)],
            **({"error_type": "Boom", "error_message": "no"} if n % 4 == 1 else {}),
        )
        tool = records.execution(
            id=canonical[n] + "-tool" if n < 6 and n % 2 else new_execution_id(),
            agent=run.agent,
            kind="tool",
            parent_id=run_id,
            started_at=started + 0.3,
            events=[records.llm(started + 0.35, cost_usd=0.5)],
        )
        batch: list[WriterItem] = [ExecutionFinished(tool), ExecutionFinished(run)]
        late = records.llm(started + 1, name="late", model="m0", cost_usd=0.25)
        late.execution_id, late.agent = run_id, run.agent
        batch.append(LateEvent(late))
        batches.append(batch)
    batches.append(
        [
            LateEvent(records.llm(T0 + 5.0, agent="none")),  # outside any run
            LateEvent(records.llm(T0 + 7.0, execution_id="exec_" + "e" * 32, agent="a")),
        ]
    )  # a late call before its run: pending
    return batches


def _answers(store: Store) -> dict[str, Any]:
    """What the readers answer: listings, one run with its timeline, statistics, costs."""
    every = ExecutionFilter(kind=None)
    runs = store.executions(every, limit=None)
    since, until = T0 + 100.0, T0 + 5 * HOUR + 17.0  # partial hours at both ends
    answers: dict[str, Any] = {
        "runs": sorted(runs, key=lambda r: r.id),
        "count": store.count(every),
        "failed": store.count(ExecutionFilter(status="failed")),
        "details": {r.id: store.execution(r.id) for r in runs},
        "events": sorted(store.events(limit=None), key=lambda e: e.id),
        "summary": store.summary(),
        "window": store.summary(since=since, until=until),
        "agent": store.summary(agent="agent-1", since=since, until=until),
        "costs": store.costs(["agent", "model"]),
        "daily": store.costs(["date"], since=since, until=until, tz="Europe/Paris"),
        "spend": store.spend(since, until, agent="agent-0"),
        "errors": store.top_errors(since=T0, until=T0 + 10 * HOUR),
        "agents": store.agents(),
        "page": store.executions(every, limit=3, before=(runs[4].started_at, runs[4].id)),
    }
    return answers


def test_a_version_8_store_upgrades_to_compact_ids_with_every_answer_unchanged(
    backend_url: str, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = _items(records)
    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", tuple(m for m in schema.MIGRATIONS if m.version <= 8))
        for name in ("encode", "encode_optional", "decode", "decode_optional"):
            patch.setattr(idcodec, name, lambda value: value)
        if backend_url.startswith("postgresql"):
            from agentwatch.store import postgres

            patch.setattr(postgres, "_UNNEST", {})
        with open_store(backend_url) as old:
            old.migrate()
            assert old.schema_versions()[-1] == 8
            for items in batches:
                assert old.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))
            before = _answers(old)
            with old._read() as cur:
                cur.execute("SELECT id FROM executions")
                ids = sorted(str(r[0]) for r in cur.fetchall())
    assert len(before["runs"]) == len(ids) == 2 * (6 + len(OTHER_IDS))
    assert before["summary"].runs == 6 + len(OTHER_IDS) and before["failed"] > 0

    with open_store(backend_url, create=False) as upgraded:
        upgraded.migrate()
        assert 10 in upgraded.schema_versions()
        after = _answers(upgraded)
        with upgraded._read() as cur:
            cur.execute("SELECT id, length(id) FROM executions")
            stored = {idcodec.decode(i): int(n) for i, n in cur.fetchall()}
            cur.execute("SELECT COUNT(*) FROM events WHERE execution_id IS NOT NULL")
            linked = int(cur.fetchone()[0])
        prefixes = {p: upgraded.ids_with_prefix(p, limit=100) for p in _prefixes(ids)}
        for execution_id in ids:
            assert upgraded.resolve_execution_id(execution_id) == execution_id
        # Writing goes on after the upgrade, into the same runs' tables.
        more = [ExecutionFinished(records.execution(id=new_execution_id(), started_at=T0))]
        assert upgraded.write_batch(RollupBuilder(CardinalityGuard(1000)).build(more))
        assert upgraded.count(ExecutionFilter(kind=None)) == len(ids) + 1

    for key, value in before.items():  # sums may add in another row order: 1e-9 apart
        assert _rounded(after[key]) == _rounded(value), key
    assert sorted(stored) == ids
    assert {n for i, n in stored.items() if idcodec.is_canonical(i)} == {16}
    assert all(n != 16 for i, n in stored.items() if not idcodec.is_canonical(i))
    assert linked == sum(len(d.events) for d in before["details"].values() if d is not None) + 1
    for prefix, found in prefixes.items():
        assert found == sorted(i for i in ids if i.startswith(prefix)), prefix


def _rounded(value: Any) -> Any:
    """`value` with every float rounded to 9 decimals (dataclasses as dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _rounded(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return round(value, 9) if isinstance(value, float) else value


def _prefixes(ids: list[str]) -> list[str]:
    """Prefixes of the stored ids at every length that tells runs apart, and a few more."""
    chosen = {"", "exec", "exec_", "exec_0", "exec_A", "é", "run", "exec_" + "f" * 31}
    for execution_id in ids:
        for length in (6, 9, 13, 18, len(execution_id) - 1, len(execution_id)):
            chosen.add(execution_id[:length])
    return sorted(chosen)


def _plan(store: Store, sql: str, params: list[Any]) -> str:
    with store._read() as cur:
        if store.backend == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
            return " | ".join(str(row[-1]) for row in cur.fetchall())
        # The tables may be empty (or known to be, in a reused test schema): ask what the
        # planner can do, not what it prefers for no rows. A session setting, reset at once,
        # because the read connection may not be inside a transaction (SET LOCAL is a no-op).
        cur.execute("SET enable_seqscan = off")
        try:
            cur.execute("EXPLAIN " + store._sql(sql), params)
            return " | ".join(str(row[0]) for row in cur.fetchall())
        finally:
            cur.execute("RESET enable_seqscan")


def test_what_filtered_on_the_dropped_status_index_still_reads_an_index(store: Store) -> None:
    """Migration 10 dropped (status, started_at): failed runs of a window (top errors, the
    console) read the partial failed-runs index, budget spend edges still read events by time,
    and no index on status alone is left."""
    from agentwatch.store.queries import _where

    where, params = _where(None, "failed", 1.0, 2.0, "agent")
    failed = _plan(store, f"SELECT error_type, COUNT(*) FROM executions{where} GROUP BY 1", params)
    assert "ix_executions_failed" in failed, failed
    where, params = _where(None, "failed", None, None, "agent")
    listing = _plan(store, f"SELECT id FROM executions{where} ORDER BY started_at DESC", params)
    assert "ix_executions_failed" in listing, listing
    spend = _plan(
        store,
        "SELECT COALESCE(SUM(cost_usd), 0) FROM events WHERE started_at >= ? AND started_at < ?",
        [1.0, 2.0],
    )
    assert "ix_events_started" in spend, spend
    with store._read() as cur:
        if store.backend == "sqlite":
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        else:
            cur.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        indexes = {str(row[0]) for row in cur.fetchall()}
    assert "ix_executions_status_started" not in indexes
    assert {"ix_executions_failed", "ix_events_started", "ix_executions_started"} <= indexes


def test_the_migrations_sql_encodes_every_id_as_the_store_does(store: Store) -> None:
    """Migration 10 converts in SQL (PostgreSQL) or through the registered codec (SQLite):
    hostile ids must get exactly the stored form `idcodec.encode` gives them."""
    from test_store_idcodec import HOSTILE

    texts = [*HOSTILE, *OTHER_IDS, new_execution_id(), "exec_" + "f" * 32]
    if store.backend == "sqlite":
        sql = "SELECT aw_encode_id(x) FROM (SELECT ? AS x)"
    else:
        sql = f"SELECT {schema._pg_encoded('x')} FROM (SELECT ?::text AS x) AS t"
    with store._read() as cur:
        for text in texts:
            if store.backend == "postgresql" and "\x00" in text:
                continue  # PostgreSQL text cannot hold NUL: no stored id has one
            cur.execute(store._sql(sql), (text,))
            assert bytes(cur.fetchone()[0]) == idcodec.encode(text), text
        cur.execute(store._sql(sql), (None,))
        assert cur.fetchone()[0] is None


def test_a_migration_that_fails_half_way_leaves_the_old_store_and_can_be_retried(
    tmp_path: Any, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild runs in the migration's one transaction: an error after half the rows
    (here the codec failing; a kill does the same) changes nothing, and a retry converts."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    batches = _items(records)
    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", tuple(m for m in schema.MIGRATIONS if m.version <= 8))
        for name in ("encode", "encode_optional", "decode", "decode_optional"):
            patch.setattr(idcodec, name, lambda value: value)
        with open_store(url) as old:
            old.migrate()
            for items in batches:
                old.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))
            runs = old.count(ExecutionFilter(kind=None))
    real = idcodec.encode_optional
    calls = 0

    def failing(value: str | None) -> bytes | None:
        nonlocal calls
        calls += 1
        if calls > runs // 2:
            raise RuntimeError("killed half way")
        return real(value)

    with monkeypatch.context() as patch:
        patch.setattr(idcodec, "encode_optional", failing)
        with open_store(url, create=False) as store, pytest.raises(StoreUnavailable):
            store.migrate()
    assert calls > runs // 2
    with open_store(url, create=False) as store:
        assert store.schema_versions()[-1] == 8
        with store._read() as cur:
            cur.execute("SELECT COUNT(*), MIN(typeof(id)), MAX(typeof(id)) FROM executions")
            assert cur.fetchone() == (runs, "text", "text")
            cur.execute("SELECT name FROM sqlite_master WHERE name LIKE '%v10'")
            assert cur.fetchall() == []
        store.migrate()
        assert 10 in store.schema_versions()
        assert store.count(ExecutionFilter(kind=None)) == runs
        with store._read() as cur:
            cur.execute("SELECT DISTINCT typeof(id) FROM executions")
            assert cur.fetchall() == [("blob",)]

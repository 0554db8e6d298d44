"""The hourly aggregates answer exactly what the raw rows answer, on SQLite and PostgreSQL.

A random workload (runs and nested runs, tools, priced and unpriced calls, calls of other
kinds, a missing or empty model, late events for stored and not-yet-stored runs, calls
outside any run, a run written twice, times straddling hour boundaries) is written through
the real write path, pruned, and written again. After each step the aggregate tables must
equal a GROUP BY over the raw rows, and `summary`, `costs` (every group key, several zones
including half-hour ones) and `spend` over random windows with partial hours must equal the
answers computed from raw rows alone. An old store (no aggregates) upgraded by migration 5
must answer the same totals.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.model import Event, ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, aggregates, open_store, queries
from agentwatch.store.rows import CostRow, SummaryStats
from conftest import Records

T0 = 1_699_999_200.0  # a whole hour
SPAN = 3 * 86_400.0
AGENTS = ("planner", "coder", "review")
MODELS = ("gpt-4o", "claude", None, "")


def write(store: Store, *items: WriterItem) -> None:
    store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))


def _event(rng: random.Random, records: Records, at: float, agent: str) -> Event:
    roll = rng.random()
    if roll < 0.6:
        cost = None if rng.random() < 0.2 else round(rng.uniform(0, 0.05), 6)
        tokens = {"input_tokens": rng.randrange(500), "output_tokens": rng.randrange(500)}
        return records.llm(at, agent=agent, model=rng.choice(MODELS), cost_usd=cost,
                           provider=rng.choice(("openai", None)), **tokens)  # fmt: skip
    if roll < 0.85:
        return records.tool(at, agent=agent)
    cost = None if rng.random() < 0.5 else 0.01  # a priced call of another kind, or nothing
    return Event(kind="memory", name="recall", started_at=at, agent=agent, cost_usd=cost,
                 input_tokens=rng.randrange(50), output_tokens=rng.randrange(50))  # fmt: skip


def workload(rng: random.Random, records: Records, n: int) -> Iterator[list[WriterItem]]:
    """Batches of random records, with late events, pending events and a duplicate."""
    stored: list[str] = []
    for _ in range(n):
        batch: list[WriterItem] = []
        for _ in range(rng.randrange(1, 12)):
            agent = rng.choice(AGENTS)
            # Some runs start a hair before an hour boundary, their calls after it.
            base = T0 + rng.uniform(0, SPAN)
            if rng.random() < 0.2:
                base = math.floor(base / 3600) * 3600 - rng.uniform(0, 0.5)
            duration = rng.choice((0.0, 1e-9, rng.lognormvariate(0, 1.5)))
            parent = rng.choice(stored) if stored and rng.random() < 0.2 else None
            kind = "tool" if rng.random() < 0.15 else "agent"
            events = [_event(rng, records, base + i * 0.3, agent) for i in range(rng.randrange(4))]
            error = "ValueError" if rng.random() < 0.2 else None
            run = records.execution(agent, base, duration, events, kind=kind, parent_id=parent,
                                    error_type=error)  # fmt: skip
            if rng.random() < 0.05:
                run.status = "running"
            stored.append(run.id)
            batch.append(ExecutionFinished(run))
        for _ in range(rng.randrange(3)):
            target = rng.choice((None, rng.choice(stored), "exec_not_yet"))
            event = _event(rng, records, T0 + rng.uniform(0, SPAN), rng.choice(AGENTS))
            event.execution_id = target
            batch.append(LateEvent(event))
        if rng.random() < 0.1:
            batch.append(batch[0])  # the same run twice in a batch
        yield batch


def raw_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every query read raw rows only (the pre-aggregate answers)."""
    with monkeypatch.context() as patch:
        patch.setattr(aggregates, "split_window", lambda s, u: aggregates.Window(0, 0, ((s, u),)))
        yield


def assert_tables_match_rows(store: Store) -> None:
    """The four aggregate tables equal a GROUP BY over the raw rows."""
    hour = aggregates.HOUR_SQL[store.backend]
    with store._read() as cur:
        expected = aggregates.collect(cur, store._sql, hour, "1 = 1", "1 = 1", ())
        stored = {}
        for table in aggregates.TABLES:
            cur.execute(f"SELECT * FROM {table}")
            stored[table] = sorted(tuple(r) for r in cur.fetchall())
    for table, rows in zip(aggregates.TABLES, expected.rows(), strict=True):
        have = [r for r in stored[table] if _nonzero(table, r)]
        assert len(have) == len(rows), table
        for got, want in zip(have, sorted(rows), strict=True):
            for g, w in zip(got, want, strict=True):
                if isinstance(w, float) or isinstance(g, float):
                    assert g == pytest.approx(w, rel=1e-9, abs=1e-9), (table, got, want)
                else:
                    assert g == w, (table, got, want)


#: Position of the count that is zero only in a row pruning emptied.
_COUNT_AT = {"agg_runs": 2, "agg_durations": 2, "agg_calls": 5, "agg_calls_agent": 2,
             "agg_calls_model": 4, "agg_calls_total": 1}  # fmt: skip


def _nonzero(table: str, row: tuple[Any, ...]) -> bool:
    return bool(row[_COUNT_AT[table]] != 0)


def windows(rng: random.Random) -> list[tuple[float | None, float | None]]:
    result: list[tuple[float | None, float | None]] = [(None, None), (T0 + 7200.0, None)]
    for _ in range(6):
        a, b = sorted(rng.uniform(T0 - 3600, T0 + SPAN + 3600) for _ in range(2))
        result.append((a, b))
        result.append((math.floor(a / 3600) * 3600, None))
    result.append((T0 + 100.0, T0 + 2000.0))  # inside one hour: raw only
    return result


def same_summary(got: SummaryStats, want: SummaryStats, approx_percentiles: bool) -> None:
    for name in ("runs", "top_level_runs", "completed_runs", "failed_runs", "llm_calls",
                 "unpriced_calls", "tool_calls", "input_tokens", "output_tokens"):  # fmt: skip
        assert getattr(got, name) == getattr(want, name), name
    for name in ("cost_usd", "avg_duration"):
        g, w = getattr(got, name), getattr(want, name)
        assert (g is None) == (w is None), name
        assert w is None or g == pytest.approx(w, rel=1e-9, abs=1e-12), name
    for name in ("p50_duration", "p95_duration", "p99_duration"):
        g, w = getattr(got, name), getattr(want, name)
        if not approx_percentiles or w is None:
            assert g == w, name
        elif w < aggregates.MIN_DURATION:
            assert g == 0.0 or g == pytest.approx(w, abs=aggregates.MIN_DURATION)
        else:
            assert abs(g - w) <= w * aggregates.PERCENTILE_ERROR * (1 + 1e-9), name


def same_costs(got: list[CostRow], want: list[CostRow]) -> None:
    assert [r.group for r in got] == [r.group for r in want] or sorted(
        map(repr, (r.group for r in got))
    ) == sorted(map(repr, (r.group for r in want)))
    by_group = {repr(r.group): r for r in want}
    for row in got:
        other = by_group[repr(row.group)]
        assert (row.llm_calls, row.unpriced_calls, row.tokens) == (
            other.llm_calls, other.unpriced_calls, other.tokens,
        ), row.group  # fmt: skip
        assert (row.cost_usd is None) == (other.cost_usd is None)
        assert row.cost_usd is None or row.cost_usd == pytest.approx(
            other.cost_usd, rel=1e-9, abs=1e-12
        )


def check_answers(
    store: Store, rng: random.Random, monkeypatch: pytest.MonkeyPatch, exact_limit: int
) -> None:
    cases = windows(rng)
    agents: list[str | None] = [None, *AGENTS, "nobody"]
    keysets = (["agent"], ["model"], ["provider"], ["date"], ["date", "model"],
               ["agent", "model", "provider"])  # fmt: skip
    zones = ("UTC", "Europe/Paris", "Asia/Kolkata", "Asia/Kathmandu")

    def answer() -> list[Any]:
        out: list[Any] = []
        for since, until in cases:
            for agent in agents:
                out.append(store.summary(agent=agent, since=since, until=until))
            for keys in keysets:
                for tz in zones if "date" in keys else ("UTC",):
                    out.append(store.costs(keys, since=since, until=until, tz=tz))
                out.append(store.costs(keys, since=since, until=until, agent="coder"))
                out.append(store.costs(keys, since=since, until=until, agent="nobody"))
            for scope in ({}, {"agent": "coder"}, {"model": ""}, {"provider": "openai"},
                          {"model": None, "provider": "openai"},
                          {"agent": "review", "model": "gpt-4o"}):  # fmt: skip
                lo = since if since is not None else T0 - 86_400
                hi = until if until is not None else T0 + SPAN + 86_400
                out.append(store.spend(lo, hi, **scope))
        return out

    with monkeypatch.context() as patch:
        patch.setattr(queries, "EXACT_PERCENTILE_RUNS", exact_limit)
        got = answer()
        for _ in raw_answers(patch):
            want = answer()
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if isinstance(w, SummaryStats):
            same_summary(g, w, approx_percentiles=exact_limit == 0)
        elif isinstance(w, list):
            same_costs(g, w)
        else:
            assert g == pytest.approx(w, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_aggregates_equal_raw_rows_through_writes_prunes_and_late_events(
    store: Store, records: Records, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    for batch in workload(rng, records, 40):
        write(store, *batch)
    assert_tables_match_rows(store)
    check_answers(store, rng, monkeypatch, exact_limit=0)  # percentiles from buckets
    check_answers(store, rng, monkeypatch, exact_limit=10**9)  # exact percentiles

    store.delete_old_executions(T0 + SPAN / 2 + rng.uniform(0, 3600))
    assert_tables_match_rows(store)
    for batch in workload(rng, records, 10):  # late events for pruned runs, new hours
        write(store, *batch)
    assert_tables_match_rows(store)
    check_answers(store, rng, monkeypatch, exact_limit=0)


@pytest.mark.slow
def test_a_store_from_before_migration_5_is_upgraded_with_every_total(
    backend_url: str, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows a version-4 store holds are exactly what this writer stores; drop the
    aggregates and the version-5 record to get a version-4 store, then reopen it."""
    rng = random.Random(5)
    with open_store(backend_url) as store:
        store.migrate()
        for batch in workload(rng, records, 30):
            write(store, *batch)
        with store.atomic() as cur:
            for table in aggregates.TABLES:
                cur.execute(f"DROP TABLE {table}")
            cur.execute("DELETE FROM schema_version WHERE version = 5")
        assert 5 not in store.schema_versions()
    with open_store(backend_url, create=False) as upgraded:
        upgraded.migrate()
        assert 5 in upgraded.schema_versions()
        assert_tables_match_rows(upgraded)
        check_answers(upgraded, rng, monkeypatch, exact_limit=0)


#: Columns of each table's primary key, in `Deltas.rows` order.
_KEY_WIDTH = {"agg_runs": 2, "agg_durations": 2, "agg_calls": 2, "agg_calls_agent": 2,
              "agg_calls_model": 2, "agg_calls_total": 1}  # fmt: skip


def _crowded_batch(records: Records) -> list[WriterItem]:
    """Hundreds of runs and calls sharing a few keys: one hour, one agent, one duration, a
    missing model and provider next to empty ones, late events on the same keys."""
    at = T0 + 60.0
    items: list[WriterItem] = []
    for i in range(300):
        model, provider = [(None, None), ("", ""), (None, ""), ("", None), ("m", None)][i % 5]
        events = [
            records.llm(at + 1, agent="crowd", model=model, provider=provider,
                        cost_usd=None if i % 7 == 0 else 0.25),
            records.tool(at + 2, agent="crowd"),
        ]  # fmt: skip
        items.append(ExecutionFinished(records.execution("crowd", at + i * 0.001, 0.5, events)))
    for i in range(50):
        late = records.llm(at + 3, agent="crowd", model=None, provider=None)
        late.execution_id = None if i % 2 else "exec_not_yet"
        items.append(LateEvent(late))
    return items


def test_one_batch_folds_every_key_into_one_row_per_table(store: Store, records: Records) -> None:
    """PostgreSQL upserts each table's rows in one statement, which may not update a row
    twice: the rows of a batch whose records share keys must be folded, NULL model and
    provider apart from empty ones, and still add up to the raw rows."""
    items = _crowded_batch(records)
    built = RollupBuilder(CardinalityGuard(1000)).build(items)
    deltas = aggregates.batch_deltas(built.executions, [*built.events, *built.late_events])
    tables = deltas.rows()
    for table, rows in zip(aggregates.TABLES, tables, strict=True):
        keys = [row[: _KEY_WIDTH[table]] for row in rows]
        assert len(set(keys)) == len(keys), table
    models = {(row[2], row[3]) for row in tables[aggregates.TABLES.index("agg_calls_model")]}
    assert models == {(None, None), ("", ""), (None, ""), ("", None), ("m", None)}
    assert tables[0] == [(aggregates.hour_of(T0 + 60.0), "crowd", 300, 300, 300, 0, 150.0, 300)]

    store.write_batch(built)
    write(store, *_crowded_batch(records))  # the same keys again: now updates, not inserts
    assert_tables_match_rows(store)
    with store._read() as cur:
        cur.execute("SELECT runs, top_level FROM agg_runs WHERE agent = 'crowd'")
        assert cur.fetchall() == [(600, 600)]


def test_hours_and_windows_agree_with_raw_range_tests() -> None:
    # A time whose division by 3600 rounds up to the next integer still belongs to the hour
    # before it, as `started_at < h * 3600` says.
    t = math.nextafter(3600.0 * 472_222, 0)
    assert t < 3600.0 * 472_222 and aggregates.hour_of(t) == 472_221
    assert aggregates.hour_of(3600.0 * 5) == 5
    window = aggregates.split_window(3600.0 * 5, 3600.0 * 9)
    assert (window.first_hour, window.end_hour, window.edges) == (5, 9, ())
    window = aggregates.split_window(3600.0 * 5 + 1, 3600.0 * 9 - 1)
    assert (window.first_hour, window.end_hour) == (6, 8)
    assert window.edges == ((3600.0 * 5 + 1, 3600.0 * 6), (3600.0 * 8, 3600.0 * 9 - 1))
    assert aggregates.split_window(10.0, 20.0).empty


def test_percentiles_from_buckets_stay_within_the_documented_bound() -> None:
    rng = random.Random(3)
    values = sorted(rng.lognormvariate(0, 2) for _ in range(50_000))
    counts: dict[int, int] = {}
    for v in values:
        b = aggregates.duration_bucket(v)
        counts[b] = counts.get(b, 0) + 1
    got = aggregates.percentiles_from_buckets(counts, (50, 95, 99))
    for p, g in zip((50, 95, 99), got, strict=True):
        exact = values[max(1, -(-p * len(values) // 100)) - 1]
        assert g is not None and abs(g - exact) <= exact * aggregates.PERCENTILE_ERROR
    assert aggregates.PERCENTILE_ERROR < 0.005

"""Attribution aggregates answer exactly what the raw rows answer, on SQLite and PostgreSQL.

Random workloads with two attribution dimensions (a few teams under a small cap, many
customers under a smaller one, so both fold values into `__overflow__`), inherited and
call-level values, late and orphan calls, sampled-out runs and a duplicate run are written
through the real write path, pruned and written again. After each step the tables must equal
a GROUP BY over the raw rows for every value kept under its name, and budgets (`spend`),
`summary` and `costs` scoped by one value over random windows with partial hours must equal
the answers computed from raw rows alone. A flood of customer ids must not grow the tables
past the cap; a cap raised later must not make an answer inexact; migration 9 must build
the tables of an existing store.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.config import AttributionDimension
from agentwatch.contract import OVERFLOW
from agentwatch.model import Event, ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, aggregates, open_store, queries
from agentwatch.store import attribution_aggregates as attr_aggregates
from conftest import Records
from test_aggregates import raw_answers, same_costs, same_summary

T0 = 1_699_999_200.0  # a whole hour
SPAN = 2 * 86_400.0
AGENTS = ("planner", "coder")
TEAMS = ("search", "ads", "infra", "growth", "data")
CUSTOMERS = tuple(f"c{i}" for i in range(12))
DIMENSIONS = (AttributionDimension("team", 3), AttributionDimension("customer", 4))


def write(
    store: Store, items: list[WriterItem], dims: tuple[AttributionDimension, ...] = DIMENSIONS
) -> None:
    store.write_batch(RollupBuilder(CardinalityGuard(5_000), attribution=dims).build(items))


def _values(rng: random.Random) -> dict[str, str]:
    values = {}
    if rng.random() < 0.8:
        values["team"] = rng.choice(TEAMS)
    if rng.random() < 0.6:
        values["customer"] = rng.choice(CUSTOMERS)
    return values


def _call(rng: random.Random, records: Records, at: float, agent: str) -> Event:
    own = _values(rng) if rng.random() < 0.3 else {}  # the call's own values win
    if rng.random() < 0.7:
        cost = None if rng.random() < 0.2 else round(rng.uniform(0, 0.05), 6)
        return records.llm(at, agent=agent, cost_usd=cost, model=rng.choice(("a", "b", None)),
                           input_tokens=rng.randrange(300), output_tokens=rng.randrange(300),
                           attribution=own)  # fmt: skip
    return records.tool(at, agent=agent, attribution=own)


def workload(
    rng: random.Random, records: Records, n: int, *, sample: bool = False
) -> Iterator[list[WriterItem]]:
    """Batches of random records; with `sample`, a fifth of the runs are sampled out."""
    stored: list[str] = []
    for _ in range(n):
        batch: list[WriterItem] = []
        for _ in range(rng.randrange(1, 10)):
            agent = rng.choice(AGENTS)
            base = T0 + rng.uniform(0, SPAN)
            if rng.random() < 0.2:
                base = math.floor(base / 3600) * 3600 - rng.uniform(0, 0.5)
            values = _values(rng)
            calls = [_call(rng, records, base + i * 0.3, agent) for i in range(rng.randrange(4))]
            for call in calls:
                call.attribution = {**values, **call.attribution}
            parent = rng.choice(stored) if stored and rng.random() < 0.2 else None
            run = records.execution(agent, base, rng.lognormvariate(0, 1.5), calls,
                                    parent_id=parent, attribution=values,
                                    error_type="E" if rng.random() < 0.2 else None)  # fmt: skip
            stored.append(run.id)
            kept = rng.random() < 0.8
            batch.append(ExecutionFinished(run, stored=kept or not sample))
        if rng.random() < 0.5:
            event = _call(rng, records, T0 + rng.uniform(0, SPAN), rng.choice(AGENTS))
            event.execution_id = rng.choice((None, rng.choice(stored)))
            batch.append(LateEvent(event))
        if rng.random() < 0.1 and not sample:
            batch.append(batch[0])  # the same run twice in a batch (its rows stored once)
        yield batch


def admitted(store: Store) -> set[tuple[str, str]]:
    with store._read() as cur:
        cur.execute("SELECT dimension, value FROM attribution_values")
        return {(d, v) for d, v in cur.fetchall()}


def assert_tables_match_rows(store: Store) -> None:
    """Each exact value's rows equal a GROUP BY over its raw rows."""
    hour = aggregates.HOUR_SQL[store.backend]
    matched = f"{store._json_text('attribution')} = ?"
    with store._read() as cur:
        cur.execute("SELECT dimension, value, exact FROM agg_attr_keys")
        keys = {(d, v): int(e) for d, v, e in cur.fetchall()}
        for (d, v), exact in sorted(keys.items()):
            if not exact:
                continue
            params = (store._json_key(d), v)
            totals = aggregates.collect(cur, store._sql, hour, matched, matched, params)
            runs, durations, calls, _, _, calls_total = totals.rows()
            runs_total: dict[int, list[Any]] = {}
            for h, _agent, *values in runs:
                acc = runs_total.setdefault(h, [0] * len(values))
                runs_total[h] = [a + b for a, b in zip(acc, values, strict=True)]
            expected = (runs, durations, calls, [(h, *t) for h, t in runs_total.items()],
                        calls_total)  # fmt: skip
            for table, want in zip(attr_aggregates.TABLES, expected, strict=True):
                cur.execute(
                    store._sql(f"SELECT * FROM {table} WHERE dimension = ? AND value = ?"), (d, v)
                )
                count_at = 7 if table == "agg_attr_calls" else 3 if table.endswith("total") else 4
                have = sorted((r[0], *r[3:]) for r in cur.fetchall() if r[count_at] != 0)
                _same_rows(table, have, sorted(want))


def _same_rows(table: str, have: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    assert len(have) == len(want), table
    for got, row in zip(have, want, strict=True):
        for g, w in zip(got, row, strict=True):
            if isinstance(w, float) or isinstance(g, float):
                assert g == pytest.approx(w, rel=1e-9, abs=1e-9), (table, got, row)
            else:
                assert g == w, (table, got, row)


def windows(rng: random.Random) -> list[tuple[float | None, float | None]]:
    result: list[tuple[float | None, float | None]] = [(None, None), (T0 + 7200.0, None)]
    for _ in range(2):
        a, b = sorted(rng.uniform(T0 - 3600, T0 + SPAN + 3600) for _ in range(2))
        result += [(a, b), (math.floor(a / 3600) * 3600, None)]
    result.append((T0 + 100.0, T0 + 2000.0))  # inside one hour: raw only
    return result


def scopes() -> list[dict[str, str]]:
    return [
        *({"team": t} for t in TEAMS),
        *({"customer": c} for c in CUSTOMERS[:6]),
        {"team": OVERFLOW},
        {"team": "nobody"},
        {"team": "search", "customer": "c1"},  # two dimensions: raw rows
    ]


def check_answers(store: Store, rng: random.Random, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = windows(rng)

    def answer() -> list[Any]:
        out: list[Any] = []
        for since, until in cases:
            lo = since if since is not None else T0 - 86_400
            hi = until if until is not None else T0 + SPAN + 86_400
            for scope in scopes():
                for agent in (None, "coder"):
                    out.append(store.summary(agent=agent, since=since, until=until,
                                             attributes=scope))  # fmt: skip
                    out.append(store.spend(lo, hi, agent=agent, attributes=scope))
                out.append(store.spend(lo, hi, model="a", attributes=scope))
                for keys in (["agent"], ["model"], ["date"], ["date", "agent", "model"]):
                    for tz in ("UTC", "Asia/Kolkata") if "date" in keys else ("UTC",):
                        out.append(store.costs(keys, since=since, until=until, tz=tz,
                                               attributes=scope))  # fmt: skip
                out.append(store.costs(["model"], since=since, until=until, agent="coder",
                                       attributes=scope))  # fmt: skip
        return out

    for limit in (0, 10**9):  # percentiles from buckets, then exact
        with monkeypatch.context() as patch:
            patch.setattr(queries, "EXACT_PERCENTILE_RUNS", limit)
            got = answer()
            for _ in raw_answers(patch):
                want = answer()
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            if isinstance(w, list):
                same_costs(g, w)
            elif isinstance(w, float):
                assert g == pytest.approx(w, rel=1e-9, abs=1e-12)
            else:
                same_summary(g, w, approx_percentiles=limit == 0)


def used_aggregates(store: Store) -> set[tuple[str, str]]:
    """The values the tables answer for (a check that the test is not vacuous)."""
    with store._read() as cur:
        cur.execute("SELECT dimension, value FROM agg_attr_keys WHERE exact = 1")
        return {(d, v) for d, v in cur.fetchall()}


@pytest.mark.parametrize("seed", [3])
def test_attributed_answers_equal_raw_rows_through_writes_and_prunes(
    store: Store, records: Records, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    for batch in workload(rng, records, 30):
        write(store, batch)
    kept = used_aggregates(store)
    assert kept == admitted(store)  # every admitted value is answered from the tables
    assert len({v for d, v in kept if d == "team"}) == 3
    assert len({v for d, v in kept if d == "customer"}) == 4
    assert_tables_match_rows(store)
    check_answers(store, rng, monkeypatch)

    store.delete_old_executions(T0 + SPAN / 2 + rng.uniform(0, 3600))
    for batch in workload(rng, records, 8):
        write(store, batch)
    check_answers(store, rng, monkeypatch)


def test_tables_equal_a_group_by_over_the_rows_when_nothing_is_sampled(
    store: Store, records: Records
) -> None:
    rng = random.Random(7)
    for batch in workload(rng, records, 25):
        write(store, batch)
    store.delete_old_executions(T0 + SPAN / 3)
    assert_tables_match_rows(store)
    with store._read() as cur:
        cur.execute("SELECT COUNT(*) FROM agg_attr_calls WHERE events < 0")
        assert cur.fetchone()[0] == 0


def test_sampled_out_runs_count_in_attributed_budgets(store: Store, records: Records) -> None:
    """A budget scoped by a team sums the calls of runs whose rows sampling left out."""
    at = T0 + 1800
    runs = [
        records.execution("job", at, 1.0, [records.llm(at, cost_usd=1.5, attribution=team)],
                          attribution=team)
        for team in ({"team": "search"}, {"team": "search"}, {"team": "ads"})
    ]  # fmt: skip
    write(store, [ExecutionFinished(r, stored=i == 0) for i, r in enumerate(runs)])
    assert store.spend(T0, T0 + 86_400, attributes={"team": "search"}) == pytest.approx(3.0)
    assert store.spend(T0, T0 + 86_400, attributes={"team": "ads"}) == pytest.approx(1.5)
    stats = store.summary(since=T0, until=T0 + 86_400, attributes={"team": "search"})
    assert (stats.runs, stats.llm_calls) == (2, 2)
    assert store.count_executions(attributes={"team": "search"}) == 1  # one row stored


def test_under_sampling_whole_hours_equal_a_store_that_kept_every_row(
    store: Store, records: Records, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same runs written with a fifth sampled out, and in full to a twin store: budgets,
    stats and costs of one attribution value over whole hours answer the same."""
    rng = random.Random(11)
    batches = list(workload(rng, records, 30, sample=True))
    with open_store(f"sqlite:///{tmp_path / 'twin.db'}") as twin:
        twin.migrate()
        for batch in batches:
            write(store, batch)
            write(twin, [ExecutionFinished(i.execution) if isinstance(i, ExecutionFinished)
                         else i for i in batch])  # fmt: skip
        assert store.count_executions() < twin.count_executions()  # some were sampled out
        hours = [(T0, T0 + SPAN), (T0 + 7200, T0 + 18 * 3600), (T0 - 3600, T0 + 86_400)]

        def answer(target: Store) -> list[Any]:
            out: list[Any] = []
            for since, until in hours:
                for scope in scopes()[:-3]:  # one dimension, values within the cap or not
                    out.append(target.spend(since, until, attributes=scope))
                    out.append(target.spend(since, until, agent="coder", attributes=scope))
                    out.append(target.summary(since=since, until=until, attributes=scope))
                    out.append(target.costs(["date", "agent", "model"], since=since,
                                            until=until, attributes=scope))  # fmt: skip
            return out

        exact = used_aggregates(store)
        with monkeypatch.context() as patch:
            patch.setattr(queries, "EXACT_PERCENTILE_RUNS", 0)
            got = answer(store)
            for _ in raw_answers(patch):
                want = answer(twin)
        compared = 0
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            scope = scopes()[(i // 4) % len(scopes()[:-3])]
            if next(iter(scope.items())) not in exact:
                continue  # a value beyond the cap: answered from the stored rows only
            compared += 1
            if isinstance(w, list):
                same_costs(g, w)
            elif isinstance(w, float):
                assert g == pytest.approx(w, rel=1e-9, abs=1e-12)
            else:
                same_summary(g, w, approx_percentiles=True)
        assert compared >= 3 * 4 * 5


def test_a_flood_of_customer_ids_stays_within_the_cap(store: Store, records: Records) -> None:
    at = T0 + 60
    for start in range(0, 600, 200):
        batch: list[WriterItem] = [
            ExecutionFinished(records.execution(
                "job", at, 0.1, [records.llm(at, cost_usd=0.01, attribution=values)],
                attribution=values))
            for values in ({"customer": f"hostile-{i}", "team": "search"}
                           for i in range(start, start + 200))
        ]  # fmt: skip
        write(store, batch)
    with store._read() as cur:
        cur.execute(store._sql("SELECT COUNT(DISTINCT value) FROM agg_attr_calls "
                               "WHERE dimension = ?"), ("customer",))  # fmt: skip
        assert cur.fetchone()[0] == 4 + 1  # the cap, and the overflow
        cur.execute(store._sql("SELECT COUNT(*) FROM agg_attr_keys WHERE dimension = ?"),
                    ("customer",))  # fmt: skip
        assert cur.fetchone()[0] == 4 + 1
        cur.execute(store._sql("SELECT SUM(events) FROM agg_attr_calls WHERE dimension = ?"),
                    ("customer",))  # fmt: skip
        assert cur.fetchone()[0] == 600  # every call counted once, under its value or not
    # A folded customer is still answered exactly (from its rows).
    hi = T0 + 86_400
    assert store.spend(T0, hi, attributes={"customer": "hostile-599"}) == pytest.approx(0.01)
    assert store.spend(T0, hi, attributes={"team": "search"}) == pytest.approx(6.0)
    assert ("team", "search") in used_aggregates(store)


def test_a_value_admitted_after_its_dimension_folded_is_answered_from_rows(
    store: Store, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Team `c` is folded under a cap of 2, then admitted under a cap of 3: its first calls
    are in the overflow, so the tables cannot answer for it alone."""
    small = (AttributionDimension("team", 2),)
    large = (AttributionDimension("team", 3),)
    for i, team in enumerate(("a", "b", "c")):
        at = T0 + 600 * i
        call = records.llm(at, cost_usd=1.0 + i, attribution={"team": team})
        write(store, [ExecutionFinished(records.execution("job", at, 1.0, [call],
                                                          attribution={"team": team}))],
              small)  # fmt: skip
    call = records.llm(T0 + 4000, cost_usd=10.0, attribution={"team": "c"})
    run = records.execution("job", T0 + 4000, 1.0, [call], attribution={"team": "c"})
    write(store, [ExecutionFinished(run)], large)
    exact = used_aggregates(store)
    assert ("team", "a") in exact and ("team", "c") not in exact
    assert ("team", "c") in admitted(store)
    assert store.spend(T0, T0 + 86_400, attributes={"team": "c"}) == pytest.approx(13.0)
    check_answers(store, random.Random(1), monkeypatch)


def test_migration_9_builds_the_tables_of_an_existing_store(
    backend_url: str, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(9)
    with open_store(backend_url) as store:
        store.migrate()
        for batch in workload(rng, records, 20):
            write(store, batch)
        with store.atomic() as cur:
            for table in (*attr_aggregates.TABLES, "agg_attr_keys"):
                cur.execute(f"DROP TABLE {table}")
            cur.execute("DELETE FROM schema_version WHERE version = 9")
    with open_store(backend_url, create=False) as upgraded:
        upgraded.migrate()
        assert 9 in upgraded.schema_versions()
        assert used_aggregates(upgraded) == admitted(upgraded)
        assert_tables_match_rows(upgraded)
        check_answers(upgraded, rng, monkeypatch)
        write(upgraded, next(workload(rng, records, 1)))  # and the writer goes on
        check_answers(upgraded, rng, monkeypatch)


def test_two_writers_with_different_caps_keep_every_exact_value_exact(
    backend_url: str, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections write at the same time, one capping `team` at 2 and the other at 4,
    so values are admitted by one while the other folds them: whatever the tables call exact
    must equal its rows, and every answer must equal the raw rows'."""
    import threading

    rng = random.Random(21)
    batches = list(workload(rng, records, 24))
    caps = ((AttributionDimension("team", 2), AttributionDimension("customer", 3)),
            (AttributionDimension("team", 4), AttributionDimension("customer", 6)))  # fmt: skip
    stores = [open_store(backend_url), open_store(backend_url)]
    try:
        stores[0].migrate()
        errors: list[BaseException] = []

        def writer(index: int) -> None:
            try:
                for batch in batches[index::2]:
                    write(stores[index], batch, caps[index])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert_tables_match_rows(stores[0])
        check_answers(stores[0], rng, monkeypatch)
    finally:
        for store in stores:
            store.close()


def test_a_value_only_a_tool_call_carries_is_kept_when_another_writer_admitted_it(
    backend_url: str, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tool calls carry no attribution label, so the writer's admission step never decides
    their own values: the tables must still find team `a` admitted (by another writer) and
    keep the call under it, or the exact key `a` would miss it."""
    first, second = open_store(backend_url), open_store(backend_url)
    try:
        first.migrate()
        at = T0 + 100
        run = records.execution("job", at, 1.0, [records.llm(at, attribution={"team": "a"})],
                                attribution={"team": "a"})  # fmt: skip
        write(first, [ExecutionFinished(run)])
        tool = records.tool(at + 1, attribution={"team": "a"})
        other = records.execution("job", at + 1, 1.0, [tool], attribution={"team": "b"})
        write(second, [ExecutionFinished(other)])
        assert ("team", "a") in used_aggregates(first)
        assert_tables_match_rows(first)
        stats = first.summary(since=T0, until=T0 + 7200, attributes={"team": "a"})
        assert (stats.runs, stats.llm_calls, stats.tool_calls) == (1, 1, 1)
        check_answers(first, random.Random(2), monkeypatch)
    finally:
        first.close()
        second.close()

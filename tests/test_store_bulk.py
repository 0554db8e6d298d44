"""Many rows per statement (PostgreSQL binds arrays): same results as one row at a time."""

from __future__ import annotations

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.errors import RecordRefused
from agentwatch.model import ExecutionFinished
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, open_store
from agentwatch.store.base import _UPSERT_ROLLUP
from conftest import Records


def test_a_duplicate_execution_in_one_batch_is_stored_once(store: Store, records: Records) -> None:
    first = records.execution("a", events=[records.llm(), records.llm()])
    again = ExecutionFinished(first)
    others = [ExecutionFinished(records.execution("b")) for _ in range(5)]
    assert store.write_batch(RollupBuilder(CardinalityGuard(100)).build([again, *others, again]))
    assert store.count_executions() == 6
    stored = store.get_execution(first.id)
    assert stored is not None
    assert len(stored["events"]) == 2
    assert stored["metrics"]["llm_calls"] == 2


def test_rollup_rows_with_one_key_twice_add_up_and_keep_the_newer_exemplar(
    store: Store,
) -> None:
    sample, labels = "agentwatch_llm_request_duration_seconds_bucket", '{"le":"1.0"}'
    rows = [
        (sample, labels, 2.0, "exec_old", 0.5, 10.0),
        (sample, labels, 3.0, "exec_new", 0.7, 20.0),
        (sample, labels, 1.0, None, None, None),
        ("agentwatch_executions_total", '{"agent":"a"}', 4.0, None, None, None),
    ]
    with store.atomic() as cur:
        store._insert_many(cur, _UPSERT_ROLLUP, sorted(rows, key=lambda r: (r[0], r[1])))
    with store._read() as cur:
        cur.execute(
            store._sql("SELECT value, exemplar_execution_id FROM rollups WHERE sample = ?"),
            (sample,),
        )
        assert cur.fetchall() == [(6.0, "exec_new")]


def test_a_value_the_database_refuses_fails_the_whole_statement_as_refused(
    store: Store, records: Records
) -> None:
    bad = records.execution("a", events=[records.llm()])
    good = records.execution("b")
    batch = RollupBuilder(CardinalityGuard(100)).build(
        [ExecutionFinished(good), ExecutionFinished(bad)]
    )
    # Past validation (which would repair it): an integer beyond 64 bits.
    batch.events[-1] = (*batch.events[-1][:10], 2**70, *batch.events[-1][11:])
    with pytest.raises(RecordRefused):
        store.write_batch(batch)
    assert store.count_executions() == 0  # nothing of the batch was written


@pytest.mark.parametrize("runs", [1, 2, 255, 256, 257, 1_000])
def test_every_run_of_a_batch_of_any_size_is_stored_with_its_events(
    store: Store, records: Records, runs: int
) -> None:
    items = [
        ExecutionFinished(records.execution(f"a{i % 7}", events=[records.llm(), records.tool()]))
        for i in range(runs)
    ]
    assert store.write_batch(RollupBuilder(CardinalityGuard(100)).build(items))
    assert store.count_executions() == runs
    assert len(store.get_events(limit=None)) == 2 * runs
    totals = {(r.sample, tuple(sorted(r.labels.items()))): r.value for r in store.read_rollups()}
    assert sum(v for (s, _), v in totals.items() if s == "agentwatch_executions_total") == runs


def test_whole_numbers_among_fractional_ones_are_stored(store: Store, records: Records) -> None:
    """A float column may receive an int (a cost of 0, a count as a delta) next to floats."""
    items = [
        ExecutionFinished(records.execution("a", events=[records.llm(cost_usd=0.25)])),
        ExecutionFinished(records.execution("b", events=[records.llm(cost_usd=0.5)])),
    ]
    batch = RollupBuilder(CardinalityGuard(100)).build(items)
    first = batch.events[0]
    batch.events[0] = (*first[:14], 0, *first[15:])  # cost_usd 0 as an int
    batch.rollups = [(*r[:2], int(r[2]), *r[3:]) if r[2].is_integer() else r for r in batch.rollups]
    assert store.write_batch(batch)
    assert store.count_executions() == 2
    costs = sorted(e["cost_usd"] for e in store.get_events(limit=None))
    assert costs == [0.0, 0.5]


def _runs(records: Records, n: int, agent: str = "a") -> list[ExecutionFinished]:
    return [
        ExecutionFinished(records.execution(f"{agent}{i % 40}", events=[records.llm()]))
        for i in range(n)
    ]


def _executions_total(store: Store) -> float:
    return sum(r.value for r in store.read_rollups() if r.sample == "agentwatch_executions_total")


@pytest.mark.parametrize("runs", [5, 150])  # PostgreSQL stages batches of 64 rows or more
def test_runs_stored_before_or_twice_in_a_batch_count_once_at_any_batch_size(
    store: Store, records: Records, runs: int
) -> None:
    first = _runs(records, runs)
    assert store.write_batch(RollupBuilder(CardinalityGuard(100)).build([*first, first[0]]))
    again = [*first[: runs // 2], *_runs(records, runs, "b")]  # half of them stored already
    assert store.write_batch(RollupBuilder(CardinalityGuard(100)).build(again))
    assert store.count_executions() == 2 * runs
    assert len(store.get_events(limit=None)) == 2 * runs
    with store._read() as cur:
        cur.execute("SELECT SUM(runs) FROM agg_runs")
        assert cur.fetchone() == (2 * runs,)
    # Rollups count what was submitted (metrics), the rows what is stored (exactly once).
    assert _executions_total(store) == 2 * runs + 1 + runs // 2


@pytest.mark.parametrize("runs", [3, 100])
def test_a_sequence_number_beyond_32_bits_is_refused_not_wrapped(
    postgres_url: str, records: Records, runs: int
) -> None:
    """PostgreSQL's `seq` is an INTEGER; psycopg's binary int4 encoder would wrap 2**40
    around to 0 silently, the database refuses it."""
    with open_store(postgres_url) as store:
        store.migrate()
        batch = RollupBuilder(CardinalityGuard(100)).build(_runs(records, runs))
        batch.events[-1] = (*batch.events[-1][:2], 2**40, *batch.events[-1][3:])
        with pytest.raises(RecordRefused):
            store.write_batch(batch)
        assert store.count_executions() == 0


def test_two_large_batches_applied_in_one_transaction_count_once_each(
    store: Store, records: Records
) -> None:
    """A loss file folded with the batch its process was writing applies two batches in one
    transaction: rows staged for the first must not be applied again with the second."""
    builder = RollupBuilder(CardinalityGuard(100))
    first, second = builder.build(_runs(records, 120)), builder.build(_runs(records, 130))
    assert store.fold_spill("spill-1", first, unless_batch="lost-batch", conditional=second)
    assert store.count_executions() == 250
    assert _executions_total(store) == 250
    assert not store.fold_spill("spill-1", first, unless_batch="lost-batch", conditional=second)
    assert store.count_executions() == 250

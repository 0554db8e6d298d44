"""A record the store cannot take is dropped alone as `invalid`, never retried as an outage.

A string with a lone surrogate cannot be encoded by either driver; before this fix the
writer took the encode error for a store outage and retried forever, so not one of the
following records was stored. Validation now repairs such strings before the store sees
them, but the writer must not depend on it: whatever the store refuses by type of error
(`RecordRefused`, ValueError, TypeError, OverflowError) is dropped alone.
"""

from __future__ import annotations

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.errors import RecordRefused
from agentwatch.model import Execution, ExecutionFinished
from agentwatch.rollups import EVENT_COLUMNS, EXECUTION_COLUMNS, RollupBatch, RollupBuilder
from agentwatch.store import Store, open_store
from agentwatch.writer import BatchWriter
from conftest import Records

#: What `surrogateescape` makes of a byte that is not UTF-8: unencodable as UTF-8.
SURROGATE = b"r-\xff".decode("utf-8", "surrogateescape")


def _rollup(store: Store, sample: str, **labels: str) -> float:
    return sum(
        r.value
        for r in store.read_rollups()
        if r.sample == sample and all(r.labels.get(k) == v for k, v in labels.items())
    )


def _refused_by_the_store(records: Records) -> Execution:
    """A run the store refuses although validation passes it: validation repairs every text
    field a user can set, but not `status`, which capture sets itself. Here it stands for
    any value the store refuses that no rule upstream foresaw."""
    execution = records.execution("agent")
    execution.status = SURROGATE  # type: ignore[assignment]
    return execution


@pytest.mark.parametrize("where", ["agent-name", "status"])
def test_one_bad_string_never_stops_the_next_1000_runs(
    backend_url: str, records: Records, where: str
) -> None:
    writer = BatchWriter(lambda: open_store(backend_url), batch_size=500, flush_interval=5.0)
    # agent-name: repaired by the writer's validation, then stored; status: refused by the
    # store, so dropped alone.
    repaired = where == "agent-name"
    bad = records.execution(SURROGATE) if repaired else _refused_by_the_store(records)
    assert writer.submit(ExecutionFinished(bad))
    for i in range(1_000):
        assert writer.submit(ExecutionFinished(records.execution("good", 1_000.0 + i)))
    assert writer.flush(timeout=30) is repaired
    writer.close()
    assert writer.stats.write_errors() == 0, "never mistaken for a store outage"
    assert writer.stats.dropped()["invalid"] == (0 if repaired else 1)
    with open_store(backend_url, create=False) as store:
        assert store.count_executions(agent_name="good") == 1_000
        assert _rollup(store, "agentwatch_executions_total", agent="good") == 1_000
        if repaired:
            assert store.count_executions(agent_name="r-\ufffd") == 1
        else:
            assert _rollup(store, "agentwatch_events_dropped_total", reason="invalid") == 1
        assert _rollup(store, "agentwatch_store_write_errors_total") == 0


def test_a_batch_made_only_of_bad_records_is_dropped_not_retried_forever(
    backend_url: str, records: Records
) -> None:
    writer = BatchWriter(lambda: open_store(backend_url), batch_size=200, flush_interval=5.0)
    for _ in range(450):  # more than two full batches, every record bad
        assert writer.submit(ExecutionFinished(_refused_by_the_store(records)))
    for i in range(100):
        assert writer.submit(ExecutionFinished(records.execution("good", 2_000.0 + i)))
    assert writer.flush(timeout=60) is False
    writer.close()
    assert writer.stats.dropped()["invalid"] == 450
    assert writer.stats.write_errors() == 0
    with open_store(backend_url, create=False) as store:
        assert store.count_executions() == 100
        assert _rollup(store, "agentwatch_events_dropped_total", reason="invalid") == 450


def _poke(batch: RollupBatch, table: str, column: str, value: object) -> None:
    """Put `value` in the first row of `table`, past every rule upstream of the store."""
    rows = batch.executions if table == "executions" else batch.events
    columns = EXECUTION_COLUMNS if table == "executions" else EVENT_COLUMNS
    row = list(rows[0])
    row[columns.index(column)] = value
    rows[0] = tuple(row)


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("executions", "error_message", SURROGATE),
        ("events", "input_tokens", 2**70),
        ("executions", "status", None),
    ],
    ids=["surrogate", "int-beyond-64-bits", "null-in-not-null"],
)
def test_the_store_reports_refused_data_by_type_and_stays_usable(
    store: Store, records: Records, table: str, column: str, value: object
) -> None:
    builder = RollupBuilder(CardinalityGuard(100))
    execution = records.execution("agent", events=[records.llm()])
    batch = builder.build([ExecutionFinished(execution)])
    _poke(batch, table, column, value)
    with pytest.raises(RecordRefused):
        store.write_batch(batch)
    assert store.count_executions() == 0, "nothing of a refused batch is written"
    store.write_batch(builder.build([ExecutionFinished(records.execution("next"))]))
    assert store.count_executions() == 1, "the connection survives a refused batch"

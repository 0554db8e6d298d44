"""A record the store cannot take is dropped alone as `invalid`, never retried as an outage.

Capture repairs bad strings before they reach the writer, but the writer must not depend on
it: a string with a lone surrogate cannot be encoded by either driver, and before this fix
the writer took the encode error for a store outage and retried forever, so not one of the
following records was stored.
"""

from __future__ import annotations

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.errors import RecordRefused
from agentwatch.model import Event, Execution, ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBuilder
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


def _poisoned(records: Records, field: str) -> WriterItem:
    """A record with the lone surrogate in `field` (a column, a label or a JSON value)."""
    if field == "orphan_event_name":
        return LateEvent(records.llm(execution_id=None, name=SURROGATE))
    execution: Execution = records.execution("agent")
    if field == "agent":
        execution.agent = SURROGATE
    elif field == "error_message":
        execution.error_message = SURROGATE
    elif field == "attributes":
        execution.attributes = {"note": SURROGATE}
    elif field == "model":
        execution.events.append(records.llm(model=SURROGATE))
    return ExecutionFinished(execution)


@pytest.mark.parametrize(
    "field", ["agent", "error_message", "attributes", "model", "orphan_event_name"]
)
def test_one_unencodable_string_is_dropped_alone_and_the_next_1000_runs_are_stored(
    backend_url: str, records: Records, field: str
) -> None:
    writer = BatchWriter(lambda: open_store(backend_url), batch_size=500, flush_interval=5.0)
    assert writer.submit(_poisoned(records, field))
    good = [records.execution("good", 1_000.0 + i) for i in range(1_000)]
    for execution in good:
        assert writer.submit(ExecutionFinished(execution))
    assert writer.flush(timeout=30) is False, "one record was dropped"
    writer.close()
    assert writer.stats.dropped()["invalid"] == 1
    with open_store(backend_url, create=False) as store:
        assert store.count_executions(agent_name="good") == 1_000
        assert _rollup(store, "agentwatch_executions_total", agent="good") == 1_000
        assert _rollup(store, "agentwatch_events_dropped_total", reason="invalid") == 1
        assert _rollup(store, "agentwatch_store_write_errors_total") == 0, "not an outage"


def test_a_batch_made_only_of_bad_records_is_dropped_not_retried_forever(
    backend_url: str, records: Records
) -> None:
    writer = BatchWriter(lambda: open_store(backend_url), batch_size=200, flush_interval=5.0)
    for _ in range(450):  # more than two full batches, every record bad
        execution = records.execution(SURROGATE)
        assert writer.submit(ExecutionFinished(execution))
    for i in range(100):
        assert writer.submit(ExecutionFinished(records.execution("good", 2_000.0 + i)))
    assert writer.flush(timeout=60) is False
    writer.close()
    assert writer.stats.dropped()["invalid"] == 450
    assert writer.stats.write_errors() == 0
    with open_store(backend_url, create=False) as store:
        assert store.count_executions() == 100
        assert _rollup(store, "agentwatch_events_dropped_total", reason="invalid") == 450


@pytest.mark.parametrize(
    "poison",
    ["surrogate", "int-beyond-64-bits"],
)
def test_the_store_reports_refused_data_by_type_and_stays_usable(
    store: Store, records: Records, poison: str
) -> None:
    execution = records.execution("agent")
    if poison == "surrogate":
        execution.error_message = SURROGATE
    else:
        execution.events.append(Event(kind="llm_call", name="chat", started_at=1.0))
        execution.events[0].input_tokens = 2**70
    builder = RollupBuilder(CardinalityGuard(100))
    with pytest.raises(RecordRefused):
        store.write_batch(builder.build([ExecutionFinished(execution)]))
    assert store.count_executions() == 0, "nothing of a refused batch is written"
    store.write_batch(builder.build([ExecutionFinished(records.execution("next"))]))
    assert store.count_executions() == 1, "the connection survives a refused batch"

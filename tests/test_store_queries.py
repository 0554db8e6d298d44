"""The store's typed read queries (`store/queries.py`), on SQLite and PostgreSQL.

What a run's own totals hold (its calls and those of the tools it ran, not those of nested
runs), how unpriced calls are counted, and that hostile or odd data (tools within tools,
a cycle of parent ids, a NaN time) never breaks a listing.
"""

from __future__ import annotations

import json

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.model import ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store
from agentwatch.store.queries import MAX_TOOL_DEPTH
from agentwatch.store.rows import ExecutionFilter, known_cost
from conftest import Records


def write(store: Store, *items: WriterItem) -> None:
    store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))


def test_a_runs_totals_include_tools_within_tools_but_not_nested_runs(
    store: Store, records: Records
) -> None:
    run = records.execution("researcher", 1_000.0, events=[records.llm(cost_usd=1.0)])
    tool = records.execution("search", 1_000.1, kind="tool", parent_id=run.id,
                             events=[records.llm(cost_usd=2.0)])  # fmt: skip
    inner_tool = records.execution("fetch", 1_000.2, kind="tool", parent_id=tool.id,
                                   events=[records.llm(cost_usd=None, input_tokens=7)])  # fmt: skip
    nested_run = records.execution("summarizer", 1_000.3, parent_id=run.id,
                                   events=[records.llm(cost_usd=8.0)])  # fmt: skip
    write(store, *(ExecutionFinished(e) for e in (inner_tool, tool, nested_run, run)))

    rows = {r.agent: r for r in store.executions(ExecutionFilter(kind=None), limit=None)}
    researcher = rows["researcher"]
    assert (researcher.llm_calls, researcher.unpriced_calls) == (3, 1)
    assert researcher.cost_usd == pytest.approx(3.0)  # 1 + 2; the unpriced call is counted
    assert researcher.input_tokens == 10 + 10 + 7
    assert rows["summarizer"].cost_usd == pytest.approx(8.0)  # its own row, not the parent's
    assert rows["search"].cost_usd == pytest.approx(2.0) and rows["search"].unpriced_calls == 1
    assert rows["fetch"].cost_usd is None and rows["fetch"].unpriced_calls == 1
    # Streaming (chunk by chunk) folds the same way as a page does.
    streamed = {r.agent: r for r in store.stream_executions(ExecutionFilter(kind=None),
                                                            chunk_size=1)}  # fmt: skip
    assert streamed == rows


def test_a_cycle_of_parent_ids_or_a_deep_chain_never_hangs_a_listing(
    store: Store, records: Records
) -> None:
    a = records.execution("a", 1_000.0, kind="tool", events=[records.llm(cost_usd=1.0)])
    b = records.execution("b", 1_001.0, kind="tool", parent_id=a.id,
                          events=[records.llm(cost_usd=2.0)])  # fmt: skip
    a.parent_id = b.id  # corrupted data: a is b's parent and b is a's
    chain = [records.execution("root", 2_000.0)]
    for depth in range(MAX_TOOL_DEPTH + 5):
        chain.append(records.execution(f"t{depth}", 2_000.0 + depth, kind="tool",
                                       parent_id=chain[-1].id,
                                       events=[records.llm(cost_usd=1.0)]))  # fmt: skip
    write(store, ExecutionFinished(a), ExecutionFinished(b),
          *(ExecutionFinished(e) for e in chain))  # fmt: skip

    rows = {r.agent: r for r in store.executions(ExecutionFilter(kind=None), limit=None)}
    # No answer is right for a cycle; any bounded one is, and each keeps its own call.
    assert 1.0 <= (rows["a"].cost_usd or 0) <= 3.0 and 2.0 <= (rows["b"].cost_usd or 0) <= 3.0
    [root] = store.executions(ExecutionFilter(agent="root"))
    assert root.llm_calls == MAX_TOOL_DEPTH  # folded down to a bounded depth, no error


def test_runs_and_tools_are_filtered_by_kind(store: Store, records: Records) -> None:
    run = records.execution("agent", 1_000.0)
    tool = records.execution("tool", 1_000.5, kind="tool", parent_id=run.id, error_type="E")
    write(store, ExecutionFinished(tool), ExecutionFinished(run))
    assert [r.agent for r in store.executions()] == ["agent"]
    assert [r.agent for r in store.executions(ExecutionFilter(kind="tool"))] == ["tool"]
    assert store.count(ExecutionFilter(status="failed")) == 0  # the failed tool is no run
    assert store.count(ExecutionFilter(status="failed", kind=None)) == 1
    assert store.count_executions() == 1 and store.count_executions(kind=None) == 2
    with pytest.raises(ValueError, match="status"):
        ExecutionFilter(status="exploded")


def test_summary_names_top_level_and_nested_runs_and_counts_calls_by_their_own_agent(
    store: Store, records: Records
) -> None:
    parent = records.execution("planner", 1_000.0, 1.0, [records.llm(cost_usd=0.5)])
    child = records.execution("writer", 1_000.2, 0.5, [records.llm(cost_usd=0.25)],
                              parent_id=parent.id, error_type="ValueError")  # fmt: skip
    write(store, ExecutionFinished(child), ExecutionFinished(parent),
          LateEvent(records.llm(1_000.9, cost_usd=None)))  # fmt: skip

    everything = store.summary()
    assert (everything.runs, everything.top_level_runs, everything.nested_runs) == (2, 1, 1)
    assert (everything.failed_runs, everything.success_rate) == (1, 0.5)
    assert (everything.llm_calls, everything.unpriced_calls) == (3, 1)
    assert everything.cost_usd == pytest.approx(0.75)
    planner = store.summary(agent="planner")
    assert (planner.runs, planner.llm_calls, planner.cost_usd) == (1, 1, 0.5)
    orphans = store.summary(agent="none")
    assert (orphans.runs, orphans.llm_calls, orphans.unpriced_calls) == (0, 1, 1)
    assert orphans.cost_usd is None  # nothing priced: unknown, not $0
    assert json.dumps(orphans.to_record())  # JSON-safe


def test_known_cost_is_none_only_when_nothing_was_priced() -> None:
    assert known_cost(0.0, 0, 0) == 0.0  # no calls: free
    assert known_cost(0.0, 2, 2) is None  # every call unpriced: unknown
    assert known_cost(0.5, 3, 1) == 0.5  # a lower bound, shown with its unpriced count
    assert known_cost(0.0, 3, 1) == 0.0  # priced calls that cost nothing (a free tier)

"""Sampling through the real runtime, writer and store: trees whole or absent, totals exact.

Capture with `sample_rate: 0.3` into a real store (SQLite and PostgreSQL), then check what
a user reads back: stored trees are whole, failed and slow trees are all there, kept runs
carry their rate, and the rollups (`/metrics`) and `monitor stats` count every run.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

import agentwatch
from _capture_fixtures import clean_environment
from agentwatch import context, runtime
from agentwatch.cardinality import CardinalityGuard
from agentwatch.cli import cli
from agentwatch.model import ExecutionFinished, LateEvent
from agentwatch.rollups import RollupBuilder
from agentwatch.sampling import SAMPLED_RATE_ATTRIBUTE
from agentwatch.store import Store, open_store
from agentwatch.store.rows import ExecutionFilter
from conftest import Records

TREES = 120
FAILED_EVERY = 10  # trees 0, 10, 20, ...: a nested worker fails
SLOW = {5, 55}  # trees whose root sleeps past sample_slow_seconds
SLOW_SECONDS = 0.05


@pytest.fixture
def url(backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    clean_environment(monkeypatch, tmp_path)
    yield backend_url
    runtime.close()


def _workload() -> list[str]:
    """Run the trees; return the root run ids in order."""

    @agentwatch.observe(name="worker")
    def worker(fail: bool) -> None:
        agentwatch.record_llm_call(
            "gpt-4o-mini", provider="openai", input_tokens=10, output_tokens=5, cost_usd=0.001
        )
        agentwatch.record_tool_call("search", duration=0.001)
        if fail:
            raise ValueError("worker failed")

    @agentwatch.observe(name="planner")
    def planner(i: int) -> str:
        worker(False)
        with contextlib.suppress(ValueError):
            worker(i % FAILED_EVERY == 0)
        if i in SLOW:
            time.sleep(SLOW_SECONDS * 1.5)
        return context.current_execution_id() or ""

    return [planner(i) for i in range(TREES)]


def _rollup(store: Store, sample: str, **labels: str) -> float:
    rows = store.read_rollups()
    return sum(
        r.value
        for r in rows
        if r.sample == sample and all(r.labels.get(k) == v for k, v in labels.items())
    )


def test_sampled_store_keeps_whole_trees_and_exact_totals(url: str) -> None:
    agentwatch.configure(
        store_url=url,
        registry=CollectorRegistry(),
        sample_rate=0.3,
        sample_slow_seconds=SLOW_SECONDS,
    )
    root_ids = _workload()
    assert agentwatch.flush(timeout=30)

    store = open_store(url)
    try:
        runs = store.executions(ExecutionFilter(kind=None), limit=None)
        events = store.events(limit=None)
        # Metrics count everything, in the store's rollups as in `monitor stats`.
        assert _rollup(store, "agentwatch_executions_total", agent="planner") == TREES
        assert _rollup(store, "agentwatch_executions_total", agent="worker") == 2 * TREES
        assert _rollup(store, "agentwatch_llm_requests_total") == 2 * TREES
        sampled_out = TREES * 3 - len(runs)
        assert _rollup(store, "agentwatch_runs_sampled_out_total") == sampled_out
    finally:
        store.close()

    by_id = {r.id: r for r in runs}
    roots = [r for r in runs if r.parent_id is None]
    # Whole or absent: every stored nested run has its root, every stored root both workers.
    assert all(r.parent_id in by_id for r in runs if r.parent_id is not None)
    children: dict[str, int] = {}
    for r in runs:
        if r.parent_id is not None:
            children[r.parent_id] = children.get(r.parent_id, 0) + 1
    assert all(children.get(r.id) == 2 for r in roots)
    # Every event of a stored run is there (1 LLM + 1 tool call per worker), none other.
    per_run: dict[str | None, int] = {}
    for ev in events:
        per_run[ev.execution_id] = per_run.get(ev.execution_id, 0) + 1
    assert set(per_run) == {r.id for r in runs if r.agent == "worker"}
    assert all(n == 2 for n in per_run.values())
    # Failed and slow trees are always stored; the rest about 30 %.
    failed_trees = TREES // FAILED_EVERY
    assert sum(1 for r in runs if r.status == "failed") == failed_trees
    assert {root_ids[i] for i in range(0, TREES, FAILED_EVERY)} <= by_id.keys()
    assert {root_ids[i] for i in SLOW} <= by_id.keys()
    # Any root at or past the threshold is kept (a loaded machine may add a few slow ones).
    slow = {r.id for r in roots if (r.duration or 0) >= SLOW_SECONDS}
    plain_ids = set(root_ids) - {root_ids[i] for i in range(0, TREES, FAILED_EVERY)} - slow
    kept_plain = len(plain_ids & by_id.keys())
    plain = len(plain_ids)
    assert 0.1 * plain < kept_plain < 0.55 * plain  # 30 % of ~106 (binomial sd ~4.7)
    assert sampled_out == 3 * (plain - kept_plain)
    assert all(r.attributes.get(SAMPLED_RATE_ATTRIBUTE) == 0.3 for r in runs)

    # `monitor stats` reads the hourly aggregates: every run and call, sampled or not.
    result = CliRunner().invoke(cli, ["monitor", "stats", "--json", "--store", url])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["runs"] == 3 * TREES
    assert stats["top_level_runs"] == TREES
    assert stats["failed_runs"] == failed_trees
    assert stats["llm_calls"] == 2 * TREES and stats["tool_calls"] == 2 * TREES
    assert stats["cost_usd"] == pytest.approx(2 * TREES * 0.001)


def test_without_sampling_nothing_is_held_or_marked(url: str) -> None:
    agentwatch.configure(store_url=url, registry=CollectorRegistry())
    assert runtime.get_runtime().sampler is None  # the default costs one attribute check
    _workload()
    assert agentwatch.flush(timeout=30)
    store = open_store(url)
    try:
        runs = store.executions(ExecutionFilter(kind=None), limit=None)
        assert len(runs) == 3 * TREES
        assert not any(SAMPLED_RATE_ATTRIBUTE in r.attributes for r in runs)
        assert _rollup(store, "agentwatch_runs_sampled_out_total") == 0
    finally:
        store.close()


def test_late_events_of_a_sampled_out_run_are_counted_not_stored(
    store: Store, records: Records
) -> None:
    """Rows of a sampled-out run (and events arriving after it) never reach the store,
    yet the rollups and the hourly aggregates behind `monitor stats` count them."""
    builder = RollupBuilder(CardinalityGuard(1000))
    # The sampled-out run is the later one, so it would win every exemplar if allowed to.
    out = records.execution(
        "planner", started_at=2_000.0, events=[records.llm(2_000.0, agent="planner")]
    )
    kept = records.execution("planner", events=[records.llm(agent="planner")])
    store.write_batch(
        builder.build([ExecutionFinished(out, stored=False), ExecutionFinished(kept)])
    )
    # A later batch: a late call of each run.
    late = [
        LateEvent(records.llm(execution_id=out.id, agent="planner")),
        LateEvent(records.llm(execution_id=kept.id, agent="planner")),
    ]
    store.write_batch(builder.build(late))
    assert [r.id for r in store.executions(limit=None)] == [kept.id]
    assert {e.execution_id for e in store.events(limit=None)} == {kept.id}
    assert len(store.events(limit=None)) == 2
    assert _rollup(store, "agentwatch_llm_requests_total") == 4
    assert _rollup(store, "agentwatch_runs_sampled_out_total", agent="planner") == 1
    # No exemplar links to a run that is not stored.
    linked = {r.exemplar.execution_id for r in store.read_rollups() if r.exemplar is not None}
    assert linked == {kept.id}
    summary = store.summary()
    assert (summary.runs, summary.llm_calls) == (2, 4)
    assert summary.cost_usd == pytest.approx(4 * 0.001)


def test_runs_still_held_at_exit_are_stored(url: str) -> None:
    """A nested run whose root never ends (the process exits inside it) is kept, not lost."""
    agentwatch.configure(store_url=url, registry=CollectorRegistry(), sample_rate=0.0)

    @agentwatch.observe(name="child")
    def child() -> None:
        pass

    with agentwatch.track("root"):
        child()
        runtime.close()  # exit while the root is still open
    store = open_store(url)
    try:
        stored = store.executions(ExecutionFilter(kind=None), limit=None)
        assert [r.agent for r in stored] == ["child"]
    finally:
        store.close()


def test_an_enforcing_budget_counts_sampled_out_spend_once(url: str) -> None:
    """Spend of a sampled-out run moves from unwritten to written like any other."""
    agentwatch.configure(
        store_url=url,
        registry=CollectorRegistry(),
        sample_rate=0.0,
        budgets=[{"name": "all", "period": "day", "limit_usd": 100.0, "enforce": True}],
        budget_refresh_interval=3600,
    )
    enforcer = runtime.get_runtime().enforcer
    assert enforcer is not None
    enforcer.refresh()
    with agentwatch.track("ranker"):
        for _ in range(3):
            agentwatch.record_llm_call("gpt-4o-mini", provider="openai", cost_usd=1.0)
    state = enforcer.states[0]
    assert enforcer.estimate(state, time.time())[0] == pytest.approx(3.0)  # unwritten
    assert agentwatch.flush()
    assert enforcer.estimate(state, time.time())[0] == pytest.approx(3.0)  # written since
    enforcer.refresh()
    assert enforcer.estimate(state, time.time())[0] == pytest.approx(3.0)  # read back
    store = open_store(url)
    try:
        assert store.executions(limit=None) == []  # the run itself was sampled out
    finally:
        store.close()


def test_the_writer_remembers_a_bounded_number_of_sampled_out_runs(
    records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentwatch import rollups

    monkeypatch.setattr(rollups, "_MAX_SAMPLED_OUT", 3)
    builder = RollupBuilder(CardinalityGuard(1000))
    runs = [records.execution("planner") for _ in range(5)]
    builder.build([ExecutionFinished(r, stored=False) for r in runs])
    late = builder.build([LateEvent(records.llm(execution_id=r.id)) for r in runs])
    # The two oldest are forgotten: their late events are stored (pending), the rest not.
    assert [row[-1] for row in late.late_events] == [runs[0].id, runs[1].id]
    assert len(late.sampled_events) == 3

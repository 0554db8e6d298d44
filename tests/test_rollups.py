"""Rollup deltas: the cumulative counters and histograms `agentwatch serve` exposes."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import pytest
from prometheus_client import CollectorRegistry, Histogram

from agentwatch import contract
from agentwatch.cardinality import CardinalityGuard
from agentwatch.model import ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import (
    LabelSet,
    RollupBuilder,
    SelfDelta,
    cumulative_rows,
    parse_labels,
    resolve_rollups,
)
from agentwatch.store import Store, open_store
from conftest import Records

Deltas = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _admit_all(sets: Sequence[LabelSet]) -> list[bool]:
    return [True] * len(sets)


def build(items: Iterable[WriterItem], *, self_deltas: Iterable[SelfDelta] = ()) -> Deltas:
    """The deltas of one batch when the store admits every label set."""
    batch = RollupBuilder(CardinalityGuard(1000)).build(items, self_deltas)
    rows, overflow = resolve_rollups(batch, _admit_all)
    assert overflow == {}
    # As a reader sees them: buckets are stored per bucket and cumulated when read.
    read = cumulative_rows((row[0], row[1], row[2], None) for row in rows)
    return {(row[0], tuple(sorted(parse_labels(row[1]).items()))): row[2] for row in read}


def key(sample: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return sample, tuple(sorted(labels.items()))


def prometheus_histogram(
    spec: contract.MetricSpec, labels: dict[str, str], values: list[float]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples prometheus_client itself produces for these observations (the oracle)."""
    registry = CollectorRegistry()
    assert spec.buckets is not None
    histogram = Histogram(
        spec.name, spec.help, list(labels), buckets=spec.buckets, registry=registry
    )
    for value in values:
        histogram.labels(**labels).observe(value)
    return {
        key(sample.name, **sample.labels): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def test_execution_duration_histogram_matches_prometheus_client(records: Records) -> None:
    durations = [0.01, 0.05, 0.0500001, 0.3, 1.0, 7.5, 30.0, 599.0, 601.0, 5_000.0]
    deltas = build(ExecutionFinished(records.execution("a", duration=d)) for d in durations)
    expected = prometheus_histogram(contract.EXECUTION_DURATION, {"agent": "a"}, durations)
    got = {k: v for k, v in deltas.items() if k[0].startswith(contract.EXECUTION_DURATION.name)}
    assert got == pytest.approx(expected)
    assert deltas[key("agentwatch_execution_duration_seconds_bucket", agent="a", le="+Inf")] == 10


def test_execution_counters_by_outcome_and_error_class(records: Records) -> None:
    deltas = build([
        ExecutionFinished(records.execution("a")),
        ExecutionFinished(records.execution("a")),
        ExecutionFinished(records.execution("a", error_type="TimeoutError")),
        ExecutionFinished(records.execution("b", error_type="ValueError")),
    ])  # fmt: skip
    assert deltas[key("agentwatch_executions_total", agent="a", status="completed")] == 2
    assert deltas[key("agentwatch_executions_total", agent="a", status="failed")] == 1
    assert deltas[key("agentwatch_execution_errors_total", agent="a",
                      error_type="TimeoutError")] == 1  # fmt: skip
    assert deltas[key("agentwatch_execution_errors_total", agent="b", error_type="ValueError")] == 1


def test_llm_counters_tokens_cost_and_unpriced(records: Records) -> None:
    events = [
        records.llm(input_tokens=100, output_tokens=50, cached_tokens=40, cost_usd=0.5,
                    time_to_first_token=0.3),
        records.llm(input_tokens=10, output_tokens=5, reasoning_tokens=3, cost_usd=0.25),
        records.llm(status="failure", error_type="RateLimitError", input_tokens=0,
                    output_tokens=0, cost_usd=None),
    ]  # fmt: skip
    deltas = build([ExecutionFinished(records.execution("bot", events=events))])
    base = {"agent": "bot", "model": "gpt-4o-mini", "provider": "openai"}
    assert deltas[key("agentwatch_llm_requests_total", **base, status="success")] == 2
    assert deltas[key("agentwatch_llm_requests_total", **base, status="failure")] == 1
    assert deltas[key("agentwatch_llm_errors_total", **base, error_type="RateLimitError")] == 1
    tokens = "agentwatch_llm_tokens_total"
    assert deltas[key(tokens, **base, type="input")] == 110
    assert deltas[key(tokens, **base, type="output")] == 55
    assert deltas[key(tokens, **base, type="cached")] == 40
    assert deltas[key(tokens, **base, type="reasoning")] == 3
    assert deltas[key("agentwatch_llm_cost_usd_total", **base)] == pytest.approx(0.75)
    assert deltas[key("agentwatch_llm_unpriced_requests_total", model="gpt-4o-mini",
                      provider="openai")] == 1  # fmt: skip
    ttft = contract.LLM_TTFT.name
    assert deltas[key(f"{ttft}_count", model="gpt-4o-mini", provider="openai")] == 1
    assert deltas[key(f"{contract.LLM_DURATION.name}_count", model="gpt-4o-mini",
                      provider="openai")] == 3  # fmt: skip


def test_no_time_to_first_token_series_without_streaming(records: Records) -> None:
    deltas = build([ExecutionFinished(records.execution(events=[records.llm()]))])
    assert not [k for k in deltas if k[0].startswith(contract.LLM_TTFT.name)]
    assert not [k for k in deltas if dict(k[1]).get("type") in ("cached", "reasoning")]


def test_tool_calls_and_their_durations(records: Records) -> None:
    durations = [0.004, 0.02, 0.02, 3.0]
    events = [records.tool(duration=d) for d in durations]
    events.append(records.tool(name="fetch", status="failure", duration=None))
    deltas = build([ExecutionFinished(records.execution("agent", events=events))])
    calls = "agentwatch_tool_calls_total"
    assert deltas[key(calls, agent="agent", tool="search", status="success")] == 4
    assert deltas[key(calls, agent="agent", tool="fetch", status="failure")] == 1
    expected = prometheus_histogram(contract.TOOL_DURATION, {"tool": "search"}, durations)
    for sample, value in expected.items():
        assert deltas[sample] == pytest.approx(value)


def test_late_and_orphan_events_use_their_own_agent_or_none(records: Records) -> None:
    deltas = build([
        LateEvent(records.llm(execution_id="exec_x", agent="late-agent")),
        LateEvent(records.llm()),
    ])  # fmt: skip
    requests = "agentwatch_llm_requests_total"
    base = {"model": "gpt-4o-mini", "provider": "openai", "status": "success"}
    assert deltas[key(requests, agent="late-agent", **base)] == 1
    assert deltas[key(requests, agent=contract.NO_AGENT, **base)] == 1


def test_events_inside_an_execution_carry_the_execution_agent(records: Records) -> None:
    event = records.llm()  # built without an agent label
    deltas = build([ExecutionFinished(records.execution("owner", events=[event]))])
    assert key("agentwatch_llm_requests_total", agent="owner", model="gpt-4o-mini",
               provider="openai", status="success") in deltas  # fmt: skip


def test_a_call_inside_a_tool_is_billed_to_the_calling_agent_as_in_process(
    records: Records,
) -> None:
    """Capture labels an LLM call made inside `@observe(kind="tool")` with the agent that
    called the tool (the in-process registry counts it so); the rollups must agree, not use
    the tool's name."""
    call = records.llm(agent="researcher")
    tool_run = records.execution("web_search", kind="tool", events=[call])
    deltas = build([ExecutionFinished(tool_run)])
    labels = {"model": "gpt-4o-mini", "provider": "openai"}
    assert deltas[key("agentwatch_llm_requests_total", agent="researcher", status="success",
                      **labels)] == 1  # fmt: skip
    assert deltas[key("agentwatch_llm_cost_usd_total", agent="researcher", **labels)] == 0.001
    assert not [k for k in deltas if dict(k[1]).get("agent") == "web_search"]


def test_cardinality_cap_folds_new_label_sets_and_counts_them(
    store: Store, records: Records
) -> None:
    items = [ExecutionFinished(records.execution(f"agent-{i}")) for i in range(5)]
    store.write_batch(RollupBuilder(CardinalityGuard(2)).build(items))
    deltas = _values(store)
    executions = {k: v for k, v in deltas.items() if k[0] == "agentwatch_executions_total"}
    overflow = key("agentwatch_executions_total", agent=contract.OVERFLOW, status=contract.OVERFLOW)
    assert len(executions) == 3 and executions[overflow] == 3
    assert deltas[key("agentwatch_cardinality_overflow_total",
                      metric="agentwatch_executions")] == 3  # fmt: skip


def test_self_metric_deltas_ride_along(records: Records) -> None:
    deltas = build([], self_deltas=[
        (contract.EVENTS_DROPPED, ("queue_full",), 7.0),
        (contract.STORE_WRITE_ERRORS, ("sqlite",), 2.0),
    ])  # fmt: skip
    assert deltas == {
        key("agentwatch_events_dropped_total", reason="queue_full"): 7.0,
        key("agentwatch_store_write_errors_total", backend="sqlite"): 2.0,
    }


def test_every_rollup_sample_belongs_to_the_contract(records: Records) -> None:
    events = [records.llm(time_to_first_token=0.2, cached_tokens=1, reasoning_tokens=1),
              records.llm(status="failure", cost_usd=None), records.tool()]  # fmt: skip
    deltas = build([ExecutionFinished(records.execution(events=events, error_type="E"))])
    rollup_names = {spec.name for spec in contract.ROLLUP_METRICS}
    for sample, labels in deltas:
        spec = contract.spec_for_sample(sample)
        assert spec is not None and spec.name in rollup_names, sample
        names = {name for name, _ in labels} - {"le"}
        assert names == set(spec.labels), sample


def _values(store: Store) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {key(r.sample, **r.labels): r.value for r in store.read_rollups()}


def test_rollups_accumulate_monotonically_across_batches_and_reopen(
    store: Store, backend_url: str, records: Records
) -> None:
    guard = CardinalityGuard(1000)
    seen: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []
    all_durations: list[float] = []
    for batch_no in range(3):
        durations = [0.07 * (batch_no + 1), 2.0 + batch_no]
        all_durations += durations
        items = [ExecutionFinished(records.execution("a", duration=d, events=[records.llm()]))
                 for d in durations]  # fmt: skip
        store.write_batch(RollupBuilder(guard).build(items))
        seen.append(_values(store))
    for before, after in itertools.pairwise(seen):
        for sample, value in before.items():
            assert after[sample] >= value, sample

    reopened = open_store(backend_url)
    try:
        reopened.migrate()
        items = [ExecutionFinished(records.execution("a", duration=0.3))]
        all_durations.append(0.3)
        reopened.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))
        final = _values(reopened)
    finally:
        reopened.close()
    assert final[key("agentwatch_executions_total", agent="a", status="completed")] == 7
    expected = prometheus_histogram(contract.EXECUTION_DURATION, {"agent": "a"}, all_durations)
    for sample, value in expected.items():
        assert final[sample] == pytest.approx(value), sample


def test_observed_tools_count_as_tool_calls_not_as_agent_executions(records: Records) -> None:
    tool_run = records.execution("lookup", kind="tool")
    deltas = build([ExecutionFinished(tool_run), ExecutionFinished(records.execution("agent"))])
    executions = {k for k in deltas if k[0].startswith("agentwatch_execution")}
    assert key("agentwatch_executions_total", agent="agent", status="completed") in executions
    assert not [k for k in executions if dict(k[1]).get("agent") == "lookup"]


def test_values_the_registry_refuses_are_not_observed(records: Records) -> None:
    nan, inf = float("nan"), float("inf")
    events = [
        records.llm(duration=nan, cost_usd=inf),
        records.llm(duration=-1.0, cost_usd=-0.5, time_to_first_token=nan),
    ]
    deltas = build([ExecutionFinished(records.execution("a", events=events))])
    labels = {"model": "gpt-4o-mini", "provider": "openai"}
    assert key(f"{contract.LLM_DURATION.name}_count", **labels) not in deltas
    assert key(f"{contract.LLM_TTFT.name}_count", **labels) not in deltas
    assert key("agentwatch_llm_cost_usd_total", agent="a", **labels) not in deltas
    assert deltas[key("agentwatch_llm_requests_total", agent="a", status="success", **labels)] == 2


def test_long_label_values_are_cut_like_the_registry_does(records: Records) -> None:
    from agentwatch.metrics import MAX_LABEL_LENGTH

    name = "agent-" + "x" * 300
    deltas = build([ExecutionFinished(records.execution(name))])
    cut = name[:MAX_LABEL_LENGTH]
    assert deltas[key("agentwatch_executions_total", agent=cut, status="completed")] == 1

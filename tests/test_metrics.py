# ruff: noqa: E501  (the pinned exposition has long lines by nature)
"""The in-process metrics: contract names, exposition bytes, exemplars, caps, bad values."""

from __future__ import annotations

import math
import platform
from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from agentwatch import contract
from agentwatch._version import __version__
from agentwatch.metrics import RECORDED, SELF_METRICS, AgentMetrics, label_value
from agentwatch.model import Event, Execution
from agentwatch.validation import clean_event

# Pinned exposition of one small, fixed input (client_python's test_exposition style). A
# change here is a change every dashboard and alert sees: update docs/metrics.md with it.
EXPECTED_TEXT = """# HELP agentwatch_executions_total Agent executions that finished, by agent and outcome.
# TYPE agentwatch_executions_total counter
agentwatch_executions_total{agent="researcher",status="completed"} 1.0
agentwatch_executions_total{agent="researcher",status="failed"} 0.0
# HELP agentwatch_execution_errors_total Failed agent executions, by agent and exception class.
# TYPE agentwatch_execution_errors_total counter
# HELP agentwatch_execution_duration_seconds Wall-clock duration of agent executions.
# TYPE agentwatch_execution_duration_seconds histogram
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="0.05"} 0.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="0.1"} 0.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="0.25"} 0.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="0.5"} 0.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="1.0"} 0.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="2.5"} 1.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="5.0"} 1.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="10.0"} 1.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="20.0"} 1.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="30.0"} 1.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="60.0"} 1.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="120.0"} 1.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="300.0"} 1.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="600.0"} 1.0
agentwatch_execution_duration_seconds_bucket{agent="researcher",le="+Inf"} 1.0
agentwatch_execution_duration_seconds_count{agent="researcher"} 1.0
agentwatch_execution_duration_seconds_sum{agent="researcher"} 1.5
# HELP agentwatch_llm_requests_total LLM requests, by calling agent, model, provider and outcome.
# TYPE agentwatch_llm_requests_total counter
agentwatch_llm_requests_total{agent="researcher",model="gpt-4o-mini",provider="openai",status="success"} 1.0
agentwatch_llm_requests_total{agent="researcher",model="gpt-4o-mini",provider="openai",status="failure"} 0.0
agentwatch_llm_requests_total{agent="none",model="custom-model",provider="unknown",status="failure"} 1.0
agentwatch_llm_requests_total{agent="none",model="custom-model",provider="unknown",status="success"} 0.0
# HELP agentwatch_llm_errors_total Failed LLM requests, by model, provider and error class.
# TYPE agentwatch_llm_errors_total counter
agentwatch_llm_errors_total{agent="none",error_type="RateLimitError",model="custom-model",provider="unknown"} 1.0
# HELP agentwatch_llm_tokens_total Tokens used by LLM requests; type is input, output, cached (a subset of input) or reasoning (a subset of output).
# TYPE agentwatch_llm_tokens_total counter
agentwatch_llm_tokens_total{agent="researcher",model="gpt-4o-mini",provider="openai",type="input"} 10.0
agentwatch_llm_tokens_total{agent="researcher",model="gpt-4o-mini",provider="openai",type="output"} 20.0
agentwatch_llm_tokens_total{agent="none",model="custom-model",provider="unknown",type="input"} 0.0
agentwatch_llm_tokens_total{agent="none",model="custom-model",provider="unknown",type="output"} 0.0
# HELP agentwatch_llm_cost_usd_total Cost of LLM requests in US dollars.
# TYPE agentwatch_llm_cost_usd_total counter
agentwatch_llm_cost_usd_total{agent="researcher",model="gpt-4o-mini",provider="openai"} 1.35e-05
# HELP agentwatch_llm_unpriced_requests_total LLM requests whose cost is unknown (no provider cost, no bundled or configured price).
# TYPE agentwatch_llm_unpriced_requests_total counter
agentwatch_llm_unpriced_requests_total{model="custom-model",provider="unknown"} 1.0
# HELP agentwatch_llm_request_duration_seconds Duration of LLM requests, from request to last token.
# TYPE agentwatch_llm_request_duration_seconds histogram
agentwatch_llm_request_duration_seconds_bucket{le="0.025",model="gpt-4o-mini",provider="openai"} 0.0
agentwatch_llm_request_duration_seconds_bucket{le="0.05",model="gpt-4o-mini",provider="openai"} 0.0
agentwatch_llm_request_duration_seconds_bucket{le="0.1",model="gpt-4o-mini",provider="openai"} 0.0
agentwatch_llm_request_duration_seconds_bucket{le="0.25",model="gpt-4o-mini",provider="openai"} 0.0
agentwatch_llm_request_duration_seconds_bucket{le="0.5",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="1.0",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="2.0",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="4.0",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="8.0",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="15.0",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="30.0",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="60.0",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="120.0",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="300.0",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_bucket{le="+Inf",model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_count{model="gpt-4o-mini",provider="openai"} 1.0
agentwatch_llm_request_duration_seconds_sum{model="gpt-4o-mini",provider="openai"} 0.3
# HELP agentwatch_llm_time_to_first_token_seconds Time from request to first streamed token, for streaming LLM requests.
# TYPE agentwatch_llm_time_to_first_token_seconds histogram
# HELP agentwatch_tool_calls_total Tool calls, by calling agent, tool and outcome.
# TYPE agentwatch_tool_calls_total counter
agentwatch_tool_calls_total{agent="researcher",status="success",tool="search"} 1.0
# HELP agentwatch_tool_call_duration_seconds Duration of tool calls.
# TYPE agentwatch_tool_call_duration_seconds histogram
agentwatch_tool_call_duration_seconds_bucket{le="0.005",tool="search"} 0.0
agentwatch_tool_call_duration_seconds_bucket{le="0.01",tool="search"} 0.0
agentwatch_tool_call_duration_seconds_bucket{le="0.025",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="0.05",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="0.1",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="0.25",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="0.5",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="1.0",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="2.5",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="5.0",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="10.0",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="30.0",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="60.0",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="300.0",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_bucket{le="+Inf",tool="search"} 1.0
agentwatch_tool_call_duration_seconds_count{tool="search"} 1.0
agentwatch_tool_call_duration_seconds_sum{tool="search"} 0.02
# HELP agentwatch_llm_refused_requests_total LLM requests refused before they were sent because an enforcing budget in their scope was exhausted, by budget, calling agent, model and provider.
# TYPE agentwatch_llm_refused_requests_total counter
# HELP agentwatch_events_dropped_total Telemetry records that were not stored, by reason.
# TYPE agentwatch_events_dropped_total counter
agentwatch_events_dropped_total{reason="queue_full"} 0.0
agentwatch_events_dropped_total{reason="store_error"} 0.0
agentwatch_events_dropped_total{reason="invalid"} 0.0
agentwatch_events_dropped_total{reason="shutdown"} 0.0
# HELP agentwatch_queue_depth Records waiting in the in-process queue for the background writer.
# TYPE agentwatch_queue_depth gauge
agentwatch_queue_depth 0.0
# HELP agentwatch_queue_capacity Maximum number of records the in-process queue holds before dropping.
# TYPE agentwatch_queue_capacity gauge
agentwatch_queue_capacity 0.0
# HELP agentwatch_cardinality_overflow_total Observations folded into the overflow series because a metric hit its label-set cap.
# TYPE agentwatch_cardinality_overflow_total counter
# HELP agentwatch_attribution_overflow_total Runs and LLM requests counted under the __overflow__ value of an attribution dimension because the dimension reached its max_values.
# TYPE agentwatch_attribution_overflow_total counter
# HELP agentwatch_internal_errors_total Errors inside agentwatch that were contained so the host program kept running.
# TYPE agentwatch_internal_errors_total counter
# HELP agentwatch_invalid_values_total Captured values repaired or dropped because they were invalid (bad text; negative, NaN, infinite or absurd numbers), by record field; the rest of the record is kept.
# TYPE agentwatch_invalid_values_total counter
# HELP agentwatch_build_info Always 1; labels carry the agentwatch and Python versions.
# TYPE agentwatch_build_info gauge
agentwatch_build_info{python_version="{python}",version="{version}"} 1.0
"""


@pytest.fixture
def no_created_series() -> Iterator[None]:
    """`_created` samples carry wall-clock times; switch them off to pin the bytes."""
    prometheus_client.disable_created_metrics()
    try:
        yield
    finally:
        prometheus_client.enable_created_metrics()


def _llm(**overrides: object) -> Event:
    values: dict[str, object] = {
        "kind": "llm_call",
        "name": "gpt-4o-mini",
        "started_at": 100.0,
        "duration": 0.3,
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input_tokens": 10,
        "output_tokens": 20,
        "cost_usd": 1.35e-05,
        "execution_id": "exec_1",
    }
    values.update(overrides)
    return Event(**values)  # type: ignore[arg-type]


def _fixed_input(metrics: AgentMetrics) -> None:
    metrics.observe_llm_call(_llm(), "researcher")
    metrics.observe_llm_call(
        _llm(
            name="m",
            duration=None,
            model="custom-model",
            provider=None,
            status="failure",
            error_type="RateLimitError",
            input_tokens=0,
            output_tokens=0,
            cost_usd=None,
            execution_id=None,
        ),
        "none",
    )
    metrics.observe_execution(
        Execution(
            id="exec_1", agent="researcher", started_at=100.0, ended_at=101.5, status="completed"
        )
    )
    metrics.observe_tool_call(
        Event(kind="tool_call", name="search", started_at=100.0, duration=0.02), "researcher"
    )


def test_text_exposition_is_pinned_byte_for_byte(no_created_series: None) -> None:
    registry = CollectorRegistry()
    _fixed_input(AgentMetrics(registry, max_label_sets=10))
    expected = EXPECTED_TEXT.replace("{python}", platform.python_version()).replace(
        "{version}", __version__
    )
    assert generate_latest(registry).decode() == expected


def test_every_process_metric_of_the_contract_is_exposed_with_its_help() -> None:
    registry = CollectorRegistry()
    AgentMetrics(registry)
    exposed = {m.name: m for m in registry.collect()}
    wanted = [s for s in contract.ALL_METRICS if s.scope in ("process", "both")]
    assert {s.name for s in wanted} == {s.name for s in (*RECORDED, *SELF_METRICS)}
    for spec in wanted:
        family = exposed.get(spec.name)
        if family is None and spec.name == contract.STORE_WRITE_ERRORS.name:
            continue  # needs a writer (backend label); covered in test_runtime
        if family is None and spec.name == contract.STORE_WRITE_DURATION.name:
            continue
        assert family is not None, spec.name
        assert family.documentation == spec.help
        assert family.type == spec.kind


def test_exemplars_appear_only_in_openmetrics() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.observe_llm_call(_llm(execution_id="exec_abc"), "researcher")
    openmetrics = generate_openmetrics(registry).decode()
    text = generate_latest(registry).decode()
    bucket = [
        line
        for line in openmetrics.splitlines()
        if line.startswith('agentwatch_llm_request_duration_seconds_bucket{le="0.5"')
    ]
    assert len(bucket) == 1 and '# {execution_id="exec_abc"} 0.3' in bucket[0]
    assert "exec_abc" not in text


def test_no_exemplar_outside_executions() -> None:
    registry = CollectorRegistry()
    AgentMetrics(registry).observe_llm_call(_llm(execution_id=None), "none")
    assert "execution_id" not in generate_openmetrics(registry).decode()


def test_cardinality_cap_folds_new_label_sets_into_overflow_and_counts() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry, max_label_sets=2)
    for model in ("m1", "m2", "m3", "m4"):
        metrics.observe_llm_call(_llm(model=model, cost_usd=0.5), "a")
    value = registry.get_sample_value
    assert (
        value("agentwatch_llm_cost_usd_total", {"agent": "a", "model": "m2", "provider": "openai"})
        == 0.5
    )
    overflow = {"agent": "__overflow__", "model": "__overflow__", "provider": "__overflow__"}
    assert value("agentwatch_llm_cost_usd_total", overflow) == 1.0
    assert (
        value("agentwatch_llm_cost_usd_total", {"agent": "a", "model": "m3", "provider": "openai"})
        is None
    )
    assert (
        value("agentwatch_cardinality_overflow_total", {"metric": "agentwatch_llm_cost_usd"}) == 2.0
    )
    # a folded label set keeps folding (and keeps counting) on later calls
    metrics.observe_llm_call(_llm(model="m3", cost_usd=0.25), "a")
    assert value("agentwatch_llm_cost_usd_total", overflow) == 1.25
    assert (
        value("agentwatch_cardinality_overflow_total", {"metric": "agentwatch_llm_cost_usd"}) == 3.0
    )


def test_invalid_values_cleaned_at_the_boundary_never_reach_a_series() -> None:
    """The registry trusts its input: capture runs `validation.clean_event` first, as here."""
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    for bad in (math.nan, math.inf, -1.0):
        event = _llm(cost_usd=bad, duration=bad, time_to_first_token=bad, input_tokens=bad)
        metrics.observe_llm_call(clean_event(event, metrics.count_invalid_value), "a")
    labels = {"agent": "a", "model": "gpt-4o-mini", "provider": "openai"}
    assert registry.get_sample_value("agentwatch_llm_cost_usd_total", labels) is None
    assert (
        registry.get_sample_value(
            "agentwatch_llm_unpriced_requests_total", {"model": "gpt-4o-mini", "provider": "openai"}
        )
        == 3.0
    )
    assert (
        registry.get_sample_value("agentwatch_llm_tokens_total", {**labels, "type": "input"}) == 0
    )
    for field in ("cost_usd", "duration", "time_to_first_token", "input_tokens"):
        assert registry.get_sample_value("agentwatch_invalid_values_total", {"field": field}) == 3
    assert (
        registry.get_sample_value(
            "agentwatch_llm_request_duration_seconds_count",
            {"model": "gpt-4o-mini", "provider": "openai"},
        )
        is None
    )
    samples = [s for family in registry.collect() for s in family.samples]
    assert samples and all(math.isfinite(s.value) for s in samples)
    lines = generate_latest(registry).decode().splitlines()
    assert not [line for line in lines if not line.startswith("#") and "NaN" in line]


def test_label_values_are_sanitised() -> None:
    assert label_value(None) == ""
    assert label_value("x" * 500) == "x" * 128
    assert label_value(42) == "42"
    assert label_value(b"r-\xff\x00".decode("utf-8", "surrogateescape")) == "r-\ufffd\ufffd"
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.observe_llm_call(_llm(model="m" * 300, provider=None), "a")
    assert (
        registry.get_sample_value(
            "agentwatch_llm_requests_total",
            {"agent": "a", "model": "m" * 128, "provider": "unknown", "status": "success"},
        )
        == 1.0
    )


def test_cached_and_reasoning_tokens_get_their_own_series_only_when_present() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.observe_llm_call(_llm(), "a")
    base = {"agent": "a", "model": "gpt-4o-mini", "provider": "openai"}
    assert (
        registry.get_sample_value("agentwatch_llm_tokens_total", {**base, "type": "cached"}) is None
    )
    metrics.observe_llm_call(_llm(cached_tokens=4, reasoning_tokens=6), "a")
    assert (
        registry.get_sample_value("agentwatch_llm_tokens_total", {**base, "type": "cached"}) == 4.0
    )
    assert (
        registry.get_sample_value("agentwatch_llm_tokens_total", {**base, "type": "reasoning"})
        == 6.0
    )
    assert (
        registry.get_sample_value("agentwatch_llm_tokens_total", {**base, "type": "input"}) == 20.0
    )


def test_two_instances_cannot_share_a_registry_but_unregister_frees_it() -> None:
    registry = CollectorRegistry()
    first = AgentMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        AgentMetrics(registry)
    first.unregister()
    AgentMetrics(registry).observe_llm_call(_llm(), "a")
    assert (
        registry.get_sample_value(
            "agentwatch_llm_requests_total",
            {"agent": "a", "model": "gpt-4o-mini", "provider": "openai", "status": "success"},
        )
        == 1.0
    )


def _run(agent: str, status: str, **fields: object) -> Execution:
    values: dict[str, object] = {
        "id": "exec_1", "agent": agent, "started_at": 100.0, "ended_at": 101.0, "status": status,
    }  # fmt: skip
    if status == "failed":
        values["error_type"] = "ValueError"
    values.update(fields)
    return Execution(**values)  # type: ignore[arg-type]


def _status_series(registry: CollectorRegistry, family: str) -> dict[tuple[str, ...], float]:
    """Every exposed series of `family` (a counter), by its label values sorted by name."""
    return {
        tuple(v for _, v in sorted(s.labels.items())): s.value
        for metric in registry.collect()
        if metric.name == family
        for s in metric.samples
        if s.name == family + "_total"
    }


def test_a_new_label_set_exposes_its_other_outcomes_at_zero() -> None:
    """So Prometheus' rate() sees the first failure of a new agent or model as 0 -> 1."""
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    value = registry.get_sample_value
    executions = "agentwatch_executions_total"

    metrics.observe_execution(_run("fresh", "completed"))
    assert value(executions, {"agent": "fresh", "status": "failed"}) == 0.0
    metrics.observe_execution(_run("fresh", "failed"))
    metrics.observe_execution(_run("fresh", "completed"))
    assert value(executions, {"agent": "fresh", "status": "failed"}) == 1.0
    assert value(executions, {"agent": "fresh", "status": "completed"}) == 2.0
    # an agent whose first run fails gets its completed series at 0 all the same
    metrics.observe_execution(_run("unlucky", "failed"))
    assert value(executions, {"agent": "unlucky", "status": "completed"}) == 0.0

    requests_total = "agentwatch_llm_requests_total"
    call = {"agent": "a", "model": "new-model", "provider": "openai"}
    metrics.observe_llm_call(_llm(model="new-model"), "a")
    assert value(requests_total, {**call, "status": "failure"}) == 0.0
    metrics.observe_llm_call(_llm(model="new-model", status="failure", error_type="E"), "a")
    assert value(requests_total, {**call, "status": "failure"}) == 1.0
    assert value(requests_total, {**call, "status": "success"}) == 1.0

    # Not for the families no rule takes a ratio of: each tool would grow an idle series,
    # and an error class cannot be known before it happens.
    metrics.observe_tool_call(Event(kind="tool_call", name="t", started_at=1.0), "a")
    assert (
        value("agentwatch_tool_calls_total", {"agent": "a", "tool": "t", "status": "failure"})
        is None
    )
    errors = _status_series(registry, "agentwatch_execution_errors")
    assert errors and all(v > 0 for v in errors.values())


def test_zero_outcome_series_carry_the_attribution_labels_of_their_sibling() -> None:
    from agentwatch.config import AttributionDimension

    registry = CollectorRegistry()
    metrics = AgentMetrics(registry, attribution=(AttributionDimension("team", max_values=1),))
    metrics.observe_execution(_run("a", "completed", attribution={"team": "search"}))
    metrics.observe_execution(_run("a", "completed", attribution={"team": "ads"}))  # past max
    assert _status_series(registry, "agentwatch_executions") == {
        ("a", "completed", "search"): 1.0,
        ("a", "failed", "search"): 0.0,
        ("a", "completed", contract.OVERFLOW): 1.0,
        ("a", "failed", contract.OVERFLOW): 0.0,
    }
    assert metrics.value_caps.overflow_counts() == {"team": 1}, "one fold: the run, not its zero"


def test_zero_outcome_series_count_against_the_cap_and_never_exceed_it() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry, max_label_sets=3)
    value = registry.get_sample_value
    overflowed = "agentwatch_cardinality_overflow_total"
    folds = {"metric": "agentwatch_executions"}

    metrics.observe_execution(_run("a", "completed"))  # a/completed and a/failed: 2 places
    metrics.observe_execution(_run("b", "completed"))  # b/completed takes the last place
    assert _status_series(registry, "agentwatch_executions") == {
        ("a", "completed"): 1.0, ("a", "failed"): 0.0, ("b", "completed"): 1.0,
    }  # fmt: skip
    assert value(overflowed, folds) is None, "a zero series not created is no fold"

    # b's first failure has no place of its own: it folds like any new label set, counted
    metrics.observe_execution(_run("b", "failed"))
    metrics.observe_execution(_run("c", "completed"))
    overflow = (contract.OVERFLOW, contract.OVERFLOW)
    assert _status_series(registry, "agentwatch_executions") == {
        ("a", "completed"): 1.0, ("a", "failed"): 0.0, ("b", "completed"): 1.0, overflow: 2.0,
    }  # fmt: skip
    assert value(overflowed, folds) == 2.0
    metrics.observe_execution(_run("a", "failed"))  # a's zero series counts it in place
    assert value("agentwatch_executions_total", {"agent": "a", "status": "failed"}) == 1.0
    assert value(overflowed, folds) == 2.0


def test_concurrent_new_label_sets_stay_under_the_cap_and_keep_every_count() -> None:
    import threading

    registry = CollectorRegistry()
    metrics = AgentMetrics(registry, max_label_sets=25)
    start = threading.Barrier(4)

    def work(worker: int) -> None:
        start.wait()
        for i in range(40):
            status = "failed" if (i + worker) % 3 == 0 else "completed"
            metrics.observe_execution(_run(f"agent-{i % 20}", status))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    series = _status_series(registry, "agentwatch_executions")
    overflow = (contract.OVERFLOW, contract.OVERFLOW)
    assert len(set(series) - {overflow}) <= 25
    assert sum(series.values()) == 4 * 40, "every run counted once, folded or not"
    # only runs fold (a zero series past the cap is simply not created), each counted once
    folds = registry.get_sample_value(
        "agentwatch_cardinality_overflow_total", {"metric": "agentwatch_executions"}
    )
    assert series.get(overflow, 0.0) == (folds or 0.0) > 0

"""OpenTelemetry GenAI spans (`tracing.py`): the demo workload, recorded by real litellm calls
(offline, `mock_response=`), comes out as the right spans, nested as it ran, with the GenAI
semantic-convention attributes and cost; exemplars point at those traces; failures of the
tracing layer never cost a record."""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_trace_id
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import agentwatch
from _capture_fixtures import CollectingSink, clean_environment
from agentwatch import runtime
from agentwatch.demo import DemoReport, run_demo
from agentwatch.metrics import exemplar_labels

Spans = Sequence[ReadableSpan]


def in_memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def metric_total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def named(spans: Spans, prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def parent_of(span: ReadableSpan, spans: Spans) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next((s for s in spans if s.context.span_id == span.parent.span_id), None)


@dataclass
class TracedDemo:
    spans: Spans
    registry: CollectorRegistry
    report: DemoReport
    openmetrics: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedDemo]:
    """The demo workload (30 runs) recorded once with tracing on, into an in-memory exporter."""
    home = tmp_path_factory.mktemp("traced-demo")
    with pytest.MonkeyPatch.context() as patch:
        clean_environment(patch, home)
        provider, exporter = in_memory_provider()
        registry = CollectorRegistry()
        agentwatch.configure(
            store_url=f"sqlite:///{home / 'demo.db'}",
            registry=registry,
            otel=True,
            tracer_provider=provider,
        )
        report = run_demo(runs=30, seed=3)
        assert agentwatch.flush(timeout=30)
        openmetrics = generate_openmetrics(registry).decode()
        yield TracedDemo(exporter.get_finished_spans(), registry, report, openmetrics)
        runtime.close()


def test_every_run_tool_and_llm_call_is_one_span(demo: TracedDemo) -> None:
    spans, registry = demo.spans, demo.registry
    agents = named(spans, "invoke_agent ")
    tools = named(spans, "execute_tool ")
    calls = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert len(spans) == len(agents) + len(tools) + len(calls)
    assert len(agents) == metric_total(registry, "agentwatch_executions_total")
    assert len(tools) == metric_total(registry, "agentwatch_tool_calls_total")
    assert len(calls) == metric_total(registry, "agentwatch_llm_requests_total")
    assert {s.name for s in agents} == {
        "invoke_agent researcher",
        "invoke_agent summarizer",
        "invoke_agent support-bot",
        "invoke_agent translator",
    }
    assert {s.name for s in tools} == {"execute_tool web_search"}
    assert {"chat gpt-4o-mini", "chat claude-haiku-4-5", "chat gemini-2.5-flash"} <= {
        s.name for s in calls
    }
    for span in calls:  # `{operation} {model}`
        assert span.name == f"chat {attr(span, 'gen_ai.request.model')}"
    ids = Counter(attr(s, "agentwatch.execution_id") for s in agents + tools)
    assert ids and max(ids.values()) == 1  # one span per run


def test_spans_nest_as_the_calls_happened(demo: TracedDemo) -> None:
    spans = demo.spans
    slack = 50_000_000  # 50 ms: litellm's clock and the run's clock are read separately
    for span in spans:
        parent = parent_of(span, spans)
        assert span.start_time is not None and span.end_time is not None
        if span.name.startswith("invoke_agent ") and span.name != "invoke_agent summarizer":
            assert span.parent is None, f"{span.name} is a top-level run"
            continue
        assert parent is not None, f"{span.name} has no parent span"
        assert parent.context.trace_id == span.context.trace_id
        assert parent.start_time is not None and parent.end_time is not None
        assert parent.start_time - slack <= span.start_time
        assert span.end_time <= parent.end_time + slack
        if span.name in ("invoke_agent summarizer", "execute_tool web_search"):
            assert parent.name == "invoke_agent researcher"
        else:  # an LLM call: a child of the run that made it
            assert parent.name.startswith("invoke_agent ")
            assert attr(span, "agentwatch.execution_id") == attr(parent, "agentwatch.execution_id")
            assert attr(span, "gen_ai.agent.name") == attr(parent, "gen_ai.agent.name")


def test_span_attributes_follow_the_genai_conventions(demo: TracedDemo) -> None:
    spans = demo.spans
    for span in spans:
        keys = set(span.attributes or {})
        assert "gen_ai.system" not in keys  # deprecated: gen_ai.provider.name replaces it
        assert not {k for k in keys if k.startswith("gen_ai.usage.prompt")}
    for span in named(spans, "invoke_agent "):
        assert span.kind == SpanKind.INTERNAL
        assert attr(span, "gen_ai.operation.name") == "invoke_agent"
        assert span.name == f"invoke_agent {attr(span, 'gen_ai.agent.name')}"
        assert re.fullmatch(r"exec_[0-9a-f]{32}", attr(span, "agentwatch.execution_id"))
    for span in named(spans, "execute_tool "):
        assert span.kind == SpanKind.INTERNAL
        assert attr(span, "gen_ai.operation.name") == "execute_tool"
        assert attr(span, "gen_ai.tool.name") == "web_search"
        assert attr(span, "gen_ai.agent.name") == "researcher"
    calls = [s for s in spans if s.kind == SpanKind.CLIENT]
    providers = {attr(s, "gen_ai.request.model"): attr(s, "gen_ai.provider.name") for s in calls}
    assert providers["gpt-4o-mini"] == "openai"
    assert providers["claude-haiku-4-5"] == "anthropic"
    assert providers["gemini-2.5-flash"] == "gcp.gemini"
    assert providers.get("mistral-small-latest", "mistral_ai") == "mistral_ai"
    succeeded = [s for s in calls if s.status.status_code != StatusCode.ERROR]
    for span in succeeded:
        assert attr(span, "gen_ai.operation.name") == "chat"
        assert attr(span, "gen_ai.response.model") == attr(span, "gen_ai.request.model")
        assert attr(span, "gen_ai.response.id")
        assert tuple(attr(span, "gen_ai.response.finish_reasons")) == ("stop",)
        assert attr(span, "gen_ai.usage.input_tokens") > 0
        assert attr(span, "gen_ai.usage.output_tokens") > 0
    streamed = [s for s in succeeded if attr(s, "gen_ai.request.stream")]
    assert streamed, "support-bot streams its answers"
    assert all(attr(s, "gen_ai.response.time_to_first_chunk") >= 0 for s in streamed)
    assert not any(s.events for s in spans), "prompts are recorded only when capture is on"


def test_llm_call_spans_carry_the_cost_the_metrics_count(demo: TracedDemo) -> None:
    calls = [s for s in demo.spans if s.kind == SpanKind.CLIENT]
    priced = [s for s in calls if attr(s, "agentwatch.cost_usd") is not None]
    unpriced = [s for s in calls if attr(s, "agentwatch.cost_usd") is None]
    total = sum(attr(s, "agentwatch.cost_usd") for s in priced)
    assert total > 0
    assert math.isclose(
        total, metric_total(demo.registry, "agentwatch_llm_cost_usd_total"), rel_tol=1e-9
    )
    assert len(unpriced) == metric_total(demo.registry, "agentwatch_llm_unpriced_requests_total")
    assert {attr(s, "gen_ai.request.model") for s in unpriced} <= {"acme-7b"}
    # Cost lives on inference spans only, so summing a trace never counts a call twice.
    assert not [
        s for s in demo.spans if s.kind != SpanKind.CLIENT and attr(s, "agentwatch.cost_usd")
    ]


def test_failures_carry_error_type_and_an_error_status(demo: TracedDemo) -> None:
    spans, registry = demo.spans, demo.registry
    failed = [s for s in spans if s.status.status_code == StatusCode.ERROR]
    assert failed, "the demo has rate-limited calls and failed runs"
    for span in failed:
        assert attr(span, "error.type")
    for span in spans:
        if span.status.status_code != StatusCode.ERROR:
            assert attr(span, "error.type") is None
    rate_limited = [s for s in failed if s.kind == SpanKind.CLIENT]
    assert {attr(s, "error.type") for s in rate_limited} == {"RateLimitError"}
    assert len(rate_limited) == metric_total(registry, "agentwatch_llm_errors_total")
    failed_runs = named(failed, "invoke_agent ")
    assert len(failed_runs) == metric_total(
        registry, "agentwatch_executions_total", status="failed"
    )
    for span in failed_runs:
        errors = metric_total(
            registry,
            "agentwatch_execution_errors_total",
            agent=attr(span, "gen_ai.agent.name"),
            error_type=attr(span, "error.type"),
        )
        assert errors >= 1
    for span in named(failed, "execute_tool "):
        assert attr(span, "error.type") == "TimeoutError"


def test_histogram_exemplars_carry_the_trace_of_their_run(demo: TracedDemo) -> None:
    traces = {
        attr(s, "agentwatch.execution_id"): format_trace_id(s.context.trace_id)
        for s in named(demo.spans, "invoke_agent ")
    }
    exemplars = re.findall(
        r'# \{execution_id="(exec_[0-9a-f]{32})",trace_id="([0-9a-f]{32})"\}', demo.openmetrics
    )
    assert exemplars
    for execution_id, trace_id in exemplars:
        assert traces[execution_id] == trace_id


def test_exemplar_labels_stay_under_the_openmetrics_limit() -> None:
    labels = exemplar_labels("exec_" + "f" * 32, "0" * 32)
    assert labels == {"execution_id": "exec_" + "f" * 32, "trace_id": "0" * 32}
    assert sum(len(k) + len(v) for k, v in labels.items()) <= 128
    assert exemplar_labels(None, None) is None
    assert exemplar_labels("exec_1", None) == {"execution_id": "exec_1"}
    assert exemplar_labels(None, "a" * 32) == {"trace_id": "a" * 32}


# -- targeted scenarios ----------------------------------------------------------------------


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A runtime with tracing on (capture of prompts and arguments too) and no store."""
    clean_environment(monkeypatch, tmp_path)
    provider, exporter = in_memory_provider()
    runtime.configure(
        registry=CollectorRegistry(),
        sink=CollectingSink(),
        otel=True,
        tracer_provider=provider,
        capture_prompts=True,
        capture_arguments=True,
    )
    yield exporter
    runtime.close()


def test_prompts_are_a_redacted_details_event_in_the_conventions_schema(
    traced: InMemorySpanExporter,
) -> None:
    import litellm

    agentwatch.instrument_litellm()
    secret = "sk-live0123456789abcdefXYZ"

    @agentwatch.observe(name="helper")
    def helper() -> None:
        litellm.completion(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": f"my key is {secret}, mail me at a@b.example"},
            ],
            mock_response="noted",
        )

    helper()
    assert agentwatch.flush(timeout=10)
    call = _wait_for_span(traced, "chat gpt-4o-mini")
    (details,) = call.events
    assert details.name == "gen_ai.client.inference.operation.details"
    assert details.attributes is not None
    assert details.attributes["gen_ai.provider.name"] == "openai"
    raw = str(dict(details.attributes))
    assert secret not in raw and "a@b.example" not in raw
    import json

    messages = json.loads(str(details.attributes["gen_ai.input.messages"]))
    assert messages[0] == {"role": "system", "parts": [{"type": "text", "content": "be brief"}]}
    assert messages[1]["role"] == "user" and "[REDACTED" in messages[1]["parts"][0]["content"]
    output = json.loads(str(details.attributes["gen_ai.output.messages"]))
    assert output == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "noted"}],
            "finish_reason": "stop",
        }
    ]


def _wait_for_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    """litellm's sync success hook runs on its logging thread: wait for it (bounded)."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [s for s in exporter.get_finished_spans() if s.name == name]
        if found:
            assert len(found) == 1
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no span {name!r}")


def test_conversation_id_of_a_run_reaches_its_nested_runs_and_calls(
    traced: InMemorySpanExporter,
) -> None:
    @agentwatch.observe
    def planner() -> None:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=3, duration=0.1)

    with agentwatch.track("chat-turn", conversation_id="conv_42"):
        planner()
    spans = traced.get_finished_spans()
    assert {s.name for s in spans} == {
        "invoke_agent chat-turn",
        "invoke_agent planner",
        "chat gpt-4o-mini",
    }
    assert {attr(s, "gen_ai.conversation.id") for s in spans} == {"conv_42"}


def test_manual_tool_calls_and_events_are_recorded_with_their_own_times(
    traced: InMemorySpanExporter,
) -> None:
    with agentwatch.track("batch") as run:
        agentwatch.record_tool_call(
            "lookup",
            duration=2.0,
            started_at=run.started_at,
            status="failure",
            error_type="KeyError",
        )
        agentwatch.record_event("memory", "recall", hits=3)
    spans = {s.name: s for s in traced.get_finished_spans()}
    tool, agent = spans["execute_tool lookup"], spans["invoke_agent batch"]
    assert tool.parent is not None and tool.parent.span_id == agent.context.span_id
    assert tool.start_time == int(run.started_at * 1e9)
    assert tool.end_time == int((run.started_at + 2.0) * 1e9)
    assert attr(tool, "error.type") == "KeyError" and tool.status.status_code == StatusCode.ERROR
    assert [(e.name, dict(e.attributes or {})) for e in agent.events] == [
        ("recall", {"agentwatch.event.kind": "memory"})
    ]


def test_tool_arguments_are_recorded_only_as_captured_and_redacted(
    traced: InMemorySpanExporter,
) -> None:
    @agentwatch.observe(name="search", kind="tool")
    def search(query: str, api_key: str) -> str:
        return query

    search("weather", api_key="hunter2")
    (span,) = traced.get_finished_spans()
    arguments = attr(span, "gen_ai.tool.call.arguments")
    assert '"query":"weather"' in arguments and "hunter2" not in arguments


def test_app_spans_inside_a_run_are_its_children_and_the_context_is_restored(
    traced: InMemorySpanExporter,
) -> None:
    from opentelemetry import trace

    provider = runtime.get_runtime().tracer_provider
    app_tracer = provider.get_tracer("app")
    before = trace.get_current_span()

    @agentwatch.observe
    def agent_with_io() -> None:
        with app_tracer.start_as_current_span("SELECT orders"):
            pass

    agent_with_io()
    assert trace.get_current_span() is before
    spans = {s.name: s for s in traced.get_finished_spans()}
    query = spans["SELECT orders"]
    assert query.parent is not None
    assert query.parent.span_id == spans["invoke_agent agent_with_io"].context.span_id


def test_concurrent_async_runs_get_their_own_spans(traced: InMemorySpanExporter) -> None:
    import asyncio

    @agentwatch.observe
    async def worker(n: int) -> None:
        await asyncio.sleep(0.01)
        agentwatch.record_llm_call(f"model-{n}", input_tokens=n, duration=0.001)

    async def main() -> None:
        await asyncio.gather(*(worker(n) for n in range(20)))

    asyncio.run(main())
    spans = traced.get_finished_spans()
    runs = {s.context.span_id: s for s in named(spans, "invoke_agent worker")}
    assert len(runs) == 20
    for call in [s for s in spans if s.kind == SpanKind.CLIENT]:
        assert call.parent is not None
        parent = runs[call.parent.span_id]
        assert attr(call, "agentwatch.execution_id") == attr(parent, "agentwatch.execution_id")
    assert len({s.context.trace_id for s in runs.values()}) == 20


# -- hostile cases ---------------------------------------------------------------------------


class _BrokenTracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("exporter exploded")


class _BrokenProvider:
    def get_tracer(self, *args: Any, **kwargs: Any) -> _BrokenTracer:
        return _BrokenTracer()


def test_a_broken_tracer_costs_no_record_and_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_environment(monkeypatch, tmp_path)
    registry, sink = CollectorRegistry(), CollectingSink()
    runtime.configure(registry=registry, sink=sink, otel=True, tracer_provider=_BrokenProvider())

    @agentwatch.observe
    def agent() -> str:
        agentwatch.record_llm_call("gpt-4o-mini", input_tokens=5, duration=0.2)
        return "ok"

    try:
        assert agent() == "ok"
        execution = sink.execution("agent")
        assert execution.status == "completed" and len(execution.events) == 1
        assert execution.trace_id is None
        value = registry.get_sample_value
        assert value("agentwatch_executions_total", {"agent": "agent", "status": "completed"}) == 1
        assert value("agentwatch_internal_errors_total", {"component": "tracing"}) == 2
    finally:
        runtime.close()


def test_otel_on_without_opentelemetry_installed_records_everything_but_spans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setitem(sys.modules, "agentwatch.tracing", None)  # import fails as if absent
    sink = CollectingSink()
    rt = runtime.configure(registry=CollectorRegistry(), sink=sink, otel=True)
    try:
        assert rt.tracer is None
        assert "pip install" in caplog.text or "agentwatch[otel]" in caplog.text
        with agentwatch.track("job"):
            pass
        assert sink.execution("job").status == "completed"
    finally:
        runtime.close()


def test_tracing_is_off_by_default_and_frames_carry_no_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_environment(monkeypatch, tmp_path)
    rt = runtime.configure(registry=CollectorRegistry(), sink=CollectingSink())
    try:
        assert rt.tracer is None
        with agentwatch.track("job"):
            from agentwatch import context

            frame = context.current_frame()
            assert frame is not None and frame.span is None
    finally:
        runtime.close()


def test_environment_variable_turns_tracing_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AGENTWATCH_OTEL", "1")
    provider, exporter = in_memory_provider()
    rt = runtime.configure(
        registry=CollectorRegistry(), sink=CollectingSink(), tracer_provider=provider
    )
    try:
        assert rt.settings.otel and rt.tracer is not None
        with agentwatch.track("job"):
            pass
        assert [s.name for s in exporter.get_finished_spans()] == ["invoke_agent job"]
    finally:
        runtime.close()


def test_unsampled_runs_keep_their_exemplars_free_of_dead_trace_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    clean_environment(monkeypatch, tmp_path)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry, sink = CollectorRegistry(), CollectingSink()
    runtime.configure(registry=registry, sink=sink, otel=True, tracer_provider=provider)
    try:
        with agentwatch.track("job"):
            agentwatch.record_llm_call("gpt-4o-mini", input_tokens=1, duration=0.2)
        execution = sink.execution("job")
        assert execution.trace_id is None and execution.events[0].trace_id is None
        exposition = generate_openmetrics(registry).decode()
        assert f'execution_id="{execution.id}"' in exposition
        assert "trace_id" not in exposition
        assert exporter.get_finished_spans() == ()
    finally:
        runtime.close()


def test_hostile_text_never_makes_the_spans_unexportable(
    traced: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    bad = "bad\udc80\x00name"

    @agentwatch.observe(name=bad, kind="tool")
    def tool(arg: str) -> None:
        raise ValueError(bad)

    with agentwatch.track(bad, conversation_id=bad):
        agentwatch.record_llm_call(
            bad, provider=bad, duration=0.1, status="failure", error_type=bad
        )
        agentwatch.record_tool_call(bad, duration=0.1)
        agentwatch.record_event("custom", bad)
        with pytest.raises(ValueError):
            tool(bad)
    spans = traced.get_finished_spans()
    assert len(spans) == 4
    repaired = "bad\ufffd\ufffdname"
    assert {attr(s, "gen_ai.conversation.id") for s in spans} == {repaired}
    assert {s.name for s in spans} == {
        f"invoke_agent {repaired}",
        f"execute_tool {repaired}",
        f"chat {repaired}",
    }
    with caplog.at_level(logging.WARNING, logger="opentelemetry"):
        encoded = encode_spans(spans).SerializeToString()  # what the OTLP exporter sends
    assert not caplog.records, "an attribute could not be encoded and would be dropped"
    assert encoded.count(repaired.encode()) >= 8

"""A program instrumented with agentwatch and tracing on, driven by `tests/test_tracing_otlp.py`.

Configured only through the environment, as a deployed service would be (`AGENTWATCH_OTEL=1`,
`AGENTWATCH_STORE_URL`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`). Two modes:

    demo RUNS       run the demo workload (real litellm, mocked network), flush, and print one
                    JSON line with the metric totals the spans must agree with
    app-provider    set a global TracerProvider of the application's own (in-memory exporter)
                    *before* agentwatch starts, run one agent inside an application span, and
                    print the finished spans as JSON lines
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from prometheus_client import CollectorRegistry

import agentwatch


def _total(registry: CollectorRegistry, name: str) -> float:
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    )


def demo(runs: int) -> None:
    from agentwatch.demo import run_demo

    registry = CollectorRegistry()
    agentwatch.configure(registry=registry)
    report = run_demo(runs=runs, seed=3)
    flushed = agentwatch.flush(timeout=30)
    totals = {
        "runs": report.top_level_runs,
        "all_runs": report.runs,
        "flushed": flushed,
        "executions": _total(registry, "agentwatch_executions_total"),
        "llm_requests": _total(registry, "agentwatch_llm_requests_total"),
        "tool_calls": _total(registry, "agentwatch_tool_calls_total"),
        "cost_usd": _total(registry, "agentwatch_llm_cost_usd_total"),
    }
    print(json.dumps(totals), flush=True)


def app_provider() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    app = trace.get_tracer("shop")

    @agentwatch.observe
    def checkout() -> None:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", input_tokens=5, duration=0.1)
        with app.start_as_current_span("SELECT cart"):
            pass

    with app.start_as_current_span("POST /checkout"):
        checkout()
    agentwatch.flush(timeout=10)
    for span in exporter.get_finished_spans():
        print(
            json.dumps(
                {
                    "name": span.name,
                    "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
                    "trace_id": span.context.trace_id,
                    "span_id": span.context.span_id,
                    "parent_id": span.parent.span_id if span.parent else None,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    if sys.argv[1] == "demo":
        demo(int(sys.argv[2]))
    else:
        app_provider()

"""Per-call overhead of recording one LLM call: agentwatch next to litellm's PrometheusLogger.

Both loggers get the same input: the `kwargs` (with litellm's `standard_logging_object`) and
response of a real, offline `litellm.completion(model="gpt-4o-mini", mock_response=...)`
call, captured once. Each is then fed through its `async_log_success_event` hook, awaited in
one event loop, exactly as litellm calls it after a call:

- agentwatch: parse the payload, price it, update the in-process metrics (cached children,
  cardinality guard, exemplar) and hand the event to the real BatchWriter (queue; a
  background thread writes SQLite). Measured outside any execution (each call is enqueued)
  and inside `track()` runs of 20 calls each (each call is appended to its run; the run's
  own start, finish, metrics and enqueue are included, shared by its calls).
- litellm: `litellm.integrations.prometheus.PrometheusLogger`, on prometheus_client's global
  registry (agentwatch uses its own CollectorRegistry here, so both coexist).
- agentwatch with OpenTelemetry tracing on (`otel=True`, the `otel` extra), side by side with
  tracing off: each call also becomes a `chat` span and each run an `invoke_agent` span, on an
  SDK TracerProvider with a BatchSpanProcessor whose exporter discards the batches (what the
  program pays in its own threads; the OTLP export itself runs in the SDK's background thread).

Run:  LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/overhead.py [--calls 20000]
Target: agentwatch at least 20x cheaper per call (tracing off; tracing on is reported).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm.integrations.custom_logger import CustomLogger
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

import agentwatch
from agentwatch import runtime
from agentwatch.integrations.litellm import instrument_litellm, uninstrument_litellm

Hook = Callable[..., Coroutine[Any, Any, None]]


Captured = tuple[dict[str, Any], Any, Any, Any]


def capture_real_call() -> Captured:
    """Run one offline litellm call and keep what its success hook received."""
    seen: list[Captured] = []

    class Spy(CustomLogger):  # type: ignore[misc]
        def log_success_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            seen.append((kwargs, response_obj, start_time, end_time))

    spy = Spy()
    litellm.callbacks.append(spy)
    try:
        litellm.completion(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello"}],
            mock_response="hi there",
        )
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        litellm.callbacks.remove(spy)
    if not seen:
        sys.exit("litellm never called the success hook")
    return seen[0]


def variants(kwargs: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """n shallow copies with distinct call ids (agentwatch ignores a call id seen before)."""
    out = []
    for _ in range(n):
        copy = dict(kwargs)
        copy["litellm_call_id"] = str(uuid.uuid4())
        out.append(copy)
    return out


def time_hook(
    hook: Hook,
    calls: list[dict[str, Any]],
    call: Captured,
    repeats: int,
    calls_per_run: int = 0,
) -> float:
    """Best per-call time in microseconds over `repeats` rounds of awaiting the hook.

    With `calls_per_run`, every that many calls run inside one `agentwatch.track()` block
    (its own cost included): a realistic agent makes tens of calls per run, not 20,000.
    """
    _, response, started, ended = call

    async def one_round(batch: list[dict[str, Any]]) -> float:
        start = time.perf_counter()
        if calls_per_run:
            for i in range(0, len(batch), calls_per_run):
                with agentwatch.track("benchmark"):
                    for kw in batch[i : i + calls_per_run]:
                        await hook(
                            kwargs=kw, response_obj=response, start_time=started, end_time=ended
                        )
        else:
            for kw in batch:
                await hook(kwargs=kw, response_obj=response, start_time=started, end_time=ended)
        return time.perf_counter() - start

    loop = asyncio.new_event_loop()
    try:
        size = len(calls) // repeats
        rounds = [
            loop.run_until_complete(one_round(calls[i * size : (i + 1) * size]))
            for i in range(repeats)
        ]
    finally:
        loop.close()
    return min(rounds) / size * 1e6


class _DiscardingExporter(SpanExporter):
    """Accepts every batch and drops it: measures recording, not a network."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def tracer_provider(capacity: int) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(_DiscardingExporter(), max_queue_size=max(capacity, 2048))
    )
    return provider


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per logger (20000)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; best is kept (5)")
    parser.add_argument(
        "--calls-per-run", type=int, default=20, help="LLM calls per agent run, inside runs (20)"
    )
    args = parser.parse_args()

    call = capture_real_call()
    kwargs = call[0]
    slo = kwargs["standard_logging_object"]
    print(
        f"captured call: {slo['model']} ({slo['custom_llm_provider']}), "
        f"{slo['prompt_tokens']}+{slo['completion_tokens']} tokens, cost {slo['response_cost']}"
    )

    from litellm.integrations.prometheus import PrometheusLogger

    theirs = PrometheusLogger()  # on prometheus_client's global REGISTRY
    size = args.calls // args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        registry = CollectorRegistry()
        provider = tracer_provider(args.calls * 2)

        def use(otel: bool) -> None:
            agentwatch.configure(
                store_url=f"sqlite:///{tmp}/bench.db",
                registry=registry,
                queue_size=args.calls * 3,
                otel=otel,
                tracer_provider=provider,
            )

        use(otel=True)
        ours = instrument_litellm()
        uninstrument_litellm()  # both hooks are called directly below, not through litellm
        # warm up: caches, labelled children, the writer thread, the store and the tracer
        time_hook(ours.async_log_success_event, variants(kwargs, 200), call, 1, 20)
        use(otel=False)
        time_hook(ours.async_log_success_event, variants(kwargs, 200), call, 1)
        time_hook(theirs.async_log_success_event, variants(kwargs, 200), call, 1)
        agentwatch.flush(timeout=60)
        # Rounds alternate between the loggers (and tracing off/on) so all see the same
        # machine load; the writer is flushed between rounds so each measures its own work.
        rounds: dict[str, list[float]] = {key: [] for key in ROWS}
        hook = ours.async_log_success_event
        per_run = args.calls_per_run
        for _ in range(args.repeats):
            for otel in (False, True):
                use(otel)
                suffix = "_otel" if otel else ""
                rounds["outside" + suffix].append(time_hook(hook, variants(kwargs, size), call, 1))
                agentwatch.flush(timeout=60)
                rounds["inside" + suffix].append(
                    time_hook(hook, variants(kwargs, size), call, 1, calls_per_run=per_run)
                )
                agentwatch.flush(timeout=60)
            rounds["litellm"].append(
                time_hook(theirs.async_log_success_event, variants(kwargs, size), call, 1)
            )
        flushed = agentwatch.flush(timeout=60)
        recorded = registry.get_sample_value(
            "agentwatch_llm_requests_total",
            {"agent": "none", "model": "gpt-4o-mini", "provider": "openai", "status": "success"},
        )
        runtime.close()
        provider.shutdown()
    best = {key: min(values) for key, values in rounds.items()}

    worst = max(best["outside"], best["inside"])
    litellm_us = best["litellm"]
    for key, label in ROWS.items():
        print(f"{label + ':':58} {best[key]:8.2f} µs/call")
    ratio = litellm_us / worst
    print(f"{'ratio (litellm / agentwatch tracing off, worst case):':58} {ratio:8.1f}x")
    for where in ("outside", "inside"):
        extra = best[where + "_otel"] - best[where]
        print(f"{f'tracing on costs, {where} runs:':58} {extra:+8.2f} µs/call")
    print(f"(writer flushed: {flushed}; agentwatch counted {recorded:.0f} calls outside runs)")
    if ratio < 20:
        print("BELOW TARGET: agentwatch should be at least 20x cheaper", file=sys.stderr)
        sys.exit(1)


ROWS = {
    "outside": "agentwatch, outside any run (metrics + enqueue)",
    "inside": "agentwatch, in runs of 20 calls (+ run cost)",
    "outside_otel": "agentwatch + OTel spans, outside any run",
    "inside_otel": "agentwatch + OTel spans, in runs of 20 calls",
    "litellm": "litellm PrometheusLogger",
}


if __name__ == "__main__":
    main()

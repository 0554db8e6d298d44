"""OpenTelemetry GenAI spans for agent runs, tool calls and LLM calls (the `otel` extra).

On when the `otel` setting is (`AGENTWATCH_OTEL=1`); the runtime then builds one
`GenAITracer` and capture calls it at a few points, each guarded by one `is not None` check so
that nothing here runs, or is even imported, when tracing is off:

- a run (`@observe`, `track()`) starts an `invoke_agent {agent}` span (a tool run:
  `execute_tool {tool}`) that is OpenTelemetry's current span while the run's code executes
  (`context.push`), so spans the program starts inside it are its children; it ends with the
  run, with `error.type` and an error status when the run raised;
- an LLM call becomes a `{operation} {model}` CLIENT span (`chat gpt-4o-mini`). litellm's hooks
  report a call after it happened, so the span is recorded then, with the call's own start and
  end times and the run's span as explicit parent; `record_tool_call` does the same for
  `execute_tool` spans; `record_event` adds an event to the run's span.

Spans go to the TracerProvider given to `configure(tracer_provider=...)`, else to the
application's global one (so runs join the application's traces), else to agentwatch's own
provider, built once per process from the standard variables: an OTLP/HTTP exporter
(`OTEL_EXPORTER_OTLP_*`; `OTEL_TRACES_EXPORTER=console|none`), `OTEL_SERVICE_NAME` /
`OTEL_RESOURCE_ATTRIBUTES` for the resource and `OTEL_TRACES_SAMPLER` for sampling.

Telemetry never breaks the host: every method contains its own errors (counted as internal
errors of component `tracing`), and a failure here never loses the run's record or metrics.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from agentwatch import genai_semconv as gen_ai
from agentwatch._version import __version__
from agentwatch.contract import NO_AGENT
from agentwatch.validation import repair_text

if TYPE_CHECKING:
    from agentwatch.config import Settings
    from agentwatch.context import Frame
    from agentwatch.model import Event, Execution

logger = logging.getLogger("agentwatch")

Report = Callable[[str, BaseException | None], None]

#: Instrumentation scope name of every span agentwatch records.
SCOPE = "agentwatch"
#: `error.type` when the error class is not known (the convention's fallback value).
_OTHER_ERROR = "_OTHER"


class RunSpan:
    """The span of one open run, held by its `Frame` (`frame.span`).

    `attach`/`detach` make the span OpenTelemetry's current span while the run's code runs;
    `context.push`/`pop` call them. A frame is pushed by one context at a time (its own
    wrapper), so one token slot is enough.
    """

    __slots__ = ("_token", "context", "conversation_id", "owner", "span")

    def __init__(
        self,
        owner: GenAITracer,
        span: trace.Span,
        ctx: otel_context.Context,
        conversation_id: str | None,
    ) -> None:
        self.owner = owner
        self.span = span
        self.context = ctx
        self.conversation_id = conversation_id
        self._token: Token[otel_context.Context] | None = None

    def attach(self) -> None:
        """Make this span current in the calling context."""
        self._token = otel_context.attach(self.context)

    def detach(self) -> None:
        """Restore the context that was current before `attach`."""
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)

    def end(self, execution: Execution) -> None:
        """End the span at the run's end time, with its outcome. Never raises."""
        self.owner.end_run(self, execution)


class GenAITracer:
    """Records agentwatch's runs and calls as GenAI spans on one OpenTelemetry tracer.

    Thread-safe. Built by `build_tracer`; capture reaches it as `runtime.tracer`.

    Args:
        tracer: the OpenTelemetry tracer spans are started on.
        provider: its provider, flushed by `flush()` (anything with `force_flush`).
        capture_prompts: record the (already redacted) messages of LLM calls as a
            `gen_ai.client.inference.operation.details` span event.
        report: counts a contained error (`Runtime.internal_error`).
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        provider: Any,
        *,
        capture_prompts: bool,
        report: Report,
    ) -> None:
        self._tracer = tracer
        self._provider = provider
        self._capture_prompts = capture_prompts
        self._report = report

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, frame: Frame, parent: Frame | None) -> None:
        """Start the span of a run that is starting; sets `frame.span` and its trace id."""
        try:
            execution = frame.execution
            parent_span = None if parent is None else parent.span
            parent_ctx = None if parent_span is None else parent_span.context
            conversation = _conversation_id(execution.attributes)
            if conversation is None and parent_span is not None:
                conversation = parent_span.conversation_id
            attributes: dict[str, Any] = {gen_ai.EXECUTION_ID: execution.id}
            if execution.kind == "agent":
                name = f"{gen_ai.INVOKE_AGENT} {execution.agent}"
                attributes[gen_ai.OPERATION] = gen_ai.INVOKE_AGENT
                attributes[gen_ai.AGENT_NAME] = execution.agent
            else:
                name = f"{gen_ai.EXECUTE_TOOL} {execution.agent}"
                attributes[gen_ai.OPERATION] = gen_ai.EXECUTE_TOOL
                attributes[gen_ai.TOOL_NAME] = execution.agent
                attributes[gen_ai.TOOL_TYPE] = "function"
                if frame.agent != NO_AGENT:
                    attributes[gen_ai.AGENT_NAME] = frame.agent
                if execution.arguments is not None:  # only when capture_arguments is on
                    attributes[gen_ai.TOOL_CALL_ARGUMENTS] = gen_ai.to_json(execution.arguments)
            if conversation is not None:
                attributes[gen_ai.CONVERSATION_ID] = conversation
            span = self._tracer.start_span(
                name,
                context=parent_ctx,
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=_ns(execution.started_at),
            )
            frame.span = RunSpan(
                self, span, trace.set_span_in_context(span, parent_ctx), conversation
            )
            execution.trace_id = _sampled_trace_id(span)
        except Exception as exc:
            self._report("tracing", exc)

    def end_run(self, run_span: RunSpan, execution: Execution) -> None:
        """End a run's span with the run's end time and outcome. Never raises."""
        try:
            span = run_span.span
            if execution.status == "failed":
                # Ended before capture validates the record: repair the text here.
                error_type = repair_text(execution.error_type or _OTHER_ERROR)
                span.set_attribute(gen_ai.ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, _repaired(execution.error_message)))
            ended = execution.ended_at
            span.end(end_time=None if ended is None else _ns(ended))
        except Exception as exc:
            self._report("tracing", exc)

    # -- calls recorded after the fact -----------------------------------------------------

    def llm_call(self, event: Event, frame: Frame | None) -> None:
        """Record one LLM call as a CLIENT span under the run that made it; sets its trace id.

        `event` is complete (validated, priced, agent and execution set).
        """
        try:
            extra = event.trace_attributes or {}
            operation = str(extra.get(gen_ai.OPERATION, gen_ai.CHAT))
            attributes: dict[str, Any] = {
                gen_ai.USAGE_INPUT_TOKENS: event.input_tokens,
                gen_ai.USAGE_OUTPUT_TOKENS: event.output_tokens,
            }
            if event.model:
                attributes[gen_ai.REQUEST_MODEL] = event.model
            provider = gen_ai.provider_name(event.provider)
            if provider is not None:
                attributes[gen_ai.PROVIDER] = provider
            if event.cached_tokens > 0:
                attributes[gen_ai.USAGE_CACHE_READ_INPUT_TOKENS] = event.cached_tokens
            if event.reasoning_tokens > 0:
                attributes[gen_ai.USAGE_REASONING_OUTPUT_TOKENS] = event.reasoning_tokens
            if event.time_to_first_token is not None:
                attributes[gen_ai.RESPONSE_TIME_TO_FIRST_CHUNK] = event.time_to_first_token
            if event.cost_usd is not None:
                attributes[gen_ai.COST_USD] = event.cost_usd
            attributes.update(extra)
            attributes[gen_ai.OPERATION] = operation
            name = operation if not event.model else f"{operation} {event.model}"
            span = self._call_span(name, SpanKind.CLIENT, attributes, event, frame)
            if self._capture_prompts and event.attributes:
                _add_messages(span, event, attributes)
            self._end_call(span, event)
        except Exception as exc:
            self._report("tracing", exc)

    def tool_call(self, event: Event, frame: Frame | None) -> None:
        """Record a tool call reported after the fact (`record_tool_call`) as a span."""
        try:
            attributes: dict[str, Any] = {
                gen_ai.OPERATION: gen_ai.EXECUTE_TOOL,
                gen_ai.TOOL_NAME: event.name,
                gen_ai.TOOL_TYPE: "function",
            }
            span = self._call_span(
                f"{gen_ai.EXECUTE_TOOL} {event.name}", SpanKind.INTERNAL, attributes, event, frame
            )
            self._end_call(span, event)
        except Exception as exc:
            self._report("tracing", exc)

    def custom_event(self, event: Event, frame: Frame | None) -> None:
        """Add a memory or custom event (`record_event`) to the open run's span."""
        try:
            run_span = None if frame is None else frame.span
            if run_span is None or not run_span.span.is_recording():
                return
            run_span.span.add_event(
                event.name,
                {gen_ai.EVENT_KIND: event.kind},
                timestamp=_ns(event.started_at),
            )
        except Exception as exc:
            self._report("tracing", exc)

    def _call_span(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        event: Event,
        frame: Frame | None,
    ) -> trace.Span:
        run_span = None if frame is None else frame.span
        if event.agent and event.agent != NO_AGENT:
            attributes.setdefault(gen_ai.AGENT_NAME, event.agent)
        if event.execution_id is not None:
            attributes[gen_ai.EXECUTION_ID] = event.execution_id
        if run_span is not None and run_span.conversation_id is not None:
            attributes.setdefault(gen_ai.CONVERSATION_ID, run_span.conversation_id)
        return self._tracer.start_span(
            name,
            # None: the current context, i.e. the caller's span (litellm's hooks run in a
            # copy of the caller's context) when the call was made outside any run.
            context=None if run_span is None else run_span.context,
            kind=kind,
            attributes=attributes,
            start_time=_ns(event.started_at),
        )

    @staticmethod
    def _end_call(span: trace.Span, event: Event) -> None:
        if event.status == "failure":
            span.set_attribute(gen_ai.ERROR_TYPE, event.error_type or _OTHER_ERROR)
            span.set_status(Status(StatusCode.ERROR, event.error_message))
        span.end(end_time=_ns(event.started_at + (event.duration or 0.0)))
        event.trace_id = _sampled_trace_id(span)

    # -- lifecycle -------------------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Export the spans ended so far (the provider's `force_flush`); False on timeout."""
        force_flush = getattr(self._provider, "force_flush", None)
        if force_flush is None:
            return True
        try:
            millis = 30_000 if timeout is None else max(int(timeout * 1000), 1)
            return bool(force_flush(millis))
        except Exception as exc:
            self._report("tracing", exc)
            return False


def build_tracer(settings: Settings, tracer_provider: Any, report: Report) -> GenAITracer:
    """The tracer of a runtime: on `tracer_provider`, the application's, or our own.

    Raises:
        ImportError: the OpenTelemetry SDK or OTLP exporter is not installed and the
            application has no TracerProvider of its own (the `otel` extra:
            `pip install '.[otel]'`).
    """
    provider = tracer_provider if tracer_provider is not None else _default_provider()
    tracer = provider.get_tracer(SCOPE, __version__)
    return GenAITracer(tracer, provider, capture_prompts=settings.capture_prompts, report=report)


_own_provider: Any = None
_own_lock = threading.Lock()


def _default_provider() -> Any:
    """The application's global TracerProvider, or (none set) agentwatch's own.

    Ours is built once per process and never made global: the application keeps control of
    OpenTelemetry's global state. The SDK flushes and shuts it down at interpreter exit.
    """
    global _own_provider
    provider = trace.get_tracer_provider()
    if not isinstance(provider, trace.ProxyTracerProvider):
        return provider
    with _own_lock:
        if _own_provider is None:
            _own_provider = _own_tracer_provider()
        return _own_provider


def _own_tracer_provider() -> Any:
    """An SDK TracerProvider configured by the standard environment variables.

    `OTEL_TRACES_EXPORTER`: `otlp` (default; OTLP over HTTP/protobuf, `OTEL_EXPORTER_OTLP_*`),
    `console` (spans printed to stdout, to try things out) or `none` (spans are recorded, so
    exemplars and logs carry trace ids, but not exported); a comma-separated list is allowed.
    Resource from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, sampler from
    `OTEL_TRACES_SAMPLER`.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    provider = TracerProvider(resource=Resource.create())
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().replace(" ", "").split(",")
    for name in dict.fromkeys(names):
        exporter: SpanExporter
        if name == "none" or not name:
            continue
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter()
        else:
            if name != "otlp":
                logger.error(
                    "agentwatch: OTEL_TRACES_EXPORTER=%s is not supported (otlp, console or "
                    "none); exporting over OTLP/HTTP",
                    name,
                )
            protocol = os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            )
            if protocol != "http/protobuf":
                logger.warning(
                    "agentwatch: OTLP protocol %r is not supported; exporting with "
                    "http/protobuf (give agentwatch.configure() a TracerProvider for gRPC)",
                    protocol,
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _add_messages(span: trace.Span, event: Event, attributes: dict[str, Any]) -> None:
    """The call's captured (redacted) messages as the convention's details event."""
    messages = event.attributes.get("messages")
    output = gen_ai.output_messages(event.attributes.get("response"))
    if messages is None and not output:
        return
    details: dict[str, Any] = {gen_ai.OPERATION: attributes[gen_ai.OPERATION]}
    if gen_ai.PROVIDER in attributes:
        details[gen_ai.PROVIDER] = attributes[gen_ai.PROVIDER]
    if messages is not None:
        details[gen_ai.INPUT_MESSAGES] = gen_ai.to_json(gen_ai.input_messages(messages))
    if output:
        details[gen_ai.OUTPUT_MESSAGES] = gen_ai.to_json(output)
    span.add_event(
        gen_ai.INFERENCE_DETAILS_EVENT,
        details,
        timestamp=_ns(event.started_at + (event.duration or 0.0)),
    )


def _conversation_id(attributes: dict[str, Any]) -> str | None:
    value = attributes.get(gen_ai.CONVERSATION_ATTRIBUTE) if attributes else None
    if value is None or isinstance(value, dict | list):
        return None
    return repair_text(str(value))


def _repaired(text: str | None) -> str | None:
    return None if text is None else repair_text(text)


def _sampled_trace_id(span: trace.Span) -> str | None:
    """The span's trace id as 32 hex digits if the span is sampled (else an exemplar would
    point at a trace no backend has)."""
    span_context = span.get_span_context()
    if not span_context.is_valid or not span_context.trace_flags.sampled:
        return None
    return trace.format_trace_id(span_context.trace_id)


def _ns(seconds: float) -> int:
    """Unix seconds -> OpenTelemetry's nanoseconds."""
    return int(seconds * 1_000_000_000)

"""Tracing in a deployed process: configured by the environment only, spans exported over
OTLP/HTTP to a collector (here a small receiver that decodes the protobuf request), or handed
to the application's own TracerProvider when it has one.

Each case runs `tests/_otel_app.py` as a real process: OpenTelemetry's global state (the
TracerProvider is set once per process) and agentwatch's OTLP provider start clean there.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

APP = Path(__file__).with_name("_otel_app.py")


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: decodes each ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    receiver.requests.append(request)
                    receiver.paths.append(self.path)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def spans(self) -> list[tuple[dict[str, Any], str, Span]]:
        """(resource attributes, scope name, span) of every span received."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append((resource, scope_spans.scope.name, span))
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs}


def run_app(tmp_path: Path, endpoint: str, *args: str, timeout: float = 180) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTWATCH_", "OTEL_"))}
    env.update(
        AGENTWATCH_HOME=str(tmp_path),
        AGENTWATCH_STORE_URL=f"sqlite:///{tmp_path / 'telemetry.db'}",
        AGENTWATCH_OTEL="1",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_TIMEOUT="2",
        OTEL_SERVICE_NAME="checkout-service",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    done = subprocess.run(
        [sys.executable, str(APP), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_demo_spans_reach_an_otlp_http_collector(tmp_path: Path, receiver: Receiver) -> None:
    totals = json.loads(run_app(tmp_path, receiver.url, "demo", "12").strip().splitlines()[-1])
    assert totals["flushed"] is True
    received = receiver.spans()
    assert received and set(receiver.paths) == {"/v1/traces"}
    assert {resource["service.name"] for resource, _, _ in received} == {"checkout-service"}
    assert {scope for _, scope, _ in received} == {"agentwatch"}
    spans = [span for _, _, span in received]
    by_id = {span.span_id: span for span in spans}
    agents = [s for s in spans if s.name.startswith("invoke_agent ")]
    tools = [s for s in spans if s.name.startswith("execute_tool ")]
    calls = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    assert len(spans) == len(agents) + len(tools) + len(calls)
    assert len(agents) == totals["executions"]
    assert len(tools) == totals["tool_calls"]
    assert len(calls) == totals["llm_requests"]
    for span in agents + tools:
        assert span.kind == Span.SPAN_KIND_INTERNAL
    for span in calls:
        attrs = attributes(span.attributes)
        parent = by_id[span.parent_span_id]
        assert parent.name.startswith("invoke_agent ") and parent.trace_id == span.trace_id
        assert attrs["gen_ai.operation.name"] == "chat"
        assert span.name == f"chat {attrs['gen_ai.request.model']}"
        assert (
            attrs["agentwatch.execution_id"]
            == attributes(parent.attributes)["agentwatch.execution_id"]
        )
        assert "gen_ai.system" not in attrs and attrs["gen_ai.provider.name"]
        if span.status.code == Status.STATUS_CODE_ERROR:
            assert attrs["error.type"] == "RateLimitError"
        assert span.start_time_unix_nano >= parent.start_time_unix_nano - 50_000_000
    for span in tools:
        assert by_id[span.parent_span_id].name == "invoke_agent researcher"
    for span in (s for s in agents if s.name == "invoke_agent summarizer"):
        assert by_id[span.parent_span_id].name == "invoke_agent researcher"
    cost = sum(attributes(s.attributes).get("agentwatch.cost_usd", 0.0) for s in calls)
    assert cost > 0 and math.isclose(cost, totals["cost_usd"], rel_tol=1e-9)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_an_unreachable_collector_never_breaks_the_program_nor_its_records(
    tmp_path: Path,
) -> None:
    output = run_app(tmp_path, f"http://127.0.0.1:{_closed_port()}", "demo", "6")
    totals = json.loads(output.strip().splitlines()[-1])
    # Every run counted and every record committed to the store (flush() returned True),
    # while the exporter failed to connect in the background.
    assert totals["runs"] == 6 and totals["flushed"] is True
    assert totals["executions"] == totals["all_runs"] >= 6, "nested runs are runs too"


@pytest.mark.slow
def test_runs_join_the_applications_own_tracer_provider(tmp_path: Path, receiver: Receiver) -> None:
    lines = run_app(tmp_path, receiver.url, "app-provider").strip().splitlines()
    spans = {span["name"]: span for span in map(json.loads, lines)}
    assert set(spans) == {
        "POST /checkout",
        "invoke_agent checkout",
        "chat gpt-4o-mini",
        "SELECT cart",
    }
    request, agent = spans["POST /checkout"], spans["invoke_agent checkout"]
    assert agent["scope"] == "agentwatch"
    assert agent["parent_id"] == request["span_id"]
    assert spans["chat gpt-4o-mini"]["parent_id"] == agent["span_id"]
    assert spans["SELECT cart"]["parent_id"] == agent["span_id"]
    assert len({span["trace_id"] for span in spans.values()}) == 1
    assert receiver.requests == [], "with an application provider, agentwatch exports nothing"


@pytest.mark.slow
def test_the_console_exporter_prints_spans_for_a_first_look(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTWATCH_", "OTEL_"))}
    env.update(
        AGENTWATCH_HOME=str(tmp_path), AGENTWATCH_OTEL="true", OTEL_TRACES_EXPORTER="console"
    )
    code = "import agentwatch\nwith agentwatch.track('nightly-report'):\n    pass\n"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    span = json.loads(done.stdout)
    assert span["name"] == "invoke_agent nightly-report"
    assert span["attributes"]["gen_ai.agent.name"] == "nightly-report"

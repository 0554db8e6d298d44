"""Structured logs (`logs.py`): one JSON object per line, with the run and trace a line
belongs to, for agentwatch's own logger and, on request, the application's."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id
from prometheus_client import CollectorRegistry

import agentwatch
from _capture_fixtures import Captured, CollectingSink, captured, clean_environment
from agentwatch import runtime
from agentwatch.config import load_settings
from agentwatch.errors import ConfigError
from agentwatch.logs import ContextFilter, install_json_logging, use_log_format

__all__ = ["captured"]  # the fixture, imported for pytest


@pytest.fixture
def app_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A fresh application logger writing JSON lines into a buffer."""
    logger = logging.getLogger(f"shop.{os.urandom(4).hex()}")
    logger.propagate = False
    stream = io.StringIO()
    handler = install_json_logging(logger, stream=stream, level=logging.DEBUG)
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_with_the_run_it_belongs_to(
    app_logger: tuple[logging.Logger, io.StringIO], captured: Captured
) -> None:
    logger, stream = app_logger
    logger.info("outside any run")
    with agentwatch.track("checkout") as run:
        logger.warning("card declined for order %s", 42)
    outside, inside = lines(stream)
    assert outside["message"] == "outside any run" and outside["level"] == "INFO"
    assert not {"execution_id", "agent", "trace_id", "span_id"} & set(outside)
    assert inside["message"] == "card declined for order 42"
    assert inside["level"] == "WARNING" and inside["logger"] == logger.name
    assert inside["execution_id"] == run.id and inside["agent"] == "checkout"
    assert inside["timestamp"].endswith("+00:00")
    assert next(iter(inside)) == "timestamp"


def test_trace_and_span_ids_are_those_of_the_runs_span_when_tracing_is_on(
    app_logger: tuple[logging.Logger, io.StringIO], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_environment(monkeypatch, tmp_path)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime.configure(
        registry=CollectorRegistry(), sink=CollectingSink(), otel=True, tracer_provider=provider
    )
    logger, stream = app_logger
    try:

        @agentwatch.observe
        def researcher() -> None:
            logger.info("searching")

        researcher()
    finally:
        runtime.close()
    (span,) = exporter.get_finished_spans()
    (line,) = lines(stream)
    assert line["trace_id"] == format_trace_id(span.context.trace_id)
    assert line["span_id"] == format_span_id(span.context.span_id)
    assert line["agent"] == "researcher"


def test_hostile_messages_stay_one_parseable_line(
    app_logger: tuple[logging.Logger, io.StringIO], captured: Captured
) -> None:
    logger, stream = app_logger
    hostile = 'x"}\n{"level": "CRITICAL", "agent": "admin"}\r\n\u2028\x00 end'
    with agentwatch.track('agent"\nname'):
        logger.error(hostile)
    assert len(stream.getvalue().splitlines()) == 1
    (line,) = lines(stream)
    assert line["message"] == hostile and line["level"] == "ERROR"
    assert line["agent"] == 'agent"\nname'


def test_extra_fields_are_kept_and_explicit_context_wins(
    app_logger: tuple[logging.Logger, io.StringIO], captured: Captured
) -> None:
    logger, stream = app_logger
    with agentwatch.track("checkout"):
        logger.info("paid", extra={"order": 42, "agent": "billing"})
    (line,) = lines(stream)
    assert line["order"] == 42 and line["agent"] == "billing"


def test_exceptions_are_one_field_of_the_same_line(
    app_logger: tuple[logging.Logger, io.StringIO], captured: Captured
) -> None:
    logger, stream = app_logger
    try:
        raise ValueError("bad cart")
    except ValueError:
        logger.exception("failed")
    (line,) = lines(stream)
    assert "ValueError: bad cart" in line["exc_info"]


def test_installing_twice_keeps_one_handler() -> None:
    logger = logging.getLogger(f"twice.{os.urandom(4).hex()}")
    install_json_logging(logger, stream=io.StringIO())
    handler = install_json_logging(logger, stream=io.StringIO())
    assert logger.handlers == [handler]
    logger.removeHandler(handler)


def test_the_filter_works_with_any_formatter(captured: Captured) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert ContextFilter().filter(record)
    assert logging.Formatter("%(agent)s|%(execution_id)s").format(record) == "None|None"


def test_log_format_json_switches_agentwatchs_own_logger_and_back() -> None:
    own = logging.getLogger("agentwatch")
    try:
        use_log_format("json")
        assert own.propagate is False and len(own.handlers) == 1
        use_log_format("json")
        assert len(own.handlers) == 1
    finally:
        use_log_format("text")
    assert own.propagate is True and own.handlers == []


@pytest.mark.slow
def test_agentwatch_logs_are_json_lines_when_the_environment_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(
        AGENTWATCH_HOME=str(tmp_path),
        AGENTWATCH_LOG_FORMAT="json",
        AGENTWATCH_STORE_URL=f"sqlite:///{tmp_path / 't.db'}",
    )
    code = (
        "import agentwatch\n"
        "from agentwatch import runtime\n"
        "with agentwatch.track('nightly'):\n"
        "    runtime.get_runtime().internal_error('demo', ValueError('boom'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    (record,) = records
    assert record["logger"] == "agentwatch" and record["level"] == "WARNING"
    assert "contained an internal error in demo" in record["message"]
    assert record["agent"] == "nightly" and record["execution_id"].startswith("exec_")
    assert "ValueError: boom" in record["exc_info"]


@pytest.mark.parametrize("value", ["xml", "", "JSONL"])
def test_a_bad_log_format_is_one_clear_error(value: str) -> None:
    if value == "":
        assert load_settings(environ={"AGENTWATCH_LOG_FORMAT": value}).log_format == "text"
        return
    with pytest.raises(ConfigError, match="AGENTWATCH_LOG_FORMAT: expected text or json"):
        load_settings(environ={"AGENTWATCH_LOG_FORMAT": value})


def test_a_bad_log_format_on_the_command_line_exits_2_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from agentwatch.cli import cli

    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AGENTWATCH_LOG_FORMAT", "yaml")
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: AGENTWATCH_LOG_FORMAT: expected text or json, got 'yaml'"
    ]


@pytest.mark.slow
def test_agentwatch_serve_logs_json_lines(tmp_path: Path) -> None:
    import re
    import shutil

    import requests

    executable = shutil.which("agentwatch", path=str(Path(sys.executable).parent))
    assert executable is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(AGENTWATCH_HOME=str(tmp_path), AGENTWATCH_LOG_FORMAT="json")
    server = subprocess.Popen(
        [executable, "serve", "--port", "0", "--store", "postgresql://nobody@127.0.0.1:1/x"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", banner)
        assert match, banner
        requests.get(f"http://127.0.0.1:{match.group(1)}/metrics", timeout=30)
    finally:
        server.terminate()
        _, rest = server.communicate(timeout=30)
    records = [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert records, "an unreachable store is logged"
    assert all(r["logger"] == "agentwatch" for r in records)
    assert any(r["level"] == "WARNING" and "unavailable" in r["message"] for r in records)

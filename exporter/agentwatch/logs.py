"""Structured logs: one JSON object per line, carrying the run and trace a line belongs to.

`log_format: json` (`AGENTWATCH_LOG_FORMAT=json`) makes agentwatch's own logger
(`agentwatch`) write JSON lines to stderr. For the application's own logs:

- `ContextFilter` adds `execution_id`, `agent`, `trace_id` and `span_id` to every record that
  passes it, so any formatter can print them (`%(execution_id)s`);
- `install_json_logging()` puts a JSON handler with that filter on a logger (the root logger
  by default), the whole setup in one call.

The JSON comes from python-json-logger, a maintained formatter, not from string building.
`trace_id` / `span_id` are those of OpenTelemetry's current span: a traced run's span while
its code runs (`tracing.py`), or a span of the application's own. OpenTelemetry is never
imported here: without it (or outside spans) the ids are simply absent.

Example:
    >>> import logging, agentwatch.logs
    >>> agentwatch.logs.install_json_logging(level=logging.INFO)
    >>> logging.getLogger("shop").info("order placed")
    {"timestamp": "2026-11-29T10:00:00.123456+00:00", "level": "INFO", "logger": "shop",
     "message": "order placed", "execution_id": "exec_...", "agent": "checkout", ...}
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

from agentwatch import context

#: Record attributes `ContextFilter` sets (None when unknown; left out of the JSON then).
CONTEXT_FIELDS = ("execution_id", "agent", "trace_id", "span_id")
_AGENTWATCH_LOGGER = "agentwatch"
#: Marks handlers installed here, so installing twice replaces instead of duplicating.
_MARK = "_agentwatch_json_handler"


class ContextFilter(logging.Filter):
    """Adds the current run and trace to each record; never drops a record.

    Values the caller set explicitly (`logger.info(..., extra={"agent": "x"})`) are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        frame = context.current_frame()
        found: dict[str, str | None] = {
            "execution_id": None if frame is None else frame.execution.id,
            "agent": None if frame is None else frame.agent,
        }
        found["trace_id"], found["span_id"] = _current_span_ids()
        for name, value in found.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def _current_span_ids() -> tuple[str | None, str | None]:
    """Trace and span id of OpenTelemetry's current span, if OpenTelemetry is in use."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # not imported by anyone: there is no span to report
        return None, None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None, None
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)


def json_formatter() -> logging.Formatter:
    """A python-json-logger formatter: `timestamp` (ISO 8601, UTC), `level`, `logger`,
    `message`, the context fields when known, any `extra=` fields, and `exc_info` as text."""
    from pythonjsonlogger.json import JsonFormatter

    class _Formatter(JsonFormatter):
        def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
            for name in CONTEXT_FIELDS:
                if log_data.get(name) is None:
                    log_data.pop(name, None)
            timestamp = log_data.pop("timestamp", None)
            return {"timestamp": timestamp, **log_data}

    return _Formatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )


def install_json_logging(
    logger: logging.Logger | str | None = None,
    *,
    stream: IO[str] | None = None,
    level: int | str | None = None,
) -> logging.Handler:
    """Make `logger` (default: the root logger) write one JSON object per line.

    Adds a `StreamHandler` with the JSON formatter and a `ContextFilter`; a handler this
    function installed before on the same logger is replaced, not duplicated.

    Args:
        logger: a logger or its name; None is the root logger (all the application's logs).
        stream: where lines go (default: `sys.stderr`).
        level: level to set on the logger, if given.

    Returns:
        The handler, e.g. to remove it later.
    """
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    setattr(handler, _MARK, True)
    _remove_marked(target)
    target.addHandler(handler)
    if level is not None:
        target.setLevel(level)
    return handler


def use_log_format(log_format: str) -> None:
    """Apply the `log_format` setting to agentwatch's own logger.

    `json`: the `agentwatch` logger writes JSON lines to stderr and no longer propagates (so
    a line is not printed twice by the application's handlers). `text`: back to the default,
    records propagate to the application's logging configuration.
    """
    own = logging.getLogger(_AGENTWATCH_LOGGER)
    if log_format == "json":
        install_json_logging(own)
        own.propagate = False
    elif _remove_marked(own):
        own.propagate = True


def _remove_marked(target: logging.Logger) -> bool:
    removed = False
    for handler in list(target.handlers):
        if getattr(handler, _MARK, False):
            target.removeHandler(handler)
            removed = True
    return removed

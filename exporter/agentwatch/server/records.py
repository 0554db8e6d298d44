"""The JSON API's record shapes: one function per kind of row, used by every route.

`execution_record` is THE conversion of a stored execution to JSON for `/api/v1`: the shape
the CLI's `--json` and `monitor export` share (`agent`, `duration_seconds`, ISO-8601 UTC
times, `cost_usd`). When the store hands out typed rows with their own `to_record()`, this
is the one place to point at it. The legacy `/api/...` routes keep their old shape through
`legacy_execution` for one release.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

#: Keys of an execution record, in order (docs/api.md, docs/openapi.json).
EXECUTION_FIELDS: tuple[str, ...] = (
    "id",
    "agent",
    "parent_id",
    "kind",
    "status",
    "started_at",
    "ended_at",
    "duration_seconds",
    "error_type",
    "error_message",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "llm_calls",
    "tool_calls",
    "attributes",
    "arguments",
)

#: Keys of an event record, in order.
EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "seq",
    "kind",
    "name",
    "status",
    "started_at",
    "offset_seconds",
    "duration_seconds",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "time_to_first_token_seconds",
    "error_type",
    "error_message",
    "attributes",
)


def iso_utc(epoch: float | None) -> str | None:
    """ISO-8601 in UTC with an explicit offset, millisecond precision (the CLI's form)."""
    if epoch is None or not math.isfinite(epoch):
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither); containers are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def execution_record(row: Any) -> dict[str, Any]:
    """One stored execution in the shared record shape (keys: `EXECUTION_FIELDS`).

    Accepts a typed row with `to_record()` or the store's mapping.
    """
    to_record = getattr(row, "to_record", None)
    if callable(to_record):
        record: dict[str, Any] = to_record()
        return record
    metrics: Mapping[str, Any] = row.get("metrics") or {}
    cost = metrics.get("total_cost", row.get("cost_usd"))
    return {
        "id": row.get("id"),
        "agent": row.get("agent_name", row.get("agent")),
        "parent_id": row.get("parent_id"),
        "kind": row.get("kind"),
        "status": row.get("status"),
        "started_at": iso_utc(row.get("started_at")),
        "ended_at": iso_utc(row.get("ended_at")),
        "duration_seconds": _number(row.get("duration", row.get("duration_seconds"))),
        "error_type": row.get("error_type"),
        "error_message": row.get("error_message"),
        "cost_usd": _number(cost),
        "input_tokens": int(metrics.get("input_tokens", row.get("input_tokens")) or 0),
        "output_tokens": int(metrics.get("output_tokens", row.get("output_tokens")) or 0),
        "cached_tokens": int(metrics.get("cached_tokens", row.get("cached_tokens")) or 0),
        "reasoning_tokens": int(metrics.get("reasoning_tokens", row.get("reasoning_tokens")) or 0),
        "llm_calls": int(metrics.get("llm_calls", row.get("llm_calls")) or 0),
        "tool_calls": int(metrics.get("tool_calls", row.get("tool_calls")) or 0),
        "attributes": dict(row.get("attributes") or {}),
        "arguments": row.get("arguments"),
    }


def event_record(row: Any) -> dict[str, Any]:
    """One stored event (LLM or tool call) in the API's shape (keys: `EVENT_FIELDS`)."""
    to_record = getattr(row, "to_record", None)
    if callable(to_record):
        record: dict[str, Any] = to_record()
        return record
    return {
        "id": row.get("id"),
        "seq": row.get("seq"),
        "kind": row.get("kind"),
        "name": row.get("name"),
        "status": row.get("status"),
        "started_at": iso_utc(row.get("started_at")),
        "offset_seconds": _number(row.get("offset")),
        "duration_seconds": _number(row.get("duration")),
        "model": row.get("model"),
        "provider": row.get("provider"),
        "input_tokens": int(row.get("input_tokens") or 0),
        "output_tokens": int(row.get("output_tokens") or 0),
        "cached_tokens": int(row.get("cached_tokens") or 0),
        "reasoning_tokens": int(row.get("reasoning_tokens") or 0),
        "cost_usd": _number(row.get("cost_usd")),
        "time_to_first_token_seconds": _number(row.get("time_to_first_token")),
        "error_type": row.get("error_type"),
        "error_message": row.get("error_message"),
        "attributes": dict(row.get("attributes") or {}),
    }


def legacy_execution(row: Any) -> dict[str, Any]:
    """The pre-v1 shape of `/api/executions` (`agent_name`, epoch times, nested `metrics`).

    Deprecated with its routes; kept so existing clients work for one more release.
    """
    if isinstance(row, Mapping):
        return dict(row)
    record = execution_record(row)
    return {
        "id": record["id"],
        "agent_name": record["agent"],
        "parent_id": record["parent_id"],
        "kind": record["kind"],
        "status": record["status"],
        "started_at": _epoch(record["started_at"]),
        "ended_at": _epoch(record["ended_at"]),
        "duration": record["duration_seconds"],
        "error_type": record["error_type"],
        "error_message": record["error_message"],
        "error": record["error_message"],
        "arguments": record["arguments"],
        "attributes": record["attributes"],
        "metrics": {
            "total_cost": record["cost_usd"] or 0.0,
            "total_tokens": record["input_tokens"] + record["output_tokens"],
            "input_tokens": record["input_tokens"],
            "output_tokens": record["output_tokens"],
            "cached_tokens": record["cached_tokens"],
            "reasoning_tokens": record["reasoning_tokens"],
            "llm_calls": record["llm_calls"],
            "tool_calls": record["tool_calls"],
        },
    }


def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()

"""The OpenAPI 3 document of `agentwatch serve`, served at `/api/openapi.json`.

Written by hand next to the routes it describes (tests/test_api.py checks that every route is
documented and every documented path is a route, and validates the document). The copy in
docs/openapi.json is generated from here; regenerate it with

    python -m agentwatch.server.openapi > docs/openapi.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from agentwatch._version import __version__
from agentwatch.server.api import DEFAULT_PAGE, MAX_PAGE
from agentwatch.server.records import EVENT_FIELDS, EXECUTION_FIELDS


def _nullable(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "nullable": True, "description": description, **extra}


def _field(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


_TIME_NOTE = (
    "Unix seconds (`1764547200`), a duration counted back from now (`30m`, `1h`, `7d`), "
    "`today`, `yesterday`, `now`, or an ISO-8601 date or date-time (`2026-11-01`, "
    "`2026-11-01T09:30:00Z`); a date or date-time without an offset is read in the server's "
    "local time zone."
)

_EXECUTION = {
    "type": "object",
    "description": "One run, in the record shape shared with the CLI's --json and export.",
    "required": list(EXECUTION_FIELDS),
    "properties": {
        "id": _field("string", "Run ID."),
        "agent": _field("string", "Agent name given to @observe / track()."),
        "parent_id": _nullable("string", "The run this one is nested in."),
        "kind": _field("string", "`agent`, or `tool` for functions observed as tools."),
        "status": _field("string", "Outcome.", enum=["completed", "failed"]),
        "started_at": _field("string", "Start, ISO-8601 UTC with offset.", format="date-time"),
        "ended_at": _nullable("string", "End, ISO-8601 UTC with offset.", format="date-time"),
        "duration_seconds": _nullable("number", "Wall-clock duration in seconds."),
        "error_type": _nullable("string", "Exception class of a failed run."),
        "error_message": _nullable("string", "Exception message (redacted)."),
        "cost_usd": _nullable(
            "number", "Known spend of the run's LLM calls; null when none of them was priced."
        ),
        "unpriced_calls": _field("integer", "LLM calls whose price is unknown."),
        "input_tokens": _field("integer", "Input (prompt) tokens."),
        "output_tokens": _field("integer", "Output (completion) tokens."),
        "cached_tokens": _field("integer", "Cached input tokens."),
        "reasoning_tokens": _field("integer", "Reasoning tokens."),
        "llm_calls": _field("integer", "LLM calls made by the run itself."),
        "tool_calls": _field("integer", "Tool calls made by the run itself."),
        "attributes": {
            "type": "object",
            "description": "Attributes given to track() / @observe.",
            "additionalProperties": True,
        },
        "attribution": {
            "type": "object",
            "description": "The run's value of each declared attribution dimension (team, "
            "customer, ...), its own or inherited from the run it is nested in.",
            "additionalProperties": {"type": "string"},
        },
        "arguments": {
            "nullable": True,
            "description": "Captured arguments (only with capture_arguments).",
        },
    },
}

_EVENT = {
    "type": "object",
    "description": "One LLM or tool call of a run, in timeline order.",
    "required": list(EVENT_FIELDS),
    "properties": {
        "id": _field("integer", "Event ID."),
        "execution_id": _nullable("string", "The run it belongs to (null: outside any run)."),
        "agent": _field("string", "Agent label of the call."),
        "seq": _field("integer", "Position in the run's timeline."),
        "kind": _field("string", "`llm_call` or `tool_call`."),
        "name": _nullable("string", "Call or tool name."),
        "status": _nullable("string", "`success` or `error`."),
        "started_at": _nullable("string", "Start, ISO-8601 UTC.", format="date-time"),
        "offset_seconds": _nullable("number", "Seconds after the run started."),
        "duration_seconds": _nullable("number", "Duration in seconds."),
        "model": _nullable("string", "Model of an LLM call."),
        "provider": _nullable("string", "Provider of an LLM call."),
        "input_tokens": _field("integer", "Input tokens."),
        "output_tokens": _field("integer", "Output tokens."),
        "cached_tokens": _field("integer", "Cached input tokens."),
        "reasoning_tokens": _field("integer", "Reasoning tokens."),
        "cost_usd": _nullable("number", "Cost in USD; null = unpriced."),
        "time_to_first_token_seconds": _nullable("number", "Streaming: time to first token."),
        "error_type": _nullable("string", "Exception class of a failed call."),
        "error_message": _nullable("string", "Exception message (redacted)."),
        "attributes": {"type": "object", "additionalProperties": True},
        "attribution": {
            "type": "object",
            "description": "The call's attribution values: its run's, or its own litellm "
            "metadata and user.",
            "additionalProperties": {"type": "string"},
        },
    },
}

_STATS = {
    "type": "object",
    "description": (
        "Summary over the filter: runs (agent executions) by their agent and start time, and "
        "every LLM and tool call by its own agent label, as the metrics count them. New keys "
        "may be added."
    ),
    "properties": {
        "runs": _field("integer", "Runs (nested ones included)."),
        "top_level_runs": _field("integer", "Runs not nested in another execution."),
        "nested_runs": _field("integer", "Runs started inside another execution."),
        "completed_runs": _field("integer", "Completed runs."),
        "failed_runs": _field("integer", "Failed runs."),
        "success_rate": _field("number", "completed_runs / runs (0 when none)."),
        "avg_duration_seconds": _nullable("number", "Mean run duration."),
        "p50_duration_seconds": _nullable("number", "Median run duration."),
        "p95_duration_seconds": _nullable("number", "95th percentile run duration."),
        "p99_duration_seconds": _nullable("number", "99th percentile run duration."),
        "llm_calls": _field("integer", "LLM calls."),
        "unpriced_calls": _field("integer", "LLM calls whose price is unknown."),
        "tool_calls": _field("integer", "Tool calls."),
        "input_tokens": _field("integer", "Input tokens."),
        "output_tokens": _field("integer", "Output tokens."),
        "total_tokens": _field("integer", "Input plus output tokens."),
        "cost_usd": _nullable("number", "Known spend, USD; null when no call was priced."),
    },
}

_BUDGET = {
    "type": "object",
    "required": ["name", "period", "limit_usd", "spend_usd", "period_start", "period_end"],
    "properties": {
        "name": _field("string", "Budget name from the config file."),
        "period": _field("string", "Calendar period.", enum=["day", "week", "month"]),
        "timezone": _field("string", "IANA zone the period is counted in."),
        "scope": {
            "type": "object",
            "properties": {
                "agent": _nullable("string", "Only this agent's spend."),
                "model": _nullable("string", "Only this model's spend."),
                "provider": _nullable("string", "Only this provider's spend."),
            },
            "additionalProperties": _field(
                "string", "Only the spend of calls with this attribution value (team, ...)."
            ),
        },
        "enforce": _field("boolean", "New LLM calls in scope are refused once it is spent."),
        "fail_closed": _field(
            "boolean", "Calls in scope are refused while the spend cannot be read."
        ),
        "limit_usd": _field("number", "Limit for the period, USD."),
        "spend_usd": _field("number", "Exact spend so far in the period, USD."),
        "remaining_usd": _field("number", "Limit minus spend, never below 0, USD."),
        "used_ratio": _nullable("number", "spend / limit."),
        "projected_exhaustion": _field(
            "string",
            "When the spend reaches the limit at the period's average rate so far, ISO-8601 "
            "UTC: now once reached, the period end when not projected inside the period.",
            format="date-time",
        ),
        "period_start": _field("string", "Period start, ISO-8601 UTC.", format="date-time"),
        "period_end": _field("string", "Period end, ISO-8601 UTC.", format="date-time"),
    },
}

_AGENT = {
    "type": "object",
    "properties": {
        "agent": _field("string", "Agent name."),
        "runs": _field("integer", "Runs."),
        "completed_runs": _field("integer", "Completed runs."),
        "failed_runs": _field("integer", "Failed runs."),
        "last_started_at": _nullable("string", "Latest run start, ISO-8601.", format="date-time"),
        "llm_calls": _field("integer", "LLM calls billed to the agent."),
        "unpriced_calls": _field("integer", "LLM calls whose price is unknown."),
        "tool_calls": _field("integer", "Tool calls."),
        "input_tokens": _field("integer", "Input tokens."),
        "output_tokens": _field("integer", "Output tokens."),
        "cost_usd": _nullable("number", "Known spend, USD; null when no call was priced."),
    },
}

_MODEL = {
    "type": "object",
    "properties": {
        "model": _nullable("string", "Model name."),
        "provider": _nullable("string", "Provider."),
        "calls": _field("integer", "LLM calls."),
        "unpriced_calls": _field("integer", "LLM calls whose price is unknown."),
        "tokens": _field("integer", "Input plus output tokens."),
        "cost_usd": _nullable("number", "Known spend, USD; null when no call was priced."),
    },
}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": _field("string", "One line saying what is wrong.")},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_SINCE = _query("since", f"Only rows started at or after this time. {_TIME_NOTE}")
_UNTIL = _query("until", f"Only rows started before this time (exclusive). {_TIME_NOTE}")
_AGENT_Q = _query("agent", "Only this agent.")
_ATTR_Q = _query(
    "attr",
    "Only runs (and calls) attributed to this value of an attribution dimension, as "
    "DIMENSION=VALUE (`team=search`); repeat it to require several.",
)
_LIMIT = _query(
    "limit",
    f"Page size (default {DEFAULT_PAGE}, at most {MAX_PAGE}).",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
)

_ERRORS = {
    "400": _json(_ref("Error"), "A bad parameter (the message says which)."),
    "401": _text("Credentials missing or wrong (when the web config sets basic_auth_users)."),
    "503": _json(_ref("Error"), "The store is unavailable, or the server is busy."),
}


def _get(
    summary: str,
    ok: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    *,
    deprecated: bool = False,
    open_route: bool = False,
    tag: str = "api",
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "parameters": parameters or [],
        "responses": {"200": ok} if open_route else {"200": ok, **_ERRORS},
    }
    if deprecated:
        operation["deprecated"] = True
        operation["description"] = (
            "Deprecated: answers in the pre-v1 shape with a `Deprecation` header and a `Link` "
            "to its successor; removed in the next release."
        )
    if open_route:
        operation["security"] = []
    return {"get": operation}


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document (a fresh dict each call)."""
    page = {
        "type": "object",
        "required": ["executions", "next_cursor"],
        "properties": {
            "executions": {"type": "array", "items": _ref("Execution")},
            "next_cursor": _nullable(
                "string", "Pass as `cursor` for the next page; null on the last page."
            ),
        },
    }
    detail = {
        "allOf": [
            _ref("Execution"),
            {
                "type": "object",
                "required": ["events", "child_ids"],
                "properties": {
                    "events": {"type": "array", "items": _ref("Event")},
                    "child_ids": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "IDs of the runs nested in this one.",
                    },
                },
            },
        ]
    }
    execution_id = {
        "name": "execution_id",
        "in": "path",
        "required": True,
        "description": "Run ID.",
        "schema": {"type": "string"},
    }
    legacy_object = {"type": "object", "additionalProperties": True}
    paths: dict[str, Any] = {
        "/": _get("Version and routes, as text.", _text("The index."), tag="server"),
        "/metrics": _get(
            "Prometheus exposition of the store's rollups and budgets.",
            _text("Prometheus text format, or OpenMetrics when the Accept header asks for it."),
            tag="server",
        ),
        "/healthz": _get(
            "The process is up (no credentials needed; says nothing else).",
            _text("`ok`"),
            open_route=True,
            tag="server",
        ),
        "/readyz": _get(
            "The store answers (no credentials needed; 503 `not ready` otherwise).",
            _text("`ready`"),
            open_route=True,
            tag="server",
        ),
        "/api/openapi.json": _get(
            "This document.", _json({"type": "object"}, "OpenAPI 3 document."), tag="server"
        ),
        "/api/v1/executions": _get(
            "Runs, newest first, one bounded page at a time.",
            _json(page, "A page of runs."),
            [
                _AGENT_Q,
                _query(
                    "status",
                    "Only this outcome.",
                    {"type": "string", "enum": ["completed", "failed"]},
                ),
                _SINCE,
                _UNTIL,
                _LIMIT,
                _query("cursor", "The `next_cursor` of the previous page."),
                _ATTR_Q,
            ],
        ),
        "/api/v1/executions/{execution_id}": {
            "get": {
                **_get("One run with its events.", _json(detail, "The run."))["get"],
                "parameters": [execution_id],
                "responses": {
                    "200": _json(detail, "The run."),
                    "404": _json(_ref("Error"), "No run with this ID."),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/stats": _get(
            "Summary of runs: counts, success rate, duration percentiles, totals.",
            _json(_ref("Stats"), "The summary."),
            [_AGENT_Q, _SINCE, _UNTIL, _ATTR_Q],
        ),
        "/api/v1/budgets": _get(
            "Every configured budget with its spend in the current period.",
            _json(
                {
                    "type": "object",
                    "properties": {"budgets": {"type": "array", "items": _ref("Budget")}},
                },
                "Budgets.",
            ),
        ),
        "/api/v1/agents": _get(
            "Agents with their run counts and spend, highest spend first.",
            _json(
                {
                    "type": "object",
                    "properties": {
                        "agents": {"type": "array", "items": _ref("Agent")},
                        "truncated": {"type": "boolean"},
                    },
                },
                "Agents.",
            ),
            [_SINCE, _UNTIL, _LIMIT],
        ),
        "/api/v1/models": _get(
            "Models and providers with their calls, tokens and spend, highest spend first.",
            _json(
                {
                    "type": "object",
                    "properties": {
                        "models": {"type": "array", "items": _ref("Model")},
                        "truncated": {"type": "boolean"},
                    },
                },
                "Models.",
            ),
            [_AGENT_Q, _SINCE, _UNTIL, _LIMIT],
        ),
        "/api/executions": _get(
            "Deprecated: use /api/v1/executions.",
            _json(legacy_object, "Runs in the pre-v1 shape."),
            [_AGENT_Q, _query("status", "Only this outcome."), _SINCE, _UNTIL, _LIMIT],
            deprecated=True,
            tag="deprecated",
        ),
        "/api/executions/{execution_id}": {
            "get": {
                **_get(
                    "Deprecated: use /api/v1/executions/{execution_id}.",
                    _json(legacy_object, "The run in the pre-v1 shape."),
                    deprecated=True,
                    tag="deprecated",
                )["get"],
                "parameters": [execution_id],
            }
        },
        "/api/stats": _get(
            "Deprecated: use /api/v1/stats.",
            _json(legacy_object, "The summary."),
            [_AGENT_Q, _SINCE, _UNTIL],
            deprecated=True,
            tag="deprecated",
        ),
        "/api/budgets": _get(
            "Deprecated: use /api/v1/budgets (times here are Unix seconds).",
            _json(legacy_object, "Budgets."),
            deprecated=True,
            tag="deprecated",
        ),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "agentwatch serve",
            "version": __version__,
            "description": (
                "Prometheus metrics and a JSON API over the agentwatch store. Every route but "
                "/healthz and /readyz takes the credentials of the web configuration file "
                "(--web.config.file) when it sets basic_auth_users. See docs/api.md."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:9747"}],
        "security": [{}, {"basicAuth": []}],
        "tags": [
            {"name": "api", "description": "The versioned JSON API."},
            {"name": "server", "description": "Metrics, health and this document."},
            {"name": "deprecated", "description": "Pre-v1 routes, removed next release."},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "Execution": _EXECUTION,
                "Event": _EVENT,
                "Stats": _STATS,
                "Budget": _BUDGET,
                "Agent": _AGENT,
                "Model": _MODEL,
                "Error": _ERROR,
            },
        },
    }


def render() -> str:
    """The document as committed in docs/openapi.json (sorted keys, two-space indent)."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # pragma: no cover - `python -m agentwatch.server.openapi`
    sys.stdout.write(render())

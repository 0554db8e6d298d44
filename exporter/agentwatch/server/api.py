"""The JSON API: `/api/v1/...` (documented in docs/api.md and docs/openapi.json).

Every page is bounded: at most `MAX_PAGE` executions, fetched with a keyset cursor (the
cost of a page does not grow with its depth), so no client can make `serve` build a 15 MB
answer. Each route reads the store in a worker thread on the API lane (its own connection
and thread limiter), so API traffic never delays a scrape. Query parameters are validated
here, once: a bad value is a 400 with a one-line reason, an unknown parameter too (a typo
such as `agnet=` must not silently return everything).

The pre-v1 routes (`/api/executions`, `/api/executions/{id}`, `/api/stats`, `/api/budgets`)
keep answering in their old shape for one release, with a `Deprecation` header and a `Link`
to their successor.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentwatch import contract
from agentwatch.budgets import BudgetStatus, evaluate_budgets
from agentwatch.config import Budget
from agentwatch.server.records import execution_record, json_safe
from agentwatch.server.render import Lane, json_response
from agentwatch.store.base import Store
from agentwatch.store.rows import ATTRIBUTE_NAME, ExecutionFilter, iso_utc

DEFAULT_PAGE = 100
MAX_PAGE = 1000
#: When the old routes were deprecated (RFC 9745 `Deprecation: @<epoch>`): 2026-12-01 UTC.
DEPRECATED_AT = 1796083200

_NUMBER = re.compile(r"^[+-]?\d{1,12}(?:\.\d+)?$")


class QueryError(ValueError):
    """A bad query-string parameter: answered with 400 and a one-line reason."""


@dataclass(frozen=True)
class ApiContext:
    """What the API routes need: the store lane, budgets and a clock."""

    lane: Lane
    budgets: tuple[Budget, ...] = ()
    clock: Callable[[], float] = time.time


# -- parameters ------------------------------------------------------------------------------
def _params(request: Request, allowed: Sequence[str]) -> dict[str, str]:
    """The last value of each parameter; 400 for parameters this route does not know."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r} (accepted: {', '.join(allowed)})")
    return {k: request.query_params.getlist(k)[-1] for k in request.query_params}


def parse_time_param(name: str, text: str, now: float) -> float:
    """A point in time as the CLI reads it: Unix seconds, `1h` (ago), `today`, ISO-8601."""
    from agentwatch.cli._time import parse_time  # the CLI's parser: one rule everywhere

    if _NUMBER.match(text.strip()):
        value = float(text)
    else:
        try:
            value = parse_time(text, now=now)
        except (ValueError, OverflowError) as exc:
            raise QueryError(f"{name}: {exc}") from None
    if not math.isfinite(value) or not 0 <= value < 1e11:
        raise QueryError(f"{name}: {text!r} is not a time this API can use")
    return value


def _window(params: Mapping[str, str], now: float) -> tuple[float | None, float | None]:
    since = parse_time_param("since", params["since"], now) if "since" in params else None
    until = parse_time_param("until", params["until"], now) if "until" in params else None
    if since is not None and until is not None and since >= until:
        raise QueryError("since must be earlier than until")
    return since, until


def _limit(params: Mapping[str, str], default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    raw = params.get("limit")
    if raw is None:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise QueryError("limit must be an integer") from None
    if not 1 <= number <= maximum:
        raise QueryError(f"limit must be between 1 and {maximum}")
    return number


def _attributes(request: Request) -> tuple[tuple[str, str], ...]:
    """Every `attr=DIMENSION=VALUE` parameter (repeatable: all must match), sorted."""
    pairs: dict[str, str] = {}
    for item in request.query_params.getlist("attr"):
        name, sep, value = item.partition("=")
        if not sep or not ATTRIBUTE_NAME.match(name) or not value:
            raise QueryError(f"attr must be DIMENSION=VALUE (e.g. team=search), got {item!r}")
        pairs[name] = value
    return tuple(sorted(pairs.items()))


def _status(params: Mapping[str, str]) -> str | None:
    status = params.get("status")
    if status is not None and status not in contract.EXECUTION_STATUSES:
        raise QueryError(f"status must be one of {', '.join(contract.EXECUTION_STATUSES)}")
    return status


def encode_cursor(started_at: float, execution_id: str) -> str:
    """An opaque cursor for the page after the execution `(started_at, id)`."""
    raw = json.dumps([started_at, execution_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    """The `(started_at, id)` a cursor stands for. Raises QueryError if it was not ours."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        started_at, execution_id = json.loads(raw)
        if not isinstance(execution_id, str) or isinstance(started_at, bool):
            raise ValueError
        value = float(started_at)
        if not math.isfinite(value):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise QueryError("cursor is not one this API returned") from None
    return value, execution_id


# -- v1 --------------------------------------------------------------------------------------
def _executions_page(ctx: ApiContext, request: Request) -> Callable[[Store], Any]:
    params = _params(request, ("agent", "status", "since", "until", "limit", "cursor", "attr"))
    since, until = _window(params, ctx.clock())
    status = _status(params)
    limit = _limit(params)
    before = decode_cursor(params["cursor"]) if "cursor" in params else None
    agent = params.get("agent")
    attributes = _attributes(request)

    def read(store: Store) -> dict[str, Any]:
        flt = ExecutionFilter(
            agent=agent, status=status, since=since, until=until, attributes=attributes
        )
        rows = store.executions(flt, limit=limit + 1, before=before)
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit and page:
            next_cursor = encode_cursor(page[-1].started_at, page[-1].id)
        return {"executions": [execution_record(r) for r in page], "next_cursor": next_cursor}

    return read


def _execution_detail(execution_id: str) -> Callable[[Store], Any]:
    def read(store: Store) -> dict[str, Any] | None:
        detail = store.execution(execution_id)
        return None if detail is None else detail.to_record()

    return read


def _stats(ctx: ApiContext, request: Request) -> Callable[[Store], Any]:
    params = _params(request, ("agent", "since", "until", "attr"))
    since, until = _window(params, ctx.clock())
    agent = params.get("agent")
    attributes = dict(_attributes(request)) or None
    return lambda store: store.summary(
        agent=agent, since=since, until=until, attributes=attributes
    ).to_record()


def _budget_json(status: BudgetStatus, *, iso: bool) -> dict[str, Any]:
    budget = status.budget
    start: Any = iso_utc(status.period_start) if iso else status.period_start
    end: Any = iso_utc(status.period_end) if iso else status.period_end
    exhaustion = status.projected_exhaustion
    return {
        "name": budget.name,
        "period": budget.period,
        "timezone": budget.timezone,
        "scope": {
            "agent": budget.agent,
            "model": budget.model,
            "provider": budget.provider,
            **dict(budget.attributes),
        },
        "enforce": budget.enforce,
        "fail_closed": budget.fail_closed,
        "limit_usd": budget.limit_usd,
        "spend_usd": status.spend_usd,
        "remaining_usd": status.remaining_usd,
        "used_ratio": status.used_ratio,
        "projected_exhaustion": iso_utc(exhaustion) if iso else exhaustion,
        "period_start": start,
        "period_end": end,
    }


def _budgets(ctx: ApiContext, *, iso: bool) -> Callable[[Store], Any]:
    now = ctx.clock()
    return lambda store: {
        "budgets": [_budget_json(s, iso=iso) for s in evaluate_budgets(store, ctx.budgets, now)]
    }


def _agents(ctx: ApiContext, request: Request) -> Callable[[Store], Any]:
    params = _params(request, ("since", "until", "limit"))
    since, until = _window(params, ctx.clock())
    limit = _limit(params)

    def read(store: Store) -> dict[str, Any]:
        rows = store.agents(since=since, until=until, limit=limit + 1)
        return {"agents": [r.to_record() for r in rows[:limit]], "truncated": len(rows) > limit}

    return read


def _models(ctx: ApiContext, request: Request) -> Callable[[Store], Any]:
    params = _params(request, ("agent", "since", "until", "limit"))
    since, until = _window(params, ctx.clock())
    limit = _limit(params)
    agent = params.get("agent")

    def read(store: Store) -> dict[str, Any]:
        rows = store.costs(["model", "provider"], since=since, until=until, agent=agent)
        models = [r.to_record() for r in rows[:limit]]
        return {"models": models, "truncated": len(rows) > limit}

    return read


# -- legacy ----------------------------------------------------------------------------------
def _legacy_executions(ctx: ApiContext, request: Request) -> Callable[[Store], Any]:
    params = {k: request.query_params.getlist(k)[-1] for k in request.query_params}
    since, until = _window(params, ctx.clock())
    status = _status(params)
    limit = _limit(params)
    agent = params.get("agent")

    def read(store: Store) -> dict[str, Any]:
        rows = store.get_executions(
            agent_name=agent, status=status, since=since, until=until, limit=limit
        )
        return {"executions": rows}

    return read


def _legacy_stats(ctx: ApiContext, request: Request) -> Callable[[Store], Any]:
    params = {k: request.query_params.getlist(k)[-1] for k in request.query_params}
    since, until = _window(params, ctx.clock())
    agent = params.get("agent")
    return lambda store: store.get_summary_stats(agent_name=agent, since=since, until=until)


# -- routes ----------------------------------------------------------------------------------
def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    return Response(body, status, headers=dict(headers or {}), media_type="application/json")


def _deprecated(successor: str) -> dict[str, str]:
    return {"Deprecation": f"@{DEPRECATED_AT}", "Link": f'<{successor}>; rel="successor-version"'}


def api_routes(ctx: ApiContext) -> list[Route]:
    """The `/api/v1` routes and the deprecated `/api` ones."""

    def endpoint(
        build: Callable[[Request], Callable[[Store], Any]],
        headers: Mapping[str, str] | None = None,
    ) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            try:
                action = build(request)
            except QueryError as exc:
                return _error(400, str(exc), headers)
            result = await ctx.lane.read(request, action)
            if isinstance(result, Response):  # the store failed: 503 already built
                result.headers.update(headers or {})
                return result
            if result is None:
                return _error(404, "no such execution", headers)
            return await json_response(request, json_safe(result), headers, lane=ctx.lane)

        return handle

    def detail(request: Request) -> Callable[[Store], Any]:
        return _execution_detail(request.path_params["execution_id"])

    def legacy_detail(request: Request) -> Callable[[Store], Any]:
        execution_id = request.path_params["execution_id"]

        def read(store: Store) -> Any:
            return store.get_execution(execution_id)

        return read

    def budgets_v1(request: Request) -> Callable[[Store], Any]:
        _params(request, ())
        return _budgets(ctx, iso=True)

    v1 = "/api/v1"
    return [
        Route(f"{v1}/executions", endpoint(lambda r: _executions_page(ctx, r))),
        Route(f"{v1}/executions/{{execution_id}}", endpoint(detail)),
        Route(f"{v1}/stats", endpoint(lambda r: _stats(ctx, r))),
        Route(f"{v1}/budgets", endpoint(budgets_v1)),
        Route(f"{v1}/agents", endpoint(lambda r: _agents(ctx, r))),
        Route(f"{v1}/models", endpoint(lambda r: _models(ctx, r))),
        Route(
            "/api/executions",
            endpoint(lambda r: _legacy_executions(ctx, r), _deprecated(f"{v1}/executions")),
        ),
        Route(
            "/api/executions/{execution_id}",
            endpoint(legacy_detail, _deprecated(f"{v1}/executions/{{execution_id}}")),
        ),
        Route("/api/stats", endpoint(lambda r: _legacy_stats(ctx, r), _deprecated(f"{v1}/stats"))),
        Route(
            "/api/budgets",
            endpoint(lambda r: _budgets(ctx, iso=False), _deprecated(f"{v1}/budgets")),
        ),
    ]

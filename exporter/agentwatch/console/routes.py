"""The console's Starlette routes: parse the query, read the store on the API lane, render.

Rendering (Jinja2, autoescaped) runs in the lane's worker thread with the store read, so the
event loop only moves bytes. Every response carries a strict Content-Security-Policy: no
script at all, styles only from `/ui/static/`, no framing. No route changes state.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from agentwatch import contract
from agentwatch.config import Budget
from agentwatch.console import fmt, views
from agentwatch.console.runbooks import runbooks_html
from agentwatch.ids import short_id
from agentwatch.server.api import QueryError, decode_cursor, encode_cursor, parse_time_param
from agentwatch.server.render import Lane
from agentwatch.store.base import Store
from agentwatch.store.rows import RUN_SORTS, RunSearch

#: Every console response's security headers.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'none'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: The runs list's page size.
PAGE = 50
#: Default window of the overview and the agent and model pages.
DEFAULT_SINCE = "24h"
RUNS_PARAMS = (
    "agent",
    "status",
    "model",
    "since",
    "until",
    "error_type",
    "q",
    "min_cost",
    "min_duration",
    "sort",
    "cursor",
)


@dataclass(frozen=True)
class ConsoleContext:
    """What the console needs: the store lane, budgets, a clock and the public base URL."""

    lane: Lane
    budgets: tuple[Budget, ...] = ()
    clock: Callable[[], float] = time.time
    external_url: str | None = None

    @property
    def prefix(self) -> str:
        """The path of the external URL (links start with it), e.g. `/agentwatch` or ``."""
        if not self.external_url:
            return ""
        rest = self.external_url.split("://", 1)[-1]
        path = rest[rest.find("/") :] if "/" in rest else ""
        return path.rstrip("/")


@functools.cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("agentwatch.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=fmt.money,
        seconds=fmt.seconds,
        percent=fmt.percent,
        when=fmt.when,
        number=fmt.number,
        q=lambda v: quote(str(v), safe=""),
        short_id=lambda v: short_id(str(v)),
    )
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    env.globals["runs_query"] = fmt.query
    return env


@functools.cache
def _stylesheet() -> bytes:
    return resources.files("agentwatch.console").joinpath("static/console.css").read_bytes()


def _number(params: Mapping[str, str], name: str) -> float | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise QueryError(f"{name} must be a number") from None
    if not math.isfinite(value) or value < 0:
        raise QueryError(f"{name} must be a non-negative number")
    return value


def _window(
    params: Mapping[str, str], now: float, default: str | None
) -> tuple[float | None, float | None]:
    since_text = params.get("since") or default
    since = parse_time_param("since", since_text, now) if since_text else None
    until = parse_time_param("until", params["until"], now) if params.get("until") else None
    if since is not None and until is not None and since >= until:
        raise QueryError("since must be earlier than until")
    return since, until


def _params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r} (accepted: {', '.join(allowed)})")
    return {k: request.query_params.getlist(k)[-1] for k in request.query_params}


def parse_runs_query(params: Mapping[str, str], now: float) -> tuple[RunSearch, Any]:
    """The runs list's filter and cursor from its query string. Raises QueryError."""
    since, until = _window(params, now, None)
    status = params.get("status") or None
    if status is not None and status not in contract.EXECUTION_STATUSES:
        raise QueryError(f"status must be one of {', '.join(contract.EXECUTION_STATUSES)}")
    sort = params.get("sort") or "started"
    if sort not in RUN_SORTS:
        raise QueryError(f"sort must be one of {', '.join(RUN_SORTS)}")
    search = RunSearch(
        agent=params.get("agent") or None,
        status=status,
        since=since,
        until=until,
        model=params.get("model") or None,
        error_type=params.get("error_type") or None,
        text=(params.get("q") or "").strip()[:200] or None,
        min_cost=_number(params, "min_cost"),
        min_duration=_number(params, "min_duration"),
        sort=sort,
    )
    cursor = decode_cursor(params["cursor"]) if params.get("cursor") else None
    return search, cursor


def console_routes(ctx: ConsoleContext) -> list[Route]:
    """The `/ui/...` routes."""
    prefix = ctx.prefix

    def page(template: str, status: int = 200, **values: Any) -> tuple[int, str]:
        body = _environment().get_template(template).render(ui=f"{prefix}/ui", **values)
        return status, body

    def html(status: int, body: str) -> Response:
        return HTMLResponse(body, status, headers=SECURITY_HEADERS)

    async def respond(request: Request, build: Callable[[Store], tuple[int, str]]) -> Response:
        result = await ctx.lane.read(request, build)
        if isinstance(result, Response):  # busy or store unavailable
            status = result.status_code
            _, body = await ctx.lane.run(
                lambda: page("error.html", message="The store is unavailable or busy; retry.")
            )
            return html(status, body)
        return html(*result)

    async def bad_request(message: str) -> Response:
        _, body = await ctx.lane.run(lambda: page("error.html", message=message))
        return html(400, body)

    async def overview(request: Request) -> Response:
        now = ctx.clock()
        try:
            params = _params(request, ("since", "until"))
            since, until = _window(params, now, DEFAULT_SINCE)
        except QueryError as exc:
            return await bad_request(str(exc))
        assert since is not None
        window = views.Window(since, until if until is not None else now)
        midnight = (
            datetime.fromtimestamp(now, UTC)
            .replace(hour=0, minute=0, second=0, microsecond=0)
            .timestamp()
        )

        def build(store: Store) -> tuple[int, str]:
            data = views.overview(store, window, ctx.budgets, now, midnight)
            return page("overview.html", window=window, today=midnight, now=now, **data)

        return await respond(request, build)

    async def runs(request: Request) -> Response:
        try:
            params = _params(request, RUNS_PARAMS)
            search, cursor = parse_runs_query(params, ctx.clock())
        except (QueryError, ValueError) as exc:
            return await bad_request(str(exc))

        def build(store: Store) -> tuple[int, str]:
            rows = store.search_runs(search, limit=PAGE + 1, after=cursor)
            shown = rows[:PAGE]
            next_query = None
            if len(rows) > PAGE and shown:
                last = shown[-1]
                value = {
                    "started": last.started_at,
                    "duration": -1 if last.duration is None else last.duration,
                    "cost": -1 if last.cost_usd is None else last.cost_usd,
                }[search.sort]
                kept = {k: v for k, v in params.items() if k != "cursor"}
                next_query = fmt.query(**kept, cursor=encode_cursor(value, last.id))
            filters = {k: v for k, v in params.items() if k not in ("cursor", "sort")}
            return page(
                "runs.html",
                runs=shown,
                params=params,
                filters=filters,
                next_query=next_query,
                search=search,
                sorts=RUN_SORTS,
                statuses=contract.EXECUTION_STATUSES,
            )

        return await respond(request, build)

    async def run(request: Request) -> Response:
        wanted = request.path_params["execution_id"]
        if request.query_params:
            return await bad_request("this page takes no parameters")

        def build(store: Store) -> tuple[int, str] | str:
            data = views.run_page(store, wanted)
            if data is not None:
                return page("run.html", **data)
            matches = store.ids_starting_with(wanted, limit=11) if len(wanted) >= 4 else []
            if len(matches) == 1:
                return matches[0]
            return page(
                "not_found.html", 404, wanted=wanted, matches=matches[:10], more=len(matches) > 10
            )

        result = await ctx.lane.read(request, build)
        if isinstance(result, str):
            target = f"{prefix}/ui/runs/{quote(result, safe='')}"
            return RedirectResponse(target, 302, headers=SECURITY_HEADERS)
        if isinstance(result, Response):
            return await respond(request, lambda store: (0, ""))  # renders the error page
        return html(*result)

    def windowed(
        name: str, loader: Callable[[Store, str, views.Window], dict[str, Any]], template: str
    ) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            value = request.path_params[name]
            now = ctx.clock()
            try:
                params = _params(request, ("since", "until"))
                since, until = _window(params, now, DEFAULT_SINCE)
            except QueryError as exc:
                return await bad_request(str(exc))
            assert since is not None
            window = views.Window(since, until if until is not None else now)

            def build(store: Store) -> tuple[int, str]:
                data = loader(store, value, window)
                return page(template, name=value, window=window, **data)

            return await respond(request, build)

        return handle

    async def budget(request: Request) -> Response:
        name = request.path_params["budget"]
        found = [b for b in ctx.budgets if b.name == name]
        if request.query_params:
            return await bad_request("this page takes no parameters")
        if not found:
            _, body = await ctx.lane.run(
                lambda: page("error.html", message=f"no budget named {name!r} is configured")
            )
            return html(404, body)
        now = ctx.clock()

        def build(store: Store) -> tuple[int, str]:
            return page(
                "budget.html", budget=found[0], now=now, **views.budget_page(store, found[0], now)
            )

        return await respond(request, build)

    async def runbooks(request: Request) -> Response:
        _, body = await ctx.lane.run(lambda: page("runbooks.html", content=runbooks_html()))
        return html(200, body)

    async def stylesheet(request: Request) -> Response:
        return Response(
            _stylesheet(),
            media_type="text/css",
            headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"},
        )

    async def root(request: Request) -> Response:
        return RedirectResponse(f"{prefix}/ui/", 308)

    return [
        Route("/ui", root),
        Route("/ui/", overview),
        Route("/ui/runs", runs),
        Route("/ui/runs/{execution_id}", run),
        Route("/ui/agents/{agent:path}", windowed("agent", views.agent_page, "agent.html")),
        Route("/ui/models/{model:path}", windowed("model", views.model_page, "model.html")),
        Route("/ui/budgets/{budget:path}", budget),
        Route("/ui/runbooks", runbooks),
        Route("/ui/static/console.css", stylesheet),
    ]

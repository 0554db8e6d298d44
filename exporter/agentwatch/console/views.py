"""What each console page shows, read from the store in one worker-thread call per page.

Every function takes the store (on the API lane) and returns a plain dict for its template.
Reads are bounded: summaries and trends are aggregate queries over an index range, lists
have a `LIMIT`, a run page loads at most `MAX_RUN_ROWS` timeline rows however deep it nests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentwatch.budgets import BudgetStatus, evaluate_budgets
from agentwatch.config import Budget
from agentwatch.console import charts, fmt
from agentwatch.store.base import Store
from agentwatch.store.rows import (
    EventRow,
    ExecutionDetail,
    ExecutionFilter,
    ExecutionRow,
    RunSearch,
)

#: Timeline rows (runs, nested runs and their calls) a run page shows at most.
MAX_RUN_ROWS = 300
#: Nesting depth of runs a run page follows.
MAX_DEPTH = 6
#: Buckets of a trend chart.
TREND_BUCKETS = 24
#: Rows of the "recent failures", "slowest" and "most expensive" lists.
SHORT_LIST = 10


@dataclass(frozen=True)
class Window:
    """The time range a page covers: `[since, until)` in Unix seconds."""

    since: float
    until: float

    @property
    def step(self) -> float:
        return max(1.0, (self.until - self.since) / TREND_BUCKETS)


@dataclass(frozen=True)
class BudgetView:
    """A budget with its spend, and the spend forecast for the end of its period."""

    status: BudgetStatus
    forecast_usd: float

    @property
    def name(self) -> str:
        return self.status.budget.name

    @property
    def over(self) -> bool:
        return self.status.spend_usd >= self.status.budget.limit_usd

    @property
    def forecast_over(self) -> bool:
        return self.forecast_usd > self.status.budget.limit_usd


def budget_views(store: Store, budgets: tuple[Budget, ...], now: float) -> list[BudgetView]:
    """Each budget's spend so far and a linear forecast to the end of its period."""
    views = []
    for status in evaluate_budgets(store, budgets, now):
        elapsed = max(1.0, now - status.period_start)
        length = status.period_end - status.period_start
        views.append(BudgetView(status, status.spend_usd * length / elapsed))
    return views


def overview(
    store: Store, window: Window, budgets: tuple[Budget, ...], now: float, today: float
) -> dict[str, Any]:
    """The overview: totals of the window, spend today, per agent, budgets, recent failures."""
    summary = store.summary(since=window.since, until=window.until)
    spend_today = store.summary(since=today, until=now).cost_usd
    agents = store.agents(since=window.since, until=window.until, limit=50)
    failures = store.executions(
        ExecutionFilter(status="failed", since=window.since, until=window.until),
        limit=SHORT_LIST,
    )
    return {
        "summary": summary,
        "spend_today": spend_today,
        "agents": agents,
        "budgets": budget_views(store, budgets, now),
        "failures": failures,
    }


@dataclass
class TimelineRow:
    """One row of a run's waterfall: a run (nested or not) or one of its calls."""

    depth: int
    kind: str
    label: str
    offset: float
    duration: float | None
    status: str
    run: ExecutionRow | None = None
    event: EventRow | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    x: float = 0.0
    width: float = 0.0


def _add_run(
    store: Store, detail: ExecutionDetail, root_start: float, depth: int, rows: list[TimelineRow]
) -> None:
    run = detail.execution
    rows.append(
        TimelineRow(
            depth,
            run.kind,
            run.agent,
            run.started_at - root_start,
            run.duration,
            run.status,
            run=run,
        )
    )
    children = list(detail.child_ids)
    events = list(detail.events)
    for event in events:
        if len(rows) >= MAX_RUN_ROWS:
            return
        rows.append(
            TimelineRow(
                depth + 1,
                event.kind,
                event.name,
                event.started_at - root_start,
                event.duration,
                event.status,
                event=event,
            )
        )
    if depth >= MAX_DEPTH:
        return
    for child_id in children:
        if len(rows) >= MAX_RUN_ROWS:
            return
        child = store.execution(child_id)
        if child is not None:
            _add_run(store, child, root_start, depth + 1, rows)


def run_page(store: Store, execution_id: str) -> dict[str, Any] | None:
    """One run: its waterfall (nested runs and calls), parent, and same-agent neighbours."""
    detail = store.execution(execution_id)
    if detail is None:
        return None
    run = detail.execution
    rows: list[TimelineRow] = []
    _add_run(store, detail, run.started_at, 0, rows)
    rows.sort(key=lambda r: (r.offset, -1 if r.run is not None else 0))
    end = max([run.duration or 0.0] + [r.offset + (r.duration or 0.0) for r in rows])
    span = end if end > 0 else 1.0
    for row in rows:
        row.x = round(1000 * max(0.0, row.offset) / span, 2)
        row.width = round(max(2.0, 1000 * (row.duration or 0.0) / span), 2)
    parent = store.execution(run.parent_id) if run.parent_id else None
    around = store.executions(
        ExecutionFilter(agent=run.agent, since=run.started_at - 3600, until=run.started_at + 3600),
        limit=SHORT_LIST + 1,
    )
    return {
        "run": run,
        "rows": rows,
        "truncated": len(rows) >= MAX_RUN_ROWS,
        "span": span,
        "parent": None if parent is None else parent.execution,
        "around": [r for r in around if r.id != run.id][:SHORT_LIST],
        "record": detail.to_record(),
    }


def _run_charts(store: Store, window: Window, agent: str | None) -> list[charts.Chart]:
    points = store.run_trend(since=window.since, until=window.until, step=window.step, agent=agent)
    buckets = TREND_BUCKETS
    return [
        charts.bar_chart(
            "Runs",
            window.since,
            window.step,
            buckets,
            [(p.start, p.count) for p in points],
            "runs",
            fmt.number,
        ),
        charts.bar_chart(
            "Failed runs",
            window.since,
            window.step,
            buckets,
            [(p.start, p.failed) for p in points],
            "failed",
            fmt.number,
        ),
        charts.bar_chart(
            "Slowest run",
            window.since,
            window.step,
            buckets,
            [(p.start, p.max_duration or 0.0) for p in points],
            "max",
            fmt.seconds,
        ),
    ]


def _call_charts(store: Store, window: Window, **scope: str | None) -> list[charts.Chart]:
    points = store.call_trend(since=window.since, until=window.until, step=window.step, **scope)
    buckets = TREND_BUCKETS
    return [
        charts.bar_chart(
            "LLM calls",
            window.since,
            window.step,
            buckets,
            [(p.start, p.count) for p in points],
            "calls",
            fmt.number,
        ),
        charts.bar_chart(
            "Spend",
            window.since,
            window.step,
            buckets,
            [(p.start, p.cost_usd) for p in points],
            "spend",
            fmt.money,
        ),
        charts.bar_chart(
            "Mean latency",
            window.since,
            window.step,
            buckets,
            [(p.start, p.avg_duration or 0.0) for p in points],
            "mean",
            fmt.seconds,
        ),
    ]


def _ranked(
    store: Store, window: Window, agent: str | None = None, model: str | None = None
) -> dict[str, Any]:
    def top(sort: str) -> list[ExecutionRow]:
        search = RunSearch(
            agent=agent, model=model, since=window.since, until=window.until, sort=sort
        )
        return store.search_runs(search, limit=SHORT_LIST)

    return {"slowest": top("duration"), "costliest": top("cost")}


def agent_page(store: Store, agent: str, window: Window) -> dict[str, Any]:
    """An agent: totals, run and call trends, top errors, slowest and costliest runs."""
    return {
        "summary": store.summary(agent=agent, since=window.since, until=window.until),
        "charts": _run_charts(store, window, agent) + _call_charts(store, window, agent=agent),
        "errors": store.top_errors(since=window.since, until=window.until, agent=agent),
        **_ranked(store, window, agent=agent),
    }


def model_page(store: Store, model: str, window: Window) -> dict[str, Any]:
    """A model: call trends, top errors of its calls, agents using it, runs that called it."""
    costs = [
        r
        for r in store.costs(["agent", "model"], since=window.since, until=window.until)
        if r.group.get("model") == model
    ]
    return {
        "charts": _call_charts(store, window, model=model),
        "errors": store.top_errors(since=window.since, until=window.until, model=model),
        "costs": costs,
        **_ranked(store, window, model=model),
    }


def budget_page(store: Store, budget: Budget, now: float) -> dict[str, Any]:
    """A budget: spend vs limit and forecast, the period's spend trend, who spent it."""
    (view,) = budget_views(store, (budget,), now)
    window = Window(view.status.period_start, view.status.period_end)
    costs = [
        r
        for r in store.costs(
            ["agent", "model", "provider"],
            since=window.since,
            until=now,
            agent=budget.agent,
            attributes=dict(budget.attributes) or None,
        )
        if (budget.model is None or r.group.get("model") == budget.model)
        and (budget.provider is None or r.group.get("provider") == budget.provider)
    ]
    scope = {"agent": budget.agent, "model": budget.model, "provider": budget.provider}
    return {
        "view": view,
        "window": window,
        "charts": _call_charts(store, window, **scope),
        "costs": costs[:20],
        "costliest": store.search_runs(
            RunSearch(
                agent=budget.agent, model=budget.model, since=window.since, until=now, sort="cost"
            ),
            limit=SHORT_LIST,
        ),
    }

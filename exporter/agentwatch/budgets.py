"""Budgets: exact spend inside the current calendar period, computed from the durable store.

PromQL cannot answer "spend this calendar month": `increase()` takes a constant range and a
month is 28 to 31 days, with daylight-saving days of 23 or 25 hours in between (prometheus
issue 7233). So `agentwatch serve` computes the period bounds in the budget's own time zone
and sums event costs between them in SQL, then exposes limit, spend, remaining budget,
projected exhaustion and the bounds as gauges. Alert rules only compare those gauges.

A budget's scope may name an agent, a model, a provider and any declared attribution
dimension (`{team: search}`); a call is in scope when it matches all of them. Every gauge is
computed from the store at scrape time, so none is stale after a restart and none is
infinite (LiteLLM's budget gauges show `+Inf` or stale values in several open issues).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agentwatch.config import Budget

if TYPE_CHECKING:
    from agentwatch.store.base import Store


@dataclass(frozen=True)
class BudgetStatus:
    """One budget evaluated at one instant. Times are Unix seconds; money is USD."""

    budget: Budget
    period_start: float
    period_end: float
    spend_usd: float
    evaluated_at: float = 0.0

    @property
    def used_ratio(self) -> float:
        """Spend as a fraction of the limit; infinite spend ratio is reported as a large number."""
        if self.budget.limit_usd <= 0:
            return 0.0 if self.spend_usd <= 0 else 1e9
        return self.spend_usd / self.budget.limit_usd

    @property
    def remaining_usd(self) -> float:
        """Limit minus spend, never below zero."""
        return max(0.0, self.budget.limit_usd - self.spend_usd)

    @property
    def projected_exhaustion(self) -> float:
        """When the spend reaches the limit at the period's average rate so far (Unix time).

        The evaluation time once the limit is reached; the period end when the limit is not
        projected to be reached inside the period (nothing spent yet, or a slow rate). Always
        finite: a gauge of `+Inf` breaks arithmetic in alert rules and graphs.
        """
        now = min(max(self.evaluated_at, self.period_start), self.period_end)
        if self.spend_usd >= self.budget.limit_usd:
            return now
        elapsed = now - self.period_start
        if self.spend_usd <= 0 or elapsed <= 0:
            return self.period_end
        rate = self.spend_usd / elapsed
        return min(self.period_end, now + (self.budget.limit_usd - self.spend_usd) / rate)


def period_bounds(budget: Budget, now: float) -> tuple[float, float]:
    """Start and (exclusive) end of the calendar period containing `now`, in the budget's zone.

    Days start at local midnight, weeks on Monday (ISO 8601), months on the 1st. Bounds are
    computed on local wall-clock dates, then converted, so DST days are 23 or 25 hours long.
    """
    zone = ZoneInfo(budget.timezone)
    local = datetime.fromtimestamp(now, zone)
    day = local.date()
    if budget.period == "day":
        start_date = day
        end_date = day + timedelta(days=1)
    elif budget.period == "week":
        start_date = day - timedelta(days=day.weekday())
        end_date = start_date + timedelta(days=7)
    else:
        start_date = day.replace(day=1)
        end_date = (start_date + timedelta(days=32)).replace(day=1)
    start = datetime(start_date.year, start_date.month, start_date.day, tzinfo=zone)
    end = datetime(end_date.year, end_date.month, end_date.day, tzinfo=zone)
    return start.timestamp(), end.timestamp()


def in_scope(
    budget: Budget,
    agent: str | None,
    model: str | None,
    provider: str | None,
    attribution: Mapping[str, str],
) -> bool:
    """Whether a call (its agent, model, provider and attribution values) is in scope."""
    if budget.agent is not None and budget.agent != agent:
        return False
    if budget.model is not None and budget.model != model:
        return False
    if budget.provider is not None and budget.provider != provider:
        return False
    return all(attribution.get(name) == value for name, value in budget.attributes)


def store_spend(store: Store, budget: Budget, start: float, end: float) -> float:
    """The exact spend in scope of `budget` stored with `start <= started_at < end`."""
    spend = store.spend(
        start,
        end,
        agent=budget.agent,
        model=budget.model,
        provider=budget.provider,
        attributes=dict(budget.attributes),
    )
    return max(0.0, spend)


def evaluate_budgets(store: Store, budgets: Iterable[Budget], now: float) -> list[BudgetStatus]:
    """Compute each budget's current period and exact spend (one indexed SQL sum per budget)."""
    statuses = []
    for budget in budgets:
        start, end = period_bounds(budget, now)
        spend = store_spend(store, budget, start, end)
        statuses.append(BudgetStatus(budget, start, end, spend, now))
    return statuses

"""Budgets: exact spend inside the current calendar period, computed from the durable store.

PromQL cannot answer "spend this calendar month": `increase()` takes a constant range and a
month is 28 to 31 days, with daylight-saving days of 23 or 25 hours in between (prometheus
issue 7233). So `agentwatch serve` computes the period bounds in the budget's own time zone
and sums event costs between them in SQL, then exposes limit, spend and the bounds as gauges.
Alert rules only compare those gauges.
"""

from __future__ import annotations

from collections.abc import Iterable
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

    @property
    def used_ratio(self) -> float:
        """Spend as a fraction of the limit; infinite spend ratio is reported as a large number."""
        if self.budget.limit_usd <= 0:
            return 0.0 if self.spend_usd <= 0 else 1e9
        return self.spend_usd / self.budget.limit_usd


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


def evaluate_budgets(store: Store, budgets: Iterable[Budget], now: float) -> list[BudgetStatus]:
    """Compute each budget's current period and exact spend (one indexed SQL sum per budget)."""
    statuses = []
    for budget in budgets:
        start, end = period_bounds(budget, now)
        spend = store.spend(
            start, end, agent=budget.agent, model=budget.model, provider=budget.provider
        )
        statuses.append(BudgetStatus(budget, start, end, max(0.0, spend)))
    return statuses

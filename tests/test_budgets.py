"""Budget periods are calendar-aligned in the budget's own time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agentwatch.budgets import period_bounds
from agentwatch.config import Budget


def _ts(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def _budget(period: str, zone: str = "UTC") -> Budget:
    return Budget(name="b", period=period, limit_usd=10.0, timezone=zone)  # type: ignore[arg-type]


def test_day_period_runs_from_local_midnight_to_the_next() -> None:
    start, end = period_bounds(_budget("day"), _ts("2026-11-24T15:30:00"))
    assert (start, end) == (_ts("2026-11-24T00:00:00"), _ts("2026-11-25T00:00:00"))


def test_week_period_starts_on_monday() -> None:
    # 2026-11-26 is a Thursday; its ISO week starts Monday 2026-11-23.
    start, end = period_bounds(_budget("week"), _ts("2026-11-26T08:00:00"))
    assert (start, end) == (_ts("2026-11-23T00:00:00"), _ts("2026-11-30T00:00:00"))


@pytest.mark.parametrize(
    ("now", "first", "next_first"),
    [
        ("2026-02-14T12:00:00", "2026-02-01T00:00:00", "2026-03-01T00:00:00"),
        ("2026-12-31T23:59:59", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
        ("2028-02-29T10:00:00", "2028-02-01T00:00:00", "2028-03-01T00:00:00"),
    ],
)
def test_month_period_is_the_calendar_month(now: str, first: str, next_first: str) -> None:
    assert period_bounds(_budget("month"), _ts(now)) == (_ts(first), _ts(next_first))


def test_period_follows_the_budget_time_zone_not_utc() -> None:
    # 23:30 UTC on Nov 30 is already December 1st in Tokyo.
    start, end = period_bounds(_budget("month", "Asia/Tokyo"), _ts("2026-11-30T23:30:00"))
    assert start == _ts("2026-12-01T00:00:00", "Asia/Tokyo")
    assert end == _ts("2027-01-01T00:00:00", "Asia/Tokyo")


def test_daylight_saving_day_is_23_hours_long() -> None:
    # Europe/Berlin springs forward on 2026-03-29.
    start, end = period_bounds(_budget("day", "Europe/Berlin"), _ts("2026-03-29T12:00:00", "UTC"))
    assert end - start == 23 * 3600


def test_now_exactly_at_period_end_belongs_to_the_next_period() -> None:
    end_of_day = _ts("2026-11-25T00:00:00")
    start, _ = period_bounds(_budget("day"), end_of_day)
    assert start == end_of_day

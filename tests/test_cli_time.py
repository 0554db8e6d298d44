"""The durations and points in time users type into --since, --until and --older-than."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import click
import pytest

from agentwatch.cli._time import (
    TIME,
    format_local,
    iso_utc,
    local_zone_key,
    local_zone_name,
    parse_duration,
    parse_time,
)

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run in a zone with an offset (and DST), so local and UTC differ."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield "America/New_York"
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("1h", 3600),
        ("7d", 7 * 86400),
        ("2w", 14 * 86400),
        ("1h30m", 5400),
        ("1.5h", 5400),
        (" 2D ", 2 * 86400),
    ],
)
def test_durations_accept_units_and_chains(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "h", "7y", "-1h", "1h-", "0s", "0d0h"])
def test_durations_reject_what_they_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration|longer than zero"):
        parse_duration(text)


def test_relative_times_count_back_from_now() -> None:
    assert parse_time("1h", now=NOW) == NOW - 3600
    assert parse_time("7d", now=NOW) == NOW - 7 * 86400
    assert parse_time("now", now=NOW) == NOW


def test_an_iso_date_is_local_midnight(zone: str) -> None:
    # New York is UTC-5 in November: local midnight is 05:00 UTC.
    assert parse_time("2026-11-20", now=NOW) == datetime(2026, 11, 20, 5, tzinfo=UTC).timestamp()


def test_a_naive_datetime_is_local_and_an_offset_is_honoured(zone: str) -> None:
    expected = datetime(2026, 11, 20, 14, 30, tzinfo=UTC).timestamp()
    assert parse_time("2026-11-20T09:30", now=NOW) == expected
    assert parse_time("2026-11-20 09:30:00", now=NOW) == expected
    assert parse_time("2026-11-20T14:30:00Z", now=NOW) == expected
    assert parse_time("2026-11-20T16:30:00+02:00", now=NOW) == expected


def test_today_and_yesterday_are_local_midnights(zone: str) -> None:
    # 12:00 UTC is 07:00 in New York, still the 24th there.
    assert parse_time("today", now=NOW) == datetime(2026, 11, 24, 5, tzinfo=UTC).timestamp()
    assert parse_time("yesterday", now=NOW) == datetime(2026, 11, 23, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text", ["last week", "2026-13-01", "2026-11", "11/20/2026"])
def test_unreadable_times_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_time(text, now=NOW)


def test_local_formatting_shows_the_zone(zone: str) -> None:
    moment = datetime(2026, 11, 20, 14, 30, 5, tzinfo=UTC).timestamp()
    assert format_local(moment) == "2026-11-20 09:30:05 EST"
    assert format_local(moment, date_part=False) == "09:30:05 EST"
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp()
    assert format_local(summer) == "2026-07-01 08:00:00 EDT"
    assert format_local(None) == "-"
    assert local_zone_name(moment) == "EST (UTC-05:00)"


def test_machine_times_are_utc_with_an_offset(zone: str) -> None:
    moment = datetime(2026, 11, 20, 14, 30, 5, 250000, tzinfo=UTC).timestamp()
    assert iso_utc(moment) == "2026-11-20T14:30:05.250+00:00"
    assert iso_utc(None) is None


def test_the_local_zone_key_comes_from_tz(zone: str) -> None:
    assert local_zone_key() == "America/New_York"


def test_the_click_type_turns_bad_input_into_a_usage_error() -> None:
    with pytest.raises(click.BadParameter, match="neither a duration"):
        TIME.convert("soon", None, None)
    before = time.time()
    converted = TIME.convert("1h", None, None)
    assert before - 3600 - 1 < converted <= time.time() - 3600


@pytest.mark.parametrize(
    "text",
    ["9" * 400 + "d", "9" * 400 + "s", "99999999999999999999w", "0001-01-01T00:00:00+14:00"],
)
def test_times_outside_years_1_to_9999_are_refused_on_one_short_line(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_time(text, now=NOW)
    message = str(caught.value)
    assert ("years" in message) and len(message) < 120 and "\n" not in message


def test_a_window_must_start_before_it_ends() -> None:
    @click.command()
    @click.option("--since", type=TIME)
    @click.option("--until", type=TIME)
    def window(since: float | None, until: float | None) -> None:
        click.echo(f"{since} {until}")

    from click.testing import CliRunner

    ok = CliRunner().invoke(window, ["--since", "2026-01-01", "--until", "2026-01-02"])
    assert ok.exit_code == 0, ok.output
    for args in (
        ["--since", "2026-01-02", "--until", "2026-01-01"],
        ["--until", "2026-01-01", "--since", "2026-01-02"],  # either order on the line
        ["--since", "2026-01-01", "--until", "2026-01-01"],  # empty
    ):
        result = CliRunner().invoke(window, args)
        assert result.exit_code == 2 and "must be before --until" in result.output, args


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "0", "-1", "3601"])
def test_seconds_refuse_nan_infinity_and_the_range(value: str) -> None:
    from agentwatch.cli._time import SecondsRange

    with pytest.raises(click.BadParameter):
        SecondsRange(0.1, 3600).convert(value, None, None)
    assert SecondsRange(0.1, 3600).convert("2.5", None, None) == 2.5

"""Parse the times and durations users type (`1h`, `7d`, `2026-11-01`) and format them back.

Durations are a number and a unit, optionally chained (`1h30m`): `s`, `m`, `h`, `d`, `w`.
A point in time is either such a duration counted back from now, `today` / `yesterday`
(local midnight), or an ISO-8601 date or date-time. A date or a date-time without an offset
is read in the local time zone (the `TZ` environment variable), the zone every command
shows times in; `Z` or an explicit offset is honoured as written.
"""

from __future__ import annotations

import math
import os
import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
#: Times are epochs of years 1 to 9999 (what `datetime` and every store can represent), with a
#: day of margin for time zones; anything outside is a typo, not a window.
_MIN_EPOCH = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_MAX_EPOCH = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
_MAX_YEARS = 9000
_MAX_SECONDS = _MAX_YEARS * 365.25 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `90s`, `30m`, `1h`, `7d`, `2w` or `1h30m`.

    Raises:
        ValueError: the text is not a positive duration; the message says what is accepted.
    """
    compact = text.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(compact):
        raise ValueError(
            f"{_shown(text)} is not a duration (use a number and a unit s, m, h, d or w: "
            "30m, 1h, 7d)"
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"{_shown(text)} must be longer than zero")
    if not seconds < _MAX_SECONDS:
        raise ValueError(f"{_shown(text)} is longer than {_MAX_YEARS:,} years")
    return seconds


def _shown(text: str) -> str:
    """The user's text for an error line, cut so a 400-digit number stays one short line."""
    return repr(text if len(text) <= 40 else f"{text[:37]}...")


def _local_midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day).astimezone().timestamp()


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds for a point in time: a duration ago, `today`, `yesterday` or ISO-8601.

    Args:
        text: `1h` (one hour before `now`), `today`, `2026-11-01`, `2026-11-01T09:30`,
            `2026-11-01T09:30:00+02:00` or `...Z`. Dates and naive date-times are local time.
        now: the reference for relative forms (default: the current time).

    Raises:
        ValueError: the text is neither a duration nor a date; the message says what is.
    """
    try:
        epoch = _parse_time(text, now)
    except (OverflowError, OSError):  # a date the platform cannot convert
        epoch = math.nan
    if not _MIN_EPOCH <= epoch <= _MAX_EPOCH:
        raise ValueError(f"{_shown(text)} is out of range (years 1 to 9999)")
    return epoch


def _parse_time(text: str, now: float | None) -> float:
    reference = time.time() if now is None else now
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered == "now":
        return reference
    if lowered in ("today", "yesterday"):
        day = datetime.fromtimestamp(reference).date()
        if lowered == "yesterday":
            day -= timedelta(days=1)
        return _local_midnight(day)
    if _WHOLE.fullmatch(lowered.replace(" ", "")):
        return reference - parse_duration(stripped)
    iso = stripped[:-1] + "+00:00" if stripped.endswith(("Z", "z")) else stripped
    try:
        if len(iso) == 10:
            return _local_midnight(date.fromisoformat(iso))
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"{_shown(text)} is neither a duration (1h, 7d) nor an ISO date (2026-11-01, "
            "2026-11-01T09:30, 2026-11-01T09:30:00+02:00)"
        ) from None
    return parsed.astimezone().timestamp() if parsed.tzinfo is None else parsed.timestamp()


def local_datetime(epoch: float) -> datetime:
    """The aware local date-time of an epoch (the zone comes from `TZ` / the system)."""
    return datetime.fromtimestamp(epoch).astimezone()


def format_local(epoch: float | None, *, date_part: bool = True) -> str:
    """`2026-11-24 10:49:37 CET` (or `10:49:37 CET` without the date); `-` for None."""
    if epoch is None:
        return "-"
    pattern = "%Y-%m-%d %H:%M:%S %Z" if date_part else "%H:%M:%S %Z"
    return local_datetime(epoch).strftime(pattern)


def iso_utc(epoch: float | None) -> str | None:
    """ISO-8601 in UTC with an explicit offset, millisecond precision: machine output.

    The one formatting the store's records use (`agentwatch.store.rows.iso_utc`).
    """
    from agentwatch.store.rows import iso_utc as record_time

    return record_time(epoch)


def local_zone_name(epoch: float | None = None) -> str:
    """The local zone's abbreviation and offset, e.g. `CET (UTC+01:00)`."""
    moment = local_datetime(time.time() if epoch is None else epoch)
    offset = moment.strftime("%z")
    return f"{moment.strftime('%Z')} (UTC{offset[:3]}:{offset[3:]})"


def local_zone_key() -> str:
    """The IANA name of the local zone (`Europe/Paris`), for grouping by local date.

    Read from `TZ` when it names a zone, else from the `/etc/localtime` link; `UTC` when
    neither says (a fixed-offset `TZ` such as `UTC+3` cannot be named and falls back too).
    """
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        link = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    except OSError:  # pragma: no cover - no /etc/localtime
        pass
    for candidate in candidates:
        if not candidate:
            continue
        try:
            ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return candidate
    return "UTC"


if TYPE_CHECKING:  # click >= 8.2 types parameters; 8.1 (still supported) cannot subscript
    _ParamType = click.ParamType[float, Any]
else:
    _ParamType = click.ParamType


class TimeType(_ParamType):
    """A click parameter holding an epoch: `1h` / `7d` ago, `today`, or an ISO date.

    A command taking both `--since` and `--until` gets its window checked here, by whichever
    of the two click converts second: `--since` at or after `--until` is an empty window,
    always a mistake, and a usage error rather than an empty answer.
    """

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            epoch = float(value)
        else:
            try:
                epoch = parse_time(str(value))
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        _check_window(epoch, param, ctx)
        return epoch


def _check_window(epoch: float, param: click.Parameter | None, ctx: click.Context | None) -> None:
    if param is None or ctx is None or param.name not in ("since", "until"):
        return
    other = ctx.params.get("until" if param.name == "since" else "since")
    if not isinstance(other, float):
        return
    since, until = (epoch, other) if param.name == "since" else (other, epoch)
    if since >= until:
        raise click.BadParameter(
            f"--since ({format_local(since)}) must be before --until ({format_local(until)})",
            ctx=ctx,
            param=param,
        )


class SecondsRange(click.FloatRange):
    """`click.FloatRange` that also refuses NaN (which every comparison lets through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return number


TIME = TimeType()

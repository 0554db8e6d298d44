"""Parse the times and durations users type (`1h`, `7d`, `2026-11-01`) and format them back.

Durations are a number and a unit, optionally chained (`1h30m`): `s`, `m`, `h`, `d`, `w`.
A point in time is either such a duration counted back from now, `today` / `yesterday`
(local midnight), or an ISO-8601 date or date-time. A date or a date-time without an offset
is read in the local time zone (the `TZ` environment variable), the zone every command
shows times in; `Z` or an explicit offset is honoured as written.
"""

from __future__ import annotations

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


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `90s`, `30m`, `1h`, `7d`, `2w` or `1h30m`.

    Raises:
        ValueError: the text is not a positive duration; the message says what is accepted.
    """
    compact = text.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(compact):
        raise ValueError(
            f"{text!r} is not a duration (use a number and a unit s, m, h, d or w: 30m, 1h, 7d)"
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


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
            f"{text!r} is neither a duration (1h, 7d) nor an ISO date (2026-11-01, "
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
    """ISO-8601 in UTC with an explicit offset, millisecond precision: machine output."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")


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
    """A click parameter holding an epoch: `1h` / `7d` ago, `today`, or an ISO date."""

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeType()

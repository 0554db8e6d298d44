"""How the console shows numbers and times: one formatter per kind, shared by every page.

The browser test reads numbers back through these shapes, so each keeps enough precision to
compare with the JSON API (money to 4 decimals, durations to 3 significant figures).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from urllib.parse import quote, urlencode


def money(value: float | None) -> str:
    """US dollars: `$1.2345`; `unpriced` when unknown."""
    if value is None or not math.isfinite(value):
        return "unpriced"
    return f"${value:,.4f}"


def seconds(value: float | None) -> str:
    """A duration: `850 ms`, `1.23 s`, `4.5 min`; `–` when unknown."""
    if value is None or not math.isfinite(value):
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


def percent(ratio: float | None) -> str:
    """A ratio 0..1 as `97.5%`."""
    if ratio is None or not math.isfinite(ratio):
        return "–"
    return f"{ratio * 100:.1f}%"


def when(ts: float | None) -> str:
    """A Unix time as `2026-05-01 12:34:56Z` (UTC, to the second)."""
    if ts is None or not math.isfinite(ts):
        return "–"
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "–"


def number(value: int | float | None) -> str:
    """An integer count with thousands separators."""
    if value is None:
        return "–"
    return f"{int(value):,}"


def query(**params: object) -> str:
    """A query string from the parameters that are set (None and "" are left out)."""
    kept = {k: v for k, v in params.items() if v is not None and v != ""}
    return urlencode(kept)


def run_url(base: str, execution_id: str) -> str:
    """The console URL of one run under the public base URL `base` (`--web.external-url`)."""
    return f"{base.rstrip('/')}/ui/runs/{quote(execution_id, safe='')}"

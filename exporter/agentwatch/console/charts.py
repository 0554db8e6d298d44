"""Small trend charts drawn on the server as inline SVG (no script, no CDN).

A chart is a list of bars in a fixed 0..`WIDTH` x 0..`HEIGHT` coordinate space; the template
writes them as `<rect>` elements (SVG attributes, not inline styles, so the page's
Content-Security-Policy needs no `unsafe-inline`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 600.0
HEIGHT = 80.0


@dataclass(frozen=True)
class Bar:
    """One bar: position and size in chart units, and the tooltip text."""

    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    """A titled bar chart; `peak` is the label of the largest value."""

    title: str
    bars: tuple[Bar, ...]
    peak: str
    width: float = WIDTH
    height: float = HEIGHT


def bar_chart(
    title: str,
    since: float,
    step: float,
    buckets: int,
    values: Sequence[tuple[float, float]],
    label: str,
    fmt: type[str] | object = str,
) -> Chart:
    """Bars for `(bucket start, value)` pairs over `buckets` buckets of `step` seconds.

    Missing buckets are zero; `fmt` formats a value for the tooltip and the peak label.
    """
    format_value = fmt if callable(fmt) else str
    by_bucket: dict[int, float] = {}
    for start, value in values:
        index = round((start - since) / step)
        if 0 <= index < buckets:
            by_bucket[index] = by_bucket.get(index, 0.0) + value
    peak = max(by_bucket.values(), default=0.0)
    slot = WIDTH / max(1, buckets)
    bars = []
    for index, value in sorted(by_bucket.items()):
        if value <= 0 or peak <= 0:
            continue
        height = max(1.0, HEIGHT * value / peak)
        bars.append(
            Bar(
                x=round(index * slot + slot * 0.1, 2),
                y=round(HEIGHT - height, 2),
                width=round(slot * 0.8, 2),
                height=round(height, 2),
                title=f"{label}: {format_value(value)}",
            )
        )
    return Chart(title, tuple(bars), str(format_value(peak)))

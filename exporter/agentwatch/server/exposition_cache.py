"""The `/metrics` body of `agentwatch serve`, rendered incrementally and cached between scrapes.

Why: at 10k series, building prometheus_client families and formatting every sample cost
12-22 us per series (about 200 ms a scrape), paid again by every scrape even when nothing was
written. Here:

- the rollup part of the body (all but a few lines) is kept per format and returned as it is
  while the store's change marker (`Store.last_write_time()`, read BEFORE the rollups so a
  write racing the read only causes one extra render, never a stale cache) is unchanged;
- when the store changed, each series' label text (`name{a="x",le="0.5"} `) and its last
  rendered line are reused, so only changed values are formatted again;
- one lock makes concurrent scrapes share one render: the second waits for the first, then
  finds the cache fresh;
- the small parts (build info, store up, last write, budgets: budgets depend on the clock as
  well as on the store) are rendered by prometheus_client itself on every scrape.

The output is byte for byte what `generate_latest` (text) and the OpenMetrics
`generate_latest` give for the `StoreCollector` of the same store; tests compare them.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from prometheus_client import exposition as _text_exposition
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as _om_exposition
from prometheus_client.utils import floatToGoString

from agentwatch import contract
from agentwatch._version import __version__
from agentwatch.budgets import BudgetStatus, evaluate_budgets
from agentwatch.config import Budget
from agentwatch.rollup_exemplars import EXEMPLAR_LABEL, MAX_EXEMPLAR_LABEL_CHARS
from agentwatch.server.collector import budget_families
from agentwatch.server.store_access import StoreAccess
from agentwatch.store.base import Exemplar, RollupRow, Store
from agentwatch.store_metrics import attribution_dimensions

_INF = float("inf")
#: Typed aliases of prometheus_client's untyped functions.
_go_float: Callable[[float], str] = floatToGoString
_om_latest: Callable[[Any], bytes] = _om_exposition.generate_latest
_text_latest: Callable[[Any], bytes] = _text_exposition.generate_latest
_EOF = b"# EOF\n"
#: Escapings whose output equals the default for agentwatch's (legacy-valid) metric names.
_SAME_ESCAPING = frozenset({_om_exposition.UNDERSCORES, _om_exposition.ALLOWUTF8})
#: A cached rollup body is rendered again after this long even without a write (a change
#: the marker cannot see, such as a manual repair of the database, is exposed eventually).
DEFAULT_MAX_AGE = 60.0

_Marker = tuple[float | None]
_SeriesKey = tuple[str, tuple[str, ...], str | None]
_RowKey = tuple[str, tuple[tuple[str, str], ...]]


class _Families:
    """A collector over fixed families (to render small parts with prometheus_client)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _library_render(families: Iterable[Metric], openmetrics: bool) -> bytes:
    """prometheus_client's own exposition of `families`, without OpenMetrics' `# EOF`."""
    if openmetrics:
        return _om_latest(_Families(families))[: -len(_EOF)]
    return _text_latest(_Families(families))


def encoder_format(encoder: Callable[..., bytes]) -> bool | None:
    """For an encoder from `choose_encoder`: True (OpenMetrics 1.0), False (text 0.0.4),
    or None when it asks for something this cache does not render (fall back)."""
    func, keywords = encoder, {}
    if isinstance(encoder, partial):
        func, keywords = encoder.func, dict(encoder.keywords)
    if keywords.get("escaping", _om_exposition.UNDERSCORES) not in _SAME_ESCAPING:
        return None
    if func is _om_exposition.generate_latest:
        return None if keywords.get("version", "1.0.0") != "1.0.0" else True
    if func is _text_exposition.generate_latest:
        return False
    return None


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _prefix(name: str, labels: dict[str, str]) -> str:
    """`name{a="x",b="y"} `: the sample line up to its value (labels sorted by name)."""
    if not labels:
        return name + " "
    text = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{text}}} "


def _exemplar_suffix(exemplar: Exemplar) -> str:
    labels = f'{{{EXEMPLAR_LABEL}="{_escape_value(exemplar.execution_id)}"}}'
    return f" # {labels} {_go_float(exemplar.value)} {exemplar.timestamp}"


@dataclass(frozen=True, slots=True)
class _Place:
    """Where one rollup row goes: its family, label values and (for buckets) bound."""

    family: str
    kind: str  # "counter", "bucket" or "sum"
    key: tuple[str, ...]
    bound: float
    exemplar_ok: bool  # its labels are exactly the family's (attach_exemplars' matching)


@dataclass(frozen=True, slots=True)
class _Family:
    spec: contract.MetricSpec
    sample: str  # counter: name_total; histogram: the base name
    bounds: tuple[tuple[float, str], ...]  # histogram bounds with their `le` text
    header: tuple[bytes, bytes]  # HELP/TYPE lines (text, OpenMetrics)


def _families() -> dict[str, _Family]:
    result: dict[str, _Family] = {}
    for spec in contract.ROLLUP_METRICS:
        labels = list(spec.labels)
        empty: Metric
        bounds: tuple[tuple[float, str], ...]
        if spec.kind == "counter":
            empty = CounterMetricFamily(spec.name, spec.help, labels=labels)
            sample, bounds = empty.name + "_total", ()
        elif spec.kind == "histogram":
            empty = HistogramMetricFamily(spec.name, spec.help, labels=labels)
            sample = empty.name
            bounds = tuple(
                (b, "+Inf" if b == _INF else repr(float(b))) for b in (*(spec.buckets or ()), _INF)
            )
        else:
            continue
        header = (_library_render([empty], False), _library_render([empty], True))
        result[spec.name] = _Family(spec, sample, bounds, header)
    return result


class RollupRenderer:
    """Renders rollup rows as `rollup_families` + `attach_exemplars` + prometheus_client would,
    reusing each series' label text and unchanged lines from the previous render.

    Not thread-safe: `ExpositionCache` calls it under its lock.
    """

    def __init__(self) -> None:
        self._families = _families()
        self._places: dict[_RowKey, _Place | None] = {}
        self._prefixes: dict[_SeriesKey, str] = {}
        # Per format: series -> (value, exemplar, rendered line).
        self._lines: tuple[dict[Any, tuple[float, Any, str]], ...] = ({}, {})
        # Attribution label names per attributed family, as `rollup_families` derives them
        # from the rows: a change renames every series of the family, so all caches reset.
        self._dimensions: dict[str, tuple[str, ...]] = {}

    def _names(self, spec: contract.MetricSpec) -> tuple[str, ...]:
        return (*spec.labels, *self._dimensions.get(spec.name, ()))

    def _place(self, row: RollupRow) -> _Place | None:
        spec = contract.spec_for_sample(row.sample)
        if spec is None or spec.kind == "gauge":
            return None
        labels = row.labels
        key = tuple(labels.get(name, "") for name in self._names(spec))
        names = set(labels) - {"le"}
        exemplar_ok = names == set(spec.labels)
        if spec.kind == "counter":
            return _Place(spec.name, "counter", key, 0.0, False)
        if row.sample.endswith("_bucket"):
            le = labels.get("le", "+Inf")
            bound = _INF if le == "+Inf" else float(le)
            return _Place(spec.name, "bucket", key, bound, exemplar_ok)
        if row.sample.endswith("_sum"):
            return _Place(spec.name, "sum", key, 0.0, False)
        return None  # _count equals the +Inf bucket

    def render(self, rows: Sequence[RollupRow], openmetrics: bool) -> bytes:
        """The rollup part of the body for `rows` (as read by `Store.read_rollups`)."""
        counters: dict[str, dict[tuple[str, ...], float]] = {}
        buckets: dict[str, dict[tuple[str, ...], dict[float, float]]] = {}
        sums: dict[str, dict[tuple[str, ...], float]] = {}
        exemplars: dict[tuple[str, tuple[str, ...], float], Exemplar] = {}
        room = MAX_EXEMPLAR_LABEL_CHARS - len(EXEMPLAR_LABEL)
        dimensions = attribution_dimensions(rows)
        if dimensions != self._dimensions:
            self._dimensions = dimensions
            self._places, self._prefixes, self._lines = {}, {}, ({}, {})
        places = self._places
        seen: dict[_RowKey, _Place | None] = {}
        for row in rows:
            ident = (row.sample, tuple(row.labels.items()))
            place = places.get(ident, _MISSING)
            if place is _MISSING:
                place = self._place(row)
            seen[ident] = place
            if place is None:
                continue
            assert isinstance(place, _Place)
            if place.kind == "counter":
                counters.setdefault(place.family, {})[place.key] = row.value
            elif place.kind == "bucket":
                family_buckets = buckets.setdefault(place.family, {})
                family_buckets.setdefault(place.key, {})[place.bound] = row.value
                exemplar = row.exemplar
                if (
                    place.exemplar_ok
                    and exemplar is not None
                    and len(exemplar.execution_id) <= room
                ):
                    exemplars[(place.family, place.key, place.bound)] = exemplar
            else:
                sums.setdefault(place.family, {})[place.key] = row.value
        self._places = seen  # forget series no longer stored (bounded under label churn)

        old_lines = self._lines[openmetrics]
        lines: dict[Any, tuple[float, Any, str]] = {}
        prefixes = self._prefixes
        new_prefixes: dict[_SeriesKey, str] = {}
        out: list[str] = []

        def line(
            ident: _SeriesKey, names: Sequence[str], value: float, exemplar: Exemplar | None
        ) -> None:
            cached = old_lines.get(ident)
            if cached is not None and cached[0] == value and cached[1] == exemplar:
                lines[ident] = cached
                new_prefixes[ident] = prefixes[ident]
                out.append(cached[2])
                return
            prefix = prefixes.get(ident)
            if prefix is None:
                prefix = _prefix(ident[0], _labels(names, ident[1], ident[2]))
            new_prefixes[ident] = prefix
            text = prefix + _go_float(value)
            if exemplar is not None:
                text += _exemplar_suffix(exemplar)
            text += "\n"
            lines[ident] = (value, exemplar, text)
            out.append(text)

        chunks: list[bytes] = []
        for name, family in self._families.items():
            spec = family.spec
            if spec.kind == "counter":
                values = counters.get(name)
                if values is None:
                    continue
                out.clear()
                names = self._names(spec)
                for key, value in sorted(values.items()):
                    line(
                        (family.sample, key, None),
                        names,
                        value,
                        None,
                    )
            else:
                observed_by_key = buckets.get(name)
                if observed_by_key is None:
                    continue
                out.clear()
                bucket_name = family.sample + "_bucket"
                family_sums = sums.get(name, {})
                for key, observed in sorted(observed_by_key.items()):
                    cumulative = 0.0
                    for bound, le in family.bounds:
                        cumulative = max(cumulative, observed.get(bound, cumulative))
                        exemplar = exemplars.get((name, key, bound)) if openmetrics else None
                        line(
                            (bucket_name, key, le),
                            spec.labels,
                            cumulative,
                            exemplar,
                        )
                    for suffix, value in (
                        ("_count", cumulative),
                        ("_sum", family_sums.get(key, 0.0)),
                    ):
                        line(
                            (family.sample + suffix, key, None),
                            spec.labels,
                            value,
                            None,
                        )
            chunks.append(family.header[openmetrics])
            chunks.append("".join(out).encode("utf-8"))
        if openmetrics:
            self._lines = (self._lines[0], lines)
        else:
            self._lines = (lines, self._lines[1])
        self._prefixes = new_prefixes
        return b"".join(chunks)


_MISSING: Any = object()


def _labels(names: Sequence[str], key: tuple[str, ...], le: str | None) -> dict[str, str]:
    labels = dict(zip(names, key, strict=True))
    if le is not None:
        labels["le"] = le
    return labels


@dataclass
class _Cached:
    marker: _Marker
    at: float
    body: bytes


class ExpositionCache:
    """The `/metrics` body of `agentwatch serve` (see the module docstring).

    Blocking (it reads the store): call `render` from a worker thread. Thread-safe; concurrent
    calls share one render.

    Args:
        access: the scrape lane's store access.
        budgets: the configured budgets (their gauges are evaluated on every scrape).
        clock: "now" for budgets (tests pin it).
        max_age: seconds a cached rollup body may be served without a visible store change.
        monotonic: the clock of `max_age` (tests drive it).

    Attributes:
        renders: how many times the rollup part was rendered (tests and the curious).
        reads: how many times the rollups were read from the store.
    """

    def __init__(
        self,
        access: StoreAccess,
        budgets: Sequence[Budget] = (),
        clock: Callable[[], float] = time.time,
        max_age: float = DEFAULT_MAX_AGE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._access = access
        self._budgets = tuple(budgets)
        self._clock = clock
        self._max_age = max_age
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._renderer = RollupRenderer()
        self._rows: tuple[_Marker, float, list[RollupRow]] | None = None
        self._bodies: dict[bool, _Cached] = {}
        self.renders = 0
        self.reads = 0

    def render(self, openmetrics: bool = False) -> bytes:
        """The whole body, text format 0.0.4 or OpenMetrics 1.0."""
        with self._lock:
            return self._render(openmetrics)

    def _render(self, openmetrics: bool) -> bytes:
        now = self._clock()
        tick = self._monotonic()
        cached = self._bodies.get(openmetrics)
        rows_cache = self._rows

        def fresh(marker: _Marker, at: float) -> bool:
            return marker == (last_write,) and tick - at < self._max_age

        last_write: float | None = None

        def read(store: Store) -> tuple[list[RollupRow] | None, list[BudgetStatus]]:
            nonlocal last_write
            # The marker first: a write committing during the read below is seen next time.
            last_write = store.last_write_time()
            rows: list[RollupRow] | None = None
            have_body = cached is not None and fresh(cached.marker, cached.at)
            have_rows = rows_cache is not None and fresh(rows_cache[0], rows_cache[1])
            if not have_body and not have_rows:
                rows = store.read_rollups()
            return rows, evaluate_budgets(store, self._budgets, now)

        try:
            rows, statuses = self._access.run(read)
            up = 1.0
        except Exception:  # logged (once, masked) by StoreAccess
            rows, statuses, up, last_write = None, [], 0.0, None
        head: list[Metric] = [_build_info(), _gauge(contract.STORE_UP, up)]
        if last_write is not None:
            head.append(_gauge(contract.LAST_WRITE, last_write))
        parts = [_library_render(head, openmetrics)]
        if up:
            marker: _Marker = (last_write,)
            if rows is not None:
                self.reads += 1
                self._rows = (marker, tick, rows)
            if cached is None or not fresh(cached.marker, cached.at):
                assert self._rows is not None
                body = self._renderer.render(self._rows[2], openmetrics)
                self.renders += 1
                cached = self._bodies[openmetrics] = _Cached(self._rows[0], self._rows[1], body)
            parts.append(cached.body)
            if statuses:
                parts.append(_library_render(budget_families(statuses), openmetrics))
        if openmetrics:
            parts.append(_EOF)
        return b"".join(parts)


def _build_info() -> Metric:
    family = GaugeMetricFamily(
        contract.BUILD_INFO.name, contract.BUILD_INFO.help, labels=list(contract.BUILD_INFO.labels)
    )
    family.add_metric([__version__, platform.python_version()], 1.0)
    return family


def _gauge(spec: contract.MetricSpec, value: float) -> Metric:
    return GaugeMetricFamily(spec.name, spec.help, value=value)

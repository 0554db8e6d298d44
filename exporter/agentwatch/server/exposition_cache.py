"""The `/metrics` body of `agentwatch serve`, rendered incrementally and cached between scrapes.

Why: at 10k series, building prometheus_client families and formatting every sample cost
12-22 us per series (about 200 ms a scrape), paid again by every scrape even when nothing was
written. Here:

- the rollup part of the body (all but a few lines) is kept per format and returned as it is
  while the store's change marker (`Store.last_write_time()`, read BEFORE the rollups so a
  write racing the read only causes one extra render, never a stale cache) is unchanged;
- when the store changed, the table is read as stored (`Store.stored_rollups`: plain tuples,
  no JSON parsing, buckets not cumulated) and compared with the previous read at C speed
  (`RollupIndex`); only label texts never seen before are parsed, only the series whose rows
  changed are formatted again (a histogram is cumulated from its own rows only), and a
  family none of whose series changed keeps its bytes (`RollupRenderer`). The outcome series
  `rollup_families` completes at 0 (`contract.ZERO_FILLED_STATUSES`) are kept with them
  (`RollupIndex.zeros`), re-rendered when a sibling changes. The table has no
  change column, so the read itself (all rows) is the floor of a scrape after a write;
- one lock makes concurrent scrapes share one render: the second waits for the first, then
  finds the cache fresh;
- the small parts (build info, store up, last write, budgets: budgets depend on the clock as
  well as on the store) are rendered by prometheus_client itself on every scrape.

The output is byte for byte what `generate_latest` (text) and the OpenMetrics
`generate_latest` give for the `StoreCollector` of the same store; tests compare them.
"""

from __future__ import annotations

import json
import json.scanner
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import compress
from operator import ne
from typing import Any, NamedTuple

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
from agentwatch.rollups import BUCKET_BOUNDS, cumulative_rows, parse_labels, split_le
from agentwatch.server.collector import budget_families
from agentwatch.server.store_access import StoreAccess
from agentwatch.store.base import Exemplar, Store
from agentwatch.store.queries import StoredRollup
from agentwatch.store_metrics import dimensions_among

_INF = float("inf")
#: Typed aliases of prometheus_client's untyped functions.
_go_float: Callable[[float], str] = floatToGoString
_om_latest: Callable[[Any], bytes] = _om_exposition.generate_latest
_text_latest: Callable[[Any], bytes] = _text_exposition.generate_latest
_EOF = b"# EOF\n"
#: Room for an exemplar's execution id under OpenMetrics' 128-character label limit.
_ROOM = MAX_EXEMPLAR_LABEL_CHARS - len(EXEMPLAR_LABEL)
#: A missing dict entry (None is a value).
_MISSING: Any = object()
#: Escapings whose output equals the default for agentwatch's (legacy-valid) metric names.
_SAME_ESCAPING = frozenset({_om_exposition.UNDERSCORES, _om_exposition.ALLOWUTF8})
#: A cached rollup body is rendered again after this long even without a write (a change
#: the marker cannot see, such as a manual repair of the database, is exposed eventually).
DEFAULT_MAX_AGE = 60.0

_Marker = tuple[float | None]
#: A stored row's identity: (sample, canonical label text).
_Key = tuple[str, str]
#: An exposed group: (family name, label values) of a counter series or a histogram.
_GroupId = tuple[str, tuple[str, ...]]


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


def _parse_le(value: str) -> float:
    return _INF if value == "+Inf" else float(value)


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
class _Family:
    spec: contract.MetricSpec
    sample: str  # counter: name_total; histogram: the base name
    bounds: tuple[tuple[float, str], ...]  # histogram bounds with their `le` text
    header: tuple[bytes, bytes]  # HELP/TYPE lines (text, OpenMetrics)
    #: Stored `le` text -> position in `bounds`, for the writer's own bounds (`cumulative_rows`
    #: walks exactly these, in this order, when a histogram has no other bound).
    slots: dict[str, int]


def _slots(sample: str, bounds: tuple[tuple[float, str], ...]) -> dict[str, int]:
    stored = BUCKET_BOUNDS.get(sample + "_bucket", ())
    if len(stored) != len(bounds):
        return {}
    if any(_parse_le(le) != bound for le, (bound, _) in zip(stored, bounds, strict=True)):
        return {}
    return {le: i for i, le in enumerate(stored)}


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
        result[spec.name] = _Family(spec, sample, bounds, header, _slots(sample, bounds))
    return result


#: Families by name, in exposition order (the contract's).
_FAMILIES = _families()


class _Text(NamedTuple):
    """One stored (sample, label text), parsed once: what the row counts in.

    `kind` is "counter", "bucket" or "sum"; "" for rows `rollup_families` ignores that
    still name attribution dimensions (a gauge, a histogram's `_count`).
    """

    family: str
    kind: str
    labels: dict[str, str]
    extra: tuple[str, ...]  # label names beyond the family's own (attributed families only)
    names: frozenset[str]  # label names but `le`
    #: Buckets: the text around the `le` value (rows sharing it are one stored histogram)
    #: and the position of the `le` value among the family's bounds (-1: another bound).
    series: tuple[str, str] | None = None
    slot: int = -1


_SPECS: dict[str, contract.MetricSpec | None] = {}
#: The scanner `json.loads` runs, without its whitespace checks (`_parse_labels`).
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _parse_labels(text: str) -> dict[str, str]:
    """`rollups.parse_labels`, at twice its speed for what it accepts (a first scrape parses
    every stored label text); anything else goes to it, to fail the same way."""
    try:
        value, end = _scan(text, 0)
    except Exception:
        value, end = None, -1
    if end != len(text) or not isinstance(value, dict):
        return parse_labels(text)
    return {str(k): str(v) for k, v in value.items()}


def _parse(sample: str, text: str) -> _Text | None:
    spec = _SPECS.get(sample, _MISSING)
    if spec is _MISSING:
        spec = _SPECS[sample] = contract.spec_for_sample(sample)
    if spec is None:
        return None
    labels = _parse_labels(text)
    extra = tuple(n for n in labels if n not in spec.labels) if spec.attributed else ()
    kind, series, slot = "", None, -1
    family = _FAMILIES.get(spec.name)
    if family is not None:
        if spec.kind == "counter":
            kind = "counter"
        elif sample.endswith("_bucket"):
            kind = "bucket"
            split = split_le(text)
            if split is not None:
                series = (split[0], split[2])
                if labels.get("le") == split[1]:  # else a second `le` key: leave it odd
                    slot = family.slots.get(split[1], -1)
        elif sample.endswith("_sum"):
            kind = "sum"
    if not kind and not extra:
        return None
    names = frozenset(labels).difference(("le",))
    return _Text(spec.name, kind, labels, extra, names, series, slot)


class _Group:
    """The stored rows of one exposed series (a counter) or label set (a histogram).

    Usually one row for a counter and one per observed bucket plus the sum for a
    histogram; rows whose label texts differ only in labels the exposition does not
    show land in the same group, as `rollup_families` merges them.
    """

    __slots__ = ("prefixes", "rows")

    def __init__(self) -> None:
        self.rows: dict[_Key, StoredRollup] = {}
        self.prefixes: tuple[str, ...] = ()  # sample text up to the value, per line


class RollupIndex:
    """The stored rollup rows, grouped by the series they render, kept up to date from one
    full read of the table per store change.

    `update` finds the rows a write changed by comparing the row tuples with the previous
    read's (C speed), parses only label texts not seen before, and records which groups changed
    for each format's renderer. Attribution dimensions are recounted only when label texts
    appear or disappear; a change of dimensions renames the series of an attributed family,
    so everything is regrouped and both renderers start over (`epoch`).

    Not thread-safe: `ExpositionCache` calls it under its lock.
    """

    def __init__(self) -> None:
        #: Bumped whenever everything was regrouped (renderers then render all).
        self.epoch = 0
        self._clear()

    def _clear(self) -> None:
        self._rows: Sequence[StoredRollup] = ()
        self._present: dict[_Key, StoredRollup] = {}
        self._texts: dict[_Key, _Text | None] = {}
        self._group_of: dict[_Key, _GroupId] = {}
        self._extra_counts: dict[tuple[str, str], int] = {}
        self.groups: dict[_GroupId, _Group] = {}
        #: Outcome series exposed at 0 without rows: a sibling status of their label set
        #: has rows (`contract.ZERO_FILLED_STATUSES`, as `rollup_families` completes them).
        self.zeros: set[_GroupId] = set()
        self.dimensions: dict[str, tuple[str, ...]] = {}
        self._dirty: tuple[set[_GroupId], set[_GroupId]] = (set(), set())
        self._regroup_next = True

    def names(self, family: str) -> tuple[str, ...]:
        """Label names of `family`'s series: its own, then its attribution dimensions."""
        return (*_FAMILIES[family].spec.labels, *self.dimensions.get(family, ()))

    def text(self, key: _Key) -> _Text | None:
        return self._texts[key]

    def take_dirty(self, openmetrics: bool) -> set[_GroupId]:
        """Groups changed since the last call for this format (and forget them)."""
        text, openmetrics_dirty = self._dirty
        if openmetrics:
            self._dirty = (text, set())
            return openmetrics_dirty
        self._dirty = (set(), openmetrics_dirty)
        return text

    def update(self, rows: Sequence[StoredRollup]) -> None:
        """Take the table's rows of a new read (`Store.stored_rollups`)."""
        try:
            self._update(rows)
        except BaseException:
            self._clear()  # half applied: start over with the next read
            raise

    def _update(self, rows: Sequence[StoredRollup]) -> None:
        # Rows come back in the same order while the table only gets updates (SQLite's rowid
        # order; PostgreSQL moves an updated row): compare by position (C speed, memory in
        # order), then match the few rows that differ as sets, so a moved row is no change.
        old = self._rows
        same = min(len(rows), len(old))
        at = list(compress(range(same), map(ne, rows, old)))
        fresh = [rows[i] for i in at] + list(rows[same:])
        stale = [old[i] for i in at] + list(old[same:])
        self._rows = rows
        added = set(fresh).difference(stale)
        gone = set(stale).difference(fresh)
        if not added and not gone and not self._regroup_next:
            return
        present, texts = self._present, self._texts
        arrived = {(row[0], row[1]): row for row in added}
        touched = set(arrived)
        labels_changed = False
        for row in gone:
            key = (row[0], row[1])
            touched.add(key)
            if key not in arrived:  # the row itself is gone (a reset)
                del present[key]
                self._count_extra(texts.pop(key), -1)
                labels_changed = True
        for key, row in arrived.items():
            if key not in texts:
                texts[key] = parsed = _parse(*key)
                self._count_extra(parsed, 1)
                labels_changed = True
            present[key] = row
        if labels_changed or self._regroup_next:
            dimensions = self._dimensions()
            if dimensions != self.dimensions or self._regroup_next:
                self.dimensions = dimensions
                self._regroup()
                return
        groups, group_of = self.groups, self._group_of
        changed: set[_GroupId] = set()
        for key in touched:
            ident = group_of.pop(key, None)
            if ident is not None:
                del groups[ident].rows[key]
                changed.add(ident)
            stored = present.get(key)
            ident = None if stored is None else self._ident(key)
            if ident is not None and stored is not None:
                group = groups.get(ident)
                if group is None:
                    group = groups[ident] = _Group()
                group.rows[key] = stored
                group_of[key] = ident
                changed.add(ident)
        for ident in list(changed):
            group = groups.get(ident)
            if group is not None and not group.rows:
                del groups[ident]
            changed.update(self._refill(ident))
        self._dirty[0].update(changed)
        self._dirty[1].update(changed)

    def _ident(self, key: _Key) -> _GroupId | None:
        text = self._texts[key]
        if text is None or not text.kind:
            return None
        labels = text.labels
        return text.family, tuple(labels.get(n, "") for n in self.names(text.family))

    def _regroup(self) -> None:
        groups: dict[_GroupId, _Group] = {}
        group_of: dict[_Key, _GroupId] = {}
        self.groups, self._group_of = groups, group_of
        for key, row in self._present.items():
            ident = self._ident(key)
            if ident is None:
                continue
            group = groups.get(ident)
            if group is None:
                group = groups[ident] = _Group()
            group.rows[key] = row
            group_of[key] = ident
        self.zeros = set()
        for ident in list(groups):
            self._refill(ident)
        self.epoch += 1
        self._dirty = (set(), set())
        self._regroup_next = False

    def _refill(self, ident: _GroupId) -> tuple[_GroupId, ...]:
        """Bring the zero series of `ident`'s label set up to date with its groups; return
        the outcome series of that label set (to render again), or () if it has none.

        A zero series that gets rows of its own leaves `zeros` and renders its rows in the
        same place (no duplicate line; its value only grows from 0); one whose every
        sibling lost its rows (`clear_all`) goes with them.
        """
        family, key = ident
        siblings = contract.status_siblings(family, key)
        if not siblings:
            return ()
        idents = (ident, *((family, sibling) for sibling in siblings))
        groups, zeros = self.groups, self.zeros
        filled = any(i in groups for i in idents)
        for i in idents:
            if filled and i not in groups:
                zeros.add(i)
            else:
                zeros.discard(i)
        return idents

    def _count_extra(self, text: _Text | None, step: int) -> None:
        if text is None:
            return
        counts = self._extra_counts
        for name in text.extra:
            slot = (text.family, name)
            left = counts.get(slot, 0) + step
            if left:
                counts[slot] = left
            else:
                del counts[slot]

    def _dimensions(self) -> dict[str, tuple[str, ...]]:
        found: dict[str, set[str]] = {}
        for family, name in self._extra_counts:
            found.setdefault(family, set()).add(name)
        return {f: names for f, names in dimensions_among(found).items() if names}


@dataclass(slots=True)
class _View:
    """One family's rendered series in one format: sorted keys and their text."""

    order: list[tuple[str, ...]]
    pos: dict[tuple[str, ...], int]
    chunks: list[str]
    body: bytes


class RollupRenderer:
    """Renders the rollup part of the body in one format as `rollup_families` +
    `attach_exemplars` + prometheus_client would, from a `RollupIndex`.

    Only the groups the index reports changed are formatted again; a family none of whose
    groups changed keeps its bytes; the sort order of a family is recomputed only when
    its set of series changed. Not thread-safe: `ExpositionCache` calls it under its lock.
    """

    def __init__(self, openmetrics: bool) -> None:
        self._openmetrics = openmetrics
        self._epoch = -1
        self._views: dict[str, _View] = {}

    def render(self, index: RollupIndex) -> bytes:
        """The rollup part of the body for the index's current rows."""
        dirty = index.take_dirty(self._openmetrics)
        if self._epoch != index.epoch:
            self._epoch, self._views = index.epoch, {}
            dirty = set(index.groups).union(index.zeros)
        by_family: dict[str, list[tuple[str, ...]]] = {}
        for family, key in dirty:
            by_family.setdefault(family, []).append(key)
        views = self._views
        for family, keys in by_family.items():
            texts = {key: self._group_text(index, family, key) for key in keys}
            view = views.get(family)
            if view is not None and all(
                key in view.pos and text is not None for key, text in texts.items()
            ):
                for key, text in texts.items():
                    view.chunks[view.pos[key]] = text  # type: ignore[assignment]
            else:  # series appeared or went: sort the family again
                shown = {k: t for k, t in texts.items() if t is not None}
                if view is not None:
                    for key, at in view.pos.items():
                        if key not in texts:
                            shown[key] = view.chunks[at]
                if not shown:
                    views.pop(family, None)
                    continue
                order = sorted(shown)
                view = views[family] = _View(
                    order, {k: i for i, k in enumerate(order)}, [shown[k] for k in order], b""
                )
            header = _FAMILIES[family].header[self._openmetrics]
            view.body = header + "".join(view.chunks).encode("utf-8")
        return b"".join(views[f].body for f in _FAMILIES if f in views)

    def _group_text(self, index: RollupIndex, family: str, key: tuple[str, ...]) -> str | None:
        """The lines of one group, or None when it exposes nothing (gone, or a histogram
        without buckets)."""
        group = index.groups.get((family, key))
        fam = _FAMILIES[family]
        if group is None:
            if (family, key) not in index.zeros:
                return None
            prefix = _prefix(fam.sample, _labels(index.names(family), key, None))
            return f"{prefix}{_go_float(0.0)}\n"
        rows = group.rows
        if fam.spec.kind == "counter":
            if not group.prefixes:
                group.prefixes = (_prefix(fam.sample, _labels(index.names(family), key, None)),)
            value = 0.0  # `rollup_families` sums rows of one series, in label text order
            for row_key in sorted(rows) if len(rows) > 1 else rows:
                value += float(rows[row_key][2])
            return f"{group.prefixes[0]}{_go_float(value)}\n"
        return self._histogram_text(index, fam, key, group)

    def _histogram_text(
        self, index: RollupIndex, fam: _Family, key: tuple[str, ...], group: _Group
    ) -> str | None:
        rows = group.rows
        buckets: list[tuple[_Key, _Text]] = []
        sums: list[_Key] = []
        for row_key in rows:
            text = index.text(row_key)
            assert text is not None
            if text.kind == "sum":
                sums.append(row_key)
            else:
                buckets.append((row_key, text))
        if not buckets:
            return None
        # The last sum in label text order, as `rollup_families` keeps it.
        total = float(rows[max(sums)][2]) if sums else 0.0
        names = index.names(fam.spec.name)
        series = buckets[0][1].series
        if series is not None and all(
            t.slot >= 0 and t.series == series for _, t in buckets
        ):  # one stored histogram with the writer's bounds: cumulate here
            observed, exemplars = self._one_histogram(fam, rows, buckets, names)
        else:
            observed, exemplars = self._merged_histograms(fam, rows, buckets, names, index)
        if not group.prefixes:
            group.prefixes = _histogram_prefixes(fam, names, key)
        prefixes = group.prefixes
        out: list[str] = []
        cumulative = 0.0
        for i, seen in enumerate(observed):
            if seen is not None:
                cumulative = max(cumulative, seen)
            line = prefixes[i] + _go_float(cumulative)
            exemplar = exemplars[i]
            if exemplar is not None and self._openmetrics:
                line += _exemplar_suffix(exemplar)
            out.append(line)
        out.append(prefixes[-2] + _go_float(cumulative))
        out.append(prefixes[-1] + _go_float(total))
        out.append("")
        return "\n".join(out)

    @staticmethod
    def _one_histogram(
        fam: _Family,
        rows: dict[_Key, StoredRollup],
        buckets: list[tuple[_Key, _Text]],
        names: tuple[str, ...],
    ) -> tuple[list[float | None], list[Exemplar | None]]:
        """Cumulative value and exemplar per bound of one stored histogram whose rows all
        carry bounds of the contract (what `cumulative_rows` computes for it)."""
        counts = [0.0] * len(fam.bounds)
        exemplars: list[Exemplar | None] = [None] * len(fam.bounds)
        wanted = frozenset(names)
        for row_key, text in buckets:
            row = rows[row_key]
            counts[text.slot] = float(row[2])
            ex_id = row[3]
            if ex_id is not None and len(ex_id) <= _ROOM and text.names == wanted:
                exemplars[text.slot] = Exemplar(ex_id, float(row[4]), float(row[5]))  # type: ignore[arg-type]
        observed: list[float | None] = []
        running = 0.0
        for count in counts:
            running += count
            observed.append(running)
        return observed, exemplars

    @staticmethod
    def _merged_histograms(
        fam: _Family,
        rows: dict[_Key, StoredRollup],
        buckets: list[tuple[_Key, _Text]],
        names: tuple[str, ...],
        index: RollupIndex,
    ) -> tuple[list[float | None], list[Exemplar | None]]:
        """Exactly what `Store.read_rollups` + `rollup_families` + `attach_exemplars` make
        of these rows in the odd cases: bounds the contract does not know, several stored
        label texts exposed as one series (the last in label text order wins a bound)."""
        stored = [(k[0], k[1], rows[k][2], k) for k, _ in buckets]
        observed: dict[float, float] = {}
        exemplars: dict[float, Exemplar] = {}
        wanted = frozenset(names)
        for _, label_text, value, row_key in cumulative_rows(stored):
            if row_key is None:  # a bound with no stored row: its text is new
                labels = _parse_labels(label_text)
                observed[_parse_le(labels.get("le", "+Inf"))] = value
                continue
            text = index.text(row_key)
            assert text is not None
            bound = _parse_le(text.labels.get("le", "+Inf"))
            observed[bound] = value
            row = rows[row_key]
            ex_id = row[3]
            if ex_id is not None and len(ex_id) <= _ROOM and text.names == wanted:
                exemplars[bound] = Exemplar(ex_id, float(row[4]), float(row[5]))  # type: ignore[arg-type]
        return (
            [observed.get(bound) for bound, _ in fam.bounds],
            [exemplars.get(bound) for bound, _ in fam.bounds],
        )


def _histogram_prefixes(
    fam: _Family, names: Sequence[str], key: tuple[str, ...]
) -> tuple[str, ...]:
    """Sample text up to the value of each line of one histogram: buckets, count, sum."""
    parts = sorted(zip(names, key, strict=True))
    before = "".join(f'{k}="{_escape_value(v)}",' for k, v in parts if k < "le")
    after = "".join(f',{k}="{_escape_value(v)}"' for k, v in parts if k > "le")
    sample = fam.sample
    return (
        *(f'{sample}_bucket{{{before}le="{le}"{after}}} ' for _, le in fam.bounds),
        _prefix(sample + "_count", dict(parts)),
        _prefix(sample + "_sum", dict(parts)),
    )


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
        self._index = RollupIndex()
        self._renderers = {False: RollupRenderer(False), True: RollupRenderer(True)}
        # Marker and time of the store read the index holds.
        self._rows: tuple[_Marker, float] | None = None
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

        def read(store: Store) -> tuple[bool, list[BudgetStatus]]:
            nonlocal last_write
            # The marker first: a write committing during the read below is seen next time.
            last_write = store.last_write_time()
            have_body = cached is not None and fresh(cached.marker, cached.at)
            have_rows = rows_cache is not None and fresh(rows_cache[0], rows_cache[1])
            if not have_body and not have_rows:
                # In the store lane, as `read_rollups` parses: a row that cannot be read
                # makes the store down for this scrape, as it does for the collector.
                self._rows = None  # the index changes: not fresh until this read is done
                self._index.update(store.stored_rollups())
                return True, evaluate_budgets(store, self._budgets, now)
            return False, evaluate_budgets(store, self._budgets, now)

        try:
            fresh_read, statuses = self._access.run(read)
            up = 1.0
        except Exception:  # logged (once, masked) by StoreAccess
            fresh_read, statuses, up, last_write = False, [], 0.0, None
        head: list[Metric] = [_build_info(), _gauge(contract.STORE_UP, up)]
        if last_write is not None:
            head.append(_gauge(contract.LAST_WRITE, last_write))
        parts = [_library_render(head, openmetrics)]
        if up:
            marker: _Marker = (last_write,)
            if fresh_read:
                self.reads += 1
                self._rows = (marker, tick)
            if cached is None or not fresh(cached.marker, cached.at):
                assert self._rows is not None
                body = self._renderers[openmetrics].render(self._index)
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

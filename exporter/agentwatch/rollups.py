"""Turn a batch of writer items into one store transaction: raw rows plus rollup deltas.

Runs in the background writer thread, never on the hot path. `RollupBuilder.build` walks
the records once, aggregating into a few dicts keyed by plain tuples (one dict update per
execution or call, `bisect` for histogram buckets); only at the end does it expand those
aggregates into the metric samples of `contract.ROLLUP_METRICS`, grouped by label set
(`LabelSet`), and encode labels as canonical text. The store then decides, inside the same
transaction as the rows, which label sets it admits under its store-wide cap
(`resolve_rollups` folds the others into the `__overflow__` series and counts the folds) and
adds every delta to the cumulative `rollups` table (`value = value + delta`), so exported
counters never go down, survive restarts and outlive retention pruning. Histogram buckets
are stored per bucket (each bucket's own count, rows only for buckets that received
observations) and made cumulative when read (`cumulative_rows`): a batch touching a
histogram adds a few rows instead of rewriting all of its bounds.

Exemplars: each histogram bucket delta carries the latest observation (by its end time) that
fell into that bucket and was made inside an execution: its execution id, value and time.
The store keeps the newest per bucket, and `agentwatch serve` exposes it as the bucket's
OpenMetrics exemplar, so a latency panel links to a run. Latest rather than slowest: within
one bucket the values differ little, a recent run is the one worth opening, and the slowest
runs are found through the highest buckets anyway.

Labelling rules (kept in step with the in-process registry of `metrics.py`):

- an event is labelled with its own `agent` (capture sets it: the calling agent, also for
  calls made inside a tool's execution), else the agent of the `ExecutionFinished` it came
  in; a `LateEvent` without an agent gets `contract.NO_AGENT`;
- the attributed families (`contract.ATTRIBUTED`) also carry each declared attribution
  dimension that has a value; an absent one is left out of the label set (the empty label),
  so runs without a team share the series of runs recorded before `team` was declared. The
  store admits at most `max_values` values per dimension across every writer
  (`fold_values` folds the others into `__overflow__`), before the label-set cap;
- a `Refusal` (an LLM call an enforcing budget refused) counts in
  `llm_refused_requests_total` and has no row;
- a missing model or provider is labelled `unknown`, a missing error class `unknown`;
  label values are cut to `metrics.MAX_LABEL_LENGTH` characters, as in the registry;
- `llm_tokens_total` always gets `input` and `output`, and `cached`/`reasoning` only when
  non-zero, so models without those features do not grow idle series;
- `llm_cost_usd_total` grows by known costs; a call with `cost_usd=None` counts in
  `llm_unpriced_requests_total` instead (never as a silent zero);
- only executions of kind `agent` count in the `executions` metrics; an observed function
  of kind `tool` is counted through the `tool_call` event capture emits for it;
- every record first passes `validation.clean_item` (the rule the in-process metrics get
  from capture): negative, NaN, infinite or absurd numbers and invalid text are repaired in
  the record, so its raw rows and its rollup deltas agree and no counter can go down. For
  records from capture (cleaned when captured) this changes and counts nothing.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentwatch import contract, validation
from agentwatch.audit import AuditEntry
from agentwatch.cardinality import CardinalityGuard
from agentwatch.labels import label_value
from agentwatch.model import Event, ExecutionFinished, LateEvent, Refusal, WriterItem
from agentwatch.store.columns import EVENT_COLUMNS as EVENT_COLUMNS
from agentwatch.store.columns import EXECUTION_COLUMNS as EXECUTION_COLUMNS

if TYPE_CHECKING:
    from agentwatch.config import AttributionDimension

UNKNOWN = "unknown"
#: Bound of the builder's cache of canonical label texts (the label sets are capped anyway).
_MAX_CACHED_TEXTS = 100_000

#: One rollup delta: (sample name, canonical label text, value to add, exemplar execution id,
#: exemplar value, exemplar timestamp); the exemplar fields are None except on histogram
#: buckets that received an observation made inside an execution.
RollupDelta = tuple[str, str, float, str | None, float | None, float | None]
#: The latest observation in one histogram bucket: (timestamp, execution id, value).
Seen = tuple[float, str, float]
#: Decides which label sets the store admits: one flag per label set, in order.
Admit = Callable[[Sequence["LabelSet"]], Sequence[bool]]
#: A self-metric delta from the writer: (metric spec, label values, value to add).
SelfDelta = tuple[contract.MetricSpec, tuple[str, ...], float]


@dataclass(slots=True)
class RollupBatch:
    """Everything one store transaction writes, prepared as parameter tuples.

    Attributes:
        executions: rows in `EXECUTION_COLUMNS` order.
        events: rows in `EVENT_COLUMNS` order, with `seq` already set.
        late_events: rows in `EVENT_COLUMNS` order whose `seq` slot holds the execution id
            again (the store computes the next `seq` in SQL), plus the execution id once
            more at the end (the store marks the event `pending` if that execution is not
            stored yet); inserted after `events`.
        late_totals: `(cost, input, output, cached, reasoning, llm_calls, tool_calls,
            execution_id)` increments applied to executions already stored.
        rollups: deltas added to the cumulative rollup table, one per distinct key, as if
            every label set were admitted; grouped by `label_sets` (see `resolve_rollups`).
        label_sets: the label sets of `rollups`, each owning a slice of it.
        max_label_sets: the store-wide cap on label sets per metric this writer enforces.
        records: number of writer items in the batch.
        overflow: observations folded into the overflow series, per metric family; set by
            the store once the batch is written.
        audit: audit entries of the batch's records; empty unless the audit trail is on.
        attribution_caps: `max_values` of each declared attribution dimension, the
            store-wide cap on its distinct label values this writer enforces (see
            `fold_values`).
        attribution_overflow: runs and calls whose attribution value the store folded into
            `__overflow__`, per dimension; set by the store once the batch is written.
        attribution_decided: the store's `(dimension, value, admitted)` decisions for this
            batch, remembered once it committed.
    """

    executions: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    late_events: list[tuple[Any, ...]] = field(default_factory=list)
    late_totals: list[tuple[Any, ...]] = field(default_factory=list)
    rollups: list[RollupDelta] = field(default_factory=list)
    label_sets: list[LabelSet] = field(default_factory=list)
    max_label_sets: int = 2_000
    records: int = 0
    overflow: dict[str, int] = field(default_factory=dict)
    #: Audit trail entries (`agentwatch.audit`), chained in the batch's transaction.
    audit: list[AuditEntry] = field(default_factory=list)
    attribution_caps: dict[str, int] = field(default_factory=dict)
    #: Rows of sampled-out runs (and their events, late ones included): never inserted,
    #: only added to the hourly aggregates, which count every run.
    sampled_executions: list[tuple[Any, ...]] = field(default_factory=list)
    sampled_events: list[tuple[Any, ...]] = field(default_factory=list)
    attribution_overflow: dict[str, int] = field(default_factory=dict)
    attribution_decided: list[tuple[str, str, bool]] = field(default_factory=list)


def labels_text(names: Sequence[str], values: Sequence[str]) -> str:
    """Canonical text of a label set: compact JSON with sorted keys (the rollup key)."""
    return json.dumps(dict(zip(names, values, strict=True)), sort_keys=True, separators=(",", ":"))


def parse_labels(text: str) -> dict[str, str]:
    """Inverse of `labels_text`."""
    value = json.loads(text)
    return {str(k): str(v) for k, v in value.items()}


def attribution_json(values: dict[str, str]) -> str:
    """The stored form of a run's or call's attribution: compact JSON, sorted keys."""
    if not values:
        return "{}"
    return json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def to_json(value: Any) -> str:
    """Serialise a JSON column; anything not JSON-native is stored as its `str()`."""
    if not value:
        return "{}" if isinstance(value, dict) else json.dumps(value, default=str)
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def _go_float(value: float) -> str:
    """Format a bucket bound exactly as prometheus_client's `floatToGoString` does."""
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


def _le_values(buckets: Sequence[float]) -> tuple[str, ...]:
    return (*(_go_float(b) for b in buckets), "+Inf")


#: Key of one sample delta inside a label set: (sample name, label names, extra label values
#: beyond the family's, i.e. `(le,)` for a bucket and `()` otherwise).
_SampleKey = tuple[str, tuple[str, ...], tuple[str, ...]]


def _newer(current: Seen | None, seen: Seen | None) -> Seen | None:
    """The later of two bucket observations (ties go to the one seen last)."""
    if seen is None:
        return current
    if current is None or seen[0] >= current[0]:
        return seen
    return current


@dataclass(slots=True, eq=False)
class LabelSet:
    """The deltas of one label set of one metric family, admitted or folded as a whole.

    Attributes:
        spec: the metric family.
        labels: its label values (cut to `metrics.MAX_LABEL_LENGTH`), in `names` order.
        names: its label names: the family's own, then the attribution dimensions that have
            a value (an absent dimension is left out, so a run without a team and a run
            recorded before `team` was declared share one series).
        observations: observations behind the deltas (what a fold adds to
            `agentwatch_cardinality_overflow_total`); 0 for self-metric deltas.
        sample: the sample with exactly one store row per admitted label set (`_total` of a
            counter, `_count` of a histogram); the store counts and finds admitted label
            sets through these rows.
        key: canonical label text of that row.
        overflow_key: canonical label text of the family's overflow series.
        start: index of its first row in `RollupBatch.rollups`.
        stop: index after its last row.
        values: the deltas, `_SampleKey` -> `[value, latest bucket observation or None]`.
    """

    spec: contract.MetricSpec
    labels: tuple[str, ...]
    names: tuple[str, ...] = ()
    observations: int = 0
    sample: str = ""
    key: str = ""
    overflow_key: str = ""
    start: int = 0
    stop: int = 0
    values: dict[_SampleKey, list[Any]] = field(default_factory=dict)

    def add(self, key: _SampleKey, value: float, seen: Seen | None = None) -> None:
        slot = self.values.get(key)
        if slot is None:
            self.values[key] = [value, seen]
        else:
            slot[0] += value
            slot[1] = _newer(slot[1], seen)


class _Samples:
    """Expands aggregated observations into labelled sample deltas, grouped by label set."""

    def __init__(
        self, texts: dict[Any, str], clean: dict[tuple[str, ...], tuple[str, ...]] | None = None
    ) -> None:
        self._texts = texts
        self._clean = {} if clean is None else clean
        self._sets: dict[tuple[str, tuple[str, ...], tuple[str, ...]], LabelSet] = {}
        self._le: dict[str, tuple[str, ...]] = {}

    def _set(
        self,
        spec: contract.MetricSpec,
        labels: tuple[str, ...],
        n: int,
        names: tuple[str, ...] | None = None,
    ) -> LabelSet:
        clean = self._clean.get(labels)
        if clean is None:  # label values as exposed, computed once per label set
            clean = self._clean[labels] = tuple(map(label_value, labels))
        labels = clean
        names = spec.labels if names is None else names
        found = self._sets.get((spec.name, names, labels))
        if found is None:
            found = self._sets[(spec.name, names, labels)] = LabelSet(spec, labels, names)
        found.observations += n
        return found

    def counter(
        self,
        spec: contract.MetricSpec,
        labels: tuple[str, ...],
        value: float,
        n: int = 1,
        attribution: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Add `value` to a counter; `attribution` holds the (dimension, value) pairs of an
        attributed family (non-empty values only, in dimension order)."""
        if attribution:
            names = (*spec.labels, *(d for d, _ in attribution))
            labels = (*labels, *(v for _, v in attribution))
            self._set(spec, labels, n, names).add((spec.name + "_total", names, ()), value)
            return
        self._set(spec, labels, n).add((spec.name + "_total", spec.labels, ()), value)

    def histogram(
        self,
        spec: contract.MetricSpec,
        labels: tuple[str, ...],
        counts: list[int],
        total: float,
        seen: Sequence[Seen | None],
    ) -> None:
        """Add per-bucket (non-cumulative, last = above every bound) counts, non-zero only.

        Bucket rows hold each bucket's own count, not the cumulative `le` count: a batch
        adds one row per bucket that received observations instead of rewriting every
        bound (`cumulative_rows` restores the exposition's cumulative form on reading).
        `seen[i]` is the latest observation in bucket `i`: the exemplar of that bucket only
        (OpenMetrics puts an exemplar on the bucket its value falls in).
        """
        n = sum(counts)
        if n == 0:
            return
        target = self._set(spec, labels, n)
        le = self._le.get(spec.name)
        if le is None:
            assert spec.buckets is not None
            le = self._le[spec.name] = _le_values(spec.buckets)
        names = (*spec.labels, "le")
        bucket = spec.name + "_bucket"
        add = target.add if target.values else None  # a fresh set (the rule) needs no merge
        values = target.values
        for bound, count, latest in zip(le, counts, seen, strict=True):
            if not count:
                continue
            if add is None:
                values[(bucket, names, (bound,))] = [float(count), latest]
            else:
                add((bucket, names, (bound,)), float(count), latest)
        target.add((spec.name + "_sum", spec.labels, ()), total)
        target.add((spec.name + "_count", spec.labels, ()), float(n))

    def fold(self, refused: LabelSet) -> None:
        """Add a refused label set's deltas to its family's overflow series (whose every
        own label is `__overflow__` and which has no attribution label)."""
        spec = refused.spec
        self.relabel(refused, spec.labels, (contract.OVERFLOW,) * len(spec.labels))

    def relabel(self, source: LabelSet, names: tuple[str, ...], labels: tuple[str, ...]) -> None:
        """Add `source`'s deltas to the label set `names` = `labels` of the same family."""
        target = self._set(source.spec, labels, source.observations, names)
        width = len(source.names)
        for (sample, key_names, extra), (value, seen) in source.values.items():
            target.add((sample, (*names, *key_names[width:]), extra), value, seen)

    def rows(self) -> tuple[list[RollupDelta], list[LabelSet]]:
        """Every delta as a row, and the label sets owning consecutive slices of them."""
        texts = self._texts
        if len(texts) > _MAX_CACHED_TEXTS:
            texts.clear()
        if len(self._clean) > _MAX_CACHED_TEXTS:
            self._clean.clear()
        rows: list[RollupDelta] = []
        append = rows.append
        families: dict[str, tuple[str, str]] = {}
        sets = list(self._sets.values())
        for s in sets:
            spec, labels = s.spec, s.labels
            s.start = len(rows)
            for (sample, names, extra), (value, seen) in s.values.items():
                key = (names, labels + extra if extra else labels)
                text = texts.get(key)
                if text is None:
                    text = texts[key] = labels_text(*key)
                if seen is None:
                    append((sample, text, value, None, None, None))
                else:
                    append((sample, text, value, seen[1], seen[2], seen[0]))
            s.stop = len(rows)
            family = families.get(spec.name)
            if family is None:
                overflow = labels_text(spec.labels, (contract.OVERFLOW,) * len(spec.labels))
                suffix = "_total" if spec.kind == "counter" else "_count"
                family = families[spec.name] = (spec.name + suffix, overflow)
            s.sample, s.overflow_key = family
            s.key = texts.get((s.names, labels)) or labels_text(s.names, labels)
        return rows, sets


def resolve_rollups(batch: RollupBatch, admit: Admit) -> tuple[list[RollupDelta], dict[str, int]]:
    """The rows to add to the store, once it decided which label sets it admits.

    `admit` receives label sets and returns, in order, whether the store admits each. Rows
    of a refused label set are folded into its family's `__overflow__` series and its
    observations counted in `agentwatch_cardinality_overflow_total{metric}`, whose own label
    sets go through `admit` too (refused ones fold without being counted again). Rows come
    back sorted by key, so concurrent PostgreSQL writers lock rollup rows in one order.

    Returns:
        The rows, and the observations folded per metric family.
    """
    sets = batch.label_sets
    rows: list[RollupDelta] = []
    overflow: dict[str, int] = {}
    folds = _Samples({})
    flags = admit(sets) if sets else ()
    for s, admitted in zip(sets, flags, strict=True):
        if admitted:
            rows.extend(batch.rollups[s.start : s.stop])
        else:
            folds.fold(s)
            overflow[s.spec.name] = overflow.get(s.spec.name, 0) + s.observations
    if overflow:
        counts = _Samples({})
        for metric, n in overflow.items():
            counts.counter(contract.CARDINALITY_OVERFLOW, (metric,), float(n), 0)
        count_rows, count_sets = counts.rows()
        for s, admitted in zip(count_sets, admit(count_sets), strict=True):
            if admitted:
                rows.extend(count_rows[s.start : s.stop])
            else:
                folds.fold(s)
        rows.extend(folds.rows()[0])
    rows.sort(key=_row_key)
    return rows, overflow


def attribution_values(batch: RollupBatch) -> dict[str, set[str]]:
    """The attribution values each dimension takes in the batch's label sets (`__overflow__`
    excepted), for the store to admit under its per-dimension caps."""
    found: dict[str, set[str]] = {}
    for s in batch.label_sets:
        fixed = len(s.spec.labels)
        if len(s.names) > fixed:
            for name, value in zip(s.names[fixed:], s.labels[fixed:], strict=True):
                if value != contract.OVERFLOW:
                    found.setdefault(name, set()).add(value)
    return found


#: Families whose observations count the runs and calls of a fold (one per run or call).
_OBSERVED_ONCE = frozenset({contract.EXECUTIONS.name, contract.LLM_REQUESTS.name})


def fold_values(batch: RollupBatch, refused: set[tuple[str, str]]) -> None:
    """Fold the refused `(dimension, value)` pairs of the batch into `__overflow__`.

    The store decided which attribution values it admits (at most `attribution_caps[d]` per
    dimension across every writer); every label set carrying a refused value is relabelled
    with `__overflow__` in that dimension and merged with the others that now share its
    labels. The runs and calls so folded are counted in
    `agentwatch_attribution_overflow_total{dimension}` (added to the batch, and to
    `batch.attribution_overflow`). Rebuilds `batch.rollups` and `batch.label_sets`.
    """
    samples = _Samples({})
    overflow: dict[str, int] = {}
    for s in batch.label_sets:
        fixed = len(s.spec.labels)
        labels = s.labels
        if len(s.names) > fixed:
            values = list(labels)
            for i in range(fixed, len(labels)):
                if (s.names[i], labels[i]) in refused:
                    values[i] = contract.OVERFLOW
                    if s.spec.name in _OBSERVED_ONCE:
                        overflow[s.names[i]] = overflow.get(s.names[i], 0) + s.observations
            labels = tuple(values)
        samples.relabel(s, s.names, labels)
    for dimension, n in sorted(overflow.items()):
        samples.counter(contract.ATTRIBUTION_OVERFLOW, (dimension,), float(n), 0)
    batch.rollups, batch.label_sets = samples.rows()
    for dimension, n in overflow.items():
        batch.attribution_overflow[dimension] = batch.attribution_overflow.get(dimension, 0) + n


def _row_key(row: RollupDelta) -> tuple[str, str]:
    return row[0], row[1]


#: Sampled-out run ids a builder remembers, so late events of those runs are not stored.
_MAX_SAMPLED_OUT = 100_000

#: Bucket bounds (`le` values) of every histogram kept in the rollups, by bucket sample name.
BUCKET_BOUNDS: dict[str, tuple[str, ...]] = {
    spec.name + "_bucket": _le_values(spec.buckets)
    for spec in contract.ROLLUP_METRICS
    if spec.kind == "histogram" and spec.buckets is not None
}
#: A stored rollup row: (sample, canonical label text, value, anything carried along).
StoredRow = tuple[str, str, float, Any]


def bucket_bound(le: str) -> float:
    """The numeric bound of an `le` label value (`+Inf` and anything odd sort last)."""
    try:
        return float(le)
    except ValueError:
        return float("inf")


def split_le(text: str) -> tuple[str, str, str] | None:
    """Canonical label text around its `le` value: (head, le, tail), or None without one.

    `"le":"` cannot occur inside a JSON string value (its quotes would be escaped), so the
    first occurrence after `{` or `,` is the key itself.
    """
    for opener in ('{"le":"', ',"le":"'):
        at = text.find(opener)
        if at >= 0:
            start = at + len(opener)
            stop = text.index('"', start)
            return text[:start], text[start:stop], text[stop:]
    return None


def cumulative_rows(rows: Iterable[StoredRow], empty: Any = None) -> list[StoredRow]:
    """Stored rows with histogram buckets made cumulative, sorted by sample and labels.

    The store keeps each bucket's own count, and only for buckets that ever received an
    observation; the exposition wants, for every label set of a histogram, one cumulative
    row per bound (`le`), as `prometheus_client` produces them. Each bucket row keeps what
    it carries (its exemplar); a bound with no stored row gets `empty`. Other rows pass
    unchanged. A bound the contract does not know (a store written with other buckets) is
    kept in its numeric place. Works on the canonical label text (no JSON round trip: this
    runs on every scrape).
    """
    result: list[StoredRow] = []
    families: dict[tuple[str, str, str], dict[str, tuple[float, Any]]] = {}
    for row in rows:
        sample = row[0]
        split = split_le(row[1]) if sample in BUCKET_BOUNDS else None
        if split is None:
            result.append(row)
            continue
        head, le, tail = split
        family = families.get((sample, head, tail))
        if family is None:
            family = families[(sample, head, tail)] = {}
        family[le] = (float(row[2]), row[3])
    for (sample, head, tail), buckets in families.items():
        bounds: Iterable[str] = BUCKET_BOUNDS[sample]
        if not buckets.keys() <= set(bounds):
            bounds = sorted(buckets.keys() | set(bounds), key=bucket_bound)
        running = 0.0
        for le in bounds:
            value, carried = buckets.get(le, (0.0, empty))
            running += value
            result.append((sample, f"{head}{le}{tail}", running, carried))
    result.sort(key=lambda row: (row[0], row[1]))
    return result


# Aggregate slots. Executions: (agent, status, error_type, attribution) ->
# [n, dur_sum, counts, seen]
# where seen[i] is the latest observation in bucket i (`Seen` or None).
_EX_N, _EX_SUM, _EX_BUCKETS, _EX_SEEN = 0, 1, 2, 3
# LLM calls: (agent, model, provider, status, error_type, attribution) -> list with these
# slots. `attribution` is the `_attribution_key` of the run or call.
_L_N, _L_IN, _L_OUT, _L_CACHED, _L_REASON, _L_COST, _L_PRICED, _L_UNPRICED = range(8)
_L_DSUM, _L_TSUM, _L_DUR, _L_TTFT, _L_DUR_SEEN, _L_TTFT_SEEN = 8, 9, 10, 11, 12, 13
# Tool calls: (agent, tool, status) -> [n, dur_sum, counts, seen].
_T_N, _T_SUM, _T_BUCKETS, _T_SEEN = 0, 1, 2, 3


class RollupBuilder:
    """Builds `RollupBatch`es for one writer.

    `guard.max_label_sets` is the cap each batch asks the store to enforce store-wide (the
    store, not this process, decides which label sets are admitted; see
    `Store.write_batch`). Not thread-safe: one builder per writer thread.

    Args:
        guard: its `max_label_sets` is the store-wide cap of the rollup metrics.
        report_invalid: counts each value `validation.clean_item` repairs (the writer's
            `record_invalid_value`, so it reaches `agentwatch_invalid_values_total`).
        attribution: the declared attribution dimensions: labels of the attributed
            families, each capped store-wide at its `max_values` (see `fold_values`).
    """

    def __init__(
        self,
        guard: CardinalityGuard,
        *,
        report_invalid: validation.Report | None = None,
        attribution: tuple[AttributionDimension, ...] = (),
    ) -> None:
        self.guard = guard
        self._dimensions = tuple(d.name for d in attribution)
        self._caps = {d.name: d.max_values for d in attribution}
        self._report: validation.Report = report_invalid or validation.count_nothing
        self._texts: dict[Any, str] = {}
        self._clean: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._ex_bounds = contract.EXECUTION_DURATION_BUCKETS
        self._llm_bounds = contract.LLM_DURATION_BUCKETS
        self._ttft_bounds = contract.TTFT_BUCKETS
        self._tool_bounds = contract.TOOL_DURATION_BUCKETS
        #: Ids of recent sampled-out runs (insertion-ordered, bounded): their late events
        #: are counted but not stored.
        self._sampled_out: OrderedDict[str, None] = OrderedDict()

    def build(
        self, items: Iterable[WriterItem], self_deltas: Iterable[SelfDelta] = ()
    ) -> RollupBatch:
        """Prepare rows and rollup deltas for `items` (FIFO order is kept).

        Raises:
            Exception: a record has fields of the wrong type; the writer then isolates the
                offending record and drops it as `invalid`.
        """
        batch = RollupBatch()
        exec_rows = batch.executions
        event_rows = batch.events
        late_rows = batch.late_events
        late_totals = batch.late_totals
        ex_agg: dict[tuple[Any, ...], list[Any]] = {}
        llm_agg: dict[tuple[Any, ...], list[Any]] = {}
        tool_agg: dict[tuple[Any, ...], list[Any]] = {}
        refusals: dict[tuple[str, ...], int] = {}
        sampled_out: dict[str, int] = {}
        attribution_key = self._attribution_key
        ex_bounds = self._ex_bounds
        nex = len(ex_bounds) + 1
        no_agent = contract.NO_AGENT
        records = 0
        report = self._report
        for item in items:
            records += 1
            if type(item) is ExecutionFinished:
                validation.clean_item(item, report)
                ex = item.execution
                agent = ex.agent
                ex_id = ex.id
                totals = [0.0, 0, 0, 0, 0, 0, 0]
                if item.stored:
                    ev_rows, ex_rows_to = event_rows, exec_rows
                else:
                    ev_rows, ex_rows_to = batch.sampled_events, batch.sampled_executions
                    self._remember_sampled_out(ex_id)
                    sampled_out[agent] = sampled_out.get(agent, 0) + 1
                stored = item.stored  # no exemplar may link to a run that is not stored
                for seq, ev in enumerate(ex.events):
                    # An event carries the agent it is billed to (the calling agent inside a
                    # tool's execution), as the in-process metrics label it.
                    ev_rows.append(
                        self._event(
                            ev, ex_id, ev.agent or agent, seq, llm_agg, tool_agg, totals, stored
                        )
                    )
                started = ex.started_at
                ended = ex.ended_at
                duration = None if ended is None else ended - started
                status = ex.status
                arguments = ex.arguments
                attributes = ex.attributes
                ex_rows_to.append(
                    (
                        ex_id, agent, ex.parent_id, ex.kind, status, started, ended, duration,
                        ex.error_type, ex.error_message,
                        None if arguments is None else to_json(arguments),
                        to_json(attributes) if attributes else "{}", *totals,
                        attribution_json(ex.attribution),
                    )
                )  # fmt: skip
                if ex.kind == "agent":
                    key = (
                        agent,
                        status,
                        ex.error_type if status == "failed" else None,
                        attribution_key(ex.attribution),
                    )
                    agg = ex_agg.get(key)
                    if agg is None:
                        agg = ex_agg[key] = [0, 0.0, [0] * nex, [None] * nex]
                    agg[_EX_N] += 1
                    if duration is not None:
                        agg[_EX_SUM] += duration
                        i = bisect_left(ex_bounds, duration)
                        agg[_EX_BUCKETS][i] += 1
                        # Inlined (as below): this runs once per observation.
                        ts = started + duration
                        seen = agg[_EX_SEEN]
                        latest = seen[i]
                        if stored and (latest is None or ts >= latest[0]):
                            seen[i] = (ts, ex_id, duration)
            elif type(item) is LateEvent:
                validation.clean_item(item, report)
                ev = item.event
                agent = ev.agent or no_agent
                totals = [0.0, 0, 0, 0, 0, 0, 0]
                if ev.execution_id is None:
                    event_rows.append(self._event(ev, None, agent, 0, llm_agg, tool_agg, totals))
                elif ev.execution_id in self._sampled_out:
                    row = self._event(
                        ev, ev.execution_id, agent, 0, llm_agg, tool_agg, totals, False
                    )
                    batch.sampled_events.append(row)
                else:
                    row = self._event(ev, ev.execution_id, agent, 0, llm_agg, tool_agg, totals)
                    ex_id = ev.execution_id
                    late_rows.append((*row[:2], ex_id, *row[3:], ex_id))
                    late_totals.append((*totals, ev.execution_id))
            elif type(item) is Refusal:
                validation.clean_item(item, report)
                rkey = (item.budget, item.agent, item.model, item.provider)
                refusals[rkey] = refusals.get(rkey, 0) + 1
            else:
                raise TypeError(f"not a writer item: {type(item).__name__}")
        batch.records = records
        samples = _Samples(self._texts, self._clean)
        self._expand(samples, ex_agg, llm_agg, tool_agg)
        for labels, n in refusals.items():
            samples.counter(contract.LLM_REFUSED, labels, float(n), n)
        for agent, n in sampled_out.items():
            samples.counter(contract.RUNS_SAMPLED_OUT, (agent,), float(n), n)
        for spec, labels, value in self_deltas:
            samples.counter(spec, labels, value, 0)
        batch.rollups, batch.label_sets = samples.rows()
        batch.max_label_sets = self.guard.max_label_sets
        batch.attribution_caps = self._caps
        return batch

    def _remember_sampled_out(self, ex_id: str) -> None:
        """Remember a sampled-out run id (the oldest forgotten past `_MAX_SAMPLED_OUT`)."""
        ids = self._sampled_out
        ids[ex_id] = None
        if len(ids) > _MAX_SAMPLED_OUT:
            ids.popitem(last=False)

    def _attribution_key(self, values: dict[str, str]) -> tuple[tuple[str, str], ...]:
        """The non-empty (dimension, label value) pairs of a run or call, in dimension order.

        Only declared dimensions count; a value is cut and repaired like any label value.
        """
        if not values or not self._dimensions:
            return ()
        return tuple(
            (name, label_value(values[name])) for name in self._dimensions if values.get(name)
        )

    def _event(
        self,
        ev: Event,
        ex_id: str | None,
        agent: str,
        seq: int,
        llm_agg: dict[tuple[Any, ...], list[Any]],
        tool_agg: dict[tuple[Any, ...], list[Any]],
        totals: list[Any],
        exemplar: bool = True,
    ) -> tuple[Any, ...]:
        """Aggregate one event into the call aggregates and totals; return its row."""
        kind = ev.kind
        cost = ev.cost_usd
        if kind == "llm_call":
            status = ev.status
            key = (
                agent,
                ev.model or UNKNOWN,
                ev.provider or UNKNOWN,
                status,
                (ev.error_type or UNKNOWN) if status == "failure" else None,
                self._attribution_key(ev.attribution),
            )
            agg = llm_agg.get(key)
            if agg is None:
                nd, nt = len(self._llm_bounds) + 1, len(self._ttft_bounds) + 1
                agg = llm_agg[key] = [
                    0, 0, 0, 0, 0, 0.0, 0, 0, 0.0, 0.0, [0] * nd, [0] * nt, [None] * nd,
                    [None] * nt,
                ]  # fmt: skip
            agg[_L_N] += 1
            agg[_L_IN] += ev.input_tokens
            agg[_L_OUT] += ev.output_tokens
            agg[_L_CACHED] += ev.cached_tokens
            agg[_L_REASON] += ev.reasoning_tokens
            if cost is None:
                agg[_L_UNPRICED] += 1
            else:
                agg[_L_COST] += cost
                agg[_L_PRICED] += 1
            duration = ev.duration
            if duration is not None:
                agg[_L_DSUM] += duration
                i = bisect_left(self._llm_bounds, duration)
                agg[_L_DUR][i] += 1
                if exemplar and ex_id is not None:
                    ts = ev.started_at + duration
                    seen = agg[_L_DUR_SEEN]
                    latest = seen[i]
                    if latest is None or ts >= latest[0]:
                        seen[i] = (ts, ex_id, duration)
            ttft = ev.time_to_first_token
            if ttft is not None:
                agg[_L_TSUM] += ttft
                i = bisect_left(self._ttft_bounds, ttft)
                agg[_L_TTFT][i] += 1
                if exemplar and ex_id is not None:
                    ts = ev.started_at + ttft
                    seen = agg[_L_TTFT_SEEN]
                    latest = seen[i]
                    if latest is None or ts >= latest[0]:
                        seen[i] = (ts, ex_id, ttft)
            totals[5] += 1
        elif kind == "tool_call":
            tkey = (agent, ev.name, ev.status)
            agg = tool_agg.get(tkey)
            if agg is None:
                nb = len(self._tool_bounds) + 1
                agg = tool_agg[tkey] = [0, 0.0, [0] * nb, [None] * nb]
            agg[_T_N] += 1
            duration = ev.duration
            if duration is not None:
                agg[_T_SUM] += duration
                i = bisect_left(self._tool_bounds, duration)
                agg[_T_BUCKETS][i] += 1
                if exemplar and ex_id is not None:
                    ts = ev.started_at + duration
                    seen = agg[_T_SEEN]
                    latest = seen[i]
                    if latest is None or ts >= latest[0]:
                        seen[i] = (ts, ex_id, duration)
            totals[6] += 1
        if cost is not None:
            totals[0] += cost
        totals[1] += ev.input_tokens
        totals[2] += ev.output_tokens
        totals[3] += ev.cached_tokens
        totals[4] += ev.reasoning_tokens
        attributes = ev.attributes
        return (
            ex_id, agent, seq, kind, ev.name, ev.started_at, ev.duration, ev.status, ev.model,
            ev.provider, ev.input_tokens, ev.output_tokens, ev.cached_tokens,
            ev.reasoning_tokens, cost, ev.time_to_first_token, ev.error_type, ev.error_message,
            to_json(attributes) if attributes else "{}", attribution_json(ev.attribution),
        )  # fmt: skip

    @staticmethod
    def _expand(
        s: _Samples,
        ex_agg: dict[tuple[Any, ...], list[Any]],
        llm_agg: dict[tuple[Any, ...], list[Any]],
        tool_agg: dict[tuple[Any, ...], list[Any]],
    ) -> None:
        c = contract
        # Keyed by the spec's name: hashing a frozen MetricSpec hashes all of its fields.
        hist: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
        specs: dict[str, c.MetricSpec] = {}

        def merge(
            spec: c.MetricSpec,
            labels: tuple[str, ...],
            counts: list[int],
            t: float,
            seen: list[Seen | None],
        ) -> None:
            acc = hist.get((spec.name, labels))
            if acc is None:
                hist[(spec.name, labels)] = [counts, t, list(seen)]
                specs[spec.name] = spec
            else:
                acc[0] = [a + b for a, b in zip(acc[0], counts, strict=True)]
                acc[1] += t
                merged = acc[2]
                for i, b in enumerate(seen):
                    if b is not None:
                        a = merged[i]
                        if a is None or b[0] >= a[0]:
                            merged[i] = b

        for (agent, status, error_type, attribution), agg in ex_agg.items():
            n = agg[_EX_N]
            s.counter(c.EXECUTIONS, (agent, status), float(n), n, attribution)
            if status == "failed":
                s.counter(c.EXECUTION_ERRORS, (agent, error_type or UNKNOWN), float(n), n)
            merge(c.EXECUTION_DURATION, (agent,), agg[_EX_BUCKETS], agg[_EX_SUM], agg[_EX_SEEN])
        for (agent, model, provider, status, error_type, attr), agg in llm_agg.items():
            n = agg[_L_N]
            s.counter(c.LLM_REQUESTS, (agent, model, provider, status), float(n), n, attr)
            if status == "failure":
                s.counter(c.LLM_ERRORS, (agent, model, provider, error_type), float(n), n)
            base = (agent, model, provider)
            s.counter(c.LLM_TOKENS, (*base, "input"), float(agg[_L_IN]), n, attr)
            s.counter(c.LLM_TOKENS, (*base, "output"), float(agg[_L_OUT]), n, attr)
            if agg[_L_CACHED]:
                s.counter(c.LLM_TOKENS, (*base, "cached"), float(agg[_L_CACHED]), n, attr)
            if agg[_L_REASON]:
                s.counter(c.LLM_TOKENS, (*base, "reasoning"), float(agg[_L_REASON]), n, attr)
            if agg[_L_PRICED]:
                s.counter(c.LLM_COST, base, agg[_L_COST], agg[_L_PRICED], attr)
            if agg[_L_UNPRICED]:
                s.counter(c.LLM_UNPRICED, (model, provider), float(agg[_L_UNPRICED]), n)
            merge(c.LLM_DURATION, (model, provider), agg[_L_DUR], agg[_L_DSUM], agg[_L_DUR_SEEN])
            merge(c.LLM_TTFT, (model, provider), agg[_L_TTFT], agg[_L_TSUM], agg[_L_TTFT_SEEN])
        for (agent, tool, status), agg in tool_agg.items():
            n = agg[_T_N]
            s.counter(c.TOOL_CALLS, (agent, tool, status), float(n), n)
            merge(c.TOOL_DURATION, (tool,), agg[_T_BUCKETS], agg[_T_SUM], agg[_T_SEEN])
        for (name, labels), (counts, total, seen) in hist.items():
            s.histogram(specs[name], labels, counts, total, seen)

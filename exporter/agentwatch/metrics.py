"""The in-process Prometheus metrics of an instrumented program.

Every family comes from `contract.py` (name, help, labels, buckets); nothing here invents a
metric. `AgentMetrics` builds them on an injected `CollectorRegistry` so tests use a fresh
one and read it with `get_sample_value()`.

The hot path (one LLM call) is a handful of dict lookups and `inc`/`observe` calls on cached
children: `.labels()` (validation, locking, string joins) runs once per label set. Values
arrive already checked by `validation.py` (capture cleans every record before counting it),
so nothing here re-checks a number. Label values are sanitised once per new label set
(None -> "", at most 128 characters, never a character the exposition cannot encode) and
pass a `CardinalityGuard`; past the cap a metric's new label sets fold into the
`__overflow__` series. A new label set of executions or LLM requests also creates its other
`status` series at 0 (`contract.ZERO_FILLED_STATUSES`), so `rate()` sees the first failure.
Histogram observations made inside an execution carry an `execution_id` exemplar, which
Prometheus sees only through the OpenMetrics exposition.

Self-metrics (queue depth and capacity, drops, store write errors and duration, cardinality
overflow, internal errors, invalid values, build info) are read at scrape time by a custom
collector, from the background writer's `WriterStats` and from counters kept here; the hot
path never touches them.
"""

from __future__ import annotations

import contextlib
import platform
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agentwatch import contract
from agentwatch._version import __version__
from agentwatch.cardinality import CardinalityGuard, ValueCaps
from agentwatch.contract import MetricSpec
from agentwatch.labels import MAX_LABEL_LENGTH as MAX_LABEL_LENGTH
from agentwatch.labels import label_value as label_value

if TYPE_CHECKING:
    from agentwatch.config import AttributionDimension
    from agentwatch.model import Event, Execution

#: Label value of a missing model, provider or error class (same as the store rollups).
UNKNOWN = "unknown"

#: Families `AgentMetrics` records on the hot path (prometheus_client objects).
RECORDED: tuple[MetricSpec, ...] = (
    contract.EXECUTIONS,
    contract.EXECUTION_ERRORS,
    contract.EXECUTION_DURATION,
    contract.LLM_REQUESTS,
    contract.LLM_ERRORS,
    contract.LLM_TOKENS,
    contract.LLM_COST,
    contract.LLM_UNPRICED,
    contract.LLM_DURATION,
    contract.LLM_TTFT,
    contract.TOOL_CALLS,
    contract.TOOL_DURATION,
    contract.LLM_REFUSED,
)
#: Families the scrape-time collector produces.
SELF_METRICS: tuple[MetricSpec, ...] = (
    contract.EVENTS_DROPPED,
    contract.STORE_WRITE_ERRORS,
    contract.STORE_WRITE_DURATION,
    contract.QUEUE_DEPTH,
    contract.QUEUE_CAPACITY,
    contract.CARDINALITY_OVERFLOW,
    contract.ATTRIBUTION_OVERFLOW,
    contract.INTERNAL_ERRORS,
    contract.INVALID_VALUES,
    contract.BUILD_INFO,
)


class WriterStatsLike(Protocol):
    """What the self-metrics collector reads from the background writer (`WriterStats`)."""

    backend: str
    capacity: int

    def queue_depth(self) -> int: ...
    def dropped(self) -> dict[str, int]: ...
    def write_errors(self) -> int: ...
    def write_duration(self) -> tuple[list[int], float, int]: ...
    def cardinality_overflow(self) -> dict[str, int]: ...
    def internal_errors(self) -> dict[str, int]: ...
    def invalid_values(self) -> dict[str, int]: ...


def exemplar_labels(execution_id: str | None, trace_id: str | None) -> dict[str, str] | None:
    """Exemplar labels of one observation: its run and, when tracing is on, its trace.

    A Grafana panel links `execution_id` to the console and `trace_id` to Tempo or Jaeger.
    Both together are 89 characters (`exec_` + 32 hex digits, 32 hex digits and the two
    names), under OpenMetrics' 128-character limit for an exemplar's label set.
    """
    if execution_id is None:
        return None if trace_id is None else {"trace_id": trace_id}
    if trace_id is None:
        return {"execution_id": execution_id}
    return {"execution_id": execution_id, "trace_id": trace_id}


class _Family:
    """One prometheus_client metric plus the cache of its labelled children.

    `fixed` is the number of the contract's own labels; an attributed family carries the
    declared attribution dimensions after them.
    """

    __slots__ = ("cache", "fixed", "metric", "spec", "status_at", "zero_filled")

    def __init__(self, spec: MetricSpec, metric: Any) -> None:
        self.spec = spec
        self.metric = metric
        self.fixed = len(spec.labels)
        self.cache: dict[tuple[Any, ...], Any] = {}
        #: Whether a new label set also creates its other outcome series at 0.
        self.zero_filled = spec.name in contract.ZERO_FILLED_STATUSES
        self.status_at = spec.labels.index("status") if self.zero_filled else -1


class AgentMetrics:
    """Every in-process agentwatch metric, on one registry.

    Thread-safe; every method may be called from any thread or task. Recording methods take
    records that passed `validation.clean_event` / `clean_execution` (capture does it): they
    trust every number.

    Args:
        registry: where the families are registered. Default: prometheus_client's global
            `REGISTRY`, so an application that already serves `/metrics` (its own
            `start_http_server`, a web framework instrumentator) exposes agentwatch's metrics
            with no extra wiring. Tests pass a fresh `CollectorRegistry()`.
        max_label_sets: cap of distinct label sets per metric (see `CardinalityGuard`).
        writer_stats: returns the background writer's stats (or None) at scrape time.
        attribution: the declared attribution dimensions: each is a label of the attributed
            families (`contract.ATTRIBUTED`), capped at its `max_values` (`ValueCaps`).

    Example:
        >>> registry = CollectorRegistry()
        >>> metrics = AgentMetrics(registry)
        >>> registry.get_sample_value("agentwatch_executions_total", {...})
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_label_sets: int = 2_000,
        writer_stats: Callable[[], WriterStatsLike | None] | None = None,
        attribution: tuple[AttributionDimension, ...] = (),
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.guard = CardinalityGuard(max_label_sets)
        self.attribution = attribution
        self.dimensions: tuple[str, ...] = tuple(d.name for d in attribution)
        self.value_caps = ValueCaps(attribution)
        self._internal: dict[str, int] = {}
        self._invalid: dict[str, int] = {}
        self._internal_lock = threading.Lock()
        self._writer_stats = writer_stats
        self._report: Callable[[str], None] | None = None
        self._report_invalid: Callable[[str], None] | None = None
        self._collectors: list[Collector] = []
        families = {spec.name: self._build(spec) for spec in RECORDED}
        self._executions = families[contract.EXECUTIONS.name]
        self._execution_errors = families[contract.EXECUTION_ERRORS.name]
        self._execution_duration = families[contract.EXECUTION_DURATION.name]
        self._llm_requests = families[contract.LLM_REQUESTS.name]
        self._llm_errors = families[contract.LLM_ERRORS.name]
        self._llm_tokens = families[contract.LLM_TOKENS.name]
        self._llm_cost = families[contract.LLM_COST.name]
        self._llm_unpriced = families[contract.LLM_UNPRICED.name]
        self._llm_duration = families[contract.LLM_DURATION.name]
        self._llm_ttft = families[contract.LLM_TTFT.name]
        self._tool_calls = families[contract.TOOL_CALLS.name]
        self._tool_duration = families[contract.TOOL_DURATION.name]
        self._llm_refused = families[contract.LLM_REFUSED.name]
        self_collector = _SelfCollector(self)
        try:
            self.registry.register(self_collector)
        except Exception:
            self.unregister()
            raise
        self._collectors.append(self_collector)

    # -- construction ---------------------------------------------------------------------

    def _build(self, spec: MetricSpec) -> _Family:
        metric: Any
        if spec.kind == "counter":
            labels = contract.labels_with(spec, self.dimensions)
            metric = Counter(spec.name, spec.help, labels, registry=None)
        elif spec.kind == "histogram":
            assert spec.buckets is not None
            metric = Histogram(
                spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=None
            )
        else:  # pragma: no cover - RECORDED holds counters and histograms only
            raise ValueError(f"{spec.name}: {spec.kind} is not recorded on the hot path")
        try:
            self.registry.register(metric)
        except Exception:
            self.unregister()
            raise
        self._collectors.append(metric)
        return _Family(spec, metric)

    def unregister(self) -> None:
        """Remove every agentwatch collector from the registry (before rebuilding)."""
        for collector in self._collectors:
            with contextlib.suppress(KeyError):
                self.registry.unregister(collector)
        self._collectors.clear()

    # -- hot path -------------------------------------------------------------------------

    def _child(self, family: _Family, key: tuple[Any, ...]) -> Any:
        child = family.cache.get(key)
        if child is not None:
            return child
        labels = tuple(label_value(v) for v in key)
        admitted = self.guard.admit(family.spec.name, labels)
        if admitted is not labels and len(labels) > family.fixed:
            # The fold replaces the contract's labels; attribution labels stay absent, as in
            # the store's overflow series.
            admitted = (*admitted[: family.fixed], *("",) * (len(labels) - family.fixed))
        child = family.metric.labels(*admitted)
        if admitted is labels:
            # Folded label sets are not cached: each of their observations must pass the
            # guard again to be counted in agentwatch_cardinality_overflow_total.
            family.cache[key] = child
            if family.zero_filled:
                self._zero_fill(family, key, labels)
        return child

    def _zero_fill(self, family: _Family, key: tuple[Any, ...], labels: tuple[str, ...]) -> None:
        """Create the other outcome series of a new label set, at 0 (`ZERO_FILLED_STATUSES`).

        So the first failure of a new agent or model is an increase from 0 that `rate()`
        sees, not the start of a series. Each such series takes a place under the cardinality
        cap (`CardinalityGuard.reserve`): it is exposed like any other, and the cap bounds
        what Prometheus stores. Past the cap it is not created and no fold is counted (nothing
        was observed); a folded label set (the `__overflow__` series) gets none.
        """
        name = family.spec.name
        at = family.status_at
        for sibling in contract.status_siblings(name, labels):
            raw = (*key[:at], sibling[at], *key[at + 1 :])
            if raw in family.cache or not self.guard.reserve(name, sibling):
                continue
            family.cache[raw] = family.metric.labels(*sibling)

    def _dimension_values(self, attribution: dict[str, str]) -> tuple[str, ...]:
        """The attribution label values of a run or call, each capped (`ValueCaps`)."""
        names = self.dimensions
        if not attribution:
            return ("",) * len(names)
        return self.value_caps.admit(tuple(attribution.get(name, "") for name in names))

    def observe_execution(self, execution: Execution) -> None:
        """Count a finished agent execution: outcome, error class and duration."""
        agent = execution.agent
        status = execution.status
        dims = self._dimension_values(execution.attribution) if self.dimensions else ()
        self._child(self._executions, (agent, status, *dims)).inc()
        if status == "failed":
            self._child(self._execution_errors, (agent, execution.error_type or UNKNOWN)).inc()
        duration = execution.duration
        if duration is not None:
            self._child(self._execution_duration, (agent,)).observe(
                duration, exemplar_labels(execution.id, execution.trace_id)
            )

    def observe_llm_call(self, event: Event, agent: str) -> None:
        """Count one LLM call for `agent` (`none` outside executions).

        `event.cost_usd` None means unpriced (counted in `agentwatch_llm_unpriced_requests`).
        A missing model, provider or error class is labelled `unknown`, as in the store's
        rollups (`rollups.py`), so both expositions agree.
        """
        model = event.model or UNKNOWN
        provider = event.provider or UNKNOWN
        status = event.status
        child = self._child
        dims = self._dimension_values(event.attribution) if self.dimensions else ()
        child(self._llm_requests, (agent, model, provider, status, *dims)).inc()
        if status == "failure":
            child(self._llm_errors, (agent, model, provider, event.error_type or UNKNOWN)).inc()
        tokens = self._llm_tokens
        # input/output series always exist (as in the store rollups); cached/reasoning only
        # once a model uses them, so models without those features grow no idle series.
        child(tokens, (agent, model, provider, "input", *dims)).inc(event.input_tokens)
        child(tokens, (agent, model, provider, "output", *dims)).inc(event.output_tokens)
        if event.cached_tokens > 0:
            child(tokens, (agent, model, provider, "cached", *dims)).inc(event.cached_tokens)
        if event.reasoning_tokens > 0:
            child(tokens, (agent, model, provider, "reasoning", *dims)).inc(event.reasoning_tokens)
        cost = event.cost_usd
        if cost is not None:
            child(self._llm_cost, (agent, model, provider, *dims)).inc(cost)
        else:
            child(self._llm_unpriced, (model, provider)).inc()
        exemplar = exemplar_labels(event.execution_id, event.trace_id)
        duration = event.duration
        if duration is not None:
            child(self._llm_duration, (model, provider)).observe(duration, exemplar)
        ttft = event.time_to_first_token
        if ttft is not None:
            child(self._llm_ttft, (model, provider)).observe(ttft, exemplar)

    def observe_tool_call(self, event: Event, agent: str) -> None:
        """Count one tool call (`event.name` is the tool) made by `agent`."""
        self._child(self._tool_calls, (agent, event.name, event.status)).inc()
        duration = event.duration
        if duration is not None:
            exemplar = exemplar_labels(event.execution_id, event.trace_id)
            self._child(self._tool_duration, (event.name,)).observe(duration, exemplar)

    def observe_refusal(self, budget: str, agent: str, model: str, provider: str) -> None:
        """Count one LLM call an enforcing budget refused (`agentwatch_llm_refused_requests`)."""
        self._child(self._llm_refused, (budget, agent, model, provider)).inc()

    # -- self-metrics ---------------------------------------------------------------------

    def attach(
        self,
        writer_stats: Callable[[], WriterStatsLike | None] | None,
        report_internal_error: Callable[[str], None] | None,
        report_invalid_value: Callable[[str], None] | None = None,
    ) -> None:
        """Point the self-metrics at a (new) background writer.

        Args:
            writer_stats: returns the writer's stats at scrape time.
            report_internal_error: where contained errors are counted instead of locally
                (the writer, so they also reach the store's rollups); None counts here.
            report_invalid_value: the same for repaired values (`count_invalid_value`).
        """
        self._writer_stats = writer_stats
        self._report = report_internal_error
        self._report_invalid = report_invalid_value

    def count_internal_error(self, component: str) -> None:
        """Count an error agentwatch contained (exposed as `agentwatch_internal_errors_total`)."""
        report = self._report
        if report is not None:
            try:
                report(component)
                return
            except Exception:  # the writer is gone: count it here instead
                pass
        with self._internal_lock:
            self._internal[component] = self._internal.get(component, 0) + 1

    def internal_errors(self) -> dict[str, int]:
        """Internal errors counted here so far, by component."""
        with self._internal_lock:
            return dict(self._internal)

    def count_invalid_value(self, field: str) -> None:
        """Count a value `validation.py` repaired (`agentwatch_invalid_values_total{field}`).

        A `validation.Report`: capture passes it to every check. Counted by the writer when
        one is attached (so it reaches the store's rollups), else here.
        """
        report = self._report_invalid
        if report is not None:
            try:
                report(field)
                return
            except Exception:  # the writer is gone: count it here instead
                pass
        with self._internal_lock:
            self._invalid[field] = self._invalid.get(field, 0) + 1

    def invalid_values(self) -> dict[str, int]:
        """Repaired values counted here so far, by field."""
        with self._internal_lock:
            return dict(self._invalid)

    def writer_stats(self) -> WriterStatsLike | None:
        if self._writer_stats is None:
            return None
        return self._writer_stats()


class _SelfCollector(Collector):
    """Builds the self-metric families at scrape time; never touched on the hot path."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics
        self._python = platform.python_version()

    def describe(self) -> Iterable[Metric]:
        # Names only: lets the registry detect duplicates without calling the writer.
        return [
            GaugeMetricFamily(spec.name, spec.help)
            if spec.kind == "gauge"
            else CounterMetricFamily(spec.name, spec.help)
            if spec.kind == "counter"
            else HistogramMetricFamily(spec.name, spec.help)
            for spec in SELF_METRICS
        ]

    def collect(self) -> Iterable[Metric]:
        stats = self._metrics.writer_stats()
        dropped = dict.fromkeys(contract.DROP_REASONS, 0)
        internal = self._metrics.internal_errors()
        invalid = self._metrics.invalid_values()
        overflow = self._metrics.guard.overflow_counts()
        if stats is not None:
            for reason, count in stats.dropped().items():
                dropped[reason] = dropped.get(reason, 0) + count
            for component, count in stats.internal_errors().items():
                internal[component] = internal.get(component, 0) + count
            for name, count in stats.invalid_values().items():
                invalid[name] = invalid.get(name, 0) + count

        spec = contract.EVENTS_DROPPED
        family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        for reason, count in dropped.items():
            family.add_metric([reason], count)
        yield family

        if stats is not None:
            spec = contract.STORE_WRITE_ERRORS
            family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
            family.add_metric([stats.backend], stats.write_errors())
            yield family
            spec = contract.STORE_WRITE_DURATION
            assert spec.buckets is not None
            counts, total, _count = stats.write_duration()
            bounds = [*(floatToGoString(b) for b in spec.buckets), "+Inf"]  # type: ignore[no-untyped-call]
            histogram = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
            histogram.add_metric(
                [stats.backend], list(zip(bounds, (float(c) for c in counts), strict=True)), total
            )
            yield histogram

        spec = contract.QUEUE_DEPTH
        yield GaugeMetricFamily(spec.name, spec.help, value=stats.queue_depth() if stats else 0)
        spec = contract.QUEUE_CAPACITY
        yield GaugeMetricFamily(spec.name, spec.help, value=stats.capacity if stats else 0)

        spec = contract.CARDINALITY_OVERFLOW
        family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        for metric, count in sorted(overflow.items()):
            family.add_metric([metric], count)
        yield family

        spec = contract.ATTRIBUTION_OVERFLOW
        family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        for dimension, count in sorted(self._metrics.value_caps.overflow_counts().items()):
            family.add_metric([dimension], count)
        yield family

        spec = contract.INTERNAL_ERRORS
        family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        for component, count in sorted(internal.items()):
            family.add_metric([component], count)
        yield family

        spec = contract.INVALID_VALUES
        family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        for name, count in sorted(invalid.items()):
            family.add_metric([name], count)
        yield family

        spec = contract.BUILD_INFO
        info = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
        info.add_metric([__version__, self._python], 1)
        yield info

"""The metric contract: every metric agentwatch exposes, defined once.

The in-process registry (`metrics.py`), the store rollups served by `agentwatch serve`, the
documentation (`docs/metrics.md`), the Prometheus rules and the Grafana dashboards are all
checked against this module by tests. Add a metric here first, then document it.

Names follow the Prometheus conventions: `agentwatch_` namespace, base units (`seconds`,
`usd`), counters end in `_total` once exposed, label names in snake_case. Counter names below
are *family* names (without `_total`), as prometheus_client expects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["counter", "histogram", "gauge"]

NAMESPACE = "agentwatch"

#: Label value used when a call happens outside any agent execution.
NO_AGENT = "none"
#: Label value that replaces every label of a series once a metric hit its cardinality cap.
OVERFLOW = "__overflow__"

#: Execution outcomes (`status` label of execution metrics).
EXECUTION_STATUSES = ("completed", "failed")
#: LLM and tool call outcomes (`status` label of call metrics).
CALL_STATUSES = ("success", "failure")
#: Values of the `type` label of `agentwatch_llm_tokens_total`.
TOKEN_TYPES = ("input", "output", "cached", "reasoning")
#: Values of the `reason` label of `agentwatch_events_dropped_total`.
DROP_REASONS = ("queue_full", "store_error", "invalid", "shutdown")
#: Values of the `field` label of `agentwatch_invalid_values_total`: the record fields that
#: `validation.py` repairs (the rule per field is documented in docs/metrics.md).
INVALID_VALUE_FIELDS = (
    "agent", "name", "model", "provider", "error_type", "error_message", "id", "attributes",
    "arguments", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens",
    "cost_usd", "duration", "time_to_first_token", "started_at", "ended_at",
)  # fmt: skip

# Buckets. LLM work spans tens of milliseconds (a cached or tiny completion) to minutes (a
# long reasoning call, a multi-step agent). Prometheus' default buckets stop at 10 s, which
# puts every slow call in +Inf; these keep resolution where SLO thresholds usually sit
# (0.5 s to 30 s) and still bound the tail. See docs/metrics.md for the reasoning.
EXECUTION_DURATION_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
LLM_DURATION_BUCKETS: tuple[float, ...] = (
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
TTFT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0,
)  # fmt: skip
TOOL_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
STORE_WRITE_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


@dataclass(frozen=True)
class MetricSpec:
    """One metric family of the contract.

    Attributes:
        name: family name; counters are exposed with a `_total` suffix.
        kind: counter, histogram or gauge.
        help: the HELP line, one sentence.
        labels: label names, in exposition order.
        buckets: upper bounds for histograms (without +Inf), else None.
        scope: where the metric is exposed: `process` (the in-process registry of an
            instrumented program), `store` (`agentwatch serve`, from the durable store) or
            `both`.
        attributed: the family also carries one label per attribution dimension the
            deployment declares (`attribution:` in the config), after `labels`; a value
            missing from a run or call is the empty (absent) label. See `ATTRIBUTED`.
    """

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    scope: Literal["process", "store", "both"] = "both"
    attributed: bool = False

    @property
    def sample_names(self) -> tuple[str, ...]:
        """Names of the samples this family produces in the text exposition."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


EXECUTIONS = MetricSpec(
    "agentwatch_executions",
    "counter",
    "Agent executions that finished, by agent and outcome.",
    ("agent", "status"),
    attributed=True,
)
EXECUTION_ERRORS = MetricSpec(
    "agentwatch_execution_errors",
    "counter",
    "Failed agent executions, by agent and exception class.",
    ("agent", "error_type"),
)
EXECUTION_DURATION = MetricSpec(
    "agentwatch_execution_duration_seconds",
    "histogram",
    "Wall-clock duration of agent executions.",
    ("agent",),
    EXECUTION_DURATION_BUCKETS,
)
LLM_REQUESTS = MetricSpec(
    "agentwatch_llm_requests",
    "counter",
    "LLM requests, by calling agent, model, provider and outcome.",
    ("agent", "model", "provider", "status"),
    attributed=True,
)
LLM_ERRORS = MetricSpec(
    "agentwatch_llm_errors",
    "counter",
    "Failed LLM requests, by model, provider and error class.",
    ("agent", "model", "provider", "error_type"),
)
LLM_TOKENS = MetricSpec(
    "agentwatch_llm_tokens",
    "counter",
    "Tokens used by LLM requests; type is input, output, cached (a subset of input) or "
    "reasoning (a subset of output).",
    ("agent", "model", "provider", "type"),
    attributed=True,
)
LLM_COST = MetricSpec(
    "agentwatch_llm_cost_usd",
    "counter",
    "Cost of LLM requests in US dollars.",
    ("agent", "model", "provider"),
    attributed=True,
)
LLM_UNPRICED = MetricSpec(
    "agentwatch_llm_unpriced_requests",
    "counter",
    "LLM requests whose cost is unknown (no provider cost, no bundled or configured price).",
    ("model", "provider"),
)
LLM_DURATION = MetricSpec(
    "agentwatch_llm_request_duration_seconds",
    "histogram",
    "Duration of LLM requests, from request to last token.",
    ("model", "provider"),
    LLM_DURATION_BUCKETS,
)
LLM_TTFT = MetricSpec(
    "agentwatch_llm_time_to_first_token_seconds",
    "histogram",
    "Time from request to first streamed token, for streaming LLM requests.",
    ("model", "provider"),
    TTFT_BUCKETS,
)
TOOL_CALLS = MetricSpec(
    "agentwatch_tool_calls",
    "counter",
    "Tool calls, by calling agent, tool and outcome.",
    ("agent", "tool", "status"),
)
TOOL_DURATION = MetricSpec(
    "agentwatch_tool_call_duration_seconds",
    "histogram",
    "Duration of tool calls.",
    ("tool",),
    TOOL_DURATION_BUCKETS,
)

LLM_REFUSED = MetricSpec(
    "agentwatch_llm_refused_requests",
    "counter",
    "LLM requests refused before they were sent because an enforcing budget in their scope "
    "was exhausted, by budget, calling agent, model and provider.",
    ("budget", "agent", "model", "provider"),
)

# Budgets: computed by `agentwatch serve` from the durable store at scrape time.
BUDGET_LIMIT = MetricSpec(
    "agentwatch_budget_limit_usd",
    "gauge",
    "Configured spend limit of a budget for one period.",
    ("budget", "period"),
    scope="store",
)
BUDGET_SPEND = MetricSpec(
    "agentwatch_budget_spend_usd",
    "gauge",
    "Exact spend inside the budget's current calendar period.",
    ("budget", "period"),
    scope="store",
)
BUDGET_PERIOD_START = MetricSpec(
    "agentwatch_budget_period_start_timestamp_seconds",
    "gauge",
    "Start of the budget's current calendar period, as a Unix timestamp.",
    ("budget", "period"),
    scope="store",
)
BUDGET_PERIOD_END = MetricSpec(
    "agentwatch_budget_period_end_timestamp_seconds",
    "gauge",
    "End (exclusive) of the budget's current calendar period, as a Unix timestamp.",
    ("budget", "period"),
    scope="store",
)
BUDGET_REMAINING = MetricSpec(
    "agentwatch_budget_remaining_usd",
    "gauge",
    "Limit minus exact spend in the budget's current calendar period, never below zero.",
    ("budget", "period"),
    scope="store",
)
BUDGET_EXHAUSTION = MetricSpec(
    "agentwatch_budget_projected_exhaustion_timestamp_seconds",
    "gauge",
    "When the spend reaches the limit at the period's average spend rate so far: the scrape "
    "time once reached, the period end when not projected inside the period.",
    ("budget", "period"),
    scope="store",
)

# Self-metrics: the health of the telemetry pipeline itself.
EVENTS_DROPPED = MetricSpec(
    "agentwatch_events_dropped",
    "counter",
    "Telemetry records that were not stored, by reason.",
    ("reason",),
)
STORE_WRITE_ERRORS = MetricSpec(
    "agentwatch_store_write_errors",
    "counter",
    "Failed store write attempts (each failed batch counts once).",
    ("backend",),
)
STORE_WRITE_DURATION = MetricSpec(
    "agentwatch_store_write_duration_seconds",
    "histogram",
    "Duration of one batch transaction of the background writer.",
    ("backend",),
    STORE_WRITE_BUCKETS,
    scope="process",
)
QUEUE_DEPTH = MetricSpec(
    "agentwatch_queue_depth",
    "gauge",
    "Records waiting in the in-process queue for the background writer.",
    scope="process",
)
QUEUE_CAPACITY = MetricSpec(
    "agentwatch_queue_capacity",
    "gauge",
    "Maximum number of records the in-process queue holds before dropping.",
    scope="process",
)
CARDINALITY_OVERFLOW = MetricSpec(
    "agentwatch_cardinality_overflow",
    "counter",
    "Observations folded into the overflow series because a metric hit its label-set cap.",
    ("metric",),
)
INTERNAL_ERRORS = MetricSpec(
    "agentwatch_internal_errors",
    "counter",
    "Errors inside agentwatch that were contained so the host program kept running.",
    ("component",),
)
ATTRIBUTION_OVERFLOW = MetricSpec(
    "agentwatch_attribution_overflow",
    "counter",
    "Runs and LLM requests counted under the __overflow__ value of an attribution dimension "
    "because the dimension reached its max_values.",
    ("dimension",),
)
INVALID_VALUES = MetricSpec(
    "agentwatch_invalid_values",
    "counter",
    "Captured values repaired or dropped because they were invalid (bad text; negative, "
    "NaN, infinite or absurd numbers), by record field; the rest of the record is kept.",
    ("field",),
)
RUNS_SAMPLED_OUT = MetricSpec(
    "agentwatch_runs_sampled_out",
    "counter",
    "Finished runs (agents and tools) whose stored rows were left out by sampling, by the "
    "agent of the run; their metrics are counted in full.",
    ("agent",),
    scope="store",
)
STORE_UP = MetricSpec(
    "agentwatch_store_up",
    "gauge",
    "1 if the last read of the durable store by this server succeeded, else 0.",
    scope="store",
)
LAST_WRITE = MetricSpec(
    "agentwatch_store_last_write_timestamp_seconds",
    "gauge",
    "Time of the most recent batch committed to the durable store by any writer.",
    scope="store",
)
BUILD_INFO = MetricSpec(
    "agentwatch_build_info",
    "gauge",
    "Always 1; labels carry the agentwatch and Python versions.",
    ("version", "python_version"),
)

#: Every metric of the contract, in documentation order.
ALL_METRICS: tuple[MetricSpec, ...] = (
    EXECUTIONS,
    EXECUTION_ERRORS,
    EXECUTION_DURATION,
    LLM_REQUESTS,
    LLM_ERRORS,
    LLM_TOKENS,
    LLM_COST,
    LLM_UNPRICED,
    LLM_DURATION,
    LLM_TTFT,
    TOOL_CALLS,
    TOOL_DURATION,
    LLM_REFUSED,
    BUDGET_LIMIT,
    BUDGET_SPEND,
    BUDGET_PERIOD_START,
    BUDGET_PERIOD_END,
    BUDGET_REMAINING,
    BUDGET_EXHAUSTION,
    EVENTS_DROPPED,
    STORE_WRITE_ERRORS,
    STORE_WRITE_DURATION,
    QUEUE_DEPTH,
    QUEUE_CAPACITY,
    CARDINALITY_OVERFLOW,
    ATTRIBUTION_OVERFLOW,
    INTERNAL_ERRORS,
    INVALID_VALUES,
    RUNS_SAMPLED_OUT,
    STORE_UP,
    LAST_WRITE,
    BUILD_INFO,
)

#: Metrics whose cumulative values live in the store's rollup table (counters and histograms
#: that `agentwatch serve` re-exposes). Self-metrics about drops and write errors are rolled
#: up too, on the next successful batch, so a central scrape sees every process' losses.
ROLLUP_METRICS: tuple[MetricSpec, ...] = (
    EXECUTIONS,
    EXECUTION_ERRORS,
    EXECUTION_DURATION,
    LLM_REQUESTS,
    LLM_ERRORS,
    LLM_TOKENS,
    LLM_COST,
    LLM_UNPRICED,
    LLM_DURATION,
    LLM_TTFT,
    TOOL_CALLS,
    TOOL_DURATION,
    LLM_REFUSED,
    EVENTS_DROPPED,
    STORE_WRITE_ERRORS,
    CARDINALITY_OVERFLOW,
    ATTRIBUTION_OVERFLOW,
    INTERNAL_ERRORS,
    INVALID_VALUES,
    RUNS_SAMPLED_OUT,
)

#: Families that carry the declared attribution dimensions as extra labels: the counters
#: where money and volume are counted. Not the histograms (a dimension with 1,000 values
#: would multiply every bucket), not the error and tool counters.
ATTRIBUTED: tuple[MetricSpec, ...] = tuple(spec for spec in ALL_METRICS if spec.attributed)


def labels_with(spec: MetricSpec, dimensions: tuple[str, ...]) -> tuple[str, ...]:
    """The label names of `spec` in a deployment declaring `dimensions` (in that order)."""
    return (*spec.labels, *dimensions) if spec.attributed else spec.labels


BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in ALL_METRICS}

#: Families whose every outcome series starts at 0: as soon as one `status` of a label set is
#: exposed, the other statuses of the same label set are exposed too, at 0 until counted.
#: Why: Prometheus' `rate()` and `increase()` see a series' first sample as its start, not
#: as an increase, so a `status="failed"` series that appeared at 1 would hide the first
#: failure from the error-ratio rules and alerts (`prometheus/rules/`) until a second one.
#: Both expositions apply it: the in-process registry creates the series (`metrics.py`),
#: `agentwatch serve` adds the missing ones at read time (`store_metrics.py` and
#: `server/exposition_cache.py`), nothing is stored. Tool calls are left out: no rule
#: alerts on their ratio, and every tool would grow an idle series.
ZERO_FILLED_STATUSES: dict[str, tuple[str, ...]] = {
    EXECUTIONS.name: EXECUTION_STATUSES,
    LLM_REQUESTS.name: CALL_STATUSES,
}
_STATUS_AT: dict[str, int] = {
    name: BY_NAME[name].labels.index("status") for name in ZERO_FILLED_STATUSES
}


def status_siblings(family: str, values: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The label values of the other outcome series of `values`' label set.

    `values` are a series' label values in exposition order (the family's own labels first,
    then any attribution dimensions). Empty when `family` is not zero-filled
    (`ZERO_FILLED_STATUSES`) or when the series' status is none of the contract's (the
    `__overflow__` series, a value a newer writer knows): such a series gets no siblings.
    """
    statuses = ZERO_FILLED_STATUSES.get(family)
    if statuses is None:
        return ()
    at = _STATUS_AT[family]
    status = values[at]
    if status not in statuses:
        return ()
    head, tail = values[:at], values[at + 1 :]
    return tuple((*head, other, *tail) for other in statuses if other != status)


def spec_for_sample(sample_name: str) -> MetricSpec | None:
    """Return the family a sample name (`..._total`, `..._bucket`, ...) belongs to."""
    for suffix in ("_total", "_bucket", "_sum", "_count", ""):
        if suffix and not sample_name.endswith(suffix):
            continue
        base = sample_name[: len(sample_name) - len(suffix)] if suffix else sample_name
        spec = BY_NAME.get(base)
        if spec is not None and sample_name in spec.sample_names:
            return spec
    return None


def all_sample_names() -> frozenset[str]:
    """Every sample name the contract allows, for checking rules and dashboards."""
    return frozenset(name for spec in ALL_METRICS for name in spec.sample_names)

"""Recording rules: rates, error ratios, percentiles, SLO windows, budgets, OpenTelemetry names.

Every metric name comes from `agentwatch.contract`, every selector, window and label from the
`MixinConfig`. Names follow `level:metric:operations`, the level being the labels kept
(aggregation labels first), so `aggregation_labels: [cluster]` turns
`agent:agentwatch_executions:rate5m` into `cluster_agent:agentwatch_executions:rate5m` and the
alerts and dashboards, generated from the same config, follow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentwatch import contract
from agentwatch.mixin.config import MixinConfig, seconds
from agentwatch.mixin.promql import Q

# --------------------------------------------------------------------------------------------
# Rule model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """One recording rule."""

    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            rule["labels"] = dict(self.labels)
        return rule


@dataclass(frozen=True)
class Alert:
    """One alerting rule."""

    alert: str
    expr: str
    for_: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.alert, "expr": self.expr}
        if seconds(self.for_) > 0:
            rule["for"] = self.for_
        rule["labels"] = dict(self.labels)
        rule["annotations"] = dict(self.annotations)
        return rule


@dataclass(frozen=True)
class RuleGroup:
    """A Prometheus rule group (evaluated in order, independently of other groups)."""

    name: str
    rules: tuple[Recording | Alert, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rules": [r.to_dict() for r in self.rules]}


# --------------------------------------------------------------------------------------------
# Names (all derived from the contract)
# --------------------------------------------------------------------------------------------

EXECUTIONS_TOTAL = contract.EXECUTIONS.sample_names[0]
EXECUTION_ERRORS_TOTAL = contract.EXECUTION_ERRORS.sample_names[0]
LLM_REQUESTS_TOTAL = contract.LLM_REQUESTS.sample_names[0]
LLM_ERRORS_TOTAL = contract.LLM_ERRORS.sample_names[0]
LLM_TOKENS_TOTAL = contract.LLM_TOKENS.sample_names[0]
LLM_COST_TOTAL = contract.LLM_COST.sample_names[0]
LLM_UNPRICED_TOTAL = contract.LLM_UNPRICED.sample_names[0]
TOOL_CALLS_TOTAL = contract.TOOL_CALLS.sample_names[0]
LLM_REFUSED_TOTAL = contract.LLM_REFUSED.sample_names[0]
EVENTS_DROPPED_TOTAL = contract.EVENTS_DROPPED.sample_names[0]
STORE_WRITE_ERRORS_TOTAL = contract.STORE_WRITE_ERRORS.sample_names[0]

#: The counter and bad-status matcher of each SLO of `MixinConfig.slos`.
SLO_COUNTERS = {
    "executions": (EXECUTIONS_TOTAL, 'status="failed"'),
    "llm_requests": (LLM_REQUESTS_TOTAL, 'status="failure"'),
}
assert "failed" in contract.EXECUTION_STATUSES and "failure" in contract.CALL_STATUSES

QUANTILES = (0.5, 0.95, 0.99)
BUDGET_RATIO = "budget:agentwatch_budget_spend_usd:ratio"
BUDGET_FORECAST = "budget:agentwatch_budget_spend_usd:forecast"

#: Series Prometheus itself produces that rules and dashboards may read.
PROMETHEUS_SERIES = frozenset({"up"})


def base(sample: str) -> str:
    """Family name of a counter sample, as recording-rule names use it (`_total` dropped)."""
    return sample.removesuffix("_total")


def rate_name(q: Q, labels: Sequence[str], sample: str, window: str) -> str:
    return f"{q.level(*labels)}:{base(sample)}:rate{window}"


def error_ratio_name(q: Q, labels: Sequence[str], sample: str, window: str) -> str:
    """Recording rule holding the bad-event ratio of a counter over `window`."""
    return f"{q.level(*labels)}:{base(sample)}_errors:ratio_rate{window}"


def slo_ratio_name(q: Q, key: str, window: str) -> str:
    counter, _ = SLO_COUNTERS[key]
    return error_ratio_name(q, getattr(q.config.slos, key).group_by, counter, window)


def slo_rate_name(q: Q, key: str, window: str) -> str:
    counter, _ = SLO_COUNTERS[key]
    return rate_name(q, getattr(q.config.slos, key).group_by, counter, window)


def quantile_name(q: Q, labels: Sequence[str], family: str, window: str) -> str:
    return f"{q.level(*labels, 'quantile')}:{family}:histogram_quantile_rate{window}"


def bucket_rate_name(q: Q, labels: Sequence[str], family: str, window: str) -> str:
    return f"{q.level(*labels, 'le')}:{family}_bucket:rate{window}"


def cost_baseline_name(q: Q) -> str:
    """Recorded average of the recent cost rate over the baseline window."""
    spike = q.config.cost_spike
    return (
        f"{q.level('agent')}:{base(LLM_COST_TOTAL)}:"
        f"avg_over_time{spike.baseline_window}_rate{spike.window}"
    )


# --------------------------------------------------------------------------------------------
# Recording rules
# --------------------------------------------------------------------------------------------


def ratio_expr(q: Q, counter: str, bad: str, group_by: Sequence[str], window: str) -> str:
    """Bad/total ratio that is 0 (not absent) for series that never had a bad event."""
    by = q.by(*group_by)
    total = f"sum {by} (rate({counter}{q.sel()}[{window}]))"
    return (
        f"(\n  sum {by} (rate({counter}{q.sel(bad)}[{window}]))\n  or\n  {total} * 0\n)\n/\n{total}"
    )


def _rate(q: Q, labels: Sequence[str], sample: str, window: str) -> Recording:
    return Recording(
        rate_name(q, labels, sample, window),
        f"sum {q.by(*labels)} (rate({sample}{q.sel()}[{window}]))",
    )


def _histogram(q: Q, spec: contract.MetricSpec, labels: Sequence[str]) -> list[Recording]:
    w = q.config.rate_window
    bucket_rate = bucket_rate_name(q, labels, spec.name, w)
    rules = [
        Recording(
            bucket_rate, f"sum {q.by(*labels, 'le')} (rate({spec.name}_bucket{q.sel()}[{w}]))"
        )
    ]
    rules += [
        Recording(
            quantile_name(q, labels, spec.name, w),
            f"histogram_quantile({quantile}, {bucket_rate})",
            {"quantile": str(quantile)},
        )
        for quantile in QUANTILES
    ]
    return rules


def _slo_rules(q: Q) -> list[Recording]:
    """Error ratios over every burn-rate window, and event rates over the long windows.

    The event rates feed the minimum-traffic guard of the burn-rate alerts
    (`slos.<slo>.min_events`).
    """
    config = q.config
    rules: list[Recording] = []
    windows = sorted(
        {b.long for b in config.burn_rate_windows}
        | {b.short for b in config.burn_rate_windows}
        | {config.rate_window},
        key=seconds,
    )
    for key, (counter, bad) in SLO_COUNTERS.items():
        slo = getattr(config.slos, key)
        for window in windows:
            rules.append(
                Recording(
                    slo_ratio_name(q, key, window),
                    ratio_expr(q, counter, bad, slo.group_by, window),
                )
            )
        for window in sorted({b.long for b in config.burn_rate_windows}, key=seconds):
            rules.append(_rate(q, slo.group_by, counter, window))
    return rules


def recording_groups(config: MixinConfig) -> list[RuleGroup]:
    """The recording rule groups the alerts, dashboards and ad-hoc queries read."""
    q = Q(config)
    w = config.rate_window
    slo = _slo_rules(q)
    # The SLO group already records some (name, labels) pairs, e.g. the 5m error ratio.
    taken = {(r.record, tuple(sorted(r.labels.items()))) for r in slo}
    main: list[Recording] = []

    def add(rule: Recording) -> None:
        key = (rule.record, tuple(sorted(rule.labels.items())))
        if key not in taken:
            taken.add(key)
            main.append(rule)

    # Agent executions.
    add(_rate(q, ("agent", "status"), EXECUTIONS_TOTAL, w))
    add(_rate(q, ("agent",), EXECUTIONS_TOTAL, w))
    add(
        Recording(
            error_ratio_name(q, ("agent",), EXECUTIONS_TOTAL, w),
            ratio_expr(q, EXECUTIONS_TOTAL, 'status="failed"', ("agent",), w),
        )
    )
    add(_rate(q, ("agent", "error_type"), EXECUTION_ERRORS_TOTAL, w))
    for rule in _histogram(q, contract.EXECUTION_DURATION, ("agent",)):
        add(rule)

    # LLM requests.
    add(_rate(q, ("agent", "model", "provider", "status"), LLM_REQUESTS_TOTAL, w))
    add(_rate(q, ("agent", "model", "provider"), LLM_REQUESTS_TOTAL, w))
    add(_rate(q, ("model", "provider"), LLM_REQUESTS_TOTAL, w))
    for labels in (("agent",), ("model", "provider")):
        add(
            Recording(
                error_ratio_name(q, labels, LLM_REQUESTS_TOTAL, w),
                ratio_expr(q, LLM_REQUESTS_TOTAL, 'status="failure"', labels, w),
            )
        )
    add(_rate(q, ("agent", "model", "provider", "error_type"), LLM_ERRORS_TOTAL, w))
    add(_rate(q, ("agent", "model", "provider", "type"), LLM_TOKENS_TOTAL, w))
    add(_rate(q, ("agent", "model", "provider"), LLM_COST_TOTAL, w))
    for rule in _histogram(q, contract.LLM_DURATION, ("model", "provider")):
        add(rule)
    for rule in _histogram(q, contract.LLM_TTFT, ("model", "provider")):
        add(rule)

    # Tools.
    add(_rate(q, ("agent", "tool", "status"), TOOL_CALLS_TOTAL, w))
    for rule in _histogram(q, contract.TOOL_DURATION, ("tool",)):
        add(rule)

    # Cost spike: the recent rate, and its average over the baseline window. Averaging the
    # recorded rate (instead of rate(...[1d])) uses only the history that exists: rate() over
    # a 1d range with 2h of data divides 2h of spend by 1d and would make every agent look
    # like a spike for the first day after Prometheus starts or an agent appears.
    spike = config.cost_spike
    recent = _rate(q, ("agent",), LLM_COST_TOTAL, spike.window)
    add(recent)
    add(
        Recording(cost_baseline_name(q), f"avg_over_time({recent.record}[{spike.baseline_window}])")
    )

    # Budgets. The spend gauge only grows inside a period and falls back to ~0 when a new
    # period starts; rate() treats that fall as a counter reset, which it is, so the rate
    # stays right across period boundaries (deriv()/predict_linear() would fit a line through
    # the drop). predict_linear() also takes one scalar horizon, while each budget has its
    # own seconds-left-in-period.
    spend = f"{contract.BUDGET_SPEND.name}{q.sel()}"
    limit = f"{contract.BUDGET_LIMIT.name}{q.sel()}"
    end = f"{contract.BUDGET_PERIOD_END.name}{q.sel()}"
    budget = [
        Recording(BUDGET_RATIO, f"{spend}\n/\n{limit}"),
        Recording(
            BUDGET_FORECAST,
            f"{spend}\n+\nrate({spend}[{config.budgets.forecast_window}])\n"
            f"  * clamp_min({end} - time(), 0)",
        ),
    ]
    groups = [
        RuleGroup("agentwatch.recording", tuple(main)),
        RuleGroup("agentwatch.slo", tuple(slo)),
        RuleGroup("agentwatch.budget", tuple(budget)),
        RuleGroup("agentwatch.genai", tuple(genai_rules(config))),
    ]
    attribution = attribution_rules(config)
    if attribution:
        groups.append(RuleGroup("agentwatch.attribution", tuple(attribution)))
    return groups


def attribution_rules(config: MixinConfig) -> list[Recording]:
    """Spend, tokens and requests by each declared attribution dimension (`team:...`).

    Calls without a value for a dimension are summed under the empty label, so the series of
    one dimension add up to the total. The refusals of enforcing budgets are recorded per
    budget alongside.
    """
    q = Q(config)
    w = config.rate_window
    rules: list[Recording] = []
    for dimension in config.attribution:
        rules.append(_rate(q, (dimension,), LLM_COST_TOTAL, w))
        rules.append(_rate(q, (dimension, "type"), LLM_TOKENS_TOTAL, w))
        rules.append(_rate(q, (dimension, "status"), LLM_REQUESTS_TOTAL, w))
        rules.append(_rate(q, (dimension, "status"), EXECUTIONS_TOTAL, w))
    if rules:
        rules.append(_rate(q, ("budget",), LLM_REFUSED_TOTAL, w))
    return rules


# --------------------------------------------------------------------------------------------
# OpenTelemetry GenAI names
# --------------------------------------------------------------------------------------------

_IN_OUT = 'type=~"input|output"'
_SUCCESS = 'status="success"'

#: OpenTelemetry GenAI metric -> (agentwatch histogram, label renames, gen_ai.operation.name).
#: Names as Prometheus spells OTel metrics: dots become underscores, the unit is a suffix.
GENAI_DURATIONS: dict[str, tuple[contract.MetricSpec, tuple[tuple[str, str], ...], str]] = {
    "gen_ai_client_operation_duration_seconds": (
        contract.LLM_DURATION,
        (("gen_ai_request_model", "model"), ("gen_ai_provider_name", "provider")),
        "chat",
    ),
    "gen_ai_invoke_agent_duration_seconds": (
        contract.EXECUTION_DURATION,
        (("gen_ai_agent_name", "agent"),),
        "invoke_agent",
    ),
    "gen_ai_execute_tool_duration_seconds": (
        contract.TOOL_DURATION,
        (("gen_ai_tool_name", "tool"),),
        "execute_tool",
    ),
}

#: The OpenTelemetry advisory bucket boundaries of each duration (GenAI semantic conventions).
GENAI_ADVISED_BUCKETS: dict[str, tuple[float, ...]] = {
    "gen_ai_client_operation_duration_seconds": (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ),
    "gen_ai_invoke_agent_duration_seconds": (
        0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6,
    ),
    "gen_ai_execute_tool_duration_seconds": (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ),
}  # fmt: skip


def _relabel(
    config: MixinConfig, inner: str, renames: Sequence[tuple[str, str]], *, provider: bool
) -> str:
    """Copy agentwatch labels to OpenTelemetry names (mapping provider names).

    Rendered as one `label_replace(` per step on the first line and one replacement per
    following line, so the mapping reads as a table.
    """
    steps = [f'"{new}", "$1", "{old}", "(.*)"' for new, old in renames]
    if provider:
        for litellm_name, otel_name in sorted(config.genai_provider_names.items()):
            steps.append(
                f'"gen_ai_provider_name", "{otel_name}", "provider", "{re.escape(litellm_name)}"'
            )
    lines = ["  " + "label_replace(" * len(steps), f"    {inner},"]
    lines += [f"    {step})," for step in steps[:-1]] + [f"    {steps[-1]})"]
    return "\n".join(lines)


def genai_rules(config: MixinConfig) -> list[Recording]:
    """OpenTelemetry GenAI metric names for dashboards built on those conventions.

    Cumulative copies (not rates) so they behave like OTel series: `rate()` them. The bucket
    boundaries stay agentwatch's: the advisory OTel boundaries are not a subset of them (see
    docs/promql.md), and a histogram cannot be re-bucketed after the fact.
    """
    q = Q(config)
    model = (("gen_ai_request_model", "model"), ("gen_ai_provider_name", "provider"))
    by_model = q.by("gen_ai_request_model", "gen_ai_provider_name")
    chat = {"gen_ai_operation_name": "chat"}
    tokens = _relabel(
        config,
        LLM_TOKENS_TOTAL + q.sel(_IN_OUT),
        (*model, ("gen_ai_token_type", "type")),
        provider=True,
    )
    rules = [
        Recording(
            "gen_ai_client_token_usage_sum",
            f"sum {q.by('gen_ai_request_model', 'gen_ai_provider_name', 'gen_ai_token_type')} (\n"
            f"{tokens}\n)",
            chat,
        )
    ]
    requests = _relabel(config, LLM_REQUESTS_TOTAL + q.sel(_SUCCESS), model, provider=True)
    for token in ("input", "output"):
        rules.append(
            Recording(
                "gen_ai_client_token_usage_count",
                f"sum {by_model} (\n{requests}\n)",
                {**chat, "gen_ai_token_type": token},
            )
        )
    for name, (spec, renames, operation) in GENAI_DURATIONS.items():
        new_labels = [new for new, _ in renames]
        labels = {"gen_ai_operation_name": operation}
        is_llm = spec is contract.LLM_DURATION
        for suffix in ("bucket", "sum", "count"):
            by = q.by(*new_labels, "le") if suffix == "bucket" else q.by(*new_labels)
            inner = _relabel(config, f"{spec.name}_{suffix}{q.sel()}", renames, provider=is_llm)
            rules.append(Recording(f"{name}_{suffix}", f"sum {by} (\n{inner}\n)", labels))
    return rules


def recorded_names(config: MixinConfig) -> frozenset[str]:
    """Every series name the recording rules produce."""
    return frozenset(
        r.record for g in recording_groups(config) for r in g.rules if isinstance(r, Recording)
    )


def allowed_names(config: MixinConfig) -> frozenset[str]:
    """What rules and dashboards may select: the contract, our recordings, `up`."""
    return contract.all_sample_names() | recorded_names(config) | PROMETHEUS_SERIES

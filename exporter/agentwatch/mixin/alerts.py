"""Alerting rules: budgets, SLO burn rates, latency, cost spikes, pipeline health.

Every alert gets, in one place (`_alert`), a `severity` label and the annotations `summary`,
`description`, `runbook_url` (the mixin's `runbook_url` template, by default the console's
`/ui/runbooks#<alert name in lower case>`) and `console_url`: the console page showing what
fired (the failed runs of that agent, that budget, that model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agentwatch import contract
from agentwatch.mixin.config import MixinConfig, seconds
from agentwatch.mixin.promql import Q
from agentwatch.mixin.rules import (
    EVENTS_DROPPED_TOTAL,
    LLM_COST_TOTAL,
    LLM_REFUSED_TOTAL,
    LLM_REQUESTS_TOTAL,
    SLO_COUNTERS,
    STORE_WRITE_ERRORS_TOTAL,
    Alert,
    RuleGroup,
    cost_baseline_name,
    quantile_name,
    rate_name,
    slo_rate_name,
    slo_ratio_name,
)

#: Alert names of the two SLOs of `MixinConfig.slos`.
SLO_ALERTS = {
    "executions": "AgentwatchExecutionErrorBudgetBurn",
    "llm_requests": "AgentwatchLLMErrorBudgetBurn",
}


def _q(label: str) -> str:
    """A label value, escaped for a URL query parameter or path segment."""
    return f"{{{{ $labels.{label} | urlquery }}}}"


def _alert(
    config: MixinConfig,
    name: str,
    expr: str,
    *,
    severity: str,
    summary: str,
    description: str,
    console: str,
    for_: str = "0m",
    labels: Mapping[str, str] | None = None,
) -> Alert:
    """One alert with the annotations every agentwatch alert carries.

    Args:
        console: path under the console URL of the page that shows what fired
            (e.g. `/ui/runs?agent=...&status=failed`).
    """
    return Alert(
        name,
        expr,
        for_,
        {"severity": severity, **(labels or {})},
        {
            "summary": summary,
            "description": description,
            "runbook_url": config.runbook(name),
            "console_url": config.console_url.rstrip("/") + console,
        },
    )


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def budget_alerts(config: MixinConfig) -> list[Alert]:
    """Budget alerts read the raw gauges, not the recorded ratio/forecast.

    Rule groups are evaluated independently, so an alert reading another group's recording
    lags it by up to one evaluation interval; budget alerts are the ones users page on, so
    they compute the (cheap) ratio themselves. A zero limit gives +Inf once anything is spent
    (fires) and NaN while nothing is (silent).
    """
    q, b = Q(config), config.budgets
    spend = f"{contract.BUDGET_SPEND.name}{q.sel()}"
    limit = f"{contract.BUDGET_LIMIT.name}{q.sel()}"
    end = f"{contract.BUDGET_PERIOD_END.name}{q.sel()}"
    ratio = f"{spend}\n/\n{limit}"
    who = "Budget {{ $labels.budget }} ({{ $labels.period }})"
    console = f"/ui/budgets/{_q('budget')}"
    return [
        _alert(
            config,
            "AgentwatchBudgetNearLimit",
            f"{ratio}\n>= {b.warning_ratio:g}",
            severity="warning",
            for_=b.for_,
            summary=f"An LLM spend budget has used {_pct(b.warning_ratio)} of its limit.",
            description=(
                f"{who} has spent {{{{ $value | humanizePercentage }}}} of its limit this period."
            ),
            console=console,
        ),
        _alert(
            config,
            "AgentwatchBudgetExhausted",
            f"{ratio}\n>= {b.critical_ratio:g}",
            severity="critical",
            for_=b.for_,
            summary="An LLM spend budget has reached its limit.",
            description=(
                f"{who} has spent {{{{ $value | humanizePercentage }}}} of its limit this "
                "period; further LLM calls overspend it."
            ),
            console=console,
        ),
        _alert(
            config,
            "AgentwatchBudgetForecastExceeded",
            f"(\n  {spend}\n  +\n  rate({spend}[{b.forecast_window}])\n"
            f"    * clamp_min({end} - time(), 0)\n)\n/\n{limit}\n> 1\n"
            f"and\n{ratio}\n< {b.critical_ratio:g}",
            severity="warning",
            for_=b.forecast_for,
            summary="An LLM spend budget is forecast to exceed its limit before the period ends.",
            description=(
                f"At the spend rate of the last {b.forecast_window}, {who} will reach "
                "{{ $value | humanizePercentage }} of its limit by the end of the period."
            ),
            console=console,
        ),
        _alert(
            config,
            "AgentwatchLLMCallsRefused",
            _new_or_increased(q, LLM_REFUSED_TOTAL, ("budget",), b.refused_window),
            severity="warning",
            summary="An enforcing budget is refusing LLM calls.",
            description=(
                "Budget {{ $labels.budget }} refused {{ $value | humanize }} LLM calls in the "
                f"last {b.refused_window} (job {{{{ $labels.job }}}}): it is spent, and the "
                "agents in its scope get BudgetExceeded until the period ends or the limit "
                "is raised."
            ),
            console=console,
        ),
    ]


def _slo_console(group_by: Sequence[str], key: str) -> str:
    """The console page of what an SLO alert is about."""
    if key == "llm_requests" and "model" in group_by:
        return f"/ui/models/{_q('model')}"
    if "agent" in group_by:
        return f"/ui/runs?agent={_q('agent')}&status=failed"
    return "/ui/runs?status=failed"


def slo_alerts(config: MixinConfig) -> list[Alert]:
    """Multi-window multi-burn-rate alerts with a minimum-traffic guard.

    Both windows must burn faster than `factor` x the budget pace, and the long window must
    hold at least `min_events` events: a quiet agent's single failure is a 25% error ratio
    but not an incident worth a page.
    """
    q = Q(config)
    alerts: list[Alert] = []
    for key, name in SLO_ALERTS.items():
        slo = getattr(config.slos, key)
        if key == "llm_requests":
            parts = [
                f"{{{{ $labels.{label} }}}}"
                for label in ("provider", "model")
                if label in slo.group_by
            ]
            what = "LLM requests" + (f" to {'/'.join(parts)}" if parts else "")
        else:
            what = "runs of agent {{ $labels.agent }}"
        for row in config.burn_rate_windows:
            threshold = f"({row.factor:g} * (1 - {slo.target:g}))"
            expr = (
                f"{slo_ratio_name(q, key, row.long)} > {threshold}\n"
                f"and\n{slo_ratio_name(q, key, row.short)} > {threshold}"
            )
            if slo.min_events > 0:
                expr += (
                    f"\nand\n{slo_rate_name(q, key, row.long)} * {seconds(row.long):g}"
                    f" >= {slo.min_events}"
                )
            kind = "page" if row.severity == "critical" else "ticket"
            alerts.append(
                _alert(
                    config,
                    name,
                    expr,
                    severity=row.severity,
                    for_=row.for_,
                    labels={"slo": key, "long": row.long, "short": row.short},
                    summary=(
                        f"{'Agent executions' if key == 'executions' else 'LLM requests'} "
                        f"are burning their {_pct(slo.target)} SLO error budget too fast "
                        f"({kind})."
                    ),
                    description=(
                        f"{{{{ $value | humanizePercentage }}}} of {what} failed over the last "
                        f"{row.long} (and over {row.short}): {row.factor:g}x the rate that "
                        f"spends the 30-day error budget of the {_pct(slo.target)} SLO."
                    ),
                    console=_slo_console(slo.group_by, key),
                )
            )
    return alerts


def performance_alerts(config: MixinConfig) -> list[Alert]:
    q, lat, spike = Q(config), config.latency, config.cost_spike
    w = config.rate_window
    p95 = quantile_name(q, ("model", "provider"), contract.LLM_DURATION.name, w)
    requests = rate_name(q, ("model", "provider"), LLM_REQUESTS_TOTAL, w)
    recent = rate_name(q, ("agent",), LLM_COST_TOTAL, spike.window)
    return [
        _alert(
            config,
            "AgentwatchLLMLatencyHigh",
            f'{p95}{{quantile="0.95"}} > {lat.llm_p95_seconds:g}\n'
            f"and {q.on('model', 'provider')}\n"
            f"{requests} > {lat.min_request_rate:g}",
            severity="warning",
            for_=lat.for_,
            summary=f"LLM p95 latency is above {lat.llm_p95_seconds:g}s.",
            description=(
                "p95 duration of {{ $labels.provider }}/{{ $labels.model }} requests is "
                "{{ $value | humanizeDuration }} over the last " + w + "."
            ),
            console=f"/ui/models/{_q('model')}",
        ),
        _alert(
            config,
            "AgentwatchCostSpike",
            f"{recent} * 3600 > {spike.min_usd_per_hour:g}\n"
            f"and\n{recent} > {spike.factor:g} * {cost_baseline_name(q)}",
            severity="warning",
            for_=spike.for_,
            summary="An agent's LLM spend rate jumped far above its recent baseline.",
            description=(
                'Agent {{ $labels.agent }} is spending {{ $value | printf "%.2f" }} USD/hour '
                f"over the last {spike.window}, more than {spike.factor:g}x its "
                f"average over the last {spike.baseline_window}."
            ),
            console=f"/ui/agents/{_q('agent')}",
        ),
    ]


def _new_or_increased(q: Q, sample: str, labels: Sequence[str], window: str) -> str:
    """Counter increase over `window`, including a series that first appeared non-zero.

    `increase()` needs two samples, so a counter whose series is created by its first
    increment (prometheus_client creates labelled series lazily) would never alert; the
    `unless ... offset` branch catches sums that did not exist one window ago. Both sum over
    `instance`: `agentwatch serve` exposes the store's totals, and when its pod is replaced the
    same totals come back under a new instance, which must not look like new drops.
    """
    sel = f"{sample}{q.sel()}"
    by = q.by("job", *labels)
    return (
        f"sum {by} (increase({sel}[{window}])) > 0\n"
        f"or\n(sum {by} ({sel}) unless sum {by} ({sel} offset {window})) > 0"
    )


def health_alerts(config: MixinConfig) -> list[Alert]:
    q, h = Q(config), config.health
    up = f"up{q.sel()}"
    return [
        _alert(
            config,
            "AgentwatchTargetDown",
            f"{up} == 0",
            severity="warning",
            for_=h.target_down_for,
            summary="Prometheus cannot scrape an agentwatch target.",
            description=(
                "{{ $labels.instance }} of job {{ $labels.job }} has been down for more than "
                f"{h.target_down_for}; agent metrics, budgets and their alerts are blind."
            ),
            console="/ui/",
        ),
        _alert(
            config,
            "AgentwatchTargetAbsent",
            f"absent({up})",
            severity="warning",
            for_=h.absent_for,
            summary="No agentwatch target is known to Prometheus.",
            description=(
                "Prometheus has had no target of job {{ $labels.job }} for "
                f"{h.absent_for} (no series matches {up}): the scrape job is "
                "missing or discovers no target, so every agentwatch alert is silent."
            ),
            console="/ui/",
        ),
        _alert(
            config,
            "AgentwatchTelemetryDropped",
            _new_or_increased(q, EVENTS_DROPPED_TOTAL, ("reason",), h.error_window),
            severity="warning",
            summary="agentwatch dropped telemetry records.",
            description=(
                "Job {{ $labels.job }} dropped {{ $value | humanize }} records (reason "
                f"{{{{ $labels.reason }}}}) in the last {h.error_window}; they are missing "
                "from the store, the cost figures and the budgets."
            ),
            console="/ui/",
        ),
        _alert(
            config,
            "AgentwatchStoreWriteErrors",
            _new_or_increased(q, STORE_WRITE_ERRORS_TOTAL, ("backend",), h.error_window),
            severity="warning",
            summary="agentwatch fails to write telemetry to its store.",
            description=(
                "{{ $value | humanize }} batch writes to the {{ $labels.backend }} store failed "
                f"in the last {h.error_window} (job {{{{ $labels.job }}}})."
            ),
            console="/ui/",
        ),
        _alert(
            config,
            "AgentwatchStoreUnreadable",
            f"{contract.STORE_UP.name}{q.sel()} == 0",
            severity="warning",
            for_=h.store_down_for,
            summary="agentwatch serve cannot read its store.",
            description=(
                "{{ $labels.instance }} has failed to read the store for more than "
                f"{h.store_down_for}; its counters and budget gauges are stale."
            ),
            console="/ui/",
        ),
    ]


def alert_groups(config: MixinConfig) -> list[RuleGroup]:
    return [
        RuleGroup("agentwatch.budget.alerts", tuple(budget_alerts(config))),
        RuleGroup("agentwatch.slo.alerts", tuple(slo_alerts(config))),
        RuleGroup("agentwatch.performance.alerts", tuple(performance_alerts(config))),
        RuleGroup("agentwatch.health.alerts", tuple(health_alerts(config))),
    ]


#: Every alert name, for the runbook and Alertmanager checks.
def alert_names(config: MixinConfig) -> list[str]:
    return sorted({r.alert for g in alert_groups(config) for r in g.rules if isinstance(r, Alert)})


__all__ = ["SLO_COUNTERS", "alert_groups", "alert_names"]

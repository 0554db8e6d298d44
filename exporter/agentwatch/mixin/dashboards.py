"""The Grafana dashboards, built with the official grafana-foundation-sdk.

Three dashboards (agents, cost and budgets, LLM latency and errors) from one `MixinConfig`,
so their queries, variables and thresholds follow the rules and alerts. They follow Grafana's
dashboard-linter: a `datasource` variable; `job` and `instance` variables (multi-select,
"All" = `.+`) and one per aggregation label (`cluster`); every panel has a title, a
description and a unit; rates use `$__rate_interval`; counters are read only through
`rate()` / `increase()`; raw selectors carry `job=~"$job"` and `instance=~"$instance"`.

Raw query or recording rule, by range:

- Time series, range totals and current values read the raw counters over
  `$__rate_interval` (or `$__range`): Grafana widens `$__rate_interval` with the step, so on
  a 30-day range each point averages its whole step instead of sampling one 5-minute rate,
  and a 10-minute spike stays in the totals instead of falling between two points.
- Fixed-window panels (SLO burn rates over 1h / 6h, the budget forecast) read the recording
  rules, because their window is their meaning; burn rates go through
  `max_over_time(...[$__rate_interval])` so a step longer than the window keeps its worst
  value.

A panel whose metric lacks the label of a dashboard variable (LLM latency has no `agent`)
says so: the generator refuses a panel that ignores a variable without a stated reason, and
appends that reason to the description (and "all agents" to the title).

`grafana_foundation_sdk` is a dev / `mixin` extra: it is imported here only, and this module
only by the generator, never by `import agentwatch`.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from agentwatch import contract
from agentwatch.mixin.config import MixinConfig
from agentwatch.mixin.panels import Board, Link, Target, new_board, threshold_steps
from agentwatch.mixin.promql import metric_names
from agentwatch.mixin.rules import (
    BUDGET_FORECAST,
    BUDGET_RATIO,
    EXECUTION_ERRORS_TOTAL,
    EXECUTIONS_TOTAL,
    LLM_COST_TOTAL,
    LLM_ERRORS_TOTAL,
    LLM_REFUSED_TOTAL,
    LLM_REQUESTS_TOTAL,
    LLM_TOKENS_TOTAL,
    LLM_UNPRICED_TOTAL,
    TOOL_CALLS_TOTAL,
    allowed_names,
    slo_ratio_name,
)

#: Unit of spend rates: Grafana has no money-per-time unit, currencyUSD would hide the "/h".
USD_PER_HOUR = "suffix:USD/h"
#: Dashboard time range handed to the console's runs list.
SINCE_UNTIL = "since=${__from:date:iso}&until=${__to:date:iso}"

_IN_OUT = 'type=~"input|output"'


def _quantile(q: float, by: str, bucket_rate: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}) ({bucket_rate}))"


def _rate(series: str) -> str:
    return f"rate({series}[$__rate_interval])"


def _ratio(bad: str, total: str, by: str) -> str:
    """bad/total per `by`, 0 (not absent) where nothing was bad."""
    grouping = f" by ({by})" if by else ""
    return (
        f"(\n  sum{grouping} ({_rate(bad)})\n  or\n  sum{grouping} ({_rate(total)}) * 0\n)\n/\n"
        f"sum{grouping} ({_rate(total)})"
    )


def _burn_thresholds(config: MixinConfig) -> dashboard_builders.ThresholdsConfig:
    steps: list[tuple[float | None, str]] = [(None, "green")]
    for row in sorted(config.burn_rate_windows, key=lambda r: r.factor):
        if row.factor > 1:
            steps.append((row.factor, "red" if row.severity == "critical" else "orange"))
    return threshold_steps(*steps)


def _burn_windows(config: MixinConfig) -> list[str]:
    """Long windows of the paging burn-rate rows (the ones worth a line on a dashboard)."""
    rows = [r for r in config.burn_rate_windows if r.severity == "critical"]
    return [r.long for r in (rows or list(config.burn_rate_windows))]


_NOT_RECORDED = (
    "it reads a recording rule, which sums every job and instance the mixin selector matches "
    "(list them in aggregation_labels to keep them)."
)


# --------------------------------------------------------------------------------------------
# Dashboards
# --------------------------------------------------------------------------------------------


def agents_dashboard(config: MixinConfig) -> Board:
    executions = EXECUTIONS_TOTAL
    duration = contract.EXECUTION_DURATION.name
    slo = config.slos.executions.target
    success = threshold_steps((None, "red"), (slo - 4 * (1 - slo), "orange"), (slo, "green"))
    board, f = new_board(
        config,
        "agentwatch-agents",
        "agentwatch: Agents overview",
        "Agent runs per second, success rate, run duration percentiles, failures and tool "
        "calls, by agent.",
        ["agents"],
        [("agent", executions)],
    )
    sel = f.raw()
    runs = Link("Runs in this time range", f"/ui/runs?{SINCE_UNTIL}")
    board.row("Overview")
    board.stat(
        "Runs / s",
        "Agent runs finishing per second.",
        Target(f"sum({_rate(executions + sel)})"),
        "ops",
        decimals=2,
        links=[runs],
    )
    board.stat(
        "Success rate",
        f"Share of runs that completed. Green at or above the {slo:.2%} SLO of the mixin.",
        Target("1 - " + _ratio(executions + f.raw('status="failed"'), executions + sel, "")),
        "percentunit",
        thresholds=success,
        decimals=2,
        links=[Link("Failed runs", f"/ui/runs?status=failed&{SINCE_UNTIL}")],
    )
    board.stat(
        "Runs in range",
        "Runs finished during the selected time range.",
        Target(f"sum(increase({executions}{sel}[$__range]))"),
        "short",
        decimals=0,
        graph=False,
        links=[runs],
    )
    board.stat(
        "Run duration p95",
        "95th percentile of run duration across the selected agents.",
        Target(_quantile(0.95, "le", _rate(f"{duration}_bucket{sel}"))),
        "s",
        decimals=2,
    )
    board.row("By agent")
    board.timeseries(
        "Runs / s by agent and outcome",
        "Finished runs per second; `failed` runs raised an exception.",
        [Target(f"sum by (agent, status) ({_rate(executions + sel)})", "{{agent}} {{status}}")],
        "ops",
        stack=True,
        links=[Link("Runs of ${__field.labels.agent}",
                    "/ui/runs?agent=${__field.labels.agent:percentencode}&" + SINCE_UNTIL)],
    )  # fmt: skip
    board.timeseries(
        "Success rate by agent",
        "Share of completed runs per agent; dashed lines mark the SLO.",
        [
            Target(
                "1 - " + _ratio(executions + f.raw('status="failed"'), executions + sel, "agent"),
                "{{agent}}",
            )
        ],
        "percentunit",
        minimum=None,
        maximum=1,
        thresholds=success,
        legend_calcs=("mean", "min", "lastNotNull"),
    )
    board.timeseries(
        "Run duration p50 / p95 / p99 by agent",
        f"Percentiles of wall-clock run duration from the histogram {duration}. Exemplars on "
        "the p95 line open the run in the agentwatch console.",
        [
            Target(
                _quantile(q, "agent, le", _rate(f"{duration}_bucket{sel}")),
                f"{{{{agent}}}} {label}",
                exemplar=label == "p95",
            )
            for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))
        ],
        "s",
    )
    board.timeseries(
        "Failures by error type",
        "Failed runs per second by agent and exception class.",
        [
            Target(
                f"sum by (agent, error_type) ({_rate(EXECUTION_ERRORS_TOTAL + sel)})",
                "{{agent}}: {{error_type}}",
            )
        ],
        "ops",
        bars=True,
        stack=True,
        links=[
            Link(
                "Failed runs of ${__field.labels.agent}",
                "/ui/runs?agent=${__field.labels.agent:percentencode}&status=failed"
                "&error_type=${__field.labels.error_type:percentencode}&" + SINCE_UNTIL,
            )
        ],
    )
    board.bars(
        "Runs in range by agent",
        "Runs finished during the selected time range, busiest first.",
        [
            Target(
                f"sort_desc(sum by (agent) (increase({executions}{sel}[$__range])))",
                "{{agent}}",
                instant=True,
            )
        ],
        "short",
        decimals=0,
        links=[
            Link(
                "Runs of ${__field.labels.agent}",
                "/ui/runs?agent=${__field.labels.agent:percentencode}&" + SINCE_UNTIL,
            )
        ],
    )
    windows = _burn_windows(config)
    board.timeseries(
        "Error budget burn rate by agent",
        f"Burn rate over {', '.join(windows)}: how fast each agent spends its 30-day error "
        f"budget of the {slo:.2%} SLO; 1 spends it in exactly 30 days. Dashed lines are the "
        "alert factors. The worst value of each step is shown, so long ranges keep short "
        "bursts.",
        [
            Target(
                f"max_over_time({slo_ratio_name(f.q, 'executions', w)}"
                f"{f.recorded(config.slos.executions.group_by)}[$__rate_interval])\n"
                f"/ (1 - {slo:g})",
                f"{{{{agent}}}} {w}",
            )
            for w in windows
        ],
        "none",
        thresholds=_burn_thresholds(config),
        ignores={"job": _NOT_RECORDED, "instance": _NOT_RECORDED},
    )
    board.row("Tools")
    board.timeseries(
        "Tool calls / s",
        "Tool calls per second by agent, tool and outcome.",
        [
            Target(
                f"sum by (agent, tool, status) ({_rate(TOOL_CALLS_TOTAL + sel)})",
                "{{agent}} → {{tool}} {{status}}",
            )
        ],
        "ops",
    )
    tool_sel = f.raw(only=contract.TOOL_DURATION.labels)
    board.timeseries(
        "Tool call duration p95 (all agents)",
        "95th percentile duration per tool. Exemplars open the run in the agentwatch console.",
        [
            Target(
                _quantile(
                    0.95, "tool, le", _rate(f"{contract.TOOL_DURATION.name}_bucket{tool_sel}")
                ),
                "{{tool}}",
                exemplar=True,
            )
        ],
        "s",
        ignores={"agent": "the tool duration histogram has no agent label (all agents)."},
    )
    return board


def cost_dashboard(config: MixinConfig) -> Board:
    cost, tokens = LLM_COST_TOTAL, LLM_TOKENS_TOTAL
    warn, crit = config.budgets.warning_ratio, config.budgets.critical_ratio
    board, f = new_board(
        config,
        "agentwatch-cost",
        "agentwatch: Cost and budgets",
        "LLM spend by agent, model and provider, budget burn and end-of-period forecast, "
        "token usage. Costs are USD as computed by agentwatch (provider cost, bundled or "
        "configured prices).",
        ["cost"],
        [("agent", LLM_REQUESTS_TOTAL), ("model", LLM_REQUESTS_TOTAL),
         ("provider", LLM_REQUESTS_TOTAL)],
    )  # fmt: skip
    sel = f.raw()
    budget_reason = (
        "budgets have their own scope (agent, model or provider) in agentwatch's config."
    )
    budget_ignores = {v: budget_reason for v in ("agent", "model", "provider")}
    board.row("Spend")
    board.stat(
        "Spend in range",
        "LLM spend during the selected time range (increase of the cost counter).",
        Target(f"sum(increase({cost}{sel}[$__range]))"),
        "currencyUSD",
        decimals=2,
        graph=False,
        links=[Link("Runs in this time range", f"/ui/runs?{SINCE_UNTIL}")],
    )
    board.stat(
        "Spend rate",
        "Current spend in US dollars per hour.",
        Target(f"sum({_rate(cost + sel)}) * 3600"),
        USD_PER_HOUR,
        decimals=2,
    )
    board.stat(
        "Tokens in range",
        "Input + output tokens during the selected time range.",
        Target(f"sum(increase({tokens}{f.raw(_IN_OUT)}[$__range]))"),
        "short",
        decimals=0,
        graph=False,
    )
    board.stat(
        "Unpriced requests in range (all agents)",
        "LLM requests whose cost is unknown (no provider cost, no bundled or configured "
        "price): their spend is missing above. Add a price in the agentwatch config.",
        Target(
            f"sum(increase({LLM_UNPRICED_TOTAL}{f.raw(only=contract.LLM_UNPRICED.labels)}"
            "[$__range])) or vector(0)"
        ),
        "short",
        thresholds=threshold_steps((None, "green"), (1, "orange")),
        decimals=0,
        graph=False,
        ignores={"agent": "the unpriced-request counter has no agent label (all agents)."},
    )
    board.timeseries(
        "Spend rate by agent",
        "US dollars per hour by calling agent (`none` = calls outside any agent).",
        [Target(f"sum by (agent) ({_rate(cost + sel)}) * 3600", "{{agent}}")],
        USD_PER_HOUR,
        stack=True,
        links=[Link("Agent ${__field.labels.agent}",
                    "/ui/agents/${__field.labels.agent:percentencode}")],
    )  # fmt: skip
    board.timeseries(
        "Spend rate by model",
        "US dollars per hour by model and provider.",
        [
            Target(
                f"sum by (model, provider) ({_rate(cost + sel)}) * 3600",
                "{{model}} ({{provider}})",
            )
        ],
        USD_PER_HOUR,
        stack=True,
        links=[Link("Model ${__field.labels.model}",
                    "/ui/models/${__field.labels.model:percentencode}")],
    )  # fmt: skip
    board.bars(
        "Spend in range by provider",
        "Spend per provider during the selected time range.",
        [
            Target(
                f"sort_desc(sum by (provider) (increase({cost}{sel}[$__range])))",
                "{{provider}}",
                instant=True,
            )
        ],
        "currencyUSD",
        width=8,
        decimals=2,
    )
    board.bars(
        "Top agents by spend in range",
        "The ten agents that spent most during the selected time range.",
        [
            Target(
                f"sort_desc(topk(10, sum by (agent) (increase({cost}{sel}[$__range]))))",
                "{{agent}}",
                instant=True,
            )
        ],
        "currencyUSD",
        width=8,
        decimals=2,
        links=[
            Link(
                "Runs of ${__field.labels.agent}",
                "/ui/runs?agent=${__field.labels.agent:percentencode}&" + SINCE_UNTIL,
            )
        ],
    )
    board.bars(
        "Top models by spend in range",
        "The ten models that cost most during the selected time range.",
        [
            Target(
                f"sort_desc(topk(10, sum by (model) (increase({cost}{sel}[$__range]))))",
                "{{model}}",
                instant=True,
            )
        ],
        "currencyUSD",
        width=8,
        decimals=2,
        links=[Link("Model ${__field.labels.model}",
                    "/ui/models/${__field.labels.model:percentencode}")],
    )  # fmt: skip
    board.row("Budgets")
    budget_sel = f.raw(only=())
    budget_link = [
        Link(
            "Budget ${__field.labels.budget}", "/ui/budgets/${__field.labels.budget:percentencode}"
        )
    ]
    board.bars(
        "Budget used this period",
        "Spend / limit of each budget in its current calendar period (exact, from the store). "
        f"Orange from {warn:.0%}, red from {crit:.0%}: the alert thresholds of the mixin.",
        [Target(f"{BUDGET_RATIO}{budget_sel}", "{{budget}} ({{period}})", instant=True)],
        "percentunit",
        thresholds=threshold_steps((None, "green"), (warn, "orange"), (crit, "red")),
        maximum=crit,
        width=8,
        decimals=1,
        links=budget_link,
        ignores=budget_ignores,
    )
    board.bars(
        "Forecast at period end",
        f"Spend + spend rate over the last {config.budgets.forecast_window} × time left in "
        "the period, as a share of the limit. Above 100% the budget runs out before the "
        "period ends.",
        [
            Target(
                f"{BUDGET_FORECAST}{budget_sel}\n/\n{contract.BUDGET_LIMIT.name}{budget_sel}",
                "{{budget}} ({{period}})",
                instant=True,
            )
        ],
        "percentunit",
        thresholds=threshold_steps((None, "green"), (crit, "red")),
        maximum=crit,
        width=8,
        decimals=1,
        links=budget_link,
        ignores=budget_ignores,
    )
    board.bars(
        "Time left in period",
        "Until each budget's period ends (its spend resets then).",
        [
            Target(
                f"{contract.BUDGET_PERIOD_END.name}{budget_sel} - time()",
                "{{budget}} ({{period}})",
                instant=True,
            )
        ],
        "dtdurations",
        width=8,
        links=budget_link,
        ignores=budget_ignores,
    )
    board.bars(
        "Budget remaining this period",
        "Limit minus exact spend in each budget's current calendar period (never below 0).",
        [
            Target(
                f"{contract.BUDGET_REMAINING.name}{budget_sel}",
                "{{budget}} ({{period}})",
                instant=True,
            )
        ],
        "currencyUSD",
        width=8,
        decimals=2,
        links=budget_link,
        ignores=budget_ignores,
    )
    board.bars(
        "Time until exhausted",
        "Until each budget reaches its limit at its average spend rate of the period so far "
        "(0: spent; the time left in the period when it is not projected to run out).",
        [
            Target(
                f"clamp_min({contract.BUDGET_EXHAUSTION.name}{budget_sel} - time(), 0)",
                "{{budget}} ({{period}})",
                instant=True,
            )
        ],
        "dtdurations",
        width=8,
        links=budget_link,
        ignores=budget_ignores,
    )
    board.timeseries(
        "Refused LLM calls by budget",
        "Calls per second that budgets with enforce: true refused before they were sent "
        "(agentwatch.BudgetExceeded): the agents in the budget's scope are being turned away.",
        [Target(f"sum by (budget) ({_rate(LLM_REFUSED_TOTAL + sel)})", "{{budget}}")],
        "reqps",
        width=8,
        links=budget_link,
    )
    board.timeseries(
        "Budget spend and limit",
        "Spend in the current period against the limit.",
        [
            Target(f"{contract.BUDGET_SPEND.name}{budget_sel}", "{{budget}} ({{period}}) spend"),
            Target(f"{contract.BUDGET_LIMIT.name}{budget_sel}", "{{budget}} ({{period}}) limit"),
        ],
        "currencyUSD",
        width=24,
        legend_calcs=("lastNotNull",),
        links=budget_link,
        ignores=budget_ignores,
    )
    board.row("Tokens")
    board.timeseries(
        "Token rate by type",
        "Tokens per second; cached is a subset of input, reasoning a subset of output.",
        [Target(f"sum by (type) ({_rate(tokens + sel)})", "{{type}}")],
        "short",
    )
    board.timeseries(
        "Token rate by provider",
        "Input + output tokens per second by provider.",
        [Target(f"sum by (provider) ({_rate(tokens + f.raw(_IN_OUT))})", "{{provider}}")],
        "short",
        stack=True,
    )
    board.timeseries(
        "Cost per 1k tokens by model",
        "Average US dollars per 1,000 input + output tokens: spot a model getting more expensive.",
        [
            Target(
                f"sum by (model) ({_rate(cost + sel)}) * 1000\n/\n"
                f"sum by (model) ({_rate(tokens + f.raw(_IN_OUT))})",
                "{{model}}",
            )
        ],
        "currencyUSD",
        width=24,
        decimals=4,
    )
    for dimension in config.attribution:
        _attribution_row(board, f, dimension)
    return board


def _attribution_row(board: Board, f: Any, dimension: str) -> None:
    """Spend and tokens by one attribution dimension (a `team`, `customer` row).

    Calls without a value are shown as `(none)`, so the series add up to the total.
    """
    cost, tokens = LLM_COST_TOTAL, LLM_TOKENS_TOTAL
    sel = f.raw()
    legend = "{{" + dimension + "}}"

    def named(expr: str) -> str:
        return f'label_replace(\n  {expr},\n  "{dimension}", "(none)", "{dimension}", ""\n)'

    board.row(f"Spend and tokens by {dimension}")
    board.bars(
        f"Top {dimension} values by spend in range",
        f"The ten values of the {dimension} attribution dimension that spent most during the "
        "selected time range (pick \"This month so far\" for this month's spend).",
        [
            Target(
                "sort_desc("
                + named(f"topk(10, sum by ({dimension}) (increase({cost}{sel}[$__range])))")
                + ")",
                legend,
                instant=True,
            )
        ],
        "currencyUSD",
        width=8,
        decimals=2,
    )  # fmt: skip
    board.timeseries(
        f"Spend rate by {dimension}",
        f"US dollars per hour by {dimension} (`(none)`: calls without one).",
        [Target(named(f"sum by ({dimension}) ({_rate(cost + sel)}) * 3600"), legend)],
        USD_PER_HOUR,
        width=8,
        stack=True,
    )
    board.timeseries(
        f"Token rate by {dimension}",
        f"Input + output tokens per second by {dimension}.",
        [Target(named(f"sum by ({dimension}) ({_rate(tokens + f.raw(_IN_OUT))})"), legend)],
        "short",
        width=8,
        stack=True,
    )


def llm_dashboard(config: MixinConfig) -> Board:
    duration, ttft = contract.LLM_DURATION.name, contract.LLM_TTFT.name
    requests = LLM_REQUESTS_TOTAL
    threshold = config.latency.llm_p95_seconds
    slo = config.slos.llm_requests.target
    board, f = new_board(
        config,
        "agentwatch-llm",
        "agentwatch: LLM latency and errors",
        "LLM request latency percentiles, time to first token, request and error rates by "
        "error class, and the burn rate of the LLM request SLO.",
        ["llm"],
        [("agent", requests), ("model", requests), ("provider", requests)],
    )
    sel = f.raw()
    failed = f.raw('status="failure"')
    by_model = f.raw(only=contract.LLM_DURATION.labels)
    no_agent = {"agent": "the latency histograms have no agent label (all agents)."}
    board.row("Latency")
    for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        board.stat(
            f"Request duration {label} (all agents)",
            f"{label} of LLM request duration (request to last token) across the selected models.",
            Target(_quantile(q, "le", _rate(f"{duration}_bucket{by_model}"))),
            "s",
            thresholds=threshold_steps((None, "green"), (threshold, "red")),
            decimals=2,
            ignores=no_agent,
        )
    board.stat(
        "Time to first token p95 (all agents)",
        "p95 time from request to first streamed token (streaming requests only).",
        Target(_quantile(0.95, "le", _rate(f"{ttft}_bucket{by_model}"))),
        "s",
        decimals=2,
        ignores=no_agent,
    )
    board.timeseries(
        "Request duration p50 / p95 / p99 by model (all agents)",
        f"From the {duration} histogram; the dashed line is the p95 alert threshold "
        f"({threshold:g}s). Exemplars on the p95 line open the run in the agentwatch console.",
        [
            Target(
                _quantile(q, "model, le", _rate(f"{duration}_bucket{by_model}")),
                f"{{{{model}}}} {label}",
                exemplar=label == "p95",
            )
            for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))
        ],
        "s",
        thresholds=threshold_steps((None, "green"), (threshold, "red")),
        ignores=no_agent,
    )
    board.timeseries(
        "Time to first token p50 / p95 by model (all agents)",
        "Streaming requests: time until the first token arrived. Exemplars on the p95 line "
        "open the run in the agentwatch console.",
        [
            Target(
                _quantile(q, "model, le", _rate(f"{ttft}_bucket{by_model}")),
                f"{{{{model}}}} {label}",
                exemplar=label == "p95",
            )
            for q, label in ((0.5, "p50"), (0.95, "p95"))
        ],
        "s",
        ignores=no_agent,
    )
    board.row("Requests and errors")
    board.timeseries(
        "Requests / s by outcome",
        "LLM requests per second by model and outcome.",
        [Target(f"sum by (model, status) ({_rate(requests + sel)})", "{{model}} {{status}}")],
        "reqps",
        stack=True,
    )
    board.timeseries(
        "Error ratio by model",
        f"Failed / all requests per model; the dashed line is the error rate the {slo:.2%} "
        "SLO allows.",
        [
            Target(
                _ratio(requests + failed, requests + sel, "model, provider"),
                "{{model}} ({{provider}})",
            )
        ],
        "percentunit",
        thresholds=threshold_steps((None, "green"), (1 - slo, "red")),
        links=[Link("Model ${__field.labels.model}",
                    "/ui/models/${__field.labels.model:percentencode}")],
    )  # fmt: skip
    board.timeseries(
        "Errors / s by class",
        "Failed requests per second by model and error class (e.g. RateLimitError, Timeout).",
        [
            Target(
                f"sum by (model, error_type) ({_rate(LLM_ERRORS_TOTAL + sel)})",
                "{{model}}: {{error_type}}",
            )
        ],
        "reqps",
        bars=True,
        stack=True,
    )
    board.bars(
        "Errors in range by class",
        "Failed requests during the selected time range, by error class.",
        [
            Target(
                f"sort_desc(sum by (error_type) (increase({LLM_ERRORS_TOTAL}{sel}[$__range])))",
                "{{error_type}}",
                instant=True,
            )
        ],
        "short",
        decimals=0,
        links=[
            Link(
                "Failed runs with ${__field.labels.error_type}",
                "/ui/runs?status=failed&error_type=${__field.labels.error_type:percentencode}&"
                + SINCE_UNTIL,
            )
        ],
    )
    board.row("SLO")
    group_by = config.slos.llm_requests.group_by
    windows = _burn_windows(config)
    ignores = {"job": _NOT_RECORDED, "instance": _NOT_RECORDED}
    for label in ("agent", "model", "provider"):
        if label not in group_by:
            ignores[label] = f"the LLM request SLO is judged per {', '.join(group_by)}."
    board.timeseries(
        "Error budget burn rate by model" + ("" if "agent" in group_by else " (all agents)"),
        f"Burn rate over {', '.join(windows)}: how fast each model spends the 30-day error "
        f"budget of the {slo:.2%} LLM request SLO; 1 spends it in exactly 30 days. Dashed "
        "lines are the alert factors. The worst value of each step is shown, so long ranges "
        "keep short bursts.",
        [
            Target(
                f"max_over_time({slo_ratio_name(f.q, 'llm_requests', w)}"
                f"{f.recorded(group_by)}[$__rate_interval])\n/ (1 - {slo:g})",
                " ".join(f"{{{{{label}}}}}" for label in group_by) + f" {w}",
            )
            for w in windows
        ],
        "none",
        thresholds=_burn_thresholds(config),
        ignores=ignores,
    )
    board.stat(
        "Error budget spent in range",
        f"Failed share of requests in the selected range divided by the {1 - slo:.2%} the "
        "SLO allows: above 100% the range alone used more than its share of the budget.",
        Target(
            f"sum(increase({requests}{failed}[$__range]))\n/\n"
            f"sum(increase({requests}{sel}[$__range]))\n/ (1 - {slo:g})"
        ),
        "percentunit",
        thresholds=threshold_steps((None, "green"), (0.5, "orange"), (1, "red")),
        width=12,
        height=8,
        decimals=1,
    )
    return board


DASHBOARDS = {
    "agentwatch-agents.json": agents_dashboard,
    "agentwatch-cost.json": cost_dashboard,
    "agentwatch-llm.json": llm_dashboard,
}


def build(config: MixinConfig) -> dict[str, dict[str, Any]]:
    """Every dashboard as the JSON object Grafana loads: {file name: dashboard}.

    Raises:
        ValueError: a query reads a metric outside the contract and the bundle's rules.
    """
    allowed = allowed_names(config)
    result: dict[str, dict[str, Any]] = {}
    for name, factory in DASHBOARDS.items():
        board = factory(config)
        for expr in board.queries:
            unknown = metric_names(expr) - allowed
            if unknown:
                raise ValueError(f"{name}: query reads unknown metrics {sorted(unknown)}: {expr}")
        encoded = json.dumps(board.builder.build(), cls=JSONEncoder, sort_keys=True)
        result[name] = json.loads(encoded)
    return result


def render(config: MixinConfig) -> dict[str, str]:
    """The text of each dashboard file."""
    return {
        name: json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, board in build(config).items()
    }

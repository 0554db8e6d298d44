"""The metric families `agentwatch serve` builds from the store: rollups and budgets.

Kept apart from the HTTP server so any collector over the store (the server's, a test's)
builds the same exposition from the same rows.

- `rollup_families`: the cumulative counters and histograms of `contract.ROLLUP_METRICS`,
  with the outcome series of executions and LLM requests completed at 0.
  An attributed family (`contract.ATTRIBUTED`) carries, after its own labels, every
  attribution dimension found in its rows (sorted by name): the dimensions the writers
  declared, now or before. A series without a value for one is exposed with the empty
  label, which Prometheus treats as no label, so declaring a dimension never resets a series.
- `budget_families`: limit, exact spend, remaining budget, projected exhaustion and period
  bounds of each budget, all finite and computed at scrape time from the store.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from agentwatch import contract
from agentwatch.budgets import BudgetStatus
from agentwatch.store.base import RollupRow

_INF = float("inf")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: Label names an attribution dimension can never have (Prometheus' and the contract's).
_NOT_DIMENSIONS = frozenset({"le", "quantile", "job", "instance"})


def _parse_le(value: str) -> float:
    return _INF if value == "+Inf" else float(value)


def attribution_dimensions(rows: Sequence[RollupRow]) -> dict[str, tuple[str, ...]]:
    """Per attributed family, the attribution label names its rows carry (sorted)."""
    found: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        spec = contract.spec_for_sample(row.sample)
        if spec is None or not spec.attributed:
            continue
        for name in row.labels:
            if name not in spec.labels:
                found[spec.name].add(name)
    return dimensions_among(found)


def dimensions_among(found: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Per attributed family, the attribution dimensions among the extra label names its
    rows carry (`found`): sorted, without names Prometheus or the contract reserve."""
    return {
        family: tuple(
            sorted(n for n in names if _LABEL_NAME.match(n) and n not in _NOT_DIMENSIONS
                   and not n.startswith("__"))
        )
        for family, names in found.items()
    }  # fmt: skip


def rollup_families(rows: Sequence[RollupRow]) -> list[Metric]:
    """Turn rollup rows into metric families, using the contract for help text and labels.

    Rows whose sample name is not in the contract are ignored (a newer writer may know
    metrics this server does not). Histogram buckets missing from the rows are filled from
    the contract's bucket list, so every exposed histogram is complete and cumulative.
    Exemplars are added by `rollup_exemplars.attach_exemplars`.

    The outcome series of executions and LLM requests are completed at read time: a label
    set with one stored `status` is also exposed with the others, at 0 until a writer
    counts one (`contract.ZERO_FILLED_STATUSES`: so `rate()` sees the first failure).
    Nothing is stored for them, so they take no place under the store's cardinality cap:
    these two families expose at most one series per status for each admitted label set.
    """
    dimensions = attribution_dimensions(rows)
    counters: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    buckets: dict[str, dict[tuple[str, ...], dict[float, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    sums: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    for row in rows:
        spec = contract.spec_for_sample(row.sample)
        if spec is None or spec.kind == "gauge":
            continue
        names = (*spec.labels, *dimensions.get(spec.name, ()))
        key = tuple(row.labels.get(name, "") for name in names)
        if spec.kind == "counter":
            series = counters[spec.name]
            series[key] = series.get(key, 0.0) + row.value
        elif row.sample.endswith("_bucket"):
            buckets[spec.name][key][_parse_le(row.labels.get("le", "+Inf"))] = row.value
        elif row.sample.endswith("_sum"):
            sums[spec.name][key] = row.value
        # _count equals the +Inf bucket; prometheus_client derives it.
    for name in contract.ZERO_FILLED_STATUSES:
        outcomes = counters.get(name)
        for key in list(outcomes or ()):
            for sibling in contract.status_siblings(name, key):
                counters[name].setdefault(sibling, 0.0)

    families: list[Metric] = []
    for spec in contract.ROLLUP_METRICS:
        label_names = [*spec.labels, *dimensions.get(spec.name, ())]
        if spec.kind == "counter" and spec.name in counters:
            family = CounterMetricFamily(spec.name, spec.help, labels=label_names)
            for key, value in sorted(counters[spec.name].items()):
                family.add_metric(list(key), value)
            families.append(family)
        elif spec.kind == "histogram" and spec.name in buckets:
            hist = HistogramMetricFamily(spec.name, spec.help, labels=label_names)
            bounds = [*(spec.buckets or ()), _INF]
            for key, observed in sorted(buckets[spec.name].items()):
                cumulative, filled = 0.0, []
                for bound in bounds:
                    cumulative = max(cumulative, observed.get(bound, cumulative))
                    label = "+Inf" if bound == _INF else repr(float(bound))
                    filled.append((label, cumulative))
                hist.add_metric(list(key), filled, sum_value=sums[spec.name].get(key, 0.0))
            families.append(hist)
    return families


def budget_families(statuses: Sequence[BudgetStatus]) -> list[Metric]:
    """Limit, spend, remaining, projected exhaustion and period bounds per budget."""
    specs: tuple[tuple[contract.MetricSpec, Callable[[BudgetStatus], float]], ...] = (
        (contract.BUDGET_LIMIT, lambda s: s.budget.limit_usd),
        (contract.BUDGET_SPEND, lambda s: s.spend_usd),
        (contract.BUDGET_REMAINING, lambda s: s.remaining_usd),
        (contract.BUDGET_EXHAUSTION, lambda s: s.projected_exhaustion),
        (contract.BUDGET_PERIOD_START, lambda s: s.period_start),
        (contract.BUDGET_PERIOD_END, lambda s: s.period_end),
    )
    families: list[Metric] = []
    for spec, value_of in specs:
        family = GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))
        for status in statuses:
            family.add_metric([status.budget.name, status.budget.period], value_of(status))
        families.append(family)
    return families

"""The Prometheus collector of `agentwatch serve`: the store's rollups and budgets, per scrape.

Why store-backed: short-lived scripts exit before Prometheus scrapes them, and the workers of
one service each hold their own in-process counters, so per-worker /metrics make counters jump
between scrapes (LiteLLM issue 10595). Every process writes to one store; this collector
re-exposes the store's cumulative rollups, which never go down, survive restarts and are the
same whichever worker wrote them.
"""

from __future__ import annotations

import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from agentwatch import contract
from agentwatch._version import __version__
from agentwatch.budgets import BudgetStatus, evaluate_budgets
from agentwatch.config import Budget
from agentwatch.rollup_exemplars import attach_exemplars
from agentwatch.server.store_access import StoreAccess
from agentwatch.store.base import RollupRow, Store

_INF = float("inf")


def _parse_le(value: str) -> float:
    return _INF if value == "+Inf" else float(value)


def rollup_families(rows: Sequence[RollupRow]) -> list[Metric]:
    """Turn rollup rows into metric families, using the contract for help text and labels.

    Rows whose sample name is not in the contract are ignored (a newer writer may know
    metrics this server does not). Histogram buckets missing from the rows are filled from
    the contract's bucket list, so every exposed histogram is complete and cumulative.
    Exemplars are added by `rollup_exemplars.attach_exemplars`.
    """
    counters: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    buckets: dict[str, dict[tuple[str, ...], dict[float, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    sums: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    for row in rows:
        spec = contract.spec_for_sample(row.sample)
        if spec is None or spec.kind == "gauge":
            continue
        key = tuple(row.labels.get(name, "") for name in spec.labels)
        if spec.kind == "counter":
            counters[spec.name][key] = row.value
        elif row.sample.endswith("_bucket"):
            bound = _parse_le(row.labels.get("le", "+Inf"))
            buckets[spec.name][key][bound] = row.value
        elif row.sample.endswith("_sum"):
            sums[spec.name][key] = row.value
        # _count equals the +Inf bucket; prometheus_client derives it.

    families: list[Metric] = []
    for spec in contract.ROLLUP_METRICS:
        if spec.kind == "counter" and spec.name in counters:
            family = CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))
            for key, value in sorted(counters[spec.name].items()):
                family.add_metric(list(key), value)
            families.append(family)
        elif spec.kind == "histogram" and spec.name in buckets:
            hist = HistogramMetricFamily(spec.name, spec.help, labels=list(spec.labels))
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
    """Limit, exact spend and period bounds per budget (labels budget, period)."""
    specs: tuple[tuple[contract.MetricSpec, Callable[[BudgetStatus], float]], ...] = (
        (contract.BUDGET_LIMIT, lambda s: s.budget.limit_usd),
        (contract.BUDGET_SPEND, lambda s: s.spend_usd),
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


class StoreCollector(Collector):
    """Collects everything `agentwatch serve` exposes, reading the store once per scrape.

    Blocking (it queries the store): the HTTP layer renders the exposition in a worker thread.
    """

    def __init__(
        self,
        access: StoreAccess,
        budgets: Sequence[Budget] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._access = access
        self._budgets = tuple(budgets)
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            contract.BUILD_INFO.name,
            contract.BUILD_INFO.help,
            labels=list(contract.BUILD_INFO.labels),
        )
        build.add_metric([__version__, platform.python_version()], 1.0)
        yield build

        now = self._clock()

        def read(store: Store) -> tuple[list[RollupRow], float | None, list[BudgetStatus]]:
            return (
                store.read_rollups(),
                store.last_write_time(),
                evaluate_budgets(store, self._budgets, now),
            )

        try:
            rows, last_write, statuses = self._access.run(read)
            up = 1.0
        except Exception:  # logged (once, masked) by StoreAccess
            rows, last_write, statuses, up = [], None, [], 0.0
        yield GaugeMetricFamily(contract.STORE_UP.name, contract.STORE_UP.help, value=up)
        if last_write is not None:
            yield GaugeMetricFamily(
                contract.LAST_WRITE.name, contract.LAST_WRITE.help, value=last_write
            )
        yield from attach_exemplars(rollup_families(rows), rows)
        if statuses:
            yield from budget_families(statuses)

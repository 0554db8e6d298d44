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
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agentwatch import contract
from agentwatch._version import __version__
from agentwatch.budgets import BudgetStatus, evaluate_budgets
from agentwatch.config import Budget
from agentwatch.rollup_exemplars import attach_exemplars
from agentwatch.server.store_access import StoreAccess
from agentwatch.store.base import RollupRow, Store
from agentwatch.store_metrics import budget_families, rollup_families

__all__ = ["StoreCollector", "budget_families", "rollup_families"]


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

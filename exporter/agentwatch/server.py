"""`agentwatch serve`: /metrics from the durable store, budgets, health checks and a JSON API.

Why a store-backed endpoint: short-lived scripts exit before Prometheus scrapes them, and the
workers of one service (gunicorn, uvicorn) each hold their own in-process counters, so
per-worker /metrics make counters jump between scrapes (LiteLLM issue 10595). Every process
writes to one store; this server re-exposes the store's cumulative rollups, which never go
down, survive restarts and are the same whichever worker wrote them.

Routes: `/metrics` (Prometheus text or OpenMetrics, negotiated), `/healthz` (the process is
up), `/readyz` (the store answers), `/api/executions`, `/api/executions/<id>`, `/api/stats`,
`/api/budgets` (JSON). Binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import platform
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from agentwatch import contract
from agentwatch._version import __version__
from agentwatch.budgets import BudgetStatus, evaluate_budgets
from agentwatch.config import Budget, Settings
from agentwatch.errors import ServeError
from agentwatch.rollup_exemplars import attach_exemplars
from agentwatch.store import open_store
from agentwatch.store.base import RollupRow, Store

logger = logging.getLogger("agentwatch")

_INF = float("inf")


class StoreAccess:
    """Opens the store on first use, serialises access, and reopens after a failure.

    A store that is down when the server starts must not stop the server: /metrics then
    reports `agentwatch_store_up 0` and /readyz answers 503 until the store comes back.
    """

    def __init__(self, url: str, opener: Callable[[str], Store] = open_store) -> None:
        self.url = url
        self._opener = opener
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._logged_failure = False

    def run(self, action: Callable[[Store], Any]) -> Any:
        """Run `action` against the store under the lock; raise on failure (after resetting)."""
        with self._lock:
            try:
                if self._store is None:
                    store = self._opener(self.url)
                    store.migrate()
                    self._store = store
                result = action(self._store)
            except Exception as exc:
                self._reset()
                if not self._logged_failure:
                    logger.warning("agentwatch serve: store %s unavailable: %s", self.url, exc)
                    self._logged_failure = True
                raise
            if self._logged_failure:
                logger.info("agentwatch serve: store %s reachable again", self.url)
                self._logged_failure = False
            return result

    def _reset(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                store.close()

    def close(self) -> None:
        with self._lock:
            self._reset()


def _parse_le(value: str) -> float:
    return _INF if value == "+Inf" else float(value)


def rollup_families(rows: Sequence[RollupRow]) -> list[Metric]:
    """Turn rollup rows into metric families, using the contract for help text and labels.

    Rows whose sample name is not in the contract are ignored (a newer writer may know
    metrics this server does not). Histogram buckets missing from the rows are filled from
    the contract's bucket list, so every exposed histogram is complete and cumulative.
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
            buckets[spec.name][key][_parse_le(row.labels.get("le", "+Inf"))] = row.value
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
    """Collects everything `agentwatch serve` exposes, reading the store once per scrape."""

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
        except Exception:
            rows, last_write, statuses, up = [], None, [], 0.0
        yield GaugeMetricFamily(contract.STORE_UP.name, contract.STORE_UP.help, value=up)
        if last_write is not None:
            yield GaugeMetricFamily(
                contract.LAST_WRITE.name, contract.LAST_WRITE.help, value=last_write
            )
        yield from attach_exemplars(rollup_families(rows), rows)
        if statuses:
            yield from budget_families(statuses)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class _QueryError(ValueError):
    """A bad query-string parameter: answered with 400 and a one-line reason."""


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _float_param(query: dict[str, list[str]], name: str) -> float | None:
    raw = _one(query, name)
    if raw is None:
        return None
    try:
        number = float(raw)
    except ValueError:
        raise _QueryError(f"{name} must be a Unix timestamp in seconds") from None
    if not math.isfinite(number):
        raise _QueryError(f"{name} must be finite")
    return number


def _int_param(query: dict[str, list[str]], name: str, default: int, maximum: int) -> int:
    raw = _one(query, name)
    if raw is None:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise _QueryError(f"{name} must be an integer") from None
    if not 1 <= number <= maximum:
        raise _QueryError(f"{name} must be between 1 and {maximum}")
    return number


class AgentwatchHTTPServer(ThreadingHTTPServer):
    """The HTTP server of `agentwatch serve`; holds the registry and the store access."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        access: StoreAccess,
        budgets: Sequence[Budget] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.access = access
        self.budgets = tuple(budgets)
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(access, budgets, clock))
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: AgentwatchHTTPServer
    server_version = f"agentwatch/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("agentwatch serve: " + format, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(_json_safe(payload), separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = parts.path.rstrip("/") or "/"
        try:
            if path == "/metrics":
                self._metrics()
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/readyz":
                self._ready()
            elif path == "/api/executions":
                self._executions(query)
            elif path.startswith("/api/executions/"):
                self._execution(path.removeprefix("/api/executions/"))
            elif path == "/api/stats":
                self._stats(query)
            elif path == "/api/budgets":
                self._budgets()
            elif path == "/":
                self._index()
            else:
                self._send_json(404, {"error": f"no route {path}"})
        except _QueryError as exc:
            self._send_json(400, {"error": str(exc)})
        except Exception as exc:  # the store failed mid-request
            self._send_json(503, {"error": f"store unavailable: {type(exc).__name__}"})

    def _index(self) -> None:
        routes = [
            "/metrics",
            "/healthz",
            "/readyz",
            "/api/executions",
            "/api/stats",
            "/api/budgets",
        ]
        body = "agentwatch " + __version__ + "\n" + "\n".join(routes) + "\n"
        self._send(200, body.encode(), "text/plain; charset=utf-8")

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        self._send(200, encoder(self.server.registry), content_type)

    def _ready(self) -> None:
        try:
            self.server.access.run(lambda store: store.last_write_time())
        except Exception as exc:
            self._send(503, f"store unavailable: {type(exc).__name__}\n".encode(), "text/plain")
            return
        self._send(200, b"ready\n", "text/plain; charset=utf-8")

    def _executions(self, query: dict[str, list[str]]) -> None:
        status = _one(query, "status")
        if status is not None and status not in contract.EXECUTION_STATUSES:
            raise _QueryError("status must be completed or failed")
        agent = _one(query, "agent")
        since = _float_param(query, "since")
        until = _float_param(query, "until")
        limit = _int_param(query, "limit", 100, 10_000)
        rows = self.server.access.run(
            lambda store: store.get_executions(
                agent_name=agent, status=status, since=since, until=until, limit=limit
            )
        )
        self._send_json(200, {"executions": rows})

    def _execution(self, execution_id: str) -> None:
        row = self.server.access.run(lambda store: store.get_execution(execution_id))
        if row is None:
            self._send_json(404, {"error": f"no execution {execution_id}"})
        else:
            self._send_json(200, row)

    def _stats(self, query: dict[str, list[str]]) -> None:
        agent = _one(query, "agent")
        since = _float_param(query, "since")
        until = _float_param(query, "until")
        stats = self.server.access.run(
            lambda store: store.get_summary_stats(agent_name=agent, since=since, until=until)
        )
        self._send_json(200, stats)

    def _budgets(self) -> None:
        now = self.server.clock()
        statuses = self.server.access.run(
            lambda store: evaluate_budgets(store, self.server.budgets, now)
        )
        self._send_json(
            200,
            {
                "budgets": [
                    {
                        "name": s.budget.name,
                        "period": s.budget.period,
                        "timezone": s.budget.timezone,
                        "scope": {
                            "agent": s.budget.agent,
                            "model": s.budget.model,
                            "provider": s.budget.provider,
                        },
                        "limit_usd": s.budget.limit_usd,
                        "spend_usd": s.spend_usd,
                        "used_ratio": s.used_ratio,
                        "period_start": s.period_start,
                        "period_end": s.period_end,
                    }
                    for s in statuses
                ]
            },
        )


def make_server(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    clock: Callable[[], float] = time.time,
) -> AgentwatchHTTPServer:
    """Build (but do not start) the server for `settings`; port 0 picks a free port."""
    address = (host or settings.host, settings.port if port is None else port)
    try:
        return AgentwatchHTTPServer(
            address, StoreAccess(settings.store_url), settings.budgets, clock
        )
    except OSError as exc:  # port taken, address not local, name that does not resolve
        reason = exc.strerror or str(exc)
        raise ServeError(f"cannot listen on {address[0]}:{address[1]}: {reason}") from None


def serve_in_thread(server: AgentwatchHTTPServer) -> threading.Thread:
    """Run `server` on a daemon thread (tests, the demo); stop it with `server.shutdown()`."""
    thread = threading.Thread(target=server.serve_forever, name="agentwatch-serve", daemon=True)
    thread.start()
    return thread

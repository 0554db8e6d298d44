"""`agentwatch serve`: the store-backed server, assembled from its parts.

Routes: `/metrics` (Prometheus text or OpenMetrics), `/healthz`, `/readyz`, the JSON API
(`/api/v1/...`, documented at `/api/openapi.json`), the deprecated `/api/...` routes and the
on-call console (`/ui/...`, docs/console.md).
Binds 127.0.0.1 unless told otherwise; the web configuration file adds TLS and basic auth.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentwatch.config import Settings
from agentwatch.server.api import ApiContext, api_routes
from agentwatch.server.app import build_app, metrics_routes
from agentwatch.server.collector import StoreCollector
from agentwatch.server.exposition_cache import ExpositionCache
from agentwatch.server.openapi import document
from agentwatch.server.protocol import ConnectionLimits
from agentwatch.server.render import Lane
from agentwatch.server.runner import HTTPServer, bind, is_loopback
from agentwatch.server.store_access import StoreAccess, StoreLanes
from agentwatch.server.webconfig import WebConfigWatcher
from agentwatch.store.base import Store

logger = logging.getLogger("agentwatch")

INDEX = (
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/v1/executions",
    "/api/v1/stats",
    "/api/v1/budgets",
    "/api/v1/agents",
    "/api/v1/models",
    "/api/openapi.json",
    "/ui/",
)


class AgentwatchServer:
    """The server of `agentwatch serve`: HTTP on a bound socket, two store lanes, a registry.

    Build it with `make_server`; run it with `serve_forever()` (foreground, signals) or
    `start()` (daemon thread); stop it with `shutdown()`.

    Attributes:
        lanes: the store connections (`lanes.metrics`, `lanes.api`).
        registry: the collector registry `/metrics` is equivalent to (byte for byte).
        exposition: the cached renderer `/metrics` answers from (`render(openmetrics)`).
        watcher: the web configuration in force.
        http: the HTTP server (socket, uvicorn, connection guard).
    """

    def __init__(
        self,
        http: HTTPServer,
        lanes: StoreLanes,
        registry: CollectorRegistry,
        watcher: WebConfigWatcher,
        external_url: str | None = None,
        exposition: ExpositionCache | None = None,
    ) -> None:
        self.external_url = external_url
        self.exposition = exposition
        self.http = http
        self.lanes = lanes
        self.registry = registry
        self.watcher = watcher

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def console_url(self) -> str:
        """The console's base URL: `--web.external-url`, else the address served."""
        return self.external_url or self.http.url

    @property
    def host(self) -> str:
        return self.http.host

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def access(self) -> StoreAccess:
        """The scrape lane's store access (its `masked_url` is safe to print)."""
        return self.lanes.metrics

    def serve_forever(self) -> None:
        """Serve until Ctrl-C / SIGTERM (or `shutdown()`), then close the store."""
        try:
            self.http.serve_forever()
        finally:
            self.close()

    def start(self) -> threading.Thread:
        """Serve on a daemon thread (tests, embedding); returns once it accepts connections."""
        return self.http.start()

    def shutdown(self) -> None:
        """Stop serving and close the socket and the store connections."""
        self.http.shutdown()
        self.close()

    def close(self) -> None:
        """Close the socket and the store connections (after `shutdown`, or if never run)."""
        self.http.close()
        self.lanes.close()

    def server_close(self) -> None:
        """The name `http.server` used; kept for code written against the old server."""
        self.close()


def _openapi_route() -> Route:
    body = json.dumps(document(), separators=(",", ":")).encode()

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/api/openapi.json", openapi)


def warn_if_exposed(host: str, watcher: WebConfigWatcher) -> None:
    """Log a warning when a non-loopback address is served without authentication."""
    if is_loopback(host):
        return
    config = watcher.current()
    if not config.authenticates:
        logger.warning(
            "agentwatch serve: listening on %s without authentication: anyone who can reach "
            "this port can read /metrics and the JSON API (run arguments, error messages, "
            "captured prompts). Set --web.config.file with basic_auth_users or a required "
            "client certificate (docs/existing-stack.md).",
            host,
        )
    elif config.tls is None:
        logger.warning(
            "agentwatch serve: listening on %s with basic auth but without TLS: passwords "
            "and data cross the network in clear text. Add tls_server_config to %s.",
            host,
            config.path,
        )


def make_server(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    clock: Callable[[], float] = time.time,
    *,
    web_config_file: Path | None = None,
    limits: ConnectionLimits | None = None,
    opener: Callable[[str], Store] | None = None,
    external_url: str | None = None,
) -> AgentwatchServer:
    """Build (bind, but do not start) the server for `settings`; port 0 picks a free port.

    Args:
        settings: store URL, host, port, budgets and `web_config_file`.
        host, port: override the settings (flags).
        clock: "now" for budgets and relative times (tests pin it).
        web_config_file: overrides `settings.web_config_file`.
        limits: connection timeouts and caps (tests shorten them).
        opener: how to open the store (tests inject failures).
        external_url: the console's public base URL (`--web.external-url`); overrides
            `settings.external_url`. Links in console pages start with its path.

    Raises:
        WebConfigError: the web configuration file is invalid (checked before binding).
        ServeError: the address cannot be bound.
    """
    path = web_config_file if web_config_file is not None else settings.web_config_file
    watcher = WebConfigWatcher(Path(path) if path is not None else None)
    address = host if host is not None else settings.host
    sock = bind(address, settings.port if port is None else port)
    url = settings.store_url
    lanes = StoreLanes(url) if opener is None else StoreLanes(url, opener)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(lanes.metrics, settings.budgets, clock))
    exposition = ExpositionCache(lanes.metrics, settings.budgets, clock)
    metrics_lane = Lane(lanes.metrics, threads=2, max_waiting=16)
    api_lane = Lane(lanes.api, threads=2, max_waiting=32)
    from agentwatch.console import ConsoleContext, console_routes

    console_lane = Lane(lanes.api, threads=2, max_waiting=32)
    public = external_url if external_url is not None else settings.external_url
    routes = [
        *metrics_routes(registry, metrics_lane, exposition),
        *api_routes(ApiContext(api_lane, settings.budgets, clock)),
        _openapi_route(),
        *console_routes(ConsoleContext(console_lane, settings.budgets, clock, public)),
    ]
    app = build_app(routes, watcher, index=INDEX)
    http = HTTPServer(app, sock, watcher, limits)
    warn_if_exposed(address, watcher)
    return AgentwatchServer(http, lanes, registry, watcher, public, exposition)


def serve_in_thread(server: AgentwatchServer) -> threading.Thread:
    """Run `server` on a daemon thread (tests, the demo); stop it with `server.shutdown()`."""
    return server.start()

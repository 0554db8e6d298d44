"""The in-process endpoint of `agentwatch.start_http_server`: one registry, same hardening.

A host program's own `/metrics` gets what `agentwatch serve` has: the web configuration file
(TLS, basic auth, headers, reloaded on change), header and idle timeouts, a connection cap,
and `/healthz` / `/readyz` without credentials. It runs uvicorn on a daemon thread with its
own event loop, so it works whether or not the host program uses asyncio.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry

from agentwatch.server.app import build_app, metrics_routes
from agentwatch.server.protocol import ConnectionLimits
from agentwatch.server.runner import HTTPServer, bind, is_loopback
from agentwatch.server.store_server import warn_if_exposed
from agentwatch.server.webconfig import WebConfigWatcher


class MetricsEndpoint:
    """A running in-process `/metrics` endpoint.

    Unpacks like prometheus_client's `(server, thread)` pair, so code written for
    `server, thread = start_http_server(port)` keeps working.

    Attributes:
        url: `http(s)://host:port` it listens on.
        thread: the daemon thread serving it.
    """

    def __init__(self, http: HTTPServer, thread: threading.Thread) -> None:
        self.http = http
        self.thread = thread

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def server_address(self) -> tuple[str, int]:
        """`(host, port)`, as on prometheus_client's server."""
        return self.http.host, self.http.port

    @property
    def server_port(self) -> int:
        """The port, as on prometheus_client's server."""
        return self.http.port

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        self.http.shutdown()

    def server_close(self) -> None:
        """Close the socket (prometheus_client's name; `shutdown` already does it)."""
        self.http.close()

    def __iter__(self) -> Iterator[object]:
        return iter((self, self.thread))


def start_endpoint(
    registry: CollectorRegistry,
    port: int,
    addr: str = "127.0.0.1",
    web_config_file: Path | None = None,
    limits: ConnectionLimits | None = None,
) -> MetricsEndpoint:
    """Bind `addr:port` and serve `registry` on a daemon thread.

    Raises:
        WebConfigError: the web configuration file is invalid.
        ServeError: the address cannot be bound.
    """
    watcher = WebConfigWatcher(web_config_file)
    sock = bind(addr, port)
    app = build_app(metrics_routes(registry, None), watcher, index=("/metrics",))
    http = HTTPServer(app, sock, watcher, limits)
    if not is_loopback(addr):
        warn_if_exposed(addr, watcher)
    thread = http.start()
    return MetricsEndpoint(http, thread)

"""`agentwatch serve`: the store-backed /metrics endpoint for Prometheus."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from agentwatch.cli._options import settings_options
from agentwatch.config import load_settings

if TYPE_CHECKING:
    from agentwatch.server import AgentwatchHTTPServer


@click.command()
@settings_options
@click.option(
    "--host",
    default=None,
    help="Address to bind. Default: 127.0.0.1 (local only); use 0.0.0.0 to let a remote "
    "Prometheus scrape.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on. Default: $AGENTWATCH_PORT or 9747; 0 picks a free port.",
)
def serve(
    store_url: str | None, config_path: Path | None, host: str | None, port: int | None
) -> None:
    """Expose /metrics (durable rollups and budgets), /healthz, /readyz and a JSON API.

    Point Prometheus at this instead of at each worker process: counters come from the
    shared store, so they never jump between scrapes and survive restarts.
    """
    from agentwatch.server import make_server

    settings = load_settings(config_path, store_url=store_url, host=host, port=port)
    if settings.log_format == "json":
        from agentwatch.logs import use_log_format

        use_log_format("json")
    run_server(make_server(settings))


def run_server(server: AgentwatchHTTPServer) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the store cleanly."""

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    click.echo(f"agentwatch serving {server.url}/metrics (store: {server.access.url})", err=True)
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.access.close()

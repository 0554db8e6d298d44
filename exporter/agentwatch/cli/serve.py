"""`agentwatch serve`: the store-backed /metrics endpoint for Prometheus, and its JSON API."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agentwatch.cli._options import settings_options, with_listen_hint
from agentwatch.config import load_settings
from agentwatch.errors import ServeError

if TYPE_CHECKING:
    from agentwatch.server import AgentwatchServer


@click.command()
@settings_options
@click.option(
    "--host",
    default=None,
    help="Address to bind. Default: 127.0.0.1 (local only); use 0.0.0.0 to let a remote "
    "Prometheus scrape (then protect it with --web.config.file).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on. Default: $AGENTWATCH_PORT or 9747; 0 picks a free port.",
)
@click.option(
    "--web.config.file",
    "web_config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Exporter-toolkit web configuration (TLS, basic_auth_users, headers), the file "
    "node_exporter and Prometheus read. Default: $AGENTWATCH_WEB_CONFIG_FILE, the config "
    "file's web_config_file, else none (plain HTTP, no auth).",
)
@click.option(
    "--web.external-url",
    "external_url",
    default=None,
    help="The console's public base URL, as a browser reaches it (behind a proxy, for "
    "example https://agentwatch.example.com). Default: $AGENTWATCH_EXTERNAL_URL, the config "
    "file's external_url, else http://<host>:<port>.",
)
def serve(
    store_url: str | None,
    config_path: Path | None,
    host: str | None,
    port: int | None,
    web_config_file: Path | None,
    external_url: str | None,
) -> None:
    """Expose /metrics (durable rollups and budgets), /healthz, /readyz, a JSON API and the
    on-call console (/ui/).

    Point Prometheus at this instead of at each worker process: counters come from the
    shared store, so they never jump between scrapes and survive restarts. SIGHUP re-reads
    the web configuration file (it is also re-read whenever it changes).
    """
    from agentwatch.server import make_server

    settings = load_settings(
        config_path,
        store_url=store_url,
        host=host,
        port=port,
        web_config_file=None if web_config_file is None else str(web_config_file),
        external_url=external_url,
    )
    try:
        server = make_server(settings)
    except ServeError as exc:
        raise with_listen_hint(exc) from None
    with serve_logging(settings.log_format):
        run_server(server)


@contextlib.contextmanager
def serve_logging(log_format: str = "text") -> Iterator[None]:
    """Send agentwatch's log lines (store outages, web config reloads) to stderr meanwhile.

    `text`: one line with the time and level; `json`: the JSON lines of `log_format: json`.
    The previous logging state is restored afterwards (tests run commands in one process).
    """
    log = logging.getLogger("agentwatch")
    uvicorn_log = logging.getLogger("uvicorn.error")
    saved = (list(log.handlers), log.propagate, log.level, uvicorn_log.level)
    if log_format == "json":
        from agentwatch.logs import use_log_format

        use_log_format("json")
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.INFO)
    # uvicorn warns once per malformed request; anyone can send those, so keep only errors.
    uvicorn_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.handlers[:] = saved[0]
        log.propagate = saved[1]
        log.setLevel(saved[2])
        uvicorn_log.setLevel(saved[3])


def run_server(server: AgentwatchServer) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the store cleanly."""
    tls = " (TLS)" if server.watcher.tls_enabled else ""
    auth = " (basic auth)" if server.watcher.current().users else ""
    # One line, so a log collector (or `log_format: json` consumer) sees one banner.
    click.echo(
        f"agentwatch serving {server.url}/metrics{tls}{auth} (store: {server.access.masked_url});"
        f" console: {server.console_url}/ui/",
        err=True,
    )
    sys.stderr.flush()
    server.serve_forever()

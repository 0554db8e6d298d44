"""`agentwatch demo`: run a realistic offline workload into the store, then serve it."""

from __future__ import annotations

import time
from pathlib import Path

import click

from agentwatch.cli._options import settings_options
from agentwatch.cli._render import redact_url
from agentwatch.config import load_settings


@click.command()
@settings_options
@click.option(
    "--runs",
    type=click.IntRange(1, 100_000),
    default=40,
    show_default=True,
    help="Top-level agent runs to simulate (nested runs and tool calls come on top).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed of the workload.")
@click.option(
    "--serve/--no-serve",
    default=True,
    show_default=True,
    help="After the workload, serve /metrics from the store until Ctrl-C.",
)
@click.option("--host", default=None, help="Address to bind when serving. Default: 127.0.0.1.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to serve on. Default: $AGENTWATCH_PORT or 9747.",
)
def demo(
    store_url: str | None,
    config_path: Path | None,
    runs: int,
    seed: int,
    serve: bool,
    host: str | None,
    port: int | None,
) -> None:
    """Simulate agents calling LLMs (real litellm, mocked network) and record everything.

    Several agents, models and providers, a tool, streaming, rate-limit failures and failed
    runs are written to the store (by default ~/.agentwatch/telemetry.db); then the store is
    served on /metrics so you can curl it or point Prometheus at it.
    """
    import agentwatch
    from agentwatch.demo import run_demo

    settings = load_settings(config_path, store_url=store_url, host=host, port=port)
    server = None
    if serve:  # bind first: a taken port should fail before the workload, not after
        from agentwatch.server import make_server

        server = make_server(settings)
    agentwatch.configure(config_path=config_path, store_url=store_url)
    started = time.perf_counter()
    report = run_demo(runs=runs, seed=seed)
    flushed = agentwatch.flush(timeout=30.0)
    elapsed = time.perf_counter() - started
    click.echo(
        f"demo: {report.runs} runs ({report.top_level_runs} top-level, {report.nested_runs} "
        f"nested; {report.failed_runs} failed), {report.llm_calls} LLM calls "
        f"({report.llm_failures} failed), {report.tool_calls} tool calls in {elapsed:.1f}s "
        f"-> {redact_url(settings.store_url)}"
        + ("" if flushed else " (some records not yet written!)")
    )
    if server is None:
        return
    from agentwatch.cli.serve import run_server, serve_logging

    with serve_logging(settings.log_format):
        run_server(server)

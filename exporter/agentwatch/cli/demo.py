"""`agentwatch demo`: run a realistic offline workload into the store while serving it.

The workload runs in a process of its own (`python -m agentwatch.demo`), so the server in
this process answers a scrape at once even while litellm keeps the workload's interpreter
busy; the store is created first, so the server reads it from the first request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

import click

from agentwatch.cli._options import settings_options, with_listen_hint
from agentwatch.config import Settings, load_settings
from agentwatch.errors import AgentwatchError, ServeError

if TYPE_CHECKING:
    from agentwatch.cli._demo_view import DemoView
    from agentwatch.demo import DemoReport, WorkloadMessage
    from agentwatch.server import AgentwatchServer

#: Seconds the workload gets to flush and exit after being asked to stop.
_STOP_GRACE = 15.0


class DemoError(AgentwatchError):
    """The workload process failed (its last error line says why)."""


@click.command()
@settings_options
@click.option(
    "--runs",
    type=click.IntRange(1, 100_000),
    default=40,
    show_default=True,
    help="Top-level agent runs to simulate (nested runs and tool calls come on top).",
)
@click.option(
    "--seed",
    type=int,
    default=7,
    show_default=True,
    help="Random seed: the same seed gives the same runs, failures and LLM calls "
    "(ids and timings differ).",
)
@click.option(
    "--serve/--no-serve",
    default=True,
    show_default=True,
    help="Serve /metrics and the JSON API from the store while the workload runs and "
    "after it, until Ctrl-C.",
)
@click.option("--host", default=None, help="Address to bind when serving. Default: 127.0.0.1.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to serve on. Default: $AGENTWATCH_PORT or 9747; 0 picks a free port.",
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
    runs are written to the store (by default ~/.agentwatch/telemetry.db), which is served
    on /metrics meanwhile so you can curl it or point Prometheus at it. Progress shows as a
    bar on a terminal and as one line per phase in a pipe.
    """
    from agentwatch.cli._demo_view import NextSteps, summary, view_for_stdout
    from agentwatch.redaction import mask_url

    settings = load_settings(config_path, store_url=store_url, host=host, port=port)
    # Repeated in the commands it suggests, so they read the same store.
    flags = (["--store", mask_url(store_url)] if store_url else []) + (
        ["--config", str(config_path)] if config_path else []
    )
    with _sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        server = _bind(settings) if serve else None  # a taken port fails before any work
        try:
            _create_store(settings.store_url)
            if server is not None:
                from agentwatch.cli.serve import serve_logging

                # Store outages and web config reloads on stderr, as `serve` logs them.
                stack.enter_context(serve_logging(settings.log_format))
                server.start()
            view = view_for_stdout()
            if server is not None:
                view.say(f"demo: serving {server.url}/metrics while the workload runs")
            report, elapsed, flushed = _run_workload(
                view, settings, config_path, runs=runs, seed=seed
            )
            try:
                view.say(summary(report, elapsed, mask_url(settings.store_url), flushed))
                next_steps = NextSteps(server.url if server is not None else None, flags)
                view.say("\n".join(next_steps.lines()))
                if server is not None:
                    _wait_forever()
            except KeyboardInterrupt:  # the normal way out once the workload is done
                click.echo("demo: stopped.")
        except KeyboardInterrupt:  # before the workload started
            raise click.exceptions.Exit(130) from None
        finally:
            if server is not None:
                _stop_server(server)


def _bind(settings: Settings) -> AgentwatchServer:
    from agentwatch.server import make_server

    try:
        return make_server(settings)
    except ServeError as exc:
        raise with_listen_hint(exc) from None


def _create_store(url: str) -> None:
    """Create (or upgrade) the store now, so the server reads it from its first request
    and never waits behind the workload's writer to create it."""
    from agentwatch.store import open_store

    store = open_store(url)
    try:
        store.migrate()
    finally:
        store.close()


def _stop_server(server: AgentwatchServer) -> None:
    """Stop serving, then close the socket and the store connections."""
    server.shutdown()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the demo like Ctrl-C: the workload is stopped, the server shut down."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an embedding test runner): nothing to chain
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_forever() -> None:
    """Until Ctrl-C or SIGTERM (both raise KeyboardInterrupt here)."""
    while True:
        time.sleep(3600)


def _workload_command(runs: int, seed: int) -> list[str]:
    return [sys.executable, "-m", "agentwatch.demo", "--runs", str(runs), "--seed", str(seed)]


def _workload_env(settings: Settings, config_path: Path | None) -> dict[str, str]:
    """The workload reads its settings as this command resolved them; through the
    environment, so a store password never shows in the process list."""
    env = dict(os.environ)
    env["AGENTWATCH_STORE_URL"] = settings.store_url
    if config_path is not None:
        env["AGENTWATCH_CONFIG"] = str(config_path)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _run_workload(
    view: DemoView, settings: Settings, config_path: Path | None, *, runs: int, seed: int
) -> tuple[DemoReport, float, bool]:
    """Run the workload process, showing its progress; return its report, seconds and
    whether every record reached the store. Ctrl-C (or SIGTERM) stops it, keeping what it
    recorded, and exits 130."""
    from agentwatch.demo import DemoReport, read_messages

    started = time.perf_counter()
    view.loading(runs, seed)
    last: WorkloadMessage | None = None
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errors:
        process = subprocess.Popen(
            _workload_command(runs, seed),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=_workload_env(settings, config_path),
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # Ctrl-C reaches us; we stop it after it flushed
        )
        assert process.stdout is not None
        try:
            with process.stdout:
                for message in read_messages(process.stdout):
                    last = message
                    if message.phase == "loaded":
                        view.running(message.total)
                    elif message.phase == "run":
                        view.advanced(message.done, message.total, message.report)
                    elif message.phase == "writing":
                        view.writing()
                    elif message.phase == "done":
                        view.close()  # the process still has to exit: not our progress
            process.wait()
        except KeyboardInterrupt:
            view.close()
            _stop_workload(process)
            done = last.done if last is not None else 0
            click.echo(f"demo: stopped after {done} of {runs} runs; what they recorded is stored.")
            raise click.exceptions.Exit(130) from None
        except BaseException:  # our stdout closed (`| head`), a bug: never leave it running
            _stop_workload(process)
            raise
        finally:
            view.close()
        _forward(errors)
    if last is None or last.phase != "done" or process.returncode != 0:
        raise DemoError(
            f"the workload process exited with status {process.returncode} "
            f"after {last.done if last else 0} of {runs} runs (its output is above)"
        )
    return last.report or DemoReport(), time.perf_counter() - started, last.flushed


def _stop_workload(process: subprocess.Popen[str]) -> None:
    """SIGTERM (agentwatch flushes what it recorded), then SIGKILL after a grace period."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(_STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _forward(errors: IO[str]) -> None:
    """Show what the workload wrote to stderr (warnings, or why it failed), if anything."""
    errors.seek(0)
    text = errors.read().strip()
    if text:
        click.echo(text, err=True)

"""What `agentwatch demo` shows while it works: a progress bar on a terminal, lines in a pipe.

On a terminal the workload gets a live rich progress bar (runs done of runs asked, failures,
elapsed time); when stdout is a pipe or a file, each phase is one plain line, so a log or a
CI job shows what happened without control characters. Both end with what to do next.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from agentwatch.demo import DemoReport


class DemoView(Protocol):
    """The phases of a demo, as the command goes through them."""

    def say(self, text: str) -> None:
        """A line for the reader (above the bar on a terminal)."""

    def loading(self, runs: int, seed: int) -> None:
        """The workload process started; it is importing litellm."""

    def running(self, total: int) -> None:
        """litellm is loaded; `total` top-level runs start."""

    def advanced(self, done: int, total: int, report: DemoReport | None) -> None:
        """`done` top-level runs have finished."""

    def writing(self) -> None:
        """Every run finished; the last records are on their way to the store."""

    def close(self) -> None:
        """Stop any live display (idempotent)."""


def summary(report: DemoReport, elapsed: float, store: str, flushed: bool) -> str:
    """The one line that says what the demo recorded, and where."""
    line = (
        f"demo: {report.runs} runs ({report.top_level_runs} top-level, {report.nested_runs} "
        f"nested; {report.failed_runs} failed), {report.llm_calls} LLM calls "
        f"({report.llm_failures} failed), {report.tool_calls} tool calls in {elapsed:.1f}s "
        f"-> {store}"
    )
    return line + ("" if flushed else " (some records not yet written!)")


class LineView:
    """One plain line per phase (stdout is not a terminal)."""

    def say(self, text: str) -> None:
        click.echo(text)

    def loading(self, runs: int, seed: int) -> None:
        click.echo(f"demo: loading litellm (network mocked) for {runs} runs, seed {seed}")

    def running(self, total: int) -> None:
        click.echo(f"demo: running {total} agent runs")

    def advanced(self, done: int, total: int, report: DemoReport | None) -> None:
        """Nothing: a pipe gets phases, not a line per run."""

    def writing(self) -> None:
        click.echo("demo: runs finished; writing the last records to the store")

    def close(self) -> None:
        """Nothing to stop."""


class TerminalView:
    """A rich progress bar on stdout; `say` prints above it."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.progress: Progress = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None
        self._closed = False

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def loading(self, runs: int, seed: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(
            f"Loading litellm (seed {seed})", total=runs, start=False, failed=""
        )

    def running(self, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, description="Agent runs", total=total)
            self.progress.start_task(self.task)

    def advanced(self, done: int, total: int, report: DemoReport | None) -> None:
        if self.task is None:
            return
        failed = f"[red]{report.failed_runs} failed[/red]" if report and report.failed_runs else ""
        self.progress.update(self.task, completed=done, total=total, failed=failed)

    def writing(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, description="Writing to the store")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.progress.stop()


def view_for_stdout() -> DemoView:
    """A progress bar when stdout is an interactive terminal, else plain lines."""
    from rich.console import Console

    console = Console()
    if console.is_terminal and not console.is_dumb_terminal:
        return TerminalView(console)
    return LineView()


@dataclass(frozen=True)
class NextSteps:
    """Where the demo's data can be looked at, as commands a reader can paste.

    Args:
        url: the base URL being served, or None (`--no-serve`).
        flags: the `--store` / `--config` flags the user gave, repeated in each command so
            `monitor` reads the same store (passwords are masked, so such a URL must be
            given again by hand).
    """

    url: str | None
    flags: Sequence[str] = ()

    def lines(self) -> list[str]:
        tail = "".join(f" {shlex.quote(flag)}" for flag in self.flags)
        commands = [
            (f"agentwatch monitor list{tail}", "the latest runs; monitor trace ID shows one"),
            (f"agentwatch monitor stats{tail}", "totals, latency percentiles, cost"),
            (f"agentwatch monitor{tail}", "live view, Ctrl-C to leave"),
        ]
        if self.url is None:
            head = "Look at what was recorded:"
            commands.append((f"agentwatch serve{tail}", "/metrics and the JSON API"))
            foot: list[str] = []
        else:
            head = f"Serving {self.url} until Ctrl-C (or SIGTERM). In another terminal:"
            commands[:0] = [
                (f"curl -s {self.url}/metrics | grep ^agentwatch_executions", "Prometheus text"),
                (f"curl -s '{self.url}/api/v1/executions?limit=5'", "the JSON API"),
            ]
            foot = [
                "Scrape it with Prometheus (prometheus/prometheus.yml); dashboards and alerts: "
                "docs/existing-stack.md"
            ]
        width = max(len(command) for command, _ in commands)
        return [
            head,
            *(f"  {command:<{width}}  # {comment}" for command, comment in commands),
            *foot,
        ]

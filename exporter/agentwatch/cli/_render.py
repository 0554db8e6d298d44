"""How the CLI shows money, durations, times and executions, for people and for scripts.

The live view and the listings build their tables here so they always agree. Machine output
(`--json`, `export`) goes through `execution_record`, the one documented shape (see
docs/cli.md): times as ISO-8601 UTC strings with an offset plus epoch seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from agentwatch.cli._time import format_local, iso_utc

#: Columns of `export --format csv` and keys of every execution record, in order.
RECORD_FIELDS: tuple[str, ...] = (
    "id",
    "agent",
    "parent_id",
    "kind",
    "status",
    "started_at",
    "started_at_epoch",
    "ended_at",
    "ended_at_epoch",
    "duration_seconds",
    "error_type",
    "error_message",
    "llm_calls",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "attributes",
    "arguments",
)


def money(value: float | None) -> str:
    """`$1,234.56`, `$0.0512`, `$0.0003`, `$0.000012`: enough digits to see tiny LLM costs."""
    if value is None:
        return "-"
    if value == 0:
        return "$0.00"
    sign = "-" if value < 0 else ""
    amount = abs(value)
    if amount >= 1:
        return f"{sign}${amount:,.2f}"
    if amount >= 0.0001:
        return f"{sign}${amount:.4f}"
    decimals = min(12, -math.floor(math.log10(amount)) + 1)
    return f"{sign}${amount:.{decimals}f}"


def duration(seconds: float | None) -> str:
    """`4.2ms`, `0.52s`, `12.3s`, `2m 05s`, `1h 02m`; `-` for None (still running)."""
    if seconds is None:
        return "-"
    if seconds < 0:  # an event recorded with a start before its run's (clock skew, backdating)
        return "-" + duration(-seconds)
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes}m {secs:02d}s"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}h {rest // 60:02d}m"


def count(value: int | float | None) -> str:
    """`12,450`; `-` for None."""
    return "-" if value is None else f"{int(value):,}"


def percent(ratio: float | None) -> str:
    """`95.2%` from 0.952."""
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def status_text(status: str | None) -> Text:
    """Coloured status with a symbol, so it reads without colour too."""
    if status == "completed":
        return Text("✓ COMPLETED", style="green")
    if status == "failed":
        return Text("✗ FAILED", style="bold red")
    if status in ("success", "failure"):
        return Text(
            "✓ ok" if status == "success" else "✗ failed",
            style="green" if status == "success" else "red",
        )
    return Text(f"… {(status or 'unknown').upper()}", style="yellow")


def redact_url(url: str) -> str:
    """A store URL safe to print: the password (if any) replaced by `***`.

    Kept for the CLI's callers; the rule lives in `agentwatch.redaction.mask_url`.
    """
    from agentwatch.redaction import mask_url

    return mask_url(url)


def _metrics(execution: Mapping[str, Any]) -> Mapping[str, Any]:
    metrics = execution.get("metrics")
    return metrics if isinstance(metrics, Mapping) else {}


def execution_record(execution: Mapping[str, Any]) -> dict[str, Any]:
    """The stable machine shape of one execution (keys: `RECORD_FIELDS`)."""
    metrics = _metrics(execution)
    started = execution.get("started_at")
    ended = execution.get("ended_at")
    return {
        "id": execution.get("id"),
        "agent": execution.get("agent_name"),
        "parent_id": execution.get("parent_id"),
        "kind": execution.get("kind"),
        "status": execution.get("status"),
        "started_at": iso_utc(started),
        "started_at_epoch": started,
        "ended_at": iso_utc(ended),
        "ended_at_epoch": ended,
        "duration_seconds": execution.get("duration"),
        "error_type": execution.get("error_type"),
        "error_message": execution.get("error_message"),
        "llm_calls": int(metrics.get("llm_calls") or 0),
        "tool_calls": int(metrics.get("tool_calls") or 0),
        "input_tokens": int(metrics.get("input_tokens") or 0),
        "output_tokens": int(metrics.get("output_tokens") or 0),
        "cached_tokens": int(metrics.get("cached_tokens") or 0),
        "reasoning_tokens": int(metrics.get("reasoning_tokens") or 0),
        "total_tokens": int(metrics.get("total_tokens") or 0),
        "cost_usd": float(metrics.get("total_cost") or 0.0),
        "attributes": dict(execution.get("attributes") or {}),
        "arguments": execution.get("arguments"),
    }


def event_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """The stable machine shape of one event in `monitor trace --json`."""
    started = event.get("started_at")
    return {
        "id": event.get("id"),
        "seq": event.get("seq"),
        "kind": event.get("kind"),
        "name": event.get("name"),
        "status": event.get("status"),
        "started_at": iso_utc(started),
        "started_at_epoch": started,
        "offset_seconds": event.get("offset"),
        "duration_seconds": event.get("duration"),
        "model": event.get("model"),
        "provider": event.get("provider"),
        "input_tokens": int(event.get("input_tokens") or 0),
        "output_tokens": int(event.get("output_tokens") or 0),
        "cached_tokens": int(event.get("cached_tokens") or 0),
        "reasoning_tokens": int(event.get("reasoning_tokens") or 0),
        "total_tokens": int(event.get("total_tokens") or 0),
        "cost_usd": event.get("cost_usd"),
        "time_to_first_token_seconds": event.get("time_to_first_token"),
        "error_type": event.get("error_type"),
        "error_message": event.get("error_message"),
        "attributes": dict(event.get("attributes") or {}),
    }


def executions_table(
    executions: Iterable[Mapping[str, Any]],
    *,
    title: str,
    show_date: bool = True,
    show_id: bool = True,
) -> Table:
    """Time, (ID,) agent, status, duration, tokens, cost: the listing and the live view."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("Time", no_wrap=True)
    if show_id:
        table.add_column("ID", style="dim", no_wrap=True)
    table.add_column("Agent", style="cyan")
    table.add_column("Status", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("Tokens", justify="right")
    table.add_column("Cost", justify="right", no_wrap=True)
    for execution in executions:
        metrics = _metrics(execution)
        row: list[str | Text] = [format_local(execution.get("started_at"), date_part=show_date)]
        if show_id:
            row.append(str(execution.get("id")))
        name = str(execution.get("agent_name"))
        if execution.get("kind") == "tool":
            name += " (tool)"
        row += [
            name,
            status_text(execution.get("status")),
            duration(execution.get("duration")),
            count(metrics.get("total_tokens")),
            money(metrics.get("total_cost")),
        ]
        table.add_row(*row)
    return table


def stats_table(stats: Mapping[str, Any]) -> Table:
    """Two columns of summary statistics (counts, success rate, latency percentiles, spend)."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("Metric", style="bold")
    table.add_column("Value", justify="right")
    rows: Sequence[tuple[str, str | Text]] = (
        ("Total executions", count(stats.get("total_executions"))),
        ("  Completed", Text(count(stats.get("completed")), style="green")),
        ("  Failed", Text(count(stats.get("failed")), style="red" if stats.get("failed") else "")),
        ("Success rate", percent(stats.get("success_rate"))),
        ("Avg duration", duration(stats.get("avg_duration"))),
        ("p50 duration", duration(stats.get("p50_duration"))),
        ("p95 duration", duration(stats.get("p95_duration"))),
        ("p99 duration", duration(stats.get("p99_duration"))),
        ("Total cost", money(stats.get("total_cost"))),
        ("Total tokens", count(stats.get("total_tokens"))),
        ("  Input tokens", count(stats.get("input_tokens"))),
        ("  Output tokens", count(stats.get("output_tokens"))),
        ("LLM calls", count(stats.get("llm_calls"))),
        ("Tool calls", count(stats.get("tool_calls"))),
    )
    for label, value in rows:
        table.add_row(label, value)
    return table


_GROUP_TITLES = {"agent": "Agent", "model": "Model", "provider": "Provider", "date": "Date"}


def cost_table(rows: Sequence[Mapping[str, Any]], group_by: Sequence[str]) -> Table:
    """One row per group with calls, tokens and cost, and a total row."""
    table = Table(show_footer=True)
    for index, key in enumerate(group_by):
        table.add_column(_GROUP_TITLES[key], footer="Total" if index == 0 else "", style="cyan")
    table.add_column(
        "Calls", justify="right", footer=count(sum(int(r.get("calls") or 0) for r in rows))
    )
    table.add_column(
        "Tokens", justify="right", footer=count(sum(int(r.get("tokens") or 0) for r in rows))
    )
    table.add_column(
        "Cost", justify="right", footer=money(sum(float(r.get("cost") or 0.0) for r in rows))
    )
    for row in rows:
        table.add_row(
            *[str(row.get(key) if row.get(key) is not None else "(none)") for key in group_by],
            count(row.get("calls")),
            count(row.get("tokens")),
            money(row.get("cost")),
        )
    return table


_EVENT_LABELS = {"llm_call": "LLM", "tool_call": "Tool", "memory": "Memory", "custom": "Event"}


def _event_label(event: Mapping[str, Any], origin: float) -> Text:
    started = event.get("started_at")
    offset = float(started) - origin if started is not None else event.get("offset")
    label = Text(f"[{duration(offset) if offset is not None else '?'}] ", style="dim")
    kind = str(event.get("kind"))
    label.append(_EVENT_LABELS.get(kind, kind.title()), style="bold")
    label.append(f" {event.get('name')}")
    model = event.get("model")
    if model and model != event.get("name"):
        label.append(f" ({model})", style="magenta")
    if event.get("provider"):
        label.append(f" [{event.get('provider')}]", style="dim")
    details: list[str] = []
    tokens = int(event.get("total_tokens") or 0)
    if kind == "llm_call" or tokens:
        details.append(
            f"{count(tokens)} tokens ({count(event.get('input_tokens'))} in / "
            f"{count(event.get('output_tokens'))} out)"
        )
    if event.get("cost_usd") is not None:
        details.append(money(event.get("cost_usd")))
    details.append(duration(event.get("duration")))
    label.append(" - " + ", ".join(details))
    if event.get("status") == "failure":
        label.append(f"  ✗ {event.get('error_type') or 'failed'}", style="bold red")
        if event.get("error_message"):
            label.append(f": {event.get('error_message')}", style="red")
    return label


def _child_label(child: Mapping[str, Any], offset: float | None) -> Text:
    metrics = _metrics(child)
    label = Text(f"[{duration(offset) if offset is not None else '?'}] ", style="dim")
    label.append("Agent" if child.get("kind") != "tool" else "Tool run", style="bold")
    label.append(f" {child.get('agent_name')}", style="cyan")
    label.append(f" ({child.get('id')}) ", style="dim")
    label.append_text(status_text(child.get("status")))
    label.append(
        f" - {duration(child.get('duration'))}, {count(metrics.get('total_tokens'))} tokens, "
        f"{money(metrics.get('total_cost'))}"
    )
    return label


def _add_error(node: Tree, execution: Mapping[str, Any]) -> None:
    if execution.get("status") != "failed":
        return
    error = Text("Error: ", style="bold red")
    error.append(str(execution.get("error_type") or "unknown error"), style="bold red")
    if execution.get("error_message"):
        error.append(f": {execution.get('error_message')}", style="red")
    node.add(error)


def _add_timeline(node: Tree, trace: Mapping[str, Any], origin: float) -> None:
    """Events and child executions of `trace`, merged and ordered by their start time."""
    items: list[tuple[float, int, Mapping[str, Any], bool]] = []
    for event in trace.get("events") or ():
        items.append(
            (float(event.get("started_at") or 0.0), int(event.get("seq") or 0), event, False)
        )
    for child in trace.get("children_records") or ():
        items.append((float(child.get("started_at") or 0.0), -1, child, True))
    items.sort(key=lambda item: (item[0], item[1]))
    for started, _, item, is_child in items:
        if not is_child:
            node.add(_event_label(item, origin))
            continue
        branch = node.add(_child_label(item, started - origin))
        _add_error(branch, item)
        _add_timeline(branch, item, origin)


def trace_tree(trace: Mapping[str, Any]) -> Tree:
    """The execution, its metrics, and a timeline of events and nested runs.

    `trace` is `Store.get_execution()` output with `children_records`: the child executions,
    each fetched the same way (recursively). Offsets are from the root's start.
    """
    metrics = _metrics(trace)
    root_label = Text("Execution Trace: ", style="bold")
    root_label.append(str(trace.get("agent_name")), style="bold cyan")
    root_label.append(f" ({trace.get('id')})", style="dim")
    tree = Tree(root_label)
    info = tree.add(Text("Execution Info", style="bold"))
    info.add(f"Started: {format_local(trace.get('started_at'))}")
    info.add(f"Ended: {format_local(trace.get('ended_at'))}")
    status = Text("Status: ")
    status.append_text(status_text(trace.get("status")))
    info.add(status)
    info.add(f"Duration: {duration(trace.get('duration'))}")
    if trace.get("parent_id"):
        info.add(f"Parent: {trace.get('parent_id')}")
    _add_error(info, trace)
    for key, value in sorted((trace.get("attributes") or {}).items()):
        info.add(f"{key}: {value}")
    summary = tree.add(Text("Metrics", style="bold"))
    summary.add(f"total_cost: {money(metrics.get('total_cost'))}")
    summary.add(
        f"total_tokens: {count(metrics.get('total_tokens'))} ({count(metrics.get('input_tokens'))} "
        f"in / {count(metrics.get('output_tokens'))} out)"
    )
    summary.add(f"llm_calls: {count(metrics.get('llm_calls'))}")
    summary.add(f"tool_calls: {count(metrics.get('tool_calls'))}")
    events = list(trace.get("events") or ())
    children = list(trace.get("children_records") or ())
    heading = f"Timeline ({_plural(len(events), 'event')}"
    heading += f", {_plural(len(children), 'nested run')})" if children else ")"
    timeline = tree.add(Text(heading, style="bold"))
    origin = float(trace.get("started_at") or 0.0)
    _add_timeline(timeline, trace, origin)
    if trace.get("duration") is not None:
        end = Text(f"[{duration(trace.get('duration'))}] ", style="dim")
        end.append_text(status_text(trace.get("status")))
        if trace.get("status") == "failed" and trace.get("error_type"):
            end.append(f" ({trace.get('error_type')})", style="red")
        timeline.add(end)
    return tree


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"

"""How the CLI shows money, durations, times and executions, for people and for scripts.

The live view and the listings build their tables here so they always agree. Machine output
(`--json`, `export`) is `to_record()` of the store's typed rows (`agentwatch.store.rows`),
the one documented shape (see docs/cli.md). A cost that could not be priced is never shown
as `$0.00`: it reads `unpriced`, or `$0.0123 + 2 unpriced` when only some calls had a price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentwatch.cli._time import format_local
from agentwatch.store.rows import CostRow, EventRow, ExecutionDetail, ExecutionRow, SummaryStats

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree


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


def cost_text(cost: float | None, unpriced: int = 0) -> str:
    """Money with the unpriced calls it leaves out: `$0.0123`, `$0.0123 + 2 unpriced`,
    `unpriced` (every call unpriced), `unpriced (3)`."""
    if unpriced <= 0:
        return money(cost if cost is not None else 0.0)
    if cost is None:
        return "unpriced" if unpriced == 1 else f"unpriced ({unpriced:,})"
    return f"{money(cost)} + {unpriced:,} unpriced"


def count(value: int | float | None) -> str:
    """`12,450`; `-` for None."""
    return "-" if value is None else f"{int(value):,}"


def percent(ratio: float | None) -> str:
    """`95.2%` from 0.952."""
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def status_text(status: str | None) -> Text:
    """Coloured status with a symbol, so it reads without colour too."""
    from rich.text import Text

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


#: Shortest id prefix a narrow listing shows: `exec_` and 7 hex digits, git's default.
MIN_ID_PREFIX = 12
#: Columns a narrow listing gives up, least useful first (`date` keeps the time of day).
_DROP_ORDER = ("tokens", "duration", "date", "cost", "time")
_HEADERS = {
    "time": "Time",
    "id": "ID",
    "agent": "Agent",
    "status": "Status",
    "duration": "Duration",
    "tokens": "Tokens",
    "cost": "Cost",
}
_RIGHT = {"duration", "tokens", "cost"}


def _table_width(widths: Iterable[int]) -> int:
    """Width of a rich Table with the default box: content + 2 padding + 1 rule a column."""
    cells = list(widths)
    return sum(cells) + 3 * len(cells) + 1


def executions_table(
    executions: Iterable[ExecutionRow],
    *,
    title: str,
    show_date: bool = True,
    show_id: bool = True,
    width: int | None = None,
    shorten_ids: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
) -> Table:
    """Time, (ID,) agent, status, duration, tokens, cost: the listing and the live view.

    `width` (a terminal's) chooses the columns: when the table does not fit, ids become
    the unique prefixes `shorten_ids` gives (at least `MIN_ID_PREFIX` characters, which
    `monitor trace` resolves), then tokens, duration, the date, cost and time are dropped
    in that order. Agent, status and the usable id are always shown and never cut (a name
    too long for a very narrow terminal wraps). None (a pipe, a file) keeps every column
    and every full value.
    """
    from rich.cells import cell_len
    from rich.table import Table

    rows = list(executions)
    cells: dict[str, list[str | Text]] = {key: [] for key in _HEADERS}
    for execution in rows:
        cells["time"].append(format_local(execution.started_at, date_part=show_date))
        cells["id"].append(execution.id)
        cells["agent"].append(execution.agent + (" (tool)" if execution.kind == "tool" else ""))
        cells["status"].append(status_text(execution.status))
        cells["duration"].append(duration(execution.duration))
        cells["tokens"].append(count(execution.total_tokens))
        cells["cost"].append(cost_text(execution.cost_usd, execution.unpriced_calls))
    shown = [key for key in _HEADERS if show_id or key != "id"]
    shortened = False

    def needed() -> int:
        return _table_width(
            max([cell_len(_HEADERS[key]), *(cell_len(str(c)) for c in cells[key])]) for key in shown
        )

    if width is not None and needed() > width:
        if "id" in shown and shorten_ids is not None and rows:
            prefixes = shorten_ids([e.id for e in rows])
            cells["id"] = [prefixes.get(e.id, e.id) for e in rows]
            shortened = cells["id"] != [e.id for e in rows]
        for key in _DROP_ORDER:
            if needed() <= width:
                break
            if key == "date":
                if show_date:
                    cells["time"] = [format_local(e.started_at, date_part=False) for e in rows]
            elif key in shown:
                shown.remove(key)
    table = Table(title=title, title_justify="left", expand=False)
    for key in shown:
        longest = max((cell_len(str(c)) for c in cells[key]), default=0)
        table.add_column(
            _HEADERS[key],
            justify="right" if key in _RIGHT else "left",
            style={"id": "dim", "agent": "cyan"}.get(key, ""),
            no_wrap=key != "agent",
            min_width=longest if key in ("id", "status") else None,
            overflow="fold",
        )
    for index in range(len(rows)):
        table.add_row(*(cells[key][index] for key in shown))
    if shortened:
        table.caption = "IDs shortened to fit: `agentwatch monitor trace` takes any unique prefix."
        table.caption_justify = "left"
    return table


def stats_table(stats: SummaryStats) -> Table:
    """Two columns of summary statistics (runs, success rate, latency percentiles, calls)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("Metric", style="bold")
    table.add_column("Value", justify="right")
    failed = stats.failed_runs
    rows: Sequence[tuple[str, str | Text]] = (
        ("Runs", count(stats.runs)),
        ("  Top-level", count(stats.top_level_runs)),
        ("  Nested", count(stats.nested_runs)),
        ("  Completed", Text(count(stats.completed_runs), style="green")),
        ("  Failed", Text(count(failed), style="red" if failed else "")),
        ("Success rate", percent(stats.success_rate)),
        ("Avg duration", duration(stats.avg_duration)),
        ("p50 duration", duration(stats.p50_duration)),
        ("p95 duration", duration(stats.p95_duration)),
        ("p99 duration", duration(stats.p99_duration)),
        ("LLM calls", count(stats.llm_calls)),
        ("  Unpriced", count(stats.unpriced_calls)),
        ("Tool calls", count(stats.tool_calls)),
        ("Total cost", cost_text(stats.cost_usd, stats.unpriced_calls)),
        ("Total tokens", count(stats.total_tokens)),
        ("  Input tokens", count(stats.input_tokens)),
        ("  Output tokens", count(stats.output_tokens)),
    )
    for label, value in rows:
        table.add_row(label, value)
    return table


_GROUP_TITLES = {"agent": "Agent", "model": "Model", "provider": "Provider", "date": "Date"}


def cost_table(rows: Sequence[CostRow], group_by: Sequence[str]) -> Table:
    """One row per group with calls, unpriced calls, tokens and cost, and a total row."""
    from rich.table import Table

    total_cost = sum(r.cost_usd or 0.0 for r in rows)
    calls = sum(r.llm_calls for r in rows)
    unpriced = sum(r.unpriced_calls for r in rows)
    table = Table(show_footer=True)
    for index, key in enumerate(group_by):
        title = _GROUP_TITLES.get(key, key)  # an attribution dimension: its own name
        table.add_column(title, footer="Total" if index == 0 else "", style="cyan")
    table.add_column("Calls", justify="right", footer=count(calls))
    table.add_column("Unpriced", justify="right", footer=count(unpriced))
    table.add_column("Tokens", justify="right", footer=count(sum(r.tokens for r in rows)))
    table.add_column(
        "Cost",
        justify="right",
        footer=cost_text(total_cost if calls > unpriced else None, unpriced),
    )
    for row in rows:
        table.add_row(
            *[
                str(v) if (v := row.group.get(key)) not in (None, "") else "(none)"
                for key in group_by
            ],
            count(row.llm_calls),
            count(row.unpriced_calls),
            count(row.tokens),
            cost_text(row.cost_usd, row.unpriced_calls),
        )
    return table


_EVENT_LABELS = {"llm_call": "LLM", "tool_call": "Tool", "memory": "Memory", "custom": "Event"}


def _event_label(event: EventRow, origin: float) -> Text:
    from rich.text import Text

    offset = event.started_at - origin
    label = Text(f"[{duration(offset)}] ", style="dim")
    kind = event.kind
    label.append(_EVENT_LABELS.get(kind, kind.title()), style="bold")
    label.append(f" {event.name}")
    if event.model and event.model != event.name:
        label.append(f" ({event.model})", style="magenta")
    if event.provider:
        label.append(f" [{event.provider}]", style="dim")
    details: list[str] = []
    if kind == "llm_call" or event.total_tokens:
        details.append(
            f"{count(event.total_tokens)} tokens ({count(event.input_tokens)} in / "
            f"{count(event.output_tokens)} out)"
        )
    if event.unpriced:
        details.append("unpriced")
    elif event.cost_usd is not None:
        details.append(money(event.cost_usd))
    details.append(duration(event.duration))
    label.append(" - " + ", ".join(details))
    if event.status == "failure":
        label.append(f"  ✗ {event.error_type or 'failed'}", style="bold red")
        if event.error_message:
            label.append(f": {event.error_message}", style="red")
    return label


@dataclass(frozen=True)
class Trace:
    """One execution with its timeline and the traces of the executions nested in it."""

    detail: ExecutionDetail
    children: list[Trace] = field(default_factory=list)

    @property
    def execution(self) -> ExecutionRow:
        return self.detail.execution

    def to_record(self) -> dict[str, Any]:
        """`monitor trace --json`: the execution record, `events`, nested `children`."""
        return {
            **self.execution.to_record(),
            "events": [event.to_record() for event in self.detail.events],
            "children": [child.to_record() for child in self.children],
        }


def _run_summary(execution: ExecutionRow) -> str:
    return (
        f"{duration(execution.duration)}, {count(execution.total_tokens)} tokens, "
        f"{cost_text(execution.cost_usd, execution.unpriced_calls)}"
    )


def _child_label(child: ExecutionRow, offset: float) -> Text:
    from rich.text import Text

    label = Text(f"[{duration(offset)}] ", style="dim")
    label.append("Agent" if child.kind != "tool" else "Tool run", style="bold")
    label.append(f" {child.agent}", style="cyan")
    label.append(f" ({child.id}) ", style="dim")
    label.append_text(status_text(child.status))
    label.append(f" - {_run_summary(child)}")
    return label


def _add_error(node: Tree, execution: ExecutionRow) -> None:
    from rich.text import Text

    if execution.status != "failed":
        return
    error = Text("Error: ", style="bold red")
    error.append(execution.error_type or "unknown error", style="bold red")
    if execution.error_message:
        error.append(f": {execution.error_message}", style="red")
    node.add(error)


def _add_timeline(node: Tree, trace: Trace, origin: float) -> None:
    """Events and child executions of `trace`, merged and ordered by their start time."""
    items: list[tuple[float, int, EventRow | Trace]] = [
        (event.started_at, event.seq, event) for event in trace.detail.events
    ]
    items += [(child.execution.started_at, -1, child) for child in trace.children]
    items.sort(key=lambda item: (item[0], item[1]))
    for started, _, item in items:
        if isinstance(item, EventRow):
            node.add(_event_label(item, origin))
            continue
        branch = node.add(_child_label(item.execution, started - origin))
        _add_error(branch, item.execution)
        _add_timeline(branch, item, origin)


def trace_tree(trace: Trace) -> Tree:
    """The execution, its totals, and a timeline of events and nested runs.

    Offsets are from the root's start; nested runs show their own subtree.
    """
    from rich.text import Text
    from rich.tree import Tree

    run = trace.execution
    root_label = Text("Execution Trace: ", style="bold")
    root_label.append(run.agent, style="bold cyan")
    root_label.append(f" ({run.id})", style="dim")
    tree = Tree(root_label)
    info = tree.add(Text("Execution Info", style="bold"))
    info.add(f"Started: {format_local(run.started_at)}")
    info.add(f"Ended: {format_local(run.ended_at)}")
    status = Text("Status: ")
    status.append_text(status_text(run.status))
    info.add(status)
    info.add(f"Duration: {duration(run.duration)}")
    if run.kind == "tool":
        info.add("Kind: tool (a tool call of its parent, not a run)")
    if run.parent_id:
        info.add(f"Parent: {run.parent_id}")
    _add_error(info, run)
    for key, value in sorted(run.attributes.items()):
        info.add(f"{key}: {value}")
    summary = tree.add(Text("Metrics", style="bold"))
    summary.add(f"cost: {cost_text(run.cost_usd, run.unpriced_calls)}")
    summary.add(
        f"total_tokens: {count(run.total_tokens)} ({count(run.input_tokens)} "
        f"in / {count(run.output_tokens)} out)"
    )
    summary.add(f"llm_calls: {count(run.llm_calls)}")
    summary.add(f"tool_calls: {count(run.tool_calls)}")
    events = trace.detail.events
    heading = f"Timeline ({_plural(len(events), 'event')}"
    heading += f", {_plural(len(trace.children), 'nested run')})" if trace.children else ")"
    timeline = tree.add(Text(heading, style="bold"))
    _add_timeline(timeline, trace, run.started_at)
    if run.duration is not None:
        end = Text(f"[{duration(run.duration)}] ", style="dim")
        end.append_text(status_text(run.status))
        if run.status == "failed" and run.error_type:
            end.append(f" ({run.error_type})", style="red")
        timeline.add(end)
    return tree


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"

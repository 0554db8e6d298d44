"""`agentwatch monitor`: the live view, and listings, statistics, traces, costs, export, prune.

Every command reads the durable store (the same one `agentwatch serve` exposes), so it sees
the runs of every process writing to it. Listings take `--json` for scripts: the shape is
`to_record()` of the store's rows, documented in docs/cli.md (ISO-8601 UTC times).

Every command counts the same things for the same filter: a run is an agent execution
(nested ones included), a tool call is not a run (`list`/`export --kind tool|all` show the
observed tools too), and calls are counted from the stored call events (see
`agentwatch.store.rows`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agentwatch.cli._options import settings_options
from agentwatch.cli._session import (
    console,
    describe_store,
    echo_json,
    open_for_reading,
    resolve_settings,
    terminal_width,
)
from agentwatch.cli._time import TIME, SecondsRange, format_local, iso_utc, local_zone_key

if TYPE_CHECKING:
    # Imported where a table is drawn, so `--json` output never loads rich's helpers.
    from agentwatch.cli import _render
    from agentwatch.config import Settings
    from agentwatch.store.base import Store
    from agentwatch.store.rows import ExecutionFilter

_STATUSES = ("completed", "failed")
_KINDS = ("agent", "tool", "all")
#: What `--kind` lists, as nouns for the messages.
_KIND_NOUNS = {"agent": "runs", "tool": "tool calls", "all": "runs and tool calls"}
_GROUPS = ("agent", "model", "provider", "date")
_MONTH_SECONDS = 30 * 86400.0


def _agent_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--agent", metavar="NAME", default=None, help=help_text)


def _since_option(
    default: str | None = None, what: str = "runs started"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    suffix = f" Default: {default}." if default else " Default: no lower bound."
    return click.option(
        "--since",
        type=TIME,
        default=default,
        metavar="TIME",
        help=f"Only {what} at or after TIME: a duration ago (30m, 1h, 7d, 2w), today, "
        "yesterday, or an ISO date / date-time (local time unless it has an offset)." + suffix,
    )


_until_option = click.option(
    "--until",
    type=TIME,
    default=None,
    metavar="TIME",
    help="Only runs started before TIME (same forms as --since). Default: no upper bound.",
)
_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table."
)
_kind_option = click.option(
    "--kind",
    type=click.Choice(_KINDS),
    default="agent",
    show_default=True,
    help="agent: runs (agent executions, nested ones included), as stats and "
    'agentwatch_executions_total count them; tool: functions observed with kind="tool" '
    "(tool calls, not runs); all: both.",
)


_ATTRIBUTE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _attributes(
    ctx: click.Context, param: click.Parameter, value: Sequence[str]
) -> dict[str, str] | None:
    found: dict[str, str] = {}
    for item in value:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not _ATTRIBUTE_NAME.match(key) or not text:
            raise click.BadParameter(
                f"expected DIMENSION=VALUE (e.g. team=search), got {item!r}", ctx=ctx, param=param
            )
        found[key] = text
    return found or None


def _attr_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--attr",
        "attributes",
        multiple=True,
        callback=_attributes,
        metavar="DIMENSION=VALUE",
        help=f"Only {what} attributed to this value of an attribution dimension (team=search: "
        "the run's own or inherited attribute, or the call's litellm metadata); repeat to "
        "require several. Default: no filter.",
    )


def _filter(
    agent: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    kind: str = "agent",
    attributes: dict[str, str] | None = None,
) -> ExecutionFilter:
    from agentwatch.store.rows import ExecutionFilter

    pairs = tuple(sorted((attributes or {}).items()))
    return ExecutionFilter(agent, status, since, until, None if kind == "all" else kind, pairs)


def _scope(
    agent: str | None,
    since: float | None,
    until: float | None,
    attributes: dict[str, str] | None = None,
) -> str:
    parts = [f"agent {agent}" if agent else "all agents"]
    parts.extend(f"{k}={v}" for k, v in sorted((attributes or {}).items()))
    if since is not None:
        parts.append(f"since {format_local(since)}")
    if until is not None:
        parts.append(f"until {format_local(until)}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- live view


def _live_frame(
    store: Store,
    *,
    agent: str | None,
    since: float | None,
    rows: int,
    store_label: str,
    refresh: float,
    width: int | None = None,
) -> Any:
    """One screen of the live view: a header, the totals line and the recent runs."""
    from rich.console import Group
    from rich.text import Text

    from agentwatch.cli import _render

    stats = store.summary(agent=agent, since=since)
    recent = store.executions(_filter(agent, None, since, None), limit=rows)
    header = Text("📊 agentwatch monitor", style="bold")
    header.append(f"  {_scope(agent, since, None)}  store {store_label}", style="dim")
    totals = Text()
    totals.append(f"Runs: {_render.count(stats.runs)}", style="bold")
    totals.append(" | ")
    totals.append(f"Completed: {_render.count(stats.completed_runs)}", style="green")
    totals.append(" | ")
    failed = stats.failed_runs
    totals.append(f"Failed: {_render.count(failed)}", style="bold red" if failed else "")
    totals.append(f" | Success rate: {_render.percent(stats.success_rate)}")
    totals.append(f" | Spend: {_render.cost_text(stats.cost_usd, stats.unpriced_calls)}")
    totals.append(f" | Tokens: {_render.count(stats.total_tokens)}")
    totals.append(f" | p95: {_render.duration(stats.p95_duration)}")
    table = _render.executions_table(
        recent, title="Recent Activity", show_date=False, show_id=False, width=width
    )
    footer = Text(
        f"Updated {format_local(time.time(), date_part=False)}, every {refresh:g}s. "
        "Press Ctrl-C to quit.",
        style="dim",
    )
    parts: list[Any] = [header, totals, table]
    if not recent:
        parts.append(Text("No runs recorded yet: instrument your code and they appear here."))
    parts.append(footer)
    return Group(*parts)


def _run_live(
    store: Store,
    *,
    agent: str | None,
    since: float | None,
    refresh: float,
    rows: int | None,
    store_label: str,
    once: bool,
) -> None:
    from rich.live import Live
    from rich.text import Text

    from agentwatch.errors import StoreError

    out = console()

    def frame() -> Any:
        # Re-read the height each time, so a resized terminal gets a fitting table.
        visible = rows if rows is not None else max(5, out.size.height - 10)
        return _live_frame(
            store,
            agent=agent,
            since=since,
            rows=visible,
            store_label=store_label,
            refresh=refresh,
            width=terminal_width(out),
        )

    if once:
        out.print(frame())
        return
    last_good = frame()
    try:
        with Live(last_good, console=out, auto_refresh=False, transient=False) as live:
            while True:
                time.sleep(refresh)
                try:
                    last_good = frame()
                    live.update(last_good, refresh=True)
                except StoreError as exc:  # a busy or restarting store: keep the last view
                    from rich.console import Group

                    notice = Text(f"Store error (retrying): {exc}", style="bold red")
                    live.update(Group(last_good, notice), refresh=True)
    except KeyboardInterrupt:
        pass
    out.print("[dim]Stopped.[/dim]")


@click.group(invoke_without_command=True)
@settings_options
@_agent_option("Show only runs of this agent. Default: every agent.")
@click.option(
    "--refresh",
    type=SecondsRange(0.1, 3600),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between two reads of the store (each read is two cheap queries).",
)
@_since_option()
@click.option(
    "--rows",
    type=click.IntRange(1, 1000),
    default=None,
    metavar="N",
    help="Recent runs to show. Default: as many as fit the terminal.",
)
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and `watch`).")
@click.pass_context
def monitor(
    ctx: click.Context,
    store_url: str | None,
    config_path: Path | None,
    agent: str | None,
    refresh: float,
    since: float | None,
    rows: int | None,
    once: bool,
) -> None:
    """Live view of agent runs: totals, success rate, spend and recent activity.

    Without a subcommand, redraws every --refresh seconds from the store, so it shows the
    runs of every process writing there. Ctrl-C exits cleanly. Subcommands list, summarise,
    trace, cost, export and prune the recorded runs.
    """
    ctx.ensure_object(dict)
    ctx.obj["monitor"] = {"store_url": store_url, "config_path": config_path}
    if ctx.invoked_subcommand is not None:
        live_only = [
            f"--{name}"
            for name in ("agent", "refresh", "since", "rows", "once")
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if live_only:
            raise click.UsageError(
                f"{', '.join(live_only)} belong(s) to the live view; put filters after "
                f"the subcommand (agentwatch monitor {ctx.invoked_subcommand} --agent ...)"
            )
        return
    settings = resolve_settings(config_path, store_url)
    with open_for_reading(settings) as store:
        _run_live(
            store,
            agent=agent,
            since=since,
            refresh=refresh,
            rows=rows,
            store_label=describe_store(settings),
            once=once,
        )


def _settings_from(ctx: click.Context, store_url: str | None, config_path: Path | None) -> Settings:
    """Flags given after the subcommand win over those given to `monitor` itself."""
    parent = (ctx.obj or {}).get("monitor", {})
    return resolve_settings(
        config_path or parent.get("config_path"), store_url or parent.get("store_url")
    )


# --------------------------------------------------------------------------- list


@monitor.command("list")
@settings_options
@_agent_option("Only runs of this agent.")
@click.option(
    "--status",
    type=click.Choice(_STATUSES),
    default=None,
    help="Only completed or only failed runs. Default: both.",
)
@_since_option()
@_until_option
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=20,
    metavar="N",
    show_default=True,
    help="Most recent runs to show (use `monitor export` for everything).",
)
@_kind_option
@_attr_option("runs")
@_json_option
@click.pass_context
def list_(
    ctx: click.Context,
    store_url: str | None,
    config_path: Path | None,
    agent: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    kind: str,
    attributes: dict[str, str] | None,
    as_json: bool,
) -> None:
    """List recorded runs, newest first: time, ID, agent, status, duration, tokens, cost.

    Runs are agent executions, nested ones included (the count `monitor stats` reports);
    --kind tool or all lists observed tools too. A run's tokens and cost include the calls
    made inside the tools it ran; calls that could not be priced are shown as unpriced.
    """
    settings = _settings_from(ctx, store_url, config_path)
    flt = _filter(agent, status, since, until, kind, attributes)
    with open_for_reading(settings) as store:
        executions = store.executions(flt, limit=limit)
        if as_json:
            echo_json([e.to_record() for e in executions])
            return
        from agentwatch.cli import _render

        total = store.count(flt)
        out = console()
        table = _render.executions_table(
            executions,
            title="Execution History",
            width=terminal_width(out),
            shorten_ids=lambda ids: store.unique_id_prefixes(ids, minimum=_render.MIN_ID_PREFIX),
        )
    out.print(table)
    noun = _KIND_NOUNS[kind]
    if not executions:
        out.print(f"No {noun} match ({_scope(agent, since, until, attributes)}).")
    elif total > len(executions):
        out.print(
            f"Showing the {len(executions)} most recent of {total:,} {noun}; "
            "raise --limit or use `agentwatch monitor export` for all."
        )


# --------------------------------------------------------------------------- stats


@monitor.command()
@settings_options
@_agent_option("Only runs of this agent.")
@_since_option()
@_until_option
@_attr_option("runs and calls")
@_json_option
@click.pass_context
def stats(
    ctx: click.Context,
    store_url: str | None,
    config_path: Path | None,
    agent: str | None,
    since: float | None,
    until: float | None,
    attributes: dict[str, str] | None,
    as_json: bool,
) -> None:
    """Summary statistics: runs, success rate, p50 / p95 / p99 duration, calls and spend.

    Runs are agent executions (top-level and nested) started in the window, the number
    `monitor list` counts and agentwatch_executions_total adds up; tool calls are not runs.
    Calls, tokens and cost cover every LLM and tool call made in the window (calls outside
    any run included when no --agent is given), the totals of `monitor cost` and of the
    agentwatch_llm_* counters; unpriced calls are counted, not added as $0.
    """
    settings = _settings_from(ctx, store_url, config_path)
    with open_for_reading(settings) as store:
        summary = store.summary(agent=agent, since=since, until=until, attributes=attributes)
    if as_json:
        echo_json(
            {
                "agent": agent,
                "attributes": attributes or {},
                "since": iso_utc(since),
                "until": iso_utc(until),
                **summary.to_record(),
            }
        )
        return
    from agentwatch.cli import _render

    out = console()
    out.print(f"[bold]📊 Summary Statistics[/bold] ({_scope(agent, since, until, attributes)})")
    out.print(_render.stats_table(summary))


# --------------------------------------------------------------------------- trace

_MAX_DEPTH = 32


def _load_trace(
    store: Store, execution_id: str, seen: set[str], depth: int = 0
) -> _render.Trace | None:
    """`Store.execution` with the executions nested in it, fetched recursively."""
    from agentwatch.cli import _render

    detail = store.execution(execution_id)
    if detail is None:
        return None
    seen.add(execution_id)
    trace = _render.Trace(detail)
    if depth < _MAX_DEPTH:
        for child_id in detail.child_ids:
            if child_id in seen:
                continue
            child = _load_trace(store, child_id, seen, depth + 1)
            if child is not None:
                trace.children.append(child)
    return trace


@monitor.command()
@settings_options
@click.argument("execution_id", metavar="EXEC_ID")
@_json_option
@click.pass_context
def trace(
    ctx: click.Context,
    store_url: str | None,
    config_path: Path | None,
    execution_id: str,
    as_json: bool,
) -> None:
    """Show one run as a tree: nested agents and every LLM, tool and memory event.

    Each event shows its offset from the start of the run, duration, tokens and cost; a
    failed run shows its error type and message. EXEC_ID comes from `monitor list`: the
    whole id or any prefix of it that no other run shares (as git takes commits).
    """
    from agentwatch.errors import ExecutionNotFound

    settings = _settings_from(ctx, store_url, config_path)
    with open_for_reading(settings) as store:
        try:
            resolved = store.resolve_execution_id(execution_id)
        except ExecutionNotFound as exc:
            raise click.ClickException(f"{exc} (see `agentwatch monitor list`)") from None
        trace = _load_trace(store, resolved, set())
    if trace is None:  # pruned between the two reads
        raise click.ClickException(f"no run with ID {resolved!r} (see `agentwatch monitor list`)")
    if as_json:
        echo_json(trace.to_record())
        return
    from agentwatch.cli import _render

    console().print(_render.trace_tree(trace))
    if settings.external_url:
        from agentwatch.console.fmt import run_url

        click.echo(f"console: {run_url(settings.external_url, trace.execution.id)}")


# --------------------------------------------------------------------------- cost


def _group_by(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple[str, ...]:
    groups: list[str] = []
    for item in value or ("agent",):
        for part in item.split(","):
            name = part.strip()
            if name.lower() in _GROUPS:
                name = name.lower()
            if not name:
                continue
            if name not in _GROUPS and not _ATTRIBUTE_NAME.match(name):
                raise click.BadParameter(
                    f"{name!r} is not one of {', '.join(_GROUPS)} nor an attribution dimension",
                    ctx=ctx,
                    param=param,
                )
            if name not in groups:
                groups.append(name)
    if not groups:
        raise click.BadParameter(f"give one of {', '.join(_GROUPS)}", ctx=ctx, param=param)
    return tuple(groups)


def _window_words(since: float, until: float | None, seconds: float) -> str:
    if until is None:
        days = seconds / 86400.0
        hours = seconds / 3600.0
        if days >= 1:
            span = f"{days:.3g} day" + ("" if f"{days:.3g}" == "1" else "s")
        else:
            span = f"{hours:.3g} hour" + ("" if f"{hours:.3g}" == "1" else "s")
        return f"the last {span} (since {format_local(since)})"
    return f"{format_local(since)} to {format_local(until)}"


@monitor.command()
@settings_options
@click.option(
    "--group-by",
    "group_by",
    multiple=True,
    callback=_group_by,
    metavar="agent|model|provider|date|DIMENSION",
    help="Group spend by agent, model, provider, date (local days) or an attribution "
    "dimension (team, customer: as declared in the config); repeat or join with commas for "
    "several (--group-by team,model). Default: agent.",
)
@_since_option("7d", what="spend")
@_until_option
@_agent_option("Only spend of this agent.")
@_attr_option("spend")
@_json_option
@click.pass_context
def cost(
    ctx: click.Context,
    store_url: str | None,
    config_path: Path | None,
    group_by: tuple[str, ...],
    since: float,
    until: float | None,
    agent: str | None,
    attributes: dict[str, str] | None,
    as_json: bool,
) -> None:
    """Spend by agent, model, provider, date or attribution dimension, with an estimated
    monthly cost.

    The estimate scales the spend over the window (--since, default the last 7 days) to 30
    days; the output states that basis. Calls no price is known for are counted as unpriced
    (never as $0) and the estimate says how many it leaves out.
    """
    settings = _settings_from(ctx, store_url, config_path)
    zone = local_zone_key()
    end = until if until is not None else time.time()
    with open_for_reading(settings) as store:
        rows = store.costs(
            list(group_by),
            since=since,
            until=until,
            agent=agent,
            tz=zone,
            attributes=attributes,
        )
    window = max(end - since, 1.0)
    total = sum(r.cost_usd or 0.0 for r in rows)
    unpriced = sum(r.unpriced_calls for r in rows)
    monthly = total / window * _MONTH_SECONDS
    basis = f"spend over {_window_words(since, until, window)} scaled to 30 days"
    if unpriced:
        basis += f"; excludes {unpriced:,} unpriced call" + ("" if unpriced == 1 else "s")
    if as_json:
        echo_json(
            {
                "group_by": list(group_by),
                "agent": agent,
                "attributes": attributes or {},
                "since": iso_utc(since),
                "until": iso_utc(until),
                "window_seconds": window,
                "time_zone": zone,
                "rows": [row.to_record() for row in rows],
                "total_cost_usd": total,
                "unpriced_calls": unpriced,
                "estimated_monthly_cost_usd": monthly,
                "estimate_basis": basis,
            }
        )
        return
    from agentwatch.cli import _render

    out = console()
    title = "💰 Cost by " + ", ".join(g.title() for g in group_by)
    out.print(f"[bold]{title}[/bold] ({_scope(agent, since, until, attributes)})")
    out.print(_render.cost_table(rows, group_by))
    out.print(
        f"Estimated monthly cost: [bold]{_render.money(monthly)}[/bold] "
        f"({_render.money(total)} {basis})"
    )


# --------------------------------------------------------------------------- export

_FORMATS = ("csv", "json", "jsonl")
_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@monitor.command()
@settings_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default=None,
    help="csv (one row per run, attributes as JSON text), json (one array) or jsonl (one "
    "object per line). Default: from the --output suffix, else jsonl.",
)
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    metavar="FILE",
    help="File to write (replaced only once complete); - writes to stdout.",
)
@_agent_option("Only runs of this agent.")
@click.option(
    "--status", type=click.Choice(_STATUSES), default=None, help="Only completed or failed runs."
)
@_since_option()
@_until_option
@_kind_option
@_attr_option("runs")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr. Default: shown when writing a file from a terminal.",
)
@click.pass_context
def export(
    ctx: click.Context,
    store_url: str | None,
    config_path: Path | None,
    fmt: str | None,
    output: str,
    agent: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    kind: str,
    attributes: dict[str, str] | None,
    progress: bool | None,
) -> None:
    """Stream recorded runs, oldest first, as CSV, JSON or JSON Lines.

    Rows are read in chunks and written as they come, so memory stays flat however many
    runs the store holds. The record shape is the one `monitor list --json` prints, and the
    same filter selects the same runs (--kind tool or all adds observed tools).
    """
    from agentwatch.cli._export import write_export

    if fmt is None:
        fmt = (
            _SUFFIX_FORMATS.get(Path(output).suffix.lower(), "jsonl") if output != "-" else "jsonl"
        )
    settings = _settings_from(ctx, store_url, config_path)
    flt = _filter(agent, status, since, until, kind, attributes)
    with open_for_reading(settings) as store:
        written = write_export(store, flt, fmt=fmt, output=output, progress=progress)
    if output != "-":
        click.echo(f"Exported {written:,} {_KIND_NOUNS[kind]} to {output} ({fmt}).", err=True)


# --------------------------------------------------------------------------- prune


@monitor.command()
@settings_options
@click.option(
    "--older-than",
    "older_than",
    type=TIME,
    required=True,
    metavar="TIME",
    help="Delete runs started before TIME: a duration ago (30d, 2w) or an ISO date.",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@_json_option
@click.pass_context
def prune(
    ctx: click.Context,
    store_url: str | None,
    config_path: Path | None,
    older_than: float,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete old runs and their events; the /metrics rollup counters stay intact.

    Only the raw history shrinks: counters and histograms served by `agentwatch serve`
    never go backwards, so Prometheus sees no reset.
    """
    settings = _settings_from(ctx, store_url, config_path)
    with open_for_reading(settings) as store:
        if dry_run:  # what delete_old_executions removes: every kind of execution
            removed = store.count(_filter(None, None, None, older_than, "all"))
        else:
            removed = store.delete_old_executions(older_than)
    if as_json:
        echo_json(
            {
                "dry_run": dry_run,
                "older_than": iso_utc(older_than),
                "older_than_epoch": older_than,
                "deleted_executions": 0 if dry_run else removed,
                "matching_executions": removed,
            }
        )
        return
    before = format_local(older_than)
    if dry_run:
        click.echo(f"Would delete {removed:,} runs (and their events) started before {before}.")
    else:
        click.echo(
            f"Deleted {removed:,} runs (and their events) started before {before}. "
            "Rollup counters are unchanged, so /metrics totals stay intact."
        )

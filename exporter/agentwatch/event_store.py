"""`EventStore`: the public, read-mostly view of the durable store.

    from agentwatch import EventStore

    with EventStore() as store:                      # the configured store (SQLite default)
        for run in store.executions(agent="translator", limit=10):
            print(run.agent, run.status, f"{run.duration:.2f}s", run.cost_usd)
        stats = store.summary(agent="translator")
        print(stats.runs, stats.failed_runs, stats.p95_duration, stats.unpriced_calls)

The typed methods (`executions`, `stream_executions`, `count`, `execution`, `events`,
`summary`, `costs`) return the row classes of `agentwatch.store.rows`; `to_record()` on any of
them gives the JSON shape the CLI's `--json`, `monitor export` and the JSON API print. The
dict methods of earlier releases (`get_executions`, `get_execution`, `get_summary_stats`,
`cost_breakdown`, `iter_executions`, `get_events`) keep working with their old keys
(`agent_name`, `duration`, `metrics`, `total_executions`, ...); prefer the typed ones.

A run is an execution of kind `agent` (nested runs included); observed tools are tool calls,
listed only with `kind="tool"` or `kind=None`. Times are epoch seconds, durations seconds,
costs US dollars (None = unpriced); aggregates are computed in SQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agentwatch.store import Store, open_store
from agentwatch.store.base import RollupRow
from agentwatch.store.rows import (
    CostRow,
    EventRow,
    ExecutionDetail,
    ExecutionFilter,
    ExecutionRow,
    SummaryStats,
)


def _url_for(location: str | os.PathLike[str] | None) -> str:
    if location is None:
        from agentwatch.config import load_settings

        return load_settings().store_url
    text = os.fspath(location)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


class EventStore:
    """Query executions, events, statistics and costs; prune old data.

    Args:
        location: None for the configured store (`AGENTWATCH_STORE_URL`, the config file,
            else `~/.agentwatch/telemetry.db`); a path (str or `Path`) for a SQLite file; or
            a store URL (`sqlite:///...`, `postgresql://...`).
        create: create the store (file and schema) if missing, the default. Pass False
            to only read an existing store: a mistyped path then raises `StoreNotFound`
            instead of creating an empty store there.

    The schema is created or upgraded on open. Thread-safe; close it (or use `with`) to
    release the connection.

    Raises:
        UnsupportedStoreURL: the URL's scheme is not supported.
        StoreNotFound: `create` is False and there is no store at `location`.
        IncompatibleStore: not an agentwatch store, or a schema newer than this release.
        StoreError: the store cannot be opened or migrated.
    """

    def __init__(
        self, location: str | os.PathLike[str] | None = None, *, create: bool = True
    ) -> None:
        self.store: Store = open_store(_url_for(location), create=create)
        try:
            self.store.migrate()
        except BaseException:
            self.store.close()
            raise

    @property
    def url(self) -> str:
        """URL of the underlying store."""
        return self.store.url

    # -- typed queries -------------------------------------------------------------------
    def executions(
        self,
        agent: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        kind: str | None = "agent",
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[ExecutionRow]:
        """Runs newest first; `since` <= started_at < `until`; `limit=None` for all.

        `kind="tool"` lists observed tools instead, `kind=None` both.

        Raises:
            ValueError: an unknown status or kind.
        """
        flt = ExecutionFilter(agent, status, since, until, kind)
        return self.store.executions(flt, limit=limit, offset=offset)

    def stream_executions(
        self,
        agent: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        kind: str | None = "agent",
        chunk_size: int = 1000,
    ) -> Iterator[ExecutionRow]:
        """Stream runs oldest first with bounded memory (for exports)."""
        flt = ExecutionFilter(agent, status, since, until, kind)
        return self.store.stream_executions(flt, chunk_size=chunk_size)

    def count(
        self,
        agent: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        kind: str | None = "agent",
    ) -> int:
        """Number of matching runs (or tools, or both: see `executions`)."""
        return self.store.count(ExecutionFilter(agent, status, since, until, kind))

    def execution(self, execution_id: str) -> ExecutionDetail | None:
        """One execution with its events (its timeline) and its children's ids, or None."""
        return self.store.execution(execution_id)

    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        agent: str | None = None,
        orphans_only: bool = False,
        limit: int | None = 1000,
    ) -> list[EventRow]:
        """Events newest first; `orphans_only` keeps LLM/tool calls made outside any run."""
        return self.store.events(since, until, agent, orphans_only, limit)

    def summary(
        self,
        agent: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> SummaryStats:
        """Run counts, success rate, p50/p95/p99 durations, and every call's totals."""
        return self.store.summary(agent=agent, since=since, until=until)

    def costs(
        self,
        group_by: Sequence[str] | str = ("agent",),
        since: float | None = None,
        until: float | None = None,
        agent: str | None = None,
        tz: str = "UTC",
    ) -> list[CostRow]:
        """Calls, unpriced calls, tokens and cost grouped by agent, model, provider, date.

        Raises:
            ValueError: an unknown group key or time zone.
        """
        keys = (group_by,) if isinstance(group_by, str) else tuple(group_by)
        return self.store.costs(keys, since=since, until=until, agent=agent, tz=tz)

    # -- the dict API of earlier releases --------------------------------------------------
    def get_executions(
        self,
        agent_name: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
        offset: int = 0,
        *,
        kind: str | None = "agent",
    ) -> list[dict[str, Any]]:
        """Runs newest first as dicts (`agent_name`, `duration`, `metrics`, ...)."""
        return self.store.get_executions(agent_name, status, since, until, limit, offset, kind=kind)

    def iter_executions(
        self,
        agent_name: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        chunk_size: int = 1000,
        *,
        kind: str | None = "agent",
    ) -> Iterator[dict[str, Any]]:
        """Stream runs oldest first as dicts, with bounded memory."""
        return self.store.iter_executions(agent_name, status, since, until, chunk_size, kind=kind)

    def count_executions(
        self,
        agent_name: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        kind: str | None = "agent",
    ) -> int:
        """Number of matching runs (same as `count`)."""
        return self.store.count_executions(agent_name, status, since, until, kind=kind)

    def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        """One execution as a dict with `events` and `children` (ids), or None."""
        return self.store.get_execution(execution_id)

    def get_events(
        self,
        since: float | None = None,
        until: float | None = None,
        agent_name: str | None = None,
        orphans_only: bool = False,
        limit: int | None = 1000,
    ) -> list[dict[str, Any]]:
        """Events newest first as dicts."""
        return self.store.get_events(since, until, agent_name, orphans_only, limit)

    def get_summary_stats(
        self,
        agent_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, Any]:
        """`summary()` as a dict: `total_executions` (runs), `completed`, `failed`,
        `success_rate` (0..1), `avg_duration`, `p50/p95/p99_duration`, `total_cost`,
        `unpriced_calls`, tokens, `llm_calls`, `tool_calls`."""
        return self.store.get_summary_stats(agent_name, since, until)

    def cost_breakdown(
        self,
        group_by: Sequence[str] | str = ("agent",),
        since: float | None = None,
        until: float | None = None,
        agent_name: str | None = None,
        tz: str = "UTC",
    ) -> list[dict[str, Any]]:
        """`costs()` as dicts (group keys, `calls`, `unpriced_calls`, `tokens`, `cost`)."""
        keys = (group_by,) if isinstance(group_by, str) else tuple(group_by)
        return self.store.cost_breakdown(keys, since, until, agent_name, tz)

    # -- budgets, rollups, retention --------------------------------------------------------
    def spend(
        self,
        start: float,
        end: float,
        *,
        agent: str | None = None,
        model: str | None = None,
        provider: str | None = None,
    ) -> float:
        """Exact cost of events with `start` <= started_at < `end`, optionally scoped."""
        return self.store.spend(start, end, agent=agent, model=model, provider=provider)

    def read_rollups(self) -> list[RollupRow]:
        """The cumulative counters and histogram buckets `agentwatch serve` exposes."""
        return self.store.read_rollups()

    def last_write_time(self) -> float | None:
        """When any writer last committed a batch (epoch seconds), or None."""
        return self.store.last_write_time()

    def delete_old_executions(self, older_than: float) -> int:
        """Delete executions (and their events) started before `older_than`.

        Exported counters are kept: Prometheus never sees them go down.

        Returns:
            Number of executions deleted.
        """
        return self.store.delete_old_executions(older_than)

    def clear_all(self) -> None:
        """Delete ALL executions, events and rollups (counters restart at zero)."""
        self.store.clear_all()

    def close(self) -> None:
        """Release the connection."""
        self.store.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

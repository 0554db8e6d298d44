"""`EventStore`: the public, read-mostly view of the durable store.

    from agentwatch import EventStore

    with EventStore() as store:                      # the configured store (SQLite default)
        for run in store.get_executions(agent_name="translator", limit=10):
            print(run["agent_name"], run["status"], f"{run['duration']:.2f}s")
        stats = store.get_summary_stats(agent_name="translator")
        print(stats["total_executions"], stats["p95_duration"])

Every method is the matching `Store` method (see `agentwatch.store.base.Store`): times are
epoch seconds, durations seconds, costs US dollars; aggregates are computed in SQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agentwatch.store import Store, open_store
from agentwatch.store.base import RollupRow


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

    def get_executions(
        self,
        agent_name: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Executions newest first; `since` <= started_at < `until`; `limit=None` for all."""
        return self.store.get_executions(agent_name, status, since, until, limit, offset)

    def iter_executions(
        self,
        agent_name: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        chunk_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Stream executions oldest first with bounded memory (for exports)."""
        return self.store.iter_executions(agent_name, status, since, until, chunk_size)

    def count_executions(
        self,
        agent_name: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        """Number of matching executions."""
        return self.store.count_executions(agent_name, status, since, until)

    def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        """One execution with `events` (its timeline) and `children` (ids), or None."""
        return self.store.get_execution(execution_id)

    def get_events(
        self,
        since: float | None = None,
        until: float | None = None,
        agent_name: str | None = None,
        orphans_only: bool = False,
        limit: int | None = 1000,
    ) -> list[dict[str, Any]]:
        """Events newest first; `orphans_only` keeps LLM/tool calls made outside any run."""
        return self.store.get_events(since, until, agent_name, orphans_only, limit)

    def get_summary_stats(
        self,
        agent_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, Any]:
        """Totals, success rate (0..1), average and p50/p95/p99 durations (nearest rank)."""
        return self.store.get_summary_stats(agent_name, since, until)

    def cost_breakdown(
        self,
        group_by: Sequence[str] | str = ("agent",),
        since: float | None = None,
        until: float | None = None,
        agent_name: str | None = None,
        tz: str = "UTC",
    ) -> list[dict[str, Any]]:
        """Calls, tokens and cost grouped by any of agent, model, provider, date (in `tz`)."""
        keys = (group_by,) if isinstance(group_by, str) else tuple(group_by)
        return self.store.cost_breakdown(keys, since, until, agent_name, tz)

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

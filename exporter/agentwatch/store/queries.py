"""The store's read queries: runs, one run's timeline, summary statistics and costs.

Written once for both backends (`?` placeholders, converted by the backend) and returning
the typed rows of `rows.py`. Every reader goes through these, so the CLI, the exports, the
JSON API and `EventStore` count the same things for the same filter:

- runs are executions of kind `agent` (`ExecutionFilter.kind`, default `agent`), counted by
  their agent and start time, as `agentwatch_executions_total` counts them;
- calls (LLM calls, tool calls, tokens, cost) are counted from the events table by their
  own agent label and start time, as the `agentwatch_llm_*` / `agentwatch_tool_calls_total`
  counters and budgets count them; calls outside any run carry agent `none`;
- a run's own totals include the calls made inside the tools it ran (`_with_tool_totals`),
  so an LLM call inside a tool is not invisible in a listing of runs.

The `get_*`, `iter_executions` and `cost_breakdown` methods return the pre-1.0 dict shapes
for `EventStore`'s documented dict API and the unversioned `/api/` routes; they are thin
wrappers over the typed methods.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentwatch.store import aggregates, idcodec
from agentwatch.store import attribution_aggregates as attr_aggregates
from agentwatch.store.rows import (
    ATTRIBUTE_NAME,
    AgentRow,
    CostRow,
    ErrorCount,
    EventRow,
    ExecutionDetail,
    ExecutionFilter,
    ExecutionRow,
    RunSearch,
    SummaryStats,
    TrendPoint,
    known_cost,
)

#: The percentiles `summary` reports.
PERCENTILES = (50, 95, 99)
#: Keys `costs()` can group by.
GROUP_KEYS = ("agent", "model", "provider", "date")
#: Deepest chain of tools within tools whose calls are added to the run that started it.
MAX_TOOL_DEPTH = 32
#: Ids per `IN (...)` list (SQLite's historical limit on bound parameters is 999).
_IN_CHUNK = 500

_UNPRICED = (
    "(SELECT COUNT(*) FROM events u WHERE u.execution_id = executions.id "
    "AND u.kind = 'llm_call' AND u.cost_usd IS NULL)"
)
_TOTALS = (
    "cost_usd, input_tokens, output_tokens, cached_tokens, reasoning_tokens, llm_calls, "
    f"tool_calls, {_UNPRICED}"
)
#: Columns of an execution row; the last eight are the totals, in `_TOTALS` order.
_EXEC_SELECT = (
    "SELECT id, agent, parent_id, kind, status, started_at, ended_at, duration, error_type, "
    f"error_message, arguments, attributes, attribution, {_TOTALS} FROM executions"
)
_TOTALS_AT = 13
_TOOL_CHILDREN = (
    f"SELECT parent_id, id, {_TOTALS} FROM executions "
    "WHERE kind = 'tool' AND parent_id IS NOT NULL AND parent_id IN ({marks})"
)
_EVENT_SELECT = (
    "SELECT id, execution_id, agent, seq, kind, name, started_at, duration, status, model, "
    "provider, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, "
    "time_to_first_token, error_type, error_message, attributes, attribution FROM events"
)
_IS_LLM = "kind = 'llm_call'"
_CALL_TOTALS = (
    f"SELECT COALESCE(SUM(CASE WHEN {_IS_LLM} THEN 1 ELSE 0 END), 0), "
    f"COALESCE(SUM(CASE WHEN {_IS_LLM} AND cost_usd IS NULL THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN kind = 'tool_call' THEN 1 ELSE 0 END), 0), "
    f"COALESCE(SUM(CASE WHEN {_IS_LLM} THEN input_tokens ELSE 0 END), 0), "
    f"COALESCE(SUM(CASE WHEN {_IS_LLM} THEN output_tokens ELSE 0 END), 0), "
    "COALESCE(SUM(cost_usd), 0) FROM events"
)
_RUN_COUNTS = (
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN parent_id IS NULL THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(duration), 0), COUNT(duration) FROM executions"
)
_AGG_RUNS = (
    "SELECT COALESCE(SUM(runs), 0), COALESCE(SUM(top_level), 0), COALESCE(SUM(completed), 0), "
    "COALESCE(SUM(failed), 0), COALESCE(SUM(duration_sum), 0), COALESCE(SUM(duration_count), 0) "
    "FROM agg_runs WHERE "
)
_AGG_CALLS = (
    "SELECT COALESCE(SUM(llm_calls), 0), COALESCE(SUM(unpriced_calls), 0), "
    "COALESCE(SUM(tool_calls), 0), COALESCE(SUM(llm_input_tokens), 0), "
    "COALESCE(SUM(llm_output_tokens), 0), COALESCE(SUM(cost_usd), 0) FROM "
)
#: Up to this many runs in a window, `summary` percentiles are exact (sorted raw durations);
#: above, they are read from the hourly duration buckets (see `aggregates.PERCENTILE_ERROR`).
EXACT_PERCENTILE_RUNS = 20_000


def _hour_date(hour: int, zone: ZoneInfo) -> str | None:
    """The local date (YYYY-MM-DD) of a whole hour in `zone`, or None when a local midnight
    falls inside it (zones offset by a fraction of an hour)."""
    start = hour * aggregates.BUCKET_SECONDS
    first = datetime.fromtimestamp(start, zone).strftime("%Y-%m-%d")
    last = datetime.fromtimestamp(start + aggregates.BUCKET_SECONDS - 1, zone).strftime("%Y-%m-%d")
    return first if first == last else None


def _common_length(a: str, b: str) -> int:
    """How many leading characters `a` and `b` share."""
    for at, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return at
    return min(len(a), len(b))


def _stored(execution_id: str) -> bytes:
    """The stored form of an id given to a query (`idcodec.encode`).

    Raises:
        RecordRefused: an id no store can hold (a lone surrogate), as the driver refused it
            when ids were bound as text.
    """
    try:
        return idcodec.encode(execution_id)
    except UnicodeEncodeError as exc:
        from agentwatch.errors import RecordRefused

        raise RecordRefused(f"not an execution id: {execution_id!r}") from exc


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    return {} if text == "{}" else json.loads(text)  # most rows have no attributes


def _where(
    agent: str | None = None,
    status: str | None = None,
    since: float | None = None,
    until: float | None = None,
    kind: str | None = None,
) -> tuple[str, list[Any]]:
    """A parameterised WHERE clause; `since` inclusive, `until` exclusive.

    `status = 'failed'` is written as that literal (a constant, not the caller's text): it is
    the predicate of the partial index `ix_executions_failed`, which a planner uses only
    when the query states it.
    """
    parts: list[str] = []
    params: list[Any] = []
    if status == "failed":
        parts.append("status = 'failed'")
        status = None
    for clause, value in (
        ("agent = ?", agent),
        ("status = ?", status),
        ("started_at >= ?", since),
        ("started_at < ?", until),
        ("kind = ?", kind),
    ):
        if value is not None:
            parts.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


def _pairs(attributes: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """An attribute filter as the sorted pairs `ExecutionFilter` holds."""
    return tuple(sorted((str(k), str(v)) for k, v in (attributes or {}).items()))


def _and(where: str, condition: str) -> str:
    return where + (" AND " if where else " WHERE ") + condition


def _event_row(row: Sequence[Any], execution_started: float | None) -> EventRow:
    (ev_id, ex_id, agent, seq, kind, name, started_at, duration, status, model, provider, tin,
     tout, tcached, treason, cost, ttft, error_type, error_message, attributes,
     attribution) = row  # fmt: skip
    return EventRow(
        id=int(ev_id),
        execution_id=idcodec.decode_optional(ex_id),
        agent=agent,
        seq=int(seq),
        kind=kind,
        name=name,
        started_at=started_at,
        offset=None if execution_started is None else started_at - execution_started,
        duration=duration,
        status=status,
        model=model,
        provider=provider,
        input_tokens=int(tin),
        output_tokens=int(tout),
        cached_tokens=int(tcached),
        reasoning_tokens=int(treason),
        cost_usd=None if cost is None else float(cost),
        time_to_first_token=ttft,
        error_type=error_type,
        error_message=error_message,
        attributes=_loads(attributes) or {},
        attribution=_loads(attribution) or {},
    )


def _execution_row(row: Sequence[Any], totals: Sequence[Any]) -> ExecutionRow:
    # Positional, in `ExecutionRow` field order: an export builds millions of these.
    (ex_id, agent, parent_id, kind, status, started_at, ended_at, duration, error_type,
     error_message, arguments, attributes, attribution) = row[:_TOTALS_AT]  # fmt: skip
    cost, tin, tout, tcached, treason, llm, tool, unpriced = totals
    llm, unpriced = int(llm), int(unpriced)
    return ExecutionRow(
        idcodec.decode(ex_id),
        agent,
        idcodec.decode_optional(parent_id),
        kind,
        status,
        started_at,
        ended_at,
        duration,
        error_type,
        error_message,
        _loads(arguments),
        _loads(attributes) or {},
        known_cost(float(cost), llm, unpriced),
        unpriced,
        int(tin),
        int(tout),
        int(tcached),
        int(treason),
        llm,
        int(tool),
        _loads(attribution) or {},
    )


class StoreQueries(ABC):
    """Every read query of the store; mixed into `Store`, which supplies the hooks below."""

    _NO_LIMIT: str
    #: SQL for the largest integer not above `{}` (for a non-negative number).
    _FLOOR = "CAST({} AS INTEGER)"

    @abstractmethod
    def _sql(self, sql: str) -> str:
        """`sql` with `?` placeholders converted for the driver."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Any]:
        """Yield a cursor for read-only statements (under the store's lock)."""

    @abstractmethod
    def _stream(self, sql: str, params: Sequence[Any], chunk_size: int) -> Iterator[Any]:
        """Yield the rows of one query in chunks of `chunk_size` on a separate connection."""

    @abstractmethod
    def _percentiles(self, where: str, params: list[Any]) -> list[float | None]:
        """Nearest-rank percentiles of execution durations under `where`."""

    @abstractmethod
    def _local_date(self) -> str:
        """SQL expression for `events.started_at` as YYYY-MM-DD in the zone bound to `?`."""

    @abstractmethod
    def _json_text(self, column: str) -> str:
        """SQL for the text value of one key of the JSON `column`; the key is a `?`."""

    @abstractmethod
    def _json_key(self, key: str) -> str:
        """The parameter `_json_text` expects for `key` (a JSON path, or the key itself)."""

    # -- attribution -------------------------------------------------------------------
    def attribute_conditions(
        self, attributes: Mapping[str, str] | Sequence[tuple[str, str]] | None
    ) -> tuple[list[str], list[Any]]:
        """SQL conditions (and parameters) matching every `dimension = value` of the
        `attribution` JSON column, with the backend's JSON operator (`json_extract` in
        SQLite, `->>` in PostgreSQL). Names are label names; values are bound parameters.

        Raises:
            ValueError: a name that is not a label name.
        """
        if not attributes:
            return [], []
        pairs = attributes.items() if isinstance(attributes, Mapping) else attributes
        parts: list[str] = []
        params: list[Any] = []
        for name, value in sorted(pairs):
            if not ATTRIBUTE_NAME.match(name):
                raise ValueError(f"attribute names are label names, got {name!r}")
            parts.append(f"{self._json_text('attribution')} = ?")
            params.extend((self._json_key(name), str(value)))
        return parts, params

    def _narrowed(
        self,
        where: str,
        params: list[Any],
        attributes: Mapping[str, str] | Sequence[tuple[str, str]] | None,
    ) -> tuple[str, list[Any]]:
        """`where` and its parameters narrowed to rows whose attribution matches."""
        conditions, extra = self.attribute_conditions(attributes)
        for condition in conditions:
            where = _and(where, condition)
        return where, params + extra

    def _filter_where(self, flt: ExecutionFilter) -> tuple[str, list[Any]]:
        where, params = _where(flt.agent, flt.status, flt.since, flt.until, flt.kind)
        return self._narrowed(where, params, flt.attributes)

    # -- typed queries -------------------------------------------------------------------
    def executions(
        self,
        flt: ExecutionFilter | None = None,
        *,
        limit: int | None = 100,
        offset: int = 0,
        before: tuple[float, str] | None = None,
    ) -> list[ExecutionRow]:
        """Executions matching `flt` (default: every run), newest first; `limit=None` for all.

        `before` is a keyset cursor: only rows after `(started_at, id)` in this order, so a
        page costs the same however deep it is (the JSON API's `cursor`).
        """
        where, params = self._filter_where(flt or ExecutionFilter())
        if before is not None:
            where = _and(where, "(started_at < ? OR (started_at = ? AND id < ?))")
            params.extend([before[0], before[0], _stored(before[1])])
        sql = f"{_EXEC_SELECT}{where} ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        if offset:
            if limit is None:
                sql += f" LIMIT {self._NO_LIMIT}"
            sql += " OFFSET ?"
            params.append(int(offset))
        with self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        return self._with_tool_totals(rows)

    def stream_executions(
        self, flt: ExecutionFilter | None = None, *, chunk_size: int = 1000
    ) -> Iterator[ExecutionRow]:
        """Executions matching `flt`, oldest first, `chunk_size` rows in memory at a time.

        Reads on a connection of its own; close the generator (or exhaust it) to release it.
        """
        where, params = self._filter_where(flt or ExecutionFilter())
        sql = f"{_EXEC_SELECT}{where} ORDER BY started_at, id"
        size = max(1, chunk_size)
        chunk: list[Any] = []
        for row in self._stream(self._sql(sql), params, size):
            chunk.append(row)
            if len(chunk) >= size:
                yield from self._with_tool_totals(chunk)
                chunk = []
        if chunk:
            yield from self._with_tool_totals(chunk)

    def count(self, flt: ExecutionFilter | None = None) -> int:
        """Number of executions matching `flt` (default: every run)."""
        where, params = self._filter_where(flt or ExecutionFilter())
        with self._read() as cur:
            cur.execute(self._sql(f"SELECT COUNT(*) FROM executions{where}"), params)
            return int(cur.fetchone()[0])

    def ids_with_prefix(self, prefix: str, *, limit: int = 2) -> list[str]:
        """Ids of executions (any kind) that start with `prefix`, in id order, at most `limit`.

        `prefix` is text, never a pattern. Ids are stored compact (`idcodec`), so this is at
        most two ranges on the primary key: canonical ids (`exec_01ab` or an odd number of
        hex digits, `exec_01a`, bound the 16-byte form) and other ids (tagged UTF-8).
        """
        found: list[str] = []
        with self._read() as cur:
            for span in idcodec.prefix_ranges(prefix):
                sql = "SELECT id FROM executions WHERE id >= ?"
                params: list[Any] = [span.low]
                if span.high is not None:
                    sql += " AND id < ?"
                    params.append(span.high)
                length = "=" if span.canonical else "<>"
                sql += f" AND length(id) {length} {idcodec.CANONICAL_BYTES} ORDER BY id LIMIT ?"
                params.append(int(limit))
                cur.execute(self._sql(sql), params)
                found.extend(
                    text for text in (idcodec.decode(row[0]) for row in cur.fetchall())
                    if text.startswith(prefix)
                )  # fmt: skip
        return sorted(found)[:limit]

    def resolve_execution_id(self, id_or_prefix: str, *, candidates: int = 5) -> str:
        """The id of the execution whose id is `id_or_prefix`, or the only one starting
        with it (as git resolves an abbreviated commit).

        Raises:
            ExecutionNotFound: no id is or starts with `id_or_prefix`.
            AmbiguousExecutionId: several ids start with it; `.candidates` holds up to
                `candidates` of them, in id order.
        """
        from agentwatch.errors import AmbiguousExecutionId, ExecutionNotFound

        try:
            stored = idcodec.encode(id_or_prefix)
        except UnicodeEncodeError:
            raise ExecutionNotFound(f"no run has the ID or ID prefix {id_or_prefix!r}") from None
        with self._read() as cur:
            cur.execute(self._sql("SELECT id FROM executions WHERE id = ?"), (stored,))
            if cur.fetchone() is not None:
                return id_or_prefix
        matches = self.ids_with_prefix(id_or_prefix, limit=candidates + 1)
        if not matches:
            raise ExecutionNotFound(f"no run has the ID or ID prefix {id_or_prefix!r}")
        if len(matches) > 1:
            raise AmbiguousExecutionId(
                id_or_prefix, matches[:candidates], len(matches) > candidates
            )
        return matches[0]

    def unique_id_prefixes(self, ids: Sequence[str], *, minimum: int = 12) -> dict[str, str]:
        """For each id, its shortest prefix of at least `minimum` characters that no other
        execution in the store starts with (the whole id when no shorter one is unique).

        What a listing can show in a narrow terminal: `resolve_execution_id` finds the run
        again from it, as long as no run sharing it is recorded in between.
        """
        shortest: dict[str, str] = {}
        for execution_id in ids:
            length = minimum
            while length < len(execution_id):
                others = [
                    other
                    for other in self.ids_with_prefix(execution_id[:length], limit=2)
                    if other != execution_id
                ]
                if not others:
                    break
                common = _common_length(execution_id, others[0])
                length = max(length + 1, common + 1)
            shortest[execution_id] = execution_id[:length]
        return shortest

    def execution(self, execution_id: str) -> ExecutionDetail | None:
        """One execution (any kind) with its events in timeline order and its children's ids."""
        try:
            stored = idcodec.encode(execution_id)
        except UnicodeEncodeError:
            return None  # no stored id can be it
        with self._read() as cur:
            cur.execute(self._sql(f"{_EXEC_SELECT} WHERE id = ?"), (stored,))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(
                self._sql(f"{_EVENT_SELECT} WHERE execution_id = ? ORDER BY seq, id"), (stored,)
            )
            events = cur.fetchall()
            cur.execute(
                self._sql("SELECT id FROM executions WHERE parent_id = ? ORDER BY started_at, id"),
                (stored,),
            )
            children = tuple(idcodec.decode(r[0]) for r in cur.fetchall())
        (execution,) = self._with_tool_totals([row])
        started = execution.started_at
        timeline = []
        for position, event in enumerate(events):
            item = _event_row(event, started)
            item.seq = position  # late events are stored from LATE_SEQ_BASE on
            timeline.append(item)
        return ExecutionDetail(execution, tuple(timeline), children)

    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        agent: str | None = None,
        orphans_only: bool = False,
        limit: int | None = 1000,
    ) -> list[EventRow]:
        """Events by time, newest first; `orphans_only` keeps calls outside any execution."""
        where, params = _where(agent, None, since, until)
        if orphans_only:
            where = _and(where, "execution_id IS NULL")
        sql = f"{_EVENT_SELECT}{where} ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        return [_event_row(r, None) for r in rows]

    def summary(
        self,
        *,
        agent: str | None = None,
        since: float | None = None,
        until: float | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> SummaryStats:
        """Run counts, success, mean and nearest-rank p50/p95/p99 duration, and call totals.

        Runs are agent executions (nested ones included) of `agent` started in the window;
        calls are every LLM and tool call billed to `agent` (every call, including those
        outside any run, when `agent` is None) made in the window. See `SummaryStats`.
        """
        if attributes:
            runs, calls, percentiles = self._attributed_summary(agent, since, until, attributes)
        else:
            runs, calls, percentiles = self._aggregated_summary(agent, since, until)
        n_runs, top, completed, failed, duration_sum, durations = runs
        llm, unpriced, tools, tin, tout, cost = calls
        p50, p95, p99 = percentiles
        return SummaryStats(
            runs=int(n_runs),
            top_level_runs=int(top),
            completed_runs=int(completed),
            failed_runs=int(failed),
            avg_duration=float(duration_sum) / int(durations) if durations else None,
            p50_duration=p50,
            p95_duration=p95,
            p99_duration=p99,
            llm_calls=int(llm),
            unpriced_calls=int(unpriced),
            tool_calls=int(tools),
            input_tokens=int(tin),
            output_tokens=int(tout),
            cost_usd=known_cost(float(cost), int(llm), int(unpriced)),
        )

    def _aggregated_summary(
        self, agent: str | None, since: float | None, until: float | None
    ) -> tuple[list[Any], list[Any], list[float | None]]:
        """Whole hours from the hourly aggregates, the partial hours from the rows."""
        window = aggregates.split_window(since, until)
        edges = window.edges if not window.empty else ((since, until),)
        runs = [0, 0, 0, 0, 0.0, 0]
        calls = [0, 0, 0, 0, 0, 0.0]
        with self._read() as cur:
            if not window.empty:
                hours, params = window.hour_where()
                if agent is not None:
                    hours += " AND agent = ?"
                    params.append(agent)
                cur.execute(self._sql(_AGG_RUNS + hours), params)
                runs = [a + b for a, b in zip(runs, cur.fetchone(), strict=True)]
                table = aggregates.calls_table(["agent"] if agent is not None else [])
                cur.execute(self._sql(f"{_AGG_CALLS}{table} WHERE {hours}"), params)
                calls = [a + b for a, b in zip(calls, cur.fetchone(), strict=True)]
            for edge_since, edge_until in edges:
                where, params = _where(agent, None, edge_since, edge_until, "agent")
                cur.execute(self._sql(f"{_RUN_COUNTS}{where}"), params)
                runs = [a + b for a, b in zip(runs, cur.fetchone(), strict=True)]
                where, params = _where(agent, None, edge_since, edge_until)
                cur.execute(self._sql(f"{_CALL_TOTALS}{where}"), params)
                calls = [a + b for a, b in zip(calls, cur.fetchone(), strict=True)]
        durations = int(runs[5])
        return runs, calls, self._summary_percentiles(agent, since, until, window, durations)

    def _attributed_summary(
        self,
        agent: str | None,
        since: float | None,
        until: float | None,
        attributes: Mapping[str, str],
    ) -> tuple[list[Any], list[Any], list[float | None]]:
        """Runs and calls whose attribution matches: from the attribution aggregates and
        the edges (one dimension whose value they hold exactly), else from the rows of the
        whole window."""
        scope = attr_aggregates.single_scope(attributes)
        window = aggregates.split_window(since, until)
        if scope is not None and not window.empty:
            with self._read() as cur:
                exact = attr_aggregates.is_exact(cur, self._sql, *scope)
            if exact:
                return self._attributed_summary_from_aggregates(
                    agent, since, until, attributes, scope, window
                )
        runs_where, runs_params = self._narrowed(
            *_where(agent, None, since, until, "agent"), attributes
        )
        calls_where, calls_params = self._narrowed(*_where(agent, None, since, until), attributes)
        with self._read() as cur:
            cur.execute(self._sql(f"{_RUN_COUNTS}{runs_where}"), runs_params)
            runs = list(cur.fetchone())
            cur.execute(self._sql(f"{_CALL_TOTALS}{calls_where}"), calls_params)
            calls = list(cur.fetchone())
        if not int(runs[5] or 0):
            return runs, calls, [None] * len(PERCENTILES)
        return runs, calls, self._percentiles(runs_where, runs_params)

    def _attributed_summary_from_aggregates(
        self,
        agent: str | None,
        since: float | None,
        until: float | None,
        attributes: Mapping[str, str],
        scope: tuple[str, str],
        window: aggregates.Window,
    ) -> tuple[list[Any], list[Any], list[float | None]]:
        """`_aggregated_summary` for the calls and runs of one attribution value."""
        runs = [0, 0, 0, 0, 0.0, 0]
        calls = [0, 0, 0, 0, 0, 0.0]
        hours, params = window.hour_where()
        hours = f"dimension = ? AND value = ? AND {hours}"
        params = [*scope, *params]
        if agent is not None:
            hours += " AND agent = ?"
            params.append(agent)
        suffix = "" if agent is not None else "_total"  # one row per hour without an agent
        with self._read() as cur:
            cur.execute(
                self._sql(_AGG_RUNS.replace("agg_runs", f"agg_attr_runs{suffix}") + hours), params
            )
            runs = [a + b for a, b in zip(runs, cur.fetchone(), strict=True)]
            cur.execute(self._sql(f"{_AGG_CALLS}agg_attr_calls{suffix} WHERE {hours}"), params)
            calls = [a + b for a, b in zip(calls, cur.fetchone(), strict=True)]
            for edge_since, edge_until in window.edges:
                where, edge = self._narrowed(
                    *_where(agent, None, edge_since, edge_until, "agent"), attributes
                )
                cur.execute(self._sql(f"{_RUN_COUNTS}{where}"), edge)
                runs = [a + b for a, b in zip(runs, cur.fetchone(), strict=True)]
                where, edge = self._narrowed(
                    *_where(agent, None, edge_since, edge_until), attributes
                )
                cur.execute(self._sql(f"{_CALL_TOTALS}{where}"), edge)
                calls = [a + b for a, b in zip(calls, cur.fetchone(), strict=True)]
        durations = int(runs[5])
        if durations == 0:
            return runs, calls, [None] * len(PERCENTILES)
        if agent is not None or self._window_runs(window) <= EXACT_PERCENTILE_RUNS:
            # Exact: the rows are read by time (and agent), the attribution tested on each,
            # so what this costs is every run of the window, not only the matching ones.
            where, exact_params = self._narrowed(
                *_where(agent, None, since, until, "agent"), attributes
            )
            return runs, calls, self._percentiles(where, exact_params)
        counts: dict[int, int] = {}
        hours, params = window.hour_where()
        with self._read() as cur:
            cur.execute(
                self._sql(
                    "SELECT bucket, SUM(runs) FROM agg_attr_durations "
                    f"WHERE dimension = ? AND value = ? AND {hours} GROUP BY 1"
                ),
                [*scope, *params],
            )
            for bucket, n in cur.fetchall():
                counts[int(bucket)] = int(n)
            for edge_since, edge_until in window.edges:
                where, edge = self._narrowed(
                    *_where(None, None, edge_since, edge_until, "agent"), attributes
                )
                where = _and(where, "duration IS NOT NULL")
                cur.execute(self._sql(f"SELECT duration FROM executions{where}"), edge)
                for (duration,) in cur.fetchall():
                    bucket = aggregates.duration_bucket(float(duration))
                    counts[bucket] = counts.get(bucket, 0) + 1
        return runs, calls, aggregates.percentiles_from_buckets(counts, PERCENTILES)

    def _window_runs(self, window: aggregates.Window) -> int:
        """Runs of every agent and attribution in `window` (whole hours and edges)."""
        hours, params = window.hour_where()
        with self._read() as cur:
            cur.execute(
                self._sql(f"SELECT COALESCE(SUM(runs), 0) FROM agg_runs WHERE {hours}"), params
            )
            total = int(cur.fetchone()[0])
            for edge_since, edge_until in window.edges:
                where, edge = _where(None, None, edge_since, edge_until, "agent")
                cur.execute(self._sql(f"SELECT COUNT(*) FROM executions{where}"), edge)
                total += int(cur.fetchone()[0])
        return total

    def _summary_percentiles(
        self,
        agent: str | None,
        since: float | None,
        until: float | None,
        window: aggregates.Window,
        durations: int,
    ) -> list[float | None]:
        """p50/p95/p99: exact for small windows and for one agent (an indexed range of its
        own runs), else from the hourly duration buckets plus the raw edges' durations."""
        if durations == 0:
            return [None] * len(PERCENTILES)
        if agent is not None or window.empty or durations <= EXACT_PERCENTILE_RUNS:
            where, params = _where(agent, None, since, until, "agent")
            return self._percentiles(where, params)
        counts: dict[int, int] = {}
        hours, params = window.hour_where()
        with self._read() as cur:
            cur.execute(
                self._sql(f"SELECT bucket, SUM(runs) FROM agg_durations WHERE {hours} GROUP BY 1"),
                params,
            )
            for bucket, n in cur.fetchall():
                counts[int(bucket)] = int(n)
            for edge_since, edge_until in window.edges:
                where, params = _where(None, None, edge_since, edge_until, "agent")
                where = _and(where, "duration IS NOT NULL")
                cur.execute(self._sql(f"SELECT duration FROM executions{where}"), params)
                for (duration,) in cur.fetchall():
                    bucket = aggregates.duration_bucket(float(duration))
                    counts[bucket] = counts.get(bucket, 0) + 1
        return aggregates.percentiles_from_buckets(counts, PERCENTILES)

    def costs(
        self,
        group_by: Sequence[str],
        *,
        since: float | None = None,
        until: float | None = None,
        agent: str | None = None,
        tz: str = "UTC",
        attributes: Mapping[str, str] | None = None,
    ) -> list[CostRow]:
        """LLM calls, unpriced calls, tokens and cost grouped by agent, model, provider, date
        and/or attribution dimension (`team`; "" for calls without a value).

        `date` is the call's day (YYYY-MM-DD) in time zone `tz`. Rows are sorted by cost,
        highest first, or by date when grouping by date. `attributes` keeps calls whose
        attribution has every `dimension: value` given.

        Raises:
            ValueError: an unknown group key or time zone.
        """
        keys = list(dict.fromkeys(group_by))
        unknown = [k for k in keys if k not in GROUP_KEYS and not ATTRIBUTE_NAME.match(k)]
        if unknown or not keys:
            raise ValueError(
                f"group_by items must be among {', '.join(GROUP_KEYS)} or an attribution dimension"
            )
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
        window = aggregates.split_window(since, until)
        totals: dict[tuple[Any, ...], list[Any]] = {}
        raw: list[tuple[float | None, float | None]] = list(
            window.edges if not window.empty else ((since, until),)
        )
        scope = attr_aggregates.single_scope(attributes)
        if any(k not in GROUP_KEYS for k in keys) or (attributes and scope is None):
            raw = [(since, until)]  # the aggregates keep no such group: the whole window raw
        elif scope is not None:
            if window.empty or not self._exact_scope(scope):
                raw = [(since, until)]
            else:
                raw += self._costs_from_aggregates(keys, window, agent, tz, totals, scope)
        elif not window.empty:
            raw += self._costs_from_aggregates(keys, window, agent, tz, totals)
        for edge_since, edge_until in raw:
            for row in self._raw_costs(keys, edge_since, edge_until, agent, tz, attributes):
                acc = totals.setdefault(tuple(row[: len(keys)]), [0, 0, 0, 0.0])
                for i, value in enumerate(row[len(keys) :]):
                    acc[i] += value or 0
        result = [
            CostRow(
                group=dict(zip(keys, group, strict=True)),
                llm_calls=int(calls),
                unpriced_calls=int(unpriced),
                tokens=int(tokens),
                cost_usd=known_cost(float(cost), int(calls), int(unpriced)),
            )
            for group, (calls, unpriced, tokens, cost) in totals.items()
        ]

        def order(row: CostRow) -> tuple[Any, ...]:
            group = tuple((v is not None, v or "") for v in row.group.values())
            return group if "date" in keys else (-(row.cost_usd or 0.0), group)

        result.sort(key=order)
        return result

    def _costs_from_aggregates(
        self,
        keys: Sequence[str],
        window: aggregates.Window,
        agent: str | None,
        tz: str,
        totals: dict[tuple[Any, ...], list[Any]],
        scope: tuple[str, str] | None = None,
    ) -> list[tuple[float, float]]:
        """Add the whole hours of `window` to `totals`; return the hours that straddle a
        local midnight of `tz` (a zone offset of a fraction of an hour), to read raw.
        `scope`: only the calls of that attribution value (`agg_attr_calls`)."""
        dims = [k for k in keys if k != "date"]
        by_date = "date" in keys
        table = aggregates.calls_table([*dims, *(["agent"] if agent is not None else [])])
        hours, params = window.hour_where()
        if scope is not None:
            table = "agg_attr_calls" if dims or agent is not None else "agg_attr_calls_total"
            hours = f"dimension = ? AND value = ? AND {hours}"
            params = [*scope, *params]
        if agent is not None:
            hours += " AND agent = ?"
            params.append(agent)
        group = (["hour"] if by_date else []) + dims
        select = ", ".join(group) + ", " if group else ""
        sql = (
            f"SELECT {select}SUM(llm_calls), SUM(unpriced_calls), "
            "SUM(llm_input_tokens + llm_output_tokens + other_tokens), SUM(cost_usd) "
            f"FROM {table} WHERE {hours}"
            + (f" GROUP BY {', '.join(group)}" if group else "")
            + " HAVING SUM(llm_calls + priced_other) > 0"
        )
        with self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        zone = ZoneInfo(tz)
        dates: dict[int, str | None] = {}
        straddling: list[tuple[float, float]] = []
        for row in rows:
            values = list(row[len(group) :])
            if by_date:
                hour = int(row[0])
                if hour not in dates:
                    dates[hour] = _hour_date(hour, zone)
                    if dates[hour] is None:
                        start = float(hour * aggregates.BUCKET_SECONDS)
                        straddling.append((start, start + aggregates.BUCKET_SECONDS))
                date = dates[hour]
                if date is None:
                    continue
                named = dict(zip(dims, row[1 : len(group)], strict=True))
                named["date"] = date
            else:
                named = dict(zip(dims, row[: len(group)], strict=True))
            acc = totals.setdefault(tuple(named[k] for k in keys), [0, 0, 0, 0.0])
            for i, value in enumerate(values):
                acc[i] += value or 0
        return straddling

    def _exact_scope(self, scope: tuple[str, str]) -> bool:
        """Whether the attribution aggregates hold every row of `scope` under its value."""
        with self._read() as cur:
            return attr_aggregates.is_exact(cur, self._sql, *scope)

    def _raw_costs(
        self,
        keys: Sequence[str],
        since: float | None,
        until: float | None,
        agent: str | None,
        tz: str,
        attributes: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """`costs` rows (group values, calls, unpriced, tokens, cost) read from raw events."""
        select: list[str] = []
        params: list[Any] = []
        for key in keys:
            if key == "date":
                select.append(self._local_date())
                params.append(tz)
            elif key in GROUP_KEYS:
                select.append(key)
            else:
                select.append(f"COALESCE({self._json_text('attribution')}, '')")
                params.append(self._json_key(key))
        where, where_params = self._narrowed(*_where(agent, None, since, until), attributes)
        where = _and(where, f"({_IS_LLM} OR cost_usd IS NOT NULL)")
        positions = ", ".join(str(i + 1) for i in range(len(keys)))
        sql = (
            f"SELECT {', '.join(select)}, "
            f"SUM(CASE WHEN {_IS_LLM} THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {_IS_LLM} AND cost_usd IS NULL THEN 1 ELSE 0 END), "
            "SUM(input_tokens + output_tokens), COALESCE(SUM(cost_usd), 0) "
            f"FROM events{where} GROUP BY {positions}"
        )
        with self._read() as cur:
            cur.execute(self._sql(sql), params + where_params)
            return list(cur.fetchall())

    def agents(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[AgentRow]:
        """Agents with at least one run in the window: run counts, last start, call totals.

        Runs are counted as `summary()` counts them (agent executions by their agent and
        start time); calls, tokens and cost as `costs(["agent"])` does (every call by its own
        agent label). Highest spend first, then by name; at most `limit` agents.
        """
        where, params = _where(None, None, since, until, "agent")
        sql = (
            "SELECT agent, COUNT(*), "
            "COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0), "
            f"MAX(started_at) FROM executions{where} GROUP BY agent"
        )
        calls_where, calls_params = _where(None, None, since, until)
        calls_sql = (
            f"SELECT agent, {_CALL_TOTALS.removeprefix('SELECT ')}{calls_where} GROUP BY agent"
        )
        with self._read() as cur:
            cur.execute(self._sql(sql), params)
            runs = cur.fetchall()
            cur.execute(self._sql(calls_sql), calls_params)
            calls = {str(r[0]): r[1:] for r in cur.fetchall()}
        result = []
        for agent, count, completed, failed, last in runs:
            llm, unpriced, tools, tin, tout, cost = calls.get(str(agent), (0, 0, 0, 0, 0, 0.0))
            result.append(
                AgentRow(
                    agent=str(agent),
                    runs=int(count),
                    completed_runs=int(completed),
                    failed_runs=int(failed),
                    last_started_at=None if last is None else float(last),
                    llm_calls=int(llm),
                    unpriced_calls=int(unpriced),
                    tool_calls=int(tools),
                    input_tokens=int(tin),
                    output_tokens=int(tout),
                    cost_usd=known_cost(float(cost), int(llm), int(unpriced)),
                )
            )
        result.sort(key=lambda r: (-(r.cost_usd or 0.0), r.agent))
        return result[:limit]

    # -- the console's queries (bounded: each reads an index range or one run) ----------
    def ids_starting_with(self, prefix: str, *, limit: int = 2) -> list[str]:
        """Ids of executions (any kind) that start with `prefix`, in id order, at most `limit`.

        `ids_with_prefix` (index ranges on the primary key), with nothing for an empty prefix.
        """
        if not prefix:
            return []
        return self.ids_with_prefix(prefix, limit=limit)

    def search_runs(
        self,
        search: RunSearch,
        *,
        limit: int = 50,
        after: tuple[float, str] | None = None,
    ) -> list[ExecutionRow]:
        """Executions matching `search`, in its order (highest first, then id descending).

        `after` is a keyset cursor `(sort value, id)` of the last row of the previous page;
        the sort value is the start time, the duration, or the run's own spend (missing
        durations and unpriced spends sort as -1).
        """
        where, params = _where(search.agent, search.status, search.since, search.until, search.kind)
        if search.model is not None:
            where = _and(
                where,
                "EXISTS (SELECT 1 FROM events m WHERE m.execution_id = executions.id "
                "AND m.model = ?)",
            )
            params.append(search.model)
        if search.error_type is not None:
            where = _and(where, "error_type = ?")
            params.append(search.error_type)
        if search.text:
            escaped = search.text.lower().replace("!", "!!").replace("%", "!%")
            pattern = "%" + escaped.replace("_", "!_") + "%"
            where = _and(
                where,
                "(LOWER(COALESCE(error_message, '')) LIKE ? ESCAPE '!' "
                "OR LOWER(COALESCE(error_type, '')) LIKE ? ESCAPE '!')",
            )
            params.extend([pattern, pattern])
        if search.min_cost is not None:
            where = _and(where, "cost_usd >= ?")
            params.append(search.min_cost)
        if search.min_duration is not None:
            where = _and(where, "duration >= ?")
            params.append(search.min_duration)
        column = {
            "started": "started_at",
            "duration": "COALESCE(duration, -1)",
            "cost": "COALESCE(cost_usd, -1)",
        }[search.sort]
        if after is not None:
            where = _and(where, f"({column} < ? OR ({column} = ? AND id < ?))")
            params.extend([after[0], after[0], _stored(after[1])])
        sql = f"{_EXEC_SELECT}{where} ORDER BY {column} DESC, id DESC LIMIT ?"
        params.append(int(limit))
        with self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        return self._with_tool_totals(rows)

    def run_trend(
        self, *, since: float, until: float, step: float, agent: str | None = None
    ) -> list[TrendPoint]:
        """Runs per `step`-second bucket of `[since, until)`: count, failed, durations.

        Only buckets with runs are returned (`start` is the bucket's start time).
        """
        bucket = self._FLOOR.format("(started_at - ?) / ?")
        where, params = _where(agent, None, since, until, "agent")
        sql = (
            f"SELECT {bucket}, COUNT(*), "
            "COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(cost_usd), 0), AVG(duration), MAX(duration) FROM executions{where} "
            "GROUP BY 1 ORDER BY 1"
        )
        return self._trend(sql, [since, step, *params], since, step)

    def call_trend(
        self,
        *,
        since: float,
        until: float,
        step: float,
        agent: str | None = None,
        model: str | None = None,
        provider: str | None = None,
    ) -> list[TrendPoint]:
        """LLM calls per `step`-second bucket of `[since, until)`: count, failures, spend,
        latency; optionally only those of `agent`, `model` and/or `provider`."""
        bucket = self._FLOOR.format("(started_at - ?) / ?")
        where, params = _where(agent, None, since, until)
        where = _and(where, _IS_LLM)
        for column, value in (("model", model), ("provider", provider)):
            if value is not None:
                where = _and(where, f"{column} = ?")
                params.append(value)
        sql = (
            f"SELECT {bucket}, COUNT(*), "
            "COALESCE(SUM(CASE WHEN status <> 'success' THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(cost_usd), 0), AVG(duration), MAX(duration) FROM events{where} "
            "GROUP BY 1 ORDER BY 1"
        )
        return self._trend(sql, [since, step, *params], since, step)

    def _trend(self, sql: str, params: list[Any], since: float, step: float) -> list[TrendPoint]:
        with self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        return [
            TrendPoint(
                start=since + int(b) * step,
                count=int(n),
                failed=int(failed),
                cost_usd=float(cost),
                avg_duration=None if avg is None else float(avg),
                max_duration=None if top is None else float(top),
            )
            for b, n, failed, cost, avg, top in rows
        ]

    def top_errors(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        agent: str | None = None,
        model: str | None = None,
        limit: int = 5,
    ) -> list[ErrorCount]:
        """The most frequent error classes: of failed runs, or of failed LLM calls to `model`."""
        if model is None:
            where, params = _where(agent, "failed", since, until, "agent")
            table = "executions"
        else:
            where, params = _where(agent, None, since, until)
            where = _and(where, f"{_IS_LLM} AND status <> 'success' AND model = ?")
            params.append(model)
            table = "events"
        sql = (
            f"SELECT error_type, COUNT(*) FROM {table}{where} "
            "GROUP BY error_type ORDER BY 2 DESC, 1 LIMIT ?"
        )
        with self._read() as cur:
            cur.execute(self._sql(sql), [*params, int(limit)])
            rows = cur.fetchall()
        return [ErrorCount(None if e is None else str(e), int(n)) for e, n in rows]

    def _with_tool_totals(self, rows: Sequence[Sequence[Any]]) -> list[ExecutionRow]:
        """Build rows whose totals include the calls of the tools (and tools of tools) each ran.

        One query per level of tool nesting (usually one, returning nothing) for the whole
        list, bounded by `MAX_TOOL_DEPTH`; nested *agent* runs are not added (they are runs
        of their own).
        """
        if not rows:
            return []
        # Keyed by the stored ids, as the rows and the queries carry them.
        own: dict[Any, list[Any]] = {r[0]: list(r[_TOTALS_AT:]) for r in rows}
        children: dict[Any, list[Any]] = {}
        frontier = list(own)
        with self._read() as cur:
            for _ in range(MAX_TOOL_DEPTH):
                if not frontier:
                    break
                found: list[Any] = []
                for start in range(0, len(frontier), _IN_CHUNK):
                    chunk = frontier[start : start + _IN_CHUNK]
                    sql = _TOOL_CHILDREN.format(marks=", ".join("?" * len(chunk)))
                    cur.execute(self._sql(sql), chunk)
                    for parent_id, child_id, *totals in cur.fetchall():
                        children.setdefault(parent_id, []).append(child_id)
                        if child_id not in own:
                            own[child_id] = totals
                            found.append(child_id)
                frontier = found
        if not children:
            return [_execution_row(r, r[_TOTALS_AT:]) for r in rows]
        memo: dict[Any, list[Any]] = {}

        def subtree(node: Any, path: frozenset[Any]) -> list[Any]:
            done = memo.get(node)
            if done is not None:
                return done
            acc = list(own[node])
            for child in children.get(node, ()):
                if child not in path:  # a cycle only corrupted data could hold
                    for i, value in enumerate(subtree(child, path | {child})):
                        acc[i] = (acc[i] or 0) + (value or 0)
            memo[node] = acc
            return acc

        return [_execution_row(r, subtree(r[0], frozenset({r[0]}))) for r in rows]

    # -- the pre-1.0 dict API ------------------------------------------------------------
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
        attributes: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """`executions()` as pre-1.0 dicts (runs by default; `kind=None` for every kind)."""
        flt = ExecutionFilter(agent_name, status, since, until, kind, _pairs(attributes))
        return [r.legacy_dict() for r in self.executions(flt, limit=limit, offset=offset)]

    def iter_executions(
        self,
        agent_name: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        chunk_size: int = 1000,
        *,
        kind: str | None = "agent",
        attributes: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """`stream_executions()` as pre-1.0 dicts, oldest first, in bounded memory."""
        flt = ExecutionFilter(agent_name, status, since, until, kind, _pairs(attributes))
        for row in self.stream_executions(flt, chunk_size=chunk_size):
            yield row.legacy_dict()

    def count_executions(
        self,
        agent_name: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        kind: str | None = "agent",
        attributes: Mapping[str, str] | None = None,
    ) -> int:
        """Number of matching executions (runs by default; `kind=None` for every kind)."""
        return self.count(
            ExecutionFilter(agent_name, status, since, until, kind, _pairs(attributes))
        )

    def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        """`execution()` as a pre-1.0 dict with `events` and `children` (ids), or None."""
        detail = self.execution(execution_id)
        return None if detail is None else detail.legacy_dict()

    def get_events(
        self,
        since: float | None = None,
        until: float | None = None,
        agent_name: str | None = None,
        orphans_only: bool = False,
        limit: int | None = 1000,
    ) -> list[dict[str, Any]]:
        """`events()` as pre-1.0 dicts, newest first."""
        rows = self.events(since, until, agent_name, orphans_only, limit)
        return [r.legacy_dict() for r in rows]

    def get_summary_stats(
        self,
        agent_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        attributes: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """`summary()` as the pre-1.0 dict (`total_executions` = runs, `total_cost`, ...)."""
        return self.summary(
            agent=agent_name, since=since, until=until, attributes=attributes
        ).legacy_dict()

    def cost_breakdown(
        self,
        group_by: Sequence[str],
        since: float | None = None,
        until: float | None = None,
        agent_name: str | None = None,
        tz: str = "UTC",
        *,
        attributes: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """`costs()` as pre-1.0 dicts (group keys, `calls`, `tokens`, `cost`).

        Raises:
            ValueError: an unknown group key or time zone.
        """
        rows = self.costs(
            group_by, since=since, until=until, agent=agent_name, tz=tz, attributes=attributes
        )
        return [r.legacy_dict() for r in rows]

    # -- rollups as stored (appended for `agentwatch serve`'s exposition cache) ----------
    def stored_rollups(self) -> list[StoredRollup]:
        """Every row of the rollup table as stored, in no particular order.

        Why: `agentwatch serve` re-renders `/metrics` after every write; `Store.read_rollups`
        parses each row's label JSON and cumulates the histogram buckets, which costs more
        than the whole incremental render. These rows are plain tuples (hashable, compared
        at C speed), so the exposition cache finds the few rows a write changed with a set
        difference and parses only label texts it has not seen before. Histogram buckets
        are each bucket's own count, only for buckets observed (`rollups.cumulative_rows`
        makes them cumulative).
        """
        with self._read() as cur:
            cur.execute(self._sql(_STORED_ROLLUPS))
            rows: list[StoredRollup] = cur.fetchall()
        return rows


#: One row of the rollup table as stored: (sample, canonical label text, value, exemplar
#: execution id, exemplar value, exemplar timestamp); the exemplar fields may be None.
StoredRollup = tuple[str, str, float, str | None, float | None, float | None]
_STORED_ROLLUPS = (
    "SELECT sample, labels, value, exemplar_execution_id, exemplar_value, exemplar_timestamp "
    "FROM rollups"
)

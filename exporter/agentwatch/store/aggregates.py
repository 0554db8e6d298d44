"""Hourly aggregates: what `stats`, `cost` and budgets read instead of scanning raw rows.

The writer adds each batch's runs and calls to four small tables in the batch's own
transaction (`batch_deltas`), pruning subtracts what it deletes in its own chunked
transactions (`Store.delete_old_executions`), and migration 5 builds them from the rows of an
older store (`backfill`). A query then reads the whole hours of its window from these tables
and only the partial hours at the window's edges from raw rows (`split_window`), so its cost
grows with the hours and label combinations in the window, not with the number of runs.

Tables (hour = `floor(started_at / 3600)`, the same hour a raw-row range test gives):

- `agg_runs (hour, agent)`: agent runs (nested ones included), top-level runs, completed,
  failed, and the sum and count of durations (for the mean);
- `agg_durations (hour, bucket)`: run durations in log-spaced buckets `GROWTH` (1%) wide, for
  p50/p95/p99; a percentile read from them is the bucket's geometric middle, within
  `PERCENTILE_ERROR` (0.5%) of the exact nearest-rank value (durations of at least
  `MIN_DURATION`; shorter ones read as 0);
- `agg_calls (hour, key)`: calls by agent, model and provider (`key` is their JSON text, so a
  missing model differs from an empty one): events counted, LLM calls, unpriced LLM calls,
  tool calls, priced events of other kinds, LLM input/output tokens, tokens of those other
  priced events, and cost;
- `agg_calls_agent (hour, agent)`, `agg_calls_model (hour, key)` (model and provider) and
  `agg_calls_total (hour)`: the same totals with fewer labels, so a query reads the narrowest
  table that holds its group keys and filters (`calls_table`): `cost` by agent reads one row
  per agent and hour, an unfiltered `stats` or `cost --group-by date` one row per hour.

Counts and tokens are exact; costs are sums of the same floats in another order (equal to
the raw sum within floating-point rounding, ~1e-15 relative).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Seconds per aggregate bucket.
BUCKET_SECONDS = 3600
#: Ratio between the bounds of consecutive duration buckets.
GROWTH = 1.01
_LOG_GROWTH = math.log(GROWTH)
#: Worst relative error of a percentile read from the duration buckets.
PERCENTILE_ERROR = math.sqrt(GROWTH) - 1
#: Durations below this (seconds) share one bucket that reads as 0.
MIN_DURATION = 1e-6
#: The bucket of durations below `MIN_DURATION`.
ZERO_BUCKET = -(10**6)

LLM = "llm_call"
TOOL = "tool_call"

#: SQL for the hour of `started_at`, exactly `floor(started_at / 3600)` (the division may round
#: up to the next integer; the correction makes it agree with `h * 3600 <= started_at`).
HOUR_SQL = {
    "sqlite": (
        "(CAST(started_at / 3600.0 AS INTEGER) - "
        "(CAST(started_at / 3600.0 AS INTEGER) * 3600.0 > started_at))"
    ),
    "postgresql": (
        "(CAST(floor(started_at / 3600.0) AS BIGINT) - "
        "CASE WHEN floor(started_at / 3600.0) * 3600.0 > started_at THEN 1 ELSE 0 END)"
    ),
}

CALL_COLUMNS = """
        events BIGINT NOT NULL,
        llm_calls BIGINT NOT NULL,
        unpriced_calls BIGINT NOT NULL,
        tool_calls BIGINT NOT NULL,
        priced_other BIGINT NOT NULL,
        llm_input_tokens BIGINT NOT NULL,
        llm_output_tokens BIGINT NOT NULL,
        other_tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL"""

DDL = (
    """
    CREATE TABLE agg_runs (
        hour BIGINT NOT NULL,
        agent TEXT NOT NULL,
        runs BIGINT NOT NULL,
        top_level BIGINT NOT NULL,
        completed BIGINT NOT NULL,
        failed BIGINT NOT NULL,
        duration_sum DOUBLE PRECISION NOT NULL,
        duration_count BIGINT NOT NULL,
        PRIMARY KEY (hour, agent)
    )
    """,
    # `stats --agent`: that agent's hours.
    "CREATE INDEX ix_agg_runs_agent ON agg_runs (agent, hour)",
    """
    CREATE TABLE agg_durations (
        hour BIGINT NOT NULL,
        bucket INTEGER NOT NULL,
        runs BIGINT NOT NULL,
        PRIMARY KEY (hour, bucket)
    )
    """,
    f"""
    CREATE TABLE agg_calls (
        hour BIGINT NOT NULL,
        key TEXT NOT NULL,
        agent TEXT NOT NULL,
        model TEXT,
        provider TEXT,
        {CALL_COLUMNS},
        PRIMARY KEY (hour, key)
    )
    """,
    # `cost --agent A --group-by model` and budgets scoped to an agent and a model.
    "CREATE INDEX ix_agg_calls_agent ON agg_calls (agent, hour)",
    f"""
    CREATE TABLE agg_calls_agent (
        hour BIGINT NOT NULL,
        agent TEXT NOT NULL,
        {CALL_COLUMNS},
        PRIMARY KEY (hour, agent)
    )
    """,
    # A budget or `cost --agent` of one agent: its hours, not every agent's.
    "CREATE INDEX ix_agg_calls_agent_agent ON agg_calls_agent (agent, hour)",
    f"""
    CREATE TABLE agg_calls_model (
        hour BIGINT NOT NULL,
        key TEXT NOT NULL,
        model TEXT,
        provider TEXT,
        {CALL_COLUMNS},
        PRIMARY KEY (hour, key)
    )
    """,
    f"""
    CREATE TABLE agg_calls_total (
        hour BIGINT NOT NULL PRIMARY KEY,
        {CALL_COLUMNS}
    )
    """,
)

#: In the order of `Deltas.rows`.
TABLES = (
    "agg_runs", "agg_durations", "agg_calls", "agg_calls_agent", "agg_calls_model",
    "agg_calls_total",
)  # fmt: skip

RUN_VALUES = ("runs", "top_level", "completed", "failed", "duration_sum", "duration_count")
CALL_VALUES = (
    "events", "llm_calls", "unpriced_calls", "tool_calls", "priced_other", "llm_input_tokens",
    "llm_output_tokens", "other_tokens", "cost_usd",
)  # fmt: skip


def upsert_sql(table: str, keys: Sequence[str], values: Sequence[str], conflict: int) -> str:
    """Add `values` to the row keyed by the first `conflict` of `keys` (insert it if new)."""
    columns = (*keys, *values)
    added = ", ".join(f"{v} = {table}.{v} + excluded.{v}" for v in values)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(keys[:conflict])}) DO UPDATE SET {added}"
    )


UPSERT_RUNS = upsert_sql("agg_runs", ("hour", "agent"), RUN_VALUES, 2)
UPSERT_DURATIONS = upsert_sql("agg_durations", ("hour", "bucket"), ("runs",), 2)
UPSERT_CALLS = upsert_sql(
    "agg_calls", ("hour", "key", "agent", "model", "provider"), CALL_VALUES, 2
)
UPSERT_CALLS_AGENT = upsert_sql("agg_calls_agent", ("hour", "agent"), CALL_VALUES, 2)
UPSERT_CALLS_MODEL = upsert_sql(
    "agg_calls_model", ("hour", "key", "model", "provider"), CALL_VALUES, 2
)
UPSERT_CALLS_TOTAL = upsert_sql("agg_calls_total", ("hour",), CALL_VALUES, 1)
#: In the order of `TABLES`.
UPSERTS = (
    UPSERT_RUNS, UPSERT_DURATIONS, UPSERT_CALLS, UPSERT_CALLS_AGENT, UPSERT_CALLS_MODEL,
    UPSERT_CALLS_TOTAL,
)  # fmt: skip
#: Rows pruning emptied (their floating-point cost residue goes with them).
DELETE_EMPTY = (
    "DELETE FROM agg_runs WHERE runs = 0",
    "DELETE FROM agg_durations WHERE runs = 0",
    "DELETE FROM agg_calls WHERE events = 0",
    "DELETE FROM agg_calls_agent WHERE events = 0",
    "DELETE FROM agg_calls_model WHERE events = 0",
    "DELETE FROM agg_calls_total WHERE events = 0",
)


def hour_of(started_at: float) -> int:
    """`floor(started_at / 3600)` exactly, as the raw range `h*3600 <= t < (h+1)*3600` sees it."""
    hour = int(started_at // BUCKET_SECONDS)
    if hour * BUCKET_SECONDS > started_at:
        hour -= 1
    elif (hour + 1) * BUCKET_SECONDS <= started_at:
        hour += 1
    return hour


def duration_bucket(duration: float) -> int:
    """The log-spaced bucket holding `duration` (seconds)."""
    if not duration >= MIN_DURATION:
        return ZERO_BUCKET
    return math.floor(math.log(duration) / _LOG_GROWTH)


def bucket_value(bucket: int) -> float:
    """The value a percentile falling in `bucket` reads as: its geometric middle."""
    if bucket == ZERO_BUCKET:
        return 0.0
    return float(math.exp((bucket + 0.5) * _LOG_GROWTH))


@functools.lru_cache(maxsize=4096)  # the writer asks for the same few keys in every batch
def model_key(model: str | None, provider: str | None) -> str:
    """The `agg_calls_model.key` of one model and provider (JSON: None differs from "")."""
    return json.dumps([model, provider], ensure_ascii=False, separators=(",", ":"))


def calls_table(scope: Iterable[str]) -> str:
    """The narrowest calls table that can answer a query grouped or filtered by `scope`
    (a subset of agent, model, provider)."""
    needed = set(scope)
    if not needed:
        return "agg_calls_total"
    if needed == {"agent"}:
        return "agg_calls_agent"
    if needed <= {"model", "provider"}:
        return "agg_calls_model"
    return "agg_calls"


@functools.lru_cache(maxsize=16384)
def call_key(agent: str, model: str | None, provider: str | None) -> str:
    """The `agg_calls.key` of one label combination (JSON: None differs from "")."""
    return json.dumps([agent, model, provider], ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class Deltas:
    """Additions (or, for pruning, subtractions) to the four tables, keyed like their rows."""

    runs: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    durations: dict[tuple[int, int], int] = field(default_factory=dict)
    calls: dict[tuple[int, str | None, str | None, str], list[float]] = field(default_factory=dict)

    def add_run(
        self, hour: int, agent: str, top: bool, status: str, duration: float | None
    ) -> None:
        acc = self.runs.get((hour, agent))
        if acc is None:
            acc = self.runs[(hour, agent)] = [0, 0, 0, 0, 0.0, 0]
        acc[0] += 1
        acc[1] += top
        acc[2] += status == "completed"
        acc[3] += status == "failed"
        if duration is not None:
            acc[4] += duration
            acc[5] += 1
            key = (hour, duration_bucket(duration))
            self.durations[key] = self.durations.get(key, 0) + 1

    def add_call(
        self,
        hour: int,
        agent: str,
        model: str | None,
        provider: str | None,
        kind: str,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
    ) -> None:
        llm = kind == LLM
        if not llm and kind != TOOL and cost is None:
            return  # counted nowhere: neither a call nor a cost
        acc = self.calls.get((hour, model, provider, agent))
        if acc is None:
            acc = self.calls[(hour, model, provider, agent)] = [0, 0, 0, 0, 0, 0, 0, 0, 0.0]
        acc[0] += 1
        if llm:
            acc[1] += 1
            acc[2] += cost is None
            acc[5] += input_tokens
            acc[6] += output_tokens
        else:
            acc[3] += kind == TOOL
            if cost is not None:
                acc[4] += 1
                acc[7] += input_tokens + output_tokens
        if cost is not None:
            acc[8] += cost

    def add_run_row(self, hour: int, agent: str, values: Sequence[Any]) -> None:
        """Add one `GROUP BY hour, agent` row of run totals (pruning, backfill)."""
        acc = self.runs.setdefault((hour, agent), [0, 0, 0, 0, 0.0, 0])
        _add_exact(acc, values)

    def add_call_row(
        self, hour: int, agent: str, model: str | None, provider: str | None, values: Sequence[Any]
    ) -> None:
        """Add one `GROUP BY hour, agent, model, provider` row of `CALL_VALUES`."""
        acc = self.calls.setdefault((hour, model, provider, agent), [0] * 8 + [0.0])
        _add_exact(acc, values)

    def rows(self, sign: int = 1) -> tuple[list[tuple[Any, ...]], ...]:
        """Parameter rows for the six upserts, sorted by key (concurrent writers take row
        locks in one order, so they cannot deadlock on PostgreSQL).

        Each table's rows hold every key once: they are folded from dicts keyed like the
        table's primary key (`call_key` and `model_key` are JSON, so a missing model or
        provider stays apart from an empty one), which lets PostgreSQL upsert a table's rows
        in one statement (one INSERT may not update a row twice)."""
        runs = [(h, a, *(sign * v for v in acc)) for (h, a), acc in sorted(self.runs.items())]
        durations = [(h, b, sign * n) for (h, b), n in sorted(self.durations.items())]
        calls = []
        by_agent: dict[tuple[int, str], list[float]] = {}
        by_model: dict[tuple[int, str | None, str | None], list[float]] = {}
        totals: dict[int, list[float]] = {}
        keyed = sorted(
            ((hour, call_key(agent, model, provider), agent, model, provider, acc)
             for (hour, model, provider, agent), acc in self.calls.items()),
            key=_by_hour_and_key,
        )  # fmt: skip
        for hour, key, agent, model, provider, acc in keyed:
            calls.append((hour, key, agent, model, provider, *(sign * v for v in acc)))
            for target in (
                by_agent.setdefault((hour, agent), [0] * 8 + [0.0]),
                by_model.setdefault((hour, model, provider), [0] * 8 + [0.0]),
                totals.setdefault(hour, [0] * 8 + [0.0]),
            ):
                for i, value in enumerate(acc):
                    target[i] += value
        calls_agent = [(h, a, *(sign * v for v in acc)) for (h, a), acc in sorted(by_agent.items())]
        calls_model = sorted(
            (h, model_key(m, p), m, p, *(sign * v for v in acc))
            for (h, m, p), acc in by_model.items()
        )
        calls_total = [(h, *(sign * v for v in acc)) for h, acc in sorted(totals.items())]
        return runs, durations, calls, calls_agent, calls_model, calls_total

    def __bool__(self) -> bool:
        return bool(self.runs or self.calls)


def _add_exact(acc: list[Any], values: Sequence[Any]) -> None:
    """Add `values` read back from a database to `acc`, keeping each total's type: a
    PostgreSQL `SUM` of a BIGINT is NUMERIC (a `Decimal`), the tables' columns int or float."""
    for i, value in enumerate(values):
        acc[i] += type(acc[i])(value or 0)


def _by_hour_and_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return row[:2]


def batch_deltas(executions: Iterable[Sequence[Any]], events: Iterable[Sequence[Any]]) -> Deltas:
    """Aggregate rows stored by one batch (tuples in `EXECUTION_COLUMNS` / `EVENT_COLUMNS`
    order; only rows actually inserted)."""
    deltas = Deltas()
    for row in executions:
        if row[3] == "agent":
            deltas.add_run(hour_of(row[5]), row[1], row[2] is None, row[4], row[7])
    for ev in events:
        deltas.add_call(hour_of(ev[5]), ev[1], ev[8], ev[9], ev[3], ev[10], ev[11], ev[14])
    return deltas


# -- reading back raw rows as deltas (pruning and backfill) ------------------------------------
def run_totals_sql(hour: str, where: str) -> str:
    """`GROUP BY hour, agent` run totals of executions under `where` (kind = agent implied)."""
    return (
        f"SELECT {hour}, agent, COUNT(*), "
        "SUM(CASE WHEN parent_id IS NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
        "COALESCE(SUM(duration), 0), COUNT(duration) "
        f"FROM executions WHERE kind = 'agent' AND {where} GROUP BY 1, 2"
    )


def run_durations_sql(hour: str, where: str) -> str:
    """`(hour, duration)` of the runs under `where` that have a duration."""
    return (
        f"SELECT {hour}, duration FROM executions "
        f"WHERE kind = 'agent' AND duration IS NOT NULL AND {where}"
    )


def call_totals_sql(hour: str, where: str) -> str:
    """`GROUP BY hour, agent, model, provider` totals (`CALL_VALUES`) of events under `where`."""
    other_priced = f"kind <> '{LLM}' AND cost_usd IS NOT NULL"
    return (
        f"SELECT {hour}, agent, model, provider, COUNT(*), "
        f"SUM(CASE WHEN kind = '{LLM}' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN kind = '{LLM}' AND cost_usd IS NULL THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN kind = '{TOOL}' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {other_priced} THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN kind = '{LLM}' THEN input_tokens ELSE 0 END), "
        f"SUM(CASE WHEN kind = '{LLM}' THEN output_tokens ELSE 0 END), "
        f"SUM(CASE WHEN {other_priced} THEN input_tokens + output_tokens ELSE 0 END), "
        "COALESCE(SUM(cost_usd), 0) FROM events "
        f"WHERE (kind IN ('{LLM}', '{TOOL}') OR cost_usd IS NOT NULL) AND {where} "
        "GROUP BY 1, 2, 3, 4"
    )


def collect(
    cur: Any,
    adapt: Callable[[str], str],
    hour: str,
    runs_where: str | None,
    calls_where: str,
    params: Sequence[Any],
) -> Deltas:
    """Totals of the executions under `runs_where` (None: none) and the events under
    `calls_where` (each bound to `params`), read with GROUP BY, as deltas."""
    deltas = Deltas()
    if runs_where is not None:
        cur.execute(adapt(run_totals_sql(hour, runs_where)), params)
        for h, agent, *values in cur.fetchall():
            deltas.add_run_row(int(h), agent, values)
        cur.execute(adapt(run_durations_sql(hour, runs_where)), params)
        while True:
            chunk = cur.fetchmany(10_000)
            if not chunk:
                break
            for h, duration in chunk:
                key = (int(h), duration_bucket(float(duration)))
                deltas.durations[key] = deltas.durations.get(key, 0) + 1
    cur.execute(adapt(call_totals_sql(hour, calls_where)), params)
    for h, agent, model, provider, *values in cur.fetchall():
        deltas.add_call_row(int(h), agent, model, provider, values)
    return deltas


# -- windows ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Window:
    """A query window cut into whole hours (from aggregates) and raw edges.

    Attributes:
        first_hour, end_hour: the aggregate hours `first_hour <= hour < end_hour` (None =
            unbounded on that side).
        edges: `(since, until)` ranges read from raw rows (None = unbounded).
    """

    first_hour: int | None
    end_hour: int | None
    edges: tuple[tuple[float | None, float | None], ...]

    @property
    def empty(self) -> bool:
        """No whole hour: everything comes from raw rows."""
        return (
            self.first_hour is not None
            and self.end_hour is not None
            and self.first_hour >= self.end_hour
        )

    def hour_where(self) -> tuple[str, list[Any]]:
        """`AND`-able conditions on `hour` for the whole hours, with their parameters."""
        parts, params = [], []
        if self.first_hour is not None:
            parts.append("hour >= ?")
            params.append(self.first_hour)
        if self.end_hour is not None:
            parts.append("hour < ?")
            params.append(self.end_hour)
        return " AND ".join(parts) or "1 = 1", params


def split_window(since: float | None, until: float | None) -> Window:
    """Cut `since <= started_at < until` into whole hours and at most two raw edges."""
    first = None
    if since is not None:
        first = hour_of(since)
        if first * BUCKET_SECONDS < since:
            first += 1  # the hour holding `since` is an edge
    end = None if until is None else hour_of(until)
    if first is not None and end is not None and first >= end:
        return Window(first, first, ((since, until),))
    edges: list[tuple[float | None, float | None]] = []
    if since is not None and first is not None and first * BUCKET_SECONDS > since:
        edges.append((since, float(first * BUCKET_SECONDS)))
    if until is not None and end is not None and end * BUCKET_SECONDS < until:
        edges.append((float(end * BUCKET_SECONDS), until))
    return Window(first, end, tuple(edges))


def percentiles_from_buckets(
    counts: dict[int, int], percentiles: Sequence[int]
) -> list[float | None]:
    """Nearest-rank percentiles read from bucket counts (see `PERCENTILE_ERROR`)."""
    n = sum(counts.values())
    if n <= 0:
        return [None] * len(percentiles)
    ranks = [max(1, -(-p * n // 100)) for p in percentiles]
    result: list[float | None] = [None] * len(percentiles)
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        for i, rank in enumerate(ranks):
            if result[i] is None and seen >= rank:
                result[i] = bucket_value(bucket)
        if all(r is not None for r in result):
            break
    return result

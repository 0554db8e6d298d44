"""Hourly aggregates per attribution value: what budgets and filters scoped by `team=x` read.

`aggregates.py` keeps hourly totals by agent, model and provider; a query scoped by one
attribution dimension (a budget `{team: search}`, `stats --attr team=search`, `cost --attr
...`) would otherwise scan the raw rows of its whole window with a JSON operator. These
tables keep the same totals once more per `(dimension, value)` of each run's and call's own
attribution, so such a query reads its whole hours here and only the partial hours at the
window's edges from raw rows (`aggregates.split_window`), exactly as the unscoped path does.

Tables (migration 9; hour as in `aggregates.py`):

- `agg_attr_runs (hour, dimension, value, agent)`: the run totals of `agg_runs`;
- `agg_attr_durations (hour, dimension, value, bucket)`: run durations as in `agg_durations`;
- `agg_attr_calls (hour, dimension, value, key)` with agent, model and provider: the call
  totals of `agg_calls`;
- `agg_attr_runs_total (hour, dimension, value)` and `agg_attr_calls_total (hour, dimension,
  value)`: the same totals without labels, so a budget or `stats` of one team reads one row
  per hour (a month: 720 rows) rather than one per agent and model;
- `agg_attr_keys (dimension, value, exact)`: the values kept under their own name.

Bounded by the caps: a row's dimensions are the ones its writer declared (a row carries no
other), and a value is kept under its own name only when the store admitted it
(`attribution_values`, the store-wide `max_values` cap the labels use); every other value is
added to the dimension's `__overflow__` value, as the labels fold it. A flood of customer ids
therefore adds rows for at most `max_values` values per dimension and hour.

Exact answers: a key is `exact` when every row of that value ever stored was added under its
own name. A value is admitted once and for good, so that holds unless some of its rows were
folded before it was admitted (a raised cap, or another process with a larger one):
`agg_attr_keys` keeps one `(dimension, "__overflow__")` row once anything of a dimension was
folded, and a value admitted after that is marked inexact. Admissions and the first fold of a
dimension decide under the store's admission lock, so the two cannot race; later folds need
no lock (whatever is admitted after the mark is inexact anyway). A query whose value has no
exact key (never admitted, inexact, or a scope on two dimensions at once) reads raw rows as
before.

Every run is added, sampled-out ones included (`RollupBatch.sampled_*`), like `agg_*`; prune
subtracts what it deletes under the same keys, and migration 9 builds the tables from an
existing store's rows (`backfill`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from agentwatch.contract import OVERFLOW
from agentwatch.store import aggregates

#: The counts of an hour's runs, as in `agg_runs` (one fragment for both run tables).
_RUN_COLUMNS = """
        runs BIGINT NOT NULL,
        top_level BIGINT NOT NULL,
        completed BIGINT NOT NULL,
        failed BIGINT NOT NULL,
        duration_sum DOUBLE PRECISION NOT NULL,
        duration_count BIGINT NOT NULL"""

DDL = (
    f"""
    CREATE TABLE agg_attr_runs (
        hour BIGINT NOT NULL,
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        agent TEXT NOT NULL,
        {_RUN_COLUMNS},
        PRIMARY KEY (dimension, value, hour, agent)
    )
    """,
    """
    CREATE TABLE agg_attr_durations (
        hour BIGINT NOT NULL,
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        runs BIGINT NOT NULL,
        PRIMARY KEY (dimension, value, hour, bucket)
    )
    """,
    f"""
    CREATE TABLE agg_attr_calls (
        hour BIGINT NOT NULL,
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        key TEXT NOT NULL,
        agent TEXT NOT NULL,
        model TEXT,
        provider TEXT,
        {aggregates.CALL_COLUMNS},
        PRIMARY KEY (dimension, value, hour, key)
    )
    """,
    f"""
    CREATE TABLE agg_attr_runs_total (
        hour BIGINT NOT NULL,
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        {_RUN_COLUMNS},
        PRIMARY KEY (dimension, value, hour)
    )
    """,
    f"""
    CREATE TABLE agg_attr_calls_total (
        hour BIGINT NOT NULL,
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        {aggregates.CALL_COLUMNS},
        PRIMARY KEY (dimension, value, hour)
    )
    """,
    """
    CREATE TABLE agg_attr_keys (
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        exact INTEGER NOT NULL,
        PRIMARY KEY (dimension, value)
    )
    """,
)

#: The tables holding totals (not `agg_attr_keys`), in the order of `AttrDeltas.rows`.
TABLES = (
    "agg_attr_runs", "agg_attr_durations", "agg_attr_calls", "agg_attr_runs_total",
    "agg_attr_calls_total",
)  # fmt: skip

UPSERTS = (
    aggregates.upsert_sql(
        "agg_attr_runs", ("dimension", "value", "hour", "agent"), aggregates.RUN_VALUES, 4
    ),
    aggregates.upsert_sql(
        "agg_attr_durations", ("dimension", "value", "hour", "bucket"), ("runs",), 4
    ),
    aggregates.upsert_sql(
        "agg_attr_calls",
        ("dimension", "value", "hour", "key", "agent", "model", "provider"),
        aggregates.CALL_VALUES,
        4,
    ),
    aggregates.upsert_sql(
        "agg_attr_runs_total", ("dimension", "value", "hour"), aggregates.RUN_VALUES, 3
    ),
    aggregates.upsert_sql(
        "agg_attr_calls_total", ("dimension", "value", "hour"), aggregates.CALL_VALUES, 3
    ),
)
DELETE_EMPTY = (
    "DELETE FROM agg_attr_runs WHERE runs = 0",
    "DELETE FROM agg_attr_durations WHERE runs = 0",
    "DELETE FROM agg_attr_calls WHERE events = 0",
    "DELETE FROM agg_attr_runs_total WHERE runs = 0",
    "DELETE FROM agg_attr_calls_total WHERE events = 0",
)

#: A new key is exact unless something of its dimension was folded before it.
_ADD_KEY = (
    "INSERT INTO agg_attr_keys (dimension, value, exact) SELECT ?, ?, CASE WHEN EXISTS "
    "(SELECT 1 FROM agg_attr_keys WHERE dimension = ? AND value = ?) THEN 0 ELSE 1 END "
    "WHERE 1 = 1 ON CONFLICT (dimension, value) DO NOTHING"
)
_ADD_FOLD_MARK = (
    "INSERT INTO agg_attr_keys (dimension, value, exact) VALUES (?, ?, 0) "
    "ON CONFLICT (dimension, value) DO NOTHING"
)
_KNOWN_KEYS = "SELECT value FROM agg_attr_keys WHERE dimension = ? AND value IN ({})"
_KEYS_CHUNK = 256
_EXACT = "SELECT exact FROM agg_attr_keys WHERE dimension = ? AND value = ?"

#: A run as the deltas need it: (started_at, agent, parent_id, status, duration, attribution).
Run = tuple[float, str, str | None, str, float | None, str]
#: A call: (started_at, agent, model, provider, kind, input, output, cost, attribution).
Call = tuple[float, str, str | None, str | None, str, int, int, float | None, str]

#: The same columns read back from the tables (prune, backfill); a condition follows.
_RUN_ROWS = (
    "SELECT started_at, agent, parent_id, status, duration, attribution FROM executions "
    "WHERE kind = 'agent' AND attribution <> '{}' AND "
)
_CALL_ROWS = (
    "SELECT started_at, agent, model, provider, kind, input_tokens, output_tokens, cost_usd, "
    "attribution FROM events WHERE attribution <> '{}' AND "
    f"(kind IN ('{aggregates.LLM}', '{aggregates.TOOL}') OR cost_usd IS NOT NULL) AND "
)


def pairs_of(attribution: str | None) -> list[tuple[str, str]]:
    """The `(dimension, value)` pairs of a stored attribution (JSON text)."""
    if not attribution or attribution == "{}":
        return []
    try:
        parsed = json.loads(attribution)
    except ValueError:
        return []
    if not isinstance(parsed, dict):
        return []
    return [(str(d), v) for d, v in parsed.items() if isinstance(v, str) and v]


class AttrDeltas:
    """Additions (or subtractions) to the three tables: one `aggregates.Deltas` per key, so
    every total is computed by the very code the unscoped aggregates use."""

    __slots__ = ("by_key",)

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], aggregates.Deltas] = {}

    def _for(self, dimension: str, value: str) -> aggregates.Deltas:
        deltas = self.by_key.get((dimension, value))
        if deltas is None:
            deltas = self.by_key[(dimension, value)] = aggregates.Deltas()
        return deltas

    def add(
        self,
        runs: Iterable[Run],
        calls: Iterable[Call],
        name: Callable[[str, str], str],
    ) -> None:
        """Add runs and calls under `name(dimension, value)` (the value or the overflow)."""
        parsed: dict[str, list[tuple[str, str]]] = {}  # a batch repeats a few attributions

        def named(attribution: str) -> list[tuple[str, str]]:
            pairs = parsed.get(attribution)
            if pairs is None:
                pairs = parsed[attribution] = [(d, name(d, v)) for d, v in pairs_of(attribution)]
            return pairs

        for started, agent, parent, status, duration, attribution in runs:
            pairs = named(attribution)
            if pairs:
                hour = aggregates.hour_of(started)
                for d, v in pairs:
                    self._for(d, v).add_run(hour, agent, parent is None, status, duration)
        for started, agent, model, provider, kind, tin, tout, cost, attribution in calls:
            pairs = named(attribution)
            if pairs:
                hour = aggregates.hour_of(started)
                for d, v in pairs:
                    self._for(d, v).add_call(
                        hour, agent, model, provider, kind, tin or 0, tout or 0, cost
                    )

    def rows(self, sign: int = 1) -> tuple[list[tuple[Any, ...]], ...]:
        """Parameter rows for `UPSERTS`, sorted by primary key (a lock order for writers)."""
        runs: list[tuple[Any, ...]] = []
        durations: list[tuple[Any, ...]] = []
        calls: list[tuple[Any, ...]] = []
        runs_total: list[tuple[Any, ...]] = []
        calls_total: list[tuple[Any, ...]] = []
        for (d, v), deltas in sorted(self.by_key.items()):
            if not deltas:
                continue
            r, b, c, _, _, t = deltas.rows(sign)
            runs += [(d, v, *row) for row in r]
            durations += [(d, v, *row) for row in b]
            calls += [(d, v, *row) for row in c]
            calls_total += [(d, v, *row) for row in t]
            by_hour: dict[int, list[Any]] = {}
            for hour, _agent, *values in r:
                acc = by_hour.get(hour)
                if acc is None:
                    by_hour[hour] = list(values)
                else:
                    for i, value in enumerate(values):
                        acc[i] += value
            runs_total += [(d, v, h, *acc) for h, acc in sorted(by_hour.items())]
        return runs, durations, calls, runs_total, calls_total

    def __bool__(self) -> bool:
        return any(self.by_key.values())


def batch_runs(executions: Iterable[Sequence[Any]]) -> list[Run]:
    """Runs of a batch's rows (`EXECUTION_COLUMNS` order) that carry an attribution."""
    return [
        (row[5], row[1], row[2], row[4], row[7], row[19])
        for row in executions
        if row[3] == "agent" and row[19] != "{}"
    ]


def batch_calls(events: Iterable[Sequence[Any]]) -> list[Call]:
    """Calls of a batch's event rows (`EVENT_COLUMNS` order) that carry an attribution."""
    return [
        (ev[5], ev[1], ev[8], ev[9], ev[3], ev[10], ev[11], ev[14], ev[19])
        for ev in events
        if ev[19] != "{}"
    ]


def read_rows(
    cur: Any, adapt: Callable[[str], str], runs_where: str | None, calls_where: str, params: Any
) -> tuple[list[Run], list[Call]]:
    """The attributed runs (None: none) and calls under the conditions, read back."""
    runs: list[Run] = []
    if runs_where is not None:
        cur.execute(adapt(_RUN_ROWS + runs_where), params)
        runs = [tuple(r) for r in cur.fetchall()]
    cur.execute(adapt(_CALL_ROWS + calls_where), params)
    calls: list[Call] = [tuple(r) for r in cur.fetchall()]
    return runs, calls


def known_keys(
    cur: Any, adapt: Callable[[str], str], pairs: Iterable[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of `pairs` have a key (are kept under their own name)."""
    by_dimension: dict[str, list[str]] = {}
    for d, v in sorted(set(pairs)):
        by_dimension.setdefault(d, []).append(v)
    found: set[tuple[str, str]] = set()
    for d, values in by_dimension.items():
        for start in range(0, len(values), _KEYS_CHUNK):
            chunk = values[start : start + _KEYS_CHUNK]
            size = 1 << (len(chunk) - 1).bit_length()  # few distinct statement texts
            chunk += [chunk[-1]] * (size - len(chunk))
            cur.execute(adapt(_KNOWN_KEYS.format(", ".join("?" * size))), (d, *chunk))
            found.update((d, str(row[0])) for row in cur.fetchall())
    return found


def _namer(kept: set[tuple[str, str]]) -> Callable[[str, str], str]:
    def name(dimension: str, value: str) -> str:
        return value if (dimension, value) in kept else OVERFLOW

    return name


def _all_pairs(runs: Iterable[Run], calls: Iterable[Call]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for run in runs:
        found.update(pairs_of(run[5]))
    for call in calls:
        found.update(pairs_of(call[8]))
    return found


def writer_deltas(
    cur: Any,
    adapt: Callable[[str], str],
    lock: Callable[[], None],
    runs: Sequence[Run],
    calls: Sequence[Call],
    admitted: Callable[[str, str], bool],
    newly_decided: Iterable[tuple[str, str]],
) -> AttrDeltas:
    """The deltas of one batch's rows, inside the writer's transaction.

    Args:
        admitted: whether the writer already knows a pair admitted (else: not known).
        newly_decided: the pairs the store admitted in this transaction (`admit_values`),
            given a key here (inexact when its dimension folded anything before).
        lock: takes the store's admission lock (before a value is folded).
    """
    fresh = set(newly_decided)
    if fresh:
        cur.executemany(adapt(_ADD_KEY), [(d, v, d, OVERFLOW) for d, v in sorted(fresh)])
    found = _all_pairs(runs, calls)
    kept = {p for p in found if p in fresh or admitted(*p)}
    unsure = found - kept
    if unsure:
        marks = {(d, OVERFLOW) for d, _ in unsure}
        known = known_keys(cur, adapt, unsure | marks)
        kept |= known - marks
        unmarked = {d for d, v in unsure - kept if (d, OVERFLOW) not in known}
        if unmarked:
            # The first fold of a dimension: a writer admitting one of these values right
            # now must see the mark (and call its key inexact), so decide under the
            # admission lock. Once the mark exists, any later key of it is inexact anyway.
            lock()
            kept |= known_keys(cur, adapt, {(d, v) for d, v in unsure if d in unmarked})
            folded = sorted({d for d, v in unsure - kept})
            cur.executemany(adapt(_ADD_FOLD_MARK), [(d, OVERFLOW) for d in folded])
    deltas = AttrDeltas()
    deltas.add(runs, calls, _namer(kept))
    return deltas


def stored_deltas(
    cur: Any, adapt: Callable[[str], str], runs: Sequence[Run], calls: Sequence[Call]
) -> AttrDeltas:
    """Deltas of rows read back from the store (to subtract them when pruning): under the
    keys that exist now, which is where they were added unless their key is inexact."""
    deltas = AttrDeltas()
    found = _all_pairs(runs, calls)
    if found:
        deltas.add(runs, calls, _namer(known_keys(cur, adapt, found)))
    return deltas


def backfill(cur: Any, adapt: Callable[[str], str]) -> None:
    """Build the tables from every row of an existing store (migration 9).

    Every value the store admitted gets an exact key (all its rows are added under it);
    the other values fold into their dimension's overflow, as the writer would.
    """
    cur.execute(adapt("SELECT dimension, value FROM attribution_values"))
    admitted = {(str(d), str(v)) for d, v in cur.fetchall()}
    if admitted:
        cur.executemany(
            adapt("INSERT INTO agg_attr_keys (dimension, value, exact) VALUES (?, ?, 1)"),
            sorted(admitted),
        )
    deltas = AttrDeltas()
    folded: set[str] = set()

    def name(dimension: str, value: str) -> str:
        if (dimension, value) in admitted:
            return value
        folded.add(dimension)
        return OVERFLOW

    for sql, is_run in ((_RUN_ROWS, True), (_CALL_ROWS, False)):
        cur.execute(adapt(sql + "1 = 1"))
        while True:
            chunk = cur.fetchmany(10_000)
            if not chunk:
                break
            rows = [tuple(r) for r in chunk]
            deltas.add(rows if is_run else (), () if is_run else rows, name)
    if folded:
        cur.executemany(adapt(_ADD_FOLD_MARK), [(d, OVERFLOW) for d in sorted(folded)])
    for sql, rows in zip(UPSERTS, deltas.rows(), strict=True):
        if rows:
            cur.executemany(adapt(sql), rows)


def is_exact(cur: Any, adapt: Callable[[str], str], dimension: str, value: str) -> bool:
    """Whether the tables hold every row of `dimension = value` under that value."""
    cur.execute(adapt(_EXACT), (dimension, value))
    row = cur.fetchone()
    return row is not None and int(row[0]) == 1


def single_scope(attributes: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> (
    tuple[str, str] | None
):  # fmt: skip
    """The one `(dimension, value)` of a scope the tables can answer, else None."""
    if not attributes:
        return None
    pairs = list(attributes.items() if isinstance(attributes, Mapping) else attributes)
    if len(pairs) != 1:
        return None
    d, v = pairs[0]
    return str(d), str(v)

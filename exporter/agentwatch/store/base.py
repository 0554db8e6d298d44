"""The durable store: one abstract class for writing, migrating and reading, two thin backends.

All SQL is written once with `?` placeholders (the read queries live in `queries.py`, mixed
into `Store`); a backend converts the placeholder style once per statement text (`_sql`) and
supplies the handful of fragments that really differ (percentiles, local dates, "no limit").
Every value reaches the database as a bound parameter, never by string formatting.

Thread-safety: a Store serialises use of its connection with a lock, so one instance may be
shared by the threads of a server. `stream_executions` streams on a connection of its own, so
a long export neither holds that lock nor loads the whole table into memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentwatch.cardinality import AdmissionCache, ValueAdmissionCache
from agentwatch.errors import IncompatibleStore, StoreError, StoreNotFound
from agentwatch.store import aggregates, idcodec, schema
from agentwatch.store import attribution_aggregates as attr_aggregates
from agentwatch.store.attribution import AttributionStore
from agentwatch.store.columns import EVENT_COLUMNS, EXECUTION_COLUMNS
from agentwatch.store.queries import StoreQueries
from agentwatch.store.schema import LATE_SEQ_BASE

if TYPE_CHECKING:
    # The writer's modules (rollups, the audit chain) load where a batch is written or the
    # rollups are read, so a command that only queries (`monitor stats`) starts faster.
    from agentwatch.rollups import LabelSet, RollupBatch


class StoreUnavailable(StoreError):
    """The store cannot be reached or written right now (down, locked, full, read-only).

    Retrying later may succeed, so the background writer keeps the batch and backs off. Other
    `StoreError`s raised while writing mean the data itself was refused.
    """


@dataclass(frozen=True, slots=True)
class Exemplar:
    """The latest observation in one histogram bucket: which execution, its value, when.

    Attributes:
        execution_id: the execution the observation belongs to.
        value: the observed value (seconds), inside the bucket's range.
        timestamp: when it was observed (end of the run or call), epoch seconds.
    """

    execution_id: str
    value: float
    timestamp: float


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One cumulative sample of the rollup table, as `agentwatch serve` exposes it.

    `exemplar` is set on histogram bucket rows that received an observation made inside an
    execution (the OpenMetrics exemplar of that bucket), else None.
    """

    sample: str
    labels: dict[str, str]
    value: float
    exemplar: Exemplar | None = None


_INSERT_EXECUTION = (
    f"INSERT INTO executions ({', '.join(EXECUTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(EXECUTION_COLUMNS))}) ON CONFLICT (id) DO NOTHING"
)
# An execution's own events are unique by (execution_id, seq): a record stored twice keeps
# one timeline. Orphan events (no execution) are protected by the batch id alone.
_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) ON CONFLICT (execution_id, seq) DO NOTHING"
)
# Late events number from LATE_SEQ_BASE, after (and never colliding with) the execution's own
# events, whether or not the execution is stored yet.
_LATE_SEQ = (
    f"(SELECT COALESCE(MAX(seq) + 1, {LATE_SEQ_BASE}) FROM events "
    f"WHERE execution_id = ? AND seq >= {LATE_SEQ_BASE})"
)
_LATE_PENDING = "CASE WHEN EXISTS (SELECT 1 FROM executions WHERE id = ?) THEN 0 ELSE 1 END"
_INSERT_LATE_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}, pending) VALUES ("
    + ", ".join(_LATE_SEQ if c == "seq" else "?" for c in EVENT_COLUMNS)
    + f", {_LATE_PENDING})"
)
_ANY_PENDING = "SELECT 1 FROM events WHERE pending = 1 LIMIT 1"


def _pending_sum(expression: str) -> str:
    return (
        f"(SELECT COALESCE(SUM({expression}), 0) FROM events p "
        "WHERE p.pending = 1 AND p.execution_id = executions.id)"
    )


_IS_LLM = "CASE WHEN kind = 'llm_call' THEN 1 ELSE 0 END"
_IS_TOOL = "CASE WHEN kind = 'tool_call' THEN 1 ELSE 0 END"
_ABSORB_PENDING = (
    "UPDATE executions SET "
    f"cost_usd = cost_usd + {_pending_sum('cost_usd')}, "
    f"input_tokens = input_tokens + {_pending_sum('input_tokens')}, "
    f"output_tokens = output_tokens + {_pending_sum('output_tokens')}, "
    f"cached_tokens = cached_tokens + {_pending_sum('cached_tokens')}, "
    f"reasoning_tokens = reasoning_tokens + {_pending_sum('reasoning_tokens')}, "
    f"llm_calls = llm_calls + {_pending_sum(_IS_LLM)}, "
    f"tool_calls = tool_calls + {_pending_sum(_IS_TOOL)} "
    "WHERE id IN (SELECT execution_id FROM events WHERE pending = 1)"
)
_CLEAR_PENDING = (
    "UPDATE events SET pending = 0 WHERE pending = 1 "
    "AND execution_id IN (SELECT id FROM executions)"
)
_UPDATE_TOTALS = (
    "UPDATE executions SET cost_usd = cost_usd + ?, input_tokens = input_tokens + ?, "
    "output_tokens = output_tokens + ?, cached_tokens = cached_tokens + ?, "
    "reasoning_tokens = reasoning_tokens + ?, llm_calls = llm_calls + ?, "
    "tool_calls = tool_calls + ? WHERE id = ?"
)
_EXEMPLAR_COLUMNS = ("exemplar_execution_id", "exemplar_value", "exemplar_timestamp")
# The stored exemplar is replaced only by a newer one (a batch carrying none keeps it), so a
# bucket's exemplar time never goes backwards, which Prometheus requires.
_NEWER_EXEMPLAR = (
    "excluded.exemplar_timestamp >= "
    "COALESCE(rollups.exemplar_timestamp, excluded.exemplar_timestamp)"
)
_UPSERT_ROLLUP = (
    f"INSERT INTO rollups (sample, labels, value, {', '.join(_EXEMPLAR_COLUMNS)}) "
    "VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (sample, labels) DO UPDATE SET value = rollups.value + excluded.value, "
    + ", ".join(
        f"{c} = CASE WHEN {_NEWER_EXEMPLAR} THEN excluded.{c} ELSE rollups.{c} END"
        for c in _EXEMPLAR_COLUMNS
    )
)
#: Label sets already admitted, among up to `_ADMIT_CHUNK` candidates of one sample.
_ADMITTED = "SELECT labels FROM rollups WHERE sample = ? AND labels IN ({})"
#: Label sets admitted so far for one metric (its overflow series does not count).
_ADMITTED_COUNT = "SELECT COUNT(*) FROM rollups WHERE sample = ? AND labels <> ?"
_ADMIT_CHUNK = 512
_CLAIM_BATCH = (
    "INSERT INTO batches (id, applied_at, records) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_LAST_WRITE = "last_write"
#: Tables every agentwatch store has (from migration 1 on).
_AGENTWATCH_TABLES = frozenset({"schema_version", "executions", "events", "rollups", "meta"})
#: Seconds one prune transaction should hold the write lock: the chunk size adapts to it.
PRUNE_TRANSACTION_SECONDS = 0.05
#: Batch ids are kept at least this long (seconds), whatever the prune cutoff: a writer
#: retrying a batch after a lost acknowledgement must still find its id.
_BATCH_ID_RETENTION = 86_400.0


def _late_event_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A late event's parameters with its execution id (first, in the `seq` slot and last)
    in the stored form."""
    stored = idcodec.encode(row[0])
    return (stored, row[1], stored, *row[3:-1], stored)


def new_batch_id() -> str:
    """A unique, time-ordered batch id: nanoseconds since the epoch (hex) plus 64 random bits."""
    import secrets  # (with hmac and hashlib) only for a writer: readers start faster

    return f"{time.time_ns():016x}-{secrets.token_hex(8)}"


class Store(StoreQueries, AttributionStore, ABC):
    """A durable store of executions, events and rollups.

    Subclasses provide the connection, `atomic()` and a few dialect fragments; every query
    below is shared. Open one with `agentwatch.store.open_store(url)` and call `migrate()`
    before first use.
    """

    backend: str
    url: str
    #: Seconds to sleep between two prune transactions, so writers waiting for the lock get
    #: it (SQLite's busy handler polls; a pruner that re-locks at once would starve them).
    _prune_pause = 0.0

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._sql_cache: dict[str, str] = {}
        self._admissions = AdmissionCache()
        self._values = ValueAdmissionCache()
        self._commit_listeners: list[Callable[[RollupBatch], None]] = []

    # -- backend hooks -------------------------------------------------------------------
    @abstractmethod
    def atomic(self) -> AbstractContextManager[Any]:
        """Open a transaction (a savepoint when nested) and yield a cursor.

        Commits when the block ends, rolls back on any exception. Holds the store's lock.
        Driver errors leave as `StoreUnavailable` or `StoreError`.
        """

    @abstractmethod
    def _read(self) -> AbstractContextManager[Any]:
        """Yield a cursor for read-only statements (under the store's lock)."""

    @abstractmethod
    def _stream(self, sql: str, params: Sequence[Any], chunk_size: int) -> Iterator[Any]:
        """Yield the rows of one query in chunks of `chunk_size` on a separate connection."""

    @abstractmethod
    def _adapt(self, sql: str) -> str:
        """Convert `?` placeholders to the driver's style."""

    @abstractmethod
    def _percentiles(self, where: str, params: list[Any]) -> list[float | None]:
        """Nearest-rank percentiles `PERCENTILES` of execution durations under `where`."""

    @abstractmethod
    def _local_date(self) -> str:
        """SQL expression for `events.started_at` as YYYY-MM-DD in the zone bound to `?`."""

    @abstractmethod
    def _table_names(self, cur: Any) -> set[str]:
        """Names of the tables where this store creates its own (lower case)."""

    @property
    def display_url(self) -> str:
        """Where the store is, for messages: no password, ever."""
        return self.url

    _NO_LIMIT = "-1"

    def _sql(self, sql: str) -> str:
        adapted = self._sql_cache.get(sql)
        if adapted is None:
            adapted = self._sql_cache[sql] = self._adapt(sql)
        return adapted

    # -- lifecycle -----------------------------------------------------------------------
    def check(self, *, create: bool) -> int:
        """Refuse a database that is not (or not yet) a store this release can use.

        Called by `open_store`. Returns the schema version (0 for an empty database that
        `migrate()` will initialise).

        Raises:
            StoreNotFound: the database is empty and `create` is False.
            IncompatibleStore: a foreign database (tables, but not agentwatch's), or a
                schema version newer than this release.
        """
        with self._read() as cur:
            return self._schema_version(cur, create=create)

    def _schema_version(self, cur: Any, *, create: bool) -> int:
        tables = self._table_names(cur)
        if not tables >= _AGENTWATCH_TABLES:
            if tables:
                raise IncompatibleStore(
                    f"{self.display_url} is not an agentwatch store (it has tables, but not "
                    "agentwatch's); point agentwatch at an empty database or schema"
                )
            if not create:
                raise StoreNotFound(
                    f"no agentwatch store at {self.display_url} (the database is empty); "
                    "run `agentwatch init --store URL` to create it"
                )
            return 0
        cur.execute(self._sql("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        version = int(cur.fetchone()[0])
        latest = schema.latest_version()
        if version > latest:
            raise IncompatibleStore(
                f"store {self.display_url} has schema version {version}, newer than this "
                f"agentwatch release supports ({latest}); upgrade agentwatch"
            )
        return version

    def migrate(self) -> None:
        """Create or upgrade the schema; idempotent and safe with concurrent processes.

        Each migration not recorded yet is applied and recorded in `schema_version` in one
        transaction, after taking a lock that serialises concurrent migrators. Versions are
        applied by absence, not by comparison with the highest one, so a store that got a
        later version first (branches merged in another order) still gets an earlier one.
        A foreign database or a newer schema is refused before anything is changed.

        Raises:
            IncompatibleStore: not an agentwatch store, or a schema newer than this release.
        """
        with self.atomic() as cur:
            self._lock_for_migration(cur)
            applied: set[int] = set()
            if self._schema_version(cur, create=True):
                cur.execute(self._sql("SELECT version FROM schema_version"))
                applied = {int(row[0]) for row in cur.fetchall()}
            cur.execute(self._sql(schema.SCHEMA_VERSION_DDL))
            for migration in schema.MIGRATIONS:
                if migration.version in applied:
                    continue
                for statement in schema.statements_for(self.backend, migration):
                    cur.execute(statement)
                if migration.backfill:
                    self._backfill(cur)
                if migration.convert is not None:
                    migration.convert(cur, self._sql)
                cur.execute(
                    self._sql(
                        "INSERT INTO schema_version (version, description, applied_at) "
                        "VALUES (?, ?, ?)"
                    ),
                    (migration.version, migration.description, time.time()),
                )

    def _backfill(self, cur: Any) -> None:
        """Fill the (new, empty) aggregate tables from every row the store holds."""
        hour = aggregates.HOUR_SQL[self.backend]
        self._add_deltas(cur, aggregates.collect(cur, self._sql, hour, "1 = 1", "1 = 1", ()))

    def _add_deltas(self, cur: Any, deltas: aggregates.Deltas, sign: int = 1) -> None:
        """Add (sign 1) or subtract (sign -1) `deltas` to the aggregate tables."""
        if not deltas:
            return
        for sql, rows in zip(aggregates.UPSERTS, deltas.rows(sign), strict=True):
            if rows:
                self._insert_many(cur, sql, rows)

    @abstractmethod
    def _lock_for_migration(self, cur: Any) -> None:
        """Serialise concurrent migrators inside the migration transaction."""

    @abstractmethod
    def _lock_for_admission(self, cur: Any) -> None:
        """Serialise label-set admission between writers until the transaction ends."""

    def schema_versions(self) -> list[int]:
        """Versions recorded in `schema_version`, ascending."""
        with self._read() as cur:
            cur.execute(self._sql("SELECT version FROM schema_version ORDER BY version"))
            return [int(r[0]) for r in cur.fetchall()]

    @abstractmethod
    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------
    def write_batch(self, batch: RollupBatch, *, batch_id: str | None = None) -> bool:
        """Write one batch in ONE transaction: batch id, rows, late totals, rollups.

        The batch id is recorded in `batches` in the same transaction, and a batch whose id
        is already there is not applied again: retry with the SAME id (and the same batch)
        after an error that may have happened after the commit (a lost connection), and
        the batch counts exactly once.

        Executions are inserted before late events and their total updates, so a late
        event whose execution is in the same batch still lands on it. A late event stored
        before its execution existed is kept `pending`; the batch that brings the
        execution adds such events to its totals. A duplicate execution id (and its own
        events) is ignored rather than failing the batch.

        Args:
            batch: rows and rollup deltas from `RollupBuilder.build`.
            batch_id: unique id of this batch (`new_batch_id()`); a new one when omitted.

        Returns:
            True when applied now; False when a batch with this id was applied before.

        Raises:
            StoreUnavailable: retry later, with the same id.
            RecordRefused: the data was refused; nothing was written.
        """
        from agentwatch.store import audit

        decided: list[tuple[str, str, bool]] = []
        with self.atomic() as cur:
            applied = self._claim(cur, batch_id or new_batch_id(), batch.records)
            if applied:
                decided = self._apply(cur, batch)
                audit.append(self, cur, batch.audit)
        if applied:
            self._admissions.remember(decided, batch.max_label_sets)
            self._values.remember(batch.attribution_decided, batch.attribution_caps)
        for listener in tuple(self._commit_listeners):
            with contextlib.suppress(Exception):  # a listener must not fail a committed batch
                listener(batch)
        return applied

    def add_commit_listener(self, listener: Callable[[RollupBatch], None]) -> None:
        """Call `listener(batch)` after each `write_batch` whose rows are in the store.

        Called in the writing thread, after the commit (also for a batch found applied
        before). Budget enforcement uses it to know which of its own spend the store holds.
        Exceptions are ignored.
        """
        self._commit_listeners.append(listener)

    def fold_spill(
        self,
        spill_id: str,
        batch: RollupBatch,
        unless_batch: str | None = None,
        conditional: RollupBatch | None = None,
    ) -> bool:
        """Apply a loss file's self-metric deltas exactly once, in one transaction.

        `batch` is applied unless `spill_id` was folded before. `conditional` holds the
        deltas of a batch that a process was writing when it exited, unsure whether it
        landed: they are applied only if batch `unless_batch` was never applied, and that
        id is then recorded, so the batch itself can never land afterwards.

        Returns:
            True when folded now; False when this loss file was folded before.
        """
        with self.atomic() as cur:
            if not self._claim(cur, f"spill:{spill_id}", 0):
                return False
            decided = self._apply(cur, batch)
            if (
                unless_batch is not None
                and conditional is not None
                and self._claim(cur, unless_batch, 0)
            ):
                decided += self._apply(cur, conditional)
        self._admissions.remember(decided, batch.max_label_sets)
        self._values.remember(batch.attribution_decided, batch.attribution_caps)
        return True

    def _claim(self, cur: Any, batch_id: str, records: int) -> bool:
        """Record `batch_id` as applied; False when it already was (nothing recorded)."""
        cur.execute(self._sql(_CLAIM_BATCH), (batch_id, time.time(), records))
        return int(cur.rowcount) == 1

    def _apply(self, cur: Any, batch: RollupBatch) -> list[tuple[str, str, bool]]:
        """Insert the batch's rows and add its rollup deltas (inside a transaction).

        Returns the cardinality admissions decided, to remember once committed.
        """
        executions, events = self._insert_rows(cur, batch)
        if batch.executions:
            cur.execute(_ANY_PENDING)
            if cur.fetchone() is not None:
                cur.execute(_ABSORB_PENDING)
                cur.execute(_CLEAR_PENDING)
        if batch.late_events:
            cur.executemany(
                self._sql(_INSERT_LATE_EVENT), [_late_event_row(r) for r in batch.late_events]
            )
        if batch.late_totals:
            cur.executemany(
                self._sql(_UPDATE_TOTALS),
                [(*r[:-1], idcodec.encode(r[-1])) for r in batch.late_totals],
            )
        self._add_deltas(
            cur,
            aggregates.batch_deltas(
                [*executions, *batch.sampled_executions],
                [*events, *batch.late_events, *batch.sampled_events],
            ),
        )
        attributed = (
            attr_aggregates.batch_runs([*executions, *batch.sampled_executions]),
            attr_aggregates.batch_calls([*events, *batch.late_events, *batch.sampled_events]),
        )
        decided = self._write_rollups(cur, batch, attributed)
        cur.execute(self._sql(_SET_META), (_LAST_WRITE, time.time()))
        return decided

    def _insert_rows(
        self, cur: Any, batch: RollupBatch
    ) -> tuple[Sequence[tuple[Any, ...]], Sequence[tuple[Any, ...]]]:
        """Insert the batch's executions and own events; return the rows actually inserted.

        A duplicate execution (and its own events) is skipped by `ON CONFLICT DO NOTHING`;
        the hourly aggregates must skip exactly those. Normally every row is new, which the
        row counts show at no cost; otherwise the inserts are redone one row at a time from a
        savepoint, to learn which rows were new.
        """
        if not batch.executions and not batch.events:
            return (), ()
        # Ids are stored compact (`idcodec`): the rows bound carry their stored form.
        encode, optional = idcodec.encode, idcodec.encode_optional
        new_executions = [(encode(r[0]), r[1], optional(r[2]), *r[3:]) for r in batch.executions]
        new_events = [(optional(r[0]), *r[1:]) for r in batch.events]
        cur.execute("SAVEPOINT aw_rows")
        inserted = 0
        if new_executions:
            inserted += self._insert_many(cur, _INSERT_EXECUTION, new_executions)
        if new_events:
            inserted += self._insert_many(cur, _INSERT_EVENT, new_events)
        if inserted == len(new_executions) + len(new_events):
            cur.execute("RELEASE SAVEPOINT aw_rows")
            return new_executions, new_events
        cur.execute("ROLLBACK TO SAVEPOINT aw_rows")
        executions: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        for sql, rows, kept in (
            (_INSERT_EXECUTION, new_executions, executions),
            (_INSERT_EVENT, new_events, events),
        ):
            statement = self._sql(sql)
            for row in rows:
                cur.execute(statement, row)
                if int(cur.rowcount) == 1:
                    kept.append(row)
        cur.execute("RELEASE SAVEPOINT aw_rows")
        return executions, events

    def _insert_many(self, cur: Any, statement: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Run a one-row INSERT (or upsert) `statement` for many rows; return rows changed.

        `executemany` here; PostgreSQL binds each column as one array instead (one round
        trip and one plan per batch rather than per row), SQLite sends many rows per
        statement.
        """
        cur.executemany(self._sql(statement), rows)
        return int(cur.rowcount)

    def _write_rollups(
        self,
        cur: Any,
        batch: RollupBatch,
        attributed: tuple[Sequence[attr_aggregates.Run], Sequence[attr_aggregates.Call]] = (
            (),
            (),
        ),
    ) -> list[tuple[str, str, bool]]:
        """Add the batch's rollup deltas under the store-wide cardinality cap, and the
        `attributed` runs and calls to the attribution aggregates under the same admissions.

        At most `batch.max_label_sets` label sets per metric are admitted across every
        process writing to this store; the deltas of other label sets fold into the
        metric's `__overflow__` series and are counted in
        `agentwatch_cardinality_overflow_total` (`batch.overflow` says how many). Label sets
        this store object saw decided in a committed batch cost no query.

        Returns:
            The `(sample, key, admitted)` decisions taken, to remember once committed.
        """
        from agentwatch.rollups import resolve_rollups

        decided: list[tuple[str, str, bool]] = []
        cap = batch.max_label_sets
        batch.attribution_decided = self.admit_values(cur, batch)
        # Decided before any row lock on rollups or attribution aggregates is taken: the
        # decision may wait for the admission lock, and a writer holding it may need them.
        attr_deltas = self._attribution_deltas(cur, batch, *attributed)

        def admit(sets: Sequence[LabelSet]) -> list[bool]:
            return self._admit(cur, sets, cap, decided)

        rows, batch.overflow = resolve_rollups(batch, admit)
        if rows:
            self._insert_many(cur, _UPSERT_ROLLUP, rows)
        self._add_attribution_deltas(cur, attr_deltas)
        return decided

    def _attribution_deltas(
        self,
        cur: Any,
        batch: RollupBatch,
        runs: Sequence[attr_aggregates.Run],
        calls: Sequence[attr_aggregates.Call],
    ) -> attr_aggregates.AttrDeltas:
        """The attribution aggregates' share of a batch: values the store admitted under
        their name, the others under their dimension's overflow (see the module)."""
        caps = batch.attribution_caps
        cache = self._values

        def known(dimension: str, value: str) -> bool:
            return cache.lookup(dimension, value, caps.get(dimension, -1)) is True

        return attr_aggregates.writer_deltas(
            cur,
            self._sql,
            lambda: self._lock_for_admission(cur),
            runs,
            calls,
            known,
            [(d, v) for d, v, ok in batch.attribution_decided if ok],
        )

    def _add_attribution_deltas(
        self, cur: Any, deltas: attr_aggregates.AttrDeltas, sign: int = 1
    ) -> None:
        """Add (sign 1) or subtract (sign -1) `deltas` to the attribution aggregates."""
        if not deltas:
            return
        for sql, rows in zip(attr_aggregates.UPSERTS, deltas.rows(sign), strict=True):
            if rows:
                self._insert_many(cur, sql, rows)

    def _admit(
        self, cur: Any, sets: Sequence[LabelSet], cap: int, decided: list[tuple[str, str, bool]]
    ) -> list[bool]:
        """Whether the store admits each label set; newly admitted ones take free places.

        A label set is admitted when its row exists already (any writer admitted it), or
        when its metric holds fewer than `cap` label sets: first come, first served, in
        batch order. Runs under `_lock_for_admission`, so concurrent writers cannot both
        take the last place.
        """
        cache = self._admissions
        known = [cache.lookup(s.sample, s.key, cap) for s in sets]
        pending: dict[str, tuple[str, dict[str, None]]] = {}
        for s, flag in zip(sets, known, strict=True):
            if flag is None:
                pending.setdefault(s.sample, (s.overflow_key, {}))[1][s.key] = None
        if not pending:
            return [bool(flag) for flag in known]
        self._lock_for_admission(cur)
        decisions: dict[tuple[str, str], bool] = {}
        for sample, (overflow_key, candidates) in pending.items():
            keys = list(candidates)
            existing = {overflow_key}  # the overflow series itself takes no place
            for start in range(0, len(keys), _ADMIT_CHUNK):
                chunk = keys[start : start + _ADMIT_CHUNK]
                size = 1 << (len(chunk) - 1).bit_length()  # few distinct statement texts
                chunk += [chunk[-1]] * (size - len(chunk))
                cur.execute(self._sql(_ADMITTED.format(", ".join("?" * size))), (sample, *chunk))
                existing.update(row[0] for row in cur.fetchall())
            fresh = [k for k in keys if k not in existing]
            room = 0
            if fresh:
                cur.execute(self._sql(_ADMITTED_COUNT), (sample, overflow_key))
                room = max(0, cap - int(cur.fetchone()[0]))
            admitted = existing.union(fresh[:room])
            for key in keys:
                decisions[(sample, key)] = ok = key in admitted
                decided.append((sample, key, ok))
        return [
            decisions[(s.sample, s.key)] if flag is None else flag
            for s, flag in zip(sets, known, strict=True)
        ]

    def read_rollups(self) -> list[RollupRow]:
        """Every cumulative rollup sample with its exemplar, ordered by sample and labels.

        Histogram buckets come back cumulative, one row per bound of every label set, as
        `prometheus_client` exposes them (the table holds per-bucket counts).
        """
        from agentwatch.rollups import cumulative_rows, parse_labels

        with self._read() as cur:
            cur.execute(
                self._sql(
                    f"SELECT sample, labels, value, {', '.join(_EXEMPLAR_COLUMNS)} FROM rollups"
                )
            )
            rows = cur.fetchall()
        stored = [
            (
                sample,
                labels,
                value,
                None if ex_id is None else Exemplar(ex_id, float(ex_value), float(ex_ts)),
            )
            for sample, labels, value, ex_id, ex_value, ex_ts in rows
        ]
        # Buckets are stored per bucket and only when observed: cumulate every bound.
        return [
            RollupRow(sample, parse_labels(labels), float(value), exemplar)
            for sample, labels, value, exemplar in cumulative_rows(stored)
        ]

    def last_write_time(self) -> float | None:
        """Epoch seconds of the most recent committed batch by any writer, or None."""
        with self._read() as cur:
            cur.execute(self._sql("SELECT value FROM meta WHERE key = ?"), (_LAST_WRITE,))
            row = cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def spend(
        self,
        start: float,
        end: float,
        *,
        agent: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> float:
        """Exact sum of event `cost_usd` with `start <= started_at < end`, optionally scoped.

        Whole hours are read from the hourly aggregates, the partial hours at either end from
        the events themselves. `agent` matches the agent the call is billed to (the calling
        agent), or a late/orphan event's own agent. `attributes` match the call's attribution
        values (`{"team": "search"}`, inherited from its run or its own): a scope on one
        dimension reads its whole hours from the attribution aggregates when they hold
        every call of that value, else (two dimensions, a value beyond the cap) the
        events of the whole window.
        """
        if attributes:
            return self._attributed_spend(start, end, agent, model, provider, attributes)
        window = aggregates.split_window(start, end)
        filters = [("agent", agent), ("model", model), ("provider", provider)]
        scope = "".join(f" AND {column} = ?" for column, value in filters if value is not None)
        scoped = [value for _, value in filters if value is not None]
        total = 0.0
        with self._read() as cur:
            if not window.empty:
                hours, params = window.hour_where()
                table = aggregates.calls_table(c for c, v in filters if v is not None)
                sql = f"SELECT COALESCE(SUM(cost_usd), 0) FROM {table} WHERE {hours}{scope}"
                cur.execute(self._sql(sql), [*params, *scoped])
                total += float(cur.fetchone()[0])
            for edge_start, edge_end in window.edges if not window.empty else ((start, end),):
                cur.execute(
                    self._sql(
                        "SELECT COALESCE(SUM(cost_usd), 0) FROM events "
                        f"WHERE started_at >= ? AND started_at < ?{scope}"
                    ),
                    [edge_start, edge_end, *scoped],
                )
                total += float(cur.fetchone()[0])
        return total

    def _attributed_spend(
        self,
        start: float,
        end: float,
        agent: str | None,
        model: str | None,
        provider: str | None,
        attributes: Mapping[str, str],
    ) -> float:
        scope = attr_aggregates.single_scope(attributes)
        window = aggregates.split_window(start, end)
        if scope is not None and not window.empty:
            with self._read() as cur:
                if attr_aggregates.is_exact(cur, self._sql, *scope):
                    return self._attributed_spend_from_aggregates(
                        cur, window, agent, model, provider, attributes, scope
                    )
        sql = (
            "SELECT COALESCE(SUM(cost_usd), 0) FROM events WHERE started_at >= ? AND started_at < ?"
        )
        params: list[Any] = [start, end]
        for column, value in (("agent", agent), ("model", model), ("provider", provider)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        conditions, extra = self.attribute_conditions(attributes)
        for condition in conditions:
            sql += f" AND {condition}"
        params.extend(extra)
        with self._read() as cur:
            cur.execute(self._sql(sql), params)
            return float(cur.fetchone()[0])

    def _attributed_spend_from_aggregates(
        self,
        cur: Any,
        window: aggregates.Window,
        agent: str | None,
        model: str | None,
        provider: str | None,
        attributes: Mapping[str, str],
        scope: tuple[str, str],
    ) -> float:
        """Whole hours from `agg_attr_calls`, the partial ones from the events."""
        filters = [(c, v) for c, v in (("agent", agent), ("model", model), ("provider", provider))]
        narrow = "".join(f" AND {column} = ?" for column, value in filters if value is not None)
        scoped = [value for _, value in filters if value is not None]
        hours, params = window.hour_where()
        table = "agg_attr_calls" if scoped else "agg_attr_calls_total"
        cur.execute(
            self._sql(
                f"SELECT COALESCE(SUM(cost_usd), 0) FROM {table} "
                f"WHERE dimension = ? AND value = ? AND {hours}{narrow}"
            ),
            [*scope, *params, *scoped],
        )
        total = float(cur.fetchone()[0])
        conditions, extra = self.attribute_conditions(attributes)
        matched = "".join(f" AND {condition}" for condition in conditions)
        for edge_start, edge_end in window.edges:
            cur.execute(
                self._sql(
                    "SELECT COALESCE(SUM(cost_usd), 0) FROM events "
                    f"WHERE started_at >= ? AND started_at < ?{narrow}{matched}"
                ),
                [edge_start, edge_end, *scoped, *extra],
            )
            total += float(cur.fetchone()[0])
        return total

    # -- retention -----------------------------------------------------------------------
    def delete_old_executions(self, older_than: float) -> int:
        """Delete executions started before `older_than` with their events; keep rollups.

        Orphan events (and events of executions already gone) older than the cutoff go too,
        and batch ids older than both the cutoff and a day; the audit trail loses the entries
        older than the cutoff at its start, leaving a checkpoint (`store/audit.py`). Deletes
        in many short transactions (each sized to hold the write lock about
        `PRUNE_TRANSACTION_SECONDS`),
        pausing between them on SQLite, so a writer waits for one chunk at most, never for
        the whole prune. Interrupted, it leaves a consistent store: what is left is older
        than the cutoff and goes next time.

        Returns the number of executions deleted.
        """
        from agentwatch.store import audit

        oldest = "SELECT id FROM executions WHERE started_at < ? ORDER BY started_at, id LIMIT ?"
        executions = (
            f"DELETE FROM events WHERE execution_id IN ({oldest})",
            f"DELETE FROM executions WHERE id IN ({oldest})",
        )
        hour = aggregates.HOUR_SQL[self.backend]

        def subtract_executions(cur: Any, params: tuple[Any, ...]) -> None:
            deltas = aggregates.collect(
                cur, self._sql, hour, f"id IN ({oldest})", f"execution_id IN ({oldest})", params
            )
            self._add_deltas(cur, deltas, -1)
            self._subtract_attributed(
                cur, f"id IN ({oldest})", f"execution_id IN ({oldest})", params
            )

        deleted = self._delete_in_chunks(executions, older_than, _Chunk(1_000), subtract_executions)
        orphan_ids = (
            "SELECT id FROM events WHERE started_at < ? AND "
            "(execution_id IS NULL OR NOT EXISTS "
            "(SELECT 1 FROM executions x WHERE x.id = events.execution_id)) LIMIT ?"
        )
        orphans = (f"DELETE FROM events WHERE id IN ({orphan_ids})",)

        def subtract_orphans(cur: Any, params: tuple[Any, ...]) -> None:
            deltas = aggregates.collect(cur, self._sql, hour, None, f"id IN ({orphan_ids})", params)
            self._add_deltas(cur, deltas, -1)
            self._subtract_attributed(cur, None, f"id IN ({orphan_ids})", params)

        self._delete_in_chunks(orphans, older_than, _Chunk(5_000), subtract_orphans)
        with self.atomic() as cur:
            for statement in (*aggregates.DELETE_EMPTY, *attr_aggregates.DELETE_EMPTY):
                cur.execute(statement)
        batches = (
            "DELETE FROM batches WHERE id IN (SELECT id FROM batches WHERE applied_at < ? LIMIT ?)",
        )
        cutoff = min(older_than, time.time() - _BATCH_ID_RETENTION)
        self._delete_in_chunks(batches, cutoff, _Chunk(5_000))
        audit.prune(self, older_than)
        return deleted

    def _subtract_attributed(
        self, cur: Any, runs_where: str | None, calls_where: str, params: tuple[Any, ...]
    ) -> None:
        """Subtract from the attribution aggregates the rows about to be deleted."""
        runs, calls = attr_aggregates.read_rows(cur, self._sql, runs_where, calls_where, params)
        deltas = attr_aggregates.stored_deltas(cur, self._sql, runs, calls)
        self._add_attribution_deltas(cur, deltas, -1)

    def _delete_in_chunks(
        self,
        statements: Sequence[str],
        cutoff: float,
        chunk: _Chunk,
        before: Callable[[Any, tuple[Any, ...]], None] | None = None,
    ) -> int:
        """Run `statements` (each bound to cutoff and chunk size) in one transaction, again
        and again until the last one deletes less than a chunk; return its total count.

        `before(cursor, (cutoff, size))` runs first in each transaction (to subtract from the
        aggregates what the statements are about to delete)."""
        adapted = [self._sql(sql) for sql in statements]
        total = 0
        while True:
            size = chunk.size
            started = time.perf_counter()
            with self.atomic() as cur:
                if before is not None:
                    before(cur, (cutoff, size))
                for statement in adapted:
                    cur.execute(statement, (cutoff, size))
                n = max(0, int(cur.rowcount))
            total += n
            if n < size:
                return total
            chunk.adapt(time.perf_counter() - started)
            if self._prune_pause > 0:
                time.sleep(self._prune_pause)

    def clear_all(self) -> None:
        """Delete every execution, event AND rollup (exported counters restart at zero)."""
        with self.atomic() as cur:
            for table in ("events", "executions", "rollups", "attribution_values",
                          *aggregates.TABLES, *attr_aggregates.TABLES,
                          "agg_attr_keys"):  # fmt: skip
                cur.execute(f"DELETE FROM {table}")
            # A change like any write: readers caching on the marker (serve) see it.
            cur.execute(self._sql(_SET_META), (_LAST_WRITE, time.time()))
        # Label sets are admitted afresh. Other processes still trust what they saw admitted
        # until they reopen the store, which can let their label sets in beyond the cap once.
        self._admissions.clear()
        self._values.clear()


class _Chunk:
    """Rows per prune transaction, adapted so each holds the lock about the target time."""

    _MIN, _MAX = 100, 50_000

    def __init__(self, size: int) -> None:
        self.size = size

    def adapt(self, seconds: float) -> None:
        if seconds < PRUNE_TRANSACTION_SECONDS / 2:
            self.size = min(self._MAX, self.size * 2)
        elif seconds > PRUNE_TRANSACTION_SECONDS:
            self.size = max(self._MIN, self.size // 2)


def nearest_rank(n: int, percentile: int) -> int:
    """1-based nearest rank of `percentile` (0..100) among `n` sorted values."""
    return max(1, -(-percentile * n // 100))

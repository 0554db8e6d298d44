"""PostgreSQL backend (psycopg 3, the optional `postgres` extra: `pip install '.[postgres]'`).

For teams whose agents run on several hosts: every process writes to one database and one
`agentwatch serve` exposes the rollups of all of them. The connection runs in autocommit
mode; `atomic()` opens explicit transactions (savepoints when nested). A broken connection
(server restart, network) is replaced on next use.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentwatch.errors import RecordRefused, StoreError
from agentwatch.store import aggregates, base
from agentwatch.store.base import Store, StoreUnavailable
from agentwatch.store.queries import PERCENTILES

if TYPE_CHECKING:
    import psycopg

#: Key of the transaction-scoped advisory lock that serialises concurrent migrators.
_MIGRATION_LOCK = 0x61676D7769  # "agmwi"
#: Key of the transaction-scoped advisory lock that serialises label-set admission.
_ADMISSION_LOCK = 0x6167636170  # "agcap"


#: Array types of the columns of the statements `_insert_many` binds as arrays, in the
#: statements' column order (`rollups.EXECUTION_COLUMNS`, `EVENT_COLUMNS`, rollup rows).
_TEXT, _FLOAT, _INT, _INT4 = "text[]", "float8[]", "int8[]", "int4[]"
#: Execution ids are stored compact (`idcodec`, migration 10).
_ID = "bytea[]"
_ARRAY_TYPES: dict[str, tuple[str, ...]] = {
    base._INSERT_EXECUTION: (
        _ID, _TEXT, _ID, _TEXT, _TEXT, _FLOAT, _FLOAT, _FLOAT, _TEXT, _TEXT, _TEXT, _TEXT,
        _FLOAT, _INT, _INT, _INT, _INT, _INT, _INT, _TEXT,
    ),
    base._INSERT_EVENT: (
        _ID, _TEXT, _INT4, _TEXT, _TEXT, _FLOAT, _FLOAT, _TEXT, _TEXT, _TEXT, _INT, _INT,
        _INT, _INT, _FLOAT, _FLOAT, _TEXT, _TEXT, _TEXT, _TEXT,
    ),
    base._UPSERT_ROLLUP: (_TEXT, _TEXT, _FLOAT, _TEXT, _FLOAT, _FLOAT),
}  # fmt: skip
#: The hourly-aggregate upserts (`aggregates.UPSERTS`): `Deltas.rows` gives each key at most
#: once per statement, as one INSERT may not update a row twice.
_CALL_TOTALS = (_INT,) * 8 + (_FLOAT,)
_AGGREGATE_TYPES: dict[str, tuple[str, ...]] = {
    aggregates.UPSERT_RUNS: (_INT, _TEXT, _INT, _INT, _INT, _INT, _FLOAT, _INT),
    aggregates.UPSERT_DURATIONS: (_INT, _INT4, _INT),
    aggregates.UPSERT_CALLS: (_INT, _TEXT, _TEXT, _TEXT, _TEXT, *_CALL_TOTALS),
    aggregates.UPSERT_CALLS_AGENT: (_INT, _TEXT, *_CALL_TOTALS),
    aggregates.UPSERT_CALLS_MODEL: (_INT, _TEXT, _TEXT, _TEXT, *_CALL_TOTALS),
    aggregates.UPSERT_CALLS_TOTAL: (_INT, *_CALL_TOTALS),
}
_ARRAY_TYPES.update(_AGGREGATE_TYPES)


for _statement, _types in _ARRAY_TYPES.items():
    # A column added to EXECUTION_COLUMNS / EVENT_COLUMNS must get its array type here too.
    if _statement.count("?") != len(_types):  # pragma: no cover - caught at import in tests
        raise AssertionError(f"array types out of step with: {_statement[:60]}...")


def _unnest(statement: str, types: Sequence[str]) -> str:
    """`INSERT ... VALUES (?, ...) ...` as `INSERT ... SELECT * FROM unnest(%b::t[], ...) ...`.

    The arrays travel in binary (`%b`): psycopg's text array dumper escapes every element
    with a regular expression, which costs more than the rows' insertion.
    """
    statement = statement.replace("%", "%%")
    start = statement.index("VALUES (")
    stop = statement.index(")", start) + 1
    arrays = ", ".join(f"%b::{t}" for t in types)
    unnested = f"{statement[:start]}SELECT * FROM unnest({arrays}){statement[stop:]}"
    return unnested.replace("?", "%s")


_UNNEST: dict[str, str] = {sql: _unnest(sql, types) for sql, types in _ARRAY_TYPES.items()}
#: Positions of the float8 columns of each statement: psycopg refuses to dump a list that
#: mixes int and float (`0` next to `0.5`), so those columns are made all-float first.
_FLOAT_COLUMNS: dict[str, tuple[int, ...]] = {
    sql: tuple(i for i, t in enumerate(types) if t == _FLOAT) for sql, types in _ARRAY_TYPES.items()
}


@dataclass(frozen=True, slots=True)
class _Staged:
    """A statement's rows sent by binary COPY into a temporary table, then applied by one
    `INSERT ... SELECT` with the statement's own ON CONFLICT clause.

    psycopg encodes COPY rows in C (`set_types`), while its array dumper is Python (~1 µs
    per value; a run is ~40 values). The staging table is created in the batch's own
    transaction (`_CREATE_STAGING`). `ON COMMIT DELETE ROWS` empties it at each commit (a
    temporary table is never vacuumed, so it must not keep dead rows); a transaction that
    stages a statement twice (`fold_spill` applies two batches) empties it first.
    """

    create: str
    copy: str
    insert: str
    empty: str
    types: tuple[str, ...]


def _staged(statement: str, types: Sequence[str], name: str, order: str = "") -> _Staged:
    columns = statement[statement.index("(") + 1 : statement.index(")")].split(", ")
    # int4 columns are staged as int8: psycopg's binary int4 dumper wraps a larger int
    # around silently, where the INSERT's cast to int4 refuses it (`integer out of range`).
    scalar = tuple("int8" if t == _INT4 else t.removesuffix("[]") for t in types)
    table = f"pg_temp.aw_stage_{name}"
    definition = ", ".join(f"{c} {t}" for c, t in zip(columns, scalar, strict=True))
    start = statement.index("VALUES (")
    stop = statement.index(")", start) + 1
    return _Staged(
        create=(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS aw_stage_{name} ({definition}) "
            "ON COMMIT DELETE ROWS"
        ),
        copy=f"COPY {table} FROM STDIN (FORMAT BINARY)",
        insert=f"{statement[:start]}SELECT * FROM {table}{order}{statement[stop:]}",
        empty=f"TRUNCATE {table}",
        types=scalar,
    )


#: The statements whose rows are staged by COPY when a batch has `_COPY_MIN_ROWS` of them
#: (the hourly aggregates, a few hundred rows, keep the arrays: a COPY costs two more round
#: trips, and their arrays are sent together in a pipeline, see `_add_deltas`).
#: Rollup upserts read the staged rows in key order, byte order for text ("C", which is
#: Python's code-point order of the rows the arrays send): concurrent writers lock rows in one
#: order.
_C_ORDER = ' ORDER BY sample COLLATE "C", labels COLLATE "C"'
_STAGED: dict[str, _Staged] = {
    base._INSERT_EXECUTION: _staged(
        base._INSERT_EXECUTION, _ARRAY_TYPES[base._INSERT_EXECUTION], "executions"
    ),
    base._INSERT_EVENT: _staged(base._INSERT_EVENT, _ARRAY_TYPES[base._INSERT_EVENT], "events"),
    base._UPSERT_ROLLUP: _staged(
        base._UPSERT_ROLLUP, _ARRAY_TYPES[base._UPSERT_ROLLUP], "rollups", _C_ORDER
    ),
}
#: Below this many rows the arrays cost less than the extra round trips of staging.
_COPY_MIN_ROWS = 64
#: May this role create temporary tables in this database (staging needs it)?
_CAN_STAGE = "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
#: One round trip at the start of each transaction (`IF NOT EXISTS`: a creation that rolled
#: back, or a pooler's other server session, leaves nothing behind a batch relies on).
_CREATE_STAGING = "; ".join(staged.create for staged in _STAGED.values())


def _as_floats(values: list[Any]) -> list[Any]:
    return [v if v is None or type(v) is float else float(v) for v in values]


def _merge_rollup_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Sorted rollup rows with one row per key: one INSERT may not update a row twice."""
    merged: list[tuple[Any, ...]] = []
    for row in rows:
        if merged and merged[-1][:2] == row[:2]:
            last = merged[-1]
            newer = row if row[5] is not None and (last[5] is None or row[5] >= last[5]) else last
            merged[-1] = (*row[:2], last[2] + row[2], *newer[3:])
        else:
            merged.append(row)
    return merged


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "PostgreSQL stores need psycopg 3: pip install 'psycopg[binary]>=3.1,<4' "
            "(the postgres extra: pip install '.[postgres]' in the agentwatch checkout)"
        ) from None
    return psycopg


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***` (for messages and logs)."""
    from agentwatch.redaction import mask_url

    return mask_url(url)


class PostgresStore(Store):
    """A store in a PostgreSQL database (tables in the connection's `search_path`).

    The tables live in the connection's current schema (the first of `search_path`); a
    schema holding other tables but not agentwatch's is refused (`IncompatibleStore`), so
    give agentwatch its own database or schema
    (`postgresql://.../db?options=-csearch_path%3Dagentwatch`).

    Args:
        url: libpq URL, e.g. `postgresql://agentwatch@db.internal:5432/telemetry`.
        connect_timeout: seconds before a connection attempt fails as `StoreUnavailable`.
    """

    backend = "postgresql"
    _NO_LIMIT = "ALL"
    _FLOOR = "FLOOR({})"

    def __init__(self, url: str, *, connect_timeout: int = 5) -> None:
        self._pg = _psycopg()
        super().__init__(url)
        self._safe_url = redact_url(url)
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._staging_checked: psycopg.Connection[Any] | None = None
        self._staging_allowed = False
        #: The staging tables exist in the current transaction.
        self._staging = False
        #: Statements staged in the current transaction (their tables may hold rows).
        self._staged_now: set[str] = set()
        with self._errors():
            self._conn = self._connect(autocommit=True)

    @property
    def display_url(self) -> str:
        return self._safe_url

    def _connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        extra: dict[str, Any] = {}
        if "application_name" not in self.url:
            extra["application_name"] = "agentwatch"
        conn: psycopg.Connection[Any] = self._pg.connect(
            self.url, autocommit=autocommit, connect_timeout=self._connect_timeout, **extra
        )
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Re-raise driver errors as RecordRefused (refused data) or StoreUnavailable.

        Classified by exception type, never by message text: a value psycopg cannot encode
        (UnicodeEncodeError is a ValueError) or PostgreSQL rejects (DataError,
        IntegrityError) is refused data; every other driver or OS error is an outage.
        """
        pg = self._pg
        try:
            yield
        except (pg.DataError, pg.IntegrityError, ValueError, TypeError, OverflowError) as exc:
            raise RecordRefused(f"PostgreSQL store {self._safe_url}: {exc}") from exc
        except (pg.Error, OSError) as exc:
            raise StoreUnavailable(f"PostgreSQL store {self._safe_url}: {exc}") from exc

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = conn = self._connect(autocommit=True)
        return conn

    def _adapt(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    @contextmanager
    def atomic(self) -> Iterator[psycopg.Cursor[Any]]:
        """BEGIN ... COMMIT (a SAVEPOINT when nested); roll back on any error."""
        with self._lock, self._errors():
            conn = self._connection()
            outermost = conn.info.transaction_status == self._pg.pq.TransactionStatus.IDLE
            stage = outermost and self._can_stage(conn)
            with conn.transaction(), conn.cursor() as cur:
                if not outermost:
                    yield cur
                    return
                if stage:
                    cur.execute(_CREATE_STAGING)
                self._staging = stage
                self._staged_now.clear()
                try:
                    yield cur
                finally:
                    self._staging = False

    def _can_stage(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether this connection may create the staging tables (asked once per connection,
        outside any transaction; a role without the TEMPORARY privilege keeps the arrays)."""
        if self._staging_checked is not conn:
            row = conn.execute(_CAN_STAGE).fetchone()
            self._staging_allowed = bool(row and row[0])
            self._staging_checked = conn
        return self._staging_allowed

    @contextmanager
    def _read(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock, self._errors(), self._connection().cursor() as cur:
            yield cur

    def _stream(self, sql: str, params: Sequence[Any], chunk_size: int) -> Iterator[Any]:
        with self._errors():
            conn = self._connect(autocommit=False)
        try:
            with self._errors(), conn.cursor(name="agentwatch_stream") as cur:
                cur.itersize = chunk_size
                cur.execute(sql, params)
                while True:
                    rows = cur.fetchmany(chunk_size)
                    if not rows:
                        return
                    yield from rows
        finally:
            conn.close()

    def _insert_many(self, cur: Any, statement: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """One statement per batch: each column bound as an array and `unnest`ed.

        Keeps the statement's ON CONFLICT clause (duplicates ignored, rollups added), so
        the result is that of `executemany`, without a round trip and a plan per row.
        """
        sql = _UNNEST.get(statement)
        if sql is None or len(rows) < 2:
            return super()._insert_many(cur, statement, rows)
        if statement is base._UPSERT_ROLLUP:
            rows = _merge_rollup_rows(rows)
        staged = _STAGED.get(statement)
        if staged is not None and len(rows) >= _COPY_MIN_ROWS and self._staging:
            if statement in self._staged_now:
                cur.execute(staged.empty)
            self._staged_now.add(statement)
            with cur.copy(staged.copy) as copy:
                copy.set_types(staged.types)
                write = copy.write_row
                for row in rows:
                    write(row)
            cur.execute(staged.insert)
            return int(cur.rowcount)
        columns = [list(column) for column in zip(*rows, strict=True)]
        for i in _FLOAT_COLUMNS[statement]:
            columns[i] = _as_floats(columns[i])
        cur.execute(sql, columns)
        return int(cur.rowcount)

    def _add_deltas(self, cur: Any, deltas: aggregates.Deltas, sign: int = 1) -> None:
        """The six aggregate upserts sent in one pipeline: one round trip, not six."""
        if not deltas:
            return
        with cur.connection.pipeline():
            super()._add_deltas(cur, deltas, sign)

    def _lock_for_migration(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _lock_for_admission(self, cur: Any) -> None:
        """Without it two writers could both count 499 of 500 and both admit one more.

        Taken only by batches carrying label sets this process has not seen decided, so
        steady-state batches never wait on each other here.
        """
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADMISSION_LOCK,))

    def _percentiles(self, where: str, params: list[Any]) -> list[float | None]:
        cond = where + (" AND" if where else " WHERE") + " duration IS NOT NULL"
        columns = ", ".join(
            "percentile_disc(?) WITHIN GROUP (ORDER BY duration)" for _ in PERCENTILES
        )
        with self._read() as cur:
            cur.execute(
                self._sql(f"SELECT {columns} FROM executions{cond}"),
                [*(p / 100 for p in PERCENTILES), *params],
            )
            row = cur.fetchone()
        assert row is not None  # an aggregate always returns one row
        return [None if v is None else float(v) for v in row]

    def _json_text(self, column: str) -> str:
        return f"({column}::jsonb ->> ?)"

    def _json_key(self, key: str) -> str:
        return key

    def _local_date(self) -> str:
        return "to_char(to_timestamp(started_at) AT TIME ZONE ?, 'YYYY-MM-DD')"

    def _table_names(self, cur: Any) -> set[str]:
        cur.execute(
            "SELECT lower(table_name) FROM information_schema.tables "
            "WHERE table_schema = current_schema()"
        )
        return {str(row[0]) for row in cur.fetchall()}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

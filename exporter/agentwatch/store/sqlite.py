"""SQLite backend: one file, WAL mode, safe for several processes on one machine.

WAL lets readers (`agentwatch serve`, `agentwatch monitor`) run while a writer commits;
`synchronous=NORMAL` makes a commit cost no fsync in WAL mode (a power cut can lose the last
transactions, never corrupt the file); `busy_timeout` makes a writer wait for another
process' write lock instead of failing at once.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agentwatch.errors import IncompatibleStore, RecordRefused, StoreNotFound
from agentwatch.store import idcodec
from agentwatch.store.base import Store, StoreUnavailable, nearest_rank
from agentwatch.store.queries import PERCENTILES

#: Errors caused by the data of a statement rather than by the state of the database: a
#: string with a lone surrogate (UnicodeEncodeError is a ValueError), an int beyond 64 bits
#: (OverflowError), a value of a type sqlite3 cannot bind, a violated constraint.
_DATA_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    ValueError,
    TypeError,
    OverflowError,
)


@contextmanager
def _errors(path: Path) -> Iterator[None]:
    """Re-raise driver and file-system errors as typed store errors.

    Classified by exception type and SQLite result code, never by message text:
    data errors -> `RecordRefused`; "file is not a database" -> `IncompatibleStore`;
    every other driver or OS error -> `StoreUnavailable` (retrying may help).
    """
    try:
        yield
    except _DATA_ERRORS as exc:
        raise RecordRefused(f"SQLite store {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_NOTADB:
            raise IncompatibleStore(
                f"{path} is not an agentwatch store (not a SQLite database)"
            ) from exc
        raise StoreUnavailable(f"SQLite store {path}: {exc}") from exc
    except (sqlite3.Error, OSError) as exc:
        raise StoreUnavailable(f"SQLite store {path}: {exc}") from exc


#: Largest number of rows one multi-row INSERT carries; a batch is cut into power-of-two
#: chunks (256, 128, ..., 1), so at most nine statement texts per table are ever prepared
#: (and all stay in the connection's statement cache).
_MAX_ROWS_PER_STATEMENT = 256


def _multi_row(statement: str, rows: int) -> str:
    """`INSERT ... VALUES (?, ...) ...` with `rows` value tuples instead of one."""
    start = statement.index("VALUES (") + len("VALUES ")
    stop = statement.index(")", start) + 1
    values = ", ".join([statement[start:stop]] * rows)
    return f"{statement[:start]}{values}{statement[stop:]}"


def _local_date(ts: float | None, tz: str) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d")


class SQLiteStore(Store):
    """A store in one SQLite file.

    Args:
        path: database file.
        busy_timeout: seconds to wait for another connection's write lock before a write
            fails as `StoreUnavailable`.
        create: create the file (and its parent directory) when missing. False for
            readers: a missing file is `StoreNotFound` and nothing is created.

    Raises:
        StoreNotFound: `create` is False and there is no file at `path`.
        IncompatibleStore: the file is not a SQLite database.
        StoreUnavailable: the file cannot be opened now (permissions, a lock, ...).
    """

    backend = "sqlite"
    # Longer than the longest sleep of SQLite's busy handler (100 ms), so a writer waiting
    # for the lock always wakes up while the pruner is not holding it.
    _prune_pause = 0.11

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        super().__init__(f"sqlite:///{self.path}")
        self.busy_timeout = busy_timeout
        self._create = create
        self._depth = 0
        self._multi_sql: dict[tuple[str, int], str] = {}
        if not create and not self.path.is_file():
            what = "a directory, not a store file" if self.path.is_dir() else "no such file"
            raise StoreNotFound(
                f"no agentwatch store at {self.path} ({what}); run `agentwatch init --store "
                f"sqlite:///{self.path}` to create it, or check --store / AGENTWATCH_STORE_URL"
            )
        with _errors(self.path):
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._connect()

    @property
    def display_url(self) -> str:
        return str(self.path)

    def _open_connection(self, **options: Any) -> sqlite3.Connection:
        """A connection to the file; never creates it unless this store may create."""
        if self._create:
            conn: sqlite3.Connection = sqlite3.connect(str(self.path), **options)
        else:
            uri = f"file:{urllib.parse.quote(str(self.path))}?mode=rw"
            conn = sqlite3.connect(uri, uri=True, **options)
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = self._open_connection(
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if self._create:  # WAL is persistent: a reader finds it set, and writes nothing
                self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.create_function("aw_local_date", 2, _local_date, deterministic=True)
            # Migration 10 converts stored ids with it, in SQL (`schema.py`).
            conn.create_function("aw_encode_id", 1, idcodec.encode_optional, deterministic=True)
        except BaseException:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new database to WAL (persistent, so later opens find it set).

        Changing the journal mode needs an exclusive lock and SQLite reports "database is
        locked" at once, without the busy handler, when several processes create the same
        file at the same moment; retry within `busy_timeout`.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _adapt(self, sql: str) -> str:
        return sql

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE ... COMMIT (a SAVEPOINT when nested); roll back on any error."""
        with self._lock, _errors(self.path):
            cur = self._conn.cursor()
            depth = self._depth
            cur.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT aw_{depth}")
            self._depth = depth + 1
            try:
                yield cur
            except BaseException:
                self._depth = depth
                self._undo(cur, depth)
                raise
            self._depth = depth
            try:
                cur.execute("COMMIT" if depth == 0 else f"RELEASE aw_{depth}")
            except BaseException:
                self._undo(cur, depth)
                raise

    def _undo(self, cur: sqlite3.Cursor, depth: int) -> None:
        try:
            if depth == 0:
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
            else:
                cur.execute(f"ROLLBACK TO aw_{depth}")
                cur.execute(f"RELEASE aw_{depth}")
        except sqlite3.Error:
            pass  # the original error is the one worth reporting

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        with self._lock, _errors(self.path):
            yield self._conn.cursor()

    def _stream(self, sql: str, params: Sequence[Any], chunk_size: int) -> Iterator[Any]:
        with _errors(self.path):
            conn = self._open_connection(timeout=self.busy_timeout)
        try:
            with _errors(self.path):
                cur = conn.execute(sql, params)
                while True:
                    rows = cur.fetchmany(chunk_size)
                    if not rows:
                        return
                    yield from rows
        finally:
            conn.close()

    def _percentiles(self, where: str, params: list[Any]) -> list[float | None]:
        cond = where + (" AND" if where else " WHERE") + " duration IS NOT NULL"
        with self._read() as cur:
            cur.execute(f"SELECT COUNT(*) FROM executions{cond}", params)
            n = int(cur.fetchone()[0])
            if n == 0:
                return [None] * len(PERCENTILES)
            ranks = [nearest_rank(n, p) for p in PERCENTILES]
            cur.execute(
                "SELECT rn, duration FROM (SELECT duration, "
                f"ROW_NUMBER() OVER (ORDER BY duration) AS rn FROM executions{cond}) "
                f"WHERE rn IN ({', '.join('?' * len(ranks))})",
                [*params, *ranks],
            )
            by_rank = {int(rn): float(d) for rn, d in cur.fetchall()}
        return [by_rank[r] for r in ranks]

    def _insert_many(self, cur: Any, statement: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Many rows per statement: one `sqlite3_step` (and one GIL release) per chunk.

        `executemany` steps, and so releases and re-takes the GIL, once per row; with the
        host program's threads busy, each re-take can wait for their switch interval.
        Duplicate keys behave as with one row per statement (rows apply in order). Returns
        the rows changed (a row skipped by `ON CONFLICT DO NOTHING` is not counted).
        """
        if "VALUES (" not in statement:
            return super()._insert_many(cur, statement, rows)
        cache = self._multi_sql
        changed = 0
        position = 0
        remaining = len(rows)
        size = _MAX_ROWS_PER_STATEMENT
        while remaining:
            while size > remaining:
                size //= 2
            sql = cache.get((statement, size))
            if sql is None:
                sql = cache[(statement, size)] = _multi_row(statement, size)
            params = [value for row in rows[position : position + size] for value in row]
            cur.execute(sql, params)
            changed += int(cur.rowcount)
            position += size
            remaining -= size
        return changed

    def _lock_for_migration(self, cur: Any) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the database's write lock."""

    def _lock_for_admission(self, cur: Any) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the database's write lock."""

    def _json_text(self, column: str) -> str:
        return f"json_extract({column}, ?)"

    def _json_key(self, key: str) -> str:
        return f'$."{key}"'

    def _local_date(self) -> str:
        return "aw_local_date(started_at, ?)"

    def _table_names(self, cur: Any) -> set[str]:
        cur.execute(
            "SELECT lower(name) FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
        return {str(row[0]) for row in cur.fetchall()}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

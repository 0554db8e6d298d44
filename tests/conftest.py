"""Shared fixtures: temporary stores on real SQLite files and the real PostgreSQL server.

PostgreSQL: tests get a throw-away schema in the `test` database on 127.0.0.1:5432 (override
with AGENTWATCH_TEST_POSTGRES_URL), selected through the URL's `search_path` option and
dropped afterwards. When the server is unreachable the test FAILS under CI=true and is
skipped with the reason otherwise.

Creating a schema and running every migration is most of a PostgreSQL test's cost, so a
test that asks for `migrated_url` (or the `store` fixture) gets a migrated schema from a
per-process pool (`_MigratedSchemas`): after the test its rows, sequences and seeded rows
are put back as migrated, but only if its tables, columns, indexes, constraints and
functions are still exactly those of a freshly migrated schema; otherwise (or if a lock
stays held) it is dropped. Schema names are random, so concurrent sessions and
pytest-xdist workers never share one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agentwatch.model import Event, Execution
from agentwatch.store import Store, open_store

if TYPE_CHECKING:
    import psycopg

POSTGRES_URL = os.environ.get(
    "AGENTWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {reason}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file in a not-yet-existing directory under tmp_path."""
    return f"sqlite:///{tmp_path / 'store' / 'telemetry.db'}"


def _admin_connection() -> psycopg.Connection[Any]:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dev dependency
        _postgres_unavailable(f"psycopg is not installed ({exc})")
        raise
    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        _postgres_unavailable(str(exc).strip())
        raise


def _schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


def _drop_schema(admin: psycopg.Connection[Any], schema: str) -> None:
    admin.execute("SET lock_timeout = '10s'")  # a leaked connection must not hang us
    admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty schema on the test PostgreSQL server; dropped afterwards."""
    schema = f"aw_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield _schema_url(schema)
        finally:
            _drop_schema(admin, schema)


#: Everything about a schema's structure that a test could change (data excluded).
_STRUCTURE_SQL = """
SELECT 'rel', c.relname || ':' || c.relkind::text FROM pg_class c WHERE c.relnamespace = %(ns)s
UNION ALL
SELECT 'col', c.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
       || ':' || a.attnotnull || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = %(ns)s AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'idx', pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c
ON c.oid = i.indexrelid WHERE c.relnamespace = %(ns)s
UNION ALL
SELECT 'con', conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint
WHERE connamespace = %(ns)s
UNION ALL
SELECT 'trg', tgname || ':' || tgrelid::regclass::text FROM pg_trigger t JOIN pg_class c
ON c.oid = t.tgrelid WHERE c.relnamespace = %(ns)s
UNION ALL
SELECT 'fun', p.oid::regprocedure::text || ':' || md5(p.prosrc) FROM pg_proc p
WHERE p.pronamespace = %(ns)s
"""


class _MigratedSchemas:
    """A pool of migrated schemas of this test process, put back to "just migrated" between
    tests. The first schema it migrates is the reference: its structure, its sequences and a
    copy of the rows the migrations seeded (in a side schema, copied back server-side)."""

    def __init__(self, admin: psycopg.Connection[Any]) -> None:
        self.admin = admin
        self.free: list[str] = []
        self.token = uuid.uuid4().hex[:12]
        self.seed_schema = f"aw_seed_{self.token}"
        self.reference: str | None = None
        self.structure: list[tuple[str, str]] = []
        self.tables: list[str] = []
        self.seeded: list[str] = []
        self.sequences: list[tuple[str, int, bool]] = []

    def _structure(self, schema: str) -> list[tuple[str, str]]:
        ns = self.admin.execute("SELECT %s::regnamespace::oid", (schema,)).fetchone()
        assert ns is not None
        rows = self.admin.execute(_STRUCTURE_SQL, {"ns": ns[0]}).fetchall()
        # Names that contain the schema (regclass/regprocedure text) are made schema-free.
        return sorted((kind, text.replace(f'"{schema}".', "").replace(f"{schema}.", ""))
                      for kind, text in rows)  # fmt: skip

    def _migrate_new(self) -> str:
        schema = f"aw_test_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f'CREATE SCHEMA "{schema}"')
        with open_store(_schema_url(schema)) as fresh:
            fresh.migrate()
        if self.reference is None:
            self._remember(schema)
        return schema

    def _remember(self, schema: str) -> None:
        self.reference = schema
        self.structure = self._structure(schema)
        self.tables = [r[0] for r in self.admin.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
        )]  # fmt: skip
        self.sequences = [(r[0], int(r[1]), bool(r[2])) for r in self.admin.execute(
            "SELECT sequencename, coalesce(last_value, start_value), last_value IS NOT NULL "
            "FROM pg_sequences WHERE schemaname = %s", (schema,)
        )]  # fmt: skip
        self.admin.execute(f'CREATE SCHEMA "{self.seed_schema}"')
        for table in self.tables:
            row = self.admin.execute(f'SELECT EXISTS (SELECT 1 FROM "{schema}"."{table}")')
            if row.fetchone() == (True,):
                self.admin.execute(
                    f'CREATE TABLE "{self.seed_schema}"."{table}" AS '
                    f'SELECT * FROM "{schema}"."{table}"'
                )
                self.seeded.append(table)

    def take(self) -> str:
        return self.free.pop() if self.free else self._migrate_new()

    def give_back(self, schema: str) -> None:
        """Reset `schema` to just-migrated and keep it, or drop it if that is not certain."""
        import psycopg

        try:
            if self._structure(schema) != self.structure:
                raise LookupError("the test changed the schema's structure")
            with self.admin.transaction():
                self.admin.execute("SET LOCAL lock_timeout = '2s'")
                emptied = []
                for table in self.tables:
                    deleted = self.admin.execute(f'DELETE FROM "{schema}"."{table}"').rowcount
                    if deleted > 1_000:
                        emptied.append(table)
                for table in self.seeded:
                    self.admin.execute(
                        f'INSERT INTO "{schema}"."{table}" '
                        f'SELECT * FROM "{self.seed_schema}"."{table}"'
                    )
                for sequence, value, called in self.sequences:
                    self.admin.execute(
                        "SELECT setval(%s, %s, %s)", (f'"{schema}"."{sequence}"', value, called)
                    )
            for table in emptied:  # many dead rows would slow the next tests down
                self.admin.execute(f'VACUUM "{schema}"."{table}"')
        except (LookupError, psycopg.Error):
            _drop_schema(self.admin, schema)
            return
        self.free.append(schema)

    def close(self) -> None:
        for schema in [*self.free, self.seed_schema]:
            self.admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def _migrated_schemas() -> Iterator[_MigratedSchemas]:
    with _admin_connection() as admin:
        pool = _MigratedSchemas(admin)
        try:
            yield pool
        finally:
            pool.close()


@pytest.fixture
def migrated_postgres_url(_migrated_schemas: _MigratedSchemas) -> Iterator[str]:
    """URL of a schema at the latest version holding exactly what migrations put there."""
    schema = _migrated_schemas.take()
    try:
        yield _schema_url(schema)
    finally:
        _migrated_schemas.give_back(schema)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str:
    """A fresh store URL, once per backend: one test body covers SQLite and PostgreSQL.

    A test that uses `migrated_url` (or `store`, which does) gets it already migrated on
    PostgreSQL, from the pool; every other test gets an empty schema.
    """
    if request.param == "sqlite":
        name = "sqlite_url"
    elif "migrated_url" in request.fixturenames:
        name = "migrated_postgres_url"
    else:
        name = "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def migrated_url(backend_url: str) -> str:
    """`backend_url` at the latest schema version (on PostgreSQL a pooled, reset schema)."""
    if backend_url.startswith("sqlite"):
        with open_store(backend_url) as fresh:
            fresh.migrate()
    return backend_url


@pytest.fixture
def store(migrated_url: str) -> Iterator[Store]:
    """A migrated store on each backend, closed afterwards."""
    opened = open_store(migrated_url)
    opened.migrate()
    yield opened
    opened.close()


class Records:
    """Builds executions and events with explicit, test-chosen values."""

    def __init__(self) -> None:
        self._n = 0

    def llm(self, started_at: float = 1_000.0, **fields: Any) -> Event:
        values: dict[str, Any] = {
            "kind": "llm_call",
            "name": "chat",
            "started_at": started_at,
            "duration": 0.2,
            "model": "gpt-4o-mini",
            "provider": "openai",
            "input_tokens": 10,
            "output_tokens": 20,
            "cost_usd": 0.001,
        }
        values.update(fields)
        return Event(**values)

    def tool(self, started_at: float = 1_000.0, **fields: Any) -> Event:
        values: dict[str, Any] = {
            "kind": "tool_call",
            "name": "search",
            "started_at": started_at,
            "duration": 0.03,
        }
        values.update(fields)
        return Event(**values)

    def execution(
        self,
        agent: str = "translator",
        started_at: float = 1_000.0,
        duration: float = 0.5,
        events: list[Event] | None = None,
        **fields: Any,
    ) -> Execution:
        self._n += 1
        status = "failed" if fields.get("error_type") else "completed"
        values: dict[str, Any] = {
            "id": f"exec_{self._n:06d}",
            "agent": agent,
            "started_at": started_at,
            "ended_at": started_at + duration,
            "status": status,
        }
        values.update(fields)
        execution = Execution(**values)
        execution.events.extend(events or [])
        return execution


@pytest.fixture
def records() -> Records:
    """Factory of executions and events."""
    return Records()


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """Poll a condition (for state reached by the background writer), up to `timeout` s."""
    import time

    def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return condition()

    return _wait

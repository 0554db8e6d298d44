"""Only `init` and the host program's writer create a store; readers refuse what is not one.

A reader pointed at a mistyped path used to create an empty store there and answer from it;
pointed at an unrelated database it added its tables to it; a store of a newer schema was
half-used. Now: `open_store(url, create=False)` raises `StoreNotFound` or
`IncompatibleStore`, `migrate()` refuses foreign and newer databases, and the CLI prints one
line and exits non-zero.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from agentwatch.cli import cli
from agentwatch.errors import IncompatibleStore, StoreNotFound
from agentwatch.event_store import EventStore
from agentwatch.model import ExecutionFinished
from agentwatch.store import open_store, schema
from agentwatch.writer import BatchWriter
from conftest import Records


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


@pytest.fixture
def foreign_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    return path


@pytest.fixture
def newer_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "newer.db"
    with open_store(f"sqlite:///{path}") as store:
        store.migrate()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_version VALUES (?, 'from a future release', 0)",
            (schema.latest_version() + 1,),
        )
    return path


# -- the store API --------------------------------------------------------------------------
def test_a_missing_sqlite_file_is_not_found_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "telemetry.db"
    with pytest.raises(StoreNotFound, match="agentwatch init"):
        open_store(f"sqlite:///{missing}", create=False)
    with pytest.raises(StoreNotFound):
        EventStore(missing, create=False)
    assert not missing.parent.exists()


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound, match="directory"):
        open_store(f"sqlite:///{tmp_path}", create=False)


def test_an_empty_sqlite_file_is_not_found_for_readers(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StoreNotFound):
        open_store(f"sqlite:///{empty}", create=False)
    assert empty.stat().st_size == 0


def test_the_writer_still_creates_the_default_store_on_first_use(
    tmp_path: Path, records: Records
) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'telemetry.db'}"
    writer = BatchWriter(lambda: open_store(url))
    writer.submit(ExecutionFinished(records.execution()))
    assert writer.flush(timeout=10) is True
    writer.close()
    with open_store(url, create=False) as store:
        assert store.count_executions() == 1


@pytest.mark.parametrize("create", [False, True], ids=["reader", "writer"])
def test_a_foreign_sqlite_database_is_refused_and_left_untouched(
    foreign_sqlite: Path, create: bool
) -> None:
    url = f"sqlite:///{foreign_sqlite}"
    with pytest.raises(IncompatibleStore, match="not an agentwatch store"):
        store = open_store(url, create=create)
        store.migrate()  # reached only if open_store did not refuse
    assert _tables(foreign_sqlite) == {"users"}


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not the tables you are looking for\n" * 100)
    with pytest.raises(IncompatibleStore, match="not an agentwatch store"):
        open_store(f"sqlite:///{notes}", create=False)
    assert notes.read_text().startswith("these are not")


def test_a_newer_schema_is_refused_by_readers_and_by_migrate(newer_sqlite: Path) -> None:
    url = f"sqlite:///{newer_sqlite}"
    with pytest.raises(IncompatibleStore, match="newer than this agentwatch release"):
        open_store(url, create=False)
    before = _tables(newer_sqlite)
    with pytest.raises(IncompatibleStore, match="upgrade agentwatch"):
        open_store(url)  # the writer refuses too
    assert _tables(newer_sqlite) == before


def test_migrate_refuses_a_schema_that_became_newer_after_opening(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with open_store(f"sqlite:///{path}") as store:
        store.migrate()
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO schema_version VALUES (99, 'future', 0)")
        with pytest.raises(IncompatibleStore):
            store.migrate()
        assert store.schema_versions()[-1] == 99


@pytest.mark.postgres
def test_postgresql_readers_refuse_an_empty_or_foreign_schema(postgres_url: str) -> None:
    with pytest.raises(StoreNotFound, match="agentwatch init"):
        open_store(postgres_url, create=False)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
    for create in (False, True):
        with pytest.raises(IncompatibleStore, match="not an agentwatch store"):
            open_store(postgres_url, create=create)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    assert rows == [("orders",)]


@pytest.mark.postgres
def test_postgresql_refuses_a_newer_schema(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        store.migrate()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'future', 0)")
    with pytest.raises(IncompatibleStore, match="newer"):
        open_store(postgres_url, create=False)


# -- the CLI ---------------------------------------------------------------------------------
def _monitor(*args: str) -> Result:
    return CliRunner().invoke(cli, ["monitor", *args], catch_exceptions=False)


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


READERS = [
    ("stats",),
    ("list",),
    ("cost",),
    ("export", "--format", "jsonl"),
    ("prune", "--older-than", "30d"),
]


@pytest.mark.parametrize("command", READERS, ids=[c[0] for c in READERS])
def test_reader_commands_on_a_mistyped_path_fail_in_one_line_and_create_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "telemtry" / "telemetry.db"
    result = _monitor(command[0], "--store", f"sqlite:///{missing}", *command[1:])
    assert result.exit_code != 0
    assert "agentwatch init" in _one_error_line(result)
    assert not missing.parent.exists()


@pytest.mark.parametrize("command", READERS, ids=[c[0] for c in READERS])
def test_reader_commands_refuse_a_foreign_database_in_one_line(
    foreign_sqlite: Path, command: tuple[str, ...]
) -> None:
    result = _monitor(command[0], "--store", f"sqlite:///{foreign_sqlite}", *command[1:])
    assert result.exit_code != 0
    assert "not an agentwatch store" in _one_error_line(result)
    assert _tables(foreign_sqlite) == {"users"}


def test_reader_commands_refuse_a_newer_schema_in_one_line(newer_sqlite: Path) -> None:
    result = _monitor("stats", "--store", f"sqlite:///{newer_sqlite}")
    assert result.exit_code != 0
    assert "upgrade agentwatch" in _one_error_line(result)


def test_reader_commands_upgrade_an_older_store(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(schema.SCHEMA_VERSION_DDL)
    for migration in schema.MIGRATIONS[:2]:
        for statement in schema.statements_for("sqlite", migration):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version VALUES (?, ?, 0)",
            (migration.version, migration.description),
        )
    conn.close()
    result = _monitor("prune", "--store", f"sqlite:///{path}", "--older-than", "30d")
    assert result.exit_code == 0, result.output
    assert "batches" in _tables(path)

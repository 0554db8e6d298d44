"""PostgreSQL specifics: connection failures, concurrent migrators, lost connections.

The behaviours shared with SQLite are tested once for both backends in test_store.py,
test_writer.py and test_rollups.py (the `backend_url` fixture).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.model import ExecutionFinished
from agentwatch.rollups import RollupBuilder
from agentwatch.store import StoreUnavailable, open_store
from agentwatch.store.postgres import redact_url
from agentwatch.writer import BatchWriter
from conftest import POSTGRES_URL, Records


def test_an_unreachable_server_is_unavailable_and_hides_the_password() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        open_store("postgresql://agent:s3cret-pw@127.0.0.1:1/telemetry")
    assert "s3cret-pw" not in str(caught.value)
    assert "agent:***@" in str(caught.value)


def test_redact_url_keeps_everything_but_the_password() -> None:
    assert redact_url("postgresql://u:p@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.fixture
def tagged_url(postgres_url: str) -> Iterator[str]:
    """A store URL whose connections carry a unique application_name (to find and kill)."""
    yield f"{postgres_url}&application_name=aw_{uuid.uuid4().hex[:10]}"


def _terminate(url: str) -> int:
    name = url.rsplit("application_name=", 1)[1]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        ).fetchall()
    return len(rows)


@pytest.mark.postgres
def test_a_lost_connection_is_replaced_on_next_use(tagged_url: str, records: Records) -> None:
    store = open_store(tagged_url)
    store.migrate()
    assert _terminate(tagged_url) == 1
    with pytest.raises(StoreUnavailable):
        store.count_executions()
    assert store.count_executions() == 0
    store.close()


@pytest.mark.postgres
def test_the_writer_rides_out_a_lost_connection(tagged_url: str, records: Records) -> None:
    writer = BatchWriter(lambda: open_store(tagged_url), flush_interval=0.0)
    writer.submit(ExecutionFinished(records.execution()))
    assert writer.flush(timeout=10) is True
    assert _terminate(tagged_url) >= 1
    for _ in range(5):
        assert writer.submit(ExecutionFinished(records.execution())) is True
    assert writer.flush(timeout=10) is True
    writer.close()
    with open_store(tagged_url) as store:
        assert store.count_executions() == 6
        assert writer.stats.backend == "postgresql"
        errors = writer.stats.write_errors()
        rolled = sum(r.value for r in store.read_rollups()
                     if r.sample == "agentwatch_store_write_errors_total")  # fmt: skip
        assert rolled == errors


def _big_batch(records: Records, runs: int) -> list[ExecutionFinished]:
    """Enough runs, events and rollup rows that each is staged by COPY."""
    return [
        ExecutionFinished(records.execution(f"agent-{i % 40}", events=[records.llm()]))
        for i in range(runs)
    ]


@pytest.mark.postgres
def test_large_batches_are_stored_over_a_replaced_connection(
    tagged_url: str, records: Records
) -> None:
    """The staging tables live in the session: a new connection must get its own."""
    store = open_store(tagged_url)
    store.migrate()
    builder = RollupBuilder(CardinalityGuard(1000))
    assert store.write_batch(builder.build(_big_batch(records, 150)))
    assert _terminate(tagged_url) == 1
    with pytest.raises(StoreUnavailable):
        store.write_batch(builder.build(_big_batch(records, 150)))
    assert store.write_batch(builder.build(_big_batch(records, 150)))
    assert store.count_executions() == 300
    store.close()


@pytest.fixture
def no_temp_url() -> Iterator[str]:
    """A store URL for a role that may not create temporary tables (a locked-down server)."""
    name = f"aw_notemp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN")
        admin.execute(f"CREATE DATABASE {name} OWNER {name}")
        admin.execute(f"REVOKE TEMPORARY ON DATABASE {name} FROM PUBLIC, {name}")
    try:
        yield POSTGRES_URL.replace("postgres@", f"{name}@").rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {name}")


@pytest.mark.postgres
def test_a_role_without_temporary_tables_still_writes_large_batches(
    no_temp_url: str, records: Records
) -> None:
    with (
        psycopg.connect(no_temp_url) as probe,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        probe.execute("CREATE TEMPORARY TABLE t (x int)")
    with open_store(no_temp_url) as store:
        store.migrate()
        assert store.write_batch(
            RollupBuilder(CardinalityGuard(1000)).build(_big_batch(records, 150))
        )
        assert store.count_executions() == 150
        assert len(store.get_events(limit=None)) == 150

"""PostgreSQL specifics: connection failures, concurrent migrators, lost connections.

The behaviours shared with SQLite are tested once for both backends in test_store.py,
test_writer.py and test_rollups.py (the `backend_url` fixture).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from agentwatch.model import ExecutionFinished
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

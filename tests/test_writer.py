"""The background batch writer: durability, back-pressure and failure containment."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentwatch.model import ExecutionFinished, LateEvent
from agentwatch.store import Store, open_store
from agentwatch.store.sqlite import SQLiteStore
from agentwatch.writer import BatchWriter
from conftest import Records


def rollup(store: Store, sample: str, **labels: str) -> float | None:
    for row in store.read_rollups():
        if row.sample == sample and row.labels == labels:
            return row.value
    return None


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "telemetry.db"


@pytest.fixture
def reader(db_path: Path) -> Iterator[Store]:
    """A second, independent connection to the SQLite file (what `serve` would see)."""
    store = SQLiteStore(db_path)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def locked(db_path: Path, reader: Store) -> Iterator[sqlite3.Connection]:
    """Another process-like connection holding the database's write lock until closed."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def impatient(db_path: Path) -> Callable[[], Store]:
    """Factory of a store that gives up on a held lock after 50 ms."""
    return lambda: SQLiteStore(db_path, busy_timeout=0.05)


def test_flush_returns_once_every_record_is_committed(backend_url: str, records: Records) -> None:
    writer = BatchWriter(lambda: open_store(backend_url), batch_size=7, flush_interval=5.0)
    for i in range(50):
        execution = records.execution("a", 1_000.0 + i, events=[records.llm(1_000.0 + i)])
        assert writer.submit(ExecutionFinished(execution)) is True
    assert writer.flush(timeout=10) is True
    with open_store(backend_url) as store:
        assert store.count_executions() == 50
        assert store.get_summary_stats()["llm_calls"] == 50
    assert writer.stats.queue_depth() == 0
    buckets, total, count = writer.stats.write_duration()
    assert count >= 8 and buckets[-1] == count and total > 0  # 50 records / 7 per batch
    writer.close()


def test_flush_with_nothing_submitted_is_immediately_true() -> None:
    writer = BatchWriter(lambda: pytest.fail("no store needed"))  # type: ignore[arg-type,return-value]
    assert writer.flush(timeout=1) is True
    writer.close()


def test_queue_full_drops_are_refused_and_counted_while_the_store_blocks(
    db_path: Path, reader: Store, records: Records, wait_until: Callable[..., bool]
) -> None:
    lock = sqlite3.connect(db_path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    slow = lambda: SQLiteStore(db_path, busy_timeout=30.0)  # noqa: E731 - blocks in the lock
    writer = BatchWriter(slow, queue_size=3, batch_size=2, flush_interval=0.0)
    results = [writer.submit(ExecutionFinished(records.execution())) for _ in range(40)]
    refused = results.count(False)
    assert refused >= 40 - 3 - 2  # at most the queue plus one batch in the writer's hands
    assert writer.stats.dropped()["queue_full"] == refused

    lock.execute("ROLLBACK")
    lock.close()
    assert writer.flush(timeout=20) is True
    assert reader.count_executions() == 40 - refused
    writer.submit(ExecutionFinished(records.execution()))  # the drops ride on the next batch
    assert writer.flush(timeout=10) is True
    assert rollup(reader, "agentwatch_events_dropped_total", reason="queue_full") == refused
    writer.close()


def test_locked_store_never_raises_and_the_batch_lands_once_released(
    db_path: Path, reader: Store, locked: sqlite3.Connection, records: Records,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    writer = BatchWriter(impatient(db_path), flush_interval=0.0)
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        for i in range(10):
            assert writer.submit(ExecutionFinished(records.execution("a", 1_000.0 + i))) is True
        assert writer.flush(timeout=0.5) is False
        assert writer.flush(timeout=0.5) is False
    errors = writer.stats.write_errors()
    assert errors >= 2
    assert reader.count_executions() == 0
    problems = [r for r in caplog.records if "cannot write telemetry" in r.getMessage()]
    assert len(problems) == 1  # one log line per distinct problem, not per attempt

    locked.execute("ROLLBACK")
    assert writer.flush(timeout=10) is True
    assert reader.count_executions() == 10
    assert sum(writer.stats.dropped().values()) == 0
    failed = rollup(reader, "agentwatch_store_write_errors_total", backend="sqlite")
    assert failed is not None and failed >= errors
    writer.close()


def test_a_store_that_cannot_be_opened_is_retried_until_it_can(
    tmp_path: Path, records: Records
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the store's directory should be")
    url = f"sqlite:///{blocker / 'telemetry.db'}"
    writer = BatchWriter(lambda: open_store(url), flush_interval=0.0, backend="sqlite")
    assert writer.submit(ExecutionFinished(records.execution())) is True
    assert writer.flush(timeout=0.3) is False
    assert writer.stats.write_errors() >= 1

    blocker.unlink()
    assert writer.flush(timeout=10) is True
    with open_store(url) as store:
        assert store.count_executions() == 1
        assert (rollup(store, "agentwatch_store_write_errors_total", backend="sqlite") or 0) >= 1
    writer.close()


def test_an_outage_longer_than_the_buffer_drops_the_oldest_as_store_error(
    db_path: Path, reader: Store, locked: sqlite3.Connection, records: Records
) -> None:
    writer = BatchWriter(impatient(db_path), queue_size=5, batch_size=2, flush_interval=0.0)
    executions = [records.execution("a", 1_000.0 + i) for i in range(10)]
    for execution in executions:
        while not writer.submit(ExecutionFinished(execution)):
            writer.flush(timeout=0.1)  # let the writer move the queue into its retry buffer
    writer.flush(timeout=0.3)
    locked.execute("ROLLBACK")
    assert writer.flush(timeout=10) is True  # what is left is written
    dropped = writer.stats.dropped()
    assert dropped["store_error"] == 5
    # The queue_full refusals above were retried, so they are not losses of accepted records.
    stored = [e["id"] for e in reader.get_executions(limit=None)]
    assert sorted(stored) == sorted(e.id for e in executions[5:])  # the newest survive
    assert writer.submit(ExecutionFinished(records.execution())) is True
    assert writer.flush(timeout=10) is True
    assert rollup(reader, "agentwatch_events_dropped_total", reason="store_error") == 5
    writer.close()


def test_a_record_the_store_refuses_is_dropped_alone(backend_url: str, records: Records) -> None:
    writer = BatchWriter(lambda: open_store(backend_url), flush_interval=5.0)
    good = [records.execution("a", 1_000.0 + i) for i in range(3)]
    bad = records.execution("a", 1_000.0)
    bad.status = None  # type: ignore[assignment]  # violates NOT NULL (not a repaired field)
    for execution in (good[0], bad, good[1], good[2]):
        writer.submit(ExecutionFinished(execution))
    assert writer.flush(timeout=10) is False
    assert writer.stats.dropped()["invalid"] == 1
    with open_store(backend_url) as store:
        assert sorted(e["id"] for e in store.get_executions()) == sorted(e.id for e in good)
    writer.close()


def test_close_then_submit_is_a_shutdown_drop(sqlite_url: str, records: Records) -> None:
    writer = BatchWriter(lambda: open_store(sqlite_url))
    assert writer.submit(ExecutionFinished(records.execution())) is True
    writer.close()
    assert writer.submit(ExecutionFinished(records.execution())) is False
    assert writer.stats.dropped()["shutdown"] == 1
    with open_store(sqlite_url) as store:
        assert store.count_executions() == 1  # close flushed what was accepted
    writer.close()  # idempotent


def test_close_counts_and_logs_what_could_not_be_written(
    db_path: Path, locked: sqlite3.Connection, records: Records,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    writer = BatchWriter(impatient(db_path), flush_interval=0.0)
    for _ in range(4):
        writer.submit(ExecutionFinished(records.execution()))
    with caplog.at_level(logging.WARNING, logger="agentwatch"):
        writer.close(timeout=0.3)
    assert writer.stats.dropped()["shutdown"] == 4
    assert any("before shutdown" in r.getMessage() for r in caplog.records)


def test_eight_threads_submitting_store_every_record_exactly_once(
    backend_url: str, records: Records
) -> None:
    writer = BatchWriter(lambda: open_store(backend_url), batch_size=64, flush_interval=0.01)
    per_thread = 250
    start = threading.Barrier(8)

    def produce(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            event = records.llm(execution_id=None, agent=f"t{t}", name=f"{t}-{i}")
            assert writer.submit(LateEvent(event))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.flush(timeout=30) is True
    writer.close()
    with open_store(backend_url) as store:
        names = [e["name"] for e in store.get_events(limit=None)]
        assert len(names) == 8 * per_thread
        assert set(names) == {f"{t}-{i}" for t in range(8) for i in range(per_thread)}
        requests = sum(r.value for r in store.read_rollups()
                       if r.sample == "agentwatch_llm_requests_total")  # fmt: skip
        assert requests == 8 * per_thread


def test_internal_errors_are_counted_and_rolled_up(
    sqlite_url: str, records: Records, wait_until: Callable[..., bool]
) -> None:
    writer = BatchWriter(lambda: open_store(sqlite_url), flush_interval=0.0)
    writer.submit(ExecutionFinished(records.execution()))
    assert writer.flush(timeout=10)
    writer.record_internal_error("capture")
    writer.record_internal_error("capture")
    assert writer.stats.internal_errors() == {"capture": 2}
    with open_store(sqlite_url) as store:
        assert wait_until(
            lambda: rollup(store, "agentwatch_internal_errors_total", component="capture") == 2
        )
    writer.close()


_EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from agentwatch.model import Execution, ExecutionFinished
    from agentwatch.store import open_store
    from agentwatch.writer import BatchWriter

    writer = BatchWriter(lambda: open_store(sys.argv[1]), flush_interval=60.0)
    for i in range(100):
        execution = Execution(id=f"e{i}", agent="a", started_at=1.0, ended_at=2.0,
                              status="completed")
        writer.submit(ExecutionFinished(execution))
    # no flush(), no close(): the program just ends
    """
)


def _run_and_exit(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_records_submitted_right_before_exit_are_written(sqlite_url: str) -> None:
    done = _run_and_exit(sqlite_url)
    assert done.returncode == 0, done.stderr
    with open_store(sqlite_url) as store:
        assert store.count_executions() == 100


@pytest.mark.slow
def test_exit_with_an_unreachable_store_neither_hangs_nor_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = _run_and_exit(f"sqlite:///{blocker / 'telemetry.db'}")
    assert done.returncode == 0
    assert "Traceback" not in done.stderr
    assert "100 telemetry records could not be stored before shutdown" in done.stderr


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_working_writer_of_its_own(sqlite_url: str, records: Records) -> None:
    import os

    writer = BatchWriter(lambda: open_store(sqlite_url), flush_interval=0.0)
    writer.submit(ExecutionFinished(records.execution("parent")))
    assert writer.flush(timeout=10)
    pid = os.fork()
    if pid == 0:  # child: its own thread and connection, then a hard exit
        ok = writer.submit(
            ExecutionFinished(records.execution("child", id="child"))
        ) and writer.flush(10)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer.submit(ExecutionFinished(records.execution("parent")))
    assert writer.flush(timeout=10)
    writer.close()
    with open_store(sqlite_url) as store:
        assert store.count_executions(agent_name="child") == 1
        assert store.count_executions(agent_name="parent") == 2

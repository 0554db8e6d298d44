"""Losses at exit become visible: loss files next to the store, folded in exactly once.

A process that exits while its store is locked drops its unwritten records as `shutdown`;
it cannot add that count to the store's rollups, so it writes it to a loss file that the
next writer for the store folds in (`store/spill.py`).
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from agentwatch import contract
from agentwatch.cardinality import CardinalityGuard
from agentwatch.model import ExecutionFinished
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, StoreUnavailable, open_store, spill
from agentwatch.store.base import new_batch_id
from agentwatch.writer import BatchWriter
from conftest import Records

SHUTDOWN = "agentwatch_events_dropped_total"
WRITE_ERRORS = "agentwatch_store_write_errors_total"


def _rollup(store: Store, sample: str, **labels: str) -> float:
    return sum(
        r.value
        for r in store.read_rollups()
        if r.sample == sample and all(r.labels.get(k) == v for k, v in labels.items())
    )


def _loss_files(url: str) -> list[Path]:
    directory, prefix = spill.location(url)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(prefix))


# A host program shaped like the quickstart: configure, run, exit without flushing. It
# prints its own writer's counts once the writer has closed (atexit runs in reverse order).
_HOST = textwrap.dedent(
    """
    import atexit, json, sys
    import agentwatch
    from agentwatch.runtime import get_runtime

    agentwatch.configure(store_url=sys.argv[1])
    writer = get_runtime().writer

    def report():
        print(json.dumps({"dropped": writer.stats.dropped(),
                          "write_errors": writer.stats.write_errors()}))

    atexit.register(report)

    @agentwatch.observe
    def job(i: int) -> int:
        return i

    for i in range(int(sys.argv[2])):
        job(i)
    """
)


def _host(url: str, runs: int, home: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _HOST, url, str(runs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"AGENTWATCH_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.slow  # the first host waits out SQLite's 5 s busy timeout before it exits
def test_runs_lost_at_exit_on_a_locked_store_reach_the_rollups_exactly_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "store" / "telemetry.db"
    url = f"sqlite:///{db}"
    with open_store(url) as store:
        store.migrate()
    lock = sqlite3.connect(db, isolation_level=None)  # another process holds the write lock
    lock.execute("BEGIN EXCLUSIVE")
    try:
        first = _host(url, 50, tmp_path / "home")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert first["dropped"] == {"queue_full": 0, "store_error": 0, "invalid": 0, "shutdown": 50}
    files = _loss_files(url)
    assert len(files) == 1 and files[0].parent == db.parent
    kept = tmp_path / "copy.json"
    shutil.copy(files[0], kept)

    second = _host(url, 1, tmp_path / "home")  # the next writer folds the file in
    assert second["write_errors"] == 0
    assert _loss_files(url) == []
    with open_store(url, create=False) as store:
        assert store.count_executions() == 1
        assert _rollup(store, SHUTDOWN, reason="shutdown") == 50
        assert _rollup(store, WRITE_ERRORS, backend="sqlite") == first["write_errors"]

    shutil.copy(kept, files[0])  # as if the folding writer died before deleting the file
    _host(url, 1, tmp_path / "home")
    assert _loss_files(url) == []
    with open_store(url, create=False) as store:
        assert store.count_executions() == 2
        assert _rollup(store, SHUTDOWN, reason="shutdown") == 50, "a second fold counts nothing"


_SIGTERMED = textwrap.dedent(
    """
    import sys, time
    import agentwatch

    agentwatch.configure(store_url=sys.argv[1])

    @agentwatch.observe
    def job(i: int) -> int:
        return i

    for i in range(int(sys.argv[2])):
        job(i)
    print("ready", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.slow  # the SIGTERM flush waits out SQLite's 5 s busy timeout
def test_runs_lost_to_a_sigterm_on_a_locked_store_reach_the_rollups(tmp_path: Path) -> None:
    db = tmp_path / "telemetry.db"
    url = f"sqlite:///{db}"
    with open_store(url) as store:
        store.migrate()
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        host = subprocess.Popen(
            [sys.executable, "-c", _SIGTERMED, url, "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"AGENTWATCH_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
        )
        assert host.stdout is not None
        assert host.stdout.readline().strip() == "ready"
        host.send_signal(signal.SIGTERM)
        _, stderr = host.communicate(timeout=30)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert host.returncode == -signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    (found,) = spill.pending(url)
    assert (contract.EVENTS_DROPPED, ("shutdown",), 30.0) in found.deltas
    writer = BatchWriter(lambda: open_store(url))
    writer.submit(ExecutionFinished(Records().execution()))
    assert writer.flush(timeout=10) is True
    writer.close()
    with open_store(url, create=False) as store:
        assert _rollup(store, SHUTDOWN, reason="shutdown") == 30


def _failing_after(url: str, landed: list[int]) -> Callable[[], Store]:
    """A factory of a real store whose first batch lands, then every write fails as if the
    connection died (the first one after its commit): the writer exits unsure."""

    def factory() -> Store:
        if landed[0]:
            raise StoreUnavailable("store down")
        store = open_store(url)
        real = store.write_batch

        def write_batch(batch, *, batch_id=None):  # type: ignore[no-untyped-def]
            real(batch, batch_id=batch_id)
            landed[0] += batch.records
            raise StoreUnavailable("connection lost after commit")

        store.write_batch = write_batch  # type: ignore[method-assign]
        return store

    return factory


@pytest.mark.slow
def test_a_batch_that_landed_unacknowledged_before_exit_is_not_also_counted_lost(
    backend_url: str, records: Records, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path / "home"))
    landed = [0]
    writer = BatchWriter(
        _failing_after(backend_url, landed), batch_size=10, flush_interval=60.0,
        spill_url=backend_url,
    )  # fmt: skip
    for i in range(10):  # the tenth fills the batch: one batch of all ten
        writer.submit(ExecutionFinished(records.execution("a", 1_000.0 + i)))
    assert writer.flush(timeout=0.5) is False
    writer.close(timeout=0.5)
    assert landed == [10]
    assert writer.stats.dropped()["shutdown"] == 10  # this process cannot know they landed
    assert len(_loss_files(backend_url)) == 1

    follower = BatchWriter(lambda: open_store(backend_url), spill_url=backend_url)
    follower.submit(ExecutionFinished(records.execution("b")))
    assert follower.flush(timeout=10) is True
    follower.close()
    with open_store(backend_url, create=False) as store:
        assert store.count_executions() == 11
        assert _rollup(store, "agentwatch_executions_total") == 11
        assert _rollup(store, SHUTDOWN, reason="shutdown") == 0, "the 10 runs did land"
        assert _rollup(store, WRITE_ERRORS) == writer.stats.write_errors() >= 1
    assert _loss_files(backend_url) == []


def _fold(store: Store, found: spill.Spill) -> bool:
    builder = RollupBuilder(CardinalityGuard(100))
    return store.fold_spill(
        found.id,
        builder.build((), found.deltas),
        found.unless_batch,
        builder.build((), found.conditional),
    )


def test_counts_of_a_batch_in_flight_apply_only_if_it_never_landed(
    store: Store, records: Records, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path / "home"))
    builder = RollupBuilder(CardinalityGuard(100))
    drop = (contract.EVENTS_DROPPED, ("shutdown",), 4.0)
    never, landed = new_batch_id(), new_batch_id()
    store.write_batch(builder.build([ExecutionFinished(records.execution())]), batch_id=landed)
    for unless in (never, landed):
        spill.write(store.url, new_batch_id(), [drop], unless_batch=unless, conditional=[drop])
    for found in spill.pending(store.url):
        assert _fold(store, found) is True
        assert _fold(store, found) is False, "a loss file folds once"
    # 4 for sure from each file, plus 4 for the batch that never landed.
    assert _rollup(store, SHUTDOWN, reason="shutdown") == 12
    late = builder.build([ExecutionFinished(records.execution())])
    assert store.write_batch(late, batch_id=never) is False, "it can never land afterwards"


def test_a_postgresql_store_keeps_its_loss_files_under_home_keyed_without_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_HOME", str(tmp_path))
    one, _ = spill.location("postgresql://agent:first-password@db:5432/telemetry")
    two, _ = spill.location("postgres://agent:rotated@db:5432/telemetry")
    other, _ = spill.location("postgresql://agent@db:5432/other")
    assert one == two != other
    assert one.parent == tmp_path / "lost"
    assert "password" not in str(one) and "rotated" not in str(one)


def test_a_malformed_loss_file_is_set_aside_and_never_folded(
    sqlite_url: str, records: Records
) -> None:
    with open_store(sqlite_url) as store:
        store.migrate()
    directory, prefix = spill.location(sqlite_url)
    bogus = [
        ["agentwatch_events_dropped", ["shutdown"], -5],
        ["agentwatch_llm_cost_usd", ["a", "m", "p"], 100.0],
        ["agentwatch_events_dropped", ["made-up-reason"], 1],
    ]
    for i, delta in enumerate(bogus):
        spill_id = f"{i:016x}-{i:016x}"
        body = {"format": 1, "id": spill_id, "deltas": [delta]}
        (directory / f"{prefix}{spill_id}.json").write_text(json.dumps(body))
    (directory / f"{prefix}{1:016x}-{9:016x}.json").write_text("{not json")
    writer = BatchWriter(lambda: open_store(sqlite_url), spill_url=sqlite_url)
    writer.submit(ExecutionFinished(records.execution()))
    assert writer.flush(timeout=10) is True
    writer.close()
    assert sorted(p.suffix for p in _loss_files(sqlite_url)) == [".invalid"] * 4
    with open_store(sqlite_url, create=False) as store:
        assert _rollup(store, SHUTDOWN) == 0
        assert _rollup(store, "agentwatch_llm_cost_usd_total") == 0

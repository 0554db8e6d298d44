"""The audit trail: written with the runs, hash-chained, verifiable, prunable, tamper-evident.

Every tampering test edits the real stored row by hand (sqlite3 / psycopg on the store's own
database) and runs the real `agentwatch audit verify` command.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agentwatch import audit
from agentwatch.cardinality import CardinalityGuard
from agentwatch.cli import cli
from agentwatch.model import ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store, open_store
from agentwatch.store import audit as chain
from agentwatch.writer import BatchWriter
from conftest import Records

WORKER = Path(__file__).with_name("_audit_worker.py")


def _write(store: Store, items: list[WriterItem], batch_id: str | None = None) -> bool:
    batch = RollupBuilder(CardinalityGuard(2_000)).build(items)
    batch.audit = audit.entries_for(items)
    return store.write_batch(batch, batch_id=batch_id)


def _runs(records: Records, n: int, started_at: float = 1_000.0) -> list[WriterItem]:
    return [
        ExecutionFinished(
            records.execution(
                started_at=started_at + i,
                events=[records.llm(started_at + i), records.tool(started_at + i)],
                attributes={"team": "search", "score": 0.5},
            )
        )
        for i in range(n)
    ]


def _sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement on the store's database, as an administrator would by hand."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        with conn:
            conn.execute(statement, params)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(statement.replace("?", "%s"), params)


def _cli(*args: str) -> Result:
    return CliRunner().invoke(cli, ["audit", *args])


@pytest.fixture
def chained(store: Store, records: Records) -> Iterator[Store]:
    """A store holding 3 runs (each: started, llm_call, tool_call, finished) = 12 entries."""
    _write(store, _runs(records, 3))
    yield store


def test_runs_are_recorded_with_who_what_when_outcome_and_cost(chained: Store) -> None:
    entries = [json.loads(r.entry) for r in chain.rows(chained)]
    assert [e["type"] for e in entries[:4]] == [
        "run.started",
        "llm_call",
        "tool_call",
        "run.finished",
    ]
    started, call, _, finished = entries[:4]
    assert started["agent"] == "translator" and started["attributes"] == {
        "team": "search",
        "score": "0.5",  # floats are exact strings in the canonical form
    }
    assert call["model"] == "gpt-4o-mini" and call["cost_usd"] == "0.001"
    assert finished["status"] == "completed" and finished["cost_usd"] == "0.001"
    assert finished["at"] == "1970-01-01T00:16:40.500000+00:00"
    assert len(entries) == 12


def test_intact_chain_verifies_with_count(chained: Store) -> None:
    result = _cli("verify", "--store", chained.url)
    assert result.exit_code == 0, result.output
    assert "intact: 12 entries (1..12)" in result.output


def test_editing_one_stored_row_fails_verify_at_that_row(chained: Store) -> None:
    _sql(chained.url, "UPDATE audit SET entry = replace(entry, '0.001', '0.000') WHERE seq = 6")
    result = _cli("verify", "--store", chained.url)
    assert result.exit_code == 1
    assert "broken at entry 6: hash differs" in result.output


def test_editing_a_row_and_its_hash_fails_at_the_next_link(chained: Store) -> None:
    row = next(r for r in chain.rows(chained) if r.seq == 4)
    forged = row.entry.replace("completed", "failed")
    _sql(
        chained.url,
        "UPDATE audit SET entry = ?, hash = ? WHERE seq = 4",
        (forged, audit.chain_hash(row.prev_hash, forged)),
    )
    result = _cli("verify", "--store", chained.url, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["broken_seq"] == 5 and "prev_hash" in report["problem"]


def test_deleting_a_row_fails_verify(chained: Store) -> None:
    _sql(chained.url, "DELETE FROM audit WHERE seq = 7")
    result = _cli("verify", "--store", chained.url)
    assert result.exit_code == 1
    assert "entry 7 is missing" in result.output


def test_deleting_the_first_rows_fails_verify(chained: Store) -> None:
    _sql(chained.url, "DELETE FROM audit WHERE seq <= 2")
    result = _cli("verify", "--store", chained.url)
    assert result.exit_code == 1
    assert "entries before 3 are missing" in result.output


def test_rewritten_chain_fails_only_against_an_anchor(chained: Store, records: Records) -> None:
    anchor = _cli("head", "--store", chained.url).output.strip()
    assert anchor.startswith("12:")
    # A store administrator rewrites the whole chain consistently: plain verify cannot tell.
    rows = list(chain.rows(chained))
    prev = audit.GENESIS
    for r in rows:
        text = r.entry.replace("translator", "someone-else")
        digest = audit.chain_hash(prev, text)
        _sql(
            chained.url,
            "UPDATE audit SET entry = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (text, prev, digest, r.seq),
        )
        prev = digest
    assert _cli("verify", "--store", chained.url).exit_code == 0
    result = _cli("verify", "--store", chained.url, "--expect-head", anchor)
    assert result.exit_code == 1
    assert "anchored head hash" in result.output


def test_anchor_holds_while_the_chain_grows(chained: Store, records: Records) -> None:
    anchor = _cli("head", "--store", chained.url).output.strip()
    _write(chained, _runs(records, 1, started_at=2_000.0))
    result = _cli("verify", "--store", chained.url, "--expect-head", anchor)
    assert result.exit_code == 0, result.output
    assert "16 entries" in result.output


def test_cut_back_chain_fails_against_an_anchor(chained: Store) -> None:
    anchor = _cli("head", "--store", chained.url).output.strip()
    _sql(chained.url, "DELETE FROM audit WHERE seq >= 11")
    assert _cli("verify", "--store", chained.url).exit_code == 0  # truncation is invisible...
    result = _cli("verify", "--store", chained.url, "--expect-head", anchor)
    assert result.exit_code == 1  # ...unless the head was anchored
    assert "beyond the head" in result.output


def test_retried_batch_appends_nothing(store: Store, records: Records) -> None:
    items = _runs(records, 2)
    assert _write(store, items, batch_id="b-1")
    assert not _write(store, items, batch_id="b-1")
    assert chain.head(store)[0] == 8
    assert chain.verify(store).ok


def test_late_and_orphan_calls_are_recorded(store: Store, records: Records) -> None:
    _write(
        store, [LateEvent(records.llm(execution_id="exec_x", agent="a")), LateEvent(records.llm())]
    )
    entries = [json.loads(r.entry) for r in chain.rows(store)]
    assert [(e["run"], e["late"]) for e in entries] == [("exec_x", True), (None, True)]


def test_prune_leaves_a_verifiable_chain_with_a_checkpoint(store: Store, records: Records) -> None:
    _write(store, _runs(records, 3, started_at=1_000.0))  # entries 1..12
    _write(store, _runs(records, 2, started_at=5_000.0))  # entries 13..20
    store.delete_old_executions(4_000.0)
    rows = list(chain.rows(store))
    assert rows[0].seq == 13 and rows[-1].seq == 21
    last = json.loads(rows[-1].entry)
    assert last["type"] == "checkpoint" and last["removed_through_seq"] == 12
    assert _cli("verify", "--store", store.url).exit_code == 0
    # Pruning again (nothing old left) keeps it valid; so does pruning everything.
    store.delete_old_executions(4_000.0)
    store.delete_old_executions(10.0**10)
    verdict = chain.verify(store)
    assert verdict.ok and verdict.checked >= 1


def test_deleting_the_checkpoint_after_prune_fails(store: Store, records: Records) -> None:
    _write(store, _runs(records, 2, started_at=1_000.0))
    _write(store, _runs(records, 1, started_at=5_000.0))
    store.delete_old_executions(4_000.0)
    head_seq, _ = chain.head(store)
    _sql(store.url, "DELETE FROM audit WHERE seq = ?", (head_seq,))
    result = _cli("verify", "--store", store.url)
    assert result.exit_code == 1 and "no checkpoint records their removal" in result.output


def test_export_is_json_lines_that_verify_alone(chained: Store, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    result = _cli("export", "--store", chained.url, "-o", str(out))
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 12
    first = json.loads(lines[0])
    assert first["hash"] == audit.chain_hash(audit.GENESIS, first["entry"])
    assert _cli("verify", "--file", str(out)).exit_code == 0
    out.write_text("\n".join([*lines[:3], *lines[4:]]) + "\n")
    broken = _cli("verify", "--file", str(out))
    assert broken.exit_code == 1 and "entry 4 is missing" in broken.output


@pytest.mark.slow
def test_two_processes_writing_at_once_leave_one_linear_chain(backend_url: str) -> None:
    setup = open_store(backend_url)
    setup.migrate()
    setup.close()
    workers = [
        subprocess.Popen([sys.executable, str(WORKER), backend_url, str(w), "40"]) for w in (1, 2)
    ]
    for p in workers:
        assert p.wait(timeout=120) == 0
    store = open_store(backend_url, create=False)
    try:
        verdict = chain.verify(store)
        assert verdict.ok, verdict.problem
        assert verdict.checked == 2 * 40 * 3 * 3  # 2 workers x 40 batches x 3 runs x 3 entries
    finally:
        store.close()


def test_writer_appends_when_enabled_and_not_otherwise(sqlite_url: str, records: Records) -> None:
    for enabled, expected in ((False, 0), (True, 4)):
        writer = BatchWriter(lambda: open_store(sqlite_url), audit=enabled, flush_interval=0.01)
        writer.submit(ExecutionFinished(records.execution(events=[records.llm(), records.tool()])))
        assert writer.flush()
        writer.close()
        store = open_store(sqlite_url)
        try:
            assert chain.head(store)[0] == expected
        finally:
            store.close()


@pytest.mark.parametrize("anchor", ["12", "x:abc", "0:" + "a" * 64, "3:" + "g" * 64])
def test_bad_anchor_is_one_line(sqlite_url: str, anchor: str) -> None:
    result = _cli("verify", "--store", sqlite_url, "--expect-head", anchor)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_canonical_form_is_stable_for_floats_and_keys() -> None:
    assert audit.canonical({"b": 0.1 + 0.2, "a": [1, 1e-300], "é": None}) == (
        '{"a":[1,"1e-300"],"b":"0.30000000000000004","é":null}'
    )

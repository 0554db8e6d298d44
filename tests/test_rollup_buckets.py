"""Histogram buckets stored per bucket (migration 7): reads, upgrades and folds stay exact.

Since migration 7 the rollup table keeps each bucket's own count, and only buckets that
received observations; `read_rollups` cumulates them. A store written by the previous
release holds cumulative rows for every bound: upgrading it must read back exactly what it
read before, and exactly what the same records written by this release read.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.model import ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBuilder, cumulative_rows, labels_text, resolve_rollups
from agentwatch.store import Store, open_store, schema
from agentwatch.store.base import _UPSERT_ROLLUP, RollupRow
from conftest import Records

Comparable = list[tuple[str, str, float, Any]]


def _batches(records: Records, seed: int = 7) -> list[list[WriterItem]]:
    """Three batches over a few agents, models and tools, durations across every bucket."""
    rng = random.Random(seed)
    batches: list[list[WriterItem]] = []
    t = 1_000.0
    for _ in range(3):
        items: list[WriterItem] = []
        for _ in range(40):
            t += 1.0
            duration = rng.choice([0.004, 0.03, 0.2, 0.7, 2.0, 9.0, 45.0, 700.0, 9_000.0])
            events = [
                records.llm(
                    started_at=t,
                    duration=rng.choice([0.05, 0.4, 3.0, 70.0]),
                    time_to_first_token=rng.choice([None, 0.02, 0.3, 4.0]),
                    model=rng.choice(["m1", "m2"]),
                ),
                records.tool(started_at=t, duration=rng.choice([0.001, 0.2, 12.0])),
            ]
            agent = rng.choice(["a", "b", "c"])
            items.append(ExecutionFinished(records.execution(agent, t, duration, events)))
        items.append(LateEvent(records.llm(started_at=t, duration=0.3, agent="a")))
        batches.append(items)
    return batches


def _comparable(rows: list[RollupRow]) -> Comparable:
    """Rows in one canonical order (label text), whatever the database's collation."""
    return sorted(
        (r.sample, labels_text(sorted(r.labels), [r.labels[k] for k in sorted(r.labels)]),
         r.value, r.exemplar)
        for r in rows
    )  # fmt: skip


def _write_like_the_previous_release(store: Store, items: list[WriterItem]) -> None:
    """What releases before migration 7 wrote: every bound of a touched histogram, cumulative."""
    batch = RollupBuilder(CardinalityGuard(1000)).build(items)
    rows, _ = resolve_rollups(batch, lambda sets: [True] * len(sets))
    stored = [(r[0], r[1], r[2], r[3:]) for r in rows]
    cumulative = [(s, k, v, *extra) for s, k, v, extra in cumulative_rows(stored, (None,) * 3)]
    with store.atomic() as cur:
        cur.executemany(store._sql(_UPSERT_ROLLUP), cumulative)


def _raw_rows(store: Store) -> list[RollupRow]:
    """The table as the previous release's `read_rollups` returned it (rows as stored)."""
    from agentwatch.rollups import parse_labels
    from agentwatch.store.base import Exemplar

    with store._read() as cur:
        cur.execute(
            "SELECT sample, labels, value, exemplar_execution_id, exemplar_value, "
            "exemplar_timestamp FROM rollups"
        )
        return [
            RollupRow(s, parse_labels(k), float(v), None if e is None else Exemplar(e, ev, et))
            for s, k, v, e, ev, et in cur.fetchall()
        ]


def test_an_old_store_upgrades_to_identical_rollups(
    backend_url: str, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = _batches(records)
    # Migrations as the previous release knew them (up to version 4).
    previous = tuple(m for m in schema.MIGRATIONS if m.version < 7)
    with monkeypatch.context() as patch, open_store(backend_url) as old:
        patch.setattr(schema, "MIGRATIONS", previous)
        old.migrate()
        for items in batches:
            _write_like_the_previous_release(old, items)
        before = _comparable(_raw_rows(old))
        assert old.schema_versions()[-1] < 7
    assert any(sample.endswith("_bucket") and value == 0 for sample, _, value, _ in before)

    with open_store(backend_url, create=False) as upgraded:
        upgraded.migrate()
        assert 7 in upgraded.schema_versions()
        after = _comparable(upgraded.read_rollups())
        stored = _raw_rows(upgraded)
    assert after == before
    # Per bucket now: no all-zero rows left, and fewer rows than bounds.
    buckets = [r for r in stored if r.sample.endswith("_bucket")]
    assert all(r.value > 0 for r in buckets)
    assert len(buckets) < sum(1 for s, *_ in before if s.endswith("_bucket"))


def test_this_release_reads_what_the_previous_one_wrote_for_the_same_records(
    backend_url: str, records: Records
) -> None:
    batches = _batches(records)
    with open_store(backend_url) as store:
        store.migrate()
        for items in batches:
            assert store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))
        got = _comparable(store.read_rollups())
    expected: dict[tuple[str, str], list[Any]] = {}
    for items in batches:  # the previous release's arithmetic, in memory
        batch = RollupBuilder(CardinalityGuard(1000)).build(items)
        rows, _ = resolve_rollups(batch, lambda sets: [True] * len(sets))
        stored = [(r[0], r[1], r[2], r[3:]) for r in rows]
        for sample, key, value, exemplar in cumulative_rows(stored, (None,) * 3):
            slot = expected.setdefault((sample, key), [0.0, None])
            slot[0] += value
            if exemplar[0] is not None and (slot[1] is None or exemplar[2] >= slot[1][2]):
                slot[1] = exemplar
    want = sorted(
        (s, k, v, None if e is None else (e[0], e[1], e[2])) for (s, k), (v, e) in expected.items()
    )
    assert [(s, k, v, None if e is None else (e.execution_id, e.value, e.timestamp))
            for s, k, v, e in got] == want  # fmt: skip


def test_every_bound_is_read_back_for_a_single_observation(
    sqlite_url: str, records: Records
) -> None:
    with open_store(sqlite_url) as store:
        store.migrate()
        store.write_batch(
            RollupBuilder(CardinalityGuard(10)).build(
                [ExecutionFinished(records.execution("solo", duration=3.0))]
            )
        )
        with store._read() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM rollups WHERE sample = "
                "'agentwatch_execution_duration_seconds_bucket'"
            )
            assert cur.fetchone()[0] == 1  # one bucket row written, not one per bound
        rows = [
            r for r in store.read_rollups()
            if r.sample == "agentwatch_execution_duration_seconds_bucket"
        ]  # fmt: skip
    from agentwatch import contract

    assert contract.EXECUTION_DURATION.buckets is not None
    assert len(rows) == len(contract.EXECUTION_DURATION.buckets) + 1
    by_le = {float(r.labels["le"]): r for r in rows}
    for bound, row in by_le.items():
        assert row.value == (1.0 if bound >= 3.0 else 0.0)
        assert (row.exemplar is not None) == (row.value == 1.0 and bound == min(
            b for b in by_le if b >= 3.0))  # fmt: skip
    assert by_le[float("inf")].value == 1.0


def test_unknown_bounds_keep_their_numeric_place() -> None:
    rows = [
        ("agentwatch_tool_call_duration_seconds_bucket", '{"le":"0.0123","tool":"t"}', 2.0, None),
        ("agentwatch_tool_call_duration_seconds_bucket", '{"le":"+Inf","tool":"t"}', 1.0, None),
    ]
    read = cumulative_rows(rows)
    values = {k: v for _, k, v, _ in read}
    assert values['{"le":"0.0123","tool":"t"}'] == 2.0
    assert values['{"le":"+Inf","tool":"t"}'] == 3.0
    assert values['{"le":"0.005","tool":"t"}'] == 0.0


def test_a_label_value_that_looks_like_a_bound_does_not_confuse_reading(
    sqlite_url: str, records: Records
) -> None:
    from agentwatch import contract

    hostile = 'a","le":"0.1'
    with open_store(sqlite_url) as store:
        store.migrate()
        store.write_batch(
            RollupBuilder(CardinalityGuard(10)).build(
                [ExecutionFinished(records.execution(hostile, duration=3.0))]
            )
        )
        rows = [
            r for r in store.read_rollups()
            if r.sample == "agentwatch_execution_duration_seconds_bucket"
        ]  # fmt: skip
    assert {r.labels["agent"] for r in rows} == {hostile}
    by_le = {float(r.labels["le"]): r.value for r in rows}
    assert len(by_le) == len(contract.EXECUTION_DURATION.buckets or ()) + 1
    assert all(v == (1.0 if le >= 3.0 else 0.0) for le, v in by_le.items())

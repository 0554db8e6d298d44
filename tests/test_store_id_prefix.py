"""Runs are found by any unique id prefix, as git finds commits, on SQLite and PostgreSQL.

`Store.resolve_execution_id` and `Store.unique_id_prefixes` are what `monitor trace` and a
narrow `monitor list` use (and the console can reuse). A prefix is text, never a pattern:
`%`, `_` and the escape character match only themselves; case matters; ids outside ASCII
work the same way on both backends.
"""

from __future__ import annotations

import pytest

from agentwatch.cardinality import CardinalityGuard
from agentwatch.errors import AmbiguousExecutionId, ExecutionNotFound
from agentwatch.model import ExecutionFinished
from agentwatch.rollups import RollupBuilder
from agentwatch.store import Store
from conftest import Records

IDS = (
    "exec_0123456789abcdef",
    "exec_0123456789abcdeg",
    "exec_0123456789ffff00",
    "exec_9f00",
    "execXsimilar",
    "EXEC_UPPER",
    "50%_off!",
    "50%X",
    "500_",
    "a!b",
    "aXb",
    "été-1",
    "été-2",
    "zz\U0010ffff",
    "short",
    "shortest",
)


@pytest.fixture
def filled(store: Store, records: Records) -> Store:
    items = [
        ExecutionFinished(records.execution(id=i, started_at=1_000.0 + n))
        for n, i in enumerate(IDS)
    ]
    store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))
    return store


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("exec_9", "exec_9f00"),
        ("exec_0123456789abcdeg", "exec_0123456789abcdeg"),
        ("exec_0123456789f", "exec_0123456789ffff00"),
        ("execX", "execXsimilar"),
        ("EXEC", "EXEC_UPPER"),
        ("50%_", "50%_off!"),
        ("500", "500_"),
        ("a!", "a!b"),
        ("été-2", "été-2"),
        ("zz", "zz\U0010ffff"),
        ("short", "short"),  # an exact id wins over the longer ids it starts
    ],
)
def test_a_unique_prefix_or_an_exact_id_resolves(filled: Store, prefix: str, expected: str) -> None:
    assert filled.resolve_execution_id(prefix) == expected


@pytest.mark.parametrize(
    ("prefix", "candidates"),
    [
        ("exec_0123456789abcde", ["exec_0123456789abcdef", "exec_0123456789abcdeg"]),
        ("50%", ["50%X", "50%_off!"]),
        ("été", ["été-1", "été-2"]),
        ("shor", ["short", "shortest"]),
    ],
)
def test_an_ambiguous_prefix_names_its_candidates(
    filled: Store, prefix: str, candidates: list[str]
) -> None:
    with pytest.raises(AmbiguousExecutionId) as raised:
        filled.resolve_execution_id(prefix)
    assert raised.value.candidates == candidates and not raised.value.more
    assert repr(prefix) in str(raised.value) and "more characters" in str(raised.value)


def test_many_matches_are_cut_to_the_candidates_asked_for(filled: Store) -> None:
    with pytest.raises(AmbiguousExecutionId) as raised:
        filled.resolve_execution_id("exec", candidates=2)
    assert len(raised.value.candidates) == 2 and raised.value.more
    assert str(raised.value).endswith("give more characters") and ", ...)" in str(raised.value)


@pytest.mark.parametrize(
    "prefix",
    [
        "exec_%",  # a wildcard to LIKE, text here
        "exec%",
        "exe_",  # `_` would match the `c`
        "a%b",
        "a_b",
        "a!!b",
        "exec_0123456789ABCDEF",  # case matters
        "ete",
        "nothing",
        "exec_0123456789abcdef0",  # longer than every id
    ],
)
def test_wildcards_case_and_strangers_find_nothing(filled: Store, prefix: str) -> None:
    with pytest.raises(ExecutionNotFound, match="no run has the ID or ID prefix"):
        filled.resolve_execution_id(prefix)


def test_ids_with_prefix_is_in_id_order_and_bounded(filled: Store) -> None:
    assert filled.ids_with_prefix("exec_0123456789", limit=10) == [
        "exec_0123456789abcdef",
        "exec_0123456789abcdeg",
        "exec_0123456789ffff00",
    ]
    assert filled.ids_with_prefix("exec_0123456789", limit=1) == ["exec_0123456789abcdef"]


def test_unique_prefixes_are_the_shortest_at_least_the_minimum(filled: Store) -> None:
    shown = filled.unique_id_prefixes(
        ["exec_0123456789abcdef", "exec_0123456789ffff00", "exec_9f00", "short", "été-1"],
        minimum=8,
    )
    assert shown == {
        "exec_0123456789abcdef": "exec_0123456789abcdef",  # differs from a twin in the last
        "exec_0123456789ffff00": "exec_0123456789f",
        "exec_9f00": "exec_9f0",
        "short": "short",  # a prefix of another id: only the whole id is unique
        "été-1": "été-1",
    }
    for execution_id, prefix in shown.items():
        assert filled.resolve_execution_id(prefix) == execution_id


CANONICAL = (
    "exec_01ab" + "0" * 28,
    "exec_01ab" + "f" * 28,
    "exec_01a0" + "0" * 28,
    "exec_01b0" + "0" * 28,
    "exec_" + "f" * 32,  # its stored form begins with the tag byte of other ids
    "exec_ff" + "0" * 30,
)


@pytest.fixture
def mixed(store: Store, records: Records) -> Store:
    """Canonical ids (stored as 16 bytes) next to other ids (stored tagged)."""
    items = [
        ExecutionFinished(records.execution(id=i, started_at=2_000.0 + n))
        for n, i in enumerate((*CANONICAL, *IDS))
    ]
    store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))
    return store


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("exec_01ab", [CANONICAL[0], CANONICAL[1]]),
        ("exec_01a", [CANONICAL[2], CANONICAL[0], CANONICAL[1]]),  # an odd number of digits
        (
            "exec_01",
            [IDS[0], IDS[1], IDS[2], CANONICAL[2], CANONICAL[0], CANONICAL[1], CANONICAL[3]],
        ),
        ("exec_f", [CANONICAL[5], CANONICAL[4]]),
        ("exec_ff", [CANONICAL[5], CANONICAL[4]]),
        ("exec_fff", [CANONICAL[4]]),
        ("exec_0123456789a", ["exec_0123456789abcdef", "exec_0123456789abcdeg"]),
        ("exec_9", ["exec_9f00"]),
        ("exec_01AB", []),
        ("exec_" + "f" * 33, []),
    ],
)
def test_canonical_and_other_ids_are_found_by_prefix_together(
    mixed: Store, prefix: str, expected: list[str]
) -> None:
    assert mixed.ids_with_prefix(prefix, limit=20) == expected
    assert mixed.ids_starting_with(prefix, limit=20) == expected
    assert expected == sorted(i for i in (*CANONICAL, *IDS) if i.startswith(prefix))


def test_every_id_is_found_by_the_empty_prefix_in_id_order(mixed: Store) -> None:
    everything = sorted((*CANONICAL, *IDS))
    assert mixed.ids_with_prefix("", limit=100) == everything
    assert mixed.ids_with_prefix("exec", limit=100) == [
        i for i in everything if i.startswith("exec")
    ]
    assert mixed.ids_starting_with("", limit=100) == []


def test_canonical_ids_resolve_from_any_unique_prefix(mixed: Store) -> None:
    assert mixed.resolve_execution_id("exec_01b") == CANONICAL[3]
    assert mixed.resolve_execution_id(CANONICAL[4]) == CANONICAL[4]
    with pytest.raises(AmbiguousExecutionId) as raised:
        mixed.resolve_execution_id("exec_01ab")
    assert raised.value.candidates == [CANONICAL[0], CANONICAL[1]]
    with pytest.raises(ExecutionNotFound):
        mixed.resolve_execution_id("exec_\ud800")  # no stored id can hold a lone surrogate
    assert mixed.execution("exec_\ud800") is None
    assert mixed.ids_with_prefix("exec_\ud800") == mixed.ids_starting_with("\ud800") == []


def test_prefix_lookups_are_index_ranges(mixed: Store) -> None:
    """The plan of the lookup is a range on the primary key, never a scan of the table."""
    from agentwatch.store import idcodec

    span = idcodec.prefix_ranges("exec_01a")[0]
    sql = (
        "SELECT id FROM executions WHERE id >= ? AND id < ? AND length(id) = 16 ORDER BY id LIMIT ?"
    )
    with mixed._read() as cur:
        if mixed.backend == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + sql, (span.low, span.high, 5))
            plan = " ".join(str(row[-1]) for row in cur.fetchall())
            assert "USING COVERING INDEX" in plan and "id>? AND id<?" in plan, plan
        else:
            # A tiny table: ask what the planner can do. A session setting, reset at once: the
            # read connection may not be in a transaction, where SET LOCAL does nothing.
            cur.execute("SET enable_seqscan = off")
            try:
                cur.execute("EXPLAIN " + mixed._sql(sql), (span.low, span.high, 5))
                plan = " ".join(str(row[0]) for row in cur.fetchall())
            finally:
                cur.execute("RESET enable_seqscan")
            # An index-only or a bitmap scan, by the table's statistics: a range on the key.
            assert "executions_pkey" in plan and "Seq Scan" not in plan, plan
            assert "Index Cond: ((id >=" in plan, plan

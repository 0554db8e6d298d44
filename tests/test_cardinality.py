"""The cardinality cap holds for the store as a whole, whoever writes to it.

Every writer (process, or store connection) asks the store, inside its own transaction,
which label sets it admits; past `max_label_sets` per metric, deltas fold into the
`__overflow__` series and the fold is counted in `agentwatch_cardinality_overflow_total`.
These tests use several real connections to real SQLite files and the real PostgreSQL
server, and several real processes for the end-to-end case (marked slow).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from agentwatch import cardinality, contract
from agentwatch.cardinality import CardinalityGuard
from agentwatch.errors import StoreError
from agentwatch.model import ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollups import RollupBatch, RollupBuilder, SelfDelta
from agentwatch.store import Store, open_store
from agentwatch.store.sqlite import SQLiteStore
from agentwatch.writer import BatchWriter
from conftest import Records

OVERFLOW = contract.OVERFLOW
EXECUTIONS = "agentwatch_executions_total"


def _write(
    store: Store, items: Iterable[WriterItem], cap: int, self_deltas: Iterable[SelfDelta] = ()
) -> RollupBatch:
    batch = RollupBuilder(CardinalityGuard(cap)).build(items, self_deltas)
    store.write_batch(batch)
    return batch


def _runs(records: Records, agents: Iterable[str]) -> list[WriterItem]:
    return [ExecutionFinished(records.execution(agent, events=[records.llm()])) for agent in agents]


def _series(store: Store, sample: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(row.labels.items())): row.value
        for row in store.read_rollups()
        if row.sample == sample
    }


def _is_overflow(labels: tuple[tuple[str, str], ...]) -> bool:
    return all(value == OVERFLOW for name, value in labels if name != "le")


def _label_sets_per_family(store: Store) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Distinct admitted (non-overflow) label sets per metric family, `le` ignored."""
    found: dict[str, set[tuple[tuple[str, str], ...]]] = defaultdict(set)
    for row in store.read_rollups():
        spec = contract.spec_for_sample(row.sample)
        assert spec is not None, row.sample
        labels = tuple(sorted((k, v) for k, v in row.labels.items() if k != "le"))
        if not _is_overflow(labels):
            found[spec.name].add(labels)
    return found


def _overflow_count(store: Store, metric: str) -> float:
    return _series(store, "agentwatch_cardinality_overflow_total").get((("metric", metric),), 0.0)


@pytest.fixture
def second_store(backend_url: str) -> Iterator[Store]:
    """Another connection to the same store: to the cap, a different process."""
    other = open_store(backend_url)
    other.migrate()
    yield other
    other.close()


@pytest.mark.slow
def test_the_cap_holds_across_writers_of_one_store(
    store: Store, second_store: Store, records: Records
) -> None:
    first = _write(store, _runs(records, (f"a-{i}" for i in range(300))), cap=500)
    second = _write(second_store, _runs(records, (f"b-{i}" for i in range(300))), cap=500)

    # llm_tokens has two label sets per agent (input, output): the first writer filled it
    assert first.overflow == {"agentwatch_llm_tokens": 100}
    assert second.overflow["agentwatch_executions"] == 100
    assert second.overflow["agentwatch_llm_tokens"] == 600
    families = _label_sets_per_family(store)
    for family in ("agentwatch_executions", "agentwatch_execution_duration_seconds",
                   "agentwatch_llm_requests", "agentwatch_llm_tokens"):  # fmt: skip
        assert len(families[family]) == 500, family
    executions = _series(store, EXECUTIONS)
    assert executions[(("agent", OVERFLOW), ("status", OVERFLOW))] == 100
    assert sum(executions.values()) == 600, "every run counted once, folded or not"
    assert _overflow_count(store, "agentwatch_executions") == 100
    # the 300 label sets of the first writer all stayed whole
    assert all(executions[(("agent", f"a-{i}"), ("status", "completed"))] == 1 for i in range(300))


def test_a_label_set_admitted_by_anyone_stays_admitted_when_the_store_is_full(
    store: Store, second_store: Store, backend_url: str, records: Records
) -> None:
    _write(store, _runs(records, ["x"]), cap=2)
    _write(second_store, _runs(records, ["y", "z"]), cap=2)  # z no longer fits

    third = open_store(backend_url)  # knows nothing yet: must ask the store
    try:
        third.migrate()
        batch = _write(third, _runs(records, ["x", "z", "y"]), cap=2)
    finally:
        third.close()
    executions = _series(store, EXECUTIONS)
    assert executions[(("agent", "x"), ("status", "completed"))] == 2
    assert executions[(("agent", "y"), ("status", "completed"))] == 2
    assert executions[(("agent", OVERFLOW), ("status", OVERFLOW))] == 2
    assert (("agent", "z"), ("status", "completed")) not in executions
    assert batch.overflow["agentwatch_executions"] == 1


def test_the_overflow_counter_obeys_the_cap_too(store: Store, records: Records) -> None:
    # cap 1: "a" takes the only place of every family; "b" folds in four families, whose
    # overflow counts need four label sets of agentwatch_cardinality_overflow: one fits.
    batch = _write(store, _runs(records, ["a", "b"]), cap=1)
    families = _label_sets_per_family(store)
    assert all(len(sets) <= 1 for sets in families.values()), families
    counts = _series(store, "agentwatch_cardinality_overflow_total")
    assert sum(counts.values()) == sum(batch.overflow.values()) > 0
    assert counts[(("metric", OVERFLOW),)] > 0


def test_every_family_stays_under_the_cap_and_every_observation_is_kept(
    store: Store, second_store: Store, records: Records
) -> None:
    stores = (store, second_store)
    calls = 0
    for round_no in range(6):
        agents = [f"agent-{round_no}-{i}" for i in range(15)]
        items: list[WriterItem] = _runs(records, agents)
        late = records.llm(execution_id=None, agent=f"late-{round_no}", model=f"m-{round_no}")
        items.append(LateEvent(late))
        calls += len(agents) + 1
        _write(stores[round_no % 2], items, cap=20)
    for family, sets in _label_sets_per_family(store).items():
        assert len(sets) <= 20, family
    requests_total = _series(store, "agentwatch_llm_requests_total")
    assert sum(requests_total.values()) == calls
    folded = requests_total[tuple((n, OVERFLOW) for n in ("agent", "model", "provider", "status"))]
    assert _overflow_count(store, "agentwatch_llm_requests") == folded == calls - 20


def test_hostile_label_values_are_plain_data(store: Store, records: Records) -> None:
    long_a = "p" * 128 + "-first"
    long_b = "p" * 128 + "-second"  # the same label set once cut to 128 characters
    hostile = ["x'); DROP TABLE rollups; --", 'quote " and \\ backslash', "new\nline", "é🙂",
               "?", "%s", long_a, long_b]  # fmt: skip
    _write(store, _runs(records, hostile), cap=7)
    executions = _series(store, EXECUTIONS)
    assert sum(executions.values()) == len(hostile)
    assert (("agent", "p" * 128), ("status", "completed")) in executions
    assert executions[(("agent", "p" * 128), ("status", "completed"))] == 2
    assert len([k for k in executions if not _is_overflow(k)]) == 7
    assert executions.get((("agent", OVERFLOW), ("status", OVERFLOW))) is None


def test_decided_label_sets_cost_no_query(tmp_path: Path, records: Records) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    store.migrate()
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        _write(store, _runs(records, ["a", "b", "c"]), cap=2)  # c is refused
        admission = [s for s in statements if "COUNT(*) FROM rollups" in s or "labels IN" in s]
        assert admission, "the first batch must ask the store"
        statements.clear()
        batch = _write(store, _runs(records, ["a", "c", "b", "c"]), cap=2)
        admission = [s for s in statements if "COUNT(*) FROM rollups" in s or "labels IN" in s]
        assert admission == []
        assert batch.overflow["agentwatch_executions"] == 2
    finally:
        store.close()


def test_a_rolled_back_batch_admits_nothing(tmp_path: Path, records: Records) -> None:
    path = tmp_path / "t.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    first.migrate()
    with sqlite3.connect(path) as db:  # the next batch fails after admitting "x"
        db.execute(
            "CREATE TRIGGER fail BEFORE INSERT ON meta BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    try:
        with pytest.raises(StoreError, match="boom"):
            _write(first, _runs(records, ["x"]), cap=1)
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER fail")
        _write(second, _runs(records, ["y"]), cap=1)  # the place "x" never took
        batch = _write(first, _runs(records, ["x"]), cap=1)
        assert batch.overflow["agentwatch_executions"] == 1
        assert set(_series(first, EXECUTIONS)) == {
            (("agent", "y"), ("status", "completed")),
            (("agent", OVERFLOW), ("status", OVERFLOW)),
        }
    finally:
        first.close()
        second.close()


def test_remembered_refusals_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cardinality, "_MAX_REMEMBERED_REFUSALS", 3)
    cache = cardinality.AdmissionCache()
    cache.remember([("s", f"k{i}", False) for i in range(10)] + [("s", "ok", True)], cap=5)
    remembered = [i for i in range(10) if cache.lookup("s", f"k{i}", 5) is False]
    assert 0 < len(remembered) <= 3
    assert cache.lookup("s", "ok", 5) is True
    assert cache.lookup("s", "k9", 6) is None, "a refusal under another cap proves nothing"


def test_clear_all_admits_label_sets_afresh(store: Store, records: Records) -> None:
    _write(store, _runs(records, ["a"]), cap=1)
    store.clear_all()
    batch = _write(store, _runs(records, ["b"]), cap=1)
    assert "agentwatch_executions" not in batch.overflow
    assert set(_series(store, EXECUTIONS)) == {(("agent", "b"), ("status", "completed"))}


def test_the_writer_counts_the_store_folds_in_its_self_metrics(
    backend_url: str, records: Records
) -> None:
    writer = BatchWriter(lambda: open_store(backend_url), max_label_sets=2, flush_interval=0.01)
    try:
        for agent in ("a", "b", "c", "d"):
            writer.submit(ExecutionFinished(records.execution(agent)))
        assert writer.flush(timeout=30)
        assert writer.stats.cardinality_overflow() == {
            "agentwatch_executions": 2,
            "agentwatch_execution_duration_seconds": 2,
        }
    finally:
        writer.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_postgresql_writers_never_overshoot_the_cap(
    postgres_url: str, records: Records
) -> None:
    threads, rounds, per_batch, cap = 6, 8, 4, 30
    stores = [open_store(postgres_url) for _ in range(threads)]
    stores[0].migrate()
    batches = {
        t: [_runs(records, (f"t{t}-r{r}-{i}" for i in range(per_batch))) for r in range(rounds)]
        for t in range(threads)
    }
    start = threading.Barrier(threads, timeout=30)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait()
            for items in batches[t]:
                _write(stores[t], items, cap=cap)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert errors == []
        families = _label_sets_per_family(stores[0])
        assert len(families["agentwatch_executions"]) == cap
        assert all(len(sets) <= cap for sets in families.values())
        executions = _series(stores[0], EXECUTIONS)
        assert sum(executions.values()) == threads * rounds * per_batch
        folded = executions[(("agent", OVERFLOW), ("status", OVERFLOW))]
        assert folded == threads * rounds * per_batch - cap
        assert _overflow_count(stores[0], "agentwatch_executions") == folded
    finally:
        for s in stores:
            s.close()


# -- several real processes, one store, one `agentwatch serve` ---------------------------------

WORKER = Path(__file__).with_name("_cardinality_worker.py")
PROCESSES, AGENTS_EACH, STRIDE, CAP = 4, 600, 300, 500


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_processes_share_one_cap_and_serve_exposes_it(backend_url: str, tmp_path: Path) -> None:
    from support.binaries import start_agentwatch_serve

    def argv(first: int) -> list[str]:
        return [sys.executable, str(WORKER), "--store", backend_url, "--cap", str(CAP),
                "--first", str(first), "--agents", str(AGENTS_EACH)]  # fmt: skip

    workers = [
        subprocess.Popen(
            argv(w * STRIDE), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for w in range(PROCESSES)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0 and out.strip() == "flushed True", err
    runs = PROCESSES * AGENTS_EACH
    distinct = (PROCESSES - 1) * STRIDE + AGENTS_EACH
    assert distinct > CAP

    with start_agentwatch_serve(backend_url, tmp_path / "serve") as serve:
        text = requests.get(serve.url + "/metrics", timeout=30).text
    sets: dict[str, set[frozenset[tuple[str, str]]]] = defaultdict(set)
    values: dict[str, dict[frozenset[tuple[str, str]], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items() if k != "le")
            sets[family.name].add(labels)
            if sample.name.endswith("_total"):
                values[sample.name][labels] = sample.value
    for name in ("agentwatch_executions", "agentwatch_llm_requests", "agentwatch_llm_tokens",
                 "agentwatch_execution_duration_seconds"):  # fmt: skip
        admitted = [s for s in sets[name] if not all(v == OVERFLOW for _, v in s)]
        assert len(sets[name]) == len(admitted) + 1, name  # plus the overflow series
        statuses = contract.ZERO_FILLED_STATUSES.get(name)
        if statuses is None:
            assert len(admitted) == CAP, name
            continue
        # Serve adds each admitted label set's other statuses at 0 (read time, not stored).
        stored = [s for s in admitted if values[name + "_total"][s] > 0]
        assert len(stored) == CAP, name
        zeros = [s for s in admitted if values[name + "_total"][s] == 0]
        assert len(zeros) == CAP * (len(statuses) - 1), name
    executions = values["agentwatch_executions_total"]
    assert sum(executions.values()) == runs
    assert sum(values["agentwatch_llm_requests_total"].values()) == runs
    folded = executions[frozenset({("agent", OVERFLOW), ("status", OVERFLOW)})]
    overflow = values["agentwatch_cardinality_overflow_total"]
    assert overflow[frozenset({("metric", "agentwatch_executions")})] == folded
    assert folded == runs - sum(v for k, v in executions.items() if ("agent", OVERFLOW) not in k)
    dropped = values.get("agentwatch_events_dropped_total", {})
    assert sum(dropped.values()) == 0


def test_reserving_a_place_admits_while_there_is_room_and_never_counts_a_fold() -> None:
    guard = CardinalityGuard(2)
    assert guard.admit("m", ("a", "completed")) == ("a", "completed")
    assert guard.reserve("m", ("a", "failed")) is True
    assert guard.reserve("m", ("b", "failed")) is False, "the cap is full"
    assert guard.overflow_counts() == {}, "nothing was observed, so nothing folded"
    assert guard.reserve("m", ("a", "failed")) is True, "a reserved label set stays admitted"
    assert guard.admit("m", ("a", "failed")) == ("a", "failed")
    assert guard.admit("m", ("b", "failed")) == (OVERFLOW, OVERFLOW)
    assert guard.overflow_counts() == {"m": 1}


def test_serve_completes_outcome_series_of_admitted_label_sets_only(
    store: Store, records: Records
) -> None:
    """The zeros are added at read time: they take no place in the store, so serve exposes
    at most one series per status for each label set the store admitted, plus the overflow."""
    from agentwatch.store_metrics import rollup_families

    cap = 4
    items: list[WriterItem] = [
        ExecutionFinished(records.execution(f"ok-{i}", started_at=1_000.0 + i)) for i in range(3)
    ]
    items += [
        ExecutionFinished(records.execution(f"ko-{i}", started_at=1_100.0 + i, error_type="E"))
        for i in range(3)
    ]
    _write(store, items, cap=cap)
    stored = _series(store, EXECUTIONS)
    family = next(f for f in rollup_families(store.read_rollups()) if f.name == EXECUTIONS[:-6])
    exposed = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
    admitted = {labels for labels in stored if not _is_overflow(labels)}
    assert len(admitted) == cap
    assert {k: v for k, v in exposed.items() if k in stored} == stored, "stored values as they are"
    zeros = {k: v for k, v in exposed.items() if k not in stored}
    assert set(zeros.values()) == {0.0}
    statuses = set(contract.EXECUTION_STATUSES)
    agents = {dict(labels)["agent"] for labels in admitted}
    assert set(zeros) == {
        (("agent", agent), ("status", status))
        for agent in agents
        for status in statuses
        if (("agent", agent), ("status", status)) not in stored
    }
    assert len(exposed) <= len(statuses) * cap + 1

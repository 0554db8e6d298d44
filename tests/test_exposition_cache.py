"""`/metrics` of `agentwatch serve` from the exposition cache: the same bytes, fewer renders.

Every body is compared byte for byte with what prometheus_client itself renders for the
`StoreCollector` of the same store (text format and OpenMetrics, exemplars, hostile label
values, budgets), before and after the store changes; real SQLite files and the real
PostgreSQL server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import requests
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics import exposition as om
from prometheus_client.parser import text_string_to_metric_families

from agentwatch.cardinality import CardinalityGuard
from agentwatch.config import Budget, Settings
from agentwatch.model import ExecutionFinished
from agentwatch.rollups import RollupBuilder, labels_text
from agentwatch.server import make_server, serve_in_thread
from agentwatch.server.collector import StoreCollector
from agentwatch.server.exposition_cache import (
    DEFAULT_MAX_AGE,
    ExpositionCache,
    RollupIndex,
    encoder_format,
)
from agentwatch.server.store_access import StoreAccess
from agentwatch.store import Store
from agentwatch.store.queries import StoredRollup
from conftest import Records

_om_latest: Callable[[Any], bytes] = om.generate_latest
NOW = 1_000.0 + 3600.0
HOSTILE = ['we"ird', "back\\slash", "new\nline", "ünï{c}=ode,", 'x\\"\n']
BUDGETS = [
    Budget(name="daily", period="day", limit_usd=4.0),
    Budget(name='q"uote\\d', period="month", limit_usd=1.0, agent=HOSTILE[0]),
]


def _write(store: Store, records: Records, agents: list[str], start: float = 1_000.0) -> None:
    items = []
    for i, agent in enumerate(agents):
        execution = records.execution(
            agent,
            started_at=start + i,
            duration=0.375 + i,
            events=[records.llm(started_at=start + i), records.tool(started_at=start + i)],
        )
        items.append(ExecutionFinished(execution))
    store.write_batch(RollupBuilder(CardinalityGuard(1000)).build(items))


def _reference(url: str, budgets: list[Budget]) -> tuple[bytes, bytes]:
    """What prometheus_client renders for the collector of the same store (text, OpenMetrics)."""
    access = StoreAccess(url)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(access, budgets, lambda: NOW))
    try:
        return generate_latest(registry), _om_latest(registry)
    finally:
        access.close()


def _counters(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        if family.type in ("counter", "histogram")
        for s in family.samples
    }


def test_bodies_are_byte_identical_to_prometheus_client_before_and_after_a_change(
    store: Store, records: Records, backend_url: str
) -> None:
    _write(store, records, ["plain", *HOSTILE])
    access = StoreAccess(backend_url)
    cache = ExpositionCache(access, BUDGETS, lambda: NOW)
    try:
        text, openmetrics = _reference(backend_url, BUDGETS)
        assert b'execution_id="' in openmetrics, "the OpenMetrics body carries exemplars"
        assert b'agent="we\\"ird"' in text and b'agent="new\\nline"' in text
        assert cache.render(False) == text
        assert cache.render(True) == openmetrics
        assert cache.render(False) == text, "served again from the cache"

        _write(store, records, ["plain", HOSTILE[1], "newcomer"], start=2_000.0)
        text2, openmetrics2 = _reference(backend_url, BUDGETS)
        assert text2 != text
        assert cache.render(True) == openmetrics2, "re-rendered incrementally after the write"
        assert cache.render(False) == text2
        assert cache.reads == 2, "one store read per change, shared by both formats"
    finally:
        access.close()


def test_an_unchanged_store_answers_from_the_cache_and_a_write_invalidates_it(
    store: Store, records: Records, backend_url: str
) -> None:
    _write(store, records, ["a", "b"])
    access = StoreAccess(backend_url)
    cache = ExpositionCache(access, BUDGETS, lambda: NOW)
    try:
        first = cache.render(False)
        assert cache.render(False) == first
        assert (cache.renders, cache.reads) == (1, 1)

        _write(store, records, ["a"], start=1_500.0)
        second = cache.render(False)
        assert (cache.renders, cache.reads) == (2, 2)
        before, after = _counters(first), _counters(second)
        assert set(before) <= set(after)
        assert all(after[k] >= v for k, v in before.items()), "counters never go backwards"
        assert any(after[k] > v for k, v in before.items()), "the write is visible"

        store.clear_all()
        assert b'agent="a"' not in cache.render(False), "a reset is a change too"
    finally:
        access.close()


def test_a_cached_body_is_rendered_again_after_max_age(
    store: Store, records: Records, backend_url: str
) -> None:
    _write(store, records, ["a"])
    access = StoreAccess(backend_url)
    tick = [0.0]
    cache = ExpositionCache(access, (), lambda: NOW, max_age=60.0, monotonic=lambda: tick[0])
    try:
        cache.render(False)
        tick[0] = 59.0
        cache.render(False)
        assert cache.reads == 1
        tick[0] = 61.0
        cache.render(False)
        assert cache.reads == 2
    finally:
        access.close()


class _WatchedLock:
    """A lock that reports when a second caller starts waiting for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts = 0
        self.second_waiting = threading.Event()

    def __enter__(self) -> None:
        self.attempts += 1
        if self.attempts == 2:
            self.second_waiting.set()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_concurrent_scrapes_share_one_render(
    store: Store, records: Records, backend_url: str
) -> None:
    _write(store, records, ["a", "b"])
    entered, release = threading.Event(), threading.Event()

    def opener(url: str) -> Store:
        from agentwatch.store import open_store

        opened = open_store(url, create=False)
        real: Callable[[], Any] = opened.stored_rollups

        def slow_read() -> Any:
            entered.set()
            release.wait(30)
            return real()

        opened.stored_rollups = slow_read  # type: ignore[method-assign]
        return opened

    access = StoreAccess(backend_url, opener=opener)
    cache = ExpositionCache(access, (), lambda: NOW)
    lock = _WatchedLock()
    cache._lock = lock  # type: ignore[assignment]
    bodies: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: bodies.append(cache.render(False))) for _ in range(2)
    ]
    try:
        threads[0].start()
        assert entered.wait(30), "the first scrape reads the store"
        threads[1].start()
        assert lock.second_waiting.wait(30), "the second scrape arrives during the render"
        release.set()
        for thread in threads:
            thread.join(30)
        assert len(bodies) == 2 and bodies[0] == bodies[1]
        assert (cache.renders, cache.reads) == (1, 1)
    finally:
        release.set()
        access.close()


def test_a_store_that_fails_reports_down_like_the_collector(tmp_path: Any) -> None:
    def broken(url: str) -> Store:
        raise OSError("disk gone")

    access = StoreAccess("sqlite:///nowhere.db", opener=broken)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(access, BUDGETS, lambda: NOW))
    cache = ExpositionCache(access, BUDGETS, lambda: NOW)
    assert cache.render(False) == generate_latest(registry)
    assert cache.render(True) == _om_latest(registry)
    assert b"agentwatch_store_up 0.0" in cache.render(False)


def test_only_formats_rendered_identically_are_served_from_the_cache() -> None:
    assert encoder_format(choose_encoder("")[0]) is False
    assert encoder_format(choose_encoder("application/openmetrics-text")[0]) is True
    prometheus3 = (
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
        "text/plain;version=0.0.4;q=0.3"
    )
    assert encoder_format(choose_encoder(prometheus3)[0]) is True
    assert encoder_format(partial(om.generate_latest, escaping=om.DOTS)) is None
    assert encoder_format(partial(om.generate_latest, version="2.0.0")) is None


def test_serve_answers_scrapes_from_the_cache(
    store: Store, records: Records, backend_url: str
) -> None:
    _write(store, records, ["a", *HOSTILE])
    server = make_server(
        Settings(store_url=backend_url, budgets=tuple(BUDGETS)),
        host="127.0.0.1",
        port=0,
        clock=lambda: NOW,
    )
    serve_in_thread(server)
    try:
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        first = requests.get(server.url + "/metrics", headers=accept, timeout=30)
        again = requests.get(server.url + "/metrics", headers=accept, timeout=30)
        assert first.headers["Content-Type"].startswith("application/openmetrics-text")
        assert first.content == again.content == _om_latest(server.registry)
        assert server.exposition is not None and server.exposition.renders == 1
        _write(store, records, ["a"], start=1_500.0)
        text = requests.get(server.url + "/metrics", timeout=30)
        assert text.content == generate_latest(server.registry)
        assert server.exposition.renders == 2
    finally:
        server.shutdown()


def test_attribution_labels_are_rendered_as_the_collector_renders_them(
    backend_url: str, store: Store
) -> None:
    """Attributed counters carry their dimension labels (team=...) in the cached body too."""
    import agentwatch

    agentwatch.configure(
        registry=CollectorRegistry(),
        store_url=backend_url,
        attribution={"team": {"max_values": 10}},
    )
    try:
        with agentwatch.track("job", team="search"):
            agentwatch.record_llm_call("m", provider="p", input_tokens=1, cost_usd=0.5)
        assert agentwatch.flush(timeout=30)
        access = StoreAccess(backend_url)
        cache = ExpositionCache(access, [], lambda: NOW)
        try:
            text, openmetrics = _reference(backend_url, [])
            assert b'team="search"' in text
            assert cache.render(False) == text
            assert cache.render(True) == openmetrics
            # A second team adds no dimension; a run without a team shows team="".
            with agentwatch.track("job", team="ads"):
                agentwatch.record_llm_call("m", provider="p", input_tokens=1, cost_usd=0.25)
            agentwatch.record_llm_call("m", provider="p", input_tokens=1, cost_usd=0.125)
            assert agentwatch.flush(timeout=30)
            text2, openmetrics2 = _reference(backend_url, [])
            assert cache.render(False) == text2 and b'team="ads"' in text2
            assert cache.render(True) == openmetrics2
        finally:
            access.close()
    finally:
        agentwatch.close(timeout=5)


_COLUMNS = "sample, labels, value, exemplar_execution_id, exemplar_value, exemplar_timestamp"


def _store_rows(store: Store, rows: list[tuple[Any, ...]]) -> None:
    """Rows put in the rollup table as they are (what another writer or a repair may leave)."""
    with store.atomic() as cur:
        for row in rows:
            padded = (*row, None, None, None)[:6]
            cur.execute(
                store._sql(f"INSERT INTO rollups ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"), padded
            )


def _sql(store: Store, sql: str, *params: Any) -> None:
    with store.atomic() as cur:
        cur.execute(store._sql(sql), params)


class _Checked:
    """A cache whose every body is compared with prometheus_client's for the same store."""

    def __init__(self, url: str, budgets: list[Budget]) -> None:
        self.url, self.budgets, self.tick = url, budgets, [0.0]
        self.access = StoreAccess(url)
        self.cache = ExpositionCache(
            self.access, budgets, lambda: NOW, monotonic=lambda: self.tick[0]
        )

    def check(self, why: str) -> bytes:
        text, openmetrics = _reference(self.url, self.budgets)
        assert self.cache.render(True) == openmetrics, why
        assert self.cache.render(False) == text, why
        return text

    def after_repair(self, why: str) -> bytes:
        """A change made behind the writers' back is seen once the body is max_age old."""
        self.tick[0] += DEFAULT_MAX_AGE + 1
        return self.check(why)


def test_every_kind_of_change_renders_as_prometheus_client_does(
    store: Store, records: Records, backend_url: str
) -> None:
    _write(store, records, ["plain", *HOSTILE])
    checked = _Checked(backend_url, BUDGETS)
    try:
        first = checked.check("cold")
        reads = checked.cache.reads

        # One run without calls: its counter and one duration bucket (plus sum and count).
        one = records.execution("plain", started_at=3_000.0, duration=0.375)
        store.write_batch(RollupBuilder(CardinalityGuard(1000)).build([ExecutionFinished(one)]))
        second = checked.check("one histogram bucket changed")
        assert checked.cache.reads == reads + 1
        changed = set(second.splitlines()) - set(first.splitlines())
        assert any(b'_bucket{agent="plain",le="0.5"}' in line for line in changed)

        # A format not scraped for a while still gets every change made meanwhile.
        _write(store, records, ["plain"], start=3_500.0)
        checked.cache.render(False)
        _write(store, records, [HOSTILE[0]], start=3_600.0)
        checked.cache.render(False)
        checked.check("two writes, only the text format scraped after each")

        # New label sets, hostile everywhere a label value can come from.
        hostile = 'nëw "one"\\\n,}'
        run = records.execution(
            hostile,
            started_at=4_000.0,
            events=[
                records.llm(started_at=4_000.0, model=hostile, provider="p\\q"),
                records.tool(started_at=4_000.0, name='t"\n'),
            ],
        )
        store.write_batch(RollupBuilder(CardinalityGuard(1000)).build([ExecutionFinished(run)]))
        assert b'agent="n\xc3\xabw \\"one\\"\\\\\\n,}"' in checked.check("new hostile label sets")

        store.clear_all()
        assert b'agent="plain"' not in checked.check("a reset")
        _write(store, records, ["after", HOSTILE[2]], start=5_000.0)
        assert b'agent="after"' in checked.check("written again after the reset")
    finally:
        checked.access.close()


def test_odd_stored_rows_render_as_prometheus_client_does(
    store: Store, records: Records, backend_url: str
) -> None:
    """Rows the writer does not produce but a store may hold: a bound the contract does not
    know, label texts spelled differently for one series, extra, numeric or repeated labels,
    a sum without buckets, unknown samples, an exemplar id too long to expose."""
    _write(store, records, ["plain"])
    hist = "agentwatch_execution_duration_seconds_bucket"
    long_id = "exec_" + "x" * 200
    _store_rows(
        store,
        [
            (hist, '{"agent":"odd","le":"0.3"}', 2.0, "exec_odd03", 0.3, 1_000.0),
            (hist, '{"agent":"odd","le":"0.5"}', 1.0, "exec_odd05", 0.4, 1_001.0),
            (hist, '{"agent":"odd","le":"0.50"}', 5.0, "exec_odd050", 0.45, 1_002.0),
            (hist, '{"agent":"tw\\u00efn","le":"1.0"}', 3.0, "exec_twin1", 0.9, 1_000.0),
            (hist, '{"agent":"twïn","le":"0.5"}', 4.0, "exec_twin2", 0.2, 1_000.0),
            (hist, '{"agent":"long","le":"0.5"}', 1.0, long_id, 0.2, 1_000.0),
            (hist, '{"agent":"extra","le":"0.5","zone":"z"}', 1.0, "exec_zone", 0.2, 1_000.0),
            (hist, '{"agent":"odd","le":"2.5","zone":"z"}', 1.0, "exec_oddzone", 2.0, 1_000.0),
            (hist, '{"agent":"twice","le":"0.5","le":"5.0"}', 1.0, "exec_twice", 0.2, 1_000.0),
            ("agentwatch_execution_duration_seconds_sum", '{"agent":"sumonly"}', 3.0),
            ("agentwatch_execution_duration_seconds_sum", '{"agent":"tw\\u00efn"}', 1.5),
            ("agentwatch_execution_duration_seconds_sum", '{"agent":"twïn"}', 2.5),
            ("agentwatch_executions_total", '{"agent":"dup","status":"completed"}', 1.0),
            (
                "agentwatch_executions_total",
                '{"agent":"dup","bad-name":"x","status":"completed"}',
                2.5,
            ),
            (
                "agentwatch_executions_total",
                '{"agent":"\\u00e9t\\u00e9","status":"completed"}',
                1.0,
            ),
            ("agentwatch_executions_total", '{"agent":"été","status":"completed"}', 0.25),
            ("agentwatch_executions_total", '{"agent":7,"status":"completed"}', 4.0),
            ("agentwatch_future_total", '{"agent":"plain"}', 9.0),
        ],
    )
    checked = _Checked(backend_url, [])
    try:
        body = checked.check("cold")
        assert b'agent="\xc3\xa9t\xc3\xa9"' in body and b'agent="7"' in body
        assert b"sumonly" not in body and b"future" not in body

        _sql(store, "UPDATE rollups SET value = 7.0 WHERE labels = ?", '{"agent":"odd","le":"0.3"}')
        _sql(
            store,
            "UPDATE rollups SET value = 3.0 WHERE labels = ?",
            '{"agent":"dup","status":"completed"}',
        )
        checked.after_repair("odd rows changed")

        # An attribution dimension appearing renames every series of its family ...
        _store_rows(
            store,
            [
                (
                    "agentwatch_llm_cost_usd_total",
                    '{"agent":"plain","model":"gpt-4o-mini","provider":"openai","region":"eu"}',
                    0.5,
                ),
            ],
        )
        assert b'region="eu"' in checked.after_repair("a dimension appeared")
        # ... and so does its going; so does a row of a series going (no reset marker).
        _sql(store, "DELETE FROM rollups WHERE labels LIKE ?", '%"region":"eu"%')
        _sql(store, "DELETE FROM rollups WHERE labels = ?", '{"agent":"twïn","le":"0.5"}')
        assert b"region" not in checked.after_repair("rows deleted")
    finally:
        checked.access.close()


def test_a_label_text_that_cannot_be_read_reports_the_store_down_until_repaired(
    store: Store, records: Records, backend_url: str
) -> None:
    _write(store, records, ["plain"])
    checked = _Checked(backend_url, BUDGETS)
    try:
        checked.check("cold")
        _store_rows(store, [("agentwatch_executions_total", '{"agent":', 1.0)])
        assert b"agentwatch_store_up 0.0" in checked.after_repair("a broken label text")
        _sql(store, "DELETE FROM rollups WHERE labels = ?", '{"agent":')
        assert b'agent="plain"' in checked.after_repair("repaired")
    finally:
        checked.access.close()


def test_the_index_sees_only_rows_that_changed_whatever_their_order() -> None:
    """PostgreSQL returns an updated row elsewhere in the table: a moved row is no change."""
    rows: list[StoredRollup] = [
        (
            "agentwatch_executions_total",
            labels_text(("agent", "status"), (f"a{i}", "ok")),
            1.0,
            None,
            None,
            None,
        )
        for i in range(50)
    ]
    rows.append(
        (
            "agentwatch_execution_duration_seconds_bucket",
            '{"agent":"a1","le":"0.5"}',
            2.0,
            "exec_1",
            0.4,
            9.0,
        )
    )
    index = RollupIndex()
    index.update(rows)
    assert index.take_dirty(False) == set()
    assert len(index.groups) == 51

    index.update(list(reversed(rows)))
    assert index.take_dirty(False) == set(), "the same rows in another order"

    moved = list(reversed(rows))
    at = next(i for i, row in enumerate(moved) if '"a39"' in row[1])
    moved[at] = (*moved[at][:2], 5.0, *moved[at][3:])
    moved.append(moved.pop(at))  # updated and moved to the end
    index.update(moved)
    changed = ("agentwatch_executions", ("a39", "ok"))
    assert index.take_dirty(False) == {changed}
    assert index.take_dirty(True) == {changed}, "each format gets the change once"
    assert index.take_dirty(True) == set()

    bucket = list(moved)
    bucket[0] = (*bucket[0][:3], "exec_2", 0.45, 10.0)  # only the exemplar changed
    index.update(bucket)
    histogram = ("agentwatch_execution_duration_seconds", ("a1",))
    assert index.take_dirty(False) == {histogram}

    again = list(bucket)
    at = next(i for i, row in enumerate(again) if '"a49"' in row[1])
    again[at] = (*again[at][:2], 6.0, *again[at][3:])
    index.update(again)
    assert index.take_dirty(False) == {("agentwatch_executions", ("a49", "ok"))}
    assert index.take_dirty(True) == {histogram, ("agentwatch_executions", ("a49", "ok"))}, (
        "a format not scraped in between still gets every change"
    )

    index.update(again[1:])
    assert ("agentwatch_execution_duration_seconds", ("a1",)) not in index.groups


def _lines_of(body: bytes, prefix: bytes) -> list[bytes]:
    return [line for line in body.splitlines() if line.startswith(prefix)]


def test_outcome_series_completed_at_zero_render_as_prometheus_client_does(
    store: Store, records: Records, backend_url: str
) -> None:
    """A new agent's failed series is exposed at 0 from its first run, then replaced in place
    by the stored row when the first failure is written: one line, never going down."""
    builder = RollupBuilder(CardinalityGuard(1000))
    first = records.execution("fresh", started_at=1_000.0, events=[records.llm()])
    store.write_batch(builder.build([ExecutionFinished(first)]))
    checked = _Checked(backend_url, [])
    failed = b'agentwatch_executions_total{agent="fresh",status="failed"} '
    call = b'agentwatch_llm_requests_total{agent="fresh",model="gpt-4o-mini",provider="openai",'
    try:
        body = checked.check("cold: the zeros are rendered as the collector completes them")
        assert _lines_of(body, failed) == [failed + b"0.0"]
        assert _lines_of(body, call + b'status="failure"} ') == [call + b'status="failure"} 0.0']

        # A write of another agent only: the zeros of "fresh" stay, new ones appear.
        other = records.execution("other", started_at=1_100.0)
        store.write_batch(builder.build([ExecutionFinished(other)]))
        body = checked.check("a new label set with its zero, incrementally")
        assert _lines_of(body, failed) == [failed + b"0.0"]
        assert b'agentwatch_executions_total{agent="other",status="failed"} 0.0' in body

        # The first failure: the zero becomes the stored row, in place.
        boom = records.execution(
            "fresh",
            started_at=1_200.0,
            error_type="ValueError",
            events=[records.llm(status="failure", error_type="RateLimitError")],
        )
        store.write_batch(builder.build([ExecutionFinished(boom)]))
        body = checked.check("the zero replaced by its stored row")
        assert _lines_of(body, failed) == [failed + b"1.0"], "one line, from 0 to 1"
        assert _lines_of(body, call + b'status="failure"} ') == [call + b'status="failure"} 1.0']
        before = _counters(body)

        # An agent whose first run fails gets its completed series at 0.
        unlucky = records.execution("unlucky", started_at=1_300.0, error_type="E")
        store.write_batch(builder.build([ExecutionFinished(unlucky)]))
        body = checked.check("a failure first: the completed series at 0")
        assert b'agentwatch_executions_total{agent="unlucky",status="completed"} 0.0' in body
        after = _counters(body)
        assert all(after[k] >= v for k, v in before.items()), "counters never go down"

        # An attribution dimension appearing regroups everything, zeros included.
        _store_rows(
            store,
            [
                (
                    "agentwatch_executions_total",
                    '{"agent":"teamed","status":"completed","team":"search"}',
                    1.0,
                )
            ],
        )
        body = checked.after_repair("a dimension appeared")
        teamed = b'agentwatch_executions_total{agent="teamed",status="failed",team="search"} 0.0'
        assert teamed in body
        assert b'agentwatch_executions_total{agent="fresh",status="failed",team=""} 1.0' in body

        store.clear_all()
        body = checked.check("a reset takes the zeros with their siblings")
        assert b"agentwatch_executions_total{" not in body
    finally:
        checked.access.close()


def test_the_overflow_series_and_unknown_statuses_get_no_zero_series(
    store: Store, records: Records, backend_url: str
) -> None:
    runs = [ExecutionFinished(records.execution(f"a{i}", started_at=1_000.0 + i)) for i in range(3)]
    store.write_batch(RollupBuilder(CardinalityGuard(2)).build(runs))  # a2 folds
    _store_rows(store, [("agentwatch_executions_total", '{"agent":"x","status":"ok"}', 1.0)])
    checked = _Checked(backend_url, [])
    try:
        body = checked.check("cold")
        series = _lines_of(body, b"agentwatch_executions_total{")
        assert sorted(series) == sorted(
            [
                b'agentwatch_executions_total{agent="__overflow__",status="__overflow__"} 1.0',
                b'agentwatch_executions_total{agent="a0",status="completed"} 1.0',
                b'agentwatch_executions_total{agent="a0",status="failed"} 0.0',
                b'agentwatch_executions_total{agent="a1",status="completed"} 1.0',
                b'agentwatch_executions_total{agent="a1",status="failed"} 0.0',
                b'agentwatch_executions_total{agent="x",status="ok"} 1.0',
            ]
        )
        store.clear_all()
        assert b"agentwatch_executions_total{" not in checked.check("a reset, no regroup")
    finally:
        checked.access.close()

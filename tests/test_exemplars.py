"""Exemplars from the store: each histogram bucket keeps the latest execution observed in it.

The writer stores them with the rollups (real SQLite files, the real PostgreSQL server),
`read_rollups()` returns them, `rollup_exemplars.attach_exemplars` puts them on the bucket
samples `agentwatch serve` exposes, and the OpenMetrics exposition carries them as
`# {execution_id="..."} value timestamp`. The slow test has a real Prometheus with
exemplar storage scrape a real `agentwatch serve` and return them from its API.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

import agentwatch
from agentwatch.cardinality import CardinalityGuard
from agentwatch.config import Settings
from agentwatch.model import ExecutionFinished, LateEvent, WriterItem
from agentwatch.rollup_exemplars import attach_exemplars
from agentwatch.rollups import RollupBuilder
from agentwatch.server import make_server, rollup_families, serve_in_thread
from agentwatch.store import Store
from agentwatch.store.base import Exemplar, RollupRow
from conftest import Records

EXEC_BUCKET = "agentwatch_execution_duration_seconds_bucket"
LLM_BUCKET = "agentwatch_llm_request_duration_seconds_bucket"
TTFT_BUCKET = "agentwatch_llm_time_to_first_token_seconds_bucket"
TOOL_BUCKET = "agentwatch_tool_call_duration_seconds_bucket"
GPT = {"model": "gpt-4o-mini", "provider": "openai"}


def _write(store: Store, *items: WriterItem, cap: int = 1000) -> None:
    store.write_batch(RollupBuilder(CardinalityGuard(cap)).build(items))


def _exemplars(store: Store) -> dict[tuple[str, frozenset[tuple[str, str]]], Exemplar]:
    return {
        (row.sample, frozenset(row.labels.items())): row.exemplar
        for row in store.read_rollups()
        if row.exemplar is not None
    }


def _key(sample: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return sample, frozenset(labels.items())


def test_each_bucket_keeps_the_latest_execution_observed_in_it(
    store: Store, records: Records
) -> None:
    # Durations exact in binary, so values and timestamps compare exactly.
    early = records.execution("a", started_at=1000.0, duration=0.375)  # bucket 0.5
    late = records.execution("a", started_at=1001.0, duration=0.4375)  # bucket 0.5, later
    slow = records.execution("a", started_at=999.0, duration=7.0)  # bucket 10
    _write(store, ExecutionFinished(late), ExecutionFinished(early), ExecutionFinished(slow))

    found = _exemplars(store)
    assert found == {
        _key(EXEC_BUCKET, agent="a", le="0.5"): Exemplar(late.id, 0.4375, 1001.4375),
        _key(EXEC_BUCKET, agent="a", le="10.0"): Exemplar(slow.id, 7.0, 1006.0),
    }, "only the bucket an observation falls in carries it, not the cumulative ones above"


def test_an_older_observation_never_replaces_a_newer_exemplar(
    store: Store, records: Records
) -> None:
    newer = records.execution("a", started_at=2000.0, duration=0.375)
    older = records.execution("a", started_at=1500.0, duration=0.4375)
    newest = records.execution("a", started_at=3000.0, duration=0.3125)
    bucket = _key(EXEC_BUCKET, agent="a", le="0.5")

    _write(store, ExecutionFinished(newer))
    _write(store, ExecutionFinished(older))  # e.g. a process whose queue was behind
    assert _exemplars(store)[bucket] == Exemplar(newer.id, 0.375, 2000.375)
    _write(store, ExecutionFinished(newest))
    assert _exemplars(store)[bucket] == Exemplar(newest.id, 0.3125, 3000.3125)
    rows = {(r.sample, frozenset(r.labels.items())): r.value for r in store.read_rollups()}
    assert rows[bucket] == 3, "the counts add up whichever exemplar is kept"


def test_calls_name_their_execution_and_calls_outside_any_have_none(
    store: Store, records: Records
) -> None:
    llm = records.llm(started_at=1000.0, duration=0.75, time_to_first_token=0.1875)
    tool = records.tool(started_at=1001.0, duration=0.03125)
    run = records.execution("a", started_at=1000.0, duration=2.0, events=[llm, tool])
    late = records.llm(started_at=1010.0, duration=3.0, execution_id="exec_late", agent="a")
    orphan = records.llm(started_at=1020.0, duration=12.0, execution_id=None)
    _write(store, ExecutionFinished(run), LateEvent(late), LateEvent(orphan))

    found = _exemplars(store)
    assert found[_key(LLM_BUCKET, le="1.0", **GPT)] == Exemplar(run.id, 0.75, 1000.75)
    assert found[_key(TTFT_BUCKET, le="0.2", **GPT)] == Exemplar(run.id, 0.1875, 1000.1875)
    assert found[_key(TOOL_BUCKET, tool="search", le="0.05")] == Exemplar(
        run.id, 0.03125, 1001.03125
    )
    assert found[_key(LLM_BUCKET, le="4.0", **GPT)] == Exemplar("exec_late", 3.0, 1013.0)
    assert _key(LLM_BUCKET, le="15.0", **GPT) not in found, "an orphan call has no run to link"
    assert all(sample.endswith("_bucket") for sample, _ in found), "counters carry none"


def test_folded_label_sets_bring_their_exemplars_to_the_overflow_series(
    store: Store, records: Records
) -> None:
    first = records.execution("a", started_at=1000.0, duration=0.375)
    folded = records.execution("b", started_at=1000.0, duration=7.0)
    _write(store, ExecutionFinished(first), ExecutionFinished(folded), cap=1)
    found = _exemplars(store)
    assert found[_key(EXEC_BUCKET, agent="__overflow__", le="10.0")].execution_id == folded.id
    assert found[_key(EXEC_BUCKET, agent="a", le="0.5")].execution_id == first.id


class _Rows(Collector):
    def __init__(self, rows: Iterable[RollupRow]) -> None:
        self._rows = list(rows)

    def collect(self) -> Iterator[Metric]:
        yield from attach_exemplars(rollup_families(self._rows), self._rows)


def _registry(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Rows(store.read_rollups()))
    return registry


def test_openmetrics_carries_bucket_exemplars_and_the_text_format_does_not(
    store: Store, records: Records
) -> None:
    early = records.execution("a", started_at=1000.0, duration=0.375)
    late = records.execution("a", started_at=1001.0, duration=0.4375)
    _write(store, ExecutionFinished(early), ExecutionFinished(late))
    registry = _registry(store)

    openmetrics = generate_openmetrics(registry).decode()
    bucket_lines = [
        line for line in openmetrics.splitlines() if line.startswith(EXEC_BUCKET + '{agent="a"')
    ]
    assert bucket_lines[2:5] == [
        'agentwatch_execution_duration_seconds_bucket{agent="a",le="0.25"} 0.0',
        f'agentwatch_execution_duration_seconds_bucket{{agent="a",le="0.5"}} 2.0 '
        f'# {{execution_id="{late.id}"}} 0.4375 1001.4375',
        'agentwatch_execution_duration_seconds_bucket{agent="a",le="1.0"} 2.0',
    ]
    assert " # {" not in generate_latest(registry).decode()


def test_hostile_execution_ids_are_escaped_or_left_out(store: Store, records: Records) -> None:
    hostile = 'exec_"quote"\\back\nline-é'
    too_long = "exec_" + "x" * 200
    _write(
        store,
        ExecutionFinished(records.execution("a", duration=0.375, id=hostile)),
        ExecutionFinished(records.execution("b", duration=0.375, id=too_long)),
    )
    text = generate_openmetrics(_registry(store)).decode()

    exemplars = {
        sample.labels["agent"]: sample.exemplar
        for family in text_string_to_metric_families(text)  # the strict OpenMetrics parser
        for sample in family.samples
        if sample.name == EXEC_BUCKET and sample.exemplar is not None
    }
    assert exemplars["a"].labels == {"execution_id": hostile}
    assert "b" not in exemplars, "longer than OpenMetrics allows: the bucket goes without"


@pytest.fixture
def served_store(backend_url: str) -> Iterator[str]:
    agentwatch.configure(store_url=backend_url)
    yield backend_url
    agentwatch.close()


def test_serve_exposes_the_exemplars_of_real_runs(served_store: str) -> None:
    @agentwatch.observe(name="planner")
    def planner() -> None:
        agentwatch.record_llm_call("gpt-4o-mini", provider="openai", duration=0.75)

    planner()
    assert agentwatch.flush(timeout=10)
    ids = {r["id"] for r in agentwatch.EventStore(served_store).get_executions()}

    server = make_server(Settings(store_url=served_store), port=0)
    serve_in_thread(server)
    try:
        url = server.url + "/metrics"
        openmetrics = requests.get(
            url, headers={"Accept": "application/openmetrics-text"}, timeout=10
        ).text
        plain = requests.get(url, timeout=10).text
    finally:
        server.shutdown()
        server.server_close()
        server.access.close()
    linked = {
        sample.exemplar.labels["execution_id"]
        for family in text_string_to_metric_families(openmetrics)
        for sample in family.samples
        if sample.exemplar is not None
    }
    assert linked == ids and len(ids) == 1
    assert "# {execution_id=" not in plain


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_prometheus_stores_the_exemplars_serve_exposes(tmp_path: Path) -> None:
    from support.binaries import start_agentwatch_serve, start_prometheus

    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    agentwatch.configure(store_url=store_url)
    try:

        @agentwatch.observe(name="checkout")
        def checkout(seconds: float) -> None:
            agentwatch.record_llm_call("gpt-4o-mini", provider="openai", duration=seconds)

        for seconds in (0.2, 3.0):
            checkout(seconds)
        assert agentwatch.flush(timeout=10)
    finally:
        agentwatch.close()
    store = agentwatch.EventStore(store_url)
    ids = {r["id"] for r in store.get_executions()}
    store.close()

    with start_agentwatch_serve(store_url, tmp_path / "serve") as serve:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: agentwatch\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{serve.port}']}}]\n"
        )
        with start_prometheus(
            config, tmp_path / "prom", extra_args=["--enable-feature=exemplar-storage"]
        ) as prom:
            prom.wait_for_scrapes("agentwatch", count=2)
            now = time.time()
            result = prom.get(
                "/api/v1/query_exemplars",
                query="agentwatch_llm_request_duration_seconds_bucket",
                start=now - 3600,
                end=now + 60,
            )["data"]
    found = {
        (series["seriesLabels"]["le"], exemplar["labels"]["execution_id"], exemplar["value"])
        for series in result
        for exemplar in series["exemplars"]
    }
    assert {e for _, e, _ in found} == ids
    assert {(le, value) for le, _, value in found} == {("0.25", "0.2"), ("4.0", "3")}
